"""Command line front end: ``python -m sim eeg|resp|device ...`` (also reached as ``neuroreflex sim ...``).

- ``sim eeg``: simulated EEG (sim/stream.py), with ``--seizure AT[:DURATION]`` scheduled seizures
  (sim/seizure_source.py) announced on ``<name>-annotations``, or ``--replay FILE`` a recording with exact
  timestamps, ``--speed``, ``--start`` and its annotations (sim/replay_stream.py);
  ``--respiration`` adds a belt stream ``<name>-resp`` and its true phase ``<name>-resp-phase``.
- ``sim resp``: the respiration belt alone (sim/respiration.py).
- ``sim meg``: simulated MEG on a real Neuromag layout, posterior alpha that rewards raise (sim/meg/cli.py).
- ``sim device KIND``: a virtual stimulator process (sim/devices/process.py: READY line,
  ``--log`` journal, stdin fault control).
- ``sim fmri``: fMRI volumes (sim/fmri/cli.py): the simulator, or ``--replay FILE`` a 4D NIfTI.
- ``sim fnirs``: continuous-wave fNIRS (sim/fnirs/cli.py): the simulator, or ``--replay FILE`` SNIRF/NIRx.

Each streams until the duration elapses (or the recording ends, with ``--once``), Ctrl-C or
SIGTERM, and exits 0 on a clean stop.
"""

from __future__ import annotations

import argparse
import sys
import threading

from sim.argtypes import channels, hz_pair, non_negative_float, positive_float, positive_int, seizure
from sim.entry import quiet_liblsl, stop_on_signals
from sim.meg.cli import add_meg_parser, run_meg
from sim.names import DEFAULT_MARKER_STREAM, DEFAULT_NAME, DEFAULT_REPLAY_NAME, DEFAULT_RESP_NAME


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sim", description="Simulated participants and signals over LSL.")
    sub = parser.add_subparsers(dest="command", required=True)
    eeg = sub.add_parser("eeg", help="stream simulated EEG (or replay a recording) over LSL in real time")
    eeg.add_argument("--channels", type=channels, default=64, metavar="N|LABELS",
                     help="channel count (default 64: the 10-10 set), or labels such as C3,C4,Cz,P3,P4,T3,T4,T5")
    eeg.add_argument("--rate", type=positive_float, default=500.0, help="sampling rate in Hz (default 500)")
    eeg.add_argument("--chunk", type=positive_int, default=10, help="samples per pushed chunk (default 10)")
    eeg.add_argument("--name", default=None, help=f"LSL stream name (default {DEFAULT_NAME}, or neuroreflex-replay)")
    eeg.add_argument("--source-id", default=None, help="LSL source_id (default derived from the settings)")
    eeg.add_argument("--replay", metavar="FILE", default=None,
                     help="replay a recording instead of simulating: EDF/BDF/FIF/XDF, or a .tar.gz/folder of "
                          "one text file per channel (e.g. ../shared/data/seizure/ombao_malow_8ch.tar.gz)")
    eeg.add_argument("--xdf-stream", default=None, help="with --replay of an XDF file: the stream name to replay")
    eeg.add_argument("--speed", type=positive_float, default=1.0,
                     help="with --replay: x times faster than real time (timestamps follow; default 1)")
    eeg.add_argument("--start", type=non_negative_float, default=0.0, metavar="SECONDS",
                     help="with --replay: begin this far into the recording (default 0)")
    eeg.add_argument("--once", action="store_true", help="with --replay: stop at the end instead of looping")
    eeg.add_argument("--annotate", action="append", default=[], metavar="LABEL@SECONDS",
                     help="with --replay: add an annotation at this file time (published like the file's own)")
    eeg.add_argument("--replay-rate", type=positive_float, default=None, metavar="HZ",
                     help="with --replay of a text archive: the sampling rate (default: from its README)")
    eeg.add_argument("--replay-unit", choices=("auto", "uV", "mV", "V"), default="auto",
                     help="with --replay of a text archive: the values' unit (default auto: inferred, reported)")
    eeg.add_argument("--respiration", action="store_true",
                     help="also stream a respiration belt '<name>-resp' (RESP, 'Resp') and its true phase "
                          "'<name>-resp-phase'")
    eeg.add_argument("--resp-rate", type=positive_float, default=50.0, help="respiration rate in Hz (default 50)")
    eeg.add_argument("--breaths-per-min", type=positive_float, default=15.0, help="mean breathing rate (default 15)")
    eeg.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    eeg.add_argument("--learning-rate", type=float, default=None, help="participant learning rate (default 0.001)")
    eeg.add_argument("--line-freq", type=float, choices=(0.0, 50.0, 60.0), default=50.0, help="mains Hz, 0 = none")
    eeg.add_argument("--marker-stream", default=DEFAULT_MARKER_STREAM,
                     help="the controller's marker stream to learn from (default: the only one matching "
                          f"{DEFAULT_MARKER_STREAM}; a session's is neuroreflex-<session id>-markers)")
    eeg.add_argument("--seizure", type=seizure, action="append", default=[], metavar="AT[:DURATION]",
                     help="a simulated seizure AT seconds after the first sample, lasting DURATION (default 60) s; "
                          "repeatable. Onset/offset markers on '<name>-annotations', the schedule in desc/seizures")
    eeg.add_argument("--seizure-focus", default="T7", metavar="CHANNEL|AREA",
                     help="where seizures start: a 10-20/10-10 label or an area such as left-temporal (default T7)")
    eeg.add_argument("--seizure-amplitude", type=positive_float, default=3.0, metavar="X",
                     help="developed discharge RMS in units of the focus's 1-30 Hz background RMS (default 3)")
    eeg.add_argument("--seizure-frequency", type=hz_pair, default=(7.0, 3.0), metavar="START:END",
                     help="discharge frequency at onset and at the end, Hz (default 7:3)")
    eeg.add_argument("--duration", type=positive_float, default=None, help="stop after this many seconds")
    eeg.add_argument("--quiet", action="store_true", help="no startup message")
    resp = sub.add_parser("resp", help="stream a simulated respiration belt (and its true phase) over LSL")
    resp.add_argument("--name", default=DEFAULT_RESP_NAME, help=f"LSL stream name (default {DEFAULT_RESP_NAME})")
    resp.add_argument("--rate", type=positive_float, default=50.0, help="sampling rate in Hz (default 50)")
    resp.add_argument("--breaths-per-min", type=positive_float, default=15.0, help="mean breathing rate (default 15)")
    resp.add_argument("--chunk", type=positive_int, default=1, help="samples per pushed chunk (default 1)")
    resp.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    resp.add_argument("--duration", type=positive_float, default=None, help="stop after this many seconds")
    resp.add_argument("--quiet", action="store_true", help="no startup message")
    add_meg_parser(sub)
    _add_device_parser(sub)
    sub.add_parser("fmri", add_help=False,
                   help="fMRI volumes over LSL and/or into a folder: the simulator, or --replay FILE.nii.gz "
                        "(`sim fmri --help`; handled by sim/fmri/cli.py)")
    sub.add_parser("fnirs", add_help=False,
                   help="continuous-wave fNIRS over LSL: the simulator, or --replay FILE.snirf / a NIRx folder "
                        "(`sim fnirs --help`; handled by sim/fnirs/cli.py)")
    return parser


