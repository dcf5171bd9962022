"""Stimulation commands from the engine to the devices, each through the safety governor.

The only path from a rule to a stimulator: ``execute`` turns a protocol action into
governor requests and sends a command to its driver only when the verdict allows it.
A refusal is published (the governor says which limit and value); a driver error
inhibits stimulation at once (source ``device:NAME``) and disarms that device.
Continuous stimulation is stopped at its planned end by the watchdog (``poll``), and
``estop`` disarms every device in parallel, so one slow link cannot delay the others.

Delivered doses: every driver's train reports (``Stimulator.report_trains_to``) go to the
governor, which records them in the dose ledger. A driver that cannot count a train's pulses
gets its train recorded, right after it was sent, as the planned dose, not confirmed.
"""

from __future__ import annotations

import functools
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller import event_records as rec
from controller import events as ev
from controller.clock import now
from controller.events import EventBus
from controller.lang.compiled import DeviceUse, FeatureScale, StimAction
from controller.safety.commands import DISARM, FIRE, SET, START, STOP, StimRequest, Verdict
from controller.safety.faults import FaultKind, source
from controller.safety.governor import Governor
from controller.safety.ledger import local_date
from drivers.delivery import UNREPORTED, TrainReport
from drivers.stimulator import DeviceError, NotReady, Stimulator

log = logging.getLogger(__name__)

COMMAND = ev.COMMAND  # event kind: a command sent to a device (or refused before the wire)
DEVICE_PREFIX = FaultKind.DEVICE.value + ":"
RAMP_STEP_S = 0.1  # a ramped current change is sent in steps this far apart
LATENCY_SOURCE = source(FaultKind.LATENCY)
LATENCY_RECOVERY_S = 2.0  # within budget this long lifts the 'latency' interlock
RAMP_MARGIN = 0.9  # each step is 90 % of rate x interval, so timing jitter cannot make it too steep


@dataclass
class Link:
    """One device of the session: its site name, its driver, and what runs on it now. What the device
    takes (parameter names, when settings go out, a fire's time on the wire) its driver says."""

    name: str
    driver: Stimulator
    running_until: float | None = None  # planned end of continuous stimulation (LSL time)
    ramp_target: float | None = None
    ramp_rate: float | None = None
    ramp_rule: str | None = None


# A timed pulse waiting for its time: (send at, action, t_source, basis, t_decided, rule, features).
_Timed = tuple[float, StimAction, float, float, float, str, dict[str, float]]


