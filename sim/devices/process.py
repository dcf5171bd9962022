"""``sim device KIND``: one virtual stimulator as a process of its own, as a real unit would be.

Why a process: the controller under test must reach the device only through its port (a
pseudo-terminal or loopback TCP), never through Python objects; the session runner starts
one such process per device, reads where it listens from stdout, and points the driver at it.

stdout, one line each, flushed (the port never contains spaces):

1. ``neuroreflex sim: virtual KIND on PORT (Ctrl-C to stop)``  (for people)
2. ``READY {json}``  (for programs): ``{"kind": "magstim", "port": PORT, "device_path": "/dev/pts/7",
   "transport": "pty" | "tcp", "pid": 1234, "log": "/abs/path.jsonl" | null, "control": true,
   "host": "127.0.0.1", "tcp_port": 40123, "driver_options": {"protocol": "tacs"}}`` (``host``/``tcp_port``
   for TCP devices only; ``driver_options``: what a driver needs to use the unit where a real one has an
   operator, e.g. the template a virtual NIC's driver loads).
   PORT is what a driver opens: for pty devices a symlink (``--link PATH``, default
   ``<tmpdir>/neuroreflex-sim-KIND-XXXX/port``) to the current pseudo-terminal, kept pointing at
   the new one after ``unplug``/``plug``, as /dev/serial/by-id/ does for a USB adapter
   (``--no-link``: PORT is the /dev/pts path itself); for TCP devices ``host:port``.
3. one ``ACK {json}`` line per control line read on stdin:
   ``{"ok": true|false, "command": "fault no_reply", "detail": "...", "port": PORT, ...}``.
4. last: ``neuroreflex sim: virtual KIND stopped; N commands received`` on SIGTERM/SIGINT/``stop``.

Control lines on stdin (read when stdin is not a terminal, or with ``--control``; blank
lines and ``#`` comments ignored; EOF just stops reading):

- ``fault NAME [VALUE]``: switch a fault on (``VALUE`` ``off`` switches it off); names per
  device: magstim no_reply, bad_crc (corrupt_crc), error_reply [?|S] (reply_error),
  unknown_command, error_code NNN, only BYTES; magventure no_reply, bad_crc, garble;
  starstim no_reply, reject_remote; triggerbox unplug_on_code; all: disconnect (cable pulled).
- ``clear``: all faults off, cable reconnected (an unplugged device stays unplugged).
- ``unplug``: the device vanishes (pty closed: the driver's reads/writes fail; TCP: client
  dropped, connections refused). ``plug``: back, on the SAME port (pty: the symlink is moved
  to the new pseudo-terminal; TCP: the same host:port re-bound, else a new one, reported
  with ``"same_port": false``).
- ``status``: ports, link state and fault switches. ``help``: this list. ``stop``: exit.

With ``--log FILE`` every command, refusal, pulse, link change and control line is appended
to FILE as JSON lines (schema in :mod:`sim.devices.journal`).
"""

from __future__ import annotations

import json
import os
import select
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import pylsl

from sim.devices.control import clear_faults, fault_names, faults_state, set_fault
from sim.devices.journal import DeviceJournal
from sim.devices.link import PtyDevice, TcpDevice, VirtualDevice

HELP = ("fault NAME [VALUE|off], clear, unplug, plug, status, help, stop; "
        "faults: {faults}")


class StablePort:
    """A symlink that always points at the device's current pseudo-terminal (like /dev/serial/by-id/)."""

    def __init__(self, target: str, path: str | Path | None, kind: str) -> None:
        self._own_dir: Path | None = None
        if path is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix=f"neuroreflex-sim-{kind}-"))
            path = self._own_dir / "port"
        self.path = Path(path).absolute()
        if self.path.is_symlink() or self.path.exists():
            if not self.path.is_symlink():
                raise ValueError(f"--link {self.path}: exists and is not a symlink; not replacing it")
            self.path.unlink()
        self.path.symlink_to(target)

    def point_at(self, target: str) -> None:
        """Atomically re-point the link (rename over it), so an open() never sees it missing."""
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(target)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        if self.path.is_symlink():
            self.path.unlink()
        if self._own_dir is not None:
            try:
                self._own_dir.rmdir()
            except OSError:
                pass


