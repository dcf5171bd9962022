"""Planned, then delivered: the governor counts a train's planned dose before it starts and, once the
driver reports what the train delivered, the dose ledger counts that (an appended correction; history
is never rewritten). Clocks are injected; the ledger is a real file; reports are the drivers' own type."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from controller import events as ev
from controller.events import EventBus
from controller.safety import DoseLedger, Governor, StimRequest, loads_site
from drivers.delivery import MissedSlot, TrainReport

SITE = """
site: delivered-site
timezone: Europe/Berlin
max_loop_latency: 5 ms
input_stall: 1 s
devices:
  stim:
    driver: triggerbox
    port: loop://stim
    fixed_settings: {current: 1 mA, pulse_width: 100 us, phases: 2}
    limits:
      frequency_max: 25 Hz
      pulses_per_session_max: 1000
      pulses_per_day_max: 45
  pulsed:
    driver: starstim
    port: loop://pulsed
    limits:
      current_max: 2 mA
      pulse_width_max: 500 us
      frequency_max: 100 Hz
      pulses_per_session_max: 100000
"""

BERLIN = ZoneInfo("Europe/Berlin")
PULSE_C = 2 * 1e-3 * 100e-6  # one biphasic pulse of the trigger box's stimulator: 0.2 uC


class Clock:
    """LSL clock and wall clock moving together."""

    def __init__(self, t: float = 1000.0, wall: datetime = datetime(2024, 3, 5, 10, 0, tzinfo=BERLIN)) -> None:
        self.t, self.t0, self.wall0 = t, t, wall

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return self.wall0 + timedelta(seconds=self.t - self.t0)

    def step(self, dt: float) -> float:
        self.t += dt
        return self.t


@pytest.fixture
def site():
    return loads_site(SITE, "delivered-site.yaml")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


def open_governor(site, path: Path, clock: Clock, bus: EventBus | None = None, session: str = "s1") -> Governor:
    ledger = DoseLedger(path, tz=site.tzinfo, fsync=True)
    return Governor(site, ledger, session, clock=clock, wall=clock.wall, publish=bus.publish if bus else None)


@pytest.fixture
def gov(site, tmp_path, clock, bus):
    g = open_governor(site, tmp_path / "ledger.jsonl", clock, bus)
    yield g
    g.ledger.close()


def ask(gov: Governor, clock: Clock, device: str, kind: str, rule: str | None = "rule 1", **params):
    return gov.request(StimRequest(device, kind, clock.t, params, rule))


def train(gov: Governor, clock: Clock, n: int, f: float = 20.0) -> float:
    """Arm the trigger box, set an n-pulse train, fire it; returns the first pulse's time (1 ms later)."""
    if not gov.armed("stim"):
        assert gov.arm("stim", "operator")
    if gov.settings("stim").get("n_pulses") != n:
        assert ask(gov, clock, "stim", "set", n_pulses=float(n), frequency_hz=f)
        clock.step(0.2)
    assert ask(gov, clock, "stim", "fire")
    return clock.t + 0.001


def report(t_start: float, planned: int | None, delivered: int | None, ended_by: str = "completed", **kw) -> TrainReport:
    return TrainReport(t_start, t_start + 1.0, planned, delivered, ended_by, **kw)


def ledger_lines(gov: Governor) -> list[dict]:
    return [json.loads(line) for line in gov.ledger.path.read_text().splitlines()]


def events(sub, kind: str) -> list:
    return [e for e in sub.drain() if e.kind == kind]


# ----------------------------------------------------------------------------- caps: planned while running


def test_the_day_cap_counts_a_train_as_planned_until_its_report_and_as_delivered_after(gov, clock) -> None:
    t1 = train(gov, clock, 20)
    assert gov.totals("stim")["day"].pulses == 20  # counted before the first pulse
    clock.step(0.5)
    assert gov.totals("stim")["day"].pulses == 20  # and while it runs
    clock.step(0.6)
    assert gov.record_delivered("stim", report(t1, 20, 19, missed=(MissedSlot(12, t1 + 0.55, 0.03),)))
    assert gov.totals("stim")["day"].pulses == 19 and gov.totals("stim")["session"].pulses == 19
    assert gov.totals("stim")["session"].charge_c == pytest.approx(19 * PULSE_C)

    clock.step(0.1)
    t2 = train(gov, clock, 20)
    assert gov.totals("stim")["day"].pulses == 39
    clock.step(1.1)  # the second train has ended by the plan, but its driver has not reported yet
    assert ask(gov, clock, "stim", "set", n_pulses=7.0, frequency_hz=20.0)
    clock.step(0.2)
    probe = gov.check(StimRequest("stim", "fire", clock.t, {}, "rule 1"))
    assert not probe and probe.limit == "pulses_per_day_max" and probe.value == 46  # 19 + 20 (planned) + 7 > 45
    assert gov.record_delivered("stim", report(t2, 20, 19, missed=(MissedSlot(3, t2 + 0.1, 0.03),)))
    assert gov.totals("stim")["day"].pulses == 38
    assert ask(gov, clock, "stim", "fire")  # 19 + 19 + 7 = 45: within the cap, counted as delivered
    assert gov.totals("stim")["day"].pulses == 45


