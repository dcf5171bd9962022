"""The transport under every virtual device: a pseudo-terminal (serial devices) or loopback TCP.

The device logic only sees ``on_bytes(data, t_arrival)`` and calls ``write(data)``; every
received chunk of bytes is logged with its arrival time on the LSL clock, so a test can
check exactly what a "patient" received and when.

Devices also describe what they understood through :meth:`VirtualDevice.note` (a decoded
command, a refusal, a pulse, a state change they made by themselves); an ``observer``
callable (the JSONL journal of ``sim device --log``) receives each :class:`Note`.

Link faults: ``disconnect()`` pulls the cable (the port stays, nothing arrives or is
answered; ``reconnect()`` undoes it); ``unplug()`` makes the device vanish (pty: the
master is closed, so the port's reads and writes fail with EIO; TCP: the client is dropped
and the listening socket closed, so connections are refused); ``plug()`` brings it back
(pty: a new pseudo-terminal, so a new /dev/pts path; TCP: the same host:port if it can be
bound again).
"""

from __future__ import annotations

import os
import select
import socket
import threading
import tty
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pylsl


@dataclass(frozen=True)
class Received:
    t: float  # LSL local_clock() when the bytes were read
    data: bytes


@dataclass(frozen=True)
class Note:
    """Something a device understood or did, for the journal (``type`` values are fixed, see journal.py)."""

    t: float  # LSL time: arrival of the command, or when the device acted
    type: str  # "command" | "ignored" | "event" | "pulse" | "link"
    meaning: str
    data: bytes | None = None  # the command's bytes as received
    reply: bytes | None = None  # what the device answered (None: nothing)


class VirtualDevice:
    """Base: owns the reader thread and the log; subclasses implement ``on_bytes``."""

    kind = "device"

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False  # False = the link is down (disconnect fault or not started)
        self.unplugged = False  # True between unplug() and plug()
        self.observer: Callable[[Note], None] | None = None  # receives every Note (the --log journal)

    # -------------------------------------------------------- subclass API
    def on_bytes(self, data: bytes, t: float) -> None:
        raise NotImplementedError

    def tick(self, t: float) -> None:
        """Called about every 10 ms (timeouts such as a missed keep-alive)."""

    def driver_options(self) -> dict[str, Any]:
        """Options a driver needs to use this unit, where the real unit would have an operator (its
        READY line says them, so a session on virtual devices needs no site options for them)."""
        return {}

    # -------------------------------------------------------- transport API
    @property
    def port(self) -> str:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def start(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def log(self, data: bytes, t: float) -> None:
        with self._lock:
            self.received.append(Received(t, data))

    def log_snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def note(self, t: float, type_: str, meaning: str, data: bytes | None = None, reply: bytes | None = None) -> None:
        """Tell the observer (if any) what happened; never raises into the device thread."""
        observer = self.observer
        if observer is not None:
            try:
                observer(Note(t, type_, meaning, data, reply))
            except Exception:  # a journal problem must not stop the device
                pass

    def reconnect(self) -> None:
        """Undo ``disconnect()`` (not ``unplug()``: that needs ``plug()``)."""
        if not self.unplugged and not self.connected:
            self.connected = True
            self.note(pylsl.local_clock(), "link", "cable reconnected")

    def unplug(self) -> None:
        raise NotImplementedError

    def plug(self) -> str:
        raise NotImplementedError

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class PtyDevice(VirtualDevice):
    """A serial device on a pseudo-terminal: drivers open ``self.port`` like a COM port."""

    def __init__(self) -> None:
        super().__init__()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: bytes as on a wire
        self._port = os.ttyname(self._slave)
        self._silent_fd: int | None = None  # write end of the pipe standing in for an unplugged pty

    @property
    def port(self) -> str:
        return self._port

    def write(self, data: bytes) -> None:
        if self.connected:
            os.write(self._master, data)

    def start(self) -> str:
        self.connected = True
        self._thread = threading.Thread(target=self._loop, name=f"virtual:{self.kind}", daemon=True)
        self._thread.start()
        return self.port

    def disconnect(self) -> None:
        """Fault: the cable is pulled; input is ignored and nothing is answered."""
        self.connected = False
        self.note(pylsl.local_clock(), "link", "cable pulled (disconnect)")

    def unplug(self) -> None:
        """The USB device disappears: the pty master is closed, so the port's reads and writes fail (EIO).

        The master's descriptor number is atomically re-pointed (dup2) at the read end of a
        non-blocking pipe that never receives data, so the reader thread keeps polling a valid,
        silent descriptor; :meth:`plug` points it at a new pseudo-terminal the same way.
        """
        with self._lock:
            if self.unplugged:
                return
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            os.dup2(read_end, self._master)  # closes the pty master: the slave now gets EIO
            os.close(read_end)
            self._silent_fd = write_end
            if self._slave >= 0:
                os.close(self._slave)
                self._slave = -1
            self.unplugged = True
            self.connected = False
        self.note(pylsl.local_clock(), "link", f"unplugged ({self._port} gone)")

    def plug(self) -> str:
        """Plugged in again: a new pseudo-terminal (a new /dev/pts path, returned)."""
        with self._lock:
            if not self.unplugged:
                return self._port
            master, slave = os.openpty()
            tty.setraw(slave)
            os.dup2(master, self._master)  # the reader thread's descriptor is now the new master
            os.close(master)
            self._slave = slave
            self._port = os.ttyname(slave)
            if self._silent_fd is not None:
                os.close(self._silent_fd)
                self._silent_fd = None
            self.unplugged = False
            self.connected = True
        self.note(pylsl.local_clock(), "link", f"plugged in on {self._port}")
        return self._port

    def _loop(self) -> None:
        while not self._halt.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.01)
            t = pylsl.local_clock()
            if ready:
                try:
                    data = os.read(self._master, 4096)
                except OSError:
                    data = b""
                if data and self.connected:
                    self.log(data, t)
                    self.on_bytes(data, t)
            self.tick(t)

    def stop(self) -> None:
        super().stop()
        for fd in (self._master, self._slave, self._silent_fd):
            if fd is None or fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass
        self._silent_fd = None


