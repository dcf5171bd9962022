"""``neuroreflex estop`` and ``neuroreflex-estop``: the E-STOP from another terminal, started fast.

Why a module of its own: the operator's wait is process start-up plus the command, and start-up
dominates (interpreter, site, imports). ``cli.main`` hands ``estop`` here before it imports
anything else, and this module imports only control_client (stdlib, no json before the requests
are out). The options are read by hand for the usual forms; anything else (``--help``, a typo,
a bad number) goes to argparse, so errors and help read as for every other command.

Also the sending and acknowledgement printing shared by ``status``/``arm``/``disarm`` (control_cli).
"""

from __future__ import annotations

import sys
from pathlib import Path  # loaded at start-up anyway (site, control_client)

from controller.operator import control_client as cc

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers know the name)

if TYPE_CHECKING:
    from typing import Any

ESTOP_HELP = "E-STOP every running session (or --session ID): disarm all its devices"
_OPTIONS = ("--reason", "--session", "--dir", "--timeout")


def fast_options(argv: list[str]) -> dict[str, str] | None:
    """``--reason/--session/--dir/--timeout VALUE`` (or ``--opt=VALUE``) as a dict, or None when
    argv holds anything else (left to argparse, which says what is wrong)."""
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name not in _OPTIONS:
            return None
        if not eq:
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                return None
            value = argv[i + 1]
            i += 1
        out[name[2:]] = value
        i += 1
    if "timeout" in out:
        try:
            float(out["timeout"])
        except ValueError:
            return None
    return out


def add_estop_options(p: Any) -> None:
    """The estop command's options on an argparse parser (for help and errors)."""
    p.add_argument("--reason", default="", metavar="TEXT", help="why (goes into the session's journal)")
    p.add_argument("--session", default=None, metavar="ID", help="only this session")
    p.add_argument("--dir", default=None, metavar="DIR",
                   help=f"where sessions listen (default: every usual place; or ${cc.ENV_DIR})")
    p.add_argument("--timeout", type=float, default=cc.DEFAULT_CLIENT_TIMEOUT_S, metavar="SECONDS",
                   help="how long to wait for each session's reply")
    p.add_argument("--standby", action="store_true",
                   help="stay resident: every Enter sends the E-STOP at once (no start-up delay)")


def main(argv: list[str] | None = None, prog: str = "neuroreflex-estop") -> int:
    """E-STOP from argv (without the command word); exit code as ``estop``'s."""
    argv = sys.argv[1:] if argv is None else argv
    standby_mode = "--standby" in argv
    if standby_mode:
        argv = [a for a in argv if a != "--standby"]
    opts = fast_options(argv)
    if opts is None:  # help or a mistake: the full parser explains (and exits 0 or 2)
        import argparse

        p = argparse.ArgumentParser(prog=prog, description=ESTOP_HELP)
        add_estop_options(p)
        ns = p.parse_args(argv)
        opts = {k: v for k, v in vars(ns).items() if v is not None}
    args = (opts.get("reason") or "", opts.get("session"), opts.get("dir"),
            float(opts.get("timeout", cc.DEFAULT_CLIENT_TIMEOUT_S)))
    return standby(*args) if standby_mode else estop(*args)


def standby(reason: str, session: str | None, directory: str | None, timeout: float,
            lines: Any = None) -> int:
    """A resident E-STOP terminal: Enter sends the E-STOP at once.

    Why: a new process pays interpreter start-up (40-60 ms idle, several times that on a loaded
    machine) before the first byte goes out; a process already running sends within a few
    milliseconds. Keep one open beside the session console, like a hardware stop button.
    """
    lines = sys.stdin if lines is None else lines
    print("E-STOP standby: press Enter to E-STOP every running session"
          + (f" ({session})" if session else "") + "; Ctrl-D or Ctrl-C to leave", flush=True)
    code = 0
    try:
        for _ in lines:
            code = estop(reason or "E-STOP from the standby terminal", session, directory, timeout)
            print("E-STOP standby: Enter again to repeat", flush=True)
    except KeyboardInterrupt:
        pass
    return code


def estop(reason: str, session: str | None, directory: str | None, timeout: float) -> int:
    """Send the E-STOP and report each session's acknowledgement: 0 all confirmed, 1 not (or no session)."""
    payload = {"reason": reason or "E-STOP from the command line", "origin": cc.origin()}
    replies, code = send_and_check(cc.ESTOP, payload, session, directory, timeout)
    if code is not None:
        return code
    names = ", ".join(r.session for r in replies)
    if session is None:  # no --session: every session of this user on this machine, said out loud
        print(f"E-STOP sent to ALL {len(replies)} running session(s): {names} (--session ID for one)")
    else:
        print(f"E-STOP sent to session {names}")
    code = print_acks(replies)
    if code:
        print("E-STOP NOT confirmed by every session: use the device's own stop button", file=sys.stderr)
    return code


def directories(directory: str | None) -> list[Path]:
    return [Path(directory)] if directory else cc.candidate_dirs()


def send_and_check(command: str, payload: dict[str, Any], session: str | None, directory: str | None,
                   timeout: float) -> tuple[list[cc.Reply], int | None]:
    """Send to the selected sessions; returns (live replies, exit code if nothing could be sent)."""
    dirs = directories(directory)
    problems: list[str] = []
    try:
        replies = cc.request(command, payload, session=session, directories=dirs, timeout=timeout,
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
        which = f"session {session!r}" if session else "running neuroreflex session"
        print(f"neuroreflex {command}: no {which} found in {', '.join(str(d) for d in dirs)}", file=sys.stderr)
        return [], 1
    return live, None


def ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{1000 * seconds:.2f} ms"


def summary(result: dict[str, Any]) -> str:
    if isinstance(result.get("message"), str):
        return result["message"]
    return ", ".join(f"{k}: {value_text(v)}" for k, v in result.items() if k != "ok") or "done"


def value_text(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v) if v else "none"
    if isinstance(v, dict):
        import json

        return json.dumps(v, default=str) if v else "none"
    return str(v)


def acknowledged(r: cc.Reply) -> bool:
    return r.ok and r.result.get("ok", True) is not False


def print_acks(replies: list[cc.Reply]) -> int:
    """One line per session; 0 if every one acknowledged, else 1."""
    failed = 0
    for r in replies:
        timing = f"round trip {ms(r.rtt_s)}"
        if r.handler_delay_s is not None:
            timing += f", handler reached {ms(r.handler_delay_s)} after send"
        if acknowledged(r):
            print(f"  session {r.session}: acknowledged: {summary(r.result)}  ({timing})")
        else:
            failed += 1
            why = r.error or summary(r.result)
            print(f"  session {r.session}: NOT acknowledged: {why}" + (f"  ({timing})" if r.rtt_s else ""))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
