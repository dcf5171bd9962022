"""What a train delivered, as the driver saw it go out: reported once, when the train ends.

Why: the governor counts a train's whole planned dose before it starts, so that the caps hold
while it runs; but only the driver sees what really left. A trigger box writes every edge of a
train itself, so it knows which slots its pulse thread had to skip (it woke too late) and where
a stop, a disarm or a port failure cut the train. When the train ends the driver hands a
``TrainReport`` to its listener (``Stimulator.report_trains_to``); the controller records the
delivered dose in the dose ledger and journals a train that came out short, with the reason.

A driver that cannot count a train's pulses reports nothing; the controller then records the
planned dose as delivered, marked not confirmed. A leaf module: standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# How a train ended (``TrainReport.ended_by``).
COMPLETED = "completed"  # every slot of the train came due (some may have been skipped: see ``missed``)
STOPPED = "stopped"  # stop() ended it early
DISARMED = "disarmed"  # disarm() (E-STOP, device fault handling, session end) ended it early
FAULT = "fault"  # a write to the port failed: the train ended there
UNREPORTED = "unreported"  # the driver cannot count pulses: the planned dose stands, not confirmed
ENDINGS = (COMPLETED, STOPPED, DISARMED, FAULT, UNREPORTED)


@dataclass(frozen=True)
class MissedSlot:
    """A pulse of the train that was never written: its slot came while the pulse thread was late."""

    pulse: int  # its position in the train, 1-based
    t_due: float  # LSL time the slot was due
    late_s: float  # how late the pulse thread was for it (more than half a period, or it would be sent)

    def to_dict(self) -> dict[str, Any]:
        return {"pulse": self.pulse, "t_due": self.t_due, "late_s": self.late_s}


@dataclass(frozen=True)
class TrainReport:
    """One train, from its first rising edge to its end.

    ``delivered`` counts rising edges that left the driver (a pulse cut short by a stop counts:
    its edge already triggered the stimulator). ``confirmed`` is False when the count includes a
    pulse whose write failed (it may or may not have gone out: counted, so never undercounted),
    and for ``delivered=None``: the driver cannot tell.
    """

    t_start: float  # LSL time the first rising edge left (the t_sent of fire/start)
    t_end: float  # LSL time the train ended (its last edge, or when the stop/fault was seen)
    planned: int | None  # pulses the driver was asked for; None: a train until stop()
    delivered: int | None  # pulses that left; None: unknown (the planned dose stands)
    ended_by: str  # one of ENDINGS
    missed: tuple[MissedSlot, ...] = ()
    confirmed: bool = True
    detail: str = ""  # e.g. the port error

    def to_dict(self) -> dict[str, Any]:
        return {"t_start": self.t_start, "t_end": self.t_end, "planned": self.planned, "delivered": self.delivered,
                "ended_by": self.ended_by, "missed": [m.to_dict() for m in self.missed],
                "confirmed": self.confirmed, "detail": self.detail}
