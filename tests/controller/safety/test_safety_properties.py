"""Property-based tests of the safety governor (hypothesis, stateful).

Random sequences of commands on four devices (TMS with a train table, a trigger box with
fixed charge, a pulsed current stimulator with charge-density limits, tACS with ramps),
random parameters around every limit, random time steps (tiny, exact limit values, hours,
days), a clock that jumps back, stale decisions, interlocks, arming, early stops with and
without the driver's confirmation, drivers reporting that a train delivered fewer pulses than
planned (skipped slots, cut short), and restarts that reload the dose ledger from disk,
sometimes in a new session.

An independent oracle, written here from the site's limits and the history of what the
governor allowed (never from the governor's own state), checks after every step that:

* every committed stimulation was armed, uninhibited (the oracle models interlocks,
  including the clock and latency ones the governor raises itself), within every limit
  on its settings, train table, charge per phase, charge density and Shannon k, ramp rate
  and blanking;
* intervals between pulses and trains hold in TRUE time (the clock's readings may jump
  back; true time never does);
* the PHYSICALLY delivered pulses and charge per session and per calendar day (site time
  zone) never exceed a cap, and the ledger on disk (parsed here, line by line) never
  counts less than was delivered, for every session and every day;
* every refusal is explained: a known limit name, value and limit value on the right side
  of each other, and for dose caps, the value equals the ledger file's total plus the
  request's dose as the oracle computes it.
"""

from __future__ import annotations

import collections
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from controller.safety import DoseLedger, Governor, StimRequest, loads_site
from controller.safety import limits as L
from drivers.delivery import TrainReport

SITE = """
site: property-site
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
      pulses_per_train_max: 20
      train_duration_max: 1.5 s
      min_inter_train: 2 s
      min_pulse_interval: 50 ms
      pulses_per_session_max: 120
      pulses_per_day_max: 200
      blanking: 100 ms
      motor_threshold_min: 40 %
      train_table:
        source: property test table (deliberately non-monotonic cells)
        relative_to: motor_threshold
        intensities: [100 %, 110 %, 120 %]
        rows:
          5 Hz: [1.5 s, 1 s, 1.2 s]
          10 Hz: [1.2 s, 0.8 s, 0.6 s]
          20 Hz: [0.5 s, 0.6 s, 0.3 s]
  stim:
    driver: triggerbox
    port: loop://stim
    fixed_settings: {current: 1 mA, pulse_width: 100 us, phases: 2}
    limits:
      frequency_max: 25 Hz
      electrode_area: 0.01 cm2
      shannon_k_max: 1.0
      pulses_per_session_max: 400
      charge_per_session_max: 60 uC
      charge_per_day_max: 100 uC
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
      min_inter_train: 1 s
      pulses_per_train_max: 10
      train_duration_max: 20 s
      pulses_per_session_max: 3000
      pulses_per_day_max: 5000
      charge_per_session_max: 600 uC
  tacs:
    driver: starstim
    port: 127.0.0.1:1235
    limits:
      current_max: 2 mA
      frequency_max: 150 Hz
      ramp_rate_max: 0.1 mA/s
      train_duration_max: 60 s
      min_inter_train: 5 s
      blanking: 1 s
      charge_per_session_max: 200 mC
      charge_per_day_max: 300 mC
"""

TZ = ZoneInfo("Europe/Berlin")
DEVICES = ("tms", "stim", "pulsed", "tacs")
SITE_OBJ = loads_site(SITE, "property-site.yaml")
LIM = {name: dev.limits for name, dev in SITE_OBJ.devices.items()}
FIXED = {name: dict(dev.fixed) for name, dev in SITE_OBJ.devices.items()}
BUDGET = SITE_OBJ.max_loop_latency_s
TOL = 1e-9
SHM = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
STATS: collections.Counter = collections.Counter()

VALUES = {
    "intensity_pct": st.sampled_from([30.0, 40.0, 44.0, 48.0, 50.0, 55.0, 60.0, 79.9, 80.0, 80.1, 95.0]),
    "current_a": st.one_of(st.sampled_from([0.0, 0.1e-3, 0.5e-3, 1e-3, 1.5e-3, 2e-3, 2.001e-3]),
                           st.floats(0.0, 2.2e-3, allow_nan=False)),
    "frequency_hz": st.sampled_from([0.0, 1.0, 5.0, 9.0, 10.0, 19.9, 20.0, 20.1, 25.0, 40.0, 100.0, 150.0, 151.0]),
    "pulse_width_s": st.sampled_from([50e-6, 100e-6, 150e-6, 200e-6, 500e-6, 501e-6]),
    "n_pulses": st.sampled_from([1.0, 2.0, 5.0, 10.0, 11.0, 15.0, 20.0, 21.0, 40.0]),
    "phases": st.sampled_from([1.0, 2.0]),
}
PARAMS = st.lists(st.sampled_from(sorted(VALUES)), unique=True, max_size=3).flatmap(
    lambda keys: st.fixed_dictionaries({k: VALUES[k] for k in keys}))
LATENCY = st.sampled_from([0.0] * 12 + [0.001, 0.005, 0.0051, 0.02])
JUMP = st.one_of(st.sampled_from([0.001, 0.01, 0.3, 0.5, 0.99, 1.5, 30.0]), st.floats(0.001, 200.0, allow_nan=False))
DURATION = st.sampled_from([0.5, 0.75, 1.0, 1.3, 5.0, 19.0, 20.0, 30.0, 60.0, 61.0])
RAMP = st.sampled_from([0.0, 5.0, 10.0, 19.9, 20.0, 30.0])
GAP = st.one_of(st.sampled_from([0.0, 0.039, 0.04, 0.049, 0.05, 0.099, 0.1, 0.3, 0.5, 0.999, 1.0, 1.2, 1.999, 2.0,
                                  2.5, 3.0, 4.999, 5.0, 6.0, 10.0]), st.floats(0.0, 8.0, allow_nan=False))
