"""The client side of the control channel: find running sessions and send them one command.

Kept apart from control_channel.py (the session's listener) and light on imports: ``neuroreflex
estop`` runs this in a fresh process, and every millisecond of start-up is a millisecond before
the E-STOP leaves. Only modules the interpreter has loaded anyway or that are built in (os,
stat, sys, time, socket, select) are imported before the requests are out; ``json`` is imported
only to read the replies (the request line is written by ``encode_request``, which falls back
to ``json`` for anything but the plain values a command carries).

Wire format and safety checks are control_channel.py's (see its docstring): one JSON line each
way per connection; a directory is used only if it is a real directory of ours, mode 0700.
"""

from __future__ import annotations

import os
import select
import socket
import stat
import time
from pathlib import Path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers know the name)

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

ESTOP = "estop"
STATUS = "status"
ARM = "arm"
DISARM = "disarm"
PAUSE = "pause"
RESUME = "resume"
SKIP = "skip"
STOP = "stop"
THRESHOLD = "threshold"
NOTE = "note"
CLEAR_ESTOP = "clear_estop"
COMMANDS = (ESTOP, STATUS, ARM, DISARM, PAUSE, RESUME, SKIP, STOP, THRESHOLD, NOTE, CLEAR_ESTOP)

MAX_REQUEST_BYTES = 4096
MAX_REPLY_BYTES = 256 * 1024
DEFAULT_CLIENT_TIMEOUT_S = 2.0

ENV_DIR = "NEUROREFLEX_CONTROL_DIR"  # one explicit directory for listeners and clients (tests, several rigs)
SUFFIX = ".sock"


class ControlError(RuntimeError):
    """The control channel cannot be set up safely; the message says what and where."""


# ---------------------------------------------------------------------------------------------
# Where the sockets live


def runtime_dir() -> Path:
    """The directory this process's session listens in (not created)."""
    explicit = os.environ.get(ENV_DIR)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "neuroreflex"
    return Path(f"/tmp/neuroreflex-{os.geteuid()}")


def candidate_dirs() -> list[Path]:
    """Every directory a session of this user may listen in, so a client started from another kind
    of terminal (ssh without XDG_RUNTIME_DIR, a desktop terminal with it) still finds it."""
    if os.environ.get(ENV_DIR):
        return [Path(os.environ[ENV_DIR])]
    uid = os.geteuid()
    out = [runtime_dir(), Path(f"/run/user/{uid}/neuroreflex"), Path(f"/tmp/neuroreflex-{uid}")]
    return list(dict.fromkeys(out))


def check_private_dir(path: Path, fix_mode: bool = False) -> None:
    """Refuse a directory another user could have planted or could write into (they could then
    intercept or fake E-STOP replies)."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ControlError(f"{path}: the control directory is not a plain directory (a symlink or a file): "
                           "refusing it; remove it")
    if st.st_uid != os.geteuid():
        raise ControlError(f"{path}: the control directory belongs to uid {st.st_uid}, not to you "
                           f"(uid {os.geteuid()}): refusing it; remove it")
    if stat.S_IMODE(st.st_mode) & 0o077:
        if not fix_mode:
            raise ControlError(f"{path}: the control directory is open to other users "
                               f"(mode {stat.S_IMODE(st.st_mode):o}): refusing it; chmod 700 it")
        os.chmod(path, 0o700)


def session_of(path: Path) -> str:
    return path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name


def find_sockets(directories: Iterable[Path] | None = None, problems: list[str] | None = None) -> list[Path]:
    """Socket files in the given (or every candidate) directory, live or stale, sorted by name.
    Missing directories are skipped; an unsafe one raises ControlError, or, when a ``problems``
    list is given, is noted there and skipped (so one planted directory cannot hide the others)."""
    out: list[Path] = []
    for d in directories if directories is not None else candidate_dirs():
        try:
            check_private_dir(d)
        except FileNotFoundError:
            continue
        except ControlError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
            continue
        for entry in sorted(os.scandir(d), key=lambda e: e.name):
            if entry.name.endswith(SUFFIX) and not entry.name.startswith("."):
                if stat.S_ISSOCK(entry.stat(follow_symlinks=False).st_mode):
                    out.append(Path(entry.path))
    return out


def is_live(path: Path, timeout: float = 0.5) -> bool:
    """Whether something listens on ``path`` (busy or timing out counts as live: not provably dead)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
        return True
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True
    finally:
        s.close()


def remove_if_stale(path: Path) -> bool:
    """Unlink ``path`` if it is our socket file and nobody listens on it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid() or is_live(path):
        return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return True


# ---------------------------------------------------------------------------------------------
# Requests and replies


_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\"})


def _json_value(v: Any) -> str:
    """JSON for the values a command carries (str, int, bool, None, flat dicts of them); anything
    else goes through ``json``."""
    if isinstance(v, str):
        return '"' + v.translate(_ESCAPES) + '"'
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    if type(v) is int:
        return str(v)
    if type(v) is dict and all(isinstance(k, str) for k in v):
        return "{" + ",".join(f"{_json_value(k)}:{_json_value(x)}" for k, x in v.items()) + "}"
    import json

    return json.dumps(v, default=str, separators=(",", ":"))


def encode_request(command: str, args: dict[str, Any] | None = None) -> bytes:
    """The request line ``{"cmd": ..., "args": {...}}`` + newline, as UTF-8."""
    text = '{"cmd":' + _json_value(command) + ',"args":' + _json_value(args or {}) + "}\n"
    try:
        return text.encode()
    except UnicodeEncodeError:  # lone surrogates: json escapes them
        import json

        return (json.dumps({"cmd": command, "args": args or {}}, default=str, separators=(",", ":")) + "\n").encode()


class Reply:
    """One session's answer. ``stale``: nobody listened (a dead session's socket, removed).
    ``rtt_s``: send to reply read. ``handler_delay_s``: send to the handler being called (both on
    this host's monotonic clock)."""

    __slots__ = ("session", "path", "ok", "result", "error", "stale", "rtt_s", "handler_delay_s")

    def __init__(self, session: str, path: Path, ok: bool, result: dict[str, Any] | None = None,
                 error: str | None = None, stale: bool = False, rtt_s: float | None = None,
                 handler_delay_s: float | None = None) -> None:
        self.session, self.path, self.ok = session, path, ok
        self.result = result if result is not None else {}
        self.error, self.stale, self.rtt_s, self.handler_delay_s = error, stale, rtt_s, handler_delay_s

    def __repr__(self) -> str:
        return "Reply(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


def origin() -> str:
    """Who and where a request comes from, for the session's journal."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or str(os.geteuid())
    where = f"{user}@{socket.gethostname()} pid {os.getpid()}"
    for fd in (0, 1, 2):
        try:
            return f"{where} tty {os.ttyname(fd)}"
        except OSError:
            continue
    return where


def send(paths: Sequence[Path], command: str, args: dict[str, Any] | None = None, *,
         timeout: float = DEFAULT_CLIENT_TIMEOUT_S, remove_stale_sockets: bool = True) -> list[Reply]:
    """Send one command to each socket: every request goes out before any reply is awaited (an
    E-STOP reaches all sessions first); replies are then read concurrently, each within ``timeout``."""
    line = encode_request(command, args)
    if len(line) > MAX_REQUEST_BYTES:
        raise ValueError(f"request longer than {MAX_REQUEST_BYTES} bytes")
    replies: dict[Path, Reply] = {}
    pending: dict[int, tuple[socket.socket, Path, float, bytearray]] = {}
    for path in paths:
        sid = session_of(path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            s.close()
            if remove_stale_sockets:
                remove_if_stale(path)
            replies[path] = Reply(sid, path, False, error="not running (stale socket)", stale=True)
            continue
        except OSError as exc:
            s.close()
            replies[path] = Reply(sid, path, False, error=f"cannot connect: {exc.strerror or exc}")
            continue
        t0 = time.monotonic()
        try:
            s.sendall(line)
        except OSError as exc:  # the session hung up first (refused peer, ...): read why if it said so
            said = _leftover(s)
            s.close()
            replies[path] = (_parse_reply(path, said, t0, time.monotonic(), exc) if said.strip()
                             else Reply(sid, path, False, error=f"cannot send: {exc.strerror or exc}"))
            continue
        s.setblocking(False)
        pending[s.fileno()] = (s, path, t0, bytearray())
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLIN)
    deadline = {fd: t0 + timeout for fd, (_, _, t0, _) in pending.items()}
    try:
        while pending:
            wait = max(0.0, min(deadline.values()) - time.monotonic())
            for fd, _ in poller.poll(1000 * wait):
                s, path, t0, buf = pending[fd]
                try:
                    chunk = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    chunk, err = b"", exc
                else:
                    err = None
                buf += chunk
                if b"\n" in buf or not chunk or len(buf) > MAX_REPLY_BYTES:
                    replies[path] = _parse_reply(path, bytes(buf), t0, time.monotonic(), err)
                    poller.unregister(fd)
                    s.close()
                    del pending[fd], deadline[fd]
            now = time.monotonic()
            for fd in [fd for fd, d in deadline.items() if d <= now]:
                s, path = pending[fd][:2]
                replies[path] = Reply(session_of(path), path, False,
                                      error=f"no reply within {timeout:g} s (the session may be hung)")
                poller.unregister(fd)
                s.close()
                del pending[fd], deadline[fd]
    finally:
        for s, *_ in pending.values():
            s.close()
    return [replies[p] for p in paths]


def _leftover(s: socket.socket) -> bytes:
    """What the peer sent before it closed, if anything (without waiting)."""
    try:
        s.setblocking(False)
        return s.recv(MAX_REPLY_BYTES)
    except OSError:
        return b""


def _parse_reply(path: Path, data: bytes, t0: float, t1: float, err: OSError | None) -> Reply:
    import json  # after the requests are out: not on the E-STOP's way

    sid = session_of(path)
    line = data.split(b"\n", 1)[0]
    if not line.strip():
        why = f": {err.strerror or err}" if err is not None else ""
        return Reply(sid, path, False, error=f"the session closed the connection without a reply{why}", rtt_s=t1 - t0)
    try:
        obj = json.loads(line)
        if not isinstance(obj, dict):
            raise ValueError("not an object")
    except ValueError:
        return Reply(sid, path, False, error=f"unreadable reply: {line[:200]!r}", rtt_s=t1 - t0)
    t_handler = obj.get("t_handler")
    delay = t_handler - t0 if isinstance(t_handler, (int, float)) else None
    result = obj.get("result") if isinstance(obj.get("result"), dict) else {}
    return Reply(str(obj.get("session") or sid), path, bool(obj.get("ok")), result,
                 obj.get("error") if not obj.get("ok") else None, False, t1 - t0, delay)


def request(command: str, args: dict[str, Any] | None = None, *, session: str | None = None,
            directories: Iterable[Path] | None = None, timeout: float = DEFAULT_CLIENT_TIMEOUT_S,
            problems: list[str] | None = None) -> list[Reply]:
    """Send ``command`` to the session ``session`` or to every session found; stale sockets come
    back as replies with ``stale=True`` (and are removed). See find_sockets for ``problems``."""
    dirs = list(directories) if directories is not None else candidate_dirs()
    paths = find_sockets(dirs, problems)
    if session is not None:
        paths = [p for p in paths if session_of(p) == session]
    return send(paths, command, args, timeout=timeout)