class DeviceProcess:
    """Runs one started virtual device: ready lines, the journal, stdin control, clean stop."""

    def __init__(self, kind: str, device: VirtualDevice, log: str | Path | None = None,
                 link: str | Path | None = None, use_link: bool = True, out: TextIO | None = None,
                 options: dict[str, Any] | None = None, stop_event: threading.Event | None = None) -> None:
        import sys

        self.kind = kind
        self.device = device
        self.out = out or sys.stdout
        self._out_lock = threading.Lock()
        self.options = options or {}
        self.journal = DeviceJournal(log, kind) if log else None
        self._link_path = link
        self._use_link = use_link and isinstance(device, PtyDevice)
        self.stable: StablePort | None = None
        self.stop_event = stop_event or threading.Event()
        self._control_thread: threading.Thread | None = None

    # ------------------------------------------------------------ ports
    @property
    def port(self) -> str:
        """What a driver opens: the stable symlink, the pty path, or host:port."""
        return str(self.stable.path) if self.stable is not None else self.device.port

    def ready_info(self) -> dict[str, Any]:
        dev = self.device
        info: dict[str, Any] = {"kind": self.kind, "port": self.port, "device_path": dev.port,
                                "transport": "tcp" if isinstance(dev, TcpDevice) else "pty", "pid": os.getpid(),
                                "log": str(self.journal.path.absolute()) if self.journal else None,
                                "control": False, "driver_options": dev.driver_options()}
        if isinstance(dev, TcpDevice):
            info["host"], info["tcp_port"] = dev.host, dev.tcp_port
        return info

    # ------------------------------------------------------------ lifecycle
    def start(self, control_input: int | None) -> None:
        """Start the device and print the ready lines; ``control_input``: fd to read control lines from."""
        if self.journal is not None:
            self.device.observer = self.journal
        self.device.start()
        if self._use_link:
            self.stable = StablePort(self.device.port, self._link_path, self.kind)
        info = self.ready_info()
        info["control"] = control_input is not None
        if self.journal is not None:
            self.journal.write("start", f"virtual {self.kind} on {self.port}", info={**info, "options": self.options})
        self.say(f"neuroreflex sim: virtual {self.kind} on {self.port} (Ctrl-C to stop)")
        self.say("READY " + json.dumps(info))
        if control_input is not None:
            self._control_thread = threading.Thread(target=self._read_controls, args=(control_input,),
                                                    name=f"control:{self.kind}", daemon=True)
            self._control_thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        n = len(self.device.log_snapshot())
        self.device.stop()
        if self._control_thread is not None:
            self._control_thread.join(timeout=1.0)
        if self.journal is not None:
            self.journal.write("stop", f"virtual {self.kind} stopped",
                               info={"chunks_received": n, "counts": dict(self.journal.counts)})
            self.journal.close()
        if self.stable is not None:
            self.stable.remove()
        self.say(f"neuroreflex sim: virtual {self.kind} stopped; {n} commands received")

    def say(self, line: str) -> None:
        with self._out_lock:
            self.out.write(line + "\n")
            self.out.flush()

    # ------------------------------------------------------------ control
    def _read_controls(self, fd: int) -> None:
        """Line reader on a raw fd with a timeout, so it never holds a buffered stdin lock at exit."""
        pending = b""
        while not self.stop_event.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.1)
            except (OSError, ValueError):  # stdin closed or not selectable: no control
                return
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                return
            if not chunk:
                if pending.strip():
                    self.control(pending.decode("utf-8", "replace"))
                return  # EOF: no more control lines, the device keeps running
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self.control(line.decode("utf-8", "replace"))

    def control(self, line: str) -> dict[str, Any] | None:
        """Apply one control line, acknowledge it on stdout and in the journal; returns the ACK."""
        text = line.strip()
        if not text or text.startswith("#"):
            return None
        t = pylsl.local_clock()
        words = text.split()
        verb, args = words[0].lower(), words[1:]
        ack: dict[str, Any] = {"ok": True, "command": text}
        try:
            ack.update(self._dispatch(verb, args))
        except (ValueError, NotImplementedError, OSError, RuntimeError) as exc:
            ack.update(ok=False, detail=str(exc) or type(exc).__name__)
        ack.setdefault("port", self.port)
        if self.journal is not None:
            self.journal.write("control", f"{text}: {ack.get('detail', '')}".rstrip(": "), t=t, info=ack)
        self.say("ACK " + json.dumps(ack))
        if verb in ("stop", "quit", "exit") and ack["ok"]:
            self.stop_event.set()
        return ack

    def _dispatch(self, verb: str, args: list[str]) -> dict[str, Any]:
        dev = self.device
        handlers: dict[str, Callable[[], dict[str, Any]]] = {
            "clear": lambda: {"detail": clear_faults(dev)},
            "unplug": self._unplug,
            "plug": self._plug,
            "status": self._status,
            "help": lambda: {"detail": HELP.format(faults=", ".join(fault_names(dev)))},
            "stop": lambda: {"detail": "stopping"},
            "quit": lambda: {"detail": "stopping"},
            "exit": lambda: {"detail": "stopping"},
        }
        if verb == "fault":
            if not 1 <= len(args) <= 2:
                raise ValueError("usage: fault NAME [VALUE|off]")
            return {"detail": set_fault(dev, args[0].lower(), args[1] if len(args) > 1 else None)}
        if verb not in handlers:
            raise ValueError(f"unknown control command {verb!r}; "
                             f"commands: {HELP.format(faults=', '.join(fault_names(dev)))}")
        if args:
            raise ValueError(f"{verb} takes no arguments")
        return handlers[verb]()

    def _unplug(self) -> dict[str, Any]:
        if self.device.unplugged:
            return {"detail": "already unplugged"}
        self.device.unplug()
        return {"detail": f"unplugged: {self.device.port} is gone"}

    def _plug(self) -> dict[str, Any]:
        dev = self.device
        if not dev.unplugged:
            return {"detail": "already plugged in", "device_path": dev.port, "same_port": True}
        before = self.port
        path = dev.plug()
        if self.stable is not None:
            self.stable.point_at(path)
        same = self.port == before
        detail = f"plugged in on {self.port}" + ("" if self.stable is None else f" -> {path}")
        if not same:
            detail += f" (NOT the same port: was {before})"
        return {"detail": detail, "device_path": path, "same_port": same}

    def _status(self) -> dict[str, Any]:
        dev = self.device
        return {"detail": "connected" if dev.connected else ("unplugged" if dev.unplugged else "cable pulled"),
                "device_path": dev.port, "connected": dev.connected, "unplugged": dev.unplugged,
                "faults": faults_state(dev), "chunks_received": len(dev.log_snapshot())}
