"""Closed-loop stimulation sessions end to end: LSL input -> features -> rule -> governor -> device process.

Each test writes its own protocol and site files, starts its own virtual trigger box as a
process (its port goes into the site file: the path a real device would take, with
``virtual_devices=False``), feeds its own LSL outlet, and runs ``run_session`` in a thread.
What is checked comes from the session folder (journal, dose ledger, XDF, report) and from
the device's own log of what it received: the "patient" side.

Site limits are generous but real; max_loop_latency is 50 ms (not the example site's 5 ms) so
that a loaded CI machine does not trip the latency interlock, which would refuse pulses for
reasons these tests are not about. No test asserts a wall-clock duration.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pylsl
import pytest
import pyxdf
from late_pulse_thread import LateWake
from stim_session_rig import (
    ControlDir,
    SignalSource,
    allowed_fires,
    device_log,
    pulses_in,
    start_device,
    start_session,
    unique,
    wait_for,
    write_files,
)

from controller.operator.control_channel import request

pytestmark = [pytest.mark.lsl, pytest.mark.slow]

PULSES_PER_TRAIN = 5

PROTOCOL = """
protocol: h6-tavns
inputs:
  eeg:
    stream: {{name: {stream}}}
    channels: [Cz, Fp1, Fp2]
    stall: 500 ms
features:
  amp: {{peak_to_peak: {{input: eeg, channels: [Cz], window: 200 ms, every: 50 ms}}}}
thresholds:
  thr: {{fixed: 50 uV}}
timeline: [{{rest: 1 s}}, {{stim: 90 s}}]   # 90 s: only a hang guard, the test skips to the end
devices:
  tavns: {{current: 0.5 mA, pulse_width: 250 us, phases: 2, frequency: {frequency} Hz, pulses: {pulses}}}
rules:
  - during: stim
    when: amp > thr
    refractory: {refractory}
    do: {{stimulate: {{device: tavns}}}}
"""

SITE = """
site: h6-lab
timezone: UTC
max_loop_latency: 50 ms   # generous on purpose: a loaded CI machine must not trip the latency interlock
input_stall: 1 s
devices:
  tavns:
    driver: triggerbox
    port: {port}
    fixed_settings: {{current: 0.5 mA, pulse_width: 250 us, phases: 2}}
    limits:
      current_max: 5 mA
      frequency_max: 25 Hz
      pulse_width_max: 500 us
      pulses_per_session_max: 2000
      pulses_per_day_max: 10000
"""


@pytest.fixture
def control_dir(monkeypatch):
    d = ControlDir.create(monkeypatch)
    yield d
    d.remove()


@pytest.fixture
def box(tmp_path):
    dev = start_device(tmp_path, "tavns", "triggerbox")
    yield dev
    dev.stop()


@pytest.fixture
def source():
    src = SignalSource(unique("h6-eeg"), mode="off").start()
    yield src
    src.kill()


def _files(tmp_path, source, box, *, frequency=20, pulses=PULSES_PER_TRAIN, refractory="1 s"):
    return write_files(tmp_path, PROTOCOL.format(stream=source.name, frequency=frequency, pulses=pulses,
                                                 refractory=refractory),
                       SITE.format(port=box.port))


def quiet_after_trains(live, box) -> None:
    """Wait until the rule stopped firing (the signal is off) and every allowed train has ended on
    the device, so that the session's end (which disarms) cuts no train short."""
    wait_for(lambda: live.engine.snapshot()["features"].get("amp", 1.0) < 50e-6, 20, "the feature to fall")
    wait_for(lambda: len(pulses_in(device_log(box))) == PULSES_PER_TRAIN * len(allowed_fires(live, "tavns")),
             20, "every allowed train to reach the device")


