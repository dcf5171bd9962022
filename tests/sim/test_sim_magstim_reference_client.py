"""The virtual Magstim driven by an independent client (tests/magstim_reference_client.py) over a real pty.

Every reply is checked byte for byte (length and CRC included) against bytes written out here from
the protocol documents; the client shares no code with the driver or the virtual unit.
"""

from __future__ import annotations

import contextlib
import time

import pytest
from magstim_reference_client import DOCUMENTED_FRAMES, ReferenceClient, crc, frame, reply_length

from sim.devices import create as create_device

# Instrument status bytes: bit 0 standby, 1 armed, 2 ready, 3 coil present, 7 remote control.
STANDBY, ARMED, READY, COIL, REMOTE = 0x01, 0x02, 0x04, 0x08, 0x80
IDLE = COIL | STANDBY  # 0x09: not under remote control
IDLE_REMOTE = REMOTE | COIL | STANDBY  # 0x89
# Rapid² status: bit 0 enhanced power, 1 train, 2 wait, 3 single-pulse mode, 4 HV PSU, 5 coil ready.
SINGLE = 0x08 | 0x10 | 0x20  # 0x38
REPETITIVE = 0x10 | 0x20  # 0x30
ENHANCED = 0x01

FAST = dict(arm_time_s=0.2, recharge_s=0.1, power_down_s_per_pct=0.02, train_wait_s=0.1)


