"""MagVenture driver against the virtual MagPro on a real pseudo-terminal: bytes on the wire, timing, faults."""

from __future__ import annotations

import random

import pylsl
import pytest
import serial
from helpers import wait_for

from drivers.base import Command
from drivers.magventure import MagVentureDriver, crc8_maxim, encode_frame
from drivers.stimulator import ARM, FIRE, SET, DeviceError, NotReady
from sim.devices import create as create_device
from sim.devices import magventure as virtual

RECHARGE_S = 0.3


# ---------------------------------------------------------------- independent reference
def crc8_maxim_msb_first(data: bytes) -> int:
    """CRC-8/MAXIM computed the other way round: MSB-first with poly 0x31 on bit-reversed bytes."""

    def rev(x: int) -> int:
        return int(f"{x:08b}"[::-1], 2)

    crc = 0
    for byte in data:
        crc ^= rev(byte)
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return rev(crc)


def frame(*payload: int) -> bytes:
    p = bytes(payload)
    return bytes([0xFE, len(p)]) + p + bytes([crc8_maxim_msb_first(p), 0xFF])


def payloads(dev) -> list[bytes]:
    return [c.payload for c in dev.commands]


def wire(dev) -> bytes:
    return b"".join(r.data for r in dev.log_snapshot())


# ---------------------------------------------------------------- fixtures
@pytest.fixture
def dev():
    d = create_device("magventure", recharge_s=RECHARGE_S)
    d.start()
    yield d
    d.stop()


@pytest.fixture
def drv(dev):
    d = MagVentureDriver(dev.port, recharge_s=RECHARGE_S)
    d.connect()
    yield d
    d.close()


def armed_and_ready(drv: MagVentureDriver) -> None:
    drv.arm()
    assert wait_for(lambda: drv.status(query=False).ready), "device never became ready after arming"


# ---------------------------------------------------------------- CRC and framing
def test_crc8_maxim_check_value_and_agreement():
    assert crc8_maxim_msb_first(b"123456789") == 0xA1  # the published CRC-8/MAXIM check value
    assert crc8_maxim(b"123456789") == 0xA1
    assert virtual.crc8_maxim(b"123456789") == 0xA1
    assert crc8_maxim(b"\x03\x01") == 0x0B
    rng = random.Random(3)
    for _ in range(300):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12)))
        assert crc8_maxim(data) == crc8_maxim_msb_first(data) == virtual.crc8_maxim(data)


def test_frame_encoding():
    assert encode_frame(b"\x03\x01") == bytes.fromhex("fe 02 03 01 0b ff")
    assert encode_frame(b"\x00") == bytes.fromhex("fe 01 00 00 ff")
    assert encode_frame(b"\x02\x01") == frame(2, 1)
    with pytest.raises(ValueError):
        encode_frame(b"")


# ---------------------------------------------------------------- wire and behaviour
def test_connect_requests_status_and_reads_it(dev, drv):
    assert wire(dev).startswith(bytes.fromhex("fe 01 00 00 ff"))
    st = drv.status()
    assert st.connected and not st.armed and not st.ready
    assert st.parameters["model"] == "X100" and st.parameters["serial_no"] == dev.serial_no
    assert st.parameters["waveform"] == "Biphasic" and st.parameters["mode"] == "Standard"
    assert st.parameters["coil_type"] == dev.coil_type and st.parameters["intensity_pct"] == 0


def test_connect_disables_a_device_left_enabled():
    with create_device("magventure", enabled=True, amplitude=40) as dev:
        drv = MagVentureDriver(dev.port)
        drv.connect()
        try:
            assert payloads(dev)[:2] == [b"\x00", b"\x02\x00"]
            assert not dev.enabled and not drv.status().armed
            assert drv.status().parameters["intensity_pct"] == 40
        finally:
            drv.close()


def test_amplitude_frames_on_the_wire(dev, drv):
    drv.set_parameters(intensity_pct=50)
    assert wire(dev).endswith(frame(0x01, 50))
    assert dev.amplitude == 50
    drv.set_parameters(intensity_pct=60, intensity_b_pct=30)  # twin/dual form: 01 aa bb
    assert wire(dev).endswith(frame(0x01, 60, 30))
    assert (dev.amplitude, dev.amplitude_b) == (60, 30)
    assert drv.status().parameters["intensity_b_pct"] == 30


