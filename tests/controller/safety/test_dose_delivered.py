"""A lost pulse is accounted: rule action -> governor -> trigger box driver -> virtual box on a real
pseudo-terminal, and back: the driver's report of each train -> the dose ledger (a real file), the
journal (a real Journal on the EventBus) and the session report.

The skipped slot is forced deterministically: the pulse thread's wake-up for one rising edge is made
late through the driver's sleeping seam (tests/late_pulse_thread.py), not by hoping for load. Trains
whose pulses are counted exactly run at 1 Hz, so that load alone never skips a slot (that takes a
stall of more than half a period, 500 ms). No assertion is on a wall-clock duration.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from late_pulse_thread import LateWakeUp

from controller import events as ev
from controller.clock import now
from controller.events import SESSION_END, SESSION_START, Event, EventBus, Subscription
from controller.lang.compiled import DeviceUse, StimAction
from controller.recording.journal import Journal, read_journal
from controller.recording.session import SessionFolder
from controller.report import build_report
from controller.safety import DoseLedger, Governor, StimRequest, loads_site
from controller.stimulation.dispatcher import Link, Stimulation
from drivers.stimulator import DeviceStatus, Stimulator
from drivers.triggerbox import TriggerBoxDriver
from sim.devices.triggerbox import VirtualTriggerBox

SITE = """
site: dose-lab
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
      pulses_per_session_max: 1000
      pulses_per_day_max: 2000
  tms:
    driver: magstim
    port: loop://tms
    limits:
      intensity_max: 80 %
      frequency_max: 20 Hz
      pulses_per_train_max: 10
      pulses_per_session_max: 100
"""

PROTOCOL = """\
protocol: dose-test
description: taVNS trains of 4 pulses at 1 Hz on a threshold
inputs:
  eeg: {stream: {type: EEG}, channels: [Cz]}
features:
  amp: {peak_to_peak: {input: eeg, channels: [Cz], window: 200 ms, every: 50 ms}}
thresholds:
  thr: {fixed: 50 uV}
timeline: [{stim: 10 min}]
devices:
  tavns: {current: 0.5 mA, pulse_width: 250 us, phases: 2, frequency: 1 Hz, pulses: 4}
rules:
  - during: stim
    when: amp > thr
    refractory: 2 s
    do: {stimulate: {device: tavns}}
"""

FIXED = {"current_a": 5e-4, "pulse_width_s": 250e-6, "phases": 2.0}
TRAIN_4 = {**FIXED, "frequency_hz": 1.0, "n_pulses": 4.0}  # 4 pulses 1 s apart
PULSE_C = 2 * 5e-4 * 250e-6


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """A hang guard, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    return predicate()


class NoCount(Stimulator):
    """A stimulator that fires trains it cannot count (as a Magstim Rapid: the unit reports no pulses)."""

    name = "tms"

    def connect(self) -> None:
        pass

    def arm(self) -> float:
        return now()

    def disarm(self) -> float:
        return now()

    def set_parameters(self, **params: Any) -> float:
        return now()

    def command_parameters(self, settings: Mapping[str, float], changed: Collection[str] | None = None) -> dict:
        return {"intensity_pct": int(round(settings["intensity_pct"]))} if "intensity_pct" in settings else {}

    def fire(self) -> float:
        return now()

    def status(self) -> DeviceStatus:
        return DeviceStatus(now(), True, True, True, True)

    def close(self) -> None:
        pass


@dataclass
class Rig:
    stim: Stimulation
    governor: Governor
    ledger: DoseLedger
    bus: EventBus
    sub: Subscription
    seen: list[Event]

    def events(self, kind: str, **match: Any) -> list[Event]:
        self.seen += self.sub.drain()
        return [e for e in self.seen if e.kind == kind and all(e.data.get(k) == v for k, v in match.items())]

    def ledger_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.ledger.path.read_text().splitlines()]

    def fire(self, device: str = "tavns", rule: str = "rule 1") -> None:
        self.stim.execute(StimAction("stimulate", device), now(), rule, {})

    def reported(self, n: int) -> list[Event]:
        """Wait for the n-th train report of the session (the driver makes it when the train ends)."""
        return wait_until(lambda: len(self.events(ev.DELIVERY)) >= n and self.events(ev.DELIVERY))


@pytest.fixture
def box():
    with VirtualTriggerBox() as dev:
        yield dev


