"""Long-term trend of a windowed seizure feature, and the short/trend ratio a protocol tests.

Responsive-stimulation detectors (line length, area) compare a short window with what is
normal for this patient lately. The trend is fed one value per evaluation (every hop), per
channel, and the ratio at evaluation ``i`` divides value ``i`` by the trend of values
``0 .. i-1`` only: the current window never dilutes its own baseline.

Two causal trends, both O(channels) or O(L * channels) per evaluation, no drift:

- ``"mean"``: the plain mean of the last ``L`` values, held in a ring (``L = trend_s / every_s``).
  Exactly "the mean short-window value over the last trend_s seconds".
- ``"ema"``: an exponential average with time constant ``L`` hops, bias-corrected so that
  it is a proper weighted mean of all values so far (no dependence on an initial guess):
  ``m_i = (1 - a) m_(i-1) + a v_i``, ``m_(-1) = 0``, ``trend_i = m_i / (1 - (1 - a)^(i+1))``,
  ``a = 1 - exp(-1 / L)``.

Until ``min_count`` previous values exist the ratio is NaN (undefined): conditions on NaN
are false in the engine, so a detector cannot fire while its baseline is still forming.
A trend <= 0 (a flat signal) also gives NaN.

Hold (``hold_above``): a sustained seizure must not become the "normal" it is compared with
(a 60 s moving mean fed the seizure itself lost two thirds of its ratio in 35 s). While a
channel's ratio is above ``hold_above`` its trend holds: the value absorbed in its place is
the trend itself, so the trend stays where it was before the episode, as the long-term
trends of clinical responsive neurostimulators do. After ``hold_max`` consecutive held
evaluations the channel absorbs its real values again (a lasting change of the signal, an
electrode shift, is not a seizure forever); the next episode holds afresh.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import signal  # type: ignore[import-untyped]  # scipy: no type stubs installed

from controller.dsp.ring import RingBuffer

TrendKind = Literal["mean", "ema"]
TREND_KINDS: tuple[str, ...] = ("mean", "ema")


def trend_lengths(trend_s: float, trend_min_s: float | None, every: int, fs: float) -> tuple[int, int]:
    """(L, min_count) in evaluations for a trend of ``trend_s`` s fed every ``every`` samples.

    ``trend_min_s`` (default: ``trend_s``) is how much history must exist before ratios are defined.
    """
    hop_s = every / fs
    length = int(round(trend_s / hop_s))
    if not math.isfinite(trend_s) or length < 1:
        raise ValueError(f"trend of {trend_s} s is shorter than one evaluation hop ({hop_s} s)")
    min_s = trend_s if trend_min_s is None else trend_min_s
    min_count = int(round(min_s / hop_s))
    if not 1 <= min_count <= length:
        raise ValueError(
            f"trend warm-up of {min_s} s must lie between one hop ({hop_s} s) and the trend itself ({trend_s} s)"
        )
    return length, min_count


def hold_evaluations(hold_max_s: float | None, every: int, fs: float) -> int | None:
    """``hold_max_s`` in evaluations (at least one), None for no limit."""
    if hold_max_s is None:
        return None
    if not (math.isfinite(hold_max_s) and hold_max_s > 0):
        raise ValueError(f"hold_max must be a positive duration, got {hold_max_s} s")
    return max(1, int(round(hold_max_s / (every / fs))))


def _check_kind(kind: str) -> None:
    if kind not in TREND_KINDS:
        raise ValueError(f"trend kind must be one of {TREND_KINDS}, got {kind!r}")


def _safe_ratio(value: np.ndarray, trend: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(value, trend).shape, math.nan)
    np.divide(value, trend, out=out, where=trend > 0.0)
    return out


class Trend:
    """Causal per-channel trend; ``ratio(v)`` returns v / trend-so-far, then absorbs v."""

    __slots__ = ("kind", "length", "min_count", "hold_above", "hold_max", "_ring", "_alpha", "_keep", "_log_keep",
                 "_m", "_count", "_held")

    def __init__(self, n_channels: int, length: int, min_count: int, kind: TrendKind = "mean",
                 hold_above: float | None = None, hold_max: int | None = None) -> None:
        _check_kind(kind)
        if not 1 <= min_count <= length:
            raise ValueError(f"trend needs 1 <= min_count ({min_count}) <= length ({length})")
        _check_hold(hold_above, hold_max)
        self.kind = kind
        self.hold_above = hold_above
        self.hold_max = hold_max
        self.length = length
        self.min_count = min_count
        self._ring = RingBuffer(n_channels, length) if kind == "mean" else None
        self._alpha = -math.expm1(-1.0 / length)  # 1 - exp(-1/L), accurate for large L
        self._keep = 1.0 - self._alpha
        self._log_keep = math.log1p(-self._alpha)
        self._m = np.zeros(n_channels)
        self._count = 0
        self._held = np.zeros(n_channels, dtype=np.int64)  # consecutive held evaluations per channel

    @property
    def count(self) -> int:
        """Values absorbed so far."""
        return self._count

    def reset(self) -> None:
        if self._ring is not None:
            self._ring.reset()
        self._m.fill(0.0)
        self._count = 0
        self._held.fill(0)

    @property
    def holding(self) -> np.ndarray:
        """Per channel: is the trend held (its last value was above ``hold_above``)?"""
        return self._held > 0

    def current(self) -> np.ndarray:
        """Trend of the values absorbed so far (NaN while fewer than ``min_count``)."""
        n = self._count
        if n < self.min_count:
            return np.full(self._m.shape, math.nan)
        if self._ring is not None:
            mean: NDArray[np.float64] = self._ring.latest(min(n, self.length)).mean(axis=1)
            return mean
        return self._m / -math.expm1(n * self._log_keep)  # m / (1 - keep**n)

    def ratio(self, value: np.ndarray) -> np.ndarray:
        """``value`` (per channel) over the trend of the PREVIOUS values; then add ``value`` to the trend."""
        trend = self.current()
        out = _safe_ratio(value, trend)
        if self.hold_above is not None:
            value = _held_values(value, trend, out, self._held, self.hold_above, self.hold_max)
        if self._ring is not None:
            self._ring.write(value[:, None])
        else:
            self._m *= self._keep
            self._m += self._alpha * value
        self._count += 1
        return out


def _check_hold(hold_above: float | None, hold_max: int | None) -> None:
    if hold_above is not None and not (math.isfinite(hold_above) and hold_above > 1.0):
        raise ValueError(f"hold_above is a ratio to the trend above 1 (e.g. 1.5 for 150 %), got {hold_above}")
    if hold_max is not None and hold_max < 1:
        raise ValueError(f"hold_max must be at least one evaluation, got {hold_max}")


def _held_values(value: np.ndarray, trend: np.ndarray, ratio: np.ndarray, held: np.ndarray,
                 hold_above: float, hold_max: int | None) -> np.ndarray:
    """What the trend absorbs: the trend itself on channels above ``hold_above`` (updates ``held``)."""
    above = ratio > hold_above  # NaN (warming up) is never above
    held[:] = np.where(above, held + 1, 0)
    hold = above if hold_max is None else above & (held <= hold_max)
    return np.where(hold, trend, value) if hold.any() else value


def offline_trend_ratio(values: np.ndarray, length: int, min_count: int, kind: TrendKind = "mean",
                        hold_above: float | None = None, hold_max: int | None = None) -> np.ndarray:
    """Whole-series reference of ``Trend.ratio``: ``values`` (n_evaluations, n_channels) -> ratios, same shape.

    Computed without carried state: cumulative sums for the moving mean, ``scipy.signal.lfilter``
    for the exponential average. With a hold, what the trend absorbs depends on the ratios before
    it, so that reference walks the evaluations one by one (``_held_offline``).
    """
    _check_kind(kind)
    _check_hold(hold_above, hold_max)
    if hold_above is not None:
        return _held_offline(np.asarray(values, dtype=np.float64), length, min_count, kind, hold_above, hold_max)
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    prev = np.arange(n)  # how many values precede evaluation i
    if kind == "mean":
        csum = np.concatenate([np.zeros((1, v.shape[1])), np.cumsum(v, axis=0)])
        lo = np.maximum(prev - length, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            trend = (csum[prev] - csum[lo]) / (prev - lo)[:, None]
    else:
        alpha = -math.expm1(-1.0 / length)
        m = signal.lfilter([alpha], [1.0, -(1.0 - alpha)], v, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            corrected = m / -np.expm1((np.arange(n) + 1) * math.log1p(-alpha))[:, None]
        trend = np.vstack([np.full((1, v.shape[1]), math.nan), corrected[:-1]]) if n else corrected
    trend[prev < min_count] = math.nan
    return _safe_ratio(v, np.nan_to_num(trend, nan=-1.0)) if n else v.copy()


def _held_offline(v: np.ndarray, length: int, min_count: int, kind: TrendKind, hold_above: float,
                  hold_max: int | None) -> np.ndarray:
    """The held trend spelled out: explicit history of absorbed values, explicit weights."""
    n, n_ch = v.shape
    absorbed = np.empty_like(v)
    out = np.full_like(v, math.nan)
    run = np.zeros(n_ch, dtype=np.int64)
    alpha = -math.expm1(-1.0 / length)
    for i in range(n):
        if i >= min_count:
            past = absorbed[max(0, i - length) : i] if kind == "mean" else absorbed[:i]
            if kind == "mean":
                trend = past.mean(axis=0)
            else:
                w = (1.0 - alpha) ** np.arange(i - 1, -1, -1)
                trend = (w[:, None] * past).sum(axis=0) / w.sum()
        else:
            trend = np.full(n_ch, math.nan)
        ratio = _safe_ratio(v[i], trend)
        out[i] = ratio
        above = ratio > hold_above
        run = np.where(above, run + 1, 0)
        hold = above if hold_max is None else above & (run <= hold_max)
        absorbed[i] = np.where(hold, trend, v[i])
    return out
