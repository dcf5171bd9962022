"""The safety governor: every stimulator command passes here, and is allowed or refused.

The caller asks ``request(StimRequest)`` and sends the command to the driver only if the
verdict allows it. A refusal is never a clipped command: the verdict says which limit,
the value asked for and the limit's value, and it is logged and published. Allowed
doses are written to the dose ledger (fsync'ed) before the verdict returns, so a crash
cannot lose a dose that was sent.

What is enforced (see config/site.yaml for the limits themselves):

* arming is an operator act (:meth:`Governor.arm`); fire/start need an armed device;
* while any interlock is active (:meth:`inhibit`), no fire/start/arm and no increase of a
  running stimulation; stop and disarm are always allowed;
* every site limit on settings and on each delivery (:mod:`controller.safety.limits`);
* intervals on the governor's own clock: between pulses (``min_pulse_interval`` and
  ``1/frequency_max``, also for single pulses fired one by one), from the end of a train
  to the next stimulation (``min_inter_train``), after a 'set' (``blanking``), and the
  current ramp while continuous stimulation runs (``ramp_rate_max``);
* session and daily totals of pulses and charge, across restarts (from the ledger): a train's
  whole planned dose is counted before it starts, and what the driver reports it delivered
  once it has ended (:meth:`Governor.record_delivered`, :mod:`controller.safety.delivered`);
* time: the governor's clock going back, a source time in the future, or a decision older
  than ``max_loop_latency`` refuse the command and raise an interlock; an input that has
  not been seen for ``input_stall`` raises one too.

Time: intervals are measured at the decision (when the command leaves, not at the
source time) on the governor's time line (:mod:`controller.safety.clock_guard`), which only
advances as far as both the LSL and the wall clock agree; a clock fault raises the
'clock' interlock. Refunds of an early stop use the LARGER of the two clocks' elapsed
times, and none is given across a clock fault. After a restart, the times of earlier
doses are placed on the new time line by the ledger's wall and LSL times, taking
whichever says they were more recent.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from controller import event_records as rec
from controller.clock import now as lsl_now
from controller.events import Event
from controller.lang import units
from controller.safety import delivered as accounting
from controller.safety import dose as dosing
from controller.safety import faults
from controller.safety import limits as L
from controller.safety import quantities as q
from controller.safety.clock_guard import Stamp, TimeLine
from controller.safety.commands import ARM, DISARM, FIRE, KINDS, SET, START, STOP, Inhibition, StimRequest, Verdict
from controller.safety.delivered import Accounting, Awaiting, TrainEnd
from controller.safety.dose import Delivery, Totals
from controller.safety.faults import FaultKind
from controller.safety.ledger import Delivered, DoseEntry, DoseLedger, LedgerError
from controller.safety.limits import Violation
from controller.safety.site import DeviceConfig, Site

log = logging.getLogger(__name__)

SAFETY = "safety"  # event kind published for every verdict, arming and interlock change

# Interlock sources raised by the governor itself (the vocabulary: controller/safety/faults.py).
CLOCK_SOURCE = faults.source(FaultKind.CLOCK)
LATENCY_SOURCE = faults.source(FaultKind.LATENCY)
LEDGER_SOURCE = faults.source(FaultKind.LEDGER)
STALL_PREFIX = FaultKind.INPUT_STALL.value + ":"
ESTOP_SOURCE = faults.source(FaultKind.ESTOP)
GOVERNOR_SOURCE = faults.source(FaultKind.GOVERNOR)  # the governor itself failed
DELIVERY_SOURCE = faults.source(FaultKind.DELIVERY)  # a device reported more pulses in a train than the train had


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Run:
    """Continuous stimulation committed by a 'start'."""

    t_start: float
    t_end: float  # planned end
    settings: dict[str, float]
    delivery: Delivery
    wall: datetime
    entry: int  # ledger entry number of the start
    changed: bool = False  # settings changed while running (no refund then)
    restored: bool = False  # from the ledger after a restart: may still be running
    epoch: int = 0  # clock epoch at the start: no refund across a clock fault
    r_start: float = math.nan  # LSL reading at the start
    r_stop: float | None = None  # LSL reading at the stop request
    w_stop_s: float | None = None  # wall seconds from the start to the stop request
    reported: bool = False  # the driver said what it delivered: no time-based refund on top


@dataclass
class _Device:
    cfg: DeviceConfig
    settings: dict[str, float]
    armed: bool = False
    armed_by: str | None = None
    motor_threshold: float | None = None
    last_set_t: float | None = None
    last_pulse_t: float | None = None
    last_end_t: float | None = None
    last_train: bool = False
    last_kind: str | None = None  # fire or start: what the last delivery was
    run: _Run | None = None
    stopped: _Run | None = None  # stopped early, waiting for confirm_stopped
    current_t: float | None = None  # last change of the output current while running
    awaiting: list[Awaiting] = field(default_factory=list)  # trains whose delivered dose is not reported yet
    last_stop: tuple[float, str] | None = None  # (clock reading, "disarm: why") of the last stop/disarm
    short_trains: int = 0  # in this session


@dataclass
class _Plan:
    entries: list[tuple[DoseEntry, bool]]  # (entry, fsync)
    apply: Callable[[list[int]], None]
    note: str = ""


class Governor:
    """Checks and commits stimulator commands for one session. Thread-safe.

    ``clock``: the LSL clock (injectable for tests); ``wall``: aware wall-clock time for
    the ledger and day boundaries; ``publish``: e.g. ``EventBus.publish``.
    """

    def __init__(self, site: Site, ledger: DoseLedger, session_id: str, *,
                 clock: Callable[[], float] = lsl_now, wall: Callable[[], datetime] = utc_now,
                 publish: Callable[[Event], None] | None = None) -> None:
        if not isinstance(session_id, str) or not session_id.strip():
            raise ValueError("session_id must be non-empty text")
        if ledger.tz != site.tzinfo:
            raise ValueError(f"the dose ledger counts days in {ledger.tz!r}, the site in {site.tzinfo!r}: "
                             f"open it with DoseLedger(path, tz=site.tzinfo)")
        self.site = site
        self.ledger = ledger
        self.session_id = session_id
        self._clock = clock
        self._wall = wall
        self._publish = publish
        self._lock = threading.RLock()
        self._devices = {name: _Device(cfg, dict(cfg.fixed)) for name, cfg in site.devices.items()}
        self._inhibitions: dict[str, Inhibition] = {}
        self._inputs: dict[str, float] = {}
        self._input_period: dict[str, float] = {}  # an input's own delivery interval (an fMRI TR), s
        self._time = TimeLine()
        self._restore()

    # ------------------------------------------------------------------ public: commands

    def check(self, request: StimRequest) -> Verdict:
        """The verdict ``request`` would get now, without committing anything."""
        with self._lock:
            stamp = self._stamp()
            violations, plan = self._evaluate(request, stamp)
            return self._verdict(request, stamp, violations, plan)

    def request(self, request: StimRequest) -> Verdict:
        """Check and, if allowed, commit (ledger first) atomically. Send only if allowed.

        Fails closed: an unexpected error refuses the command and inhibits stimulation
        (source 'governor'); a stop or disarm is still allowed.
        """
        with self._lock:
            try:
                return self._request(request)
            except Exception as exc:
                log.exception("safety: governor error on %r", request)
                t = math.nan
                try:
                    t = self._clock()
                except Exception:
                    pass
                self._inhibit(GOVERNOR_SOURCE, f"internal error: {exc!r}", t)
                stopping = request.kind in (STOP, DISARM)
                dev = self._devices.get(request.device) if isinstance(request.device, str) else None
                if stopping and dev is not None:
                    dev.run = None
                    if request.kind == DISARM:
                        dev.armed = False
                violation = L.state(L.INTERNAL, request.device, f"{request.device} {request.kind}: governor error {exc!r}")
                verdict = Verdict(stopping, request.kind, request.device, t, () if stopping else (violation,),
                                  request.rule, "allowed despite a governor error" if stopping else "")
                self._report(verdict, None)
                return verdict

    def _request(self, request: StimRequest) -> Verdict:
        with self._lock:
            stamp = self._stamp()
            violations, plan = self._evaluate(request, stamp)
            self._take(stamp)
            self._raise_interlocks(violations, stamp)
            if plan is not None and not violations:
                try:
                    numbers = [self.ledger.append(e, sync=s) for e, s in plan.entries]
                except (LedgerError, ValueError, OSError) as exc:  # ValueError: a non-finite dose cannot be recorded
                    self._inhibit(LEDGER_SOURCE, str(exc), stamp.reading)
                    if request.kind in (STOP, DISARM):
                        plan.apply([0] * len(plan.entries))
                        plan.note += "; its ledger entry could not be written"
                    else:
                        violations = [L.state(L.LEDGER, request.device, f"{request.device} {request.kind}: {exc}")]
                else:
                    plan.apply(numbers)
            verdict = self._verdict(request, stamp, violations, plan)
            self._report(verdict, request)
            return verdict

    def arm(self, device: str, operator: str) -> Verdict:
        """The operator arms ``device`` (refused while an interlock is active)."""
        with self._lock:
            stamp = self._stamp()
            self._take(stamp)
            now = stamp.reading
            dev = self._devices.get(device)
            v: list[Violation] = []
            if dev is None:
                v.append(self._unknown(device))
            if not isinstance(operator, str) or not operator.strip():
                v.append(L.state(L.OPERATOR, device, f"arming {device} needs the operator's name"))
            inhibitions = self._active_inhibitions(stamp)
            if inhibitions:
                v.append(L.state(L.INHIBITED, device, f"cannot arm {device} while stimulation is inhibited: {inhibitions}"))
            if not v and dev is not None:
                dev.armed, dev.armed_by = True, operator
            verdict = Verdict(not v, ARM, device, now, tuple(v), None, f"by {operator}" if not v else "")
            self._report(verdict, None)
            return verdict

    def disarm(self, device: str, reason: str = "") -> Verdict:
        """Disarm (always allowed); ends continuous stimulation."""
        return self.request(StimRequest(device, DISARM, self._clock(), rule=reason or None))

    def disarm_all(self, reason: str) -> list[Verdict]:
        """Disarm every device; send each verdict's disarm to its driver."""
        with self._lock:
            return [self.disarm(name, reason) for name in self._devices]

    def estop(self, reason: str) -> list[Verdict]:
        """Emergency stop: inhibit (source 'estop') and disarm every device."""
        with self._lock:
            self.inhibit(ESTOP_SOURCE, reason)
            return self.disarm_all(f"E-STOP: {reason}")

    def confirm_stopped(self, device: str, t_stopped: float) -> Totals | None:
        """The driver confirms continuous stimulation stopped at ``t_stopped`` (its t_sent):
        the planned dose not delivered is given back (ledger 'refund'). Without this call
        an early stop keeps the whole planned dose counted. Returns what was refunded."""
        with self._lock:
            dev = self._devices.get(device)
            run = dev.stopped if dev is not None else None
            if dev is None or run is None or not math.isfinite(t_stopped) or run.reported:
                return None
            dev.stopped = None
            if run.epoch != self._time.epoch or CLOCK_SOURCE in self._inhibitions or run.r_stop is None:
                return None  # a clock fault since the start: the elapsed time is not trustworthy
            late = max(0.0, t_stopped - run.r_stop)  # the driver stopped this long after the request
            by_lsl = max(t_stopped, run.r_stop) - run.r_start
            by_wall = (run.w_stop_s or 0.0) + late
            delivered_s = max(by_lsl, by_wall) + self.site.max_loop_latency_s
            if delivered_s >= run.t_end - run.t_start:
                return None
            delivered = dosing.delivery(START, run.settings, max(delivered_s, 1e-12))
            planned = run.delivery
            refund = Totals(max(0.0, planned.pulses - delivered.pulses),
                            max(0.0, (planned.charge_c or 0.0) - (delivered.charge_c or 0.0)))
            if refund.pulses <= 0 and refund.charge_c <= 0:
                return None
            entry = DoseEntry(device, self.session_id, "refund", run.r_start, run.wall, -refund.pulses,
                              -refund.charge_c, planned.end_s, planned.last_pulse_s, True, None, {}, run.entry)
            try:
                self.ledger.append(entry)
            except LedgerError as exc:
                self._inhibit(LEDGER_SOURCE, str(exc), t_stopped)
                return None
            self._emit(rec.Refund(device, refund.pulses, refund.charge_c))
            return refund

    def record_delivered(self, device: str, report: TrainEnd) -> Accounting | None:
        """A train ended and its driver says what it delivered (``report.delivered`` None: it cannot
        count). The delivered dose is appended to the ledger as a correction of the train's counted
        one (see :mod:`controller.safety.delivered`), so totals and caps count delivered pulses from
        now on; the counted dose stood while the train ran. Journaled as a 'delivery' event, and a
        train short of its plan also as 'short_train' with the reason. A device that delivered more
        than its train inhibits stimulation ('delivery'). Returns what was recorded (None: no train
        of this device awaits a report that started then, or the ledger failed, which inhibits).
        Called from the driver's thread; never raises: an internal error leaves the counted dose
        and inhibits stimulation (source 'governor'), as in :meth:`request`."""
        with self._lock:
            try:
                return self._record_delivered(device, report)
            except Exception as exc:
                log.exception("safety: governor error recording what %s delivered: %r", device, report)
                self._inhibit(GOVERNOR_SOURCE, f"internal error recording a delivered dose: {exc!r}", math.nan)
                return None

    def _record_delivered(self, device: str, report: TrainEnd) -> Accounting | None:
        with self._lock:
            dev = self._devices.get(device)
            item = accounting.match(dev.awaiting, report.t_start) if dev is not None else None
            reading = self._clock()
            if dev is None or item is None:
                if report.delivered is not None:  # e.g. a train committed before a restart: it stays as counted
                    self._emit(rec.DeliveryUnmatched(device, report.t_start, report.delivered))
                return None
            dev.awaiting.remove(item)
            entries = self.ledger.train_entries(item.entry)
            if not entries:  # its entry was never written (ledger failure): nothing to correct
                return None
            stop = dev.last_stop[1] if dev.last_stop is not None and dev.last_stop[0] >= item.t else None
            result = accounting.account(item, entries, report, stop, self.ledger.tz)
            ref = entries[0]
            facts = Delivered(result.dose.pulses, result.dose.charge_c, result.counted.pulses, result.counted.charge_c,
                              item.planned, result.confirmed, report.ended_by, result.reason)
            entry = DoseEntry(device, self.session_id, "delivered", reading, ref.wall, result.correction.pulses,
                              result.correction.charge_c, ref.end_s, ref.last_pulse_s, ref.train, ref.rule, {},
                              item.entry, facts)
            try:
                self.ledger.append(entry)
            except (LedgerError, ValueError, OSError) as exc:
                self._inhibit(LEDGER_SOURCE, str(exc), reading)
                return None
            for run in (dev.run, dev.stopped):
                if run is not None and run.entry == item.entry:
                    run.reported = True
            if dev.stopped is not None and dev.stopped.reported:
                dev.stopped = None
            if result.short:
                dev.short_trains += 1
            train = rec.TrainDelivered(
                device, item.entry, item.kind, item.rule, item.planned, result.delivered, result.counted.pulses,
                result.dose.pulses, result.counted.charge_c, result.dose.charge_c, result.confirmed,
                report.ended_by, result.short, result.reason, report.t_start, report.t_end,
                tuple(rec.MissedPulse(m.pulse, m.t_due, m.late_s) for m in report.missed))
            self._emit(train, item.t_source)
            if result.short:
                log.warning("safety: %s short train: %s", device, result.reason)
                self._emit(train.as_short_train(dev.short_trains), item.t_source)
            if result.over and item.kind == FIRE:
                self._inhibit(DELIVERY_SOURCE, f"{device} delivered {result.delivered} pulses in a train of "
                                               f"{item.planned:g}: the device did more than was allowed", reading)
            return result

    def set_motor_threshold(self, device: str, pct: float, operator: str) -> Verdict:
        """The participant's resting motor threshold (% of maximum output), for train tables in % MT."""
        with self._lock:
            now = self._clock()
            dev = self._devices.get(device)
            v: list[Violation] = []
            if dev is None:
                v.append(self._unknown(device))
            elif not isinstance(pct, (int, float)) or isinstance(pct, bool) or not (0 < pct <= 100):
                v.append(L.state(L.PARAMETER, device, f"{device} motor threshold must be a number in (0, 100] %, got {pct!r}"))
            elif dev.cfg.limits.motor_threshold_min is not None and L.short_of(pct, dev.cfg.limits.motor_threshold_min):
                v.append(L.below(device, "motor threshold", pct, "motor_threshold_min", dev.cfg.limits.motor_threshold_min, units.PERCENT))
            if not isinstance(operator, str) or not operator.strip():
                v.append(L.state(L.OPERATOR, device, f"setting the motor threshold of {device} needs the operator's name"))
            if not v and dev is not None:
                dev.motor_threshold = float(pct)
            verdict = Verdict(not v, "motor_threshold", device, now, tuple(v), None, f"{pct:g} % by {operator}" if not v else "")
            self._report(verdict, None)
            return verdict

    # ------------------------------------------------------------------ public: interlocks

    def inhibit(self, source: str, reason: str) -> None:
        """Inhibit stimulation at once, until ``clear(source)``; ``reason`` is shown and logged."""
        with self._lock:
            self._inhibit(source, reason, self._clock())

    def clear(self, source: str) -> bool:
        """Lift one inhibition; False if it was not active. (After a clock fault the governor's
        time line simply went on from the jump: intervals count no time for the jump.)"""
        with self._lock:
            now = self._clock()
            found = self._inhibitions.pop(source, None)
            if found is None:
                return False
            if source.startswith(STALL_PREFIX):
                name = source[len(STALL_PREFIX):]
                if name in self._inputs:
                    self._inputs[name] = max(self._inputs[name], now)
            log.warning("safety: interlock %s cleared", source)
            self._emit(rec.InterlockCleared(source))
            return True

    def inhibited_by(self, source: str) -> bool:
        """Whether interlock ``source`` is active (cheap: for per-sample checks on the hot path)."""
        with self._lock:
            return source in self._inhibitions

    @property
    def inhibitions(self) -> dict[str, Inhibition]:
        with self._lock:
            return dict(self._inhibitions)

    def check_latency(self, latency_s: float) -> bool:
        """A measured loop latency; over the site's budget it inhibits ('latency')."""
        budget = self.site.max_loop_latency_s
        if math.isfinite(latency_s) and latency_s <= budget:
            return True
        self.inhibit(LATENCY_SOURCE, f"loop latency {q.fmt(latency_s, units.DURATION)} > site max_loop_latency {q.fmt(budget, units.DURATION)}")
        return False

    def input_seen(self, name: str, t: float | None = None, period_s: float = 0.0) -> None:
        """An input delivered data (call per chunk or volume); silence longer than the site's input_stall
        beyond the input's own delivery interval ``period_s`` (an fMRI input's TR; 0 for sample
        streams) inhibits."""
        if not (math.isfinite(period_s) and period_s >= 0.0):
            raise ValueError(f"input {name!r}: period_s must be a finite number >= 0, got {period_s!r}")
        with self._lock:
            self._inputs[name] = self._clock() if t is None else t
            self._input_period[name] = float(period_s)

    def poll(self) -> list[Inhibition]:
        """For a watchdog thread: raise stall and clock interlocks now; returns new ones."""
        with self._lock:
            stamp = self._stamp()
            before = set(self._inhibitions)
            self._take(stamp)
            for source, reason in self._stalls(stamp.reading):
                self._inhibit(source, reason, stamp.reading)
            return [i for s, i in self._inhibitions.items() if s not in before]

    def overdue(self) -> list[str]:
        """Devices whose continuous stimulation passed its planned end without a stop."""
        with self._lock:
            now = self._stamp().g
            return [n for n, d in self._devices.items() if d.run is not None and now >= d.run.t_end]

    # ------------------------------------------------------------------ public: state

    def totals(self, device: str) -> dict[str, Totals]:
        """{'session': ..., 'day': ...} pulses and charge counted for ``device``."""
        with self._lock:
            return {"session": self.ledger.session_totals(device, self.session_id),
                    "day": self.ledger.day_totals(device, self.ledger.today(self._wall()))}

    def armed(self, device: str) -> bool:
        with self._lock:
            return self._devices[device].armed

    def settings(self, device: str) -> dict[str, float]:
        with self._lock:
            return dict(self._devices[device].settings)

    def not_applied(self, device: str, settings: dict[str, float], reason: str) -> None:
        """An allowed ``set`` did not reach the device (it refused or failed): the model goes back to the
        settings the device still has, so the next change is checked (ramp rate, increases) from the
        device's real values, not from the value it never took. Kept as they are, on purpose: the dose
        already counted (over-counting errs safe) and the change time (a shorter elapsed time makes the
        next ramp-rate check stricter)."""
        with self._lock:
            dev = self._devices.get(device)
            if dev is None:
                return
            dev.settings = dict(settings)
            if dev.run is not None:
                dev.run.settings = dict(settings)
        self._emit(rec.NotApplied(device, reason, dict(settings)))

    def running(self, device: str) -> bool:
        with self._lock:
            return self._devices[device].run is not None

    # ------------------------------------------------------------------ evaluation

    def _evaluate(self, req: StimRequest, stamp: Stamp) -> tuple[list[Violation], _Plan | None]:
        dev = self._devices.get(req.device)
        if dev is None:
            return [self._unknown(req.device)], None
        if req.kind not in KINDS:
            return [L.state(L.KIND, req.device, f"{req.device}: unknown command kind {req.kind!r}; kinds: {', '.join(KINDS)}")], None
        if req.kind in (STOP, DISARM):
            return [], self._plan_stop(dev, req, stamp)
        if req.kind == ARM:
            return [L.state(L.OPERATOR, req.device, f"{req.device} arm: arming is an operator act (Governor.arm), not a protocol command")], None
        params, v = L.validate_params(req.device, req.kind, req.params)
        v += self._time_violations(req, stamp)
        if req.kind == SET:
            return self._eval_set(dev, req, params, stamp, v)
        return self._eval_stimulate(dev, req, params, stamp, v)

    def _time_violations(self, req: StimRequest, stamp: Stamp) -> list[Violation]:
        v: list[Violation] = []
        name, budget, now = req.device, self.site.max_loop_latency_s, stamp.reading
        if stamp.problem is not None:
            v.append(L.state(L.CLOCK, name, f"{name} {req.kind}: {stamp.problem}; stimulation is inhibited until "
                             f"the operator clears '{CLOCK_SOURCE}'"))
        if not math.isfinite(now):
            return v
        t = req.t
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            v.append(L.state(L.CLOCK, name, f"{name} {req.kind}: the source time {t!r} is not a finite number"))
            return v
        if t - now > budget:
            v.append(L.state(L.CLOCK, name, f"{name} {req.kind}: the source time is {q.fmt(t - now, units.DURATION)} "
                             f"ahead of the clock (clock mismatch)"))
        elif L.exceeds(now - t, budget):
            v.append(L.above(name, "controller delay", now - t, L.LATENCY, budget, units.DURATION))
        bound, t_sample = self.site.max_end_to_end_latency_s, req.t_sample
        if bound is not None and t_sample is not None and math.isfinite(t_sample) and L.exceeds(now - t_sample, bound):
            v.append(L.above(name, "end-to-end latency (from the detecting sample)", now - t_sample, L.END_TO_END,
                             bound, units.DURATION))
        return v

    def _gate_violations(self, dev: _Device, kind: str, stamp: Stamp) -> list[Violation]:
        """Armed and no interlock."""
        name, v = dev.cfg.name, []
        if not dev.armed:
            v.append(L.state(L.ARMED, name, f"{name} {kind}, but {name} is not armed (arming is an operator act)"))
        inhibitions = self._active_inhibitions(stamp)
        if inhibitions:
            v.append(L.state(L.INHIBITED, name, f"{name} {kind}, but stimulation is inhibited: {inhibitions}"))
        return v

    def _restored_busy(self, dev: _Device, kind: str) -> list[Violation]:
        run = dev.run
        if run is not None and run.restored:
            name = dev.cfg.name
            return [L.state(L.BUSY, name, f"{name} {kind}: continuous stimulation started before the restart may still run "
                            f"(planned for {q.fmt(run.t_end - run.t_start, units.DURATION)}); stop or disarm {name} first")]
        return []

    def _eval_set(self, dev: _Device, req: StimRequest, params: dict[str, float], stamp: Stamp,
                  v: list[Violation]) -> tuple[list[Violation], _Plan | None]:
        cfg, name, now, wall_now = dev.cfg, dev.cfg.name, stamp.g, stamp.wall
        for key in dosing.PER_REQUEST:
            if key in params:
                v.append(L.state(L.PARAMETER, name, f"{name} set: {key} belongs to a 'start' request, not a 'set'"))
        changes = {k: x for k, x in params.items() if k in dosing.SETTINGS or k in dosing.NEUTRAL}
        if not changes and not any(p.limit == L.PARAMETER for p in v):
            v.append(L.state(L.PARAMETER, name, f"{name} set: no parameter to set"))
        v += L.fixed_conflicts(cfg, SET, changes)
        v += self._restored_busy(dev, SET)
        if dev.last_kind == FIRE and dev.last_train and dev.last_end_t is not None and L.short_of(now, dev.last_end_t):
            v.append(L.state(L.BUSY, name, f"{name} set: a train is in progress for another "
                             f"{q.fmt(dev.last_end_t - now, units.DURATION)}"))
        new = {**dev.settings, **changes}
        run = dev.run if dev.run is not None and not dev.run.restored else None
        entries: list[tuple[DoseEntry, bool]] = []
        current_changed = "current_a" in changes and changes["current_a"] != dev.settings.get("current_a")
        if run is None:
            v += L.setting_violations(cfg, SET, new, dosing.delivery(FIRE, new), motor_threshold=self._mt(dev), complete=False)
        else:
            old = run.settings
            if any(isinstance(x, float) and x > old.get(k, 0.0) for k, x in changes.items() if k in dosing.SETTINGS):
                v += self._gate_violations(dev, "increase during stimulation", stamp)
            if current_changed and cfg.limits.ramp_rate_max is not None:
                v += self._ramp_violations(dev, old.get("current_a"), changes["current_a"], now)
            total = run.t_end - run.t_start
            v += L.setting_violations(cfg, START, new, dosing.delivery(START, new, total),
                                      motor_threshold=self._mt(dev), complete=True)
            # How long the run has left, bounded by both clocks: after a clock fault the LSL clock may
            # say less time passed than did. The old settings' pulses still to come are counted over
            # the SHORTEST time left (rounded down), the new settings' over the LONGEST (rounded up),
            # so an uncertain clock can only make the dose counted larger, never smaller.
            elapsed = (now - run.t_start, (wall_now - run.wall).total_seconds())
            remaining = min(total, total - min(elapsed))
            if remaining > 0:
                least = total - max(elapsed)
                after = dosing.delivery(START, new, remaining, rounding=dosing.UP)
                if least > 0:
                    before = dosing.delivery(START, old, least, rounding=dosing.DOWN)
                    old_pulses, old_charge = before.pulses, before.charge_c or 0.0
                else:  # by the other clock the run is over: none of its pulses can be counted as still to come
                    old_pulses, old_charge = 0.0, 0.0
                extra = Totals(max(0.0, after.pulses - old_pulses), max(0.0, (after.charge_c or 0.0) - old_charge))
                session, day = self._prior(name, wall_now)
                v += L.dose_violations(cfg, START, extra, after.charge_c is not None, session, day, new)
                if extra.pulses > 0 or extra.charge_c > 0:
                    entries.append((DoseEntry(name, self.session_id, "extra", stamp.reading, wall_now, extra.pulses, extra.charge_c,
                                              remaining, remaining, True, req.rule, dict(new), run.entry), True))

        def apply(numbers: list[int]) -> None:
            dev.settings = new
            dev.last_set_t = now
            if run is not None:
                run.settings = new
                run.changed = True
                if current_changed:
                    dev.current_t = now
                for item in dev.awaiting:  # its pulses are counted at the largest charge they had
                    if item.entry == run.entry and item.pulse_charge_c is not None:
                        q = accounting.pulse_charge(START, new, run.delivery)
                        item.pulse_charge_c = None if q is None else max(item.pulse_charge_c, q)

        return v, _Plan(entries, apply, ", ".join(f"{k}={x:g}" for k, x in changes.items()))

    def _ramp_violations(self, dev: _Device, old: float | None, new: float, now: float) -> list[Violation]:
        cap, name = dev.cfg.limits.ramp_rate_max, dev.cfg.name
        assert cap is not None
        old = old or 0.0
        since = dev.current_t if dev.current_t is not None else -math.inf
        elapsed = now - since
        rate = abs(new - old) / elapsed if elapsed > 0 else math.inf
        if L.exceeds(rate, cap):
            return [Violation(
                "ramp_rate_max",
                f"{name} current change {q.fmt(old, units.CURRENT)} -> {q.fmt(new, units.CURRENT)} in "
                f"{q.fmt(max(elapsed, 0.0), units.DURATION)} = {q.fmt(rate, q.CURRENT_RATE)} > site limit "
                f"{q.fmt(cap, q.CURRENT_RATE)} (ramp_rate_max); ramp in smaller steps",
                name, rate, cap, L.ABOVE, q.CURRENT_RATE,
            )]
        return []

    def _eval_stimulate(self, dev: _Device, req: StimRequest, params: dict[str, float], stamp: Stamp,
                        v: list[Violation]) -> tuple[list[Violation], _Plan | None]:
        cfg, name, kind, lim = dev.cfg, dev.cfg.name, req.kind, dev.cfg.limits
        now, wall_now = stamp.g, stamp.wall
        for key, x in params.items():
            if key in dosing.SETTINGS:
                have = dev.settings.get(key)
                if have is None or not math.isclose(x, have, rel_tol=L.REL_TOL, abs_tol=0.0):
                    v.append(L.state(L.PARAMETER, name, f"{name} {kind} asks {key} {x:g}, but the device is set to "
                                     f"{'nothing' if have is None else f'{have:g}'}; send a 'set' first"))
        duration = params.get("duration_s")
        if kind == FIRE and ("duration_s" in params or "ramp_s" in params):
            v.append(L.state(L.PARAMETER, name, f"{name} fire: duration_s and ramp_s belong to a 'start'"))
        if kind == START and not (duration is not None and duration > 0):
            v.append(L.state(L.PARAMETER, name, f"{name} start needs duration_s > 0 (how long, so its dose can be checked)"))
        v += self._gate_violations(dev, kind, stamp)
        v += self._restored_busy(dev, kind)
        if dev.run is not None and not dev.run.restored:
            v.append(L.state(L.BUSY, name, f"{name} {kind}: continuous stimulation is running "
                             f"(planned until {q.fmt(dev.run.t_end - now, units.DURATION)} from now); stop it first"))
        if lim.blanking is not None and dev.last_set_t is not None and L.short_of(now - dev.last_set_t, lim.blanking):
            v.append(L.below(name, "time since the last parameter change", now - dev.last_set_t, "blanking", lim.blanking, units.DURATION))
        if kind == START and not (duration is not None and duration > 0):
            return v, None
        settings = dev.settings
        delivery = dosing.delivery(kind, settings, duration)
        if not all(math.isfinite(x) for x in (delivery.pulses, delivery.end_s, delivery.last_pulse_s, delivery.charge_c or 0.0)):
            v.append(L.state(L.PARAMETER, name, f"{name} {kind}: its timing or dose cannot be computed from the settings "
                                                f"{settings}; set frequency_hz (and n_pulses) first"))
        v += L.setting_violations(cfg, kind, settings, delivery, motor_threshold=self._mt(dev), complete=True)
        if kind == START:
            v += L.ramp_violations(cfg, settings.get("current_a"), params.get("ramp_s"))
        v += self._interval_violations(dev, kind, delivery, now)
        session, day = self._prior(name, wall_now)
        v += L.dose_violations(cfg, kind, delivery.totals, delivery.charge_c is not None, session, day, settings)
        entry = DoseEntry(name, self.session_id, kind, stamp.reading, wall_now, delivery.pulses, delivery.charge_c or 0.0,
                          delivery.end_s, delivery.last_pulse_s, delivery.train, req.rule, dict(settings))
        ramp_s = params.get("ramp_s") or 0.0

        def apply(numbers: list[int]) -> None:
            dev.last_pulse_t = now + delivery.last_pulse_s
            dev.last_end_t = now + delivery.end_s
            dev.last_train = delivery.train
            dev.last_kind = kind
            dev.stopped = None
            if kind == START:
                dev.run = _Run(now, now + delivery.end_s, dict(settings), delivery, wall_now, numbers[0],
                               epoch=self._time.epoch, r_start=stamp.reading)
                dev.current_t = now + ramp_s
            if delivery.train and numbers[0] > 0:  # its driver will say what it delivered
                dev.awaiting.append(Awaiting(numbers[0], kind, stamp.reading, delivery.pulses,
                                             accounting.pulse_charge(kind, settings, delivery), req.rule,
                                             _sample_time(req)))
                del dev.awaiting[:-accounting.MAX_AWAITING]

        pulses = f"{q.fmt(delivery.pulses, q.COUNT)} pulse{'s' if delivery.pulses != 1 else ''}"
        charge = f", {q.fmt(delivery.charge_c, q.CHARGE)}" if delivery.charge_c else ""
        return v, _Plan([(entry, True)], apply, pulses + charge)

    def _interval_violations(self, dev: _Device, kind: str, delivery: Delivery, now: float) -> list[Violation]:
        lim, name, v = dev.cfg.limits, dev.cfg.name, []
        if dev.last_pulse_t is not None:
            gap = now - dev.last_pulse_t
            if lim.min_pulse_interval is not None and L.short_of(gap, lim.min_pulse_interval):
                v.append(L.below(name, "interval since the last pulse", gap, "min_pulse_interval", lim.min_pulse_interval, units.DURATION))
            elif lim.frequency_max is not None and L.short_of(gap, 1.0 / lim.frequency_max):
                rate = 1.0 / gap if gap > 0 else math.inf
                v.append(Violation(
                    "frequency_max",
                    f"{name} pulse rate {q.fmt(rate, units.FREQUENCY)} ({q.fmt(gap, units.DURATION)} since the last pulse) "
                    f"> site limit {q.fmt(lim.frequency_max, units.FREQUENCY)} (frequency_max)",
                    name, rate, lim.frequency_max, L.ABOVE, units.FREQUENCY,
                ))
        if dev.last_end_t is not None and lim.min_inter_train is not None and (delivery.train or dev.last_train):
            gap = now - dev.last_end_t
            if L.short_of(gap, lim.min_inter_train):
                v.append(L.below(name, "interval since the last train", gap, "min_inter_train", lim.min_inter_train, units.DURATION))
        if not v and dev.last_end_t is not None and L.short_of(now, dev.last_end_t):
            v.append(L.state(L.BUSY, name, f"{name} {kind}: the previous train runs for another "
                             f"{q.fmt(dev.last_end_t - now, units.DURATION)}"))
        return v

    def _plan_stop(self, dev: _Device, req: StimRequest, stamp: Stamp) -> _Plan:
        name, run = dev.cfg.name, dev.run
        now, wall_now = stamp.g, stamp.wall
        entries: list[tuple[DoseEntry, bool]] = []
        margin = self.site.max_loop_latency_s
        finite = math.isfinite(now)
        note = "nothing running" if run is None else "continuous stimulation stopped"
        if run is not None and finite:
            if not run.restored and now > run.t_end + L.TIME_TOL:
                over = now - run.t_end + margin
                od = dosing.delivery(START, run.settings, over)
                entries.append((DoseEntry(name, self.session_id, "overrun", stamp.reading - over, wall_now - timedelta(seconds=over),
                                          od.pulses, od.charge_c or 0.0, over, over, True, req.rule, dict(run.settings),
                                          run.entry), True))
                note = f"stopped {q.fmt(now - run.t_end, units.DURATION)} after its planned end (overrun counted)"
            entries.append((DoseEntry(name, self.session_id, "stop", stamp.reading, wall_now, 0, 0.0, 0.0, 0.0, False, req.rule,
                                      {}, run.entry), False))

        def apply(numbers: list[int]) -> None:
            if req.kind == DISARM:
                dev.armed, dev.armed_by = False, None
            dev.last_stop = (stamp.reading, f"{req.kind}: {req.rule}" if req.rule else req.kind)
            if run is None:
                return
            dev.run = None
            if not finite:
                return  # keep the planned end: it is the later one
            overrun = not run.restored and now > run.t_end + L.TIME_TOL
            if overrun:
                end = now + margin
            else:
                end = min(run.t_end, now + margin)
                if not run.restored:
                    run.r_stop = stamp.reading
                    run.w_stop_s = (wall_now - run.wall).total_seconds()
                    dev.stopped = None if run.changed or run.reported else run
            dev.last_end_t = end
            if overrun or dev.last_pulse_t is None:
                dev.last_pulse_t = end
            else:
                dev.last_pulse_t = max(min(dev.last_pulse_t, end), run.t_start)
            dev.last_train = True

        return _Plan(entries, apply, note + (f" ({req.rule})" if req.rule else ""))

    # ------------------------------------------------------------------ helpers

    def _mt(self, dev: _Device) -> float | None:
        return dev.motor_threshold

    def _prior(self, device: str, wall_now: datetime) -> tuple[Totals, Totals]:
        return (self.ledger.session_totals(device, self.session_id),
                self.ledger.day_totals(device, self.ledger.today(wall_now)))

    def _unknown(self, device: str) -> Violation:
        return L.state(L.DEVICE, device, f"no device {device!r} in site {self.site.name!r}; devices: {', '.join(self._devices)}")

    def _stalls(self, now: float) -> list[tuple[str, str]]:
        out = []
        for name, seen in self._inputs.items():
            stall = STALL_PREFIX + name
            period = self._input_period.get(name, 0.0)
            limit = self.site.input_stall_s + period
            if stall not in self._inhibitions and math.isfinite(now) and now - seen > limit:
                beyond = f" beyond its delivery interval {q.fmt(period, units.DURATION)}" if period else ""
                out.append((stall, f"input {name} silent for {q.fmt(now - seen, units.DURATION)} > site input_stall "
                                   f"{q.fmt(self.site.input_stall_s, units.DURATION)}{beyond}"))
        return out

    def _active_inhibitions(self, stamp: Stamp) -> str:
        parts = [f"{i.source}: {i.reason}" for i in self._inhibitions.values()]
        parts += [f"{s}: {r}" for s, r in self._stalls(stamp.reading)]
        if stamp.problem is not None and CLOCK_SOURCE not in self._inhibitions:
            parts.append(f"{CLOCK_SOURCE}: {stamp.problem}")
        return "; ".join(parts)

    def _raise_interlocks(self, violations: list[Violation], stamp: Stamp) -> None:
        for v in violations:
            if v.limit == L.LATENCY:
                self._inhibit(LATENCY_SOURCE, v.text, stamp.reading)
            elif v.limit == L.CLOCK and CLOCK_SOURCE not in self._inhibitions:
                self._inhibit(CLOCK_SOURCE, v.text, stamp.reading)
        for source, reason in self._stalls(stamp.reading):
            self._inhibit(source, reason, stamp.reading)

    def _stamp(self) -> Stamp:
        """Look at both clocks (no state change)."""
        return self._time.look(self._clock(), self._wall())

    def _take(self, stamp: Stamp) -> None:
        """Make ``stamp`` the latest look; a clock fault raises the 'clock' interlock."""
        self._time.take(stamp)
        if stamp.problem is not None and CLOCK_SOURCE not in self._inhibitions:
            self._inhibit(CLOCK_SOURCE, stamp.problem, stamp.reading)

    def _inhibit(self, source: str, reason: str, now: float) -> None:
        self._inhibitions[source] = Inhibition(source, reason, now)
        log.warning("safety: stimulation inhibited by %s: %s", source, reason)
        self._emit(rec.InterlockRaised(source, reason))

    def _verdict(self, req: StimRequest, stamp: Stamp, violations: list[Violation], plan: _Plan | None) -> Verdict:
        allowed = not violations and plan is not None
        return Verdict(allowed, req.kind, req.device, stamp.reading, tuple(violations), req.rule,
                       plan.note if plan and allowed else "")

    def _report(self, verdict: Verdict, req: StimRequest | None) -> None:
        if verdict.allowed:
            log.info("safety: %s", verdict)
        else:
            log.warning("safety: %s", verdict)
        t_source = _sample_time(req)
        self._emit(rec.SafetyVerdict(verdict.allowed, str(verdict), verdict.device, verdict.kind, verdict.limit,
                                     verdict.value, verdict.limit_value, verdict.rule),
                   t_source if isinstance(t_source, float) else None)

    def _emit(self, record: rec.Record, t_source: float | None = None) -> None:
        """Publish a verdict, an interlock change or a train's delivery; a subscriber problem changes nothing
        here (a safety decision never depends on who listens)."""
        if self._publish is None:
            return
        try:
            self._publish(record.event(self._clock(), t_source))
        except Exception:
            log.exception("safety: could not publish a %s event", record.KIND)

    # ------------------------------------------------------------------ restart

    def _restore(self) -> None:
        """Place the ledger's earlier doses on this clock, so intervals hold across restarts."""
        stamp = self._stamp()
        self._take(stamp)
        now, reading, wall_now = stamp.g, stamp.reading, stamp.wall
        margin = self.site.max_loop_latency_s
        for number, e in enumerate(self.ledger.entries, start=1):
            dev = self._devices.get(e.device)
            if dev is None:
                continue
            ago_wall = (wall_now - e.wall).total_seconds()
            ago_lsl = reading - e.t
            ago = min(ago_wall, ago_lsl) if ago_lsl >= 0 else ago_wall
            te = now - max(0.0, ago)
            if e.kind in (FIRE, START):
                dev.last_pulse_t = _later(dev.last_pulse_t, te + e.last_pulse_s)
                dev.last_end_t = _later(dev.last_end_t, te + e.end_s)
                dev.last_train = e.train
                dev.last_kind = e.kind
                if e.kind == START:
                    d = dosing.delivery(START, e.settings, e.end_s) if e.end_s > 0 else None
                    if d is not None:
                        dev.run = _Run(te, te + e.end_s, dict(e.settings), d, e.wall, number, restored=True, r_start=e.t)
            elif e.kind == STOP and dev.run is not None and dev.run.entry == e.ref:
                end = te + margin
                dev.last_end_t = min(dev.last_end_t, end) if dev.last_end_t is not None else end
                dev.last_end_t = max(dev.last_end_t, dev.run.t_start)
                if dev.last_pulse_t is not None:
                    dev.last_pulse_t = max(min(dev.last_pulse_t, end), dev.run.t_start)
                dev.run = None
            elif e.kind == "overrun" and dev.run is not None and dev.run.entry == e.ref:
                dev.last_end_t = _later(dev.last_end_t, te + e.end_s)
        for dev in self._devices.values():
            if dev.run is not None and dev.run.t_end <= now:
                dev.run = None


def _sample_time(req: StimRequest | None) -> float | None:
    """The journal places a verdict at the detecting sample's time, like the decision and the command."""
    if req is None:
        return None
    return req.t_sample if req.t_sample is not None else req.t


def _later(a: float | None, b: float) -> float:
    return b if a is None else max(a, b)