def test_arm_recharge_then_fire_exact_bytes(dev, drv):
    drv.set_parameters(intensity_pct=55)
    drv.arm()
    assert wire(dev).endswith(frame(0x02, 0x01)) and dev.enabled
    st = drv.status(query=False)
    assert st.armed and not st.ready and st.ready_at is not None
    with pytest.raises(NotReady, match="recharging"):
        drv.fire()
    assert dev.pulses == [] and b"\x03\x01" not in payloads(dev)  # refused before the wire
    assert wait_for(lambda: drv.status(query=False).ready)
    t_sent = drv.fire()
    assert wire(dev).endswith(bytes.fromhex("fe 02 03 01 0b ff"))
    assert len(dev.pulses) == 1 and dev.pulses[0][1] == 55
    assert dev.pulses[0][0] >= t_sent - 0.002  # the pulse is stamped at arrival, after the bytes left
    assert drv.last_didt is not None and drv.last_didt[0] > 0


def test_fire_while_disabled_is_refused(dev, drv):
    with pytest.raises(NotReady, match="not enabled"):
        drv.fire()
    assert b"\x03\x01" not in payloads(dev) and dev.pulses == []


def test_amplitude_change_restarts_recharge(dev, drv):
    drv.set_parameters(intensity_pct=40)
    armed_and_ready(drv)
    drv.fire()
    assert wait_for(lambda: drv.status(query=False).ready)
    drv.set_parameters(intensity_pct=45)
    with pytest.raises(NotReady, match="recharging"):
        drv.fire()
    assert wait_for(lambda: drv.status(query=False).ready)
    drv.fire()
    assert [a for _, a in dev.pulses] == [40, 45]


def test_device_that_did_not_fire_is_an_error(dev):
    """Driver's recharge model shorter than the device's: the device reports di/dt 0, the driver says so."""
    drv = MagVentureDriver(dev.port, recharge_s=0.0)
    drv.connect()
    try:
        drv.set_parameters(intensity_pct=30)
        drv.arm()
        with pytest.raises(DeviceError, match="did not fire"):
            drv.fire()
        assert dev.pulses == []
    finally:
        drv.close()


def test_train_parameters_frame_and_train(dev, drv):
    drv.set_parameters(frequency_hz=10, pulses_per_train=20, n_trains=3, iti_s=2.5)
    assert wire(dev).endswith(frame(0x06, 0x00, 100, 0x00, 20, 0x00, 3, 0x00, 25))
    assert dev.train == virtual.Train(10.0, 20, 3, 2.5)
    drv.set_parameters(frequency_hz=0.5)  # partial update keeps the rest
    assert wire(dev).endswith(frame(0x06, 0x00, 5, 0x00, 20, 0x00, 3, 0x00, 25))
    drv.set_parameters(frequency_hz=50, pulses_per_train=5, n_trains=2, iti_s=0.2, intensity_pct=20)
    armed_and_ready(drv)
    drv.start()
    assert wire(dev).endswith(frame(0x04))
    with pytest.raises(NotReady, match="train is running"):
        drv.fire()
    assert wait_for(lambda: len(dev.pulses) == 10)
    times = [t for t, _ in dev.pulses]
    gaps = [round(b - a, 6) for a, b in zip(times, times[1:])]
    assert gaps == [0.02] * 4 + [0.2] + [0.02] * 4  # the device's schedule: 50 pps, ITI 0.2 s
    assert wait_for(lambda: drv.status(query=False).ready)


def test_start_without_train_parameters_is_refused(dev, drv):
    armed_and_ready(drv)
    with pytest.raises(NotReady, match="no train parameters"):
        drv.start()


@pytest.mark.parametrize("params, match", [
    ({"intensity_pct": 101}, "whole percent"),
    ({"intensity_pct": 50.5}, "whole percent"),
    ({"frequency_hz": 0.15, "pulses_per_train": 1, "n_trains": 1, "iti_s": 1}, "0.1 Hz steps"),
    ({"frequency_hz": 10.5, "pulses_per_train": 1, "n_trains": 1, "iti_s": 1}, "1 Hz steps"),
    ({"frequency_hz": 10, "pulses_per_train": 1050, "n_trains": 1, "iti_s": 1}, "1100-2000"),
    ({"frequency_hz": 10, "pulses_per_train": 5, "n_trains": 501, "iti_s": 1}, "1-500"),
    ({"frequency_hz": 10, "pulses_per_train": 5, "n_trains": 1, "iti_s": 0.05}, "0.1-300 s"),
    ({"frequency_hz": 10}, "missing pulses_per_train"),
    ({"current_a": 1.0}, "cannot set current_a"),
])
def test_unsettable_parameters_never_reach_the_wire(dev, drv, params, match):
    before = len(dev.commands)
    with pytest.raises(DeviceError, match=match):
        drv.set_parameters(**params)
    assert len(dev.commands) == before


