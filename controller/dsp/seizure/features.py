"""Seizure-onset evaluators in the style of ``features.py``: read a ring window when due.

Like ``PeakToPeakFeature`` they are called once per due sample, in sample order, after the
ring holds every sample up to it; unlike the spectral features they keep state between
calls (the long-term trend, the half-wave tracker), so each evaluator belongs to one feature.
``values()`` gives the per-channel numbers (the standalone detectors and the bench use them),
``__call__()`` the one float a protocol sees: a reduction over the feature's channels.

When the ring's sample count goes backwards (the pipeline was reset after a reconnect) the
evaluators start over by themselves; ``reset()`` does the same explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, SupportsFloat

import numpy as np
from numpy.typing import NDArray

from controller.dsp.features import ChannelSource
from controller.dsp.seizure.halfwave import HalfWaveCriteria, HalfWaveTracker
from controller.dsp.seizure.trend import Trend
from controller.lang.compiled import ChannelReduce, ChannelsAbove

TrendOutput = Literal["ratio", "value"]
# per-channel values -> one number (a numpy scalar or int)
Reducer = Callable[[NDArray[np.float64]], SupportsFloat]
_REDUCERS: dict[str, Reducer] = {"mean": np.mean, "median": np.median, "max": np.max}


def _reducer(reduce: ChannelReduce) -> Reducer:
    """Per-channel values -> one number: a statistic, or a channel vote (how many are above a level)."""
    if isinstance(reduce, ChannelsAbove):
        level = reduce.level
        return lambda x: np.count_nonzero(x > level)  # NaN (trend warming up) is never above
    try:
        return _REDUCERS[reduce]
    except (KeyError, TypeError):
        raise ValueError(f"channel reduction must be one of {tuple(_REDUCERS)} or ChannelsAbove, got {reduce!r}") from None


class _TrendedWindowFeature:
    """A per-channel window measure and its ratio to the measure's own long-term trend."""

    __slots__ = ("_source", "_window", "_trend", "_ratio_out", "_reduce", "_last_count")

    def __init__(
        self,
        source: ChannelSource,
        window: int,
        trend: Trend,
        output: TrendOutput = "ratio",
        reduce: ChannelReduce = "mean",
    ) -> None:
        if output not in ("ratio", "value"):
            raise ValueError(f"output must be 'ratio' or 'value', got {output!r}")
        self._source = source
        self._window = window
        self._trend = trend
        self._ratio_out = output == "ratio"
        self._reduce = _reducer(reduce)
        self._last_count = -1

    def reset(self) -> None:
        self._trend.reset()
        self._last_count = -1

    def _measure(self, w: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        """(measure, ratio to trend) per channel for the newest window; advances the trend."""
        count = self._source.ring.count
        if count <= self._last_count:  # ring reset under us: a new stream, a new baseline
            self._trend.reset()
        self._last_count = count
        value = self._measure(self._source.window(self._window))
        return value, self._trend.ratio(value)

    def __call__(self) -> float:
        value, ratio = self.values()
        return float(self._reduce(ratio if self._ratio_out else value))


class LineLengthFeature(_TrendedWindowFeature):
    """Line length: sum of ``|x[n] - x[n-1]|`` over the W samples of the window (W - 1 steps)."""

    __slots__ = ()

    def _measure(self, w: np.ndarray) -> np.ndarray:
        length: NDArray[np.float64] = np.abs(np.diff(w, axis=1)).sum(axis=1)
        return length


class AreaFeature(_TrendedWindowFeature):
    """Area: sum of ``|x[n]|`` over the W samples of the window (use a high-passed/band-passed signal)."""

    __slots__ = ()

    def _measure(self, w: np.ndarray) -> np.ndarray:
        area: NDArray[np.float64] = np.abs(w).sum(axis=1)
        return area


def halfwave_ring_capacity(window: int, every: int) -> int:
    """Ring samples a ``HalfWaveFeature`` needs: every sample between two evaluations, also across a
    restarted window (after a gap the next evaluation comes up to ``every + window - 1`` samples later)."""
    return window + every


class HalfWaveFeature:
    """Number of qualified half-waves confirmed in the window (see ``seizure_halfwave``).

    The tracker must see every sample once; it catches up from the ring at each call, so the
    ring must hold ``halfwave_ring_capacity(window, every)`` samples.
    """

    __slots__ = ("_source", "_window", "_tracker", "_reduce")

    def __init__(
        self, source: ChannelSource, window: int, criteria: HalfWaveCriteria, reduce: ChannelReduce = "mean"
    ) -> None:
        n = source.ring.n_channels if source.rows is None else source.rows.size
        self._source = source
        self._window = window
        self._tracker = HalfWaveTracker(n, criteria)
        self._reduce = _reducer(reduce)

    def reset(self) -> None:
        self._tracker.reset()

    def values(self) -> np.ndarray:
        """Counts per channel (as floats) for the window ending at the ring's newest sample."""
        ring = self._source.ring
        count = ring.count
        if count <= self._tracker.seen:  # no new sample since the last call: the ring was reset under us
            self._tracker.reset()
        new = count - self._tracker.seen
        if new > ring.capacity:
            raise ValueError(
                f"half-wave feature missed samples: {new} arrived since the last evaluation but the ring "
                f"holds {ring.capacity}; size it with halfwave_ring_capacity(window, every)"
            )
        if new:
            self._tracker.observe(self._source.window(new))
        return self._tracker.count(count - 1, self._window)

    def __call__(self) -> float:
        return float(self._reduce(self.values()))
