"""The safety governor, one limit at a time: each refused with the right limit, value and
limit value, and the request just inside it allowed. Clocks are injected; the ledger is
a real file."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from controller.events import EventBus
from controller.safety import DoseLedger, Governor, LedgerError, StimRequest, check_request, loads_site
from controller.safety.governor import SAFETY

SITE = """
site: test-site
timezone: Europe/Berlin
max_loop_latency: 5 ms
input_stall: 1 s
devices:
  tms:
    driver: magstim
    port: loop://tms
    limits:
      intensity_max: 80 %
      frequency_max: 20 Hz
      pulses_per_train_max: 40
      train_duration_max: 2 s
      min_inter_train: 5 s
      min_pulse_interval: 50 ms
      pulses_per_session_max: 100
      pulses_per_day_max: 150
      blanking: 100 ms
      motor_threshold_min: 40 %
      train_table:
        source: test table
        relative_to: motor_threshold
        intensities: [100 %, 120 %]
        rows:
          10 Hz: [2 s, 1 s]
          20 Hz: [1 s, 0.5 s]
  stim:
    driver: triggerbox
    port: loop://stim
    fixed_settings: {current: 1 mA, pulse_width: 100 us, phases: 2}
    limits:
      frequency_max: 25 Hz
      pulses_per_session_max: 1000
      charge_per_session_max: 40 uC
      charge_per_day_max: 60 uC
  pulsed:
    driver: starstim
    port: loop://pulsed
    limits:
      current_max: 2 mA
      pulse_width_max: 500 us
      frequency_max: 100 Hz
      electrode_area: 0.01 cm2
      charge_per_phase_max: 0.3 uC
      charge_density_max: 25 uC/cm2
      shannon_k_max: 0.6
      pulses_per_session_max: 1000
  tacs:
    driver: starstim
    port: 127.0.0.1:1235
    limits:
      current_max: 2 mA
      frequency_max: 150 Hz
      ramp_rate_max: 0.1 mA/s
      train_duration_max: 60 s
      min_inter_train: 10 s
      blanking: 1 s
      charge_per_session_max: 300 mC
      charge_per_day_max: 500 mC
