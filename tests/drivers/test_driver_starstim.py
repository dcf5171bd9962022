"""Starstim/NIC2 driver against the virtual NIC on loopback TCP: bytes, bounds, segments, faults."""

from __future__ import annotations

import socket
import time

import pytest
from helpers import wait_for

from drivers.starstim import StarstimDriver
from drivers.stimulator import DeviceError, NotReady
from sim.devices import create
from sim.devices.starstim import VirtualStarstim

HANDSHAKE = b"\x8304.07\x00" + b"\x80" + b"\x84"  # VERSION "04.07", QUERY_STATUS, READ_CHANNELS


def wire(dev: VirtualStarstim) -> bytes:
    return b"".join(r.data for r in dev.log_snapshot())


def sent_since(dev: VirtualStarstim, n: int, expected: bytes) -> bytes:
    """The bytes the NIC received after the first ``n``, once as many as expected have arrived
    (commands without a reply may still be in flight when the driver returns)."""
    wait_for(lambda: len(wire(dev)) >= n + len(expected), 2.0)
    time.sleep(0.02)  # and nothing more follows
    return wire(dev)[n:]


@pytest.fixture
def nic():
    with VirtualStarstim(n_channels=2, protocols={"tacs": (1000.0, 10.0)}, ramp_up_s=0.2) as dev:
        yield dev


def connected(dev: VirtualStarstim, **options) -> StarstimDriver:
    drv = StarstimDriver(port=dev.tcp_port, protocol="tacs", timeout_s=0.5, **options)
    drv.connect()
    return drv


def running(drv: StarstimDriver) -> None:
    """arm, start when loaded, wait for full stimulation (bounded polling)."""
    drv.arm()
    assert wait_for(lambda: _try_start(drv))
    assert wait_for(lambda: drv.status().ready)


def _try_start(drv: StarstimDriver) -> bool:
    try:
        drv.start()
        return True
    except NotReady:
        return False


@pytest.fixture
def driver(nic):
    drv = connected(nic)
    yield drv
    try:
        drv.close()
    except DeviceError:
        pass


def test_registry_creates_the_virtual_nic():
    dev = create("starstim", n_channels=4)
    assert isinstance(dev, VirtualStarstim) and dev.n_channels == 4
    dev.stop()


def test_exact_bytes_of_every_command(nic, driver):
    assert wire(nic) == HANDSHAKE and driver.n_channels == 2
    n = len(wire(nic))
    driver.arm()
    assert sent_since(nic, n, b"\x80\x87tacs\x00") == b"\x80" + b"\x87tacs\x00"  # QUERY_STATUS, LOAD_PROTOCOL "tacs"
    assert wait_for(lambda: nic.state == 207)  # PROTOCOL_LOADED
    n = len(wire(nic))
    driver.start()
    assert sent_since(nic, n, b"\x80\x89") == b"\x80\x89"  # QUERY_STATUS, START_PROTOCOL
    assert wait_for(lambda: driver.status().ready)
    n = len(wire(nic))
    driver.set_parameters(current_a=1.5e-3, transition_s=0.5)
    expected = b"\x81" + b"\x931500;1500;500\x00"
    assert sent_since(nic, n, expected) == expected  # QUERY_STATUS_PROTOCOL, ATACS change
    n = len(wire(nic))
    driver.set_parameters(current_a=0.25e-3, channel=2)  # channel 1 keeps its 1500 uA
    expected = b"\x81" + b"\x931500;250;100\x00"
    assert sent_since(nic, n, expected) == expected
    n = len(wire(nic))
    driver.set_parameters(current_a=[1e-3, 0.5e-3], frequency_hz=[6, 40.5])
    expected = b"\x81" + b"\x931000;500;100\x00" + b"\x946;40.5\x00"  # ATACS + FTACS in one send
    assert sent_since(nic, n, expected) == expected
    assert wait_for(lambda: len(nic.applied) == 4)
    assert nic.amplitude_ua == [1000.0, 500.0] and nic.frequency_hz == [6.0, 40.5]
    assert [a.transition_ms for a in nic.applied] == [500.0, 100.0, 100.0, None]
    n = len(wire(nic))
    driver.pause()
    assert sent_since(nic, n, b"\x8b") == b"\x8b"  # PAUSE_PROTOCOL
    assert wait_for(lambda: not nic.stimulating)
    n = len(wire(nic))
    driver.stop()
    assert sent_since(nic, n, b"\x8a") == b"\x8a"  # ABORT_PROTOCOL
    assert nic.rejected == []


