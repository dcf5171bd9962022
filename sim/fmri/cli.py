"""``python -m sim fmri ...`` (also ``neuroreflex sim fmri ...``).

With ``--replay FILE.nii[.gz]``: stream a recorded 4D run at its TR (sim/fmri/replay.py).
Without: the fMRI simulator (sim/fmri/simulator.py).

Replay stdout, one line each, flushed: a line for people, then ``READY {json}`` (file, lsl,
folder, formats, shape, tr_s, speed, volumes, first_index), then (unless ``--quiet``) one
``VOLUME {"index": N, "acquired": T, "written": T2}`` per volume delivered (LSL clock: its
acquisition slot, and when its files were complete / its sample pushed), and a last summary line.
With ``--wait-go`` the clock starts only after a line ``go`` on stdin (sim/fmri/gate.py): a session
sends it once its recorder has subscribed, and counts the VOLUME lines to know what to wait for at
the end. ``--volumes N`` (``--steps``) replays the first N volumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading

from sim.argtypes import non_negative_float, positive_float, positive_int


def _int_set(text: str) -> frozenset[int]:
    """'6', '12,13,14' or '1-13,20'."""
    out: set[int] = set()
    try:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            out.update(range(int(lo), int(hi) + 1) if sep else [int(part)])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected volume indices like 6 or 12,13 or 1-13, got {text!r}") from exc
    return frozenset(out)


def build_replay_parser(prog: str = "sim fmri") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Replay a 4D NIfTI run as a scanner delivers it: over LSL "
                                "(docs/lsl_volumes.md) and/or as files into an export folder, one volume per TR.")
    p.add_argument("--replay", metavar="FILE", required=True, help="4D NIfTI (.nii or .nii.gz)")
    p.add_argument("--lsl", metavar="NAME", nargs="?", const="neuroreflex-fmri-replay", default=None,
                   help="stream volumes over LSL as NAME (default neuroreflex-fmri-replay)")
    p.add_argument("--folder", metavar="DIR", default=None, help="write each volume as a file into DIR")
    p.add_argument("--format", default="nifti",
                   help="file format(s) with --folder, comma-separated for several files per TR: nifti, nifti-gz, "
                        "dicom (Siemens MOSAIC; with --dicom-template or synthesized), dicom-enhanced "
                        "(default nifti)")
    p.add_argument("--dicom-template", metavar="FILE", default=None,
                   help="a MOSAIC DICOM of the same series whose header the written DICOMs reuse "
                        "(e.g. ../shared/data/fmri/opennft/001_000007_000006.dcm)")
    p.add_argument("--write", choices=("atomic", "steps"), default="atomic",
                   help="atomic: files appear complete (rename); steps: written in several appends with pauses, "
                        "as a scanner on a network share does (default atomic)")
    p.add_argument("--write-steps", type=positive_int, default=3, help="with --write steps: appends per file")
    p.add_argument("--step-pause", type=non_negative_float, default=0.05, metavar="S", help="with --write steps: pause (s)")
    p.add_argument("--speed", type=positive_float, default=1.0, help="x times faster than the TR (default 1)")
    p.add_argument("--volumes", "--steps", dest="steps", type=positive_int, default=None, metavar="N",
                   help="replay at most N volumes (--steps is the older spelling)")
    p.add_argument("--start", type=int, default=0, metavar="V", help="0-based first volume of the file (default 0)")
    p.add_argument("--first-index", type=int, default=1, help="acquisition index of the file's volume 0 (default 1)")
    p.add_argument("--tr", type=positive_float, default=None, help="TR in s (default: from the header)")
    p.add_argument("--drop", type=_int_set, default=frozenset(), metavar="I,J",
                   help="leave out these acquisition indices, e.g. 6 or 1-13,20 (a reader must report them missing)")
    p.add_argument("--swap", type=_int_set, default=frozenset(), metavar="I,J",
                   help="deliver index I+1 before I (out of order)")
    p.add_argument("--duplicate", type=_int_set, default=frozenset(), metavar="I,J",
                   help="deliver these indices twice (a reader must drop the second copy)")
    p.add_argument("--wait-consumer", type=float, default=0.0, metavar="S",
                   help="with --lsl: wait up to S seconds for a receiver before starting the clock")
    p.add_argument("--wait-go", action="store_true",
                   help="after READY, wait for a line 'go' on stdin before the clock starts (a session sends it "
                        "once its recorder has subscribed, so the recording has volume 1)")
    p.add_argument("--linger", type=float, default=1.0, metavar="S",
                   help="with --lsl: keep the stream up S seconds after the last volume (default 1)")
    p.add_argument("--source-id", default=None, help="LSL source_id (default derived from the name and file)")
    p.add_argument("--quiet", action="store_true", help="no per-volume lines")
    return p


def _is_replay(argv: list[str]) -> bool:
    return any(a == "--replay" or a.startswith("--replay=") for a in argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sim fmri``; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not _is_replay(argv):
        if "-h" in argv or "--help" in argv:
            print("sim fmri --replay FILE.nii.gz ...: replay a recorded 4D run instead (`sim fmri --replay X --help`)."
                  "\nThe simulator's options:\n", flush=True)
        try:
            from sim.fmri import simulator
        except ImportError as exc:
            print(f"sim fmri: error: the fMRI simulator (sim/fmri/simulator.py) is not available ({exc}); "
                  "use --replay FILE to replay a recorded run", file=sys.stderr)
            return 2
        return simulator.main(argv)
    return _replay_main(argv)


def _replay_main(argv: list[str]) -> int:
    from sim.entry import quiet_liblsl, stop_on_signals
    from sim.fmri.gate import wait_for_go
    from sim.fmri.replay import run_fmri_replay

    args = build_replay_parser().parse_args(argv)
    quiet_liblsl()
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    stop = threading.Event()

    def ready(info: dict) -> None:
        where = " and ".join(x for x in (f"LSL '{args.lsl}'" if args.lsl else "",
                                         f"{'+'.join(formats)} files into {info['folder']}" if args.folder else "")
                             if x)
        shape = "x".join(map(str, info["shape"]))
        print(f"neuroreflex sim: replaying {info['volumes']} volumes {shape} of {args.replay} every "
              f"{info['tr_s']:g} s (x{args.speed:g}) to {where} (Ctrl-C to stop)", flush=True)
        print("READY " + json.dumps(info), flush=True)

    def volume(index: int, acquired: float, written: float) -> None:
        if not args.quiet:
            print("VOLUME " + json.dumps({"index": index, "acquired": acquired, "written": written}), flush=True)

    try:
        with stop_on_signals(stop):
            stats = run_fmri_replay(args.replay, lsl_name=args.lsl, folder=args.folder, formats=formats,
                                    template=args.dicom_template, speed=args.speed, steps=args.steps,
                                    start=args.start, first_index=args.first_index, tr_s=args.tr,
                                    write_mode=args.write, write_steps=args.write_steps,
                                    step_pause_s=args.step_pause, drop=args.drop, swap=args.swap,
                                    duplicate=args.duplicate,
                                    wait_consumer_s=args.wait_consumer, source_id=args.source_id,
                                    linger_s=args.linger,
                                    stop_event=stop, on_ready=ready, on_volume=volume,
                                    start_gate=(lambda: wait_for_go(stop)) if args.wait_go else None)
    except KeyboardInterrupt:
        return 0
    except (ValueError, FileNotFoundError) as exc:
        print(f"sim fmri: error: {exc}", file=sys.stderr)
        return 2
    print(f"neuroreflex sim: fmri replay stopped after {stats.volumes} volumes ({stats.files} files, "
          f"{stats.pushed} LSL samples)", flush=True)
    return 0
