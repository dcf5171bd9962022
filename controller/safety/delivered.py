"""A train's delivered dose: from the driver's count to the correction the dose ledger records.

Why a module of its own: the governor counts a train's whole planned dose before it starts, so the
caps hold while it runs (never less than what might be delivered). When the train ends the driver
says what left (a ``TrainEnd``: drivers/delivery.py's TrainReport is one; the governor, like the rest
of controller/safety, does not import drivers); from then on the ledger must count that. This
module is the pure arithmetic of that step (no clock, no I/O, no lock): which committed train a
report belongs to, what dose its count means, the correction that brings the counted dose to it,
and the sentence that says why a train came out short. The governor applies it under its lock.

Rules (each errs on counting more, never less):

* the count becomes a dose with the largest charge per pulse the train had (a run whose current
  was raised counts every pulse at the highest current);
* a count that cannot be turned into a dose (a waveform or direct current: no pulses), or a train
  whose ledger entries fall on different days (a run that crossed midnight), keeps the counted
  dose, except that a count larger than the counted one is always added;
* a driver that cannot count (``delivered`` None) leaves the counted (planned) dose, not confirmed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from typing import Protocol

from controller.safety import dose as dosing
from controller.safety.dose import Totals
from controller.safety.ledger import DoseEntry, local_date

# How a train ended, as drivers/delivery.py names it.
COMPLETED, STOPPED, DISARMED, FAULT, UNREPORTED = "completed", "stopped", "disarmed", "fault", "unreported"
MAX_AWAITING = 8  # trains per device kept waiting for a report (one runs at a time; older ones stay as counted)


class Missed(Protocol):
    """A slot of the train that was skipped (drivers/delivery.py: MissedSlot)."""

    @property
    def pulse(self) -> int: ...  # 1-based position in the train
    @property
    def t_due(self) -> float: ...  # LSL time it was due
    @property
    def late_s(self) -> float: ...  # how late the pulse thread was for it


class TrainEnd(Protocol):
    """What a driver reports when a train ends (drivers/delivery.py: TrainReport)."""

    # read-only members (properties): a driver's frozen dataclass satisfies them
    @property
    def t_start(self) -> float: ...  # LSL time of its first rising edge
    @property
    def t_end(self) -> float: ...  # LSL time it ended
    @property
    def delivered(self) -> int | None: ...  # pulses that left; None: the driver cannot count them
    @property
    def ended_by(self) -> str: ...  # completed | stopped | disarmed | fault | unreported
    @property
    def missed(self) -> Sequence[Missed]: ...
    @property
    def confirmed(self) -> bool: ...
    @property
    def detail(self) -> str: ...


@dataclass
class Awaiting:
    """A committed train (fire of several pulses, or a start) whose report has not come yet."""

    entry: int  # its ledger entry number
    kind: str  # fire | start
    t: float  # governor clock reading at the commit: its first pulse leaves after this
    planned: float  # its planned pulses
    pulse_charge_c: float | None  # largest charge of one pulse it had; None: not a pulse train
    rule: str | None = None
    t_source: float | None = None  # the detecting sample, for the journal


@dataclass(frozen=True)
class Accounting:
    """What the ledger records for a train that ended."""

    dose: Totals  # delivered in total, as the ledger will count it
    counted: Totals  # counted for the train before (planned, with any extra/overrun/refund)
    correction: Totals  # dose - counted: the 'delivered' entry's pulses and charge
    delivered: int | None  # the driver's count (None: it cannot count)
    confirmed: bool
    short: bool  # fewer pulses than planned
    over: bool  # more pulses than were counted for it
    reason: str  # why short, or why the counted dose was kept ("" for a complete train)


def match(waiting: Sequence[Awaiting], t_start: float) -> Awaiting | None:
    """The newest committed train that was committed before ``t_start`` (the report's first edge).

    A device runs one train at a time and the governor commits the next one only after the previous
    one's planned end, so the newest train committed before the first edge is the one that made it.
    """
    if not math.isfinite(t_start):
        return None
    for item in reversed(waiting):
        if item.t <= t_start:
            return item
    return None


def pulse_charge(kind: str, settings: dict[str, float], delivery: dosing.Delivery) -> float | None:
    """The charge of one pulse (C, all phases); None when the stimulation is not a pulse train.

    A fire counts ``charge / pulses`` exactly as committed (0 when the charge is unknown, as it was
    counted); a start is a pulse train only with a frequency and a pulse width.
    """
    if kind == dosing.FIRE:
        return (delivery.charge_c or 0.0) / delivery.pulses if delivery.pulses > 0 else None
    freq = settings.get("frequency_hz")
    if settings.get("pulse_width_s") is None or freq is None or not freq > 0:
        return None
    one = dosing.delivery(dosing.FIRE, {**settings, "n_pulses": 1})
    return one.charge_c or 0.0


def counted(entries: Sequence[DoseEntry]) -> Totals:
    """What the ledger counts for a train: its entry and every correction of it (stops count nothing)."""
    total = Totals()
    for e in entries:
        if e.kind != "stop":
            total = total + Totals(e.pulses, e.charge_c)
    return total


def same_days(entries: Sequence[DoseEntry], tz: tzinfo | None) -> bool:
    """Whether every dose entry of the train touches the same calendar days: only then can one
    correction (dated like the train) lower its count on every day without undercounting one."""
    spans = {(local_date(e.wall, tz), local_date(e.wall + timedelta(seconds=max(0.0, e.end_s)), tz))
             for e in entries if e.kind != "stop"}
    return len(spans) <= 1


def account(item: Awaiting, entries: Sequence[DoseEntry], report: TrainEnd, stop: str | None,
            tz: tzinfo | None) -> Accounting:
    """The delivered dose of train ``item`` (ledger ``entries``) from ``report``; ``stop``: the
    stop/disarm that ended it, as the governor saw it (e.g. "disarm: E-STOP: operator").
    Raises ValueError for a count that is not a whole number >= 0."""
    before = counted(entries)
    k = report.delivered
    if k is None:
        return Accounting(before, before, Totals(), None, False, False, False,
                          "the device does not report the pulses it delivered: the planned dose stands")
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k < 0 or k != int(k):
        raise ValueError(f"a train's delivered count must be a whole number >= 0, got {k!r}")
    k = int(k)
    kept = ""
    if item.pulse_charge_c is None:
        kept = "a count of pulses is not a dose for this stimulation (no pulse train): the counted dose stands"
        exact = Totals(k, before.charge_c)
    else:
        exact = Totals(k, k * item.pulse_charge_c)
        if not same_days(entries, tz):
            kept = "its doses were counted on different days: the counted dose stands"
    dose = Totals(max(before.pulses, exact.pulses), max(before.charge_c, exact.charge_c)) if kept else exact
    correction = Totals(dose.pulses - before.pulses, dose.charge_c - before.charge_c)
    short = k < item.planned
    why = shortfall(report, k, item.planned, stop) if short else ""
    reason = "; ".join(x for x in (why, kept) if x)
    return Accounting(dose, before, correction, k, report.confirmed, short, k > before.pulses, reason)


def shortfall(report: TrainEnd, delivered: int, planned: float, stop: str | None) -> str:
    """Why a train delivered ``delivered`` of ``planned`` pulses, in one sentence for the journal."""
    of = f"{delivered} of {planned:g} pulses"
    if report.ended_by in (STOPPED, DISARMED):
        text = f"{report.ended_by} after {of}" + (f" ({stop})" if stop else "")
    elif report.ended_by == FAULT:
        text = f"device fault after {of}" + (f": {report.detail}" if report.detail else "")
    elif report.ended_by == UNREPORTED:
        text = f"{of} (not reported by the device)"
    else:
        text = f"{of}"
    if report.missed:
        slots = ", ".join(f"pulse {m.pulse} due at +{m.t_due - report.t_start:.3f} s ({m.late_s * 1e3:.1f} ms late)"
                          for m in report.missed)
        n = len(report.missed)
        text += (f"; {n} slot{'s' if n != 1 else ''} skipped because the pulse thread woke too late: {slots}")
    elif report.ended_by == COMPLETED:
        text += " (completed)"
    if not report.confirmed:
        text += "; not confirmed (a pulse whose write failed is counted)"
    return text
