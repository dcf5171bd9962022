"""``neuroreflex estop|status|arm|disarm``: talk to running sessions from another terminal.

Kept apart from cli.py's other commands so that nothing heavy (numpy, LSL) is imported before
an E-STOP is on its way.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers know the name)

from controller import control_channel as cc

if TYPE_CHECKING:
    from typing import Any


def add_control_commands(sub: argparse._SubParsersAction) -> None:
    """Add estop/status/arm/disarm to the ``neuroreflex`` parser (``control=True`` marks them: the
    CLI dispatches them before any LSL set-up)."""
    p = sub.add_parser("estop", help="E-STOP every running session (or --session ID): disarm all its devices")
    p.add_argument("--reason", default="", metavar="TEXT", help="why (goes into the session's journal)")
    _common(p)
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


def _dirs(args: argparse.Namespace) -> list[Path]:
    return [Path(args.dir)] if args.dir else cc.candidate_dirs()


def _where(dirs: list[Path]) -> str:
    return ", ".join(str(d) for d in dirs)


def _send(args: argparse.Namespace, command: str, payload: dict[str, Any]) -> tuple[list[cc.Reply], int | None]:
    """Send to the selected sessions; returns (live replies, exit code if nothing could be sent)."""
    dirs = _dirs(args)
    problems: list[str] = []
    try:
        replies = cc.request(command, payload, session=args.session, directories=dirs, timeout=args.timeout,
                             problems=problems)
    except cc.ControlError as exc:
        print(f"neuroreflex {command}: {exc}", file=sys.stderr)
        return [], 2
    for text in problems:
        print(f"neuroreflex {command}: skipped: {text}", file=sys.stderr)
    for r in replies:
        if r.stale:
            print(f"removed the socket of session {r.session}, which is no longer running ({r.path})",
                  file=sys.stderr)
    live = [r for r in replies if not r.stale]
    if not live:
        which = f"session {args.session!r}" if args.session else "running neuroreflex session"
        print(f"neuroreflex {command}: no {which} found in {_where(dirs)}", file=sys.stderr)
        return [], 1
    return live, None


def _ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{1000 * seconds:.2f} ms"


def _summary(result: dict[str, Any]) -> str:
    if isinstance(result.get("message"), str):
        return result["message"]
    return ", ".join(f"{k}: {_value(v)}" for k, v in result.items() if k != "ok") or "done"


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v) if v else "none"
    if isinstance(v, dict):
        return json.dumps(v, default=str) if v else "none"
    return str(v)


def _acknowledged(r: cc.Reply) -> bool:
    return r.ok and r.result.get("ok", True) is not False


def _print_acks(command: str, replies: list[cc.Reply]) -> int:
    failed = 0
    for r in replies:
        timing = f"round trip {_ms(r.rtt_s)}"
        if r.handler_delay_s is not None:
            timing += f", handler reached {_ms(r.handler_delay_s)} after send"
        if _acknowledged(r):
            print(f"  session {r.session}: acknowledged: {_summary(r.result)}  ({timing})")
        else:
            failed += 1
            why = r.error or _summary(r.result)
            print(f"  session {r.session}: NOT acknowledged: {why}" + (f"  ({timing})" if r.rtt_s else ""))
    return 0 if not failed else 1


def cmd_estop(args: argparse.Namespace) -> int:
    payload = {"reason": args.reason or "E-STOP from the command line", "origin": cc.origin()}
    replies, code = _send(args, cc.ESTOP, payload)
    if code is not None:
        return code
    print(f"E-STOP sent to {len(replies)} session(s)")
    code = _print_acks(cc.ESTOP, replies)
    if code:
        print("E-STOP NOT confirmed by every session: use the device's own stop button", file=sys.stderr)
    return code


def cmd_disarm(args: argparse.Namespace) -> int:
    payload = {"device": args.device, "reason": args.reason or "disarm from the command line", "origin": cc.origin()}
    replies, code = _send(args, cc.DISARM, payload)
    if code is not None:
        return code
    print(f"disarm {args.device} sent to {len(replies)} session(s)")
    return _print_acks(cc.DISARM, replies)


def cmd_arm(args: argparse.Namespace) -> int:
    if args.session is None:  # arming goes to one session the operator named, or the only one
        dirs = _dirs(args)
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
    return _print_acks(cc.ARM, replies)


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
        print(f"session {r.session}  (round trip {_ms(r.rtt_s)})")
        for key, value in r.result.items():
            print(f"  {key}: {_value(value)}")
    return 0 if not failed else 1