GOOD = {
    "tms": st.fixed_dictionaries({
        "intensity_pct": st.sampled_from([40.0, 44.0, 48.0, 50.0, 55.0, 60.0, 80.5]),
        "frequency_hz": st.sampled_from([5.0, 10.0, 20.0]),
        "n_pulses": st.sampled_from([1.0, 1.0, 2.0, 5.0, 6.0, 10.0, 12.0, 15.0, 20.0])}),
    "stim": st.sampled_from([{}, {"n_pulses": 1.0}, {"n_pulses": 5.0, "frequency_hz": 25.0}]),
    "pulsed": st.fixed_dictionaries({
        "current_a": st.sampled_from([0.5e-3, 1e-3, 1.5e-3]),
        "pulse_width_s": st.sampled_from([100e-6, 150e-6, 200e-6]),
        "frequency_hz": st.sampled_from([1.0, 3.0, 10.0, 50.0, 100.0]),
        "n_pulses": st.sampled_from([1.0, 5.0, 10.0])}),
    "tacs": st.fixed_dictionaries({
        "current_a": st.sampled_from([0.0, 0.5e-3, 0.5e-3, 1e-3, 2e-3]),
        "frequency_hz": st.sampled_from([0.0, 5.0, 10.0, 40.0, 150.0])}),
}
STEP = st.one_of(
    st.floats(0.0, 0.12, allow_nan=False),
    st.sampled_from([0.04, 0.05, 0.1, 1.0, 2.0, 5.0]),
    st.floats(0.0, 15.0, allow_nan=False),
    st.floats(3600.0, 30 * 3600.0, allow_nan=False),
)


# ----------------------------------------------------------------------------- the oracle's physics


def table_limit(freq: float, level: float) -> float | None:
    """Brute force: the cells at or below the next tabulated frequency/intensity >= request."""
    table = LIM["tms"].train_table
    rows = [f for f in table.frequencies if f >= freq - TOL]
    cols = [i for i in table.intensities if i >= level - TOL]
    if not rows or not cols:
        return None
    f_star, i_star = min(rows), min(cols)
    return min(table.durations[r][c] for r, f in enumerate(table.frequencies) for c, i in enumerate(table.intensities)
               if f <= f_star and i <= i_star)


def local_day(moment: datetime):
    return moment.astimezone(TZ).date()


@dataclass
class Segment:
    t0: float  # true time
    settings: dict


@dataclass
class Delivery:
    device: str
    session: str
    kind: str  # fire | start
    t0: float  # true time of the first pulse
    wall0: datetime
    settings: dict
    planned_end: float  # true time
    ramp_s: float = 0.0
    end: float | None = None  # physical end (stop), None = planned
    segments: list[Segment] = field(default_factory=list)  # runs: settings changes
    reading0: float = math.nan  # the governor's clock reading at the commit
    instance: int = 0  # which governor (process) committed it: only that one hears its report
    reported: float | None = None  # pulses the device reported delivering in total: the physics from then on
    heard: bool = False  # its driver reported (a count, or that it cannot count): reported once only

    @property
    def stop_time(self) -> float:
        return self.planned_end if self.end is None else min(self.end, self.planned_end)

    def train(self) -> bool:
        return self.kind == "start" or self.settings.get("n_pulses", 1) > 1

    def last_pulse(self) -> float:
        if self.kind == "fire":
            n = self.settings.get("n_pulses", 1)
            return self.t0 if n == 1 else self.t0 + (n - 1) / self.settings["frequency_hz"]
        return self.stop_time

    def dose_pieces(self) -> list[tuple[float, float, float, float]]:
        """(from, to, pulses, charge) physically delivered, piece by piece: after a report, the first
        ``reported`` pulses only (a piece without pulses, direct current, is kept whole)."""
        pieces = self.planned_pieces()
        if self.reported is None:
            return pieces
        out, left = [], self.reported
        for t_from, t_to, n, q in pieces:
            if n <= 0:
                out.append((t_from, t_to, n, q))
                continue
            take = min(n, left)
            left -= take
            out.append((t_from, t_to, take, q * take / n))
        return out

    def planned_pieces(self) -> list[tuple[float, float, float, float]]:
        s = self.settings
        if self.kind == "fire":
            n = s.get("n_pulses", 1)
            q = s.get("current_a", 0) * s.get("pulse_width_s", 0) * s.get("phases", 2) * n
            return [(self.t0, self.t0 if n == 1 else self.t0 + n / s["frequency_hz"], n, q)]
        pieces = []
        stops = [seg.t0 for seg in self.segments[1:]] + [self.stop_time]
        for seg, until in zip(self.segments, stops):
            d = max(0.0, until - seg.t0)
            f, i = seg.settings.get("frequency_hz", 0.0), seg.settings.get("current_a", 0.0)
            if f > 0 and seg.settings.get("pulse_width_s") is not None:
                n = math.ceil(round(f * d, 9))
                q = n * seg.settings.get("phases", 2) * i * seg.settings["pulse_width_s"]
            else:
                n, q = (f * d, i * d)
            pieces.append((seg.t0, until, n, q))
        return pieces