@pytest.fixture
def open_rig(tmp_path: Path, box):
    opened: list[Rig] = []

    def make(driver: TriggerBoxDriver | None = None, bus: EventBus | None = None,
             settings: dict[str, float] = TRAIN_4) -> Rig:
        site = loads_site(SITE, "site.yaml")
        bus = bus or EventBus()
        sub = bus.subscribe()
        ledger = DoseLedger(tmp_path / "ledger.jsonl", tz=site.tzinfo)
        governor = Governor(site, ledger, "s1", publish=bus.publish)
        holder: dict[str, Stimulation] = {}
        tb = driver or TriggerBoxDriver(box.port, name="tavns")
        tb.on_error = lambda reason: holder["s"].device_error("tavns", reason)
        tb.connect()
        links = {"tavns": Link("tavns", tb), "tms": Link("tms", NoCount())}
        stim = holder["s"] = Stimulation(governor, links, bus)
        rig = Rig(stim, governor, ledger, bus, sub, [])
        assert stim.prepare({"tavns": DeviceUse("tavns", settings)}) == []
        assert stim.arm("tester", ["tavns"]) == []
        opened.append(rig)
        return rig

    yield make
    for rig in opened:
        rig.stim.close()
        rig.ledger.close()


def test_a_skipped_slot_is_one_pulse_less_in_the_ledger_and_a_short_train_in_the_journal(box, open_rig) -> None:
    late = LateWakeUp(box.port, name="tavns", late_for=2, late_s=0.6)  # pulse 3's slot comes too soon: skipped
    rig = open_rig(late)
    rig.fire()
    assert rig.governor.totals("tavns")["session"].pulses == 4  # the planned train, counted before it started
    [report] = rig.reported(1)
    assert wait_until(lambda: len(box.pulses) == 3 and box.line == 0)

    fire, delivered = [e for e in rig.ledger_lines() if e["kind"] in ("fire", "delivered")]
    assert fire["pulses"] == 4
    assert delivered["ref"] == 1 and delivered["pulses"] == -1 and delivered["charge_c"] == pytest.approx(-PULSE_C)
    assert delivered["delivered"]["pulses"] == 3 and delivered["delivered"]["confirmed"] is True
    assert rig.governor.totals("tavns")["session"].pulses == 3
    assert rig.governor.totals("tavns")["day"].pulses == 3

    [short] = rig.events(ev.SHORT_TRAIN)
    assert (short.data["planned"], short.data["delivered"], short.data["ended_by"]) == (4, 3, "completed")
    assert [m["pulse"] for m in short.data["missed"]] == [3] and short.data["missed"][0]["late_s"] > 0.5
    assert short.data["reason"].startswith("3 of 4 pulses; 1 slot skipped because the pulse thread woke too late: "
                                           "pulse 3 due at +2.000 s (")
    assert short.data["reason"] == delivered["delivered"]["reason"] == report.data["reason"]
    assert short.data["rule"] == "rule 1" and short.t_source is not None


def test_a_completed_train_is_delivered_as_planned(box, open_rig) -> None:
    rig = open_rig()
    rig.fire()
    [report] = rig.reported(1)
    assert report.data["delivered"] == report.data["planned"] == 4 and report.data["short"] is False
    assert wait_until(lambda: len(box.pulses) == 4 and box.line == 0)
    assert rig.events(ev.SHORT_TRAIN) == []
    assert rig.ledger_lines()[-1]["delivered"]["pulses"] == 4 and rig.ledger_lines()[-1]["pulses"] == 0
    assert rig.governor.totals("tavns")["session"].pulses == 4


@pytest.mark.parametrize("how", ["estop", "stop rule"])
def test_a_train_cut_short_counts_the_pulses_that_reached_the_stimulator(box, open_rig, how) -> None:
    rig = open_rig(settings={**FIXED, "frequency_hz": 10.0, "n_pulses": 50.0})  # 5 s
    rig.fire()
    assert wait_until(lambda: len(box.pulses) >= 3)
    if how == "estop":
        rig.stim.estop("test")
    else:
        rig.stim.execute(StimAction("stop", "tavns"), now(), "rule 2", {})
    [report] = rig.reported(1)
    assert wait_until(lambda: box.line == 0)
    time.sleep(0.1)  # nothing arrives after the stop
    k = len(box.pulses)
    assert 3 <= k < 50
    assert report.data["delivered"] == k and rig.governor.totals("tavns")["session"].pulses == k
    [short] = rig.events(ev.SHORT_TRAIN)
    expected = (f"disarmed after {k} of 50 pulses (disarm: E-STOP: test)" if how == "estop"
                else f"stopped after {k} of 50 pulses (stop: rule 2)")
    assert short.data["reason"] == expected