def test_a_rule_that_fires_delivers_its_trains_pulse_for_pulse(tmp_path, monkeypatch, control_dir, box, source):
    protocol, site = _files(tmp_path, source, box)
    live = start_session(monkeypatch, tmp_path / "sessions", protocol, site, build_report=True)
    live.wait_block("stim")
    source.mode = "on"
    wait_for(lambda: len(allowed_fires(live, "tavns")) >= 2, 30, "two allowed trains")
    source.mode = "off"
    quiet_after_trains(live, box)
    result = live.finish()
    assert result.status == "completed"

    fires = allowed_fires(live, "tavns")
    assert len(fires) >= 2
    # the device received exactly the pulses of the allowed trains, and every one ended (line low)
    pulses = pulses_in(device_log(box))
    assert len(pulses) == PULSES_PER_TRAIN * len(fires)
    log = device_log(box)
    last_rise = max(i for i, e in enumerate(log) if str(e.get("meaning", "")).startswith("pulse code"))
    assert any(str(e.get("meaning", "")).startswith("low") for e in log[last_rise + 1:])
    # each allowed fire: a decision first, the governor's allowed verdict, then the command with its latency
    decisions = live.events("decision", action="stimulate:tavns")
    verdicts = live.events("safety", what="allowed", device="tavns", command="fire")
    assert len(decisions) >= len(fires) and len(verdicts) == len(fires)
    for fire in fires:
        assert fire["data"]["latency_s"] >= 0 and fire["t_source"] is not None
        assert any(v["t_source"] == fire["t_source"] for v in verdicts)
        assert any(d["t_source"] == fire["t_source"] for d in decisions)

    # the dose ledger holds one entry per allowed train with its pulses
    ledger = tmp_path / "sessions" / "ledger" / "h6-lab-p01.jsonl"
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    fired = [e for e in entries if e["kind"] == "fire" and e["device"] == "tavns"]
    assert len(fired) == len(fires)
    assert all(e["pulses"] == PULSES_PER_TRAIN for e in fired)

    # the report's stimulation section counts them and has a latency row per delivered train
    summary = json.loads((result.session_dir / "report" / "summary.json").read_text())
    stim = summary["stimulation"]
    assert stim["totals"]["delivered"] == len(fires)
    assert stim["devices"]["tavns"]["pulses"] == PULSES_PER_TRAIN * len(fires)
    assert stim["latency_ms"]["source_to_sent"]["n"] == len(fires)
    rows = [c for c in stim["commands"] if c["kind"] == "fire" and c["ok"]]
    assert len(rows) == len(fires) and all(r["latency_ms"] >= 0 for r in rows)

    # the recording holds the input stream to the end of the session
    streams, _ = pyxdf.load_xdf(str(result.session_dir / "recording.xdf"), dejitter_timestamps=False)
    eeg = next(s for s in streams if s["info"]["name"][0] == source.name)
    stopped = live.events("state", state="stopped")
    assert eeg["time_stamps"][-1] >= stopped[-1]["t"] - 0.5


def _is_low(entry) -> bool:
    return entry.get("type") == "command" and str(entry.get("meaning", "")).startswith("low")


def _is_rise(entry) -> bool:
    return entry.get("type") == "command" and str(entry.get("meaning", "")).startswith("pulse code")


def test_nothing_reaches_the_device_until_the_operator_arms_through_the_control_channel(
        tmp_path, monkeypatch, control_dir, box, source):
    protocol, site = _files(tmp_path, source, box)
    live = start_session(monkeypatch, tmp_path / "sessions", protocol, site, arm=False, record_xdf=False)
    live.wait_running()
    assert live.status()["devices"]["tavns"]["armed"] is False
    live.wait_block("stim")
    source.mode = "on"
    wait_for(lambda: [e for e in live.events("command", device="tavns", kind="fire", ok=False)
                      if "not armed" in e["data"]["reason"]], 30, "a fire refused as not armed")
    assert pulses_in(device_log(box)) == []
    assert allowed_fires(live, "tavns") == []

    result = live.arm("tavns", operator="tester")
    assert result == {"armed": ["tavns"], "by": "tester"}
    wait_for(lambda: len(allowed_fires(live, "tavns")) >= 1, 30, "a train after arming")
    source.mode = "off"
    quiet_after_trains(live, box)
    status = live.status()  # what the console shows: the device, its dose against the site's caps, the watchdog
    device = status["devices"]["tavns"]
    assert device["armed"] is True and device["driver"] == "triggerbox" and device["last_command"]["command"] == "fire"
    assert device["last"].startswith("fire sent ") and " s ago" in device["last"]
    dose = status["dose"]["tavns"]
    assert dose["pulses_session"] == PULSES_PER_TRAIN * len(allowed_fires(live, "tavns"))
    assert dose["pulses_session_cap"] == 2000 and dose["pulses_cap"] == 10000
    assert status["watchdog"]["timeout_ms"] > 0 and status["watchdog"]["margin_ms"] < status["watchdog"]["timeout_ms"]
    assert status["latency_ms"]["n"] > 0 and status["latency_ms"]["max"] >= status["latency_ms"]["median"]
    assert live.finish().status == "completed"

    armed = live.events("safety", what="allowed", device="tavns", command="arm")
    assert len(armed) == 1 and "tester" in armed[0]["data"]["verdict"]
    t_armed = armed[0]["t"]
    before = [e for e in live.events("command", device="tavns", kind="fire") if e["t"] < t_armed]
    assert before and all(not e["data"]["ok"] and "not armed" in e["data"]["reason"] for e in before)
    pulses = pulses_in(device_log(box))
    assert pulses and min(p["t"] for p in pulses) > t_armed  # nothing arrived before the arming
    assert len(pulses) == PULSES_PER_TRAIN * len(allowed_fires(live, "tavns"))


