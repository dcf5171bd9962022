"""Magstim driver against the virtual Magstim on a real pseudo-terminal: bytes, timing, keep-alive, faults.

CRCs are computed here independently (0xFF minus the byte sum modulo 256) and the documented frames
(``Q@n``, ``R@m``, ``EBx``, ``EAy``, ``EHr``) are written out literally.
"""

from __future__ import annotations

import contextlib
import time

import pytest
import serial
from pylsl import local_clock

from drivers.magstim import MagstimDriver
from drivers.stimulator import DeviceError, NotReady
from sim.devices import create as create_device


def crc(body: bytes) -> bytes:
    return bytes([0xFF - sum(body) % 256])


def framed(body: bytes) -> bytes:
    return body + crc(body)


def wait_until(predicate, timeout: float = 4.0) -> bool:
    """Bounded polling; the bound only keeps a broken test from hanging."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


FAST_DEVICE = dict(arm_time_s=0.2, recharge_s=0.1, power_down_s_per_pct=0.02, train_wait_s=0.1)
FAST_DRIVER = dict(arm_time_s=0.2, recharge_s=0.1, power_down_s_per_pct=0.02, train_wait_s=0.1)


@contextlib.contextmanager
def rig(model: str = "200", device: dict | None = None, driver: dict | None = None, connect: bool = True):
    dev = create_device("magstim", model=model, **(device or {}))
    dev.start()
    drv = MagstimDriver(dev.port, model=model, **{"reply_timeout_s": 0.5, **(driver or {})})  # slack for busy CI
    try:
        if connect:
            drv.connect()
        yield dev, drv
    finally:
        with contextlib.suppress(DeviceError):
            drv.close()
        dev.stop()


def frames(dev) -> list[bytes]:
    return [f for _, f in dev.frames]


def without_keepalives(dev) -> list[bytes]:
    return [f for f in frames(dev) if f != b"Q@n"]


# ---------------------------------------------------------------------------------------- bytes
def test_documented_frames_have_the_documented_crcs():
    assert framed(b"Q@") == b"Q@n" and framed(b"R@") == b"R@m"
    assert framed(b"EB") == b"EBx" and framed(b"EA") == b"EAy" and framed(b"EH") == b"EHr"
    assert framed(b"@050") == b"@050*"


def test_driver_bytes_on_the_wire_are_byte_exact():
    with rig(device=FAST_DEVICE, driver=FAST_DRIVER) as (dev, drv):
        drv.set_parameters(intensity_pct=50)
        drv.arm()
        assert wait_until(lambda: drv.status().ready)
        drv.fire()
        drv.disarm()
        drv.close()
    sent = frames(dev)
    assert sent[:3] == [b"Q@n", b"EAy", framed(b"J@")]  # take remote, make sure disarmed, read settings
    commands = [f for f in sent[3:] if f not in (b"Q@n", framed(b"J@"))]  # keep-alives; status() polls J@
    assert commands == [framed(b"@050"), b"EBx", b"EHr", b"EAy", b"EAy", b"R@m"]
    assert b"@050*" in sent
    raw = b"".join(r.data for r in dev.log_snapshot())
    assert raw == b"".join(frames(dev))  # nothing on the wire but whole frames


def test_virtual_device_replies_byte_exact_to_raw_frames():
    dev = create_device("magstim", model="200", power=30)
    dev.start()
    try:
        port = serial.serial_for_url(dev.port, baudrate=9600, timeout=1)
        port.write(b"EBx")  # no remote control yet: wrong state
        assert port.read(3) == b"ES" + crc(b"ES")
        port.write(b"Q@n")
        status = 0x80 | 0x08 | 0x01  # remote, coil present, standby
        assert port.read(3) == b"Q" + bytes([status]) + crc(b"Q" + bytes([status]))
        port.write(b"J@")  # a frame split over two writes
        time.sleep(0.01)
        port.write(crc(b"J@"))
        body = b"J" + bytes([status]) + b"030000000"
        assert port.read(12) == body + crc(body)
        port.write(b"@05")
        port.write(b"0*")
        assert port.read(3) == b"@" + bytes([status]) + crc(b"@" + bytes([status]))
        assert dev.power == 50
        port.write(b"@050+")  # bad CRC: invalid data
        assert port.read(3) == b"@?" + crc(b"@?")
        port.write(b"@101" + crc(b"@101"))  # out of range: invalid data
        assert port.read(3) == b"@?" + crc(b"@?")
        port.write(b"x@" + crc(b"x@"))  # not a 200² command: lone '?'
        assert port.read(1) == b"?"
        port.timeout = 0.1
        assert port.read(1) == b""
        port.write(b"EHr")  # not armed: wrong state
        assert port.read(3) == b"ES" + crc(b"ES")
        port.write(b"R@m")
        assert port.read(3) == b"R\x09" + crc(b"R\x09")
        port.close()
    finally:
        dev.stop()


# ---------------------------------------------------------------------------------------- timing
def test_arming_takes_1_1_s_then_fire_is_accepted_and_logged_with_power():
    with rig(device=dict(recharge_s=0.1), driver=dict(recharge_s=0.1)) as (dev, drv):
        drv.set_parameters(intensity_pct=50)
        t_arm = drv.arm()
        with pytest.raises(NotReady, match=r"armed at t=\d+\.\d+, ready in \d\.\d s"):
            drv.fire()
        status = drv.status()
        assert status.armed and not status.ready and status.ready_at >= t_arm + 1.1
        assert not dev.pulses
        assert wait_until(lambda: drv.status().ready)
        t_fire = drv.fire()
        [(t_pulse, power)] = dev.pulses
        assert power == 50
        t_eb = next(t for t, f in dev.frames if f == b"EBx")
        assert t_pulse - t_eb >= 1.1  # the unit was never asked to fire before it was ready
        assert t_fire > t_arm
        with pytest.raises(NotReady, match="recharging"):
            drv.fire()


def test_power_change_is_not_ready_until_charged_and_pulse_has_new_power():
    with rig(device=FAST_DEVICE, driver=FAST_DRIVER) as (dev, drv):
        drv.set_parameters(intensity_pct=30)
        drv.arm()
        assert wait_until(lambda: drv.status().ready)
        drv.set_parameters(intensity_pct=60)  # +30 % at 10 ms/% = 0.3 s
        with pytest.raises(NotReady, match=r"power changing 30 -> 60 %.*ready in"):
            drv.fire()
        assert wait_until(lambda: drv.status().ready)
        drv.fire()
        assert wait_until(lambda: drv.status().ready)
        drv.set_parameters(intensity_pct=45)  # -15 % at 20 ms/% (this rig's discharge rate) = 0.3 s
        with pytest.raises(NotReady, match="power changing 60 -> 45 %"):
            drv.fire()
        assert wait_until(lambda: drv.status().ready)
        drv.fire()
        assert [p for _, p in dev.pulses] == [60, 45]


def test_parameters_are_validated_before_anything_is_sent():
    with rig() as (dev, drv):
        before = frames(dev)
        with pytest.raises(ValueError, match="whole number in 0..100"):
            drv.set_parameters(intensity_pct=50.5)
        with pytest.raises(ValueError, match="whole number in 0..100"):
            drv.set_parameters(intensity_pct=101)
        with pytest.raises(ValueError, match=r"unknown parameter.*intensity_b_pct"):
            drv.set_parameters(intensity_pct=50, intensity_b_pct=40)
        assert frames(dev) == before


# ---------------------------------------------------------------------------------------- keep-alive
def test_keepalive_is_faster_while_armed_and_keeps_remote_control():
    device = dict(FAST_DEVICE, keepalive_timeout_s=0.3, keepalive_timeout_disarmed_s=1.0)
    driver = dict(FAST_DRIVER, keepalive_armed_s=0.1, keepalive_disarmed_s=0.4)
    with rig(device=device, driver=driver) as (dev, drv):
        assert wait_until(lambda: frames(dev).count(b"Q@n") >= 3)  # connect + 2 disarmed keep-alives
        t_arm = drv.arm()
        assert wait_until(lambda: sum(1 for t, f in dev.frames if f == b"Q@n" and t > t_arm) >= 8)
        assert dev.remote and dev.armed  # 0.8 s armed with a 0.3 s timeout: kept alive
        ka = [t for t, f in dev.frames if f == b"Q@n"]
        disarmed_gaps = [b - a for a, b in zip(ka, ka[1:]) if b < t_arm]
        armed_gaps = [b - a for a, b in zip(ka, ka[1:]) if a > t_arm]
        assert min(disarmed_gaps) > 0.3 and max(armed_gaps) < 0.3
        assert not [e for _, e in dev.events if "dropped" in e]


def test_starved_keepalive_lets_the_unit_drop_remote_and_the_driver_says_so():
    device = dict(FAST_DEVICE, keepalive_timeout_s=0.3)
    driver = dict(FAST_DRIVER, keepalive_armed_s=0.1)
    with rig(device=device, driver=driver) as (dev, drv):
        drv.set_parameters(intensity_pct=40)
        drv.arm()
        assert wait_until(lambda: drv.status().ready)
        drv.pause_keepalive()  # a frozen controller
        assert wait_until(lambda: not dev.remote)
        assert not dev.armed
        assert any("remote control dropped" in e for _, e in dev.events)
        with pytest.raises(DeviceError, match="remote control was lost") as err:
            drv.fire()
        assert "'S'" in str(err.value)
        assert not dev.pulses
        with pytest.raises(DeviceError, match="remote control was lost"):  # sticky until connect()
            drv.arm()
        assert not drv.status().remote
        drv.resume_keepalive()
        drv.connect()  # the operator takes remote control again; the unit stays disarmed
        assert dev.remote and not dev.armed
        drv.arm()
        assert wait_until(lambda: drv.status().ready)
        drv.fire()
        assert [p for _, p in dev.pulses] == [40]


def test_unit_that_disarms_itself_is_noticed_by_the_keepalive():
    device = dict(FAST_DEVICE, armed_idle_timeout_s=0.3)
    driver = dict(FAST_DRIVER, keepalive_armed_s=0.1)
    with rig(device=device, driver=driver) as (dev, drv):
        drv.arm()
        assert wait_until(lambda: not dev.armed)
        assert wait_until(lambda: "disarmed itself" in (drv.status().error or ""))
        with pytest.raises(DeviceError, match="disarmed itself"):
            drv.fire()


# ---------------------------------------------------------------------------------------- faults
@pytest.mark.parametrize(
    "fault, value, reason",
    [
        ("no_reply", True, r"no reply from the unit within 500 ms"),
        ("corrupt_crc", True, r"CRC mismatch in reply"),
        ("reply_error", b"?", r"rejected the data of '@070' as invalid \(reply '\?' in byte 1\)"),
        ("reply_error", b"S", r"refused '@070'.*current state \(reply 'S' in byte 1\).*standby, remote control"),
        ("unknown_command", True, r"did not recognise command '@070' \(reply '\?'\)"),
    ],
)
def test_bad_replies_raise_device_error_with_the_reason(fault, value, reason):
    with rig() as (dev, drv):
        setattr(dev.faults, fault, value)
        dev.faults.only = b"@"
        with pytest.raises(DeviceError, match=reason):
            drv.set_parameters(intensity_pct=70)
        setattr(dev.faults, fault, None if fault == "reply_error" else False)
        drv.set_parameters(intensity_pct=70)  # command errors are not sticky
        assert dev.power == 70


def test_cable_pulled_gives_no_reply_and_the_unit_drops_remote():
    with rig(device=dict(FAST_DEVICE, keepalive_timeout_s=0.3), driver=FAST_DRIVER) as (dev, drv):
        drv.arm()
        dev.disconnect()
        with pytest.raises(DeviceError, match="no reply"):
            drv.set_parameters(intensity_pct=31)
        assert wait_until(lambda: not dev.remote and not dev.armed)


def test_unanswered_keepalive_is_a_sticky_fault():
    with rig(device=FAST_DEVICE, driver=dict(FAST_DRIVER, keepalive_armed_s=0.1)) as (dev, drv):
        drv.arm()
        dev.faults.no_reply = True
        assert wait_until(lambda: "keep-alive failed" in (drv.status().error or ""))
        dev.faults.no_reply = False
        with pytest.raises(DeviceError, match=r"cannot fire: keep-alive failed.*no reply"):
            drv.fire()
        assert wait_until(lambda: not dev.armed)  # the driver disarmed after the fault (or the unit did)


def test_port_closed_mid_session_raises_and_close_reports_the_unconfirmed_disarm():
    dev = create_device("magstim", model="200", **FAST_DEVICE)
    dev.start()
    drv = MagstimDriver(dev.port, reply_timeout_s=0.5, **FAST_DRIVER)
    drv.connect()
    drv.arm()
    dev.stop()  # the other end of the line is gone
    with pytest.raises(DeviceError, match="serial port"):
        drv.set_parameters(intensity_pct=40)
    with pytest.raises(DeviceError, match="serial port"):
        drv.fire()
    with pytest.raises(DeviceError):
        drv.disarm()  # attempted anyway, and fails loudly
    assert not drv.status().connected
    with pytest.raises(DeviceError, match="disarm was not confirmed"):
        drv.close()
    drv.close()  # safe twice


def test_close_disarms_and_releases_remote_control():
    with rig(device=FAST_DEVICE, driver=FAST_DRIVER) as (dev, drv):
        drv.arm()
        assert dev.armed and dev.remote
        drv.close()
        assert not dev.armed and not dev.remote
        assert without_keepalives(dev)[-2:] == [b"EAy", b"R@m"]
        n = len(frames(dev))
        drv.close()  # safe twice, sends nothing
        assert len(frames(dev)) == n
        with pytest.raises(DeviceError, match="not connected"):
            drv.arm()


def test_error_code_is_read_and_reported():
    with rig() as (dev, drv):
        assert drv.read_error_code() == "000"
        dev.faults.error_code = "021"
        assert drv.read_error_code() == "021"
        assert "021" in drv.status().error
        assert framed(b"I@") in frames(dev)


# ---------------------------------------------------------------------------------------- variants
def test_bistim_sets_both_powers_and_interval_and_fires_both_channels():
    with rig("bistim", device=FAST_DEVICE, driver=FAST_DRIVER) as (dev, drv):
        drv.set_parameters(intensity_pct=40, intensity_b_pct=60, interval_s=0.005)
        assert without_keepalives(dev)[-3:] == [framed(b"@040"), framed(b"A060"), framed(b"C005")]
        params = drv.status().parameters
        assert params == {"intensity_pct": 40, "intensity_b_pct": 60, "interval_s": 0.005}
        drv.arm()
        assert wait_until(lambda: drv.status().ready)
        drv.set_parameters(intensity_b_pct=70)  # channel B charges too
        with pytest.raises(NotReady, match="power B changing 60 -> 70 %"):
            drv.fire()
        assert wait_until(lambda: drv.status().ready)
        drv.fire()
        [(t_a, p_a)] = dev.pulses
        [(t_b, p_b)] = dev.pulses_b
        assert (p_a, p_b) == (40, 70) and t_b - t_a == pytest.approx(0.005)
        with pytest.raises(ValueError, match="multiple of 0.001"):
            drv.set_parameters(interval_s=0.0025)


def test_rapid_train_parameters_frames_and_train_timing():
    with rig("rapid", device=FAST_DEVICE, driver=FAST_DRIVER) as (dev, drv):
        assert framed(b"\\@") in frames(dev) and framed(b"J@") not in frames(dev)
        assert drv.status().parameters["mode"] == "single"
        drv.set_parameters(intensity_pct=55, frequency_hz=10, n_pulses=5)  # duration follows: 0.5 s
        sent = without_keepalives(dev)
        i = sent.index(framed(b"@055"))
        assert sent[i + 1:i + 5] == [framed(b"[0010"), framed(b"B0100"), framed(b"D00005"), framed(b"[0005")]
        params = drv.status().parameters
        assert params["mode"] == "repetitive" and params["frequency_hz"] == 10.0
        assert params["n_pulses"] == 5 and params["train_duration_s"] == 0.5
        assert dev.repetitive and dev.n_pulses == 5
        with pytest.raises(ValueError, match="does not match"):
            drv.set_parameters(frequency_hz=10, n_pulses=5, train_duration_s=2)
        drv.arm()
        assert wait_until(lambda: drv.status().ready)
        drv.fire()
        times = [t for t, _ in dev.pulses]
        assert len(times) == 5 and {p for _, p in dev.pulses} == {55}
        assert [b - a for a, b in zip(times, times[1:])] == pytest.approx([0.1] * 4)
        with pytest.raises(NotReady, match="train fired"):
            drv.fire()
        with pytest.raises(NotReady, match="settings locked"):
            drv.set_parameters(frequency_hz=5)
        with pytest.raises(DeviceError, match="needs the unit disarmed"):
            drv.set_parameters(mode="single")
        assert wait_until(lambda: drv.status().ready)
        drv.disarm()
        drv.set_parameters(mode="single")
        assert not dev.repetitive and drv.status().parameters["mode"] == "single"


def test_rapid_refuses_parameter_changes_during_a_train_on_the_device_side():
    with rig("rapid", device=dict(FAST_DEVICE, train_wait_s=2.0), driver=FAST_DRIVER) as (dev, drv):
        drv.set_parameters(frequency_hz=20, n_pulses=4)
        drv.arm()
        assert wait_until(lambda: drv.status().ready)
        drv.fire()
        assert wait_until(lambda: local_clock() > dev.pulses[-1][0] + 0.15)  # the driver's own lock has expired
        with pytest.raises(DeviceError, match=r"'S'.*the unit reports"):
            drv.set_parameters(frequency_hz=5)
        assert dev.frequency_hz == 20


def test_rapid_connect_reads_the_software_version_before_the_parameters():
    with rig("rapid", device=FAST_DEVICE, driver=FAST_DRIVER) as (dev, drv):
        assert drv.version == (9, 0)
        sent = without_keepalives(dev)
        assert sent[:3] == [b"EAy", b"NDm", framed(b"\\@")]  # ND's CRC letter as the Rapid² document prints it
        assert drv.read_version() == (9, 0)


def test_rapid_with_older_software_is_refused_at_connect_and_released():
    with rig("rapid", device=dict(FAST_DEVICE, version="8.1"), driver=FAST_DRIVER, connect=False) as (dev, drv):
        with pytest.raises(DeviceError, match=r"software V8\.1; this driver speaks the formats of V9\.0 and later"):
            drv.connect()
        assert not dev.remote and not dev.armed
        assert frames(dev)[-1] == b"R@m" and framed(b"\\@") not in frames(dev)


def test_coil_temperature_is_read():
    with rig() as (dev, drv):
        assert drv.read_coil_temperature() == (24.0, 24.0)
        dev.coil1_temperature_c, dev.coil2_temperature_c = 41.5, 30.2
        assert drv.read_coil_temperature() == (41.5, 30.2)
        assert framed(b"F@") in frames(dev)
