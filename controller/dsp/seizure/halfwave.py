"""Half-wave detection, streaming: qualified half-waves found sample-exactly across chunk boundaries.

Definitions (shared with the offline reference in ``seizure_offline``):

- A step is ``x[n] - x[n-1]``; its direction is its sign, and a zero step (a plateau) keeps the
  direction of the last non-zero step, so a plateau belongs to the run it interrupts.
- A turning point is a sample ``j`` where the direction of the step into ``j`` differs from that
  of the step out of it (both defined). It is known once sample ``j + 1`` has arrived.
- A half-wave is the monotonic run between two consecutive turning points ``i < j``; its
  amplitude is ``|x[j] - x[i]|`` and its duration ``(j - i) / fs``. It qualifies when both lie
  within the configured [min, max] ranges (inclusive). The run before the first turning point
  has no start and is never a half-wave.
- A qualified half-wave is stamped with its confirmation sample ``j + 1`` (causal), and a
  window ending at sample ``k`` counts the half-waves stamped in ``[k - W + 1, k]``.

The tracker carries the newest sample, the current direction and the last turning point from
chunk to chunk, so a half-wave that spans a chunk boundary is found exactly once, whatever the
chunking. Work per chunk is vectorised over samples and channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

# A duration bound like 0.05 s * 100 Hz = 5.000000000000001 samples must still admit 5 samples.
DURATION_SLACK = 1e-9


@dataclass(frozen=True)
class HalfWaveCriteria:
    """Which half-waves qualify: amplitude in signal units, duration in samples (inclusive ranges).

    The amplitude bounds are one number for every channel or a sequence with one per channel.
    """

    min_amplitude: float | Sequence[float]
    max_amplitude: float | Sequence[float]
    min_samples: float
    max_samples: float
    if TYPE_CHECKING:  # the amplitude bounds as arrays, set by __post_init__ (not fields at run time)
        _lo: NDArray[np.float64] = field(init=False, repr=False, compare=False)
        _hi: NDArray[np.float64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lo = np.asarray(self.min_amplitude, dtype=np.float64)
        hi = np.asarray(self.max_amplitude, dtype=np.float64)
        if lo.ndim > 1 or hi.ndim > 1 or not (np.all(lo >= 0.0) and np.all(hi >= lo)):
            raise ValueError(
                f"half-wave amplitude range [{self.min_amplitude}, {self.max_amplitude}] must satisfy 0 <= min <= max "
                "(numbers, or one per channel)"
            )
        if not (self.min_samples > 0.0 and self.max_samples >= self.min_samples):
            raise ValueError(
                f"half-wave duration range [{self.min_samples}, {self.max_samples}] samples must satisfy 0 < min <= max"
            )
        object.__setattr__(self, "_lo", lo)
        object.__setattr__(self, "_hi", hi)

    @classmethod
    def from_seconds(
        cls,
        fs: float,
        min_amplitude: float | Sequence[float],
        max_amplitude: float | Sequence[float],
        min_duration_s: float,
        max_duration_s: float,
    ) -> HalfWaveCriteria:
        return cls(min_amplitude, max_amplitude, min_duration_s * fs, max_duration_s * fs)

    def check_channels(self, n_channels: int, where: str) -> None:
        """ValueError naming ``where`` if per-channel amplitude bounds do not match ``n_channels``."""
        for name, v in (("min_amplitude", self._lo), ("max_amplitude", self._hi)):
            if v.ndim == 1 and v.size != n_channels:
                raise ValueError(f"{where}: {name} gives {v.size} values for {n_channels} channels")

    def qualifies(self, amplitude: np.ndarray, duration: np.ndarray, rows: np.ndarray | int = 0) -> np.ndarray:
        """Boolean mask of the half-waves (amplitude, duration in samples, channel) that qualify."""
        lo_amp = self._lo[rows] if self._lo.ndim else self._lo
        hi_amp = self._hi[rows] if self._hi.ndim else self._hi
        ok = (amplitude >= lo_amp) & (amplitude <= hi_amp)
        ok &= duration >= self.min_samples * (1.0 - DURATION_SLACK)
        ok &= duration <= self.max_samples * (1.0 + DURATION_SLACK)
        return ok


class HalfWaveTracker:
    """Streaming qualified-half-wave finder over ``n_channels`` rows; feed every sample once, in order."""

    __slots__ = ("criteria", "_seen", "_x_last", "_dir", "_turn_idx", "_turn_val", "_ev_row", "_ev_idx", "_n", "_directed")

    def __init__(self, n_channels: int, criteria: HalfWaveCriteria) -> None:
        criteria.check_channels(n_channels, "half-wave tracker")
        self.criteria = criteria
        self._n = n_channels
        self.reset()

    @property
    def seen(self) -> int:
        """Samples observed since construction / reset."""
        return self._seen

    def reset(self) -> None:
        n = self._n
        self._seen = 0
        self._x_last = np.zeros(n)  # newest sample of each row
        self._dir = np.zeros(n)  # direction (sign) of the newest step; 0 = none yet
        self._directed = False  # every row has a direction (true soon after the start)
        self._turn_idx = np.full(n, -1, dtype=np.int64)  # last turning point; -1 = none yet
        self._turn_val = np.zeros(n)
        self._ev_row = np.empty(0, dtype=np.intp)  # qualified half-waves: row, confirmation sample
        self._ev_idx = np.empty(0, dtype=np.int64)

    def observe(self, block: np.ndarray) -> None:
        """Take the next samples, ``block`` of shape ``(n_channels, n)``."""
        if block.ndim != 2 or block.shape[0] != self._n:
            raise ValueError(f"half-wave tracker expects blocks of shape ({self._n}, n), got {block.shape}")
        m = block.shape[1]
        if m == 0:
            return
        start = self._seen
        self._seen = start + m
        if start == 0:
            xe, base = np.asarray(block, dtype=np.float64), 0  # xe[:, p] is sample base + p
            if m < 2:
                self._x_last = xe[:, -1].copy()
                return
        else:
            xe = np.empty((self._n, m + 1))
            xe[:, 0] = self._x_last
            xe[:, 1:] = block
            base = start - 1
        self._x_last = xe[:, -1].copy()

        # Column q of ``step``: direction of the step from sample base + q to base + q + 1.
        step = np.sign(xe[:, 1:] - xe[:, :-1])
        if not step.all():  # plateaus: a zero step keeps the last direction (carried in if need be)
            cols = np.arange(step.shape[1])
            last_nz = np.where(step != 0, cols, -1)
            np.maximum.accumulate(last_nz, axis=1, out=last_nz)
            filled = np.take_along_axis(step, np.maximum(last_nz, 0), axis=1)
            step = np.where(last_nz >= 0, filled, self._dir[:, None])
        turn = np.empty(step.shape, dtype=bool)
        np.not_equal(step[:, 1:], step[:, :-1], out=turn[:, 1:])
        np.not_equal(step[:, 0], self._dir, out=turn[:, 0])
        if not self._directed:  # stream start: leaving "no direction yet" is not a turn
            before = np.concatenate([self._dir[:, None], step[:, :-1]], axis=1)
            turn &= before != 0
            self._directed = bool(step[:, -1].all())
        self._dir = step[:, -1].copy()
        rows, q = np.nonzero(turn)
        if rows.size == 0:
            return

        t_idx = q + base  # the turning sample is the one the changed step leaves
        t_val = xe[rows, q]
        new_row = rows[1:] != rows[:-1]
        first = np.concatenate(([True], new_row))
        last = np.concatenate((new_row, [True]))
        prev_idx = np.empty_like(t_idx)
        prev_idx[1:] = t_idx[:-1]
        prev_val = np.empty_like(t_val)
        prev_val[1:] = t_val[:-1]
        head = rows[first]
        prev_idx[first] = self._turn_idx[head]
        prev_val[first] = self._turn_val[head]
        ok = self.criteria.qualifies(np.abs(t_val - prev_val), (t_idx - prev_idx).astype(np.float64), rows)
        ok &= prev_idx >= 0
        tail = rows[last]
        self._turn_idx[tail] = t_idx[last]
        self._turn_val[tail] = t_val[last]
        if ok.any():
            self._ev_row = np.concatenate([self._ev_row, rows[ok]])
            self._ev_idx = np.concatenate([self._ev_idx, t_idx[ok] + 1])

    def count(self, end: int, window: int) -> np.ndarray:
        """Qualified half-waves per row confirmed in samples ``[end - window + 1, end]``.

        ``end`` must not decrease between calls (older half-waves are forgotten) and every
        sample up to ``end`` must have been observed.
        """
        if end >= self._seen:
            raise ValueError(f"half-wave count up to sample {end} requested but only {self._seen} samples observed")
        keep = self._ev_idx > end - window
        if not keep.all():
            self._ev_row, self._ev_idx = self._ev_row[keep], self._ev_idx[keep]
        inside = self._ev_idx <= end
        return np.bincount(self._ev_row[inside], minlength=self._n).astype(np.float64)


def default_durations(lo_hz: float, hi_hz: float) -> tuple[float, float]:
    """Half-wave duration range (s) matching a frequency band: half a period of hi .. of lo."""
    return 0.5 / hi_hz, (0.5 / lo_hz if lo_hz > 0 else math.inf)