def _add_device_parser(sub) -> None:
    from sim.devices import KINDS

    dev = sub.add_parser("device", help="a virtual stimulator speaking a real device protocol on a pseudo-terminal/TCP")
    dev.add_argument("kind", choices=sorted(KINDS))
    dev.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="device option, e.g. --set model=rapid (numbers are parsed)")
    dev.add_argument("--log", metavar="FILE", default=None,
                     help="append one JSON line per command/event/pulse (LSL arrival time, hex, meaning)")
    dev.add_argument("--link", metavar="PATH", default=None,
                     help="pty devices: the stable port path (a symlink kept on the current pty across "
                          "unplug/plug; default in a fresh temporary directory)")
    dev.add_argument("--no-link", action="store_true", help="pty devices: print the /dev/pts path itself")
    ctl = dev.add_mutually_exclusive_group()
    ctl.add_argument("--control", dest="control", action="store_true", default=None,
                     help="read control lines (fault ..., unplug, plug, clear, status) on stdin even from a terminal")
    ctl.add_argument("--no-control", dest="control", action="store_false",
                     help="ignore stdin (default: read it unless it is a terminal)")


def _parse_options(pairs: list[str], factory) -> dict:
    """KEY=VALUE pairs converted to the type of the factory's default for KEY (str when unknown)."""
    import inspect

    target = factory
    annotation = inspect.signature(factory).return_annotation  # create(**options) -> DeviceClass
    if isinstance(annotation, str):
        target = getattr(inspect.getmodule(factory), annotation, factory)
    params = inspect.signature(target).parameters.items()
    defaults = {n: p.default for n, p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        if key not in defaults:
            raise ValueError(f"unknown option {key!r}; options: {', '.join(defaults)}")
        default = defaults[key]
        if isinstance(default, bool):
            options[key] = value.lower() in ("1", "true", "yes", "on")
        elif isinstance(default, (int, float)) or default is None and value.replace(".", "", 1).isdigit():
            options[key] = float(value) if "." in value or isinstance(default, float) else int(value)
        else:
            options[key] = value
    return options


def _run_device(args: argparse.Namespace, stop: threading.Event) -> None:
    """One virtual device until SIGTERM/SIGINT or a ``stop`` control line (see sim/devices/process.py)."""
    import importlib
    import os

    from sim.devices import KINDS
    from sim.devices.process import DeviceProcess

    factory = importlib.import_module(KINDS[args.kind]).create
    options = _parse_options(args.set, factory)
    device = factory(**options)
    control = args.control
    if control is None:
        try:
            control = not os.isatty(0)
        except OSError:
            control = False
    proc = DeviceProcess(args.kind, device, log=args.log, link=args.link, use_link=not args.no_link,
                         options=options, stop_event=stop)
    proc.start(0 if control else None)
    try:
        stop.wait()
    finally:
        proc.stop()


def _respiration(name: str, rate: float, breaths_per_min: float, seed: int, chunk: int = 1):
    from sim.respiration import BreathingConfig, RespStreamer

    return RespStreamer(name=name, rate=rate, seed=seed, chunk=chunk,
                        config=BreathingConfig(breaths_per_min=breaths_per_min))


def _run_resp(args: argparse.Namespace, stop: threading.Event) -> None:
    streamer = _respiration(args.name, args.rate, args.breaths_per_min, args.seed, args.chunk)
    streamer.open()
    if not args.quiet:
        print(streamer.describe(), flush=True)
    sent = streamer.run(duration=args.duration, stop_event=stop)
    if not args.quiet:
        print(f"neuroreflex sim: stopped after {sent / streamer.generator.rate:.1f} s; "
              f"{streamer.generator.breaths} breaths, {streamer.markers} phase markers", flush=True)


def _run_eeg(args: argparse.Namespace, stop: threading.Event) -> None:
    name = args.name or (DEFAULT_REPLAY_NAME if args.replay else DEFAULT_NAME)
    done = threading.Event()  # the EEG stream ended (duration, end of recording or a signal)
    resp_thread = None
    if args.respiration:
        resp = _respiration(f"{name}-resp", args.resp_rate, args.breaths_per_min, args.seed)
        if not args.quiet:
            print(resp.describe(), flush=True)
        resp_thread = resp.start_thread(done)
    try:
        if args.replay:
            _run_replay(args, name, stop)
        else:
            _run_simulated(args, name, stop)
    finally:
        done.set()
        if resp_thread is not None:
            resp_thread.join(timeout=2.0)


def _run_replay(args: argparse.Namespace, name: str, stop: threading.Event) -> None:
    from sim.recording import load_for_replay
    from sim.replay_stream import run_replay_stream

    if args.seizure:
        raise ValueError("--seizure simulates seizures on the simulated participant; a --replay plays the file as "
                         "recorded (mark a moment of it with --annotate LABEL@SECONDS)")
    recording = load_for_replay(args.replay, rate=args.replay_rate, unit=args.replay_unit,
                                stream_name=args.xdf_stream)
    for spec in args.annotate:
        label, sep, seconds = spec.rpartition("@")
        if not sep or not label:
            raise ValueError(f"--annotate expects LABEL@SECONDS, got {spec!r}")
        recording.annotate(label, float(seconds))
    stats = run_replay_stream(recording, name, chunk=args.chunk, speed=args.speed, start_s=args.start,
                              loop=not args.once, source_id=args.source_id, duration=args.duration,
                              stop_event=stop, verbose=not args.quiet)
    if not args.quiet:
        print(f"neuroreflex sim: replay stopped after {stats.samples} samples "
              f"({stats.samples / recording.rate:.1f} s of recording, {stats.passes} pass(es)); "
              f"{stats.markers} annotation markers", flush=True)


def _seizure_schedule(args: argparse.Namespace):
    """The --seizure options as a schedule (None without any)."""
    if not args.seizure:
        return None
    from sim.seizure_source import Seizure, SeizureConfig, SeizureSchedule

    start_hz, end_hz = args.seizure_frequency
    config = SeizureConfig(focus=args.seizure_focus, amplitude=args.seizure_amplitude, start_hz=start_hz,
                           end_hz=end_hz)
    return SeizureSchedule(tuple(Seizure(at, duration) for at, duration in args.seizure), config)


def _run_simulated(args: argparse.Namespace, name: str, stop: threading.Event) -> None:
    from sim.stream import run_eeg_stream

    stats = run_eeg_stream(
        channels=args.channels,
        rate=args.rate,
        chunk=args.chunk,
        name=name,
        source_id=args.source_id,
        line_freq=args.line_freq,
        seed=args.seed,
        learning_rate=args.learning_rate,
        marker_stream=args.marker_stream or None,
        duration=args.duration,
        stop_event=stop,
        verbose=not args.quiet,
        seizures=_seizure_schedule(args),
    )
    if not args.quiet:
        seizures = f"; {stats.seizure_markers} seizure markers" if args.seizure else ""
        print(
            f"neuroreflex sim: stopped after {stats.seconds:.1f} s ({stats.samples} samples); "
            f"{stats.rewards} rewards, theta/beta mean {stats.mean_tbr:.2f}{seizures}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["fmri"]:  # its own parser (simulator or --replay): forward everything after 'fmri'
        from sim.fmri.cli import main as fmri_main

        return fmri_main(argv[1:])
    if argv[:1] == ["fnirs"]:  # likewise
        from sim.fnirs.cli import main as fnirs_main

        return fnirs_main(argv[1:])
    args = build_parser().parse_args(argv)
    quiet_liblsl()
    stop = threading.Event()
    try:
        with stop_on_signals(stop):
            if args.command == "eeg":
                _run_eeg(args, stop)
            elif args.command == "resp":
                _run_resp(args, stop)
            elif args.command == "meg":
                run_meg(args, stop)
            elif args.command == "device":
                _run_device(args, stop)
    except KeyboardInterrupt:
        pass
    except (ValueError, FileNotFoundError) as exc:
        print(f"sim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0
