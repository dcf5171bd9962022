"""A site's table of maximum single-train durations by frequency and intensity.

TMS safety guidelines publish such a table (Wassermann 1998, Table 4, reproduced in Rossi
et al. 2009): rows are frequencies, columns intensities (usually in % of the resting
motor threshold), cells the longest train that was found safe. The governor never
interpolates and never extrapolates:

* a request at frequency f and intensity i uses the row of the smallest tabulated
  frequency >= f and the column of the smallest tabulated intensity >= i (an intensity
  below the first column uses the first column); beyond the last row or column there
  is no safe duration at all;
* published tables are not monotonic everywhere (measurement noise: e.g. 10 Hz is
  0.8 s at 150 % but 0.9 s at 160 %). Safety must not increase with frequency or
  intensity, so each cell is replaced by the minimum of itself and every cell at a
  lower-or-equal frequency and intensity before looking up (the lower envelope).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MOTOR_THRESHOLD = "motor_threshold"  # columns in % of the resting motor threshold
OUTPUT = "output"  # columns in % of maximum stimulator output
RELATIVE_TO = (MOTOR_THRESHOLD, OUTPUT)

_REL = 1e-9  # relative tolerance for "at or below a tabulated value" (float noise only)


@dataclass(frozen=True)
class Cell:
    """The table cell a lookup used, for messages."""

    max_duration_s: float
    frequency_hz: float  # the row used
    intensity_pct: float  # the column used


@dataclass(frozen=True)
class TrainTable:
    source: str  # the publication the values come from, as the site wrote it
    relative_to: str  # MOTOR_THRESHOLD or OUTPUT
    intensities: tuple[float, ...]  # column headings in %, strictly increasing
    frequencies: tuple[float, ...]  # row headings in Hz, strictly increasing
    durations: tuple[tuple[float, ...], ...]  # seconds, [row][column], as written
    envelope: tuple[tuple[float, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.relative_to not in RELATIVE_TO:
            raise ValueError(f"relative_to must be one of {RELATIVE_TO}, got {self.relative_to!r}")
        if list(self.intensities) != sorted(set(self.intensities)) or not self.intensities:
            raise ValueError("intensities must be strictly increasing")
        if list(self.frequencies) != sorted(set(self.frequencies)) or not self.frequencies:
            raise ValueError("frequencies must be strictly increasing")
        if len(self.durations) != len(self.frequencies) or any(len(r) != len(self.intensities) for r in self.durations):
            raise ValueError("durations must have one row per frequency and one column per intensity")
        env: list[list[float]] = []
        for r, row in enumerate(self.durations):
            out: list[float] = []
            for c, value in enumerate(row):
                best = value
                if c > 0:
                    best = min(best, out[c - 1])
                if r > 0:
                    best = min(best, env[r - 1][c])
                out.append(best)
            env.append(out)
        object.__setattr__(self, "envelope", tuple(tuple(r) for r in env))

    @property
    def unit_label(self) -> str:
        return "% MT" if self.relative_to == MOTOR_THRESHOLD else "% MSO"

    def lookup(self, frequency_hz: float, intensity_pct: float) -> Cell | None:
        """The cell that bounds a train at (frequency, intensity), or None when the request
        lies beyond the table (no train is allowed there)."""
        r = _first_at_or_above(self.frequencies, frequency_hz)
        c = _first_at_or_above(self.intensities, intensity_pct)
        if r is None or c is None:
            return None
        return Cell(self.envelope[r][c], self.frequencies[r], self.intensities[c])

    def max_duration(self, frequency_hz: float, intensity_pct: float) -> float | None:
        cell = self.lookup(frequency_hz, intensity_pct)
        return None if cell is None else cell.max_duration_s


def _first_at_or_above(values: tuple[float, ...], x: float) -> int | None:
    for i, v in enumerate(values):
        if x <= v * (1 + _REL):
            return i
    return None
