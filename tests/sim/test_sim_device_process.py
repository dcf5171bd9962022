"""`sim device KIND` as the session runner starts it: its own process, a READY line, a JSONL journal of what
reached the "patient", and fault injection through stdin (real subprocesses, real ptys and loopback TCP)."""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pylsl
import pytest
import serial
from helpers import wait_for

from drivers.magstim import MagstimDriver
from drivers.magventure import MagVentureDriver
from drivers.starstim import StarstimDriver
from drivers.stimulator import DeviceError, NotReady
from drivers.triggerbox import TriggerBoxDriver
from sim.devices.journal import read_journal
from sim.devices.magstim import with_crc

ROOT = Path(__file__).resolve().parents[2]
HUMAN = "neuroreflex sim: virtual {kind} on {port} (Ctrl-C to stop)"


class DeviceProc:
    """A `python -m sim device ...` subprocess with its stdout read line by line in a thread."""

    def __init__(self, kind: str, *args: str, log: Path | None = None) -> None:
        cmd = [sys.executable, "-m", "sim", "device", kind, *args]
        if log is not None:
            cmd += ["--log", str(log)]
        self.kind, self.log = kind, log
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.human = self.next_line()
        ready = self.next_line()
        assert ready.startswith("READY "), ready
        self.ready = json.loads(ready[len("READY "):])
        self.port = self.ready["port"]

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout: float = 20.0) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no stdout line from sim device {self.kind} within {timeout} s") from None
        if line is None:
            raise AssertionError(f"sim device {self.kind} exited: {self.proc.wait()} {self.proc.stderr.read()}")
        return line

    def control(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        ack = self.next_line()
        assert ack.startswith("ACK "), ack
        return json.loads(ack[len("ACK "):])

    def journal(self) -> list[dict]:
        return read_journal(self.log) if self.log is not None and self.log.exists() else []

    def meanings(self, type_: str = "command") -> list[str]:
        return [e["meaning"] for e in self.journal() if e["type"] == type_]

    def stop(self, sig: int = signal.SIGTERM) -> tuple[list[str], str]:
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        rest = []
        while True:
            try:
                line = self.lines.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            rest.append(line)
        return rest, self.proc.stderr.read()

    def __enter__(self) -> DeviceProc:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


# --------------------------------------------------------------------------- ready line, journal, exit


def test_magstim_session_is_journalled_with_arrival_times_and_meanings(tmp_path):
    log = tmp_path / "magstim.jsonl"
    with DeviceProc("magstim", "--set", "model=200", "--set", "arm_time_s=0.2", log=log) as dev:
        assert dev.human == HUMAN.format(kind="magstim", port=dev.port)
        r = dev.ready
        assert r["kind"] == "magstim" and r["transport"] == "pty" and r["control"] is True
        assert r["log"] == str(log) and r["pid"] == dev.proc.pid and r["device_path"].startswith("/dev/pts/")
        assert Path(dev.port).resolve() == Path(r["device_path"])  # the stable symlink names the pty
        assert r["driver_options"] == {}  # the magstim driver needs nothing a real unit's operator would do

        drv = MagstimDriver(dev.port, model="200", arm_time_s=0.2)
        t_before = pylsl.local_clock()
        drv.connect()
        drv.set_parameters(intensity_pct=50)
        drv.arm()
        assert wait_for(lambda: drv.status().ready)
        t_fire = drv.fire()
        drv.disarm()
        drv.close()
        assert wait_for(lambda: "remote off" in dev.meanings()[-1:])
        rest, err = dev.stop(signal.SIGTERM)
    assert dev.proc.returncode == 0, err
    assert rest[-1].startswith("neuroreflex sim: virtual magstim stopped;")

    entries = read_journal(log)
    assert entries[0]["type"] == "start" and entries[-1]["type"] == "stop"
    assert [e["seq"] for e in entries] == list(range(len(entries)))
    assert entries[0]["info"]["port"] == dev.port and entries[0]["info"]["options"]["arm_time_s"] == 0.2
    commands = [e for e in entries if e["type"] == "command"]
    meanings = [e["meaning"] for e in commands]
    assert meanings[0] == "remote on"
    for expected in ("set power 50", "arm", "fire", "disarm"):
        assert expected in meanings, meanings
    fire = commands[meanings.index("fire")]
    assert bytes.fromhex(fire["hex"]) == with_crc(b"EH") and fire["reply"] is not None
    # it reached the unit after the driver began to send it (same LSL clock); the driver stamps when write()
    # has returned, and the unit's process may read the bytes a few microseconds before that
    assert t_fire >= t_before and fire["t"] >= t_before and fire["t"] > t_fire - 1e-3
    assert bytes.fromhex(commands[meanings.index("set power 50")]["hex"]) == with_crc(b"@050")
    times = [e["t"] for e in commands]
    assert times == sorted(times)
    pulses = [e for e in entries if e["type"] == "pulse"]
    assert [p["meaning"] for p in pulses] == ["pulse 50 %"] and pulses[0]["t"] == fire["t"]
    assert not Path(dev.port).exists()  # the symlink is removed on exit


def test_keepalive_loss_is_journalled_as_a_state_change_of_the_unit(tmp_path):
    log = tmp_path / "magstim.jsonl"
    with DeviceProc("magstim", "--set", "keepalive_timeout_disarmed_s=0.3", log=log) as dev:
        with serial.serial_for_url(dev.port, baudrate=9600, timeout=1) as port:
            port.write(with_crc(b"Q@"))
            assert len(port.read(3)) == 3
            port.write(with_crc(b"Q@"))  # again while in remote control: a keep-alive
            assert len(port.read(3)) == 3
        assert wait_for(lambda: any("keep-alive missed" in m for m in dev.meanings("event")))
        dev.stop(signal.SIGINT)
    assert dev.proc.returncode == 0
    assert [m for m in dev.meanings()] == ["remote on", "keep-alive"]
    [event] = [e for e in read_journal(log) if e["type"] == "event"]
    assert event["meaning"].startswith("remote control dropped: keep-alive missed") and "disarmed" in event["meaning"]
    assert event["hex"] is None


# --------------------------------------------------------------------------- faults through stdin


def test_magstim_faults_injected_through_stdin_reach_the_driver(tmp_path):
    log = tmp_path / "magstim.jsonl"
    with DeviceProc("magstim", log=log) as dev:
        drv = MagstimDriver(dev.port, model="200", reply_timeout_s=0.2)
        ack = dev.control("fault no_reply")
        assert ack["ok"] and ack["detail"] == "no_reply = True"
        with pytest.raises(DeviceError):
            drv.connect()
        assert dev.control("clear")["ok"]
        ack = dev.control("fault bad_crc")
        assert ack["ok"] and ack["detail"] == "corrupt_crc = True"
        with pytest.raises(DeviceError, match="(?i)crc"):
            drv.connect()
        ack = dev.control("fault error_reply S")
        assert ack["ok"] and ack["detail"] == "reply_error = S"
        assert dev.control("status")["faults"]["reply_error"] == "S"
        assert dev.control("clear")["ok"]
        drv.connect()  # healthy again
        assert drv.status().remote
        drv.close()
        bad = dev.control("fault garble")
        assert not bad["ok"] and "magstim has no fault 'garble'" in bad["detail"] and "no_reply" in bad["detail"]
        assert not dev.control("explode")["ok"]
        dev.stop()
    controls = [e for e in read_journal(log) if e["type"] == "control"]
    assert [c["info"]["command"] for c in controls][:3] == ["fault no_reply", "clear", "fault bad_crc"]
    no_reply_commands = [e for e in read_journal(log) if e["type"] == "command" and e["reply"] is None]
    assert no_reply_commands and no_reply_commands[0]["meaning"] == "remote on"


def test_magstim_unplug_and_plug_keep_the_same_port_path(tmp_path):
    with DeviceProc("magstim", log=tmp_path / "m.jsonl") as dev:
        drv = MagstimDriver(dev.port, model="200", reply_timeout_s=0.2)
        drv.connect()
        first_pty = dev.ready["device_path"]
        ack = dev.control("unplug")
        assert ack["ok"] and ack["port"] == dev.port
        with pytest.raises(DeviceError):
            drv.set_parameters(intensity_pct=40)  # the port is gone under the driver
        ack = dev.control("plug")
        assert ack["ok"] and ack["same_port"] is True and ack["port"] == dev.port
        assert ack["device_path"] != first_pty and Path(dev.port).resolve() == Path(ack["device_path"])
        drv.connect()  # reopens the same path, now the new pseudo-terminal
        drv.set_parameters(intensity_pct=40)
        drv.close()
        dev.stop()
    links = [e["meaning"] for e in dev.journal() if e["type"] == "link"]
    assert links[0].startswith("unplugged") and links[1].startswith("plugged in on /dev/pts/")
    assert "set power 40" in dev.meanings()


def test_starstim_over_tcp_unplug_refuses_connections_and_plug_rebinds_the_same_port(tmp_path):
    log = tmp_path / "starstim.jsonl"
    with DeviceProc("starstim", "--set", "n_channels=2", "--set", "ramp_up_s=0.05", log=log) as dev:
        r = dev.ready
        assert r["transport"] == "tcp" and dev.port == f"127.0.0.1:{r['tcp_port']}" and r["host"] == "127.0.0.1"
        assert r["driver_options"] == {"protocol": "tacs"}  # the template its driver loads: no NIC operator here
        drv = StarstimDriver(port=r["tcp_port"], protocol="tacs", timeout_s=0.5)
        drv.connect()
        drv.arm()
        assert wait_for(lambda: _started(drv))
        assert wait_for(lambda: drv.status().ready)
        drv.set_parameters(current_a=0.001, transition_s=0.5)
        drv.stop()
        drv.close()
        assert wait_for(lambda: "abort" in dev.meanings())

        assert dev.control("unplug")["ok"]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", r["tcp_port"]), timeout=2).close()
        ack = dev.control("plug")
        assert ack["ok"] and ack["same_port"] is True and ack["port"] == dev.port
        socket.create_connection(("127.0.0.1", r["tcp_port"]), timeout=2).close()

        assert dev.control("fault no_reply")["ok"]
        with pytest.raises(DeviceError):
            StarstimDriver(port=r["tcp_port"], protocol="tacs", timeout_s=0.3).connect()
        assert not dev.control("fault bad_crc")["ok"]  # the NIC protocol has no CRC: said so, not ignored
        dev.stop()
    meanings = dev.meanings()
    assert meanings[:3] == ["version 04.07", "query status", "read channels"]
    assert "load protocol 'tacs'" in meanings and "start" in meanings
    assert "online current 1000 uA, transition 500 ms" in meanings
    events = dev.meanings("event")
    assert "protocol 'tacs' loaded" in events and any(e.startswith("ramp-up done") for e in events)
    assert any(m.startswith("client connected") for m in dev.meanings("link"))


def _started(drv: StarstimDriver) -> bool:
    try:
        drv.start()
        return True
    except NotReady:
        return False


def test_triggerbox_edges_are_journalled_as_pulse_code_and_low(tmp_path):
    log = tmp_path / "tb.jsonl"
    with DeviceProc("triggerbox", log=log) as dev:
        drv = TriggerBoxDriver(dev.port, code=1, pulse_width_s=0.01)
        drv.connect()
        drv.arm()
        drv.fire()
        assert wait_for(lambda: any(m.startswith("low (code 1") for m in dev.meanings()))
        # Closed before the unplug: writing to a pty whose master has gone fails with EIO on some
        # kernels and is buffered on others, so a close after it is not this test's subject.
        drv.close()
        assert dev.control("unplug")["ok"]
        ack = dev.control("plug")
        assert ack["ok"] and ack["same_port"]
        dev.stop()
    commands = [e for e in dev.journal() if e["type"] == "command"]
    rise = next(e for e in commands if e["meaning"] == "pulse code 1")
    fall = next(e for e in commands if e["meaning"].startswith("low (code 1"))
    assert rise["hex"] == "01" and fall["hex"] == "00" and fall["t"] > rise["t"]


def test_magventure_amplitude_and_fire(tmp_path):
    log = tmp_path / "mv.jsonl"
    with DeviceProc("magventure", "--set", "recharge_s=0.05", "--no-link", log=log) as dev:
        assert dev.port == dev.ready["device_path"] and dev.port.startswith("/dev/pts/")
        drv = MagVentureDriver(dev.port, recharge_s=0.05)
        drv.connect()
        drv.set_parameters(intensity_pct=40)
        drv.arm()
        assert wait_for(lambda: drv.status(query=False).ready)
        drv.fire()
        drv.close()
        assert wait_for(lambda: "pulse 40 %" in dev.meanings("pulse"))
        ack = dev.control("fault bad_crc")
        assert ack["ok"] and ack["detail"] == "corrupt_crc = True"
        dev.stop()
    meanings = dev.meanings()
    assert "amplitude 40" in meanings and "enable" in meanings and "fire" in meanings


def test_stdin_eof_does_not_stop_the_device(tmp_path):
    with DeviceProc("triggerbox", log=tmp_path / "tb.jsonl") as dev:
        dev.proc.stdin.close()
        time.sleep(0.3)
        assert dev.proc.poll() is None
        with serial.serial_for_url(dev.port, baudrate=115200, timeout=1) as port:
            port.write(b"\x00")
            assert wait_for(lambda: dev.meanings() == ["low (unchanged)"])
        rest, err = dev.stop(signal.SIGINT)
    assert dev.proc.returncode == 0, err
    assert "1 commands received" in rest[-1]
