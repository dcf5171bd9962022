"""The ``neuroreflex`` command line.

Exit codes: 0 success, 1 runtime failure (message on stderr), 2 invalid input
(protocol errors one per line as FILE:LINE:COL: message), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path


def _cmd_validate(args: argparse.Namespace) -> int:
    from controller.protocol import ProtocolError, load_protocol

    try:
        site = None
        if args.site:
            from controller.safety.site import load_site

            site = load_site(args.site)
        p = load_protocol(args.protocol, site=site)
    except ProtocolError as exc:  # SiteError is one too: FILE:LINE:COL for either file
        print(str(exc), file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{args.protocol}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return 2
    minutes = p.duration_s / 60
    n_inputs = len(p.inputs) + len(p.volume_inputs)
    print(f"{args.protocol}: valid protocol {p.name!r}: {n_inputs} input(s), {len(p.features)} feature(s), "
          f"{len(p.thresholds)} threshold(s), {len(p.rules)} rule(s), {len(p.timeline)} blocks, {minutes:.1f} min")
    if p.volume_inputs:
        rois = f"{len(p.rois)} ROI(s)" + (f", runs: {', '.join(r.name for r in p.runs)}" if p.runs else "")
        print(f"  fMRI: {', '.join(f'{n} (TR {v.tr_s:g} s)' for n, v in p.volume_inputs.items())}; {rois}")
    if p.devices:
        where = f"within the limits of site {site.name!r}" if site else "NOT checked against a site (give --site)"
        print(f"  stimulates {', '.join(p.devices)}: {where}")
    return 0


DEFAULT_SITE = Path(__file__).resolve().parent.parent / "config" / "site.yaml"


def _cmd_schema(args: argparse.Namespace) -> int:
    from controller.protocol import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _cmd_sim(args: argparse.Namespace) -> int:
    from sim.cli import main as sim_main

    return sim_main(args.sim_args)


def _sim_options(args: argparse.Namespace):
    from controller.runner import SimOptions

    return SimOptions(channels=args.channels, rate=args.rate, chunk=args.chunk, seed=args.seed,
                      learning_rate=args.learning_rate, replay=args.replay)


def _run(protocol: Path, args: argparse.Namespace, sim) -> int:
    from controller.protocol import ProtocolError
    from controller.runner import RunOptions, SessionError, run_session

    site = args.site
    if site is None and sim is not None and DEFAULT_SITE.exists():
        site = DEFAULT_SITE  # simulated devices: the example site's limits
    opts = RunOptions(protocol_path=protocol, session_root=Path(args.session_dir), duration_s=args.duration, sim=sim,
                      build_report=not args.no_report, site_config=Path(site) if site else None,
                      arm=getattr(args, "arm", False), operator=getattr(args, "operator", "operator"),
                      participant=getattr(args, "participant", "anonymous"),
                      virtual_devices=False if getattr(args, "hardware", False) else None,
                      run=getattr(args, "run", None),
                      volumes_folder=Path(args.volumes_folder) if getattr(args, "volumes_folder", None) else None)
    if sim is not None and hasattr(args, "speed"):
        from controller.volume_session import FmriSimOptions

        opts.fmri_sim = FmriSimOptions(replay=args.replay, speed=args.speed or args.replay_speed or 1.0,
                                       seed=args.seed, volumes=args.volumes)
    try:
        result = run_session(opts)
    except ProtocolError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except SessionError as exc:
        print(f"neuroreflex: session failed: {exc}", file=sys.stderr)
        return 1
    print(f"session {result.status}: {result.session_dir}")
    for b in result.block_stats:
        if b.get("reward_rate") is not None:
            print(f"  block {b['index'] + 1:2d} {b['label']:<9} reward rate {100 * b['reward_rate']:5.1f}%")
    if result.report is not None:
        print(f"report: {result.report}")
    return 0 if result.status in ("completed", "stopped") else 1


def _cmd_run(args: argparse.Namespace) -> int:
    sim = _sim_options(args) if args.sim else None
    if sim is not None and args.respiration:
        sim.extra_args.append("--respiration")
    if sim is not None and args.replay_start is not None:
        sim.extra_args += ["--start", f"{args.replay_start:g}"]
    if sim is not None and args.replay_speed is not None:
        sim.extra_args += ["--speed", f"{args.replay_speed:g}"]
    return _run(Path(args.protocol), args, sim)


def _cmd_demo(args: argparse.Namespace) -> int:
    import protocols

    print("neuroreflex demo: a simulated theta/beta neurofeedback session (ADHD protocol, shortened to ~3 min).\n"
          "A simulated participant streams 64-channel EEG over LSL; the controller rewards a low theta/beta ratio\n"
          "at Cz and the participant learns from the rewards.\n")
    sim = _sim_options(args)
    if sim.learning_rate is None:
        sim.learning_rate = DEMO_LEARNING_RATE
    return _run(protocols.find("tbr_demo"), args, sim)


# The demo compresses 18 min of training into 2: the simulated participant learns 15x faster than its
# default (0.001), so its theta/beta ratio falls visibly within the demo (bench/closed_loop_learning.py).
DEMO_LEARNING_RATE = 0.015


def _cmd_report(args: argparse.Namespace) -> int:
    from controller.report import build_report

    session = Path(args.session_dir)
    if not (session / "journal.jsonl").is_file():
        print(f"{session}: not a session folder (no journal.jsonl)", file=sys.stderr)
        return 2
    print(f"report: {build_report(session)}")
    return 0


def _add_run_options(p: argparse.ArgumentParser, demo: bool = False) -> None:
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after this long")
    p.add_argument("--session-dir", default="sessions", metavar="DIR", help="where session folders go")
    p.add_argument("--no-report", action="store_true", help="do not build the report at the end")
    g = p.add_argument_group("simulated participant" + ("" if demo else " (with --sim)"))
    g.add_argument("--channels", type=int, default=64)
    g.add_argument("--rate", type=float, default=500.0, metavar="HZ")
    g.add_argument("--chunk", type=int, default=None, metavar="SAMPLES",
                   help="samples per push (default 10; 1 for protocols that stimulate: a low-latency amplifier)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--learning-rate", type=float, default=None, help="participant model learning rate")
    g.add_argument("--replay", default=None, metavar="FILE", help="stream a real recording instead")
    g.add_argument("--replay-start", type=float, default=None, metavar="SECONDS", help="begin the replay part-way")
    g.add_argument("--replay-speed", type=float, default=None, metavar="X",
                   help="replay X times faster than real time (durations in the protocol stay in real seconds)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuroreflex", description=__doc__.split("\n")[0])
    from controller import __version__

    parser.add_argument("--version", action="version", version=f"neuroreflex {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a protocol file; errors as FILE:LINE:COL: message")
    p.add_argument("protocol")
    p.add_argument("--site", default=None, metavar="SITE", help="also check its stimulation against this site config")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("schema", help="print the protocol JSON Schema (for editor completion)")
    p.set_defaults(func=_cmd_schema)

    p = sub.add_parser("sim", help="simulators: `neuroreflex sim eeg --help`", add_help=False)
    p.add_argument("sim_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_sim)

    p = sub.add_parser("run", help="run a session from a protocol")
    p.add_argument("protocol")
    p.add_argument("--sim", action="store_true",
                   help="simulated participant as the input, virtual devices for the stimulators")
    p.add_argument("--site", default=None, metavar="SITE",
                   help="site config: devices, ports, limits (with --sim default: config/site.yaml)")
    p.add_argument("--arm", action="store_true", help="arm the devices at start (unattended tests); else press 'a'")
    p.add_argument("--operator", default="operator", help="who arms (journaled)")
    p.add_argument("--participant", default="anonymous", help="whose dose ledger counts daily doses")
    p.add_argument("--respiration", action="store_true", help="with --sim: also stream a respiration belt")
    p.add_argument("--hardware", action="store_true",
                   help="with --sim: drive the devices on the site's ports (simulated participant, real stimulators)")
    f = p.add_argument_group("fMRI")
    f.add_argument("--run", default=None, metavar="RUN", help="which run of a multi-run protocol (name or number)")
    f.add_argument("--volumes-folder", default=None, metavar="DIR",
                   help="the scanner's real-time export folder (overrides the protocol's)")
    f.add_argument("--speed", type=float, default=None, metavar="X",
                   help="with --sim: the simulated scanner (or --replay of a 4D NIfTI) runs X times faster")
    f.add_argument("--volumes", type=int, default=None, metavar="N", help="with --sim: stop the scanner after N volumes")
    _add_run_options(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("demo", help="a ~3 min simulated theta/beta session, then the report")
    _add_run_options(p, demo=True)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("report", help="(re)build the report of a session folder")
    p.add_argument("session_dir")
    p.set_defaults(func=_cmd_report)

    from controller.display import cli as display_cli  # argparse only: Qt is imported when it runs

    p = sub.add_parser("display", help="Qt displays following a session over LSL: thermometer, fmri-panel")
    display_cli.add_arguments(p)
    p.set_defaults(func=display_cli.main)

    from controller.control_cli import add_control_commands

    add_control_commands(sub)  # estop, status, arm, disarm: talk to running sessions
    return parser


def _sigterm_to_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["estop"]:  # before any parser or import: the operator waits on start-up (estop_cli)
        from controller.estop_cli import main as estop_main

        return estop_main(argv[1:], prog="neuroreflex estop")
    args = build_parser().parse_args(argv)
    if getattr(args, "control", False):  # estop & co.: nothing slow (LSL, numpy) before the E-STOP leaves
        return args.func(args)
    from controller.lsl_config import configure

    configure()
    signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