class TcpDevice(VirtualDevice):
    """A network device on loopback (one client at a time, as the real units allow)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__()
        self._server: socket.socket | None = socket.create_server((host, port))
        self._server.settimeout(0.01)
        self._address: tuple[str, int] = self._server.getsockname()[:2]
        self._client: socket.socket | None = None
        self._drop = threading.Event()
        self._want_unplug = threading.Event()  # unplug() asks, the reader thread (socket owner) does it
        self._unplug_done = threading.Event()
        self.host = host

    @property
    def port(self) -> str:
        host, port = self._address
        return f"{host}:{port}"

    @property
    def tcp_port(self) -> int:
        return self._address[1]

    def write(self, data: bytes) -> None:
        if self._client is not None and self.connected:
            self._client.sendall(data)

    def start(self) -> str:
        self.connected = True
        self._thread = threading.Thread(target=self._loop, name=f"virtual:{self.kind}", daemon=True)
        self._thread.start()
        return self.port

    def disconnect(self) -> None:
        """Fault: drop the client connection (done by the reader thread, which owns the socket)."""
        self._drop.set()

    def unplug(self) -> None:
        """The unit goes off the network: the client is dropped and the port refuses connections."""
        if self.unplugged:
            return
        if self._thread is not None and self._thread.is_alive():
            self._unplug_done.clear()
            self._want_unplug.set()
            if not self._unplug_done.wait(2.0):
                raise RuntimeError(f"virtual {self.kind}: the device thread did not close its sockets")
        else:
            self._close_sockets()
        self.unplugged = True
        self.connected = False
        self.note(pylsl.local_clock(), "link", f"unplugged ({self.port} refuses connections)")

    def plug(self) -> str:
        """Back on the network, on the same host:port when it can be bound again (else a new one)."""
        if not self.unplugged:
            return self.port
        host, port = self._address
        try:
            server = socket.create_server((host, port))
            why = ""
        except OSError as exc:
            server = socket.create_server((host, 0))
            why = f" (port {port} could not be bound again: {exc})"
        server.settimeout(0.01)
        self._address = server.getsockname()[:2]
        self._server = server
        self.unplugged = False
        self.connected = True
        self.note(pylsl.local_clock(), "link", f"plugged in: listening on {self.port}{why}")
        return self.port

    def _close_client(self, t: float, why: str) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None
            self.note(t, "link", why)

    def _close_sockets(self) -> None:
        self._close_client(pylsl.local_clock(), "client dropped (unplugged)")
        if self._server is not None:
            self._server.close()
            self._server = None

    def _loop(self) -> None:
        while not self._halt.is_set():
            t = pylsl.local_clock()
            if self._want_unplug.is_set():
                self._want_unplug.clear()
                self._close_sockets()
                self._unplug_done.set()
            if self._drop.is_set():
                self._drop.clear()
                self._close_client(t, "client dropped (disconnect)")
            server = self._server
            if server is None:  # unplugged: nobody can connect
                self.tick(t)
                self._halt.wait(0.01)
                continue
            if self._client is None:
                try:
                    self._client, address = server.accept()
                    self._client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except (TimeoutError, OSError):
                    self.tick(t)
                    continue
                self.note(pylsl.local_clock(), "link", f"client connected from {address[0]}:{address[1]}")
            ready, _, _ = select.select([self._client], [], [], 0.01)
            t = pylsl.local_clock()
            if ready:
                try:
                    data = self._client.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    self._close_client(t, "client closed the connection")
                elif self.connected:
                    self.log(data, t)
                    self.on_bytes(data, t)
            self.tick(t)

    def stop(self) -> None:
        super().stop()
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._server is not None:
            self._server.close()
            self._server = None
