"""The console's only ways into a session: start it as a child process, or attach to one running.

Everything the console does to a session goes over the session's control channel (the same
operator acts as the terminal keys and ``neuroreflex estop``); what it shows comes from the
``status`` reply, polled on a thread of its own, and from LSL. A session started here runs in a
new process session (``start_new_session``): killing the console, or Ctrl-C in the console's
terminal, leaves the session, its XDF and its journal alone, and another console can attach.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.operator.control_client import (
    ESTOP,
    ControlError,
    Reply,
    find_sockets,
    is_live,
    origin,
    request,
    send,
    session_of,
)

STATUS_PERIOD_S = 0.25  # the console redraws at 25 fps; the session's state changes at block and rule rates
STATUS_TIMEOUT_S = 2.0
ACT_TIMEOUT_S = 5.0


@dataclass
class SessionSetup:
    """What the set-up page chose: becomes a ``neuroreflex run`` command line."""

    protocol: Path
    operator: str
    participant: str
    session_root: Path = Path("sessions")
    site: Path | None = None
    simulated: bool = True  # a simulated participant (and virtual devices); False: the streams on the network
    run: str | None = None  # fMRI multi-run protocols
    prefix: str = "neuroreflex"
    duration_s: float | None = None
    streams: Sequence[str] = ()  # [INPUT=]NAME for real streams
    sim_args: Sequence[str] = ()  # e.g. ("--channels", "64", "--rate", "1000")
    virtual_devices: bool = False  # real streams, virtual stimulators (hardware-in-the-loop rehearsal)
    sim_stream: str | None = None  # the console's own simulated participant, followed as a real stream

    def problems(self) -> list[str]:
        out = []
        if not self.operator.strip():
            out.append("the operator's name is needed (every act is journaled with it)")
        if not self.participant.strip():
            out.append("a participant ID is needed (the dose ledger is kept per participant)")
        if not Path(self.protocol).is_file():
            out.append(f"protocol file not found: {self.protocol}")
        if self.site is not None and not Path(self.site).is_file():
            out.append(f"site config not found: {self.site}")
        return out

    def command(self, session_id: str) -> list[str]:
        cmd = [sys.executable, "-m", "controller.cli", "run", str(self.protocol), "--session-id", session_id,
               "--operator", self.operator, "--participant", self.participant,
               "--session-dir", str(self.session_root), "--prefix", self.prefix]
        if self.site is not None:
            cmd += ["--site", str(self.site)]
        if self.run:
            cmd += ["--run", self.run]
        if self.duration_s is not None:
            cmd += ["--duration", f"{self.duration_s:g}"]
        for stream in self.streams:
            cmd += ["--stream", stream]
        if self.sim_stream is not None:  # the console's simulator: the session meets it as a lab's stream
            cmd += ["--stream", self.sim_stream, "--virtual-devices"]
        elif self.simulated:
            cmd += ["--sim", *self.sim_args]
        elif self.virtual_devices:
            cmd += ["--virtual-devices"]
        return cmd


class SimulatedParticipant:
    """``neuroreflex sim eeg`` started by the console before the session, so that preflight checks the
    stream the session will read, as in a lab. Its own process session: it outlives a killed console
    (the session it feeds goes on) and stops by itself after ``duration_s``."""

    def __init__(self, name: str, marker_stream: str, *, channels: int | str = 64, rate: float = 500.0, chunk: int = 10,
                 duration_s: float | None = None, seed: int = 0, extra: Sequence[str] = ()) -> None:
        self.name = name
        self.marker_stream = marker_stream
        cmd = [sys.executable, "-m", "controller.cli", "sim", "eeg", "--name", name, "--marker-stream", marker_stream,
               "--channels", str(channels), "--rate", f"{rate:g}", "--chunk", str(chunk), "--seed", str(seed),
               "--quiet", *extra]
        if duration_s is not None:
            cmd += ["--duration", f"{duration_s:g}"]
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def running_sessions() -> list[str]:
    """Session ids with a live control channel on this machine (attach candidates)."""
    return sorted(session_of(p) for p in find_sockets() if is_live(p))


@dataclass
class SessionLink:
    """One session followed by the console: its id, its child process if the console started it."""

    session_id: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    status: dict[str, Any] = field(default_factory=dict)  # the newest status reply (replaced whole, never mutated)
    status_error: str | None = None
    polls: int = 0
    _halt: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def launch(cls, setup: SessionSetup, *, session_id: str | None = None, log_dir: Path | None = None,
               env: dict[str, str] | None = None) -> SessionLink:
        problems = setup.problems()
        if problems:
            raise ValueError("; ".join(problems))
        sid = session_id or uuid.uuid4().hex[:8]
        log_dir = Path(log_dir or Path(setup.session_root) / "console-logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{sid}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(setup.command(sid), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"})
        return cls(sid, proc, log_path)

    @classmethod
    def attach(cls, session_id: str) -> SessionLink:
        if session_id not in running_sessions():
            live = ", ".join(running_sessions()) or "none"
            raise ControlError(f"no running session {session_id!r} on this machine (running: {live})")
        return cls(session_id)

    # ------------------------------------------------------------------ acts
    def act(self, command: str, **args: Any) -> Reply:
        """One operator act; the reply says whether the session took it and, if not, why."""
        args = {k: v for k, v in args.items() if v is not None}
        args.setdefault("origin", f"console {origin()}")
        replies = request(command, args, session=self.session_id, timeout=ACT_TIMEOUT_S)
        if not replies:
            return Reply(self.session_id, Path(), False, error="the session is not running (no control channel)")
        return replies[0]

    # ------------------------------------------------------------------ following
    def start_polling(self, period_s: float = STATUS_PERIOD_S) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._poll, args=(period_s,), name="console-status", daemon=True)
        self._thread.start()

    def stop_polling(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=STATUS_TIMEOUT_S + 1)

    def _poll(self, period_s: float) -> None:
        while not self._halt.is_set():
            t0 = time.monotonic()
            replies = request("status", {}, session=self.session_id, timeout=STATUS_TIMEOUT_S)
            if replies and replies[0].ok and replies[0].result:
                self.status, self.status_error = dict(replies[0].result), None
            elif replies:
                self.status_error = replies[0].error
            elif self.process is None or self.process.poll() is not None or self.polls > 0:
                self.status_error = "no control channel: the session has ended or not started yet"
            self.polls += 1
            self._halt.wait(max(0.0, period_s - (time.monotonic() - t0)))

    def exit_code(self) -> int | None:
        """The child's exit code once it ended (None while it runs, or when attached)."""
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 12) -> list[str]:
        if self.log_path is None or not self.log_path.exists():
            return []
        text = self.log_path.read_bytes()[-16384:].decode("utf-8", "replace")
        return text.splitlines()[-lines:]


def estop_everything(reason: str, session_id: str | None = None) -> list[Reply]:
    """E-STOP from the console: to its session, or to every session on this machine when it follows none."""
    args = {"reason": reason, "origin": f"console {origin()}"}
    paths = find_sockets()
    if session_id is not None:
        paths = [p for p in paths if session_of(p) == session_id]
    return send(paths, ESTOP, args, timeout=ACT_TIMEOUT_S)