# ----------------------------------------------------------------------------- the record and the journal


def test_a_short_train_is_appended_to_the_ledger_and_journaled_with_its_reason(gov, clock, bus) -> None:
    sub = bus.subscribe()
    t1 = train(gov, clock, 20)
    first = gov.ledger.path.read_text()
    clock.step(0.3)
    gov.estop("button")  # the disarm cuts the train on the device
    rec = gov.record_delivered("stim", report(t1, 20, 7, "disarmed"))
    assert rec is not None and rec.short and rec.delivered == 7 and rec.confirmed
    assert gov.ledger.path.read_text().startswith(first)  # appended: the planned entry is as it was

    fire, delivered = [e for e in ledger_lines(gov) if e["kind"] in ("fire", "delivered")]
    assert fire["pulses"] == 20 and fire["v"] == 2
    assert delivered["ref"] == 1 and delivered["wall"] == fire["wall"] and delivered["end_s"] == fire["end_s"]
    assert delivered["pulses"] == -13 and delivered["charge_c"] == pytest.approx(-13 * PULSE_C)
    facts = delivered["delivered"]
    assert (facts["pulses"], facts["planned_pulses"], facts["counted_pulses"]) == (7, 20, 20)
    assert facts["confirmed"] is True and facts["ended_by"] == "disarmed"
    assert facts["reason"] == "disarmed after 7 of 20 pulses (disarm: E-STOP: button)"
    assert gov.totals("stim")["session"].pulses == 7

    seen = sub.drain()
    [short] = [e for e in seen if e.kind == ev.SHORT_TRAIN]
    [delivery] = [e for e in seen if e.kind == ev.DELIVERY]
    assert short.data["planned"] == 20 and short.data["delivered"] == 7 and short.data["count"] == 1
    assert short.data["reason"] == facts["reason"] and short.data["rule"] == "rule 1"
    assert delivery.data["short"] is True and delivery.data["recorded"] == 7 and delivery.data["counted"] == 20


def test_skipped_slots_are_named_with_their_times_and_the_lateness(gov, clock, bus) -> None:
    sub = bus.subscribe()
    t1 = train(gov, clock, 20)
    rec = gov.record_delivered("stim", report(t1, 20, 19, missed=(MissedSlot(13, t1 + 0.6, 0.0147),)))
    assert rec.reason == ("19 of 20 pulses; 1 slot skipped because the pulse thread woke too late: "
                          "pulse 13 due at +0.600 s (14.7 ms late)")
    [short] = events(sub, ev.SHORT_TRAIN)
    assert short.data["missed"] == [{"pulse": 13, "t_due": t1 + 0.6, "late_s": 0.0147}]


def test_a_complete_train_is_recorded_as_delivered_and_not_journaled_as_short(gov, clock, bus) -> None:
    sub = bus.subscribe()
    t1 = train(gov, clock, 20)
    rec = gov.record_delivered("stim", report(t1, 20, 20))
    assert rec is not None and not rec.short and rec.correction.pulses == 0 and rec.reason == ""
    assert gov.totals("stim")["session"].pulses == 20
    seen = sub.drain()
    assert [e.kind for e in seen if e.kind in (ev.DELIVERY, ev.SHORT_TRAIN)] == [ev.DELIVERY]
    assert ledger_lines(gov)[-1]["delivered"]["pulses"] == 20


def test_a_device_that_cannot_count_leaves_the_planned_dose_not_confirmed(gov, clock, bus) -> None:
    sub = bus.subscribe()
    t1 = train(gov, clock, 20)
    rec = gov.record_delivered("stim", report(t1, None, None, "unreported", confirmed=False))
    assert rec is not None and not rec.confirmed and rec.dose.pulses == 20 and rec.correction.pulses == 0
    assert gov.totals("stim")["session"].pulses == 20
    [delivery] = events(sub, ev.DELIVERY)
    assert delivery.data["confirmed"] is False and delivery.data["delivered"] is None
    assert "does not report" in delivery.data["reason"]


