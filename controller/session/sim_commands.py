"""Every ``python -m sim`` command line a session runs, in one place: the simulated participant (EEG and
the streams beside it), the simulated scanner or the replay of a real run, and the virtual stimulators.

What the options mean is the simulators' business (sim/cli.py, sim/fmri/cli.py, sim/devices/); here is
only how a session asks for them, so a change of a simulator's command line is one edit.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.features import registry as feature_registry
from controller.lang.compiled import InputSpec, Protocol, VolumeInputSpec
from controller.session.export_check import replay_export


@dataclass
class SimOptions:
    """The simulated participant of a signal protocol (or a replayed recording)."""

    channels: int = 64
    rate: float | None = None  # None: the protocol input's stated rate, else the modality's usual one
    chunk: int | None = None  # None: 10, or 1 when the protocol stimulates (the latency budget is ms)
    seed: int = 0
    learning_rate: float | None = None
    replay: str | None = None
    extra_args: list[str] = field(default_factory=list)


@dataclass
class FmriSimOptions:
    """How to feed an fMRI protocol without a scanner: the simulator, or a replayed 4D NIfTI."""

    replay: str | None = None  # a 4D NIfTI to replay; None = the simulated participant
    speed: float = 1.0
    seed: int = 0
    volumes: int | None = None
    extra_args: list[str] = field(default_factory=list)


def _sim(*args: str) -> list[str]:
    return [sys.executable, "-m", "sim", *args]


USUAL_RATE = {"eeg": 500.0, "fnirs": 10.0, "meg": 1000.0}


def signal_modality(spec: InputSpec) -> str:
    """Which simulator stands in for a signal input: 'fnirs' (an fnirs: input), 'meg' (a stream of type MEG,
    or one with projectors) or 'eeg'."""
    if spec.fnirs is not None:
        return "fnirs"
    if (spec.stream.type or "").casefold() == "meg" or spec.ssp is not None:
        return "meg"
    return "eeg"


def participant_command(opts: SimOptions, name: str, marker_stream: str, spec: InputSpec | None = None,
                        active: tuple[str, ...] = ()) -> list[str]:
    """``sim eeg`` / ``sim fnirs`` / ``sim meg`` (as the first input is): the simulated participant (or the
    replay of a recording) streaming as ``name``, rewarded by the session's marker stream; ``active``: the
    blocks its fNIRS responses answer (the ones the protocol rewards)."""
    modality = "eeg" if spec is None else signal_modality(spec)
    cmd = _sim(modality, "--name", name, "--marker-stream", marker_stream)
    if opts.replay:
        cmd += ["--replay", str(opts.replay), "--chunk", str(opts.chunk or 10)]
        return cmd + list(opts.extra_args)
    rate = opts.rate or (spec.rate_hz if spec is not None else None) or USUAL_RATE[modality]
    cmd += ["--rate", f"{rate:g}", "--chunk", str(opts.chunk), "--seed", str(opts.seed)]
    if modality == "eeg":
        cmd += ["--channels", str(opts.channels)]
    if modality == "fnirs" and active:
        cmd += ["--active", ",".join(active)]
    if opts.learning_rate is not None:
        cmd += ["--learning-rate", f"{opts.learning_rate:g}"]
    return cmd + list(opts.extra_args)


def sim_design(protocol: Protocol, spec: VolumeInputSpec) -> str:
    """The protocol's timeline as the simulator's --blocks spec, dummies first."""
    items = [f"dummy:{spec.skip}tr"] if spec.skip else []
    items += [f"{b.label}:{b.duration_s:g}s" for b in protocol.timeline]
    return ",".join(items)


def sim_target(protocol: Protocol) -> str:
    """What the simulated participant learns to raise: the feedback feature's ROI, by name or, for a sphere,
    as ``mni:X,Y,Z`` (the simulator picks its labelled ROI nearest the centre), or dmn-cen for a feature
    of two ROIs (a correlation: the simulator's network target)."""
    fb = protocol.feedback
    feat = protocol.features.get(fb.value) if fb else None
    if feat is None:
        return "amygdala_l"
    rois = feature_registry.volume_kind(feat.kind).rois(feat)
    if len(rois) > 1:
        return "dmn-cen"
    roi = protocol.rois.get(rois[0])
    if roi and roi.sphere_center_mm:
        return "mni:" + ",".join(f"{c:g}" for c in roi.sphere_center_mm)
    return rois[0]


def fmri_source_command(protocol: Protocol, spec: VolumeInputSpec, opts: FmriSimOptions, folder: Path,
                        prefix: str, lsl_name: str) -> list[str]:
    """``sim fmri``: the simulated scanner (or the replay of a run) feeding this input; it waits for ``go``."""
    cmd = _sim("fmri")
    if opts.replay:
        cmd += ["--replay", str(opts.replay), "--speed", f"{opts.speed:g}"]
    else:
        cmd += ["--blocks", sim_design(protocol, spec), "--tr", f"{spec.tr_s:g}", "--speed", f"{opts.speed:g}",
                "--seed", str(opts.seed), "--prefix", prefix, "--target", sim_target(protocol), "--name", lsl_name]
    if opts.volumes:
        cmd += ["--volumes", str(opts.volumes)]
    cmd += ["--wait-go"]  # volume 1 waits until the session's recorder has subscribed (FmriPlan.go)
    if spec.source.stream is not None:
        cmd += ["--lsl", lsl_name]
    else:
        cmd += ["--folder", str(folder)]
        if opts.replay:
            cmd += replay_export(spec.source.pattern, Path(opts.replay)).args()
    return cmd + list(opts.extra_args)


def device_command(kind: str, log: Path, options: dict[str, Any]) -> list[str]:
    """``sim device``: a virtual stimulator of driver ``kind`` on a pseudo-terminal, logging to ``log``."""
    cmd = _sim("device", kind, "--log", str(log))
    for key, value in options.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd
