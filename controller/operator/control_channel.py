"""The operator control channel of a running session: E-STOP, status, arm, disarm from another terminal.

Each session listens on a UNIX stream socket named by its session id in a private per-user
directory (``$XDG_RUNTIME_DIR/neuroreflex/`` or ``/tmp/neuroreflex-<uid>/``, mode 0700; socket
0600; the peer's uid is checked with SO_PEERCRED). One request per connection, one JSON line
each way::

    -> {"cmd": "estop", "args": {"reason": "...", "origin": "ana@rig2 pid 4711 tty /dev/pts/3"}}
    <- {"ok": true, "session": "ab12cd34", "cmd": "estop", "result": {...}, "t_handler": 12345.678}

Why it is built this way:
- E-STOP and disarm (the safe direction) are handled on the listener thread itself, right after
  their line is parsed: no thread hand-off, no queue behind a slow ``status`` or ``arm``.
- One selector thread serves every connection without blocking, each with a deadline and a size
  limit, and the oldest idle connection is dropped when too many are open: a client that
  connects and sends nothing (or a flood of them) cannot delay another client's E-STOP.
- The socket is bound under a hidden temporary name, listened on, then renamed into place, so a
  socket file under its final name either has a listener or belongs to a dead session: a refused
  connection reliably means stale, and stale files are removed.
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import selectors
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from controller.operator.control_client import (  # noqa: F401  (the client side, re-exported: one import for both sides)
    ARM,
    CLEAR_ESTOP,
    COMMANDS,
    DEFAULT_CLIENT_TIMEOUT_S,
    DISARM,
    ENV_DIR,
    ESTOP,
    MAX_REPLY_BYTES,
    MAX_REQUEST_BYTES,
    NOTE,
    PAUSE,
    RESUME,
    SKIP,
    STATUS,
    STOP,
    SUFFIX,
    THRESHOLD,
    ControlError,
    Reply,
    candidate_dirs,
    check_private_dir,
    encode_request,
    find_sockets,
    is_live,
    origin,
    remove_if_stale,
    request,
    runtime_dir,
    send,
    session_of,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers know the name)

if TYPE_CHECKING:  # typing and dataclasses cost tens of ms at start-up: `neuroreflex estop` imports this
    from typing import Any

URGENT = frozenset({ESTOP, DISARM})  # run on the listener thread, never queued

MAX_TEXT = 500  # reason, origin, device, operator
READ_TIMEOUT_S = 2.0  # a connection must deliver its line within this
REPLY_TIMEOUT_S = 1.0  # a reply the client does not read is dropped after this
MAX_OPEN = 32  # open connections still waiting for their line; the oldest is dropped beyond

_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path minus the NUL

if TYPE_CHECKING:
    Handler = Callable[[str, dict[str, Any]], dict[str, Any] | None]


# ---------------------------------------------------------------------------------------------
# Where the sockets live


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` 0700 if missing; refuse one that is not a real directory owned by us."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ControlError(f"{path}: cannot create the control directory: {exc.strerror or exc}") from exc
    check_private_dir(path, fix_mode=True)
    return path


def valid_session_id(session_id: str) -> bool:
    return bool(_SESSION_ID.match(session_id or ""))


def socket_path(session_id: str, directory: Path | None = None) -> Path:
    """Where session ``session_id`` listens."""
    if not _SESSION_ID.match(session_id or ""):
        raise ControlError(f"session id {session_id!r} is not valid: use letters, digits, '_', '-', '.' "
                           "(at most 64, not starting with '.', '-' or '_')")
    path = (directory or runtime_dir()) / f"{session_id}{SUFFIX}"
    if len(os.fsencode(path)) > _SUN_PATH_MAX:
        raise ControlError(f"{path}: too long for a UNIX socket path ({len(os.fsencode(path))} bytes, "
                           f"at most {_SUN_PATH_MAX}); set {ENV_DIR} to a shorter directory")
    return path


def remove_stale(directory: Path | None = None) -> list[Path]:
    """Remove the sockets of dead sessions in ``directory``; returns what was removed."""
    return [p for p in find_sockets([directory or runtime_dir()]) if remove_if_stale(p)]


# ---------------------------------------------------------------------------------------------
# Requests


def validate_request(obj: Any) -> tuple[str, dict[str, Any]]:
    """Check a decoded request; returns (command, args) or raises ValueError saying what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("a request is a JSON object {\"cmd\": ..., \"args\": {...}}")
    cmd = obj.get("cmd")
    if cmd not in COMMANDS:
        raise ValueError(f"unknown command {cmd!r}: valid are {', '.join(COMMANDS)}")
    args = obj.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ValueError(f"{cmd}: args must be a JSON object")
    for key in ("reason", "origin", "device", "operator", "name", "text"):
        value = args.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
            raise ValueError(f"{cmd}: {key} must be a string of at most {MAX_TEXT} characters")
    if cmd == THRESHOLD:
        value = args.get("value")
        if not (args.get("name") or "").strip():
            raise ValueError("threshold: the threshold's name is needed")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"threshold: value must be a finite number, got {value!r}")
        if not (args.get("reason") or "").strip():
            raise ValueError("threshold: the operator's reason is needed (it is journaled with the change)")
    if cmd == NOTE and not (args.get("text") or "").strip():
        raise ValueError("note: the note's text is needed")
    if cmd in (THRESHOLD, CLEAR_ESTOP) and not (args.get("operator") or "").strip():
        raise ValueError(f"{cmd}: the operator's name is needed (an operator act)")
    if cmd in (ARM, DISARM) and not (args.get("device") or "").strip():
        raise ValueError(f"{cmd}: a device name is needed")
    if cmd == ARM and not (args.get("operator") or "").strip():
        raise ValueError("arm: the operator's name is needed (arming is an operator act)")
    return cmd, dict(args)


def _encode(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, default=str, separators=(",", ":")) + "\n").encode()


def _peer_credentials(sock: socket.socket) -> tuple[int, int] | None:
    """(pid, uid) of the connecting process where the OS tells it (Linux)."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return None
    try:
        pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i")))
    except OSError:
        return None
    return pid, uid


# ---------------------------------------------------------------------------------------------
# The session side


class _Conn:
    __slots__ = ("sock", "deadline", "peer", "buf")

    def __init__(self, sock: socket.socket, deadline: float, peer: tuple[int, int] | None) -> None:
        self.sock, self.deadline, self.peer, self.buf = sock, deadline, peer, bytearray()


class ControlListener:
    """A session's control endpoint. ``on_command(name, args) -> dict`` is the runner's; it is
    called on the listener thread for estop/disarm and on one worker thread for status/arm.
    ``args`` carries the client's fields (reason, origin, device, operator) plus ``peer`` =
    {"pid", "uid"} as verified by the kernel where available. Its dict is sent back as
    ``result``; if it raises, the client gets ``ok: false`` and the error and the listener goes
    on. ``on_error(text)`` hears of handler failures and refused peers (for the journal)."""

    def __init__(self, session_id: str, on_command: Handler, directory: Path | None = None, *,
                 on_error: Callable[[str], None] | None = None, read_timeout_s: float = READ_TIMEOUT_S,
                 max_open: int = MAX_OPEN) -> None:
        self.session_id = session_id
        self.directory = Path(directory) if directory is not None else runtime_dir()
        self.path = socket_path(session_id, self.directory)
        self._on_command = on_command
        self._on_error = on_error
        self._read_timeout_s = read_timeout_s
        self._max_open = max_open
        self._allowed_uid = os.geteuid()
        self._sock: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._closing = threading.Event()
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=f"control-{session_id}", daemon=True)
        self._worker = threading.Thread(target=self._work, name=f"control-worker-{session_id}", daemon=True)
        self.removed_stale: list[Path] = []

    # -- lifecycle --

    def start(self) -> ControlListener:
        """Listen (raises ControlError saying why it cannot)."""
        try:
            self._listen()
        except BaseException:
            self._wake_r.close()
            self._wake_w.close()
            raise
        self._thread.start()
        self._worker.start()
        return self

    def _listen(self) -> None:
        ensure_private_dir(self.directory)
        self.removed_stale = remove_stale(self.directory)
        if self.path.exists() and is_live(self.path):
            raise ControlError(f"{self.path}: another live session already uses id {self.session_id!r}")
        tmp = self.directory / f".{self.session_id}.{os.getpid()}.tmp"
        if len(os.fsencode(tmp)) > _SUN_PATH_MAX:
            raise ControlError(f"{tmp}: too long for a UNIX socket path; set {ENV_DIR} to a shorter directory")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            sock.bind(str(tmp))
            os.chmod(tmp, 0o600)
            sock.listen(64)
            sock.setblocking(False)
            os.replace(tmp, self.path)  # appears under its final name only once it listens
            st = os.lstat(self.path)
            self._inode = (st.st_dev, st.st_ino)
        except OSError as exc:
            sock.close()
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise ControlError(f"{self.path}: cannot listen: {exc.strerror or exc}") from exc
        self._sock = sock
        self._wake_w.setblocking(False)

    def close(self) -> None:
        """Stop listening and remove the socket file (only if it is still ours)."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._inode is not None:
            try:
                st = os.lstat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._jobs.put(None)
        for t in (self._thread, self._worker):
            if t.is_alive() and t is not threading.current_thread():
                t.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> ControlListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- listener thread --

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        assert self._sock is not None
        sel.register(self._sock, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        conns: dict[socket.socket, _Conn] = {}  # insertion order = age
        try:
            while not self._closing.is_set():
                timeout = None
                if conns:
                    timeout = max(0.0, min(c.deadline for c in conns.values()) - time.monotonic())
                for key, _ in sel.select(timeout):
                    if key.fileobj is self._sock:
                        self._accept(sel, conns)
                    elif key.fileobj is self._wake_r:
                        pass
                    else:
                        self._read(sel, conns, conns.get(key.fileobj))  # type: ignore[arg-type]
                now = time.monotonic()
                for c in [c for c in conns.values() if c.deadline <= now]:
                    self._drop(sel, conns, c, f"no complete request line within {self._read_timeout_s:g} s")
        finally:
            for c in list(conns.values()):
                self._drop(sel, conns, c, None)
            sel.close()

    def _accept(self, sel: selectors.BaseSelector, conns: dict[socket.socket, _Conn]) -> None:
        assert self._sock is not None
        while True:
            try:
                s, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and alike: say so, keep serving
                self._report(f"control channel: accept failed: {exc}")
                return
            s.setblocking(False)
            peer = _peer_credentials(s)
            if peer is not None and peer[1] != self._allowed_uid:
                self._report(f"control channel: refused a connection from uid {peer[1]} (pid {peer[0]})")
                self._send_now(s, {"ok": False, "session": self.session_id,
                                   "error": f"permission denied: uid {peer[1]} is not the session's user"})
                s.close()
                continue
            while len(conns) >= self._max_open:  # the oldest idle one goes, never the newcomer
                self._drop(sel, conns, next(iter(conns.values())), "too many open connections")
            c = _Conn(s, time.monotonic() + self._read_timeout_s, peer)
            conns[s] = c
            sel.register(s, selectors.EVENT_READ, None)

    def _read(self, sel: selectors.BaseSelector, conns: dict[socket.socket, _Conn], c: _Conn | None) -> None:
        if c is None:
            return
        try:
            data = c.sock.recv(MAX_REQUEST_BYTES + 1 - len(c.buf))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(sel, conns, c, None)
            return
        c.buf += data
        nl = c.buf.find(b"\n")
        if nl < 0:
            if len(c.buf) > MAX_REQUEST_BYTES:
                self._drop(sel, conns, c, f"request longer than {MAX_REQUEST_BYTES} bytes")
            elif not data:  # the client closed its side: take what came as the request
                if c.buf.strip():
                    self._dispatch(sel, conns, c, bytes(c.buf))
                else:
                    self._drop(sel, conns, c, None)
            return
        self._dispatch(sel, conns, c, bytes(c.buf[:nl]))

    def _dispatch(self, sel: selectors.BaseSelector, conns: dict[socket.socket, _Conn], c: _Conn,
                  line: bytes) -> None:
        t_recv = time.monotonic()
        try:
            cmd, args = validate_request(json.loads(line))
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            msg = str(exc) if not isinstance(exc, json.JSONDecodeError) else f"not a JSON line: {exc}"
            self._drop(sel, conns, c, msg)
            return
        if c.peer is not None:
            args["peer"] = {"pid": c.peer[0], "uid": c.peer[1]}
        sel.unregister(c.sock)
        del conns[c.sock]
        if cmd in URGENT:
            self._send_now(c.sock, self._call(cmd, args, t_recv))
            c.sock.close()
        else:
            self._jobs.put((c.sock, cmd, args, t_recv))

    def _call(self, cmd: str, args: dict[str, Any], t_recv: float) -> dict[str, Any]:
        t_handler = time.monotonic()
        base = {"session": self.session_id, "cmd": cmd, "t_recv": t_recv, "t_handler": t_handler}
        try:
            result = self._on_command(cmd, args)
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            self._report(f"control channel: {cmd} handler failed: {text}")
            return {"ok": False, **base, "error": f"the session's {cmd} handler failed: {text}"}
        if result is None:
            result = {}
        if not isinstance(result, dict):
            self._report(f"control channel: {cmd} handler returned {type(result).__name__}, not a dict")
            return {"ok": False, **base, "error": f"the session's {cmd} handler returned {type(result).__name__}"}
        return {"ok": True, **base, "result": result}

    def _send_now(self, s: socket.socket, reply: dict[str, Any]) -> None:
        """Best effort without blocking the listener thread (replies are small; a socket buffer
        holds them)."""
        data = self._bounded(reply)
        try:
            s.send(data)
        except OSError:
            pass

    def _bounded(self, reply: dict[str, Any]) -> bytes:
        data = _encode(reply)
        if len(data) > MAX_REPLY_BYTES:
            short = {k: v for k, v in reply.items() if k != "result"}
            short.update(ok=False, error=f"reply longer than {MAX_REPLY_BYTES} bytes")
            data = _encode(short)
        return data

    def _drop(self, sel: selectors.BaseSelector, conns: dict[socket.socket, _Conn], c: _Conn,
              error: str | None) -> None:
        if error is not None:
            self._send_now(c.sock, {"ok": False, "session": self.session_id, "error": error})
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        conns.pop(c.sock, None)
        c.sock.close()

    def _report(self, text: str) -> None:
        if self._on_error is not None:
            try:
                self._on_error(text)
                return
            except Exception:
                pass
        print(text, file=sys.stderr)

    # -- worker thread (status, arm) --

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            s, cmd, args, t_recv = job
            try:
                if not self._closing.is_set():
                    reply = self._call(cmd, args, t_recv)
                    s.settimeout(REPLY_TIMEOUT_S)
                    s.sendall(self._bounded(reply))
            except OSError:
                pass
            finally:
                s.close()


# ---------------------------------------------------------------------------------------------
# The client side: control_client.py (imported above), so that `neuroreflex estop` loads only it