class Oracle:
    """What was physically delivered, and the checks that it was allowed to be."""

    def __init__(self, wall_of) -> None:
        self.wall_of = wall_of  # true time -> aware wall time
        self.deliveries: list[Delivery] = []
        self.armed: set[str] = set()
        self.inhibited: set[str] = set()
        self.last_look: tuple[float, float] | None = None  # (clock reading, true time) at the last look
        self.settings = {d: dict(FIXED[d]) for d in DEVICES}
        self.mt: dict[str, float] = {}
        self.last_set: dict[str, float] = {}  # true time of the last allowed set
        self.current_change: dict[str, float] = {}  # tACS/pulsed: true time of the last output change
        self.running: dict[str, Delivery] = {}

    # -- interlock model ----------------------------------------------------------
    def observe(self, reading: float, T: float) -> None:
        """The governor looked at its clocks: a step back, or the LSL clock and the (true)
        wall clock disagreeing by more than 1 s + 0.1 %, is a clock fault."""
        if self.last_look is not None:
            d_lsl, d_wall = reading - self.last_look[0], T - self.last_look[1]
            if d_lsl < -TOL or abs(d_lsl - d_wall) > 1.0 + 1e-3 * abs(d_wall):
                self.inhibited.add("clock")
        self.last_look = (reading, T)

    def restart(self) -> None:
        self.armed.clear()
        self.inhibited.clear()
        self.last_look = None
        self.settings = {d: dict(FIXED[d]) for d in DEVICES}
        self.mt.clear()

    # -- checks on one committed stimulation ---------------------------------------
    def check_commit(self, device: str, kind: str, T: float, params: dict) -> None:
        lim, s = LIM[device], self.settings[device]
        assert device in self.armed, f"{device} {kind} committed while disarmed"
        assert not self.inhibited, f"{device} {kind} committed while inhibited by {self.inhibited}"
        assert device not in self.running or self.running[device].stop_time <= T + TOL
        n = s.get("n_pulses", 1)
        train = kind == "start" or n > 1
        for cap, key in (("intensity_max", "intensity_pct"), ("current_max", "current_a"),
                         ("frequency_max", "frequency_hz")):
            if getattr(lim, cap) is None:
                continue
            if key == "frequency_hz" and not train:
                continue  # a single pulse has no frequency; its rate is checked as an interval below
            assert key in s and s[key] <= getattr(lim, cap) * (1 + TOL), (device, cap, s)
        if lim.pulse_width_max is not None and "pulse_width_s" in s:
            assert s["pulse_width_s"] <= lim.pulse_width_max * (1 + TOL)
        if kind == "fire":
            if lim.pulses_per_train_max is not None:
                assert n <= lim.pulses_per_train_max
            duration = 0.0 if n == 1 else n / s["frequency_hz"]
            if n > 1 and lim.min_pulse_interval is not None:
                assert 1 / s["frequency_hz"] >= lim.min_pulse_interval - TOL
        else:
            duration = params["duration_s"]
        if (n > 1 or kind == "start") and lim.train_duration_max is not None:
            assert duration <= lim.train_duration_max * (1 + TOL)
        if (n > 1 or kind == "start") and lim.train_table is not None:
            mt = self.mt.get(device, lim.motor_threshold_min)
            allowed = table_limit(s["frequency_hz"], s["intensity_pct"] / mt * 100)
            assert allowed is not None and duration <= allowed * (1 + TOL), (s, mt, duration, allowed)
        if lim.electrode_area is not None or lim.charge_per_phase_max is not None:
            if kind == "fire" or "pulse_width_s" in s:
                qp = s["current_a"] * s["pulse_width_s"]
            else:
                qp = s["current_a"] / (2 * s["frequency_hz"]) if s["frequency_hz"] > 0 else s["current_a"] * duration
            if lim.charge_per_phase_max is not None:
                assert qp <= lim.charge_per_phase_max * (1 + TOL)
            if lim.charge_density_max is not None:
                assert qp / lim.electrode_area <= lim.charge_density_max * (1 + TOL)
            if lim.shannon_k_max is not None and qp > 0:
                k = math.log10(qp * 1e6 / (lim.electrode_area * 1e4)) + math.log10(qp * 1e6)
                assert k <= lim.shannon_k_max + TOL * abs(lim.shannon_k_max)
        if kind == "start" and lim.ramp_rate_max is not None and s.get("current_a", 0) > 0:
            ramp = params.get("ramp_s", 0)
            assert ramp > 0 and s["current_a"] / ramp <= lim.ramp_rate_max * (1 + TOL)
        if lim.blanking is not None and device in self.last_set:
            assert T - self.last_set[device] >= lim.blanking - TOL, (T, self.last_set[device])
        # intervals in true time, against everything delivered before
        previous = [d for d in self.deliveries if d.device == device]
        if previous:
            last_pulse = max(d.last_pulse() for d in previous)
            gap = T - last_pulse
            if lim.min_pulse_interval is not None:
                assert gap >= lim.min_pulse_interval - TOL, (device, gap)
            if lim.frequency_max is not None:
                assert gap >= 1 / lim.frequency_max - TOL, (device, gap)
            trains = [d for d in previous if d.train()]
            new_is_train = kind == "start" or n > 1
            if lim.min_inter_train is not None:
                before = previous if new_is_train else trains
                if before:
                    assert T - max(d.last_pulse() for d in before) >= lim.min_inter_train - TOL

    def check_set_during_run(self, device: str, T: float, old: dict, new: dict) -> None:
        lim = LIM[device]
        if any(new.get(k, 0) > old.get(k, 0) for k in new):
            assert device in self.armed and not self.inhibited, f"{device} increased while {self.inhibited}"
        if lim.ramp_rate_max is not None and new.get("current_a") != old.get("current_a"):
            since = self.current_change[device]
            assert T > since and abs(new["current_a"] - old.get("current_a", 0)) / (T - since) <= lim.ramp_rate_max * (1 + TOL)

    # -- totals ------------------------------------------------------------------
    def physical_totals(self):
        session, day = collections.Counter(), collections.Counter()
        for d in self.deliveries:
            for t_from, t_to, n, q in d.dose_pieces():
                session[(d.device, d.session, "pulses")] += n
                session[(d.device, d.session, "charge")] += q
                first, last = local_day(self.wall_of(t_from)), local_day(self.wall_of(t_to))
                day_ = first
                while day_ <= last:
                    day[(d.device, day_, "pulses")] += n
                    day[(d.device, day_, "charge")] += q
                    day_ += timedelta(days=1)
        return session, day