def test_a_continuous_train_is_counted_by_its_pulses_not_by_the_clock(box, open_rig) -> None:
    rig = open_rig()
    rig.stim.execute(StimAction("stimulate", "tavns", duration_s=20.0), now(), "rule 1", {})  # 20 planned at 1 Hz
    assert rig.governor.totals("tavns")["session"].pulses == 20
    assert wait_until(lambda: len(box.pulses) >= 2)
    rig.stim.execute(StimAction("stop", "tavns"), now(), "operator", {})
    [report] = rig.reported(1)
    time.sleep(0.1)
    k = len(box.pulses)
    assert report.data["delivered"] == k and report.data["train"] == "start"
    assert rig.governor.totals("tavns")["session"].pulses == k  # no time-based refund on top of the count
    assert [e["kind"] for e in rig.ledger_lines()] == ["start", "stop", "delivered"]


def test_a_device_that_cannot_count_keeps_the_planned_dose_not_confirmed(box, open_rig) -> None:
    rig = open_rig()
    assert rig.stim.prepare({"tms": DeviceUse("tms", {"intensity_pct": 50.0, "frequency_hz": 10.0,
                                                      "n_pulses": 5.0})}) == []
    assert rig.stim.arm("tester", ["tms"]) == []
    rig.fire("tms")
    [report] = rig.reported(1)
    assert report.data["device"] == "tms" and report.data["confirmed"] is False
    assert report.data["delivered"] is None and report.data["recorded"] == 5
    last = rig.ledger_lines()[-1]
    assert last["kind"] == "delivered" and last["delivered"]["confirmed"] is False and last["pulses"] == 0
    assert last["delivered"]["ended_by"] == "unreported"
    assert rig.governor.totals("tms")["session"].pulses == 5


def test_the_report_shows_planned_and_delivered_pulses_and_the_short_trains(tmp_path, box, open_rig) -> None:
    protocol = tmp_path / "dose-test.yaml"
    protocol.write_text(PROTOCOL)
    folder = SessionFolder.create(tmp_path / "sessions", protocol, name="dose-test")
    bus = EventBus()
    journal = Journal(folder.journal_path)
    journal.start(bus)
    bus.publish(Event(SESSION_START, now(), None, {"protocol": "dose-test", "timeline": [], "feedback_feature": "amp"}))
    late = LateWakeUp(box.port, name="tavns", late_for=2, late_s=0.6, trains=1)  # only the first train
    rig = open_rig(late, bus)
    rig.fire()
    rig.reported(1)
    assert wait_until(lambda: rig.governor.check(StimRequest("tavns", "fire", now())))  # the first train's planned end
    rig.fire()
    rig.reported(2)
    rig.stim.close()
    bus.publish(Event(SESSION_END, now(), None, {"status": "completed", "summary": {}}))
    journal.stop()
    folder.finish("completed", {})

    assert [e["kind"] for e in read_journal(folder.journal_path) if e["kind"] == ev.SHORT_TRAIN] == [ev.SHORT_TRAIN]
    report = build_report(folder.path)
    stim = json.loads((folder.report_dir / "summary.json").read_text())["stimulation"]
    tavns = stim["devices"]["tavns"]
    assert (tavns["pulses_planned"], tavns["pulses_delivered"], tavns["short_trains"]) == (8, 7, 1)
    assert tavns["pulses"] == 8 and tavns["trains_confirmed"] == 2 and tavns["trains_not_confirmed"] == 0
    assert stim["totals"]["short_trains"] == 1
    [short] = stim["short_trains"]
    assert (short["planned"], short["delivered"], short["missed_slots"], short["ended_by"]) == (4, 3, 1, "completed")
    assert "pulse 3 due at +2.000 s" in short["reason"]
    assert [r["delivered"] for r in stim["deliveries"]] == [3, 4]
    html = report.read_text()
    assert "Short trains" in html and "pulses delivered" in html and "pulse 3 due at +2.000 s" in html
