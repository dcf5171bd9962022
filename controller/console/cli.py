"""``neuroreflex console``: the operator's window (Qt; the ``gui`` extra).

    neuroreflex console                                   # set up, preflight, run
    neuroreflex console --protocol protocols/tbr_adhd.yaml --operator ana --participant p01
    neuroreflex console --attach ab12cd34                 # follow a session started from the command line
    neuroreflex console --review sessions/20261207-101500_tbr_adhd
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", default=None, metavar="FILE", help="preselect this protocol (validated at once)")
    p.add_argument("--site", default=None, metavar="FILE", help="the site config (stimulation limits and devices)")
    p.add_argument("--operator", default="", help="the operator's name (journaled with every act)")
    p.add_argument("--participant", default="", help="participant ID (the dose ledger is per participant)")
    p.add_argument("--session-dir", default="sessions", metavar="DIR", help="where session folders go")
    p.add_argument("--attach", default=None, metavar="SESSION_ID", help="follow a running session (`neuroreflex status`)")
    p.add_argument("--review", default=None, metavar="SESSION_DIR", help="open a finished session folder")
    p.add_argument("--start", action="store_true",
                   help="start the session at once with the set-up given here (unattended rehearsals, tests)")
    p.add_argument("--real", action="store_true", help="real streams on the network (default: a simulated participant)")
    p.add_argument("--exit-after", type=float, default=None, metavar="SECONDS",
                   help="close after this long and print what was drawn (benches; the session goes on)")
    p.add_argument("--size", default=None, metavar="WxH", help="window size (default: 1400x950)")
    p.add_argument("--sim-channels", default="64", metavar="N|LABELS",
                   help="simulated participant's channels: a count or labels C3,C4,... (default %(default)s)")
    p.add_argument("--sim-rate", type=float, default=500.0, help="simulated participant's rate, Hz (default %(default)s)")
    p.add_argument("--sim-chunk", type=int, default=None, metavar="SAMPLES", help="samples per chunk (an amplifier's block)")
    p.add_argument("--sim-arg", action="append", default=[], metavar="ARG",
                   help="more `neuroreflex sim eeg` arguments, e.g. --sim-arg=--seizure --sim-arg=90:60")


def main(args: argparse.Namespace) -> int:
    try:
        from PySide6 import QtWidgets  # noqa: F401
    except ImportError:
        print("neuroreflex console needs the gui extra: pip install -e '.[gui]' (and Qt's system libraries: "
              "README, Troubleshooting)", file=sys.stderr)
        return 1
    from controller.console.window import ConsoleWindow
    from controller.display.qt import application

    app = application()
    window = ConsoleWindow(operator=args.operator, participant=args.participant,
                           session_root=Path(args.session_dir), site=Path(args.site) if args.site else None,
                           sim_channels=int(args.sim_channels) if args.sim_channels.isdigit() else args.sim_channels,
                           sim_rate=args.sim_rate, sim_chunk=args.sim_chunk, sim_extra=args.sim_arg)
    if args.protocol:
        window.setup_page.choose_protocol(Path(args.protocol))
    if args.real:
        window.setup_page.real.setChecked(True)
    if args.start:
        window.start_session()
        if window.link is None:
            print("neuroreflex console: " + "\n".join(window.log_lines), file=sys.stderr)
            return 2
        print(f"session {window.link.session_id}", flush=True)
    if args.attach:
        try:
            window.attach(args.attach)
        except Exception as exc:
            print(f"neuroreflex console: {exc}", file=sys.stderr)
            return 1
    if args.review:
        try:
            window.open_review(Path(args.review))
        except Exception as exc:
            print(f"neuroreflex console: {args.review}: {exc}", file=sys.stderr)
            return 2
    if args.size:
        w, h = (int(v) for v in args.size.lower().split("x"))
        window.resize(w, h)
    window.show()
    if args.exit_after is not None:
        from PySide6 import QtCore

        def report_and_quit() -> None:
            page = window.live_page
            model = page.signal_model if page is not None else None
            print(f"frames {window.frames} signal_samples {model.samples_in if model is not None else 0} "
                  f"channels {len(model.labels) if model is not None else 0}", flush=True)
            # one quit only: closing the last window would post a second one, and a quit left pending in the
            # queue ends the next event loop this process runs (a caller's, e.g. a test's) at once
            app.setQuitOnLastWindowClosed(False)
            window.close()
            app.quit()

        QtCore.QTimer.singleShot(int(args.exit_after * 1000), report_and_quit)
    try:
        return int(app.exec())
    finally:
        app.setQuitOnLastWindowClosed(True)
