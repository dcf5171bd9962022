"""The session options of ``neuroreflex run`` and ``neuroreflex demo``, declared once.

Both commands start a session, so both get their options from the same ``add_*`` functions and
are read through one typed object, :class:`SessionArgs`. A command that does not offer an option
(``demo`` has no ``--hardware``) states its fixed value with ``parser.set_defaults``; reading a
namespace that lacks a field is a programming error that :meth:`SessionArgs.from_namespace`
names at once (and the CLI tests run every command), so the two commands cannot drift apart.

Each ``add_*`` call creates fresh argparse actions for its parser (no shared ``parents=``
actions), so one command's ``set_defaults`` cannot change another command's default.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.session.runner import RunOptions

DEFAULT_SITE = Path(__file__).resolve().parents[2] / "config" / "site.yaml"


@dataclass(frozen=True)
class SessionArgs:
    """What the command line asks of one session."""

    protocol: Path
    sim: bool
    # the session and its people
    duration: float | None
    session_dir: Path
    no_report: bool
    site: Path | None
    operator: str
    participant: str
    session_id: str | None
    prefix: str
    stream: tuple[str, ...]  # --stream [INPUT=]NAME, repeatable
    # stimulation
    arm: bool
    hardware: bool
    virtual_devices: bool
    # the simulated participant (with sim)
    channels: int
    rate: float
    chunk: int | None
    seed: int
    learning_rate: float | None
    replay: str | None
    replay_start: float | None
    replay_annotate: tuple[str, ...]
    replay_speed: float | None
    respiration: bool
    # fMRI
    run: str | None
    volumes_folder: Path | None
    speed: float | None
    volumes: int | None

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> SessionArgs:
        """Read a parsed command line; every field must have been declared or fixed by the command."""
        missing = [f.name for f in fields(cls) if not hasattr(ns, f.name)]
        if missing:
            raise TypeError(f"the '{getattr(ns, 'command', '?')}' parser declares no {', '.join(missing)} "
                            "(add the option, or fix its value with set_defaults)")
        values = {f.name: getattr(ns, f.name) for f in fields(cls)}
        for name in ("protocol", "session_dir", "site", "volumes_folder"):
            if values[name] is not None:
                values[name] = Path(values[name])
        values["stream"] = tuple(values["stream"])
        values["replay_annotate"] = tuple(values["replay_annotate"])
        return cls(**values)

    def site_config(self) -> Path | None:
        """The site config: as given; with simulated devices the example site's limits by default."""
        if self.site is None and self.sim and DEFAULT_SITE.exists():
            return DEFAULT_SITE
        return self.site

    def to_run_options(self) -> RunOptions:
        from controller.session.fmri_modality import FmriSimOptions
        from controller.session.runner import RunOptions, SimOptions

        if self.hardware and self.virtual_devices:
            raise ValueError("--hardware (the site's real ports) and --virtual-devices exclude each other")

        sim = None
        fmri_sim = None
        if self.sim:
            extra: list[str] = []
            if self.respiration:
                extra.append("--respiration")
            if self.replay_start is not None:
                extra += ["--start", f"{self.replay_start:g}"]
            for note in self.replay_annotate:
                extra += ["--annotate", note]
            if self.replay_speed is not None:
                extra += ["--speed", f"{self.replay_speed:g}"]
            sim = SimOptions(channels=self.channels, rate=self.rate, chunk=self.chunk, seed=self.seed,
                             learning_rate=self.learning_rate, replay=self.replay, extra_args=extra)
            fmri_sim = FmriSimOptions(replay=self.replay, speed=self.speed or self.replay_speed or 1.0,
                                      seed=self.seed, volumes=self.volumes)
        return RunOptions(protocol_path=self.protocol, session_root=self.session_dir, duration_s=self.duration,
                          sim=sim, fmri_sim=fmri_sim, build_report=not self.no_report,
                          site_config=self.site_config(), arm=self.arm, operator=self.operator,
                          participant=self.participant,
                          virtual_devices=False if self.hardware else (True if self.virtual_devices else None),
                          session_id=self.session_id, lsl_prefix=self.prefix,
                          run=self.run, volumes_folder=self.volumes_folder, streams=self.stream_names())

    def stream_names(self) -> dict[str, str]:
        from controller.inputs.lsl.live_check import parse_stream_options

        return parse_stream_options(list(self.stream))