class LedgerFile:
    """The ledger file, parsed here line by line (independently of DoseLedger), incrementally:
    per (device, session) and per (device, day touched) totals, and (device, end day, pulses,
    charge) per entry for the governor's 'today' rule."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0
        self.session: collections.Counter = collections.Counter()
        self.day: collections.Counter = collections.Counter()
        self.by_end: list[tuple[str, object, float, float]] = []

    def read(self) -> LedgerFile:
        if not os.path.exists(self.path):
            return self
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode("utf-8").splitlines():
            e = json.loads(line)
            if e["kind"] == "stop":
                continue
            wall = datetime.fromisoformat(e["wall"])
            start, end = local_day(wall), local_day(wall + timedelta(seconds=e["end_s"]))
            self.session[(e["device"], e["session"], "pulses")] += e["pulses"]
            self.session[(e["device"], e["session"], "charge")] += e["charge_c"]
            day_ = start
            while day_ <= end:
                self.day[(e["device"], day_, "pulses")] += e["pulses"]
                self.day[(e["device"], day_, "charge")] += e["charge_c"]
                day_ += timedelta(days=1)
            self.by_end.append((e["device"], end, e["pulses"], e["charge_c"]))
        return self


# ----------------------------------------------------------------------------- the machine


class GovernorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="governor-prop-", dir=SHM)
        self.path = os.path.join(self.dir, "ledger.jsonl")
        self.T = 5000.0  # true time; the clock reads T + offset
        self.offset = 0.0
        self.wall0 = datetime(2024, 3, 30, 22, 50, tzinfo=UTC)  # 23:50 in Berlin, before a DST change
        self.session = "s0"
        self.sessions = 0
        self.oracle = Oracle(self.wall_at)
        self.ledger_file = LedgerFile(self.path)
        self.instance = 0
        self.gov = self._open()

    def wall_at(self, T: float) -> datetime:
        return self.wall0 + timedelta(seconds=T - 5000.0)

    def reading(self) -> float:
        return self.T + self.offset

    def _open(self) -> Governor:
        self.instance += 1
        ledger = DoseLedger(self.path, tz=SITE_OBJ.tzinfo, fsync=True)
        gov = Governor(SITE_OBJ, ledger, self.session, clock=self.reading, wall=lambda: self.wall_at(self.T))
        self.oracle.observe(self.reading(), self.T)  # a new governor looks at its clocks
        return gov

    def teardown(self) -> None:
        self.gov.ledger.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- submitting a request and judging the verdict ------------------------------
    def submit(self, device: str, kind: str, params: dict, latency: float = 0.0):
        o, T, R = self.oracle, self.T, self.reading()
        before_settings = dict(o.settings[device])
        ledger = self.ledger_file.read()
        ledger_session, ledger_by_end = collections.Counter(ledger.session), list(ledger.by_end)
        verdict = self.gov.request(StimRequest(device, kind, R - latency, params, "rule 1 'x > y'"))
        o.observe(R, T)
        if kind in ("set", "fire", "start") and L.exceeds(latency, BUDGET):
            o.inhibited.add("latency")
        if verdict:
            STATS[(kind, "allowed")] += 1
        for v in verdict.violations:
            STATS[(kind, v.limit)] += 1
            if v.relation:
                STATS[("numeric", v.limit)] += 1
        if not verdict:
            self.explain(verdict, device, kind, params, before_settings, ledger_session, ledger_by_end)
            return verdict
        if kind == "set":
            for key, value in params.items():  # what the front panel fixes cannot be changed by a command
                assert key not in FIXED[device] or math.isclose(value, FIXED[device][key], rel_tol=1e-9), (device, key)
            new = {**before_settings, **params}
            run = o.running.get(device)
            if run is not None and run.stop_time > T:
                o.check_set_during_run(device, T, before_settings, new)
                run.segments.append(Segment(T, dict(new)))
                if new.get("current_a") != before_settings.get("current_a"):
                    o.current_change[device] = T
            o.settings[device] = new
            o.last_set[device] = T
        elif kind in ("fire", "start"):
            o.check_commit(device, kind, T, params)
            s = dict(o.settings[device])
            if kind == "fire":
                n = s.get("n_pulses", 1)
                end = T if n == 1 else T + n / s["frequency_hz"]
                o.deliveries.append(Delivery(device, self.session, kind, T, self.wall_at(T), s, end,
                                             reading0=R, instance=self.instance))
            else:
                d = Delivery(device, self.session, kind, T, self.wall_at(T), s, T + params["duration_s"],
                             params.get("ramp_s", 0.0), segments=[Segment(T, s)], reading0=R, instance=self.instance)
                o.deliveries.append(d)
                o.running[device] = d
                o.current_change[device] = T + params.get("ramp_s", 0.0)
        elif kind in ("stop", "disarm"):
            run = o.running.pop(device, None)
            if run is not None and run.end is None:
                run.end = T
            if kind == "disarm":
                o.armed.discard(device)
        return verdict

    def explain(self, verdict, device, kind, params, settings_before, ledger_session, ledger_by_end) -> None:
        """Every refusal names a known limit, with numbers that really break it."""
        assert kind not in ("stop", "disarm"), f"{kind} must always be allowed: {verdict}"
        assert verdict.violations and str(verdict).startswith("refused: rule 1 'x > y' asks ")
        o = self.oracle
        for v in verdict.violations:
            assert v.limit in L.ALL_REASONS and v.limit != L.INTERNAL, v
            assert v.text and (v.device == device), v
            if v.relation == L.ABOVE and v.limit != "train_table":
                assert L.exceeds(v.value, v.limit_value), v
            elif v.relation == L.ABOVE:
                assert v.limit_value == 0.0 or L.exceeds(v.value, v.limit_value), v
            elif v.relation == L.BELOW:
                assert L.short_of(v.value, v.limit_value), v
            if v.limit == L.ARMED:
                assert device not in o.armed, v
            if v.limit == L.INHIBITED:
                assert o.inhibited or "input_stall" in v.text, (v, o.inhibited)
            if v.limit in ("pulses_per_session_max", "charge_per_session_max", "pulses_per_day_max",
                           "charge_per_day_max") and kind in ("fire", "start") and v.value is not None:
                self.check_dose_value(v, device, kind, params, settings_before, ledger_session, ledger_by_end)

    def check_dose_value(self, v, device, kind, params, s, ledger_session, ledger_by_end) -> None:
        if kind == "fire":
            n = s.get("n_pulses", 1)
            q = n * s.get("phases", 2) * s.get("current_a", math.nan) * s.get("pulse_width_s", math.nan)
        else:
            d, f, i = params["duration_s"], s.get("frequency_hz"), s.get("current_a", math.nan)
            if f is None:
                return
            if f > 0 and "pulse_width_s" in s:
                n = math.ceil(round(f * d, 9))
                q = n * s.get("phases", 2) * i * s["pulse_width_s"]
            elif f > 0:
                n = math.ceil(round(f * d, 9))
                q = n * i / f
            else:
                n, q = 0, i * d
        what = "pulses" if v.limit.startswith("pulses") else "charge"
        add = n if what == "pulses" else q
        if "session" in v.limit:
            prior = ledger_session[(device, self.session, what)]
        else:
            today = local_day(self.wall_at(self.T))
            prior = sum(p if what == "pulses" else c for dev, end, p, c in ledger_by_end if dev == device and end >= today)
        assert math.isclose(v.value, prior + add, rel_tol=1e-9, abs_tol=1e-15), (v, prior, add)

    # -- rules: the operator and the protocol --------------------------------------
    @rule(device=st.sampled_from(DEVICES), params=st.data())
    def prepare(self, device: str, params) -> None:
        self.operator_prepares(device, params)

    def operator_prepares(self, device: str, params) -> None:
        """Clear every interlock, arm, and set parameters that are usually within limits."""
        for source in sorted(self.oracle.inhibited | {"clock", "latency"}):
            self.clear(source)
        self.arm(device)
        if device == "tms" and params.draw(st.booleans()):
            self.set_motor_threshold(params.draw(st.sampled_from([40.0, 50.0, 60.0])))
        good = params.draw(GOOD[device])
        if good:
            self.submit(device, "set", good)

    @rule(device=st.sampled_from(DEVICES))
    def arm(self, device: str) -> None:
        self.oracle.observe(self.reading(), self.T)
        inhibited = bool(self.oracle.inhibited)
        v = self.gov.arm(device, "operator")
        STATS[("arm", "allowed" if v else v.limit)] += 1
        assert bool(v) == (not inhibited), (str(v), self.oracle.inhibited)
        if v:
            self.oracle.armed.add(device)

    @rule(device=st.sampled_from(DEVICES), params=PARAMS, latency=LATENCY)
    def set_(self, device: str, params: dict, latency: float) -> None:
        if params:
            self.submit(device, "set", params, latency)

    @rule(device=st.sampled_from(DEVICES), count=st.integers(1, 30), gap=GAP, latency=LATENCY,
          prepare=st.one_of(st.none(), st.data()))
    def fire(self, device: str, count: int, gap: float, latency: float, prepare) -> None:
        if prepare is not None:
            self.operator_prepares(device, prepare)
            self.T += prepare.draw(st.sampled_from([0.0, 0.1, 1.0, 2.0, 6.0]))
        for i in range(count):
            if i:
                self.T += gap
            self.submit(device, "fire", {}, latency)

    @rule(device=st.sampled_from(("tacs", "pulsed")),
          duration=DURATION, ramp=RAMP, latency=LATENCY,
          prepare=st.one_of(st.none(), st.data()))
    def start(self, device: str, duration: float, ramp: float, latency: float, prepare) -> None:
        if prepare is not None:
            self.operator_prepares(device, prepare)
            self.T += prepare.draw(st.sampled_from([0.0, 1.0, 5.0, 10.0]))
        params = {"duration_s": duration}
        if ramp:
            params["ramp_s"] = ramp
        self.submit(device, "start", params, latency)

    @rule(device=st.sampled_from(("tacs", "pulsed")), steps=st.integers(1, 10), step=st.sampled_from([0.5, 1.0, 2.0]),
          delta=st.sampled_from([-0.2e-3, -0.1e-3, 0.05e-3, 0.1e-3, 0.2e-3, 0.3e-3]))
    def ramp_current(self, device: str, steps: int, step: float, delta: float) -> None:
        """Change the current in steps while stimulating (at, under or over the ramp rate)."""
        for _ in range(steps):
            self.T += step
            current = self.oracle.settings[device].get("current_a", 0.0)
            self.submit(device, "set", {"current_a": max(0.0, current + delta)})

    @rule(device=st.sampled_from(DEVICES), how=st.sampled_from(["stop", "stop", "disarm"]),
          confirm=st.sampled_from([None, 0.0, 0.001, 0.004]))
    def stop(self, device: str, how: str, confirm: float | None) -> None:
        self.submit(device, how, {})
        if confirm is not None and self.gov.confirm_stopped(device, self.reading() + confirm) is not None:
            STATS[("refund", "given")] += 1

    @rule(device=st.sampled_from(DEVICES), short=st.sampled_from([None, 0, 1, 1, 3, 10**6]),
          ended=st.sampled_from(["completed", "stopped", "disarmed", "fault"]))
    def device_reports(self, device: str, short: int | None, ended: str) -> None:
        """The driver reports what the newest train of ``device`` delivered: ``short`` pulses fewer than
        physically planned (skipped slots, cut short; None: it cannot count). From then on that count is
        the physics; the ledger must still never count less than was delivered, on any day."""
        trains = [d for d in self.oracle.deliveries if d.device == device and d.instance == self.instance
                  and d.train() and not d.heard]
        if not trains:
            return
        d = trains[-1]
        planned = sum(n for _, _, n, _ in d.planned_pieces())
        k = None if short is None else max(0, math.floor(planned + TOL) - short)
        rec = self.gov.record_delivered(device, TrainReport(d.reading0, self.reading(), None, k, ended,
                                                            confirmed=k is not None))
        assert rec is not None, (device, d)  # the newest unreported train of this governor is always found
        d.heard = True
        if k is not None:
            d.reported = k
        if rec.correction.pulses < 0 or rec.correction.charge_c < 0:
            STATS[("delivered", "corrected")] += 1

    @rule(device=st.sampled_from(DEVICES), data=st.data())
    def protocol_session(self, device: str, data) -> None:
        """A protocol stimulating repeatedly, with gaps near the limits, early stops, crashes."""
        self.operator_prepares(device, data)
        for _ in range(data.draw(st.integers(1, 8), label="repeats")):
            self.T += data.draw(GAP, label="gap")
            if data.draw(st.integers(0, 5), label="clock fault between") == 0:
                self.offset += data.draw(st.sampled_from([-1.0, 1.0]), label="direction") * data.draw(JUMP, label="jump")
            if data.draw(st.integers(0, 7), label="crash") == 0:
                self.restart(data.draw(st.booleans(), label="new session"))
                self.operator_prepares(device, data)
                self.T += data.draw(st.sampled_from([0.0, 0.1, 1.0, 1.01]), label="after crash")
            if device in ("tacs", "pulsed") and data.draw(st.booleans(), label="continuous"):
                params = {"duration_s": data.draw(DURATION, label="duration")}
                ramp = data.draw(RAMP, label="ramp")
                if ramp:
                    params["ramp_s"] = ramp
                if self.submit(device, "start", params) and data.draw(st.booleans(), label="stop early"):
                    self.T += data.draw(st.floats(0.0, params["duration_s"], allow_nan=False), label="run for")
                    if data.draw(st.integers(0, 5), label="clock fault while running") == 0:
                        self.offset += data.draw(st.sampled_from([-1.0, 1.0]), label="direction") * data.draw(JUMP, label="jump")
                    self.submit(device, "stop", {})
                    for _ in range(data.draw(st.integers(0, 2), label="confirmations")):
                        if self.gov.confirm_stopped(device, self.reading() + 0.001) is not None:
                            STATS[("refund", "given")] += 1
            else:
                self.submit(device, "fire", {})
            if data.draw(st.integers(0, 2), label="the driver reports") == 0:
                self.device_reports(device, data.draw(st.sampled_from([0, 1, 2, 50]), label="short by"), "completed")

    @rule(data=st.data(), over=st.sampled_from([1.0001, 1.01, 1.5]))
    def just_over_a_setting_limit(self, data, over: float) -> None:
        """A setting just over one of the site's limits, on a prepared device: each must be refused with
        its value (random settings reach some of these limits only rarely)."""
        device, params = data.draw(st.sampled_from([
            ("tms", {"intensity_pct": LIM["tms"].intensity_max * over}),
            ("tms", {"frequency_hz": LIM["tms"].frequency_max * over}),
            ("pulsed", {"current_a": LIM["pulsed"].current_max * over}),
            ("tacs", {"current_a": LIM["tacs"].current_max * over}),
            ("pulsed", {"pulse_width_s": LIM["pulsed"].pulse_width_max * over}),
            ("pulsed", {"frequency_hz": LIM["pulsed"].frequency_max * over}),
            ("stim", {"frequency_hz": LIM["stim"].frequency_max * over}),
            # charge per phase = current x pulse width, each within its own limit
            ("pulsed", {"current_a": 1.5e-3, "pulse_width_s": LIM["pulsed"].charge_per_phase_max / 1.5e-3 * over}),
        ]), label="limit")
        self.operator_prepares(device, data)
        self.T += data.draw(st.sampled_from([0.0, 1.0, 2.0]), label="wait")
        self.submit(device, "set", params)

    @rule(data=st.data())
    def exhaust_the_day(self, data) -> None:
        """Trains on the charge-capped trigger box, session after session, until the daily charge cap
        refuses: random sequences reach that cap only rarely (it takes several sessions in one day)."""
        self.operator_prepares("stim", data)
        self.submit("stim", "set", {"n_pulses": 40.0, "frequency_hz": 20.0})  # 40 x 0.2 uC per train
        for _ in range(data.draw(st.integers(1, 40), label="trains")):
            self.T += data.draw(st.sampled_from([0.1, 2.0, 2.5]), label="gap")
            verdict = self.submit("stim", "fire", {})
            if verdict and data.draw(st.integers(0, 3), label="a slot skipped") == 0:
                self.device_reports("stim", 1, "completed")  # the day's cap then counts 39 for it, not 40
            if not verdict and verdict.limit == "charge_per_session_max":
                self.restart(new_session=True)
                self.operator_prepares("stim", data)
                self.submit("stim", "set", {"n_pulses": 40.0, "frequency_hz": 20.0})
            elif not verdict and verdict.limit == "charge_per_day_max":
                break

    @rule(before=st.floats(0.0, 90.0, allow_nan=False))
    def to_midnight(self, before: float) -> None:
        """Jump to shortly before the next midnight in the site's time zone."""
        local = self.wall_at(self.T).astimezone(TZ)
        midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=TZ)
        self.T += max(0.0, (midnight - local).total_seconds() - before)

    # -- rules: time and faults ---------------------------------------------------
    @rule(dt=STEP)
    def advance(self, dt: float) -> None:
        self.T += dt

    @rule(fault=st.sampled_from(["clock-back", "clock-forward", "artifact:emg", "device:tms", "watchdog:loop",
                                 "estop", "restart", "restart-new-session", "clear"]),
          jump=JUMP)
    def fault(self, fault: str, jump: float) -> None:
        if fault == "clock-back":
            self.offset -= jump  # the LSL clock's reading goes back (or runs slow); true time does not
        elif fault == "clock-forward":
            self.offset += jump  # the LSL clock runs fast: only the wall clock can tell
        elif fault == "estop":
            self.estop()
        elif fault.startswith("restart"):
            self.restart(fault.endswith("new-session"))
        elif fault == "clear":
            for source in sorted(self.oracle.inhibited):
                self.clear(source)
        else:
            self.gov.inhibit(fault, "test")
            self.oracle.inhibited.add(fault)

    def clear(self, source: str) -> None:
        was = source in self.oracle.inhibited
        assert self.gov.clear(source) == was, (source, self.gov.inhibitions, self.oracle.inhibited)
        self.oracle.inhibited.discard(source)

    def set_motor_threshold(self, pct: float) -> None:
        v = self.gov.set_motor_threshold("tms", pct, "operator")
        assert bool(v) == (pct >= LIM["tms"].motor_threshold_min)
        if v:
            self.oracle.mt["tms"] = pct

    def estop(self) -> None:
        verdicts = self.gov.estop("button")
        assert all(verdicts)
        self.oracle.inhibited.add("estop")
        T = self.T
        for device in DEVICES:
            run = self.oracle.running.pop(device, None)
            if run is not None and run.end is None:
                run.end = T
        self.oracle.armed.clear()
        self.oracle.observe(self.reading(), self.T)
        STATS[("estop", "allowed")] += 1

    def restart(self, new_session: bool) -> None:
        self.gov.ledger.close()
        if new_session:
            self.sessions += 1
            self.session = f"s{self.sessions}"
        self.oracle.restart()
        self.gov = self._open()
        STATS[("restart", "new session" if new_session else "same session")] += 1

    # -- invariants --------------------------------------------------------------
    @invariant()
    def doses_within_caps_and_fully_recorded(self) -> None:
        physical_session, physical_day = self.oracle.physical_totals()
        ledger = self.ledger_file.read()
        ledger_session, ledger_day = ledger.session, ledger.day
        for (device, key, what), amount in list(physical_session.items()) + list(physical_day.items()):
            lim = LIM[device]
            is_session = isinstance(key, str)
            cap = {("pulses", True): lim.pulses_per_session_max, ("pulses", False): lim.pulses_per_day_max,
                   ("charge", True): lim.charge_per_session_max, ("charge", False): lim.charge_per_day_max}[(what, is_session)]
            if cap is not None:
                assert amount <= cap * (1 + TOL) + 1e-15, (device, key, what, amount, cap)
            recorded = (ledger_session if is_session else ledger_day)[(device, key, what)]
            assert recorded >= amount * (1 - TOL) - 1e-15, (device, key, what, recorded, amount)