def test_send_dispatches_commands(dev, drv):
    drv.send(Command(SET, 0.0, {"intensity_pct": 35}))
    drv.send(Command(ARM, 0.0))
    assert wait_for(lambda: drv.status(query=False).ready)
    t = drv.send(Command(FIRE, pylsl.local_clock()))
    assert isinstance(t, float) and [a for _, a in dev.pulses] == [35]


def test_close_disables_and_is_idempotent(dev, drv):
    drv.arm()
    assert dev.enabled
    drv.close()
    assert wire(dev).endswith(frame(0x02, 0x00)) and not dev.enabled
    drv.close()
    with pytest.raises(DeviceError, match="not connected"):
        drv.fire()


# ---------------------------------------------------------------- faults -> DeviceError with a reason
def test_no_reply(dev, drv):
    dev.faults.no_reply = True
    with pytest.raises(DeviceError, match="no reply within 100 ms while setting the amplitude"):
        drv.set_parameters(intensity_pct=20)


def test_bad_crc_in_reply(dev, drv):
    dev.faults.corrupt_crc = True
    with pytest.raises(DeviceError, match="bad CRC"):
        drv.arm()


def test_garbled_reply(dev, drv):
    dev.faults.garble = True
    with pytest.raises(DeviceError, match="malformed reply frame.*end byte 0xef"):
        drv.status()


def test_cable_pulled(dev, drv):
    drv.arm()
    dev.disconnect()
    with pytest.raises(DeviceError, match="no reply"):
        drv.status()
    with pytest.raises(DeviceError, match="not confirmed"):
        drv.disarm()  # attempted, quick, and says it is unconfirmed
    drv.close()  # never raises; the reason is kept
    assert "not confirmed" in (drv.last_error or "")


def test_port_closed_mid_session(dev, drv):
    drv.arm()
    dev.stop()
    with pytest.raises(DeviceError, match="link to .* broke|no reply"):
        drv.status()
    with pytest.raises(DeviceError):
        drv.fire()
    drv.close()  # disable attempted, failure kept, port released
    assert drv.last_error and not drv.status(query=False).connected


def test_connect_to_a_silent_device_fails_and_releases_the_port(dev):
    dev.faults.no_reply = True
    drv = MagVentureDriver(dev.port)
    with pytest.raises(DeviceError, match="no MagPro answering"):
        drv.connect()
    assert not drv.status(query=False).connected


# ---------------------------------------------------------------- the virtual device on its own
@pytest.fixture
def raw(dev):
    port = serial.serial_for_url(dev.port, baudrate=38400, timeout=0.3)
    yield port
    port.close()


def test_device_resynchronises_after_garbage(dev, raw):
    raw.write(b"\x00\x13\xfe\x05\x01" + frame(0x00))  # noise, then a truncated frame, then a status request
    reply = raw.read(13)
    assert reply[:3] == bytes.fromhex("fe 09 00") and reply[-1] == 0xFF
    assert reply[-2] == crc8_maxim_msb_first(reply[2:-2])
    assert [c.payload for c in dev.commands] == [b"\x00"] and dev.ignored


def test_device_ignores_bad_crc_frames(dev, raw):
    bad = bytearray(frame(0x02, 0x01))
    bad[-2] ^= 0xFF
    raw.write(bytes(bad))
    assert raw.read(8) == b""  # no reply, no change
    assert not dev.enabled and any("bad CRC" in i.reason for i in dev.ignored)
    raw.write(frame(0x02, 0x01))
    reply = raw.read(8)
    assert reply[2] == 0x01 and reply[5] & 0x10 and dev.enabled


def test_device_fire_timing_and_replies(dev, raw):
    raw.write(frame(0x01, 70))
    assert raw.read(8)[3] == 70
    raw.write(frame(0x03, 0x01))  # disabled: no pulse, di/dt 0
    assert raw.read(8)[3] == 0
    raw.write(frame(0x02, 0x01))
    raw.read(8)
    raw.write(frame(0x03, 0x01))  # still recharging: no pulse
    assert raw.read(8)[3] == 0 and dev.pulses == []
    assert wait_for(lambda: pylsl.local_clock() >= dev.ready_at)
    raw.write(frame(0x03, 0x01))
    reply = raw.read(8)
    assert reply[2] == 0x02 and reply[3] > 0 and [a for _, a in dev.pulses] == [70]
