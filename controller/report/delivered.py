"""Planned vs delivered pulses in the session report, from the journal's 'delivery' and 'short_train' events.

Why: the governor counts a train's planned dose when it commits it; what the device delivered is
known only when the train ends and its driver reports it (a trigger box skips a slot its pulse thread
was late for; a stop or a disarm cuts a train). The governor journals every such report ('delivery':
planned, delivered, what the ledger now counts) and every train that came out short ('short_train',
with the reason). This module turns them into the report's per-device figures and the table of short
trains, so a reader sees both numbers and why they differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from controller.event_records import JournalRecords, ShortTrain, TrainDelivered

DEFINITION = (
    "planned = pulses the governor committed (counted before each train); delivered = planned, corrected by "
    "what the devices reported when each train ended (a train whose device cannot count stays as planned, "
    "'not confirmed'); the dose ledger counts delivered pulses once a train has been reported"
)


def _num(x: float | None) -> float | None:
    """A finite journal number, else None."""
    return float(x) if x is not None and math.isfinite(x) else None


@dataclass
class Deliveries:
    """The session's train reports and short trains, times in seconds since the session start."""

    reports: list[dict[str, Any]] = field(default_factory=list)
    short: list[dict[str, Any]] = field(default_factory=list)


def collect(journal: JournalRecords, t0: float) -> Deliveries:
    """Every 'delivery' and 'short_train' event of the journal, in order."""
    out = Deliveries()
    for e in journal.ordered:
        r = e.record
        if not isinstance(r, TrainDelivered):  # a ShortTrain is one too
            continue
        t_start = _num(r.t_start)
        row = {"t_s": (t_start if t_start is not None else e.t) - t0, "device": r.device, "train": r.train,
               "rule": r.rule, "planned": _num(r.planned), "delivered": _num(r.delivered),
               "recorded": _num(r.recorded), "confirmed": r.confirmed, "ended_by": r.ended_by,
               "reason": r.reason or None, "missed_slots": len(r.missed)}
        (out.short if isinstance(r, ShortTrain) else out.reports).append(row)
    return out


def device_figures(deliveries: Deliveries, device: str, planned: float | None) -> dict[str, Any]:
    """Per device: planned and delivered pulses, trains reported (confirmed or not), short trains.

    ``planned``: the pulses the device's allowed fire/start commands committed (None if unknown)."""
    reports = [r for r in deliveries.reports if r["device"] == device]
    shortfall = sum(r["delivered"] - r["planned"] for r in reports
                    if r["delivered"] is not None and r["planned"] is not None)
    return {
        "pulses_planned": planned,
        "pulses_delivered": None if planned is None else planned + shortfall,
        "trains_confirmed": sum(1 for r in reports if r["confirmed"]),
        "trains_not_confirmed": sum(1 for r in reports if not r["confirmed"]),
        "short_trains": sum(1 for r in deliveries.short if r["device"] == device),
    }
