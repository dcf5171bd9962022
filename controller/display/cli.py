"""``neuroreflex display thermometer|game|fmri-panel``: the Qt displays, each in its own process.

    neuroreflex display thermometer --prefix neuroreflex --fullscreen \\
        --protocol protocols/amygdala_mdd.yaml --run nf2 --instruction happy="Recall a happy memory"
    neuroreflex display fmri-panel --prefix neuroreflex --fd-threshold 0.5
    neuroreflex display game --protocol protocols/tbr_adhd.yaml   # EEG: a rocket, a score, a reward chime

Both follow the session's LSL outlets (start them before or after the session; they wait, and
switch to the next session's streams of the same name by themselves). The target line comes from
``--target`` (bar fraction), from the protocol run's fixed threshold (``--protocol P --run R``:
threshold ``target`` or ``--target-threshold NAME``, scaled by the feedback range; a run with
feedback off shows instructions only), from ``target:<fraction>`` markers, or from
``threshold:<name>=<value>`` markers for ``--target-threshold NAME`` converted with the feedback
range (from ``--protocol`` or ``--range``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

WHICH = ("thermometer", "game", "fmri-panel")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``display`` subcommand's arguments (``set_defaults(func=main)`` is the caller's)."""
    parser.add_argument("which", choices=WHICH, help="the participant's thermometer or game (the thermometer's options apply), or the operator's fMRI panel")
    parser.add_argument("--prefix", default="neuroreflex", help="LSL stream prefix of the session (default: %(default)s)")
    parser.add_argument("--session", default=None, metavar="ID",
                        help="the session to follow (its id: `neuroreflex status` lists them); default: the only "
                             "session visible (several visible: an error that lists them)")
    parser.add_argument("--fullscreen", action="store_true", help="full screen (the projector's screen)")
    parser.add_argument("--size", default="1024x768", metavar="WxH", help="window size when not full screen")
    g = parser.add_argument_group("thermometer")
    g.add_argument("--protocol", default=None, metavar="FILE",
                   help="read the feedback range and feedback blocks (feedback.during) from this protocol")
    g.add_argument("--run", default=None, metavar="NAME|N",
                   help="with --protocol: the run shown (its target level; a transfer run shows no bar)")
    g.add_argument("--instruction", action="append", default=[], metavar="LABEL=TEXT",
                   help="text shown during blocks LABEL (repeatable); defaults: happy, count, rest, ...")
    g.add_argument("--feedback-blocks", nargs="+", default=None, metavar="LABEL",
                   help="blocks that show the bar (default: the protocol's feedback.during, else blocks "
                        "where feedback values arrive)")
    g.add_argument("--target", type=float, default=None, metavar="FRACTION", help="target line at this bar fraction (0..1)")
    g.add_argument("--target-threshold", default=None, metavar="NAME",
                   help="follow threshold:NAME=VALUE markers as the target line")
    g.add_argument("--range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="the feedback range (feature units) for --target-threshold, if no --protocol")
    g = parser.add_argument_group("fmri-panel")
    g.add_argument("--fd-threshold", type=float, default=0.5, metavar="MM", help="FD threshold line (default: 0.5 mm)")
    g.add_argument("--tr", type=float, default=None, metavar="S", help="TR in s (default: from the QC stream's stamps)")
    g = parser.add_argument_group("unattended use (tests, documentation)")
    g.add_argument("--quit-after", type=float, default=None, metavar="S", help="quit after S seconds")
    g.add_argument("--screenshot", default=None, metavar="PNG", help="with --quit-after: save the window just before quitting")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if w > 0 and h > 0:
            return w, h
    except ValueError:
        pass
    raise ValueError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 1024x768")


def _thermometer_state(args: argparse.Namespace):
    from controller.display.markers import parse_instructions
    from controller.display.model import ThermometerState

    feedback_range = tuple(args.range) if args.range else None
    blocks = frozenset(args.feedback_blocks) if args.feedback_blocks else None
    target = args.target
    threshold_name = args.target_threshold
    if args.protocol:
        from controller.display.markers import scale_to_bar
        from controller.protocol import load_protocol
        from controller.protocol.runs import select_run

        protocol = select_run(load_protocol(args.protocol), args.run)  # RunChoiceError is a ValueError
        fb = protocol.feedback
        if fb is None:  # a transfer run (or a protocol without feedback): instructions only
            blocks = frozenset() if blocks is None else blocks
        else:
            feedback_range = feedback_range or (fb.low, fb.high)
            if blocks is None and fb.during:
                blocks = frozenset(fb.during)
        if threshold_name is None and target is None and "target" in protocol.thresholds:
            threshold_name = "target"
        spec = protocol.thresholds.get(threshold_name) if threshold_name else None
        if threshold_name and spec is None:
            raise ValueError(f"--target-threshold {threshold_name}: {args.protocol} has no such threshold "
                             f"(it has: {', '.join(protocol.thresholds) or 'none'})")
        if target is None and spec is not None and spec.fixed is not None and feedback_range is not None:
            target = scale_to_bar(spec.fixed, *feedback_range)  # this run's target level
    elif args.run is not None:
        raise ValueError("--run needs --protocol")
    if target is not None and not 0.0 <= target <= 1.0:
        raise ValueError(f"--target {args.target:g}: a bar fraction must be within 0..1")
    if args.target_threshold and feedback_range is None and not args.protocol:
        raise ValueError("--target-threshold needs the feedback range: give --protocol or --range LOW HIGH")
    if feedback_range is None:  # a protocol without feedback (transfer run): no bar, so no target
        threshold_name = None
    if feedback_range is not None and feedback_range[0] == feedback_range[1]:
        raise ValueError(f"feedback range {feedback_range}: LOW and HIGH must differ")
    return ThermometerState(instructions=parse_instructions(args.instruction), feedback_blocks=blocks,
                            target=target, target_threshold=threshold_name,
                            feedback_range=feedback_range)


def main(args: argparse.Namespace) -> int:
    """Open the display and run Qt's event loop until the window closes (exit 0; 2 for bad options)."""
    from controller.protocol import ProtocolError

    try:
        size = _size(args.size)
        state = _thermometer_state(args) if args.which in ("thermometer", "game") else None
    except ProtocolError as exc:  # FILE:LINE:COL: message
        print(str(exc), file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"neuroreflex display: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{args.protocol}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return 2

    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM")):
        print("neuroreflex display: no screen (DISPLAY/WAYLAND_DISPLAY unset); for a headless test set "
              "QT_QPA_PLATFORM=offscreen", file=sys.stderr)
        return 1
    from controller.inputs.lsl.sessions import SessionChoiceError, choose_session

    kind = "feedback" if args.which in ("thermometer", "game") else "fmri-qc"
    try:
        streams = choose_session(args.prefix, args.session, kind, wait_s=args.quit_after,
                                 say=lambda text: print(f"neuroreflex display: {text}", file=sys.stderr))
    except SessionChoiceError as exc:
        print(f"neuroreflex display: {exc}", file=sys.stderr)
        return 2
    print(f"neuroreflex display: following {streams}-*", file=sys.stderr)
    from PySide6 import QtCore

    from controller.display.qt import application

    app = application()
    if args.which == "thermometer":
        from controller.display.thermometer import LslThermometer

        window = LslThermometer(streams, state)
    elif args.which == "game":
        from controller.display.participant import ParticipantWindow

        window = ParticipantWindow("game", streams, state=state)
    else:
        from controller.display.model import PanelState
        from controller.display.panel import LslOperatorPanel

        window = LslOperatorPanel(streams, PanelState(fd_threshold_mm=args.fd_threshold, tr_s=args.tr))
    window.resize(*size)
    if args.fullscreen:
        window.showFullScreen()
    else:
        window.show()
    failed: list[str] = []
    if args.quit_after is not None:
        def finish() -> None:
            if args.screenshot:
                Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
                if not window.grab().save(args.screenshot):
                    failed.append(f"{args.screenshot}: Qt could not write the PNG")
            window.close()
            app.quit()
        QtCore.QTimer.singleShot(int(args.quit_after * 1000), finish)
    app.exec()
    for message in failed:
        print(message, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":  # python -m controller.display.cli thermometer ...
    from controller.lsl_config import configure

    configure()
    _parser = argparse.ArgumentParser(prog="neuroreflex display", description=__doc__.split("\n")[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
