"""The transport under every virtual device: a pseudo-terminal (serial devices) or loopback TCP.

The device logic only sees ``on_bytes(data, t_arrival)`` and calls ``write(data)``; every
received chunk of bytes is logged with its arrival time on the LSL clock, so a test can
check exactly what a "patient" received and when.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import tty
from dataclasses import dataclass

import pylsl


@dataclass(frozen=True)
class Received:
    t: float  # LSL local_clock() when the bytes were read
    data: bytes


class VirtualDevice:
    """Base: owns the reader thread and the log; subclasses implement ``on_bytes``."""

    kind = "device"

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False  # False = the link is down (disconnect fault or not started)

    # -------------------------------------------------------- subclass API
    def on_bytes(self, data: bytes, t: float) -> None:
        raise NotImplementedError

    def tick(self, t: float) -> None:
        """Called about every 10 ms (timeouts such as a missed keep-alive)."""

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
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass


class TcpDevice(VirtualDevice):
    """A network device on loopback (one client at a time, as the real units allow)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__()
        self._server = socket.create_server((host, port))
        self._server.settimeout(0.01)
        self._client: socket.socket | None = None
        self._drop = threading.Event()
        self.host = host

    @property
    def port(self) -> str:
        host, port = self._server.getsockname()[:2]
        return f"{host}:{port}"

    @property
    def tcp_port(self) -> int:
        return self._server.getsockname()[1]

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

    def _loop(self) -> None:
        while not self._halt.is_set():
            t = pylsl.local_clock()
            if self._drop.is_set():
                self._drop.clear()
                if self._client is not None:
                    self._client.close()
                    self._client = None
            if self._client is None:
                try:
                    self._client, _ = self._server.accept()
                    self._client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except (socket.timeout, OSError):
                    self.tick(t)
                    continue
            ready, _, _ = select.select([self._client], [], [], 0.01)
            t = pylsl.local_clock()
            if ready:
                try:
                    data = self._client.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    self._client.close()
                    self._client = None
                elif self.connected:
                    self.log(data, t)
                    self.on_bytes(data, t)
            self.tick(t)

    def stop(self) -> None:
        super().stop()
        if self._client is not None:
            self._client.close()
        self._server.close()