def test_driver_refuses_out_of_range_changes_and_sends_nothing(nic, driver):
    running(driver)
    n = len(wire(nic))
    with pytest.raises(ValueError, match="0-2000 uA"):
        driver.set_parameters(current_a=2.1e-3)
    with pytest.raises(ValueError, match="0-2000 uA"):
        driver.set_parameters(current_a=-1e-6)
    with pytest.raises(ValueError, match="0-2000 uA"):
        driver.set_parameters(current_a=[1e-3, 3e-3])
    with pytest.raises(ValueError, match="0-150 Hz"):
        driver.set_parameters(frequency_hz=150.5)
    with pytest.raises(ValueError, match="finite"):
        driver.set_parameters(frequency_hz=float("nan"))
    with pytest.raises(ValueError, match="channel must be 1-2"):
        driver.set_parameters(current_a=1e-3, channel=3)
    with pytest.raises(ValueError, match="100-10000 ms"):
        driver.set_parameters(current_a=1e-3, transition_s=0.05)
    with pytest.raises(ValueError, match=r"unknown to the driver"):
        driver.set_parameters(current_a=1e-3, channel=1)  # channel 2's amplitude was never set here
    with pytest.raises(ValueError, match="unknown parameter"):
        driver.set_parameters(intensity_pct=50)
    assert sent_since(nic, n, b"") == b"" and nic.applied == []
    driver.set_parameters(current_a=2e-3, frequency_hz=150)  # the bounds themselves are allowed
    assert wait_for(lambda: nic.amplitude_ua == [2000.0, 2000.0] and nic.frequency_hz == [150.0, 150.0])


def test_virtual_nic_refuses_out_of_range_changes_on_its_own(nic):
    with socket.create_connection(("127.0.0.1", nic.tcp_port), timeout=2) as c:
        c.sendall(b"\x8304.07\x00")
        assert c.recv(1) == bytes([204])  # IDLE
        c.sendall(b"\x80")
        assert c.recv(1) == bytes([200])  # REMOTE_CONTROL_ALLOWED
        c.sendall(b"\x87tacs\x00")
        assert wait_for(lambda: nic.state == 207)
        c.sendall(b"\x89")
        assert wait_for(lambda: nic.phase == 217)  # STIMULATION_FULL
        c.sendall(b"\x932500;1000;100\x00")  # 2500 uA
        c.sendall(b"\x931000;1000;50\x00")  # 50 ms transition
        c.sendall(b"\x94200;10\x00")  # 200 Hz
        c.sendall(b"\x94-1;10\x00")  # negative
        c.sendall(b"\x941000\x00")  # one value for two channels
        assert wait_for(lambda: len(nic.rejected) == 5)
    reasons = [r.reason for r in nic.rejected]
    assert "2500 uA outside 0-2000 uA" in reasons[0]
    assert "transition 50 ms" in reasons[1]
    assert "200 Hz outside 0-150 Hz" in reasons[2]
    assert "-1 Hz outside" in reasons[3]
    assert "expected 2" in reasons[4]
    assert nic.applied == [] and nic.amplitude_ua == [1000.0, 1000.0] and nic.frequency_hz == [10.0, 10.0]


def test_commands_split_across_segments_and_coalesced_in_one(nic):
    with socket.create_connection(("127.0.0.1", nic.tcp_port), timeout=2) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.sendall(b"\x8304.07\x00\x80\x84")  # three commands in one segment, three answers
        answer = b""
        while len(answer) < 3:
            answer += c.recv(3)
        assert answer == bytes([204, 200, 2])
        c.sendall(b"\x87ta")  # LOAD_PROTOCOL split in three segments
        time.sleep(0.03)
        c.sendall(b"c")
        time.sleep(0.03)
        c.sendall(b"s\x00")
        assert wait_for(lambda: nic.state == 207 and nic.loaded == "tacs")
        c.sendall(b"\x89")
        assert wait_for(lambda: nic.phase == 217)
        chunks_before = len(nic.log_snapshot())
        for part in (b"\x93", b"1200;", b"80", b"0;2", b"00", b"\x00\x94", b"12;1", b"3\x00"):
            c.sendall(part)
            time.sleep(0.02)
        assert wait_for(lambda: len(nic.applied) == 2)
        assert len(nic.log_snapshot()) - chunks_before >= 4  # the bytes really came in pieces
        c.sendall(b"\x80\x81")  # two queries coalesced
        answer = b""
        while len(answer) < 2:
            answer += c.recv(2)
        assert answer == bytes([208, 217])  # PROTOCOL_RUNNING, STIMULATION_FULL
    assert nic.amplitude_ua == [1200.0, 800.0] and nic.frequency_hz == [12.0, 13.0]
    assert [c.code for c in nic.commands] == [131, 128, 132, 135, 137, 147, 148, 128, 129]
    assert nic.rejected == []