"""

BERLIN = ZoneInfo("Europe/Berlin")


class Clock:
    """LSL clock and wall clock moving together (unless told otherwise)."""

    def __init__(self, t: float = 1000.0, wall: datetime = datetime(2024, 3, 5, 10, 0, tzinfo=BERLIN)) -> None:
        self.t = t
        self.wall0, self.t0 = wall, t

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return self.wall0 + timedelta(seconds=self.t - self.t0)

    def step(self, dt: float) -> float:
        self.t += dt
        return self.t

    def lsl_only(self, dt: float) -> None:
        """The LSL clock moves by ``dt`` more than the wall clock (runs fast, or slow if < 0)."""
        self.t += dt
        self.wall0 -= timedelta(seconds=dt)


@pytest.fixture
def site():
    return loads_site(SITE, "test-site.yaml")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(site, path: Path, clock: Clock, session: str = "s1", **kw) -> Governor:
    ledger = DoseLedger(path, tz=site.tzinfo, fsync=True)
    return Governor(site, ledger, session, clock=clock, wall=clock.wall, **kw)


@pytest.fixture
def gov(site, tmp_path, clock) -> Governor:
    g = make(site, tmp_path / "ledger.jsonl", clock)
    yield g
    g.ledger.close()


def req(clock: Clock, device: str, kind: str, rule: str | None = None, **params) -> StimRequest:
    return StimRequest(device, kind, clock.t, params, rule)


def armed(gov: Governor, *devices: str) -> Governor:
    for d in devices:
        assert gov.arm(d, "operator A")
    return gov


def refused(verdict, limit: str, value: float | None = None, limit_value: float | None = None):
    assert not verdict, str(verdict)
    assert verdict.limit == limit, str(verdict)
    if value is not None:
        assert verdict.value == pytest.approx(value, rel=1e-9), str(verdict)
    if limit_value is not None:
        assert verdict.limit_value == pytest.approx(limit_value, rel=1e-9), str(verdict)
    assert str(verdict).startswith("refused: ") and f"({limit}" in str(verdict) or verdict.limit in (
        "armed", "inhibited", "clock", "busy", "parameter", "operator", "fixed_settings", "device", "kind")
    return verdict


# ----------------------------------------------------------------------------- arming


def test_everything_starts_disarmed_and_arming_is_an_operator_act(gov, clock) -> None:
    v = gov.request(req(clock, "tms", "set", intensity_pct=50))
    assert v  # a setting may be prepared while disarmed
    clock.step(1)
    v = gov.request(req(clock, "tms", "fire"))
    assert not v and v.limit == "armed"
    assert str(v) == "refused: tms fire, but tms is not armed (arming is an operator act)"
    v = gov.request(req(clock, "tms", "arm"))
    assert not v and v.limit == "operator"
    assert not gov.arm("tms", "  ")
    assert gov.arm("tms", "operator A")
    assert gov.request(req(clock, "tms", "fire"))
    assert gov.disarm("tms", "done")
    clock.step(1)
    assert gov.request(req(clock, "tms", "fire")).limit == "armed"


# ----------------------------------------------------------------------------- settings limits


def test_intensity(gov, clock) -> None:
    armed(gov, "tms")
    v = refused(gov.request(req(clock, "tms", "set", "rule 2 'tbr < goal'", intensity_pct=85)), "intensity_max", 85, 80)
    assert str(v) == "refused: rule 2 'tbr < goal' asks tms intensity 85 % > site limit 80 % (intensity_max)"
    refused(gov.request(req(clock, "tms", "set", intensity_pct=80.01)), "intensity_max", 80.01, 80)
    assert gov.request(req(clock, "tms", "set", intensity_pct=80))
    assert gov.settings("tms")["intensity_pct"] == 80  # the refused values left no trace


def test_current_frequency_pulse_width(gov, clock) -> None:
    refused(gov.request(req(clock, "pulsed", "set", current_a=2.0001e-3)), "current_max", 2.0001e-3, 2e-3)
    assert gov.request(req(clock, "pulsed", "set", current_a=2e-3))
    refused(gov.request(req(clock, "pulsed", "set", frequency_hz=100.5)), "frequency_max", 100.5, 100)
    assert gov.request(req(clock, "pulsed", "set", frequency_hz=100))
    refused(gov.request(req(clock, "pulsed", "set", pulse_width_s=501e-6)), "pulse_width_max", 501e-6, 500e-6)


def test_pulses_per_train_and_train_duration(gov, clock) -> None:
    refused(gov.request(req(clock, "tms", "set", n_pulses=41)), "pulses_per_train_max", 41, 40)
    assert gov.request(req(clock, "tms", "set", n_pulses=40, frequency_hz=20))
    # 40 pulses at 15 Hz last 2.67 s > 2 s
    refused(gov.request(req(clock, "tms", "set", frequency_hz=15)), "train_duration_max", 40 / 15, 2.0)


def test_train_table_in_motor_threshold_units(gov, clock) -> None:
    armed(gov, "tms")
    assert not gov.set_motor_threshold("tms", 39, "operator A")  # below motor_threshold_min 40 %
    assert gov.set_motor_threshold("tms", 50, "operator A")
    # 60 % output = 120 % MT; at 10 Hz the table allows 1 s: 10 pulses ok, 11 pulses (1.1 s) not
    assert gov.request(req(clock, "tms", "set", intensity_pct=60, frequency_hz=10, n_pulses=10))
    v = refused(gov.request(req(clock, "tms", "set", n_pulses=11)), "train_table", 1.1, 1.0)
    assert "at 10 Hz and 120 % MT > site limit 1 s (train_table row 10 Hz, column 120 % MT)" in str(v)
    # 9 Hz and 105 % MT look up the 10 Hz row, 120 % column: never interpolated upward
    assert gov.request(req(clock, "tms", "set", intensity_pct=52.5, frequency_hz=9, n_pulses=9))
    refused(gov.request(req(clock, "tms", "set", n_pulses=10)), "train_table", 10 / 9, 1.0)
    # 62 % = 124 % MT is beyond the last column: no train at all
    v = refused(gov.request(req(clock, "tms", "set", intensity_pct=62)), "train_table")
    assert "beyond the train table" in str(v)
    clock.step(1)
    assert gov.request(req(clock, "tms", "fire"))  # 9 pulses at 9 Hz, 105 % MT: 1 s allowed


def test_train_table_uses_motor_threshold_min_before_measurement(site, gov, clock) -> None:
    # 40 % output with an unmeasured threshold: worst case 40/40 = 100 % MT -> 2 s at 10 Hz
    assert gov.request(req(clock, "tms", "set", intensity_pct=40, frequency_hz=10, n_pulses=20))
    refused(gov.request(req(clock, "tms", "set", intensity_pct=41)), "train_table")  # 102.5 % MT: 1 s only
    assert check_request(site, "tms", {"intensity_pct": 40, "frequency_hz": 10, "n_pulses": 20}) == []
    assert check_request(site, "tms", {"intensity_pct": 40, "frequency_hz": 10, "n_pulses": 20}, motor_threshold_pct=35)


def test_charge_per_phase_density_and_shannon(gov, clock) -> None:
    # 1 mA x 200 us = 0.2 uC/phase on 0.01 cm2: D = 20 uC/cm2, k = log10(20) + log10(0.2) = 0.602
    v = gov.request(req(clock, "pulsed", "set", current_a=1e-3, pulse_width_s=200e-6))
    refused(v, "shannon_k_max", math.log10(20) + math.log10(0.2), 0.6)
    assert "pulsed Shannon k 0.60206 > site limit 0.6 (shannon_k_max)" in str(v)
    assert gov.request(req(clock, "pulsed", "set", current_a=1e-3, pulse_width_s=199e-6))  # k = 0.5977
    # density: 1.3 mA x 200 us = 0.26 uC: 26 uC/cm2 > 25, k = 0.83 > 0.6, 0.26 uC < 0.3 uC
    v = gov.request(req(clock, "pulsed", "set", current_a=1.3e-3, pulse_width_s=200e-6))
    assert not v and [x.limit for x in v.violations] == ["charge_density_max", "shannon_k_max"]
    assert v.violations[0].value == pytest.approx(0.26) and v.violations[0].limit_value == pytest.approx(0.25)
    assert "charge density per phase 26 uC/cm2 > site limit 25 uC/cm2" in str(v)
    v = gov.request(req(clock, "pulsed", "set", current_a=2e-3, pulse_width_s=160e-6))  # 0.32 uC
    assert [x.limit for x in v.violations] == ["charge_per_phase_max", "charge_density_max", "shannon_k_max"]


def test_fixed_settings_cannot_be_changed(gov, clock) -> None:
    v = gov.request(req(clock, "stim", "set", current_a=2e-3))
    refused(v, "fixed_settings")
    assert "the site fixes it at 0.001 on the stimulator" in str(v)
    assert gov.request(req(clock, "stim", "set", current_a=1e-3))  # restating is fine


def test_parameters_are_validated(gov, clock) -> None:
    for params in ({"intensity_pct": float("nan")}, {"intensity_pct": -1}, {"n_pulses": 2.5}, {"phases": 3},
                   {"power": 5}, {"intensity_pct": "50"}, {}):
        v = gov.request(StimRequest("tms", "set", clock.t, params))
        assert not v and v.limit == "parameter", (params, str(v))
    assert gov.request(StimRequest("nope", "fire", clock.t)).limit == "device"
    assert gov.request(StimRequest("tms", "blast", clock.t)).limit == "kind"


# ----------------------------------------------------------------------------- timing limits


def _prep_tms(gov: Governor, clock: Clock, **settings) -> None:
    armed(gov, "tms")
    assert gov.set_motor_threshold("tms", 50, "operator A")
    assert gov.request(req(clock, "tms", "set", **{"intensity_pct": 50, **settings}))
    clock.step(0.2)


def test_blanking_after_a_parameter_change(gov, clock) -> None:
    _prep_tms(gov, clock)
    assert gov.request(req(clock, "tms", "set", intensity_pct=55))
    clock.step(0.099)
    refused(gov.request(req(clock, "tms", "fire")), "blanking", 0.099, 0.1)
    clock.step(0.001)
    assert gov.request(req(clock, "tms", "fire"))


def test_min_pulse_interval_between_single_pulses(gov, clock) -> None:
    _prep_tms(gov, clock)
    assert gov.request(req(clock, "tms", "fire"))
    clock.step(0.049)
    refused(gov.request(req(clock, "tms", "fire")), "min_pulse_interval", 0.049, 0.05)
    clock.step(0.001)
    assert gov.request(req(clock, "tms", "fire"))


def test_single_pulse_rate_is_bounded_by_frequency_max(gov, clock) -> None:
    armed(gov, "stim")
    assert gov.request(req(clock, "stim", "fire"))
    clock.step(0.039)
    v = refused(gov.request(req(clock, "stim", "fire")), "frequency_max", 1 / 0.039, 25)
    assert "stim pulse rate 25.641 Hz (39 ms since the last pulse) > site limit 25 Hz (frequency_max)" in str(v)
    clock.step(0.001)
    assert gov.request(req(clock, "stim", "fire"))


def test_min_inter_train(gov, clock) -> None:
    _prep_tms(gov, clock, frequency_hz=10, n_pulses=10)  # 1 s trains
    assert gov.request(req(clock, "tms", "fire"))
    clock.step(1.0 + 4.9)  # 4.9 s after the train ended
    v = refused(gov.request(req(clock, "tms", "fire")), "min_inter_train", 4.9, 5.0)
    assert "tms interval since the last train 4.9 s < site minimum 5 s (min_inter_train)" in str(v)
    clock.step(0.1)
    assert gov.request(req(clock, "tms", "fire"))
    # a set while the train runs is refused
    clock.step(0.5)
    assert gov.request(req(clock, "tms", "set", intensity_pct=51)).limit == "busy"


def test_a_set_the_device_did_not_take_is_undone_so_the_ramp_is_checked_from_the_real_current(site, tmp_path,
                                                                                              clock) -> None:
    bus = EventBus()
    sub = bus.subscribe({SAFETY})
    gov = armed(make(site, tmp_path / "l.jsonl", clock, publish=bus.publish), "tacs")
    assert gov.request(req(clock, "tacs", "set", current_a=1e-3, frequency_hz=10))
    clock.step(1)  # blanking
    assert gov.request(req(clock, "tacs", "start", duration_s=60, ramp_s=10))
    clock.step(10 + 2)
    before = gov.settings("tacs")
    assert gov.request(req(clock, "tacs", "set", current_a=1.2e-3))  # allowed at 0.1 mA/s ...
    gov.not_applied("tacs", before, "device not ready")  # ... but the device refused it: it is still at 1 mA
    assert gov.settings("tacs")["current_a"] == 1e-3
    clock.step(2)
    # 1.2 -> 1.4 mA in 2 s would be within 0.1 mA/s; from the real 1 mA it is 0.2 mA/s
    refused(gov.request(req(clock, "tacs", "set", current_a=1.4e-3)), "ramp_rate_max", 0.4e-3 / 2, 1e-4)
    assert gov.request(req(clock, "tacs", "set", current_a=1.2e-3))  # from 1 mA, at the rate
    assert gov.settings("tacs")["current_a"] == 1.2e-3
    events = [e.data for e in sub.drain() if e.data.get("what") == "not_applied"]
    assert events and events[0]["device"] == "tacs" and events[0]["reason"] == "device not ready"
    gov.ledger.close()


def test_ramp_rate_and_continuous_stimulation(gov, clock) -> None:
    armed(gov, "tacs")
    assert gov.request(req(clock, "tacs", "set", current_a=1e-3, frequency_hz=10))
    clock.step(1)
    v = refused(gov.request(req(clock, "tacs", "start", duration_s=30)), "ramp_rate_max")
    assert "start with ramp_s >= 10 s" in str(v)
    refused(gov.request(req(clock, "tacs", "start", duration_s=30, ramp_s=9.9)), "ramp_rate_max", 1e-3 / 9.9, 1e-4)
    assert gov.request(req(clock, "tacs", "start", duration_s=30, ramp_s=10))
    assert gov.running("tacs")
    assert gov.request(req(clock, "tacs", "fire")).limit == "busy"
    clock.step(10 + 2)  # 2 s after the device's ramp ended
    refused(gov.request(req(clock, "tacs", "set", current_a=1.21e-3)), "ramp_rate_max", 0.21e-3 / 2, 1e-4)
    assert gov.request(req(clock, "tacs", "set", current_a=1.2e-3))
    clock.step(1)
    refused(gov.request(req(clock, "tacs", "set", current_a=1.3001e-3)), "ramp_rate_max")
    assert gov.request(req(clock, "tacs", "set", current_a=1.1e-3))  # down, at the rate
    stop = gov.request(req(clock, "tacs", "stop"))
    assert stop and not gov.running("tacs")


def test_start_needs_a_duration_and_respects_train_duration(gov, clock) -> None:
    armed(gov, "tacs")
    assert gov.request(req(clock, "tacs", "set", current_a=0.0, frequency_hz=10))
    clock.step(2)
    assert gov.request(req(clock, "tacs", "start")).limit == "parameter"
    refused(gov.request(req(clock, "tacs", "start", duration_s=60.5)), "train_duration_max", 60.5, 60)
    assert gov.request(req(clock, "tacs", "start", duration_s=60))


# ----------------------------------------------------------------------------- doses


def test_pulses_per_session_and_day(site, tmp_path, clock) -> None:
    path = tmp_path / "ledger.jsonl"
    gov = make(site, path, clock, "s1")
    _prep_tms(gov, clock, frequency_hz=20, n_pulses=20)  # 1 s at 20 Hz, 50 % = 100 % MT: table allows 1 s
    for _ in range(5):
        assert gov.request(req(clock, "tms", "fire"))
        clock.step(6)
    v = refused(gov.request(req(clock, "tms", "fire")), "pulses_per_session_max", 120, 100)
    assert "tms pulses this session 100 + 20 = 120 > site limit 100 (pulses_per_session_max)" in str(v)
    assert gov.totals("tms")["session"].pulses == 100
    gov.ledger.close()
    # a new session the same day: the session cap resets, the day cap (150) does not
    gov = make(site, path, clock, "s2")
    _prep_tms(gov, clock, frequency_hz=20, n_pulses=20)
    clock.step(6)
    assert gov.request(req(clock, "tms", "fire"))
    clock.step(6)
    assert gov.request(req(clock, "tms", "fire"))
    clock.step(6)
    v = refused(gov.request(req(clock, "tms", "fire")), "pulses_per_day_max", 160, 150)
    assert "tms pulses today 140 + 20 = 160 > site limit 150" in str(v)
    assert gov.request(req(clock, "tms", "set", n_pulses=10))  # 10 more fit exactly
    clock.step(0.2)
    assert gov.request(req(clock, "tms", "fire"))
    assert gov.totals("tms")["day"].pulses == 150
    gov.ledger.close()


def test_charge_per_session_and_day(site, tmp_path, clock) -> None:
    # stim: 1 mA x 100 us x 2 phases = 0.2 uC per pulse; 40 uC per session = 200 pulses
    gov = make(site, tmp_path / "l.jsonl", clock, "s1")
    armed(gov, "stim")
    for _ in range(200):
        assert gov.request(req(clock, "stim", "fire"))
        clock.step(0.04)
    v = refused(gov.request(req(clock, "stim", "fire")), "charge_per_session_max", 40.2e-6, 40e-6)
    assert "stim charge this session 40 uC + 0.2 uC = 40.2 uC > site limit 40 uC (charge_per_session_max)" in str(v)
    gov.ledger.close()
    gov = make(site, tmp_path / "l.jsonl", clock, "s2")
    armed(gov, "stim")
    for _ in range(100):
        assert gov.request(req(clock, "stim", "fire"))
        clock.step(0.04)
    refused(gov.request(req(clock, "stim", "fire")), "charge_per_day_max", 60.2e-6, 60e-6)
    gov.ledger.close()


def test_dose_survives_a_restart_and_a_fresh_governor_refuses(site, tmp_path, clock) -> None:
    path = tmp_path / "ledger.jsonl"
    gov = make(site, path, clock, "s1")
    _prep_tms(gov, clock, frequency_hz=20, n_pulses=20)
    for _ in range(5):
        assert gov.request(req(clock, "tms", "fire"))
        clock.step(6)
    clock.step(-4.5)  # the last train ended 0.5 s ago ...
    gov.ledger.close()  # ... when the controller crashes
    gov = make(site, path, clock, "s1")
    assert gov.totals("tms")["session"].pulses == 100
    _prep_tms(gov, clock, frequency_hz=20, n_pulses=1)
    v = gov.request(req(clock, "tms", "fire"))
    assert [x.limit for x in v.violations] == ["min_inter_train", "pulses_per_session_max"]  # intervals survive too
    assert v.violations[0].value == pytest.approx(0.7)
    lines = path.read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(line)["kind"] == "fire" for line in lines)
    gov.ledger.close()


def test_day_rollover_in_the_site_time_zone(site, tmp_path) -> None:
    # 23:59:00 in Berlin is 22:59 UTC; the day cap (150) resets at Berlin midnight, not UTC's
    clock = Clock(wall=datetime(2024, 3, 5, 22, 59, tzinfo=UTC))
    gov = make(site, tmp_path / "l.jsonl", clock, "s1")
    _prep_tms(gov, clock, frequency_hz=20, n_pulses=20)
    for _ in range(5):
        assert gov.request(req(clock, "tms", "fire"))
        clock.step(6)
    gov.ledger.close()
    for session in ("s2", "s3"):
        gov = make(site, tmp_path / "l.jsonl", clock, session)
        _prep_tms(gov, clock, frequency_hz=20, n_pulses=20)
        if session == "s2":  # still 5 March in Berlin: 100 + 20 + 20 = 140, then 160 > 150
            assert gov.request(req(clock, "tms", "fire"))
            clock.step(6)
            assert gov.request(req(clock, "tms", "fire"))
            clock.step(6)
            refused(gov.request(req(clock, "tms", "fire")), "pulses_per_day_max", 160, 150)
            clock.t = clock.t0 + 61  # 00:00:01 on 6 March in Berlin (23:00:01 UTC)
        else:
            assert clock.wall().astimezone(UTC).hour == 23
            assert gov.totals("tms")["day"].pulses == 0
            assert gov.request(req(clock, "tms", "fire"))
        gov.ledger.close()


def test_a_dose_spanning_midnight_counts_on_both_days(site, tmp_path) -> None:
    clock = Clock(wall=datetime(2024, 3, 5, 23, 59, 50, tzinfo=BERLIN))
    gov = make(site, tmp_path / "l.jsonl", clock, "s1")
    armed(gov, "tacs")
    assert gov.request(req(clock, "tacs", "set", current_a=1e-3, frequency_hz=10))
    clock.step(1)
    assert gov.request(req(clock, "tacs", "start", duration_s=60, ramp_s=10))  # 60 mC, until 00:00:51
    clock.step(60)
    assert gov.request(req(clock, "tacs", "stop"))
    assert gov.totals("tacs")["day"].charge_c == pytest.approx(60e-3)  # on 6 March too
    gov.ledger.close()


def test_early_stop_refund_only_when_the_driver_confirms(gov, clock) -> None:
    armed(gov, "tacs")
    assert gov.request(req(clock, "tacs", "set", current_a=1e-3, frequency_hz=10))
    clock.step(1)
    assert gov.request(req(clock, "tacs", "start", duration_s=60, ramp_s=10))
    assert gov.totals("tacs")["session"].charge_c == pytest.approx(60e-3)
    clock.step(20)
    assert gov.request(req(clock, "tacs", "stop"))
    assert gov.totals("tacs")["session"].charge_c == pytest.approx(60e-3)  # not yet confirmed
    refund = gov.confirm_stopped("tacs", clock.t + 0.001)
    # delivered 20.001 s + 5 ms margin -> 201 cycles = 20.1 mC; 600 - 201 = 399 cycles refunded
    assert refund.pulses == 399 and refund.charge_c == pytest.approx(39.9e-3)
    assert gov.totals("tacs")["session"].charge_c == pytest.approx(20.1e-3)
    assert gov.confirm_stopped("tacs", clock.t) is None  # once only


def test_overrun_is_counted_when_the_stop_comes_late(gov, clock) -> None:
    armed(gov, "tacs")
    assert gov.request(req(clock, "tacs", "set", current_a=1e-3, frequency_hz=10))
    clock.step(1)
    assert gov.request(req(clock, "tacs", "start", duration_s=10, ramp_s=10))
    clock.step(12)
    assert gov.overdue() == ["tacs"]
    v = gov.request(req(clock, "tacs", "stop"))
    assert v and "after its planned end" in str(v)
    # 10 s planned + (2 s + 5 ms margin) overrun, ceil(20.05) = 21 cycles -> 2.1 mC
    assert gov.totals("tacs")["session"].charge_c == pytest.approx(10e-3 + 2.1e-3)


def test_mid_run_increase_counts_the_extra_dose(gov, clock) -> None:
    armed(gov, "tacs")
    assert gov.request(req(clock, "tacs", "set", current_a=1e-3, frequency_hz=10))
    clock.step(1)
    assert gov.request(req(clock, "tacs", "start", duration_s=60, ramp_s=10))
    clock.step(20)  # 10 s after the ramp; 40 s left
    assert gov.request(req(clock, "tacs", "set", current_a=1.5e-3))
    assert gov.totals("tacs")["session"].charge_c == pytest.approx(60e-3 + 0.5e-3 * 40)


def test_a_set_when_the_clocks_disagree_on_whether_the_run_is_over_counts_the_larger_dose(gov, clock) -> None:
    """Found by the randomized property search: by the wall clock the run had ended, by the (slow) LSL
    clock 0.5 s were left; the dose of a set then must be counted from the clock that leaves more time,
    and the governor must not fail (it had raised an internal error and inhibited everything)."""
    armed(gov, "tacs")
    assert gov.request(req(clock, "tacs", "set", current_a=1e-3, frequency_hz=10))
    clock.step(1)
    assert gov.request(req(clock, "tacs", "start", duration_s=20, ramp_s=10))
    before = gov.totals("tacs")["session"].charge_c
    clock.step(20)
    clock.lsl_only(-0.5)  # the LSL clock is 0.5 s slow: by it the run has 0.5 s left
    v = gov.request(req(clock, "tacs", "set", current_a=1e-3))
    assert v, str(v)
    assert "governor" not in gov.inhibitions
    assert gov.totals("tacs")["session"].charge_c == pytest.approx(before + 1e-3 * 0.5)


# ----------------------------------------------------------------------------- interlocks


def test_inhibit_refuses_stimulation_but_never_stop_or_disarm(gov, clock) -> None:
    _prep_tms(gov, clock)
    gov.inhibit("artifact:emg", "emg 80 uV > 50 uV")
    v = gov.request(req(clock, "tms", "fire", "rule 1"))
    assert not v and v.limit == "inhibited"
    assert str(v) == "refused: rule 1 asks tms fire, but stimulation is inhibited: artifact:emg: emg 80 uV > 50 uV"
    assert gov.request(req(clock, "tms", "stop")) and gov.disarm("tms", "inhibited")
    assert not gov.arm("tms", "operator A")
    assert gov.clear("artifact:emg") and not gov.clear("artifact:emg")
    assert gov.arm("tms", "operator A")
    assert gov.request(req(clock, "tms", "fire"))


def test_clock_going_back_inhibits_until_cleared(gov, clock) -> None:
    _prep_tms(gov, clock)
    assert gov.request(req(clock, "tms", "fire"))
    clock.step(-3)
    v = gov.request(req(clock, "tms", "fire"))
    assert not v and v.limit == "clock" and "clock went back 3 s" in str(v)
    assert "clock" in gov.inhibitions
    assert gov.request(req(clock, "tms", "stop"))  # always
    clock.step(10)  # still refused: the inhibition stays until the operator clears it
    assert gov.request(req(clock, "tms", "fire")).limit == "inhibited"
    assert gov.clear("clock")
    assert gov.request(req(clock, "tms", "fire"))


def test_clearing_a_clock_jump_keeps_intervals_from_the_jump(gov, clock) -> None:
    _prep_tms(gov, clock, frequency_hz=10, n_pulses=10)
    assert gov.request(req(clock, "tms", "fire"))  # train until +1 s
    clock.step(-100)
    assert not gov.request(req(clock, "tms", "fire"))
    assert gov.clear("clock")
    clock.step(5.9)  # the train's end is placed at the jump's time + 1 s: only 4.9 s have passed
    refused(gov.request(req(clock, "tms", "fire")), "min_inter_train", 4.9, 5.0)


def test_the_loop_budget_counts_from_the_data_arrival_and_the_end_to_end_bound_from_the_sample(site, tmp_path, clock,
                                                                                               gov) -> None:
    """Issue 11: an amplifier sends blocks (8 samples at 256 Hz = 31 ms); the detecting sample is that
    old when its block arrives. max_loop_latency bounds the controller's delay (arrival -> command);
    the optional max_end_to_end_latency bounds the time from the sample, block included."""
    bounded = loads_site(SITE.replace("max_loop_latency: 5 ms", "max_loop_latency: 5 ms\nmax_end_to_end_latency: 60 ms"),
                         "test-site.yaml")
    assert bounded.max_end_to_end_latency_s == pytest.approx(0.060) and site.max_end_to_end_latency_s is None
    g = make(bounded, tmp_path / "bounded.jsonl", clock)
    _prep_tms(g, clock)
    block = 31.25e-3
    # a sample 31 ms old in a block that arrived 2 ms ago: within both
    assert g.request(StimRequest("tms", "fire", clock.t - 0.002, {}, t_sample=clock.t - 0.002 - block))
    clock.step(1)
    # the same block arriving 50 ms late (a stalled network): the sample is 81 ms old
    v = g.request(StimRequest("tms", "fire", clock.t - 0.002, {}, t_sample=clock.t - 0.052 - block))
    refused(v, "max_end_to_end_latency", 0.052 + block, 0.060)
    assert "end-to-end latency (from the detecting sample)" in str(v)
    clock.step(1)
    # the controller itself slow: 6 ms from arrival
    refused(g.request(StimRequest("tms", "fire", clock.t - 0.006, {}, t_sample=clock.t - 0.006)),
            "max_loop_latency", 0.006, 0.005)
    g.ledger.close()
    # without an end-to-end bound only the controller's delay counts, however old the block's samples
    _prep_tms(gov, clock)
    assert gov.request(StimRequest("tms", "fire", clock.t - 0.002, {}, t_sample=clock.t - 0.5))


def test_stale_decision_and_latency_budget(gov, clock) -> None:
    _prep_tms(gov, clock)
    v = gov.request(StimRequest("tms", "fire", clock.t - 0.0051))
    refused(v, "max_loop_latency", 0.0051, 0.005)
    assert "latency" in gov.inhibitions
    assert gov.clear("latency")
    assert gov.request(StimRequest("tms", "fire", clock.t - 0.005))
    assert gov.check_latency(0.005) and not gov.check_latency(0.0051)
    assert "5.1 ms > site max_loop_latency 5 ms" in gov.inhibitions["latency"].reason
    assert not gov.check_latency(float("nan"))
    gov.clear("latency")
    clock.step(1)
    v = gov.request(StimRequest("tms", "fire", clock.t + 1.0))
    assert v.limit == "clock" and "ahead of the clock" in str(v)


def test_input_stall_inhibits(gov, clock) -> None:
    _prep_tms(gov, clock)
    gov.input_seen("eeg")
    clock.step(1.0)
    assert gov.request(req(clock, "tms", "fire"))
    clock.step(0.1)
    v = gov.request(req(clock, "tms", "fire"))
    assert v.limit == "inhibited" and "input eeg silent for 1.1 s > site input_stall 1 s" in str(v)
    assert "input_stall:eeg" in gov.inhibitions
    gov.input_seen("eeg")
    assert gov.clear("input_stall:eeg")
    assert gov.request(req(clock, "tms", "fire"))


def test_an_input_that_delivers_every_tr_may_be_silent_one_tr_more(gov, clock) -> None:
    """An fMRI input delivers a volume per TR: silence up to TR + input_stall is its normal pace, not a stall;
    one instant more is a stall, as for a sample stream."""
    _prep_tms(gov, clock)
    gov.input_seen("fmri", period_s=2.0)
    clock.step(3.0)
    assert gov.request(req(clock, "tms", "fire"))  # 3 s = TR + input_stall: still within
    clock.step(0.1)
    v = gov.request(req(clock, "tms", "fire"))
    assert v.limit == "inhibited"
    assert "input fmri silent for 3.1 s > site input_stall 1 s beyond its delivery interval 2 s" in str(v)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="period_s must be a finite number >= 0"):
            gov.input_seen("fmri", period_s=bad)


def test_poll_raises_stalls_for_a_watchdog(gov, clock) -> None:
    gov.input_seen("eeg")
    clock.step(2)
    new = gov.poll()
    assert [i.source for i in new] == ["input_stall:eeg"] and gov.poll() == []


def test_estop_disarms_everything(gov, clock) -> None:
    armed(gov, "tms", "stim", "tacs")
    verdicts = gov.estop("button")
    assert all(verdicts) and {v.device for v in verdicts} == {"tms", "stim", "pulsed", "tacs"}
    assert not any(gov.armed(d) for d in ("tms", "stim", "tacs"))
    assert not gov.arm("tms", "operator A")  # until the estop is cleared
    assert gov.clear("estop") and gov.arm("tms", "operator A")


def test_check_is_pure(gov, clock) -> None:
    armed(gov, "stim")
    assert gov.check(req(clock, "stim", "fire"))
    assert gov.check(req(clock, "stim", "fire"))
    assert gov.totals("stim")["session"].pulses == 0 and gov.ledger.entries == []
    assert gov.request(req(clock, "stim", "fire"))  # the checks committed no pulse to wait after
    assert not gov.check(req(clock, "stim", "fire"))


def test_events_are_published(site, tmp_path, clock) -> None:
    bus = EventBus()
    sub = bus.subscribe({SAFETY})
    gov = make(site, tmp_path / "l.jsonl", clock, publish=bus.publish)
    gov.request(req(clock, "tms", "fire", "rule 3"))
    gov.arm("tms", "operator A")
    gov.inhibit("artifact:eog", "blink")
    events = sub.drain()
    assert [e.data["what"] for e in events] == ["refused", "allowed", "inhibited"]
    assert events[0].data["limit"] == "armed" and events[0].data["rule"] == "rule 3"
    assert events[0].data["verdict"].startswith("refused: rule 3 asks tms fire")
    gov.ledger.close()


# ----------------------------------------------------------------------------- the ledger


def test_truncated_last_line_is_dropped_and_the_file_repaired(site, tmp_path, clock) -> None:
    path = tmp_path / "l.jsonl"
    gov = make(site, path, clock)
    armed(gov, "stim")
    for _ in range(3):
        assert gov.request(req(clock, "stim", "fire"))
        clock.step(0.04)
    gov.ledger.close()
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"v":1,"device":"stim","sess')  # crash in the middle of a write
    ledger = DoseLedger(path, tz=site.tzinfo)
    assert len(ledger.entries) == 3 and ledger.repaired and ":4: dropped an incomplete last entry" in ledger.repaired
    assert path.read_bytes() == whole
    ledger.close()
    # a complete entry that only lacks its newline is kept (never undercount)
    path.write_bytes(whole + whole.splitlines()[0])
    ledger = DoseLedger(path, tz=site.tzinfo)
    assert len(ledger.entries) == 4 and ledger.repaired is None and path.read_bytes().endswith(b"\n")
    ledger.close()


def test_unreadable_entry_in_the_middle_stops_the_ledger(site, tmp_path) -> None:
    path = tmp_path / "l.jsonl"
    path.write_text('{"v":1}\n{"v":1,"device":"stim"}\n')
    with pytest.raises(LedgerError) as info:
        DoseLedger(path)
    assert f"{path}:1: unreadable dose entry" in str(info.value)


def test_one_process_at_a_time(site, tmp_path) -> None:
    first = DoseLedger(tmp_path / "l.jsonl")
    with pytest.raises(LedgerError, match="in use by another controller"):
        DoseLedger(tmp_path / "l.jsonl")
    first.close()
    DoseLedger(tmp_path / "l.jsonl").close()


def test_restored_continuous_stimulation_blocks_until_stopped(site, tmp_path, clock) -> None:
    path = tmp_path / "l.jsonl"
    gov = make(site, path, clock)
    armed(gov, "tacs")
    assert gov.request(req(clock, "tacs", "set", current_a=1e-3, frequency_hz=10))
    clock.step(1)
    assert gov.request(req(clock, "tacs", "start", duration_s=60, ramp_s=10))
    clock.step(5)
    gov.ledger.close()  # crash while stimulating
    gov = make(site, path, clock)
    armed(gov, "tacs")
    assert gov.request(req(clock, "tacs", "set", current_a=1e-3, frequency_hz=10)).limit == "busy"
    assert gov.request(req(clock, "tacs", "stop"))
    assert gov.request(req(clock, "tacs", "set", current_a=1e-3, frequency_hz=10))
    clock.step(1)
    v = gov.request(req(clock, "tacs", "start", duration_s=10, ramp_s=10))
    refused(v, "min_inter_train")  # measured from the stop, which the restart remembered
    gov.ledger.close()


# ----------------------------------------------------------------------------- load-time check


def test_check_request_lists_every_violation(site) -> None:
    got = check_request(site, "tms", {"intensity_pct": 90, "frequency_hz": 25, "n_pulses": 160}, motor_threshold_pct=50)
    assert [v.limit for v in got] == ["intensity_max", "frequency_max", "min_pulse_interval", "pulses_per_train_max",
                                      "train_duration_max", "train_table", "pulses_per_session_max", "pulses_per_day_max"]
    assert [str(v) for v in got] == [
        "tms intensity 90 % > site limit 80 % (intensity_max)",
        "tms frequency 25 Hz > site limit 20 Hz (frequency_max)",
        "tms pulse interval in the train 40 ms < site minimum 50 ms (min_pulse_interval)",
        "tms pulses per train 160 > site limit 40 (pulses_per_train_max)",
        "tms train duration 6.4 s > site limit 2 s (train_duration_max)",
        "tms train at 25 Hz and 180 % MT is beyond the train table (rows up to 20 Hz, columns up to 120 % MT): "
        "no train is allowed there (train_table)",
        "tms pulses this session 0 + 160 = 160 > site limit 100 (pulses_per_session_max)",
        "tms pulses today 0 + 160 = 160 > site limit 150 (pulses_per_day_max)",
    ]
    assert check_request(site, "tms", {"intensity_pct": 50, "frequency_hz": 20, "n_pulses": 20}, motor_threshold_pct=50) == []
    assert [v.limit for v in check_request(site, "tms", {})] == ["intensity_max"]
    assert [v.limit for v in check_request(site, "stim", {"current_a": 2e-3})] == ["fixed_settings"]
    assert check_request(site, "stim", {}) == []
    start = check_request(site, "tacs", {"current_a": 2e-3, "frequency_hz": 10, "duration_s": 60, "ramp_s": 20}, kind="start")
    assert start == []
    assert [v.limit for v in check_request(site, "tacs", {"current_a": 2e-3, "frequency_hz": 10, "duration_s": 60},
                                           kind="start")] == ["ramp_rate_max"]
    assert check_request(site, "nope", {})[0].limit == "device"


# ----------------------------------------------------------------------------- two clocks, failing closed


def test_a_fast_lsl_clock_cannot_shorten_an_interval(gov, clock) -> None:
    _prep_tms(gov, clock, frequency_hz=10, n_pulses=10)
    assert gov.request(req(clock, "tms", "fire"))  # a 1 s train
    clock.step(5.5)  # 4.5 s after the train, by both clocks ...
    clock.lsl_only(0.6)  # ... but the LSL clock claims 5.1 s (0.6 s fast: too little to call it a fault)
    v = refused(gov.request(req(clock, "tms", "fire")), "min_inter_train")
    assert v.value == pytest.approx(4.5, abs=2e-6)  # the wall clock's step, known to 1 us
    assert "clock" not in gov.inhibitions
    clock.step(0.5)
    assert gov.request(req(clock, "tms", "fire"))


def test_clocks_that_disagree_raise_the_clock_interlock(gov, clock) -> None:
    _prep_tms(gov, clock)
    assert gov.request(req(clock, "tms", "fire"))
    clock.step(10)
    clock.lsl_only(-1.5)  # e.g. the wall clock was stepped, or the host was suspended
    v = gov.request(req(clock, "tms", "fire"))
    assert v.limit == "clock" and "(clock mismatch)" in str(v)
    assert "clock" in gov.inhibitions and gov.request(req(clock, "tms", "stop"))
    gov.clear("clock")
    assert gov.request(req(clock, "tms", "fire"))


def test_a_slow_lsl_clock_cannot_inflate_a_refund(gov, clock) -> None:
    armed(gov, "tacs")
    assert gov.request(req(clock, "tacs", "set", current_a=1e-3, frequency_hz=10))
    clock.step(1)
    assert gov.request(req(clock, "tacs", "start", duration_s=60, ramp_s=10))
    clock.step(20)
    clock.lsl_only(-0.9)  # the LSL clock says 19.1 s, the wall clock 20 s
    assert gov.request(req(clock, "tacs", "stop"))
    refund = gov.confirm_stopped("tacs", clock.t)
    # delivered by the wall clock: 20 s + 5 ms -> 201 cycles; 600 - 201 = 399 refunded (not 408)
    assert refund.pulses == 399


def test_no_refund_across_a_clock_fault(gov, clock) -> None:
    armed(gov, "tacs")
    assert gov.request(req(clock, "tacs", "set", current_a=1e-3, frequency_hz=10))
    clock.step(1)
    assert gov.request(req(clock, "tacs", "start", duration_s=60, ramp_s=10))
    clock.step(20)
    clock.step(-30)
    assert gov.request(req(clock, "tacs", "stop"))
    assert gov.confirm_stopped("tacs", clock.t) is None
    assert gov.totals("tacs")["session"].charge_c == pytest.approx(60e-3)


def test_a_train_needs_a_positive_frequency(gov, clock) -> None:
    armed(gov, "pulsed")
    v = gov.request(req(clock, "pulsed", "set", current_a=1e-3, pulse_width_s=100e-6, n_pulses=2, frequency_hz=0))
    assert not v and v.limit == "parameter" and "needs frequency_hz > 0" in str(v)


def test_the_governor_fails_closed(gov, clock, monkeypatch) -> None:
    armed(gov, "stim")
    monkeypatch.setattr(gov, "_eval_stimulate", lambda *a: 1 / 0)
    v = gov.request(req(clock, "stim", "fire"))
    assert not v and v.limit == "internal" and "ZeroDivisionError" in str(v)
    assert "governor" in gov.inhibitions
    monkeypatch.setattr(gov, "_plan_stop", lambda *a: 1 / 0)
    assert gov.request(req(clock, "stim", "disarm")) and not gov.armed("stim")


def test_concurrent_requests_never_exceed_a_cap(site, tmp_path) -> None:
    import threading

    site = loads_site(SITE.replace("max_loop_latency: 5 ms", "max_loop_latency: 1 h"), "s.yaml")
    now = [1000.0]
    lock = threading.Lock()
    wall0 = datetime(2024, 3, 5, 10, 0, tzinfo=BERLIN)

    def reading() -> float:  # every look at the clock is 40 ms later (the stim device's fastest rate)
        with lock:
            now[0] += 0.04
            return now[0]

    gov = Governor(site, DoseLedger(tmp_path / "l.jsonl", tz=site.tzinfo), "s1", clock=reading,
                   wall=lambda: wall0 + timedelta(seconds=now[0] - 1000.0))
    assert gov.arm("stim", "operator A")
    allowed = []

    def worker() -> None:
        for _ in range(150):
            v = gov.request(StimRequest("stim", "fire", now[0]))
            if v:
                allowed.append(v)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 40 uC per session at 0.2 uC per pulse: at most 200 pulses, whatever the interleaving
    assert len(allowed) == 200
    assert gov.totals("stim")["session"].charge_c <= 40e-6 * (1 + 1e-9)
    assert len((tmp_path / "l.jsonl").read_text().splitlines()) == len(allowed)
    gov.ledger.close()


def test_example_site_allows_standard_protocols_and_refuses_beyond(tmp_path) -> None:
    from config import CONFIG_DIR
    from controller.safety import load_site

    site = load_site(CONFIG_DIR / "site.yaml")
    # rTMS for depression: 10 Hz, 4 s trains (40 pulses) at 120 % MT (MT 50 % -> 60 % output): 4.2 s allowed
    assert check_request(site, "tms", {"intensity_pct": 60, "frequency_hz": 10, "n_pulses": 40}, motor_threshold_pct=50) == []
    # 20 Hz for 2 s at 110 % MT: the table allows 1.6 s
    v = check_request(site, "tms", {"intensity_pct": 55, "frequency_hz": 20, "n_pulses": 40}, motor_threshold_pct=50)
    assert [x.limit for x in v] == ["train_table"] and "> site limit 1.6 s (train_table row 20 Hz, column 110 % MT)" in str(v[0])
    # 30 min of 2 mA tACS with a 20 s ramp: exactly the session's charge (3.6 C)
    assert check_request(site, "tacs", {"current_a": 2e-3, "frequency_hz": 10, "duration_s": 1800, "ramp_s": 20},
                         kind="start") == []
    assert check_request(site, "tavns", {}) == [] and check_request(site, "dbs", {}) == []
    assert [x.limit for x in check_request(site, "tavns", {"n_pulses": 2, "frequency_hz": 30})] == ["frequency_max"]


def test_the_ledger_must_count_days_in_the_site_time_zone(site, tmp_path) -> None:
    with DoseLedger(tmp_path / "l.jsonl", tz=ZoneInfo("UTC")) as ledger:
        with pytest.raises(ValueError, match="open it with DoseLedger"):
            Governor(site, ledger, "s1")


def test_ledger_entries_are_validated(tmp_path) -> None:
    path = tmp_path / "l.jsonl"
    good = ('{"v":1,"device":"stim","session":"s","kind":"fire","t":1.0,"wall":"2024-03-05T10:00:00+00:00",'
            '"pulses":1,"charge_c":2e-7,"end_s":0.0,"last_pulse_s":0.0,"train":false}')
    for bad, why in ((good.replace('"pulses":1', '"pulses":"1"'), "pulses must be a finite number"),
                     (good.replace('"kind":"fire"', '"kind":"zap"'), "unknown entry kind 'zap'"),
                     (good.replace("+00:00", ""), "wall must be an ISO time with a UTC offset"),
                     (good.replace('"v":1', '"v":3'), "unknown ledger version 3 (this controller reads 1, 2)"),
                     (good.replace('"kind":"fire"', '"kind":"delivered"'), "unknown entry kind 'delivered'"),  # not in v1
                     (good[:-1] + ',"settings":{"current_a":"x"}}', "settings must map names to finite numbers")):
        path.write_text(good + "\n" + bad + "\n")
        with pytest.raises(LedgerError) as info:
            DoseLedger(path)
        assert f"{path}:2: unreadable dose entry ({why}" in str(info.value)
    path.write_text(good + "\n")
    with DoseLedger(path) as ledger:
        assert ledger.session_totals("stim", "s").pulses == 1
