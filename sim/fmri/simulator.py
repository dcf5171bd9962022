"""``neuroreflex sim fmri``: a simulated scanner and participant, one volume every TR.

Each TR the simulator (1) reads the block label from the design (a fixed ``--blocks`` list, or
the controller's ``<prefix>-markers`` live), (2) steps the participant (effort on the target
ROI in regulation blocks, learning from the controller's ``<prefix>-feedback``), (3) steps the
BOLD model (HRF-convolved drive per ROI, network fluctuations), (4) builds the head image
(phantom x (1 + BOLD + drift + physiology)), (5) moves it rigidly (true motion), (6) adds
thermal noise, and (7) writes it as a file into ``--out`` and/or pushes it on the LSL volume
stream ``--lsl NAME`` (docs/lsl_volumes.md), with the ground truth in ``<out>/sim_truth.tsv``
and on the LSL stream ``<name>-state``.

Timing: volume k (1-based) is acquired from ``t0 + (k - 1) * TR / speed`` (its LSL timestamp,
the scanner trigger) and delivered at ``t0 + k * TR / speed`` (end of the acquisition).
Simulation time (design, HRF, truth ``t_s``) runs in scanner seconds from volume 1's trigger.

Truth columns (TSV and ``<name>-state``, one row per volume): index, t_s, tx, ty, tz (mm),
rx, ry, rz (deg) (the head's true rigid motion relative to volume 1, convention of
sim/fmri/motion.py = controller/fmri/motion.py), fd (mm), effort, skill, coupling (the true
DMN-CEN anticorrelation), regulating (0/1), then one column per ROI: the true noise-free BOLD
percent signal change ``bold_<roi>``. The TSV also has ``label`` (the block) and the LSL
``lsl_time``; the LSL stream carries the numeric columns (double64) stamped with the volume's
acquisition time, channel labels in its description.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.argtypes import non_negative_float, positive_float, positive_int
from sim.fmri.bold import REGULATION_CONDITIONS, BoldConfig, BoldGenerator, condition_of
from sim.fmri.design import FixedDesign, LiveDesign
from sim.fmri.motion import MotionConfig, MotionModel, RigidResampler, framewise_displacement
from sim.fmri.noise import NoiseConfig, NoiseModel
from sim.fmri.participant import FmriParticipant, FmriParticipantConfig
from sim.fmri.phantom import ROIS, Phantom, make_phantom, write_atlas

DEFAULT_FMRI_NAME = "neuroreflex-sim-fmri"
DEFAULT_PREFIX = "neuroreflex"  # the controller's LSL prefix: <prefix>-markers, <prefix>-feedback
TRUTH_NAME = "sim_truth.tsv"
HEAD_PAD_SLICES = 4  # the head extends this many slices beyond the slab at each end
STATE_TYPE = "SimState"
MOTION_COLUMNS = ("tx", "ty", "tz", "rx", "ry", "rz")
STATE_COLUMNS = ("index", "t_s", *MOTION_COLUMNS, "fd", "effort", "skill", "coupling", "regulating",
                 *(f"bold_{r.name}" for r in ROIS))


@dataclass
class SimVolume:
    """One simulated volume and its truth."""

    index: int
    data: np.ndarray  # float32 (nx, ny, nz)
    label: str
    truth: dict[str, float]


class FmriSimulator:
    """The per-TR generator (no I/O, no pacing): call :meth:`next_volume` once per TR."""

    def __init__(self, head: Phantom, pad_slices: int, tr_s: float, design, participant: FmriParticipant,
                 bold: BoldGenerator, motion: MotionModel, noise: NoiseModel, interp: int = 3) -> None:
        self.head = head  # the taller head the slab is cut from
        self.phantom = phantom = head.crop_slices(pad_slices)  # the acquired grid: shape, affine, ROI labels
        self.tr_s = float(tr_s)
        self.design = design
        self.participant = participant
        self.bold = bold
        self.motion = motion
        self.noise = noise
        self.resampler = RigidResampler(phantom.shape, phantom.affine, order=interp, head_affine=head.affine)
        self.index = 0
        self._lookup = np.zeros(len(ROIS) + 1, np.float32)
        self._labels = head.labels.astype(np.intp)
        self._last_params = np.zeros(6)

    @classmethod
    def build(cls, tr_s: float = 2.0, design=None, seed: int = 0, voxel_mm: float = 3.0, tilt_deg: float = 0.0,
              target: str = "amygdala_l", motion: MotionConfig | None = None, noise: NoiseConfig | None = None,
              participant: FmriParticipantConfig | None = None, interp: int = 3,
              head: Phantom | None = None, pad_slices: int = HEAD_PAD_SLICES) -> FmriSimulator:
        """``head``: a phantom made with ``pad_slices`` extra slices (built if not given; reused by tests)."""
        head = head or make_phantom(voxel_mm, tilt_deg, pad_slices=pad_slices)
        out_shape = head.crop_slices(pad_slices).shape
        return cls(head, pad_slices, tr_s, design if design is not None else LiveDesign(),
                   FmriParticipant(participant, seed=seed, tr_s=tr_s),
                   BoldGenerator(tr_s, BoldConfig(target=target), seed=seed),
                   MotionModel(tr_s, motion, seed=seed),
                   NoiseModel(head, tr_s, noise, seed=seed, out_shape=out_shape), interp)

    def next_volume(self) -> SimVolume:
        k = self.index + 1
        t_start = (k - 1) * self.tr_s
        label = self.design.label_at(t_start + 0.5 * self.tr_s)
        regulating = condition_of(label) in REGULATION_CONDITIONS
        effort = self.participant.step(self.tr_s, regulating)
        bold_pct, _ = self.bold.step(self.design.label_at, effort)
        self._lookup[1:] = bold_pct
        pct = self.noise.head_percent(t_start)
        pct += self._lookup[self._labels]
        pct *= np.float32(0.01)
        pct += np.float32(1.0)
        head = pct
        head *= self.head.intensity
        params = self.motion.next()
        moved = self.resampler.apply(head, params)
        moved += self.noise.thermal()
        np.maximum(moved, 0.0, out=moved)
        fd = float(framewise_displacement(np.vstack([self._last_params, params]))[1])
        self._last_params = params
        self.index = k
        truth = {"index": float(k), "t_s": t_start, **dict(zip(MOTION_COLUMNS, params.tolist(), strict=True)),
                 "fd": fd, "effort": effort, "skill": self.participant.mu, "coupling": self.bold.coupling,
                 "regulating": float(regulating),
                 **{f"bold_{r.name}": float(v) for r, v in zip(ROIS, bold_pct, strict=True)}}
        return SimVolume(k, moved, label, truth)


# ---------------------------------------------------------------------------- outputs
class TruthWriter:
    """``sim_truth.tsv``: one line per volume, flushed so a reader sees each as it is written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = open(path, "w", buffering=1)  # noqa: SIM115 - closed in close()
        self._fh.write("\t".join([*STATE_COLUMNS, "label", "lsl_time"]) + "\n")

    def write(self, vol: SimVolume, lsl_time: float) -> None:
        values = [f"{int(vol.truth[c])}" if c == "index" else f"{vol.truth[c]:.6g}" for c in STATE_COLUMNS]
        self._fh.write("\t".join([*values, vol.label, f"{lsl_time:.6f}"]) + "\n")

    def close(self) -> None:
        self._fh.close()