def test_changes_refused_before_full_stimulation_then_taken(nic, driver):
    with pytest.raises(NotReady, match="disarmed"):
        driver.start()
    driver.arm()
    assert wait_for(lambda: _try_start(driver))
    with pytest.raises(NotReady, match="full stimulation.*STIMULATION_RAMPUP"):
        driver.set_parameters(current_a=1e-3)
    assert not driver.status().ready
    assert wait_for(lambda: driver.status().ready)
    driver.set_parameters(current_a=1e-3)
    assert wait_for(lambda: nic.applied and nic.applied[-1].values == (1000.0, 1000.0))
    with pytest.raises(NotReady, match="already running"):
        driver.start()


def test_disarm_aborts_at_once_and_start_needs_a_new_arm(nic, driver):
    running(driver)
    assert nic.stimulating
    driver.disarm()
    assert wait_for(lambda: not nic.stimulating)
    assert nic.commands[-1].code == 138
    with pytest.raises(NotReady, match="disarmed"):
        driver.start()
    with pytest.raises(NotReady, match="disarmed"):
        driver.set_parameters(current_a=1e-3)
    driver.arm()  # reloads the protocol
    assert wait_for(lambda: _try_start(driver))
    assert wait_for(lambda: nic.stimulating)


def test_close_always_sends_abort(nic):
    drv = connected(nic)
    drv.close()  # never started: abort is sent all the same
    assert wait_for(lambda: nic.commands and nic.commands[-1].code == 138)
    assert wait_for(lambda: not nic.client_connected)
    drv = connected(nic)
    running(drv)
    drv.close()
    drv.close()  # safe twice
    assert wait_for(lambda: not nic.stimulating)
    assert nic.commands[-1].code == 138


def test_unknown_protocol_is_a_device_error(nic):
    drv = StarstimDriver(port=nic.tcp_port, protocol="no-such-template", timeout_s=0.5)
    drv.connect()
    drv.arm()
    assert wait_for(lambda: nic.state == 205)  # PROTOCOL_NOT_LOADED
    with pytest.raises(DeviceError, match="could not load protocol 'no-such-template'"):
        drv.start()
    drv.close()


def test_remote_control_rejected_by_the_operator(nic):
    nic.faults.reject_remote = True
    drv = StarstimDriver(port=nic.tcp_port, timeout_s=0.5)
    with pytest.raises(DeviceError, match="rejected"):
        drv.connect()
    assert drv.status().connected is False


@pytest.mark.timeout(30)  # a hang fails here instead of stalling the suite
def test_no_reply_is_a_device_error_within_the_timeout(nic, driver):
    nic.faults.no_reply = True
    with pytest.raises(DeviceError, match=r"no reply from NIC to QUERY_STATUS \(128\) within 0.5 s"):
        driver.arm()
    assert "no reply" in driver.status().error
    nic.faults.no_reply = False
    driver.arm()  # the link itself is fine; a late answer would be dropped before the next query


def test_no_reply_at_connect(nic):
    nic.faults.no_reply = True
    with pytest.raises(DeviceError, match="no reply from NIC to VERSION"):
        StarstimDriver(port=nic.tcp_port, timeout_s=0.3).connect()


def test_disconnect_mid_session_is_a_device_error(nic, driver):
    running(driver)
    driver.set_parameters(current_a=1e-3)
    nic.disconnect()
    assert wait_for(lambda: not nic.client_connected)
    time.sleep(0.05)
    with pytest.raises(DeviceError, match="lost.*stimulation may still be running"):
        driver.set_parameters(current_a=0.5e-3)
    with pytest.raises(DeviceError, match="lost"):
        driver.start()
    status = driver.status()
    assert not status.connected and "lost" in status.error
    with pytest.raises(DeviceError, match="lost"):
        driver.close()  # the abort could not be sent: the caller is told
    assert nic.stimulating  # as on a real NIC, losing the client does not stop the protocol here


def test_server_gone_at_connect(nic):
    port = nic.tcp_port
    nic.stop()
    with pytest.raises(DeviceError, match="cannot connect"):
        StarstimDriver(port=port, timeout_s=0.3).connect()


def test_connect_waits_while_the_nic_synchronizes_then_gives_up_at_the_deadline():
    with VirtualStarstim(n_channels=2, sync_s=0.3) as dev:
        drv = StarstimDriver(port=dev.tcp_port, timeout_s=0.5, connect_timeout_s=3.0)
        drv.connect()  # VERSION is repeated until the NIC answers IDLE
        versions = [c for c in dev.commands if c.code == 131]
        assert len(versions) >= 2 and drv.n_channels == 2
        drv.close()
    with VirtualStarstim(n_channels=2, sync_s=30.0) as dev:
        drv = StarstimDriver(port=dev.tcp_port, timeout_s=0.5, connect_timeout_s=0.5)
        with pytest.raises(DeviceError, match="still synchronizing"):
            drv.connect()
