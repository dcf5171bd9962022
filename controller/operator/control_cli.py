"""``neuroreflex estop|status|arm|disarm``: talk to running sessions from another terminal.

Kept apart from cli.py's other commands so that nothing heavy (numpy, LSL) is imported before
an E-STOP is on its way. (``neuroreflex estop`` itself does not even come here: cli.main hands
it to estop_cli before building any parser; this module gives it its help and errors.)
"""

from __future__ import annotations

import argparse
import json
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers know the name)

from controller.operator import control_client as cc  # noqa: E402  (after TYPE_CHECKING, on purpose
from controller.operator import estop_cli  # noqa: E402

if TYPE_CHECKING:
    from typing import Any


def add_control_commands(sub: argparse._SubParsersAction) -> None:
    """Add estop/status/arm/disarm to the ``neuroreflex`` parser (``control=True`` marks them: the
    CLI dispatches them before any LSL set-up)."""
    p = sub.add_parser("estop", help=estop_cli.ESTOP_HELP)
    estop_cli.add_estop_options(p)
    p.set_defaults(func=cmd_estop, control=True)

    p = sub.add_parser("status", help="state, armed devices and interlocks of every running session")
    p.add_argument("--json", action="store_true", help="one JSON object per session")
    _common(p)
    p.set_defaults(func=cmd_status, control=True)

    p = sub.add_parser("arm", help="arm a device of a running session (an operator act; the session may refuse)")
    p.add_argument("device")
    p.add_argument("--operator", required=True, metavar="NAME", help="who arms (recorded in the journal)")
    _common(p)
    p.set_defaults(func=cmd_arm, control=True)

    p = sub.add_parser("disarm", help="disarm a device of every running session (or --session ID)")
    p.add_argument("device")
    p.add_argument("--reason", default="", metavar="TEXT")
    _common(p)
    p.set_defaults(func=cmd_disarm, control=True)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--session", default=None, metavar="ID", help="only this session")
    p.add_argument("--dir", default=None, metavar="DIR",
                   help=f"where sessions listen (default: every usual place; or ${cc.ENV_DIR})")
    p.add_argument("--timeout", type=float, default=cc.DEFAULT_CLIENT_TIMEOUT_S, metavar="SECONDS",
                   help="how long to wait for each session's reply")


def _send(args: argparse.Namespace, command: str, payload: dict[str, Any]) -> tuple[list[cc.Reply], int | None]:
    """Send to the selected sessions; returns (live replies, exit code if nothing could be sent)."""
    return estop_cli.send_and_check(command, payload, args.session, args.dir, args.timeout)


def cmd_estop(args: argparse.Namespace) -> int:
    return estop_cli.estop(args.reason, args.session, args.dir, args.timeout)


def cmd_disarm(args: argparse.Namespace) -> int:
    payload = {"device": args.device, "reason": args.reason or "disarm from the command line", "origin": cc.origin()}
    replies, code = _send(args, cc.DISARM, payload)
    if code is not None:
        return code
    print(f"disarm {args.device} sent to {len(replies)} session(s)")
    return estop_cli.print_acks(replies)


def cmd_arm(args: argparse.Namespace) -> int:
    if args.session is None:  # arming goes to one session the operator named, or the only one
        dirs = estop_cli.directories(args.dir)
        problems: list[str] = []
        try:
            live = [p for p in cc.find_sockets(dirs, problems) if not cc.remove_if_stale(p)]
        except cc.ControlError as exc:
            print(f"neuroreflex arm: {exc}", file=sys.stderr)
            return 2
        live = [p for p in live if p.exists()]
        if len(live) > 1:
            names = ", ".join(cc.session_of(p) for p in live)
            print(f"neuroreflex arm: several sessions are running ({names}): name one with --session",
                  file=sys.stderr)
            return 2
        if live:
            args.session = cc.session_of(live[0])
    payload = {"device": args.device, "operator": args.operator, "origin": cc.origin()}
    replies, code = _send(args, cc.ARM, payload)
    if code is not None:
        return code
    return estop_cli.print_acks(replies)


def cmd_status(args: argparse.Namespace) -> int:
    replies, code = _send(args, cc.STATUS, {"origin": cc.origin()})
    if code is not None:
        return code
    failed = 0
    for r in replies:
        if args.json:
            print(json.dumps({"session": r.session, "ok": r.ok, "result": r.result, "error": r.error,
                              "rtt_ms": None if r.rtt_s is None else 1000 * r.rtt_s}, default=str))
            failed += not r.ok
            continue
        if not r.ok:
            failed += 1
            print(f"session {r.session}: NO STATUS: {r.error}")
            continue
        print(f"session {r.session}  (round trip {estop_cli.ms(r.rtt_s)})")
        for key, value in r.result.items():
            print(f"  {key}: {estop_cli.value_text(value)}")
    return 0 if not failed else 1