class Stimulation:
    """Executes stimulation actions for one session. Thread-safe."""

    def __init__(self, governor: Governor, links: Mapping[str, Link], bus: EventBus,
                 clock: Callable[[], float] = now, operator: str = "operator") -> None:
        self.governor = governor
        self.links = dict(links)
        self.bus = bus
        self.clock = clock
        self.operator = operator
        self._lock = threading.RLock()
        self._timed: queue.Queue[_Timed | None] = queue.Queue()
        self._halt = threading.Event()
        self._latency_ok_since: float | None = None
        self._counted = {name: link.driver.report_trains_to(functools.partial(self.governor.record_delivered, name))
                         for name, link in self.links.items()}
        self._timer = threading.Thread(target=self._run_timed, name="stim-timed", daemon=True)
        self._timer.start()

    # ------------------------------------------------------------------ session life
    def prepare(self, devices: Mapping[str, DeviceUse]) -> list[str]:
        """Apply each device's preset settings (governor first, then the driver); returns problems."""
        problems = []
        for name, use in devices.items():
            if not use.settings:
                continue
            verdict = self._set(name, dict(use.settings), self.clock(), "protocol devices section", send=True)
            if not verdict:
                problems.append(str(verdict))
        return problems

    def arm(self, operator: str | None = None, devices: list[str] | None = None) -> list[str]:
        """Operator act: arm the devices (governor, then driver). Returns problems (empty = all armed)."""
        problems = []
        for name in devices or list(self.links):
            link = self.links[name]
            verdict = self.governor.arm(name, operator or self.operator)
            if not verdict:
                problems.append(str(verdict))
                continue
            try:
                t = link.driver.arm()
            except DeviceError as exc:
                self._device_fault(link, f"arm failed: {exc}")
                problems.append(f"{name}: arm failed: {exc}")
                continue
            self._command(name, "arm", None, t, "operator", ok=True)
        return problems

    def disarm_all(self, reason: str) -> None:
        """Disarm every device in parallel (E-STOP path): governor first, then each driver."""
        with self._lock:
            for link in self.links.values():
                link.ramp_target = None
                link.running_until = None
            self.governor.disarm_all(reason)
        threads = [threading.Thread(target=self._disarm_driver, args=(link, reason), daemon=True)
                   for link in self.links.values()]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=2.0)

    def estop(self, reason: str) -> float:
        """Inhibit and disarm everything; returns the seconds it took."""
        t0 = time.perf_counter()
        self.governor.inhibit(source(FaultKind.ESTOP), reason)
        self.disarm_all(f"E-STOP: {reason}")
        took = time.perf_counter() - t0
        self.bus.publish(rec.EStop(reason, took).event(self.clock()))
        return took

    def close(self) -> None:
        self._halt.set()
        self._timed.put(None)
        self.disarm_all("session end")
        for link in self.links.values():
            try:
                link.driver.close()
            except Exception as exc:  # closing must go on for the others
                log.warning("closing %s: %s", link.name, exc)

    # ------------------------------------------------------------------ hot path
    def execute(self, action: StimAction, t_source: float, rule: str, features: Mapping[str, float],
                at: float | None = None, arrival: float | None = None) -> None:
        """Carry out one rule's action. ``t_source``: the detecting sample's LSL time; ``arrival``: when
        its chunk reached the controller (default: ``t_source``), from which the controller's delay is
        counted; ``at``: LSL time a timed pulse should land at."""
        basis = t_source if arrival is None else arrival
        if action.kind == "stimulate" and action.at is not None and at is not None and math.isfinite(at):
            link = self.links.get(action.device)
            lead = link.driver.fire_wire_time_s if link is not None else 0.0  # sent early by its time on the wire
            self._timed.put((at - lead, action, t_source, basis, self.clock(), rule, dict(features)))
            return
        self._execute(action, t_source, rule, features, basis)

    def _execute(self, action: StimAction, t_source: float, rule: str, features: Mapping[str, float],
                 basis: float | None = None) -> None:
        """``basis``: the time the governor counts the decision's age from (the data's arrival)."""
        basis = t_source if basis is None else basis
        name = action.device
        link = self.links.get(name)
        if link is None:
            self._refused_early(name, action.kind, t_source, rule, f"device {name!r} is not open in this session")
            return
        settings = {k: (v(features.get(v.feature, math.nan)) if isinstance(v, FeatureScale) else v)
                    for k, v in action.settings.items()}
        if action.kind == "stop":
            self._stop(link, t_source, rule, basis)
            return
        if action.kind == "set":
            if action.ramp_rate is not None and "current_a" in settings:
                target = settings.pop("current_a")
                with self._lock:
                    link.ramp_target, link.ramp_rate, link.ramp_rule = target, action.ramp_rate, rule
                if settings:
                    self._set(name, settings, t_source, rule, send=True, basis=basis)
                return
            self._set(name, settings, t_source, rule, send=True, basis=basis)
            return
        current = self.governor.settings(name)
        changed = {k: v for k, v in settings.items() if not _same(current.get(k), v)}
        if changed:
            verdict = self._set(name, changed, t_source, rule, send=link.driver.sends_settings_while_idle,
                                basis=basis)
            if not verdict:
                return
        if action.fires:
            self._fire(link, t_source, rule, basis)
        else:
            self._start(link, t_source, rule, action.duration_s or 0.0, action.ramp_s, basis)

    # ------------------------------------------------------------------ commands
    def _request(self, name: str, kind: str, t_source: float, basis: float | None, params: Mapping[str, float],
                 rule: str) -> Verdict:
        """The governor judges the decision's age from ``basis`` (arrival) and, where the site bounds it,
        the end-to-end time from the detecting sample."""
        return self.governor.request(StimRequest(name, kind, t_source if basis is None else basis, dict(params),
                                                 rule, t_sample=t_source))

    def _set(self, name: str, params: dict[str, float], t_source: float, rule: str, *, send: bool,
             basis: float | None = None) -> Verdict:
        before = self.governor.settings(name)  # what the device has, should it not take the change
        verdict = self._request(name, SET, t_source, basis, params, rule)
        if not verdict or not send:
            if not verdict:
                self._command(name, SET, t_source, None, rule, ok=False, reason=verdict.reason, params=params)
            return verdict
        link = self.links.get(name)
        if link is None:
            return verdict
        if not link.driver.sends_settings_while_idle and not self.governor.running(name):
            return verdict  # applied at the start of stimulation
        kwargs = link.driver.command_parameters(self.governor.settings(name), changed=params.keys())
        if not kwargs:
            return verdict
        try:
            t_sent = link.driver.set_parameters(**kwargs)
        except (DeviceError, ValueError) as exc:
            self.governor.not_applied(name, before, f"set {kwargs}: {exc}")
            self._device_fault(link, f"set {kwargs}: {exc}", not_ready=isinstance(exc, NotReady))
            return verdict
        self._command(name, SET, t_source, t_sent, rule, ok=True, params=params, basis=basis)
        return verdict

    def _fire(self, link: Link, t_source: float, rule: str, basis: float | None = None) -> None:
        verdict = self._request(link.name, FIRE, t_source, basis, {}, rule)
        if not verdict:
            self._command(link.name, FIRE, t_source, None, rule, ok=False, reason=verdict.reason)
            return
        try:
            t_sent = link.driver.fire()
        except DeviceError as exc:
            self._device_fault(link, f"fire: {exc}", not_ready=isinstance(exc, NotReady))
            return
        self._command(link.name, FIRE, t_source, t_sent, rule, ok=True, note=verdict.note, basis=basis)
        self.observe_latency(t_sent - (t_source if basis is None else basis))
        if not self._counted.get(link.name, False):  # nobody will report this train: it stands as planned
            self.governor.record_delivered(link.name, TrainReport(t_sent, t_sent, None, None, UNREPORTED,
                                                                  confirmed=False))

    def _start(self, link: Link, t_source: float, rule: str, duration_s: float, ramp_s: float | None,
               basis: float | None = None) -> None:
        params = {"duration_s": duration_s}
        if ramp_s is not None:
            params["ramp_s"] = ramp_s
        verdict = self._request(link.name, START, t_source, basis, params, rule)
        if not verdict:
            self._command(link.name, START, t_source, None, rule, ok=False, reason=verdict.reason)
            return
        try:
            t_sent = link.driver.start()
        except DeviceError as exc:
            self.governor.request(StimRequest(link.name, STOP, self.clock(), {}, "start failed"))
            self._device_fault(link, f"start: {exc}", not_ready=isinstance(exc, NotReady))
            return
        with self._lock:
            link.running_until = t_sent + duration_s
        self._command(link.name, START, t_source, t_sent, rule, ok=True, note=verdict.note, basis=basis)
        if not link.driver.sends_settings_while_idle:
            threading.Thread(target=self._apply_when_running, args=(link, rule), daemon=True).start()

    def _stop(self, link: Link, t_source: float, rule: str, basis: float | None = None) -> None:
        with self._lock:
            link.running_until = None
            link.ramp_target = None
        self._request(link.name, STOP, t_source, basis, {}, rule)
        try:
            t_sent = link.driver.stop()
        except DeviceError as exc:
            self._device_fault(link, f"stop: {exc}")
            return
        self.governor.confirm_stopped(link.name, t_sent)
        self._command(link.name, STOP, t_source, t_sent, rule, ok=True, basis=basis)

    def _apply_when_running(self, link: Link, rule: str) -> None:
        """A device that takes no settings while idle (Starstim) starts with its own (its template's);
        once it is ready, send ours."""
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and not self._halt.is_set() and link.running_until is not None:
            try:
                if link.driver.status().ready:
                    kwargs = link.driver.command_parameters(self.governor.settings(link.name))
                    if kwargs:
                        t_sent = link.driver.set_parameters(**kwargs)
                        self._command(link.name, SET, None, t_sent, rule, ok=True, params=kwargs)
                    return
            except NotReady:
                pass
            except DeviceError as exc:
                self._device_fault(link, f"settings at start: {exc}")
                return
            time.sleep(0.05)

    # ------------------------------------------------------------------ loop latency
    def observe_latency(self, latency_s: float) -> None:
        """A measured sample-to-decision (or -to-wire) latency. Over the site's budget it raises the
        'latency' interlock; once the loop has stayed within budget for LATENCY_RECOVERY_S the
        interlock is lifted by itself (the cause, e.g. a burst of load, is gone)."""
        budget = self.governor.site.max_loop_latency_s
        t = self.clock()
        if not latency_s <= budget:
            self._latency_ok_since = None
            if not self.governor.inhibited_by(LATENCY_SOURCE):  # raised once, not on every late frame
                self.governor.check_latency(latency_s)
            return
        if not self.governor.inhibited_by(LATENCY_SOURCE):
            self._latency_ok_since = None
            return
        if self._latency_ok_since is None:
            self._latency_ok_since = t
        elif t - self._latency_ok_since >= LATENCY_RECOVERY_S:
            self._latency_ok_since = None
            self.governor.clear(LATENCY_SOURCE)

    # ------------------------------------------------------------------ watchdog
    def poll(self) -> None:
        """Called every few tens of ms: stop runs at their planned end, step ramps, raise stalls."""
        self.governor.poll()
        t = self.clock()
        for link in list(self.links.values()):
            if link.running_until is not None and t >= link.running_until:
                self._stop(link, t, "planned end")
            self._ramp_step(link, t)
        for name in self.governor.overdue():
            overdue = self.links.get(name)
            if overdue is not None:
                self._stop(overdue, t, "overdue")

    def _ramp_step(self, link: Link, t: float) -> None:
        with self._lock:
            target, rate, rule = link.ramp_target, link.ramp_rate, link.ramp_rule
            if target is None or rate is None:
                return
            current = self.governor.settings(link.name).get("current_a", 0.0)
            if _same(current, target):
                link.ramp_target = None
                return
            last = getattr(link, "_last_step", -math.inf)
            if t - last < RAMP_STEP_S:
                return
            step = RAMP_MARGIN * rate * RAMP_STEP_S  # below the rate: the governor measures the interval itself
            new = min(target, current + step) if target > current else max(target, current - step)
            link._last_step = t  # type: ignore[attr-defined]
        probe = self.governor.check(StimRequest(link.name, SET, t, {"current_a": new}, rule))
        if not probe and probe.limit == "ramp_rate_max":
            return  # e.g. the start's own ramp-in is still running: step once the rate allows it
        if not probe:
            with self._lock:
                link.ramp_target = None  # refused for another reason: said once (below), then given up
        self._set(link.name, {"current_a": new}, t, rule or "ramp", send=True)

    # ------------------------------------------------------------------ faults and events
    def device_error(self, name: str, reason: str) -> None:
        """A driver reports a fault from its own thread (e.g. the trigger line stuck high)."""
        link = self.links.get(name)
        if link is not None:
            self._device_fault(link, reason)

    def _device_fault(self, link: Link, reason: str, not_ready: bool = False) -> None:
        text = f"{link.name}: {reason}"
        if not_ready:  # the device cannot take it yet: refused with the reason, nothing else is wrong
            self.bus.publish(rec.NotReady(link.name, text).event(self.clock()))
            return
        self.governor.inhibit(DEVICE_PREFIX + link.name, f"device error: {text}")
        self.bus.publish(rec.Fault(DEVICE_PREFIX + link.name, text).event(self.clock()))
        with self._lock:
            link.running_until = None
            link.ramp_target = None
        self.governor.disarm(link.name, f"device error: {reason}")
        self._disarm_driver(link, reason)

    def _disarm_driver(self, link: Link, reason: str) -> None:
        try:
            t = link.driver.disarm()
        except Exception as exc:  # the link may be gone; the device's own keep-alive disarms it then
            self.bus.publish(rec.Fault(DEVICE_PREFIX + link.name, f"disarm failed: {exc}").event(self.clock()))
            return
        self._command(link.name, DISARM, None, t, reason, ok=True)

    def _refused_early(self, name: str, kind: str, t_source: float, rule: str, reason: str) -> None:
        self._command(name, kind, t_source, None, rule, ok=False, reason=reason)

    def _command(self, device: str, kind: str, t_source: float | None, t_sent: float | None, rule: str | None, *,
                 ok: bool, reason: str = "", note: str = "", params: Mapping[str, Any] | None = None,
                 basis: float | None = None) -> None:
        latency = controller_latency = None
        if t_source is not None and t_sent is not None:
            latency = t_sent - t_source  # end to end: from the detecting sample
            controller_latency = t_sent - (t_source if basis is None else basis)  # from its arrival
        numbers = {k: float(v) for k, v in params.items() if isinstance(v, (int, float))} if params else None
        self.bus.publish(rec.Command(device, kind, ok, rule, t_sent, latency, controller_latency, reason, note,
                                     numbers).event(self.clock(), t_source))

    # ------------------------------------------------------------------ timed pulses
    def _run_timed(self) -> None:
        while not self._halt.is_set():
            item = self._timed.get()
            if item is None:
                return
            at, action, t_source, basis, t_decided, rule, features = item
            wait = at - self.clock()
            if wait > 0.002:
                time.sleep(wait - 0.002)
            while self.clock() < at:
                pass  # the last 2 ms: spin, sleep() is too coarse for phase
            # the decision's age counts from when it was made, not from the planned wait
            wait = max(0.0, at - t_decided)
            self._execute(action, t_source + wait, rule, features, basis + wait)


def fired_today(governor: Governor, device: str, rule: str, wall: datetime) -> int:
    """Deliveries a rule made today (site days), from the dose ledger: for per_day caps across sessions."""
    ledger = governor.ledger
    today = ledger.today(wall)
    return sum(1 for _, e in ledger.device_entries(device)
               if e.rule == rule and e.kind in (FIRE, START) and local_date(e.wall, ledger.tz) == today)


def _same(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