def wait_until(predicate, timeout: float = 4.0) -> bool:
    """Bounded polling; the bound only keeps a broken test from hanging."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def reply(body: bytes) -> bytes:
    """The expected reply: ``body`` and its CRC."""
    return body + crc(body)


@contextlib.contextmanager
def unit(model: str = "rapid", version: tuple[int, ...] = (9, 0), **options):
    dev = create_device("magstim", model=model, version=".".join(map(str, version)), **options)
    dev.start()
    client = ReferenceClient(dev.port, model, version)
    try:
        yield dev, client
    finally:
        client.close()
        dev.stop()


def wait_ready(client: ReferenceClient) -> bool:
    """Poll with the documented keep-alive until the status byte says ready."""
    return wait_until(lambda: client.remote_control().status["ready"])


# ---------------------------------------------------------------------------------------- the client itself
def test_the_clients_crc_reproduces_every_frame_the_documents_print():
    for body, printed in DOCUMENTED_FRAMES.items():
        assert frame(body) == printed, body
    assert frame(b"EA") == b"EAy" and frame(b"EB") == b"EBx" and frame(b"EH") == b"EHr"
    assert reply_length(b"\\@", "rapid", (9, 0)) == 24 and reply_length(b"\\@", "rapid", (7, 1)) == 22
    assert reply_length(b"\\@", "rapid", (6, 0)) == 21 and reply_length(b"F@", "200", (9, 0)) == 9


# ---------------------------------------------------------------------------------------- Rapid² V9
def test_a_rapid_client_connects_version_status_parameters_temperature():
    with unit("rapid") as (dev, client):
        r, version = client.get_version()  # the document's terminal test: 'NDm' before anything else
        assert r.raw == reply(b"NV9.0\x00") and len(r.raw) == 7 and r.crc_ok
        assert version == (9, 0)
        r = client.remote_control()
        assert r.raw == reply(b"Q" + bytes([IDLE_REMOTE])) and r.status["remote"]
        r, extended = client.get_system_status()
        assert r.raw == reply(b"x" + bytes([IDLE_REMOTE, SINGLE, 0x00, 0x00])) and len(r.raw) == 6
        assert r.rapid["single_pulse"] and r.rapid["hv_psu"] and r.rapid["coil_ready"]
        assert not any(extended.values())
        r, params = client.get_parameters()
        assert r.raw == reply(b"\\" + bytes([IDLE_REMOTE, SINGLE]) + b"030" + b"0010" + b"00001" + b"0010" + b"0005")
        assert len(r.raw) == 24 and r.crc_ok
        assert params == {"power": 30, "frequency_hz": 1.0, "n_pulses": 1, "duration_s": 1.0, "wait_s": 0.5}
        r, temperatures = client.get_temperature()
        assert r.raw == reply(b"F" + bytes([IDLE_REMOTE]) + b"240240") and len(r.raw) == 9
        assert temperatures == (24.0, 24.0)
        r, code = client.get_error_code()
        assert r.raw == reply(b"I" + bytes([IDLE_REMOTE]) + b"000") and code == "000"
        r, delay = client.get_charge_delay()
        assert r.raw == reply(b"o" + bytes([IDLE_REMOTE]) + b"0000") and len(r.raw) == 7 and delay == 0
        assert client.ignore_coil_interlock().raw == reply(b"b" + bytes([IDLE_REMOTE]))
        assert dev.coil_interlock_ignored


def test_queries_answer_without_remote_control_and_settings_are_refused():
    with unit("rapid") as (dev, client):
        assert client.get_version()[0].raw == reply(b"NV9.0\x00")
        assert client.get_system_status()[0].raw == reply(b"x" + bytes([IDLE, SINGLE, 0, 0]))
        assert client.get_temperature()[0].raw == reply(b"F" + bytes([IDLE]) + b"240240")
        assert client.get_charge_delay()[0].raw == reply(b"o" + bytes([IDLE]) + b"0000")
        assert len(client.get_parameters()[0].raw) == 24
        for r in (client.set_power(50), client.set_frequency(5), client.enhanced_power(True),
                  client.ignore_coil_interlock(), client.set_charge_delay(100), client.rtms_mode(True), client.arm()):
            assert r.raw == reply(r.command[:1] + b"S") and r.error == "conflict", r.command
        assert dev.power == 30 and not dev.repetitive and not dev.enhanced_power and dev.charge_delay_ms == 0
        assert client.disarm().raw == reply(b"E" + bytes([IDLE]))  # disarm always works


def test_rapid_train_settings_frames_replies_and_readback():
    with unit("rapid", **dict(FAST, train_wait_s=5.0)) as (dev, client):
        client.remote_control()
        r = client.set_frequency(10)
        assert r.raw == reply(b"BS"), "a frequency in single-pulse mode conflicts"
        r = client.rtms_mode(True)
        assert r.command == frame(b"[0010") and r.raw == reply(b"[" + bytes([IDLE_REMOTE, SINGLE]))
        assert client.set_frequency(10).raw == reply(b"B" + bytes([IDLE_REMOTE, REPETITIVE]))
        assert client.set_npulses(5).command == frame(b"D00005")
        assert client.set_duration(0.5).command == frame(b"[0005")
        r, params = client.get_parameters()
        assert r.raw == reply(b"\\" + bytes([IDLE_REMOTE, REPETITIVE]) + b"030" + b"0100" + b"00005" + b"0005"
                              + b"0050")
        assert params == {"power": 30, "frequency_hz": 10.0, "n_pulses": 5, "duration_s": 0.5, "wait_s": 5.0}
        for bad in (b"B1001", b"B0000", b"D06001", b"D00000", b"B01x0"):
            assert client.send(bad).raw == reply(bad[:1] + b"?"), bad
        assert client.send(b"", raw_frame=b"B0100\x00").raw == reply(b"B?")  # bad CRC
        assert (dev.frequency_tenths, dev.n_pulses, dev.duration_tenths) == (100, 5, 5)
        client.set_frequency(1)  # 5 pulses at 1 Hz: a 5 s train
        client.arm()
        assert wait_ready(client)
        assert client.fire().raw == reply(b"E" + bytes([REMOTE | COIL | READY]))
        assert len(dev.pulses) == 5
        r, _ = client.get_system_status()
        assert r.rapid["train"]
        assert client.set_frequency(2).raw == reply(b"BS"), "settings are locked during the train and its wait"
        assert client.disarm().status["ready"] is False
        assert client.rtms_mode(False).raw == reply(b"[S")  # still in the train's wait


def test_enhanced_power_mode_allows_110_percent_only_in_single_pulse_standby():
    with unit("rapid", **FAST) as (dev, client):
        client.remote_control()
        assert client.set_power(110).raw == reply(b"@?")
        r = client.enhanced_power(True)
        assert r.command == b"^@a" and r.raw == reply(b"^" + bytes([IDLE_REMOTE, SINGLE])) and len(r.raw) == 4
        assert client.get_system_status()[0].rapid["enhanced_power"]
        assert client.set_power(110).raw == reply(b"@" + bytes([IDLE_REMOTE]))
        assert client.set_power(111).raw == reply(b"@?")
        assert client.get_parameters()[1]["power"] == 110
        assert client.rtms_mode(True).raw == reply(b"[S")
        client.arm()
        assert client.enhanced_power(False).raw == reply(b"_S")
        client.disarm()
        r = client.enhanced_power(False)
        assert r.command == b"_@`" and r.raw == reply(b"_" + bytes([IDLE_REMOTE, SINGLE | ENHANCED]))
        assert client.get_parameters()[1]["power"] == 100 and not dev.enhanced_power
        client.rtms_mode(True)
        assert client.enhanced_power(True).raw == reply(b"^S")


def test_charge_delay_v9_four_digits_and_its_effect_on_readiness():
    with unit("rapid", (9, 0), **FAST) as (dev, client):
        client.remote_control()
        r = client.set_charge_delay(1500)
        assert r.command == frame(b"n1500") and r.raw == reply(b"n" + bytes([IDLE_REMOTE, SINGLE]))
        r, delay = client.get_charge_delay()
        assert r.raw == reply(b"o" + bytes([IDLE_REMOTE]) + b"1500") and delay == 1500
        assert client.set_charge_delay(2001).raw == reply(b"n?")
        assert not client.get_system_status()[1]["charge_delay_set"]  # bit 2 is 'always 0' in Rev 5.1 (V9)
        client.arm()
        assert wait_ready(client)
        client.fire()
        [(t_pulse, _)] = dev.pulses
        assert not dev._ready(t_pulse + 0.1 + 1.4)  # recharge 0.1 s + charge delay 1.5 s
        assert dev._ready(t_pulse + 0.1 + 1.5 + 0.01)


def test_charge_delay_v10_five_digits_and_extended_status():
    with unit("rapid", (10, 0)) as (dev, client):
        client.remote_control()
        assert client.get_version()[0].raw == reply(b"NV10.0\x00")
        r = client.set_charge_delay(5000)
        assert r.command == frame(b"n05000") and len(r.raw) == 6
        assert r.raw == reply(b"n" + bytes([IDLE_REMOTE, SINGLE, 0x00, 0x00]))  # status before the command
        r, delay = client.get_charge_delay()
        assert r.raw == reply(b"o" + bytes([IDLE_REMOTE]) + b"05000") and len(r.raw) == 8 and delay == 5000
        r, extended = client.get_system_status()
        assert r.raw == reply(b"x" + bytes([IDLE_REMOTE, SINGLE, 0x00, 0x04])) and extended["charge_delay_set"]
        assert client.set_charge_delay(10001).raw == reply(b"n?")
        assert client.set_charge_delay(0).raw == reply(b"n" + bytes([IDLE_REMOTE, SINGLE, 0x00, 0x04]))
        assert not client.get_system_status()[1]["charge_delay_set"]


@pytest.mark.parametrize("version, length, wait", [((7, 2), 22, b"0005"), ((5, 0), 21, b"005")])
def test_older_rapid_software_has_shorter_formats_and_no_v9_commands(version, length, wait):
    with unit("rapid", version) as (dev, client):
        text = ".".join(map(str, version)).encode()
        assert client.get_version()[0].raw == reply(b"NV" + text + b"\x00")
        client.remote_control()
        r = client.rtms_mode(True)
        assert r.command == frame(b"[010") and r.raw == reply(b"[" + bytes([IDLE_REMOTE, SINGLE]))
        assert client.set_npulses(20).command == frame(b"D0020")
        assert client.set_frequency(20).raw == reply(b"B" + bytes([IDLE_REMOTE, REPETITIVE]))
        r, params = client.get_parameters()
        assert len(r.raw) == length and r.crc_ok
        assert r.raw == reply(b"\\" + bytes([IDLE_REMOTE, REPETITIVE]) + b"030" + b"0200" + b"0020" + b"010" + wait)
        assert params["n_pulses"] == 20 and params["duration_s"] == 1.0
        for body in (b"x@", b"o@", b"n1000"):  # "not available in software versions prior to V9.0"
            assert client.send(body).raw == b"?", body


# ---------------------------------------------------------------------------------------- unlock code (V9+)
def test_unlock_code_is_needed_for_remote_control_and_x_keeps_it_alive():
    code = "1234-12345678-AB"
    with unit("rapid", keepalive_timeout_s=0.3, unlock_code=code, **FAST) as (dev, client):
        assert client.silent(b"Q@n") == b""  # the short frame is not the V9 structure: no answer
        assert not dev.remote
        r = client.remote_control(unlock_code="1234-12345678-XY")
        assert len(r.command) == 18 and r.raw == reply(b"Q?") and not dev.remote
        r = client.remote_control(unlock_code=code)
        assert r.command == frame(b"Q" + code.encode()) and r.raw == reply(b"Q" + bytes([IDLE_REMOTE]))
        client.arm()
        for _ in range(8):  # 'Get System Status' as the V9+ keep-alive, every 0.1 s against a 0.3 s timeout
            r, _ = client.get_system_status()
            assert r.command == b"x@G" and r.status["remote"]
            time.sleep(0.1)
        assert dev.remote and dev.armed
        assert wait_until(lambda: not dev.remote)  # silence: the unit drops remote control
        assert not dev.armed and any("remote control dropped" in e for _, e in dev.events)


def test_unlock_code_is_a_v9_rapid_feature():
    with pytest.raises(ValueError, match="unlock code"):
        create_device("magstim", model="rapid", version="8.0", unlock_code="1234-12345678-AB")
    with pytest.raises(ValueError, match="unlock code"):
        create_device("magstim", model="200", unlock_code="1234-12345678-AB")
    with pytest.raises(ValueError, match="version"):
        create_device("magstim", model="rapid", version="nine")


# ---------------------------------------------------------------------------------------- 200² and BiStim²
def test_200_connect_power_arm_fire_keepalive_and_coil_temperature():
    with unit("200", **FAST) as (dev, client):
        r, temperatures = client.get_temperature()
        assert r.raw == reply(b"F" + bytes([IDLE]) + b"240240") and temperatures == (24.0, 24.0)
        assert client.remote_control().raw == reply(b"Q" + bytes([IDLE_REMOTE]))
        assert client.set_power(50).raw == reply(b"@" + bytes([IDLE_REMOTE]))
        r, params = client.get_parameters()
        assert r.raw == reply(b"J" + bytes([IDLE_REMOTE]) + b"050000000") and params["power_a"] == 50
        r, mode = client.get_system_mode()
        assert r.raw == reply(b"X" + bytes([IDLE_REMOTE]) + b"0") and mode == "single stimulator"
        assert client.arm().raw == reply(b"E" + bytes([IDLE_REMOTE]))
        assert client.arm().raw == reply(b"ES")  # already armed
        assert wait_ready(client)
        assert client.fire().raw == reply(b"E" + bytes([REMOTE | COIL | READY]))
        assert [p for _, p in dev.pulses] == [50]
        assert client.fire().raw == reply(b"ES")  # recharging
        assert client.disarm().raw[:1] == b"E" and not dev.armed
        assert client.remote_control(False).raw == reply(b"R" + bytes([IDLE]))


def test_a_hot_coil_cannot_be_armed_and_disarms_an_armed_unit():
    with unit("200", **FAST) as (dev, client):
        client.remote_control()
        dev.coil1_temperature_c = 41.5
        r, temperatures = client.get_temperature()
        assert r.raw == reply(b"F" + bytes([IDLE_REMOTE]) + b"415240") and temperatures == (41.5, 24.0)
        assert client.arm().raw == reply(b"ES")
        dev.coil1_temperature_c = 30.0
        assert client.arm().raw == reply(b"E" + bytes([IDLE_REMOTE]))
        dev.coil2_temperature_c = 40.1
        assert wait_until(lambda: not dev.armed)
        assert any("coil above 40" in e for _, e in dev.events)
        assert client.get_temperature()[1] == (30.0, 40.1)


def test_bistim_system_mode_and_high_resolution_interval():
    with unit("bistim", **FAST) as (dev, client):
        r, mode = client.get_system_mode()
        assert r.raw == reply(b"X" + bytes([IDLE]) + b"2") and mode == "BiStim low resolution"
        client.remote_control()
        assert client.get_parameters()[1]["interval"] == 10  # ms
        r = client.high_resolution(True)
        assert r.command == b"Y@f" and r.raw == reply(b"Y" + bytes([IDLE_REMOTE]))
        assert client.get_system_mode()[1] == "BiStim high resolution"
        assert client.get_parameters()[1]["interval"] == 10  # 1 ms in 0.1 ms units (MagPy: "defaults to a 1ms")
        assert client.set_interval(5).raw == reply(b"C" + bytes([IDLE_REMOTE]))  # 0.5 ms
        client.arm()
        assert client.high_resolution(False).raw == reply(b"ZS")  # not while armed
        assert wait_ready(client)
        client.fire()
        [(t_a, _)] = dev.pulses
        [(t_b, _)] = dev.pulses_b
        assert t_b - t_a == pytest.approx(0.0005)
        client.disarm()
        r = client.high_resolution(False)
        assert r.command == b"Z@e" and client.get_parameters()[1]["interval"] == 10  # back to 10 ms
        client.set_interval(0)
        assert client.get_system_mode()[1] == "simultaneous discharge"


def test_each_model_answers_a_lone_question_mark_to_the_others_commands():
    with unit("200") as (_, client):
        for body in (b"ND", b"x@", b"\\@", b"^@", b"b@", b"B0100", b"A050", b"Y@"):
            assert client.send(body).raw == b"?", body
    with unit("bistim") as (_, client):
        for body in (b"ND", b"x@", b"\\@", b"o@"):
            assert client.send(body).raw == b"?", body
    with unit("rapid") as (_, client):
        for body in (b"J@", b"X@", b"A050", b"C005", b"Y@", b"K@"):
            assert client.send(body).raw == b"?", body


def test_invalid_data_and_bad_crc_answer_a_question_mark_in_byte_1():
    with unit("rapid") as (dev, client):
        client.remote_control()
        assert client.send(b"NE").raw == reply(b"N?")  # only 'D' (the base) is documented
        assert client.send(b"", raw_frame=b"NDn").raw == reply(b"N?")  # bad CRC
        assert client.send(b"", raw_frame=b"x@H").raw == reply(b"x?")
        assert client.send(b"@0x0").raw == reply(b"@?")
        assert client.send(b"n12a4").raw == reply(b"n?")
        assert client.send(b"EX").raw == reply(b"E?")
        assert dev.power == 30 and dev.charge_delay_ms == 0
