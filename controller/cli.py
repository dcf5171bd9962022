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

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the E-STOP path starts here
if TYPE_CHECKING:
    from controller.session.args import SessionArgs


def _cmd_validate(args: argparse.Namespace) -> int:
    from controller.protocol import ProtocolError, load_protocol

    try:
        site = None
        if args.site:
            from controller.safety.site import load_site

            site = load_site(args.site)
        p = load_protocol(args.protocol, site=site)
        live: list[str] = []
        if args.check_streams or args.stream:
            from controller.inputs.lsl.live_check import check_live_streams, parse_stream_options, with_streams
            from controller.inputs.lsl.resolve import StreamNotFound

            try:
                live = check_live_streams(with_streams(p, parse_stream_options(args.stream)), args.protocol)
            except (ValueError, StreamNotFound) as exc:
                print(f"{args.protocol}: {exc}", file=sys.stderr)
                return 2
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
    if live:
        print("\n".join(["  live streams checked (channels, rate, units):"] + live))
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    if args.telemetry:
        from controller.telemetry.topics import json_schemas  # pydantic only: no MQTT client needed

        print(json.dumps(json_schemas(), indent=2))
        return 0
    from controller.protocol import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _cmd_sim(args: argparse.Namespace) -> int:
    from sim.cli import main as sim_main

    return sim_main(args.sim_args)


def _run(session: SessionArgs) -> int:
    from controller.protocol import ProtocolError
    from controller.session.runner import SessionError, SessionInputError, run_session

    try:
        opts = session.to_run_options()
    except ValueError as exc:  # e.g. --stream with no name
        print(f"neuroreflex: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_session(opts)
    except ProtocolError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except SessionInputError as exc:  # bad input that no file position names (e.g. --stream INPUT=)
        print(f"neuroreflex: {exc}", file=sys.stderr)
        return 2
    except SessionError as exc:
        print(f"neuroreflex: session failed: {exc}", file=sys.stderr)
        return 1
    print(f"session {result.status}: {result.session_dir}")
    if result.failure:
        print(f"neuroreflex: session failed: {result.failure}", file=sys.stderr)
    for b in result.block_stats:
        if b.get("reward_rate") is not None:
            print(f"  block {b['index'] + 1:2d} {b['label']:<9} reward rate {100 * b['reward_rate']:5.1f}%")
    if result.report is not None:
        print(f"report: {result.report}")
    return 0 if result.status in ("completed", "stopped") else 1


def _cmd_run(args: argparse.Namespace) -> int:
    from controller.session.args import SessionArgs

    return _run(SessionArgs.from_namespace(args))


DEMO_INTRO = ("neuroreflex demo: a simulated theta/beta neurofeedback session (ADHD protocol, shortened to ~3 min).\n"
              "A simulated participant streams 64-channel EEG over LSL; the controller rewards a low theta/beta ratio\n"
              "at Cz and the participant learns from the rewards.\n")


def _cmd_demo(args: argparse.Namespace) -> int:
    from controller.session.args import SessionArgs

    print(DEMO_INTRO)
    return _run(SessionArgs.from_namespace(args))


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuroreflex", description=__doc__.split("\n")[0])
    from controller import __version__

    parser.add_argument("--version", action="version", version=f"neuroreflex {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    from controller.session.args import (
        add_fmri_arguments,
        add_session_arguments,
        add_simulator_arguments,
        add_stimulation_arguments,
        add_stream_argument,
    )

    p = sub.add_parser("validate", help="check a protocol file; errors as FILE:LINE:COL: message")
    p.add_argument("protocol")
    p.add_argument("--site", default=None, metavar="SITE", help="also check its stimulation against this site config")
    p.add_argument("--check-streams", action="store_true",
                   help="also resolve each input's LSL stream now and check its channels, rate and units")
    add_stream_argument(p, "check this stream (implies --check-streams)")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("schema", help="print the protocol JSON Schema (for editor completion)")
    p.add_argument("--telemetry", action="store_true",
                   help="print instead the JSON Schema of each telemetry topic's payload (keyed by topic kind)")
    p.set_defaults(func=_cmd_schema)

    p = sub.add_parser("sim", help="simulators: `neuroreflex sim eeg --help`", add_help=False)
    p.add_argument("sim_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_sim)

    p = sub.add_parser("run", help="run a session from a protocol")
    p.add_argument("protocol")
    p.add_argument("--sim", action="store_true",
                   help="simulated participant as the input, virtual devices for the stimulators")
    add_stream_argument(p, "e.g. a real amplifier or a recording streamed by another tool")
    add_session_arguments(p)
    add_stimulation_arguments(p)
    add_fmri_arguments(p)
    add_simulator_arguments(p, "simulated participant (with --sim)")
    p.set_defaults(func=_cmd_run)

    import protocols

    p = sub.add_parser("demo", help="a ~3 min simulated theta/beta session, then the report")
    add_session_arguments(p)
    add_simulator_arguments(p, "simulated participant")
    # what the demo does not offer, fixed: the demo protocol, always simulated, no stimulator, no fMRI
    p.set_defaults(func=_cmd_demo, protocol=protocols.find("tbr_demo"), sim=True, stream=[], arm=False, hardware=False, virtual_devices=False,
                   run=None, volumes_folder=None, speed=None, volumes=None, learning_rate=DEMO_LEARNING_RATE)

    p = sub.add_parser("report", help="(re)build the report of a session folder")
    p.add_argument("session_dir")
    p.set_defaults(func=_cmd_report)

    from controller.display import cli as display_cli  # argparse only: Qt is imported when it runs

    p = sub.add_parser("display", help="Qt displays following a session over LSL: thermometer, fmri-panel")
    display_cli.add_arguments(p)
    p.set_defaults(func=display_cli.main)

    from controller.console import cli as console_cli  # argparse only: Qt is imported when it runs

    p = sub.add_parser("console", help="the operator console: set up, preflight, live view, control, review")
    console_cli.add_arguments(p)
    p.set_defaults(func=console_cli.main)

    from controller.telemetry import monitor as monitor_cli  # argparse only: aiomqtt is imported when it runs

    p = sub.add_parser("monitor", help="every session on an MQTT broker, live; --send SESSION CMD: a remote command")
    monitor_cli.add_arguments(p)
    p.set_defaults(func=monitor_cli.main)

    from controller.operator.control_cli import add_control_commands

    add_control_commands(sub)  # estop, status, arm, disarm: talk to running sessions
    return parser


def _sigterm_to_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["estop"]:  # before any parser or import: the operator waits on start-up (estop_cli)
        from controller.operator.estop_cli import main as estop_main

        return estop_main(argv[1:], prog="neuroreflex estop")
    if argv[:1] == ["monitor"]:  # no LSL, no protocol machinery: a remote E-STOP leaves without them
        from controller.telemetry.monitor import run as monitor_run

        return monitor_run(argv[1:])
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