def test_estop_from_another_process_cuts_the_running_train_and_the_session_records_on(
        tmp_path, monkeypatch, control_dir, box, source):
    protocol, site = _files(tmp_path, source, box, pulses=200)  # a 10 s train at 20 Hz
    live = start_session(monkeypatch, tmp_path / "sessions", protocol, site)
    live.wait_block("stim")
    source.mode = "on"
    wait_for(lambda: len(pulses_in(device_log(box))) >= 3, 30, "the train to be under way")
    done = subprocess.run([sys.executable, "-m", "controller.cli", "estop", "--reason", "test"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

    # the governor refuses to arm again while the E-STOP interlock stands
    replies = request("arm", {"device": "tavns", "operator": "tester"}, timeout=5.0)
    assert replies and not replies[0].ok and "inhibited" in replies[0].error
    wait_for(lambda: live.events("safety", what="refused", device="tavns", command="arm"), 10, "the arm refusal")
    status = live.status()
    assert status["devices"]["tavns"]["armed"] is False and "estop" in status["interlocks"]
    assert "estop" in status["inhibitions"]  # the engine too: no rule fires
    t_check = pylsl.local_clock()
    wait_for(lambda: live.events("feature")[-1]["t"] > t_check + 1.0, 20, "the session to go on")
    source.mode = "off"
    result = live.finish()
    assert result.status == "completed"

    log = device_log(box)
    rises = [i for i, e in enumerate(log) if _is_rise(e)]
    # the train was cut: the device saw exactly the pulses the governor accounted for (the virtual
    # device's log can lag the E-STOP, so it is counted once the session has ended)
    deliveries = live.events("delivery", device="tavns")
    assert deliveries and len(rises) == sum(d["data"]["delivered"] for d in deliveries) < 200
    estop = live.events("safety", what="estop")
    assert len(estop) == 1 and "test" in estop[0]["data"]["reason"]
    disarm = [e for e in live.events("command", device="tavns", kind="disarm", ok=True)
              if "E-STOP" in e["data"]["rule"]]
    assert disarm
    t_disarm = disarm[0]["data"]["t_sent"]
    # the E-STOP's 0 is the first 'low' byte logged at/after the disarm was sent: no rising edge after it
    first_low = next(i for i, e in enumerate(log) if _is_low(e) and e["t"] >= t_disarm)
    assert all(i < first_low for i in rises)
    assert live.events("command", device="tavns", kind="fire", ok=True)[-1]["t"] < estop[0]["t"]
    refusal = live.events("safety", what="refused", device="tavns", command="arm")
    assert refusal[0]["data"]["limit"] == "inhibited" and "estop" in refusal[0]["data"]["verdict"]

    # the recording went on after the E-STOP, to the end of the session
    streams, _ = pyxdf.load_xdf(str(result.session_dir / "recording.xdf"), dejitter_timestamps=False)
    eeg = next(s for s in streams if s["info"]["name"][0] == source.name)
    stopped = live.events("state", state="stopped")
    assert eeg["time_stamps"][-1] >= stopped[-1]["t"] - 0.5
    assert (eeg["time_stamps"] > estop[0]["t"] + 1.0).sum() > 0  # (the session went on 1 s after it)


def test_a_skipped_slot_reaches_the_ledger_the_journal_and_the_report(tmp_path, monkeypatch, control_dir, box, source):
    # The session's own trigger box driver wakes 600 ms late for pulse 2 of its first train (1 Hz: pulse 3's
    # slot then comes less than a period later and is skipped), through the pulse thread's sleeping seam. At
    # 1 Hz load alone never skips a slot (that takes a 500 ms stall), so every other pulse is delivered.
    LateWake(pulse=2, late_s=0.6, trains=1).install(monkeypatch)
    protocol, site = _files(tmp_path, source, box, frequency=1, pulses=4, refractory="5 s")  # 4 pulses, 4 s
    live = start_session(monkeypatch, tmp_path / "sessions", protocol, site, build_report=True, record_xdf=False)
    live.wait_block("stim")
    source.mode = "on"
    wait_for(lambda: len(allowed_fires(live, "tavns")) >= 2, 30, "two allowed trains")
    source.mode = "off"
    wait_for(lambda: live.engine.snapshot()["features"].get("amp", 1.0) < 50e-6, 20, "the feature to fall")
    wait_for(lambda: len(live.events("delivery", device="tavns")) == len(allowed_fires(live, "tavns")), 20,
             "every allowed train to be reported")
    result = live.finish()
    assert result.status == "completed"

    fires = allowed_fires(live, "tavns")
    planned = 4 * len(fires)
    assert len(pulses_in(device_log(box))) == planned - 1  # the stimulator got one pulse less
    [short] = live.events("short_train", device="tavns")
    assert (short["data"]["planned"], short["data"]["delivered"], short["data"]["ended_by"]) == (4, 3, "completed")
    assert "pulse 3 due at +2.000 s" in short["data"]["reason"]

    ledger = tmp_path / "sessions" / "ledger" / "h6-lab-p01.jsonl"
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert sum(e["pulses"] for e in entries if e["kind"] == "fire") == planned  # counted before each train
    delivered = [e for e in entries if e["kind"] == "delivered"]
    assert len(delivered) == len(fires) and sum(e["delivered"]["pulses"] for e in delivered) == planned - 1
    assert sum(e["pulses"] for e in entries) == planned - 1  # what the ledger counts for the day and session

    stim = json.loads((result.session_dir / "report" / "summary.json").read_text())["stimulation"]
    tavns = stim["devices"]["tavns"]
    assert (tavns["pulses_planned"], tavns["pulses_delivered"], tavns["short_trains"]) == (planned, planned - 1, 1)
    assert stim["short_trains"][0]["reason"] == short["data"]["reason"]