def state_outlet(name: str, source_id: str, tr_s: float):
    """The ``<name>-state`` LSL outlet: the numeric truth columns, one sample per volume."""
    import pylsl

    info = pylsl.StreamInfo(name, STATE_TYPE, len(STATE_COLUMNS), 1.0 / tr_s, pylsl.cf_double64, source_id)
    channels = info.desc().append_child("channels")
    for col in STATE_COLUMNS:
        ch = channels.append_child("channel")
        ch.append_child_value("label", col)
        ch.append_child_value("unit", "mm" if col in ("tx", "ty", "tz", "fd") else "deg" if col in MOTION_COLUMNS
                              else "percent" if col.startswith("bold_") or col in ("effort", "skill") else "")
        ch.append_child_value("type", "SimState")
    return pylsl.StreamOutlet(info)


def read_truth(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ``sim_truth.tsv`` into columns (numbers as float arrays, ``label`` as strings)."""
    lines = Path(path).read_text().splitlines()
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[1:] if line]
    cols = {}
    for i, name in enumerate(header):
        values = [r[i] for r in rows]
        cols[name] = np.array(values) if name == "label" else np.array(values, dtype=float)
    return cols


# ---------------------------------------------------------------------------- command line


def build_parser(prog: str = "sim fmri") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Simulated fMRI scanner + neurofeedback participant: one "
                                "brain volume every TR into a folder and/or over LSL, with the ground truth.")
    out = p.add_argument_group("output")
    out.add_argument("--folder", "--out", dest="out", metavar="DIR",
                     help="write each volume as a file into DIR (a scanner export folder)")
    out.add_argument("--format", choices=("nifti", "nifti-gz", "dicom", "mosaic", "dicom-enhanced"), default="nifti",
                     help="file format with --folder (default nifti: one .nii per volume; dicom = mosaic: Siemens "
                          "MOSAIC DICOM; dicom-enhanced: multi-frame)")
    out.add_argument("--dicom-template", metavar="FILE", default=None,
                     help="with --format mosaic: a MOSAIC DICOM of the same grid whose header is reused "
                          "(default: synthesized)")
    out.add_argument("--write", choices=("atomic", "steps"), default="atomic",
                     help="atomic: appear complete (rename); steps: written in several chunks as a slow scanner "
                          "export or network share does (default atomic)")
    out.add_argument("--write-steps", type=positive_int, default=3, help="with --write steps: appends per file")
    out.add_argument("--step-pause", type=non_negative_float, default=0.05, metavar="S",
                     help="with --write steps: pause between appends (s)")
    out.add_argument("--lsl", metavar="NAME", nargs="?", const=DEFAULT_FMRI_NAME, default=None,
                     help=f"stream volumes over LSL (docs/lsl_volumes.md) as NAME (default {DEFAULT_FMRI_NAME})")
    out.add_argument("--name", default=None, help="name of the truth stream '<name>-state' (default: the --lsl name, "
                     f"else {DEFAULT_FMRI_NAME})")
    out.add_argument("--write-atlas", metavar="DIR", default=None,
                     help="write the ROI label map, anatomy and labels TSV into DIR (default with --out: "
                          "<folder>/sim_atlas)")
    run = p.add_argument_group("acquisition")
    run.add_argument("--tr", type=positive_float, default=2.0, help="repetition time in seconds (default 2)")
    run.add_argument("--speed", type=positive_float, default=1.0, help="x times faster than real time (default 1)")
    run.add_argument("--volumes", type=positive_int, default=None,
                     help="stop after N volumes (default: the end of --blocks, else until stopped)")
    run.add_argument("--voxel", type=float, choices=(3.0, 2.0), default=3.0,
                     help="3: 74x74x36 at 3x3x3.75 mm (like the real run); 2: 104x104x72 at 2 mm")
    run.add_argument("--tilt", type=float, default=0.0, metavar="DEG", help="oblique slices: pitch in degrees")
    run.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    run.add_argument("--wait-consumer", type=non_negative_float, default=0.0, metavar="S",
                     help="with --lsl: wait up to S seconds for a receiver before volume 1")
    run.add_argument("--wait-go", action="store_true",
                     help="after READY, wait for a line 'go' on stdin before volume 1 (a session sends it once its "
                          "recorder has subscribed, so the recording has every volume)")
    des = p.add_argument_group("design and participant")
    des.add_argument("--blocks", metavar="SPEC", default=None,
                     help="fixed design, e.g. 'rest:20s,3*(happy:40s,count:40s,rest:40s)' (durations s, min or tr); "
                          "default: follow the controller's block markers live")
    des.add_argument("--prefix", default=DEFAULT_PREFIX,
                     help=f"the controller session's LSL names: markers '<prefix>-markers', feedback '<prefix>-feedback'; "
                          f"a session's are 'neuroreflex-<session id>' (printed at its start; default {DEFAULT_PREFIX}); "
                          "'' = no controller")
    des.add_argument("--target", default="amygdala_l",
                     help="what the participant learns to raise: an ROI name, dmn-cen, or mni:X,Y,Z (the phantom's "
                          "ROI nearest that MNI point, e.g. a protocol's sphere centre; default amygdala_l)")
    des.add_argument("--participant", metavar="FILE", default=None,
                     help="participant state (JSON): its skill is loaded if the file exists and saved at the end, "
                          "so learning carries across runs")
    des.add_argument("--skill", type=float, default=None, help="starting skill in percent (default 0.3)")
    des.add_argument("--learning-rate", type=non_negative_float, default=None, help="participant learning rate (0.15)")
    sig = p.add_argument_group("noise and motion")
    sig.add_argument("--noise", type=non_negative_float, default=1.0, help="scale all noise (0 = noise-free; default 1)")
    sig.add_argument("--motion", type=non_negative_float, default=1.0,
                     help="scale head motion drift and jerk size (0 = still; default 1)")
    sig.add_argument("--jerks-per-min", type=non_negative_float, default=None, help="sudden movements per minute (0.5)")
    sig.add_argument("--jerk-mm", type=non_negative_float, default=None, help="typical jerk size in mm (1.0)")
    sig.add_argument("--interp", type=int, choices=(1, 3), default=3, help="resampling order of the motion (3)")
    p.add_argument("--quiet", action="store_true", help="no per-volume VOLUME lines")
    return p


def _motion_config(args: argparse.Namespace) -> MotionConfig:
    base = MotionConfig()
    jerk_mm = base.jerk_mm if args.jerk_mm is None else args.jerk_mm
    return MotionConfig(drift_mm_per_min=base.drift_mm_per_min * args.motion,
                        drift_deg_per_min=base.drift_deg_per_min * args.motion,
                        jerks_per_min=base.jerks_per_min if args.jerks_per_min is None else args.jerks_per_min,
                        jerk_mm=jerk_mm * args.motion, jerk_return=base.jerk_return)


def _participant_config(args: argparse.Namespace) -> FmriParticipantConfig:
    base = FmriParticipantConfig()
    changes = {}
    if args.skill is not None:
        changes["start_skill"] = args.skill
    if args.learning_rate is not None:
        changes["learning_rate"] = args.learning_rate
    return FmriParticipantConfig(**{**base.__dict__, **changes})


def _make_writer(args: argparse.Namespace, phantom: Phantom, tr_s: float):
    from sim.fmri import folder_out

    return folder_out.make_writer(args.out, fmt=args.format, mode=args.write, affine=phantom.affine,
                                  shape=phantom.shape, tr_s=tr_s, template=args.dicom_template,
                                  steps=args.write_steps, step_pause_s=args.step_pause)


def resolve_target(target: str) -> str:
    """``mni:X,Y,Z`` -> the name of the phantom ROI whose centre is nearest; anything else as given."""
    if not target.startswith("mni:"):
        return target
    try:
        point = np.array([float(v) for v in target[4:].split(",")], dtype=float)
    except ValueError:
        point = np.empty(0)
    if point.shape != (3,):
        raise ValueError(f"--target {target!r}: expected mni:X,Y,Z in mm, e.g. mni:-21,-5,-16")
    return min(ROIS, key=lambda r: float(np.linalg.norm(np.asarray(r.centre_mm) - point))).name


def run(args: argparse.Namespace, stop: threading.Event) -> dict[str, object]:
    """Run the simulator with parsed arguments until done or ``stop``; returns a summary."""
    import pylsl

    if not args.out and not args.lsl:
        raise ValueError("nothing to write: give --folder DIR and/or --lsl [NAME]")
    tr = args.tr
    design = FixedDesign.parse(args.blocks, tr) if args.blocks else LiveDesign()
    volumes = args.volumes
    if volumes is None and isinstance(design, FixedDesign):
        volumes = int(np.ceil(design.duration_s / tr - 1e-9))
    noise = NoiseConfig().scaled(args.noise)
    args.target = resolve_target(args.target)
    sim = FmriSimulator.build(tr, design, seed=args.seed, voxel_mm=args.voxel, tilt_deg=args.tilt, target=args.target,
                              motion=_motion_config(args), noise=noise, participant=_participant_config(args),
                              interp=args.interp)
    if args.participant:
        sim.participant.load(args.participant)
    name = args.name or args.lsl or DEFAULT_FMRI_NAME
    state_name = f"{name}-state"
    out = Path(args.out) if args.out else None
    atlas_dir = Path(args.write_atlas) if args.write_atlas else (out / "sim_atlas" if out else None)
    if out:
        out.mkdir(parents=True, exist_ok=True)
    atlas = write_atlas(sim.phantom, atlas_dir) if atlas_dir else None
    writer = _make_writer(args, sim.phantom, tr) if out else None
    truth = TruthWriter(out / TRUTH_NAME) if out else None
    source_id = f"neuroreflex-sim-fmri:{name}:{'x'.join(map(str, sim.phantom.shape))}:seed{args.seed}"
    outlet = None
    if args.lsl:
        from sim.fmri.lsl_out import VolumeOutlet

        outlet = VolumeOutlet(args.lsl, sim.phantom.shape, sim.phantom.affine, tr, source_id,
                              manufacturer="neuroreflex simulator", source="sim fmri")
    states = state_outlet(state_name, source_id + ":state", tr)
    t0_holder: list[float] = []

    def sim_time(t_lsl: float) -> float:
        return (t_lsl - t0_holder[0]) * args.speed if t0_holder else float("-inf")

    listener = None
    if args.prefix:
        from sim.fmri.listen import ControllerListener

        live = design if isinstance(design, LiveDesign) else None
        listener = ControllerListener(
            args.prefix,
            on_marker=(lambda text, t: live.on_marker(text, sim_time(t))) if live else (lambda text, t: None),
            on_feedback=lambda value, t: sim.participant.feedback(value),
            on_reward=sim.participant.reward).start()
    ready = {"kind": "fmri", "pid": os.getpid(), "out": str(out.resolve()) if out else None,
             "format": args.format if out else None, "lsl": args.lsl, "state": state_name,
             "truth": str((out / TRUTH_NAME).resolve()) if out else None,
             "atlas": str(atlas["atlas"].resolve()) if atlas else None,
             "labels": str(atlas["labels"].resolve()) if atlas else None,
             "shape": list(sim.phantom.shape), "affine": np.round(sim.phantom.affine, 6).tolist(), "tr": tr,
             "speed": args.speed, "volumes": volumes,
             "design": "blocks" if isinstance(design, FixedDesign) else f"markers:{args.prefix}-markers",
             "target": args.target}
    where = " and ".join(x for x in (f"files into {out}" if out else "", f"LSL '{args.lsl}'" if args.lsl else "")
                         if x)
    print(f"neuroreflex sim: fMRI {'x'.join(map(str, sim.phantom.shape))} every {tr:g} s "
              f"(x{args.speed:g}) to {where}; truth on '{state_name}'"
              f"{' and ' + str(out / TRUTH_NAME) if out else ''}; target {args.target} (Ctrl-C to stop)", flush=True)
    print("READY " + json.dumps(ready), flush=True)
    sent = 0
    try:
        if outlet is not None and args.wait_consumer > 0:
            outlet.wait_for_consumers(args.wait_consumer)
        if args.wait_go:
            from sim.fmri.gate import wait_for_go

            if not wait_for_go(stop):
                volumes = 0  # the session went away before its recorder was ready: send nothing
        period = tr / args.speed
        t0 = pylsl.local_clock()
        t0_holder.append(t0)
        while not stop.is_set() and (volumes is None or sent < volumes):
            vol = sim.next_volume()
            acquired = t0 + (vol.index - 1) * period
            due = acquired + period
            wait = due - pylsl.local_clock()
            if wait > 0 and stop.wait(wait):
                break
            if writer is not None:
                writer.write(vol.data, vol.index)
            if outlet is not None:
                outlet.push(vol.data, vol.index, acquired)
            states.push_sample([vol.truth[c] for c in STATE_COLUMNS], acquired)
            if truth is not None:
                truth.write(vol, acquired)
            sent += 1
            if not args.quiet:
                print("VOLUME " + json.dumps({"index": vol.index, "acquired": acquired, "label": vol.label,
                                              "fd": round(vol.truth["fd"], 4)}), flush=True)
    finally:
        if listener is not None:
            listener.stop()
        if writer is not None and hasattr(writer, "close"):
            writer.close()
        if truth is not None:
            truth.close()
        if outlet is not None:
            outlet.close()
        if args.participant:
            sim.participant.save(args.participant)
    summary = {"volumes": sent, "skill": sim.participant.mu, "feedbacks": sim.participant.feedbacks,
               "rewards": sim.participant.rewards, "jerks": sim.motion.jerks,
               "markers": listener.markers if listener else 0}
    print(f"neuroreflex sim: fMRI stopped after {sent} volumes; skill {sim.participant.mu:.3f} % "
              f"({summary['feedbacks']} feedback values, {summary['rewards']} rewards, {summary['markers']} markers), "
              f"{summary['jerks']} jerks", flush=True)
    return summary


def main(argv: list[str] | None = None, stop: threading.Event | None = None) -> int:
    """Entry point for ``sim fmri`` without ``--replay`` (called by sim/fmri/cli.py); returns the exit code."""
    from sim.entry import quiet_liblsl, stop_on_signals

    args = build_parser().parse_args(argv)
    quiet_liblsl()
    stop = stop or threading.Event()
    try:
        with stop_on_signals(stop):
            run(args, stop)
    except KeyboardInterrupt:
        pass
    except (ValueError, FileNotFoundError) as exc:
        print(f"sim fmri: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
