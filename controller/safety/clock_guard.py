"""The governor's time line: two clocks, trusted only as far as they agree.

The governor measures intervals on a time line that advances by the SMALLER of the steps
of the LSL clock and of the wall clock since it last looked, and never goes back: a clock
that jumps back, stops or runs fast cannot make an interval look longer than it was, as
long as the other clock is right. Looking also reports clock faults: the LSL clock going
back, or the two clocks disagreeing by more than 1 s + 0.1 % of the step (a stepped wall
clock, a suspended host, a broken clock); ``epoch`` counts them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from controller.lang import units
from controller.safety import quantities as q
from controller.safety.limits import short_of

CLOCK_MISMATCH_S = 1.0  # the two clocks may disagree by this much per step ...
CLOCK_MISMATCH_REL = 1e-3  # ... plus this fraction of the step (NTP slews at most 0.05 %)
WALL_RESOLUTION_S = 1e-6  # datetime's resolution: the wall clock's step is known to this much


@dataclass(frozen=True)
class Stamp:
    """One look at the clocks: the time line's value, the LSL reading, the wall time."""

    g: float
    reading: float
    wall: datetime
    problem: str | None = None  # a clock fault seen at this look


class TimeLine:
    """``look`` (pure) then ``take`` (commit) each reading of the two clocks."""

    def __init__(self) -> None:
        self.g: float | None = None
        self.raw: tuple[float, datetime] | None = None  # the last (LSL reading, wall time) taken
        self.epoch = 0  # clock faults seen

    def look(self, reading: float, wall: datetime) -> Stamp:
        if self.raw is None or self.g is None:
            return Stamp(reading if math.isfinite(reading) else 0.0, reading, wall)
        if not math.isfinite(reading):
            return Stamp(self.g, reading, wall, f"the LSL clock reads {reading!r}")
        r0, w0 = self.raw
        d_lsl, d_wall = reading - r0, (wall - w0).total_seconds()
        g = self.g + max(0.0, min(d_lsl, d_wall + WALL_RESOLUTION_S))
        problem = None
        if short_of(d_lsl, 0.0):
            problem = f"the clock went back {q.fmt(-d_lsl, units.DURATION)} (clock jump)"
        elif abs(d_lsl - d_wall) > CLOCK_MISMATCH_S + CLOCK_MISMATCH_REL * abs(d_wall):
            problem = (f"the LSL clock advanced {q.fmt(d_lsl, units.DURATION)} but the wall clock "
                       f"{q.fmt(d_wall, units.DURATION)} (clock mismatch)")
        return Stamp(g, reading, wall, problem)

    def take(self, stamp: Stamp) -> None:
        if stamp.problem is not None:
            self.epoch += 1
        self.g = stamp.g
        if math.isfinite(stamp.reading):
            self.raw = (stamp.reading, stamp.wall)
