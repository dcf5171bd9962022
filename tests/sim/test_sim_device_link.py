"""The transport under virtual devices: a real pseudo-terminal and loopback TCP, with an arrival log."""

from __future__ import annotations

import socket

import pylsl
import serial

from sim.devices.link import PtyDevice, TcpDevice


class Upper(PtyDevice):
    kind = "upper"

    def on_bytes(self, data, t):
        self.write(data.upper())


class Reverse(TcpDevice):
    kind = "reverse"

    def on_bytes(self, data, t):
        self.write(data[::-1])


def test_pty_device_answers_like_a_serial_port_and_logs_arrivals():
    t0 = pylsl.local_clock()
    with Upper() as dev:
        port = serial.serial_for_url(dev.port, baudrate=9600, timeout=2)
        port.write(b"q@n")
        assert port.read(3) == b"Q@N"
        dev.disconnect()
        port.write(b"x")
        assert port.read(1) == b""  # a pulled cable answers nothing
        port.close()
    [entry] = dev.log_snapshot()
    assert entry.data == b"q@n" and entry.t >= t0


def test_tcp_device_on_loopback():
    with Reverse() as dev:
        with socket.create_connection(("127.0.0.1", dev.tcp_port), timeout=2) as c:
            c.sendall(b"abc")
            assert c.recv(16) == b"cba"
    assert [r.data for r in dev.log_snapshot()] == [b"abc"]