MUST_REFUSE = {"armed", "inhibited", "clock", "max_loop_latency", "busy", "fixed_settings", "intensity_max", "current_max",
               "frequency_max", "pulse_width_max", "pulses_per_train_max", "train_duration_max", "train_table",
               "min_inter_train", "min_pulse_interval", "blanking", "ramp_rate_max", "charge_per_phase_max",
               "charge_density_max", "shannon_k_max", "pulses_per_session_max", "pulses_per_day_max",
               "charge_per_session_max", "charge_per_day_max"}


def _missing_coverage() -> set[str]:
    refused = {outcome for (kind, outcome), n in STATS.items()
               if outcome not in ("allowed", "given", "new session", "same session", "corrected")}
    numeric = {limit for (kind, limit) in STATS if kind == "numeric"}
    paths = {name for name, seen, least in (("refunds", STATS[("refund", "given")], 5),
                                             ("delivered corrections", STATS[("delivered", "corrected")], 20))
             if seen < least}
    return (MUST_REFUSE - refused) | (MUST_REFUSE - L.STATE_REASONS - numeric) | paths


def test_governor_never_exceeds_a_limit_and_explains_every_refusal() -> None:
    """Fixed seeds (the same sequences every run: 150 per batch, ~15 s each, more batches only
    until every refusal kind was exercised). For a deeper, randomized search set
    SAFETY_PROPERTY_EXAMPLES, e.g. SAFETY_PROPERTY_EXAMPLES=5000."""
    STATS.clear()
    deep = int(os.environ.get("SAFETY_PROPERTY_EXAMPLES", "0"))
    # Fixed seeds, so every run explores the same sequences; batches go on (up to 4) until every
    # kind of refusal below has been seen with its numbers, and refunds and delivered corrections
    # often enough: which seed reaches the rare ones depends on the code under test, so a single
    # fixed seed would make this check brittle.
    for batch in range(1 if deep else 4):
        machine = GovernorMachine if deep else hypothesis_seed(20240330 + batch)(GovernorMachine)
        run_state_machine_as_test(machine, settings=settings(
            max_examples=deep or 150, stateful_step_count=50, deadline=None, derandomize=False, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
        if not _missing_coverage():
            break
    allowed = {kind for (kind, outcome), n in STATS.items() if outcome == "allowed"}
    assert {"set", "fire", "start", "stop", "disarm", "arm"} <= allowed, STATS
    refused = {outcome for (kind, outcome), n in STATS.items()
               if outcome not in ("allowed", "given", "new session", "same session", "corrected")}
    must = {"armed", "inhibited", "clock", "max_loop_latency", "busy", "fixed_settings", "intensity_max", "current_max",
            "frequency_max", "pulse_width_max", "pulses_per_train_max", "train_duration_max", "train_table",
            "min_inter_train", "min_pulse_interval", "blanking", "ramp_rate_max", "charge_per_phase_max",
            "charge_density_max", "shannon_k_max", "pulses_per_session_max", "pulses_per_day_max",
            "charge_per_session_max", "charge_per_day_max"}
    assert must <= refused, sorted(must - refused)
    numeric = {limit for (kind, limit) in STATS if kind == "numeric"}
    assert must - L.STATE_REASONS <= numeric, sorted(must - L.STATE_REASONS - numeric)  # refused with a value
    assert STATS[("fire", "allowed")] >= 200 and STATS[("start", "allowed")] >= 20, STATS
    assert STATS[("refund", "given")] >= 5 and STATS[("restart", "same session")] >= 20, STATS
    assert STATS[("delivered", "corrected")] >= 20, STATS


@pytest.mark.timeout(1200)  # a failure is shrunk to its shortest sequence, which can take minutes
def test_governor_holds_under_a_randomized_search() -> None:
    """Beside the fixed seeds: a fresh random seed on every run (printed, and named in a failure), so
    CI keeps searching new sequences. Reproduce a failure with SAFETY_PROPERTY_SEED=<seed>. A deep
    run: SAFETY_PROPERTY_EXAMPLES=2000 (2000 x 50 = 100,000 steps) with this test or the fixed-seed one."""
    import random

    seed = int(os.environ.get("SAFETY_PROPERTY_SEED") or random.SystemRandom().randrange(2**63))
    examples = int(os.environ.get("SAFETY_PROPERTY_EXAMPLES") or 200)
    print(f"governor randomized search: seed {seed}, {examples} examples x 50 steps")
    try:
        run_state_machine_as_test(hypothesis_seed(seed)(GovernorMachine), settings=settings(
            max_examples=examples, stateful_step_count=50, deadline=None, derandomize=False, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    except BaseException as exc:
        raise AssertionError(f"governor randomized search failed with seed {seed} "
                             f"(reproduce: SAFETY_PROPERTY_SEED={seed} pytest {__file__} -k randomized)") from exc


class _Drawn:
    """Stands in for hypothesis' ``st.data()``: hands out the given values in order."""

    def __init__(self, *values) -> None:
        self.values = list(values)

    def draw(self, strategy, label=None):
        return self.values.pop(0)


def test_a_set_after_the_clock_went_back_counts_the_pulses_the_new_settings_may_add() -> None:
    """Regression (issue 11): found by a randomized search (seed 43966247177637155894420314189535705214).
    A 1 Hz train of 1 s; 62.5 ms later the LSL clock steps back 0.3 s; the operator clears the clock
    interlock and re-sends the same settings while the train runs. The device may restart its pulse
    clock at the change (a pulse at once), so 2 pulses can be delivered; the governor, trusting the
    clock that went back, thought a whole second was left and counted no extra pulse. It now bounds
    the time left by both clocks and counts the larger dose."""
    m = GovernorMachine()
    try:
        good = {"current_a": 1e-3, "pulse_width_s": 100e-6, "frequency_hz": 1.0, "n_pulses": 1.0}
        m.start("pulsed", 1.0, 0.0, 0.0, _Drawn(good, 0.0))
        m.advance(0.0625)
        m.fault("clock-back", 0.3)
        m.start("pulsed", 0.5, 0.0, 0.0, _Drawn(good, 0.0))
        m.doses_within_caps_and_fully_recorded()
        assert m.ledger_file.read().session[("pulsed", "s0", "pulses")] == 2.0
    finally:
        m.teardown()