def test_a_report_is_recorded_once_and_one_that_matches_no_train_changes_nothing(gov, clock, bus) -> None:
    sub = bus.subscribe()
    t1 = train(gov, clock, 20)
    assert gov.record_delivered("stim", report(t1 - 1.0, 20, 3)) is None  # began before any train was committed
    assert gov.record_delivered("stim", report(t1, 20, 18))
    assert gov.record_delivered("stim", report(t1, 20, 1)) is None  # the train was already reported
    assert gov.totals("stim")["session"].pulses == 18
    unmatched = [e for e in sub.drain() if e.kind == ev.SAFETY and e.data["what"] == "delivery_unmatched"]
    assert len(unmatched) == 2


def test_a_device_that_delivered_more_than_its_train_is_counted_and_inhibits(gov, clock) -> None:
    t1 = train(gov, clock, 20)
    rec = gov.record_delivered("stim", report(t1, 20, 21))
    assert rec.over and gov.totals("stim")["session"].pulses == 21
    assert "delivery" in gov.inhibitions


def test_after_a_restart_the_ledger_counts_the_delivered_dose(site, tmp_path, clock) -> None:
    path = tmp_path / "ledger.jsonl"
    gov = open_governor(site, path, clock)
    t1 = train(gov, clock, 20)
    gov.record_delivered("stim", report(t1, 20, 12, "stopped"))
    gov.ledger.close()
    again = open_governor(site, path, clock)
    assert again.totals("stim")["session"].pulses == 12 and again.totals("stim")["day"].pulses == 12
    again.ledger.close()


# ----------------------------------------------------------------------------- continuous stimulation


def start_pulsed(gov: Governor, clock: Clock, current_a: float = 0.5e-3) -> float:
    """A 10 s pulse train at 10 Hz (100 pulses planned); returns its first pulse's time."""
    assert gov.arm("pulsed", "operator")
    assert ask(gov, clock, "pulsed", "set", current_a=current_a, pulse_width_s=100e-6, frequency_hz=10.0, phases=2.0)
    clock.step(0.1)
    assert ask(gov, clock, "pulsed", "start", duration_s=10.0)
    return clock.t + 0.001


@pytest.mark.parametrize("confirm_first", [False, True])
def test_a_run_the_device_counted_is_counted_by_its_pulses_not_by_the_clock(gov, clock, confirm_first) -> None:
    t_first = start_pulsed(gov, clock)
    clock.step(3.0)
    assert ask(gov, clock, "pulsed", "stop", rule="operator")
    if confirm_first:  # the stop's confirmation came first: the time-based refund, then the count corrects it
        assert gov.confirm_stopped("pulsed", clock.t) is not None
    rec = gov.record_delivered("pulsed", report(t_first, None, 28, "stopped"))
    assert rec.short and rec.reason == "stopped after 28 of 100 pulses (stop: operator)"
    assert gov.confirm_stopped("pulsed", clock.t) is None  # no refund on top of the count
    totals = gov.totals("pulsed")["session"]
    assert totals.pulses == 28 and totals.charge_c == pytest.approx(28 * 2 * 0.5e-3 * 100e-6)


def test_a_run_whose_current_was_raised_counts_every_delivered_pulse_at_the_highest_charge(gov, clock) -> None:
    t_first = start_pulsed(gov, clock)
    clock.step(1.0)
    assert ask(gov, clock, "pulsed", "set", current_a=1e-3)  # raised while running
    clock.step(2.0)
    assert ask(gov, clock, "pulsed", "stop", rule="operator")
    gov.record_delivered("pulsed", report(t_first, None, 30, "stopped"))
    totals = gov.totals("pulsed")["session"]
    assert totals.pulses == 30 and totals.charge_c == pytest.approx(30 * 2 * 1e-3 * 100e-6)