def add_session_arguments(p: argparse.ArgumentParser) -> None:
    """Where the session goes, how long it runs, whose it is, and whose limits apply."""
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after this long")
    p.add_argument("--session-dir", default="sessions", metavar="DIR", help="where session folders go")
    p.add_argument("--no-report", action="store_true", help="do not build the report at the end")
    p.add_argument("--site", default=None, metavar="SITE",
                   help="site config: devices, ports, limits (with simulated devices default: config/site.yaml)")
    p.add_argument("--operator", default="operator", help="who runs the session and arms (journaled)")
    p.add_argument("--participant", default="anonymous", help="whose session (and dose ledger) this is")
    p.add_argument("--session-id", default=None, metavar="ID",
                   help="the session's id in its LSL stream names, control channel and journal (default: random); "
                        "keep one id across the runs of a participant so displays follow run after run")
    p.add_argument("--prefix", default="neuroreflex", metavar="NAME",
                   help="LSL name prefix: outlets are NAME-ID-features, -markers, -feedback (default: %(default)s)")


def add_stream_argument(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--stream", action="append", default=[], metavar="[INPUT=]NAME",
                   help=f"select the input's LSL stream by this exact name instead of the protocol's selector; "
                        f"{what} (repeat as INPUT=NAME for protocols with several inputs)")


def add_stimulation_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arm", action="store_true", help="arm the devices at start (unattended tests); else press 'a'")
    p.add_argument("--hardware", action="store_true",
                   help="with --sim: drive the devices on the site's ports (simulated participant, real stimulators)")
    p.add_argument("--virtual-devices", action="store_true",
                   help="virtual stimulators (sim/, the real protocols on pseudo-terminals) in place of the site's "
                        "ports, whatever the input: a real amplifier or a recording streamed by another tool "
                        "(--sim implies it)")


def add_simulator_arguments(p: argparse.ArgumentParser, title: str) -> None:
    """The simulated participant (or a replayed recording) that stands in for the amplifier."""
    g = p.add_argument_group(title)
    g.add_argument("--channels", type=int, default=64)
    g.add_argument("--rate", type=float, default=None, metavar="HZ",
                   help="the simulated stream's rate (default: the protocol input's rate:, else EEG 500 Hz, "
                        "fNIRS 10 Hz, MEG 1000 Hz)")
    g.add_argument("--chunk", type=int, default=None, metavar="SAMPLES",
                   help="samples per push (default 10; 1 for protocols that stimulate: a low-latency amplifier)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--learning-rate", type=float, default=None, help="participant model learning rate")
    g.add_argument("--replay", default=None, metavar="FILE", help="stream a real recording instead")
    g.add_argument("--replay-start", type=float, default=None, metavar="SECONDS", help="begin the replay part-way")
    g.add_argument("--replay-annotate", action="append", default=[], metavar="LABEL@SECONDS",
                   help="mark a moment of the replayed file (e.g. seizure_onset@180: the onset the report measures "
                        "latency from), replacing the file's own annotation of that label")
    g.add_argument("--replay-speed", type=float, default=None, metavar="X",
                   help="replay X times faster than real time (durations in the protocol stay in real seconds)")
    g.add_argument("--respiration", action="store_true", help="also stream a respiration belt")


def add_fmri_arguments(p: argparse.ArgumentParser) -> None:
    f = p.add_argument_group("fMRI")
    f.add_argument("--run", default=None, metavar="RUN", help="which run of a multi-run protocol (name or number)")
    f.add_argument("--volumes-folder", default=None, metavar="DIR",
                   help="the scanner's real-time export folder (overrides the protocol's)")
    f.add_argument("--speed", type=float, default=None, metavar="X",
                   help="with --sim: the simulated scanner (or --replay of a 4D NIfTI) runs X times faster")
    f.add_argument("--volumes", type=int, default=None, metavar="N", help="with --sim: stop the scanner after N volumes")
