"""The stimulation path: protocol action -> governor -> driver -> virtual device on a real pseudo-terminal/TCP.

Every test checks what the virtual "patient" actually received, not only what was decided.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from controller.clock import now
from controller.events import EventBus
from controller.lang.compiled import DeviceUse, FeatureScale, StimAction
from controller.safety.governor import Governor
from controller.safety.ledger import DoseLedger
from controller.safety.site import loads_site
from controller.stimulation.dispatcher import Link, Stimulation
from drivers.registry import make_driver
from sim.devices import create

SITE = """
site: test-lab
timezone: UTC
max_loop_latency: 50 ms
input_stall: 1 s
devices:
  tavns:
    driver: triggerbox
    port: /dev/null-tavns
    fixed_settings: {current: 0.5 mA, pulse_width: 250 us, phases: 2}
    limits:
      current_max: 5 mA
      frequency_max: 25 Hz
      pulse_width_max: 500 us
      pulses_per_session_max: 60
  tacs:
    driver: starstim
    port: 127.0.0.1:1
    limits:
      current_max: 2 mA
      frequency_max: 150 Hz
      ramp_rate_max: 1 mA/s
      train_duration_max: 10 min
      charge_per_session_max: 3.6 C
"""

TAVNS = {"current_a": 5e-4, "pulse_width_s": 250e-6, "phases": 2, "frequency_hz": 25.0, "n_pulses": 25}


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def drain(sub) -> list:
    out = []
    while True:
        e = sub.get(timeout=0.05)
        if e is None:
            return out
        out.append(e)


@pytest.fixture
def rig(tmp_path: Path):
    site = loads_site(SITE)
    bus = EventBus()
    sub = bus.subscribe()
    ledger = DoseLedger(tmp_path / "ledger.jsonl", tz=site.tzinfo)
    governor = Governor(site, ledger, "s1", publish=bus.publish)
    box = create("triggerbox")
    box_port = box.start()
    nic = create("starstim")
    nic_port = nic.start()
    stim_holder: dict = {}
    tb = make_driver("triggerbox", box_port, name="tavns",
                     on_error=lambda reason: stim_holder["s"].device_error("tavns", reason))
    tb.connect()
    ss = make_driver("starstim", nic_port, name="tacs", protocol="tacs")
    ss.connect()
    stim = Stimulation(governor, {"tavns": Link("tavns", tb), "tacs": Link("tacs", ss)}, bus)
    stim_holder["s"] = stim
    yield stim, governor, box, nic, sub
    stim.close()
    ledger.close()
    box.stop()
    nic.stop()


def test_nothing_reaches_the_device_before_the_operator_arms(rig) -> None:
    stim, gov, box, _, sub = rig
    assert stim.prepare({"tavns": DeviceUse("tavns", TAVNS)}) == []
    stim.execute(StimAction("stimulate", "tavns"), now(), "rule 1", {})
    time.sleep(0.3)
    assert box.pulses == []
    refused = [e for e in drain(sub) if e.kind == "command" and not e.data["ok"]]
    assert refused and "not armed" in refused[0].data["reason"]


def test_an_armed_train_arrives_pulse_for_pulse(rig) -> None:
    stim, gov, box, _, sub = rig
    stim.prepare({"tavns": DeviceUse("tavns", TAVNS)})
    assert stim.arm("tester", ["tavns"]) == []
    t = now()
    stim.execute(StimAction("stimulate", "tavns"), t, "rule 1", {})
    assert wait_until(lambda: len(box.pulses) == 25 and box.pulses[-1].width_s is not None)
    rises = [p.t_rise for p in box.pulses]
    assert rises[0] >= t
    assert (rises[-1] - rises[0]) / 24 == pytest.approx(0.04, rel=0.02)  # 25 Hz on average
    # (single gaps also carry the virtual device's own read jitter, a thread reading a pty under
    # load: the edge timing itself is tested in the driver's tests)
    fired = [e for e in drain(sub) if e.kind == "command" and e.data["kind"] == "fire"]
    assert fired[0].data["ok"] and fired[0].data["latency_s"] >= 0
    assert gov.totals("tavns")["session"].pulses == 25


def test_the_session_cap_refuses_the_train_that_would_exceed_it_and_nothing_is_sent(rig) -> None:
    stim, gov, box, _, sub = rig
    stim.prepare({"tavns": DeviceUse("tavns", TAVNS)})
    stim.arm("tester", ["tavns"])
    seen: list = []

    def reported(n: int) -> bool:  # the driver reports each train when it ends
        seen.extend(drain(sub))
        return sum(1 for e in seen if e.kind == "delivery") >= n

    stim.execute(StimAction("stimulate", "tavns"), now(), "rule 1", {})
    assert wait_until(lambda: reported(1))
    time.sleep(1.1)  # the train lasts 1 s
    stim.execute(StimAction("stimulate", "tavns"), now(), "rule 1", {})
    assert wait_until(lambda: reported(2))
    delivered = gov.totals("tavns")["session"].pulses  # 50, unless a loaded machine made a slot be skipped
    assert wait_until(lambda: len(box.pulses) == delivered)  # the ledger counts what the stimulator received
    assert delivered + 25 > 60  # so the next train still exceeds the cap
    time.sleep(1.1)
    stim.execute(StimAction("stimulate", "tavns"), now(), "rule 1", {})  # 50 + 25 = 75 > 60 per session
    time.sleep(0.3)
    assert len(box.pulses) == delivered
    refusals = [e for e in seen + drain(sub) if e.kind == "safety" and e.data.get("what") == "refused"]
    # the cap is among the refusal's reasons (a loaded host may add a latency inhibition before it)
    cap = f"pulses this session {delivered} + 25 = {delivered + 25} > site limit 60 (pulses_per_session_max)"
    assert cap in refusals[-1].data["verdict"]


def test_estop_stops_a_running_train_and_inhibits_until_cleared(rig) -> None:
    stim, gov, box, _, sub = rig
    long = dict(TAVNS, n_pulses=50)
    stim.prepare({"tavns": DeviceUse("tavns", long)})
    stim.arm("tester", ["tavns"])
    stim.execute(StimAction("stimulate", "tavns"), now(), "rule 1", {})
    assert wait_until(lambda: len(box.pulses) >= 3)
    took = stim.estop("test")
    n = len(box.pulses)
    time.sleep(0.3)
    assert len(box.pulses) == n < 50  # no pulse after the E-STOP
    assert box.pulses[-1].width_s is not None  # the line went low
    assert took < 2.0  # sanity only; the timing is measured in bench/estop_latency.py
    assert not gov.armed("tavns") and "estop" in gov.inhibitions
    assert stim.arm("tester", ["tavns"])  # refused while the E-STOP interlock is active


def test_a_device_that_vanishes_inhibits_and_disarms(rig) -> None:
    stim, gov, box, _, sub = rig
    stim.prepare({"tavns": DeviceUse("tavns", TAVNS)})
    stim.arm("tester", ["tavns"])
    box.unplug()
    stim.execute(StimAction("stimulate", "tavns"), now(), "rule 1", {})
    assert wait_until(lambda: "device:tavns" in gov.inhibitions)
    assert wait_until(lambda: not gov.armed("tavns"))  # the fault inhibits first, then disarms (driver thread)
    faults = [e for e in drain(sub) if e.kind == "fault"]
    assert any("tavns" in e.data["reason"] for e in faults)


def test_a_feature_scaled_current_is_ramped_in_steps_within_the_rate(rig) -> None:
    stim, gov, _, nic, sub = rig
    stim.prepare({"tacs": DeviceUse("tacs", {"current_a": 1e-3, "frequency_hz": 10.0})})
    stim.arm("tester", ["tacs"])
    driver = stim.links["tacs"].driver
    assert wait_until(lambda: driver.status().ready_at is None or driver.status().ready, 3)
    time.sleep(0.2)  # the NIC loads its template after arming
    stim.execute(StimAction("stimulate", "tacs", duration_s=60.0, ramp_s=1.5), now(), "rule 1", {})
    assert wait_until(lambda: nic.stimulating, 3)
    scale = FeatureScale("alpha", 0.5, 0.1, 0.5e-3, 1.5e-3)
    stim.execute(StimAction("set", "tacs", {"current_a": scale}, ramp_rate=1e-3), now(), "rule 2", {"alpha": 0.3})
    for _ in range(100):  # the watchdog's job in a session
        stim.poll()
        time.sleep(0.02)
        if math.isclose(gov.settings("tacs")["current_a"], 1e-3, abs_tol=1e-9):
            break
    stim.poll()
    assert math.isclose(gov.settings("tacs")["current_a"], 1e-3, abs_tol=1e-9)  # alpha 0.3 -> 1.0 mA: no change
    stim.execute(StimAction("set", "tacs", {"current_a": scale}, ramp_rate=1e-3), now(), "rule 2", {"alpha": 0.1})
    assert wait_until(lambda: (stim.poll(), math.isclose(gov.settings("tacs")["current_a"], 1.5e-3, abs_tol=1e-9))[1], 5)
    assert wait_until(lambda: nic.amplitude_ua[0] == pytest.approx(1500.0), 2)
    changes = [a for a in nic.applied if a.parameter == "amplitude_ua"]
    assert len(changes) >= 5  # 0.5 mA at 0.9 mA/s in 0.1 s steps
    for a, b in zip(changes, changes[1:]):
        rate = abs(b.values[0] - a.values[0]) * 1e-6 / (b.t - a.t)
        assert rate <= 1e-3 * 1.05  # what the device received respects the site's ramp rate
    assert not [e for e in drain(sub) if e.kind == "safety" and e.data.get("what") == "refused"]


def test_a_timed_pulse_is_sent_at_its_target_time(rig) -> None:
    stim, gov, box, _, sub = rig
    stim.prepare({"tavns": DeviceUse("tavns", dict(TAVNS, n_pulses=1))})
    stim.arm("tester", ["tavns"])
    t = now()
    target = t + 0.02
    stim.execute(StimAction("stimulate", "tavns", at="mu"), t, "rule 1", {}, at=target)
    assert wait_until(lambda: len(box.pulses) == 1)
    assert box.pulses[0].t_rise >= target
    fired = [e for e in drain(sub) if e.kind == "command" and e.data["kind"] == "fire"]
    assert fired and fired[0].data["ok"]