def test_a_run_whose_doses_fall_on_two_days_keeps_its_counted_dose(site, tmp_path) -> None:
    clock = Clock(wall=datetime(2024, 3, 5, 23, 59, 50, tzinfo=BERLIN))
    gov = open_governor(site, tmp_path / "l.jsonl", clock)
    assert gov.arm("pulsed", "operator")
    assert ask(gov, clock, "pulsed", "set", current_a=1e-3, pulse_width_s=100e-6, frequency_hz=10.0)
    clock.step(0.1)
    assert ask(gov, clock, "pulsed", "start", duration_s=9.0)  # until 23:59:59.1
    t_first = clock.t + 0.001
    clock.step(11.0)  # stopped after midnight: the overrun is counted on 6 March
    assert ask(gov, clock, "pulsed", "stop")
    counted = gov.totals("pulsed")["session"]
    rec = gov.record_delivered("pulsed", report(t_first, None, 85))
    assert "counted on different days" in rec.reason and rec.correction.pulses == 0
    assert gov.totals("pulsed")["session"] == counted
    gov.ledger.close()


# ----------------------------------------------------------------------------- older ledgers


OLD = [  # written by a controller of ledger version 1 (before delivered doses were recorded)
    '{"v":1,"device":"stim","session":"s0","kind":"fire","t":10.0,"wall":"2024-03-05T08:00:00+00:00","pulses":20,'
    '"charge_c":4e-06,"end_s":1.0,"last_pulse_s":0.95,"train":true,"rule":"rule 1","settings":{"n_pulses":20.0}}',
    '{"v":1,"device":"pulsed","session":"s0","kind":"start","t":20.0,"wall":"2024-03-05T08:00:10+00:00",'
    '"pulses":100,"charge_c":2e-05,"end_s":10.0,"last_pulse_s":9.9,"train":true,"settings":{"frequency_hz":10.0}}',
    '{"v":1,"device":"pulsed","session":"s0","kind":"extra","t":21.0,"wall":"2024-03-05T08:00:11+00:00",'
    '"pulses":10,"charge_c":2e-06,"end_s":9.0,"last_pulse_s":9.0,"train":true,"ref":2}',
    '{"v":1,"device":"pulsed","session":"s0","kind":"stop","t":24.0,"wall":"2024-03-05T08:00:14+00:00",'
    '"pulses":0,"charge_c":0.0,"end_s":0.0,"last_pulse_s":0.0,"train":false,"ref":2}',
    '{"v":1,"device":"pulsed","session":"s0","kind":"refund","t":20.0,"wall":"2024-03-05T08:00:10+00:00",'
    '"pulses":-60,"charge_c":-1.2e-05,"end_s":10.0,"last_pulse_s":9.9,"train":true,"ref":2}',
]


def test_an_old_format_ledger_is_read_as_before_and_new_entries_follow_it(site, tmp_path) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text("\n".join(OLD) + "\n")
    with DoseLedger(path, tz=site.tzinfo) as ledger:
        assert ledger.repaired is None and [e.kind for e in ledger.entries] == [
            "fire", "start", "extra", "stop", "refund"]
        assert ledger.session_totals("stim", "s0").pulses == 20
        pulsed = ledger.session_totals("pulsed", "s0")
        assert pulsed.pulses == 50 and pulsed.charge_c == pytest.approx(1e-5)
        today = ledger.today(datetime(2024, 3, 5, 12, 0, tzinfo=BERLIN))
        assert ledger.day_totals("stim", today).pulses == 20
        assert [e.kind for e in ledger.train_entries(2)] == ["start", "extra", "stop", "refund"]

    clock = Clock(t=5000.0, wall=datetime(2024, 3, 5, 12, 0, tzinfo=BERLIN))
    gov = open_governor(site, path, clock, session="s1")
    t1 = train(gov, clock, 5)
    assert gov.totals("stim")["day"].pulses == 25
    gov.record_delivered("stim", report(t1, 5, 4))
    assert gov.totals("stim")["day"].pulses == 24
    gov.ledger.close()
    lines = path.read_text().splitlines()
    assert lines[:len(OLD)] == OLD  # the old lines are untouched
    assert [json.loads(x)["v"] for x in lines[len(OLD):]] == [2, 2]
    with DoseLedger(path, tz=site.tzinfo) as ledger:  # a mixed ledger reads back
        assert ledger.day_totals("stim", today).pulses == 24


def test_a_report_the_governor_cannot_read_leaves_the_planned_dose_and_inhibits(gov, clock) -> None:
    t1 = train(gov, clock, 20)

    class Broken:  # a driver's report with a count that is no number
        t_start, t_end, delivered, ended_by, missed, confirmed, detail = t1, t1 + 1, "19", "completed", (), True, ""

    assert gov.record_delivered("stim", Broken()) is None
    assert gov.totals("stim")["session"].pulses == 20 and "governor" in gov.inhibitions
