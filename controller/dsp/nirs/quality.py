"""Causal signal quality per source-detector pair: scalp coupling index and motion jumps.

Scalp coupling index (SCI, Pollonini et al. 2014, Hear. Res. 309:84-93): with the optode on
the skin, both wavelengths see the same heartbeat, so their optical densities band-passed to
the cardiac band correlate; a loose optode sees ambient light and noise that do not. MNE's
``scalp_coupling_index`` is the Pearson correlation of the two wavelengths over a whole
recording after a zero-phase FIR band-pass; here the band-pass is a causal Butterworth
(``StreamingSOS``) and the correlation runs over a sliding window ending at each sample (shorter
until ``window_s`` of data exist), so it tracks contact as it changes. Values lie in [-1, 1];
Pollonini et al. kept channels above 0.75, and > 0.7 is the usual "good contact".

Motion: an optode that slips changes the coupled light by a large fraction within a fraction of
a second. A pair is flagged when either wavelength's OD changes by more than ``threshold_od``
within ``lag_s`` (the form of Homer2's ``hmrMotionArtifact``), and the flag is held for
``hold_s`` after the last such change. The default 0.1 OD (a 10 % intensity change in 0.5 s) is
a fixed physical bound rather than k robust SDs of the channel itself: the cardiac pulsation is
of the order of 0.01 OD and haemodynamic responses change OD by a few 0.01 over seconds, so
nothing physiological comes near it, while a per-channel SD would first need a clean learning
period and would raise the bar on exactly the noisy channels that should be flagged.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal  # type: ignore[import-untyped]  # scipy: no type stubs installed

from controller.dsp.filters import StreamingSOS

CARDIAC_BAND_HZ = (0.7, 1.5)  # MNE's scalp_coupling_index defaults (l_freq, h_freq)
CARDIAC_ORDER = 4  # Butterworth order per band edge
DEFAULT_JUMP_OD = 0.1
DEFAULT_JUMP_LAG_S = 0.5


def cardiac_sos(fs: float, band: tuple[float, float] = CARDIAC_BAND_HZ) -> np.ndarray:
    """Causal Butterworth band-pass for the SCI."""
    lo, hi = band
    if not 0.0 < lo < hi < fs / 2:
        raise ValueError(f"SCI band {lo}-{hi} Hz must lie inside (0, {fs / 2}) Hz at fs={fs} Hz")
    sos: np.ndarray = signal.butter(CARDIAC_ORDER, [lo, hi], btype="bandpass", fs=fs, output="sos")
    return sos


def _samples(seconds: float, fs: float, what: str, minimum: int) -> int:
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{what} must be > 0 s, got {seconds}")
    return max(minimum, round(seconds * fs))


class ScalpCoupling:
    """SCI per pair and sample from OD ``(2, n_pairs, n)``; state kept between chunks."""

    __slots__ = ("_p", "_w", "_filter", "_hist", "_seen")

    def __init__(self, n_pairs: int, fs: float, *, window_s: float = 5.0,
                 band: tuple[float, float] = CARDIAC_BAND_HZ) -> None:
        self._p = int(n_pairs)
        self._w = _samples(window_s, fs, "SCI window", 2)
        self._filter = StreamingSOS(cardiac_sos(fs, band), 2 * self._p)
        # The band-passed signals' last w-1 samples as [a, b, ab, aa, bb] rows; zeros before the
        # stream add nothing to the window sums, so the first windows are exact shorter ones.
        self._hist = np.zeros((5 * self._p, self._w - 1))
        self._seen = 0

    @property
    def window(self) -> int:
        return self._w

    def reset(self) -> None:
        self._filter.reset()
        self._hist.fill(0.0)
        self._seen = 0

    def process(self, od: np.ndarray) -> np.ndarray:
        """``od`` ``(2, n_pairs, n)`` -> SCI ``(n_pairs, n)``: correlation over the window ending at each sample."""
        n = od.shape[2]
        p = self._p
        if n == 0:
            return np.empty((p, 0))
        ab = self._filter.process_(np.array(od.reshape(2 * p, n), dtype=np.float64))  # a copy: filtered in place
        a, b = ab[:p], ab[p:]
        series = np.concatenate([self._hist, np.concatenate([a, b, a * b, a * a, b * b], axis=0)], axis=1)
        if n == 1:  # the one window: a plain row sum (the same contiguous summation as a view's)
            sums = series.sum(axis=1)[:, None]
        else:
            sums = sliding_window_view(series, self._w, axis=1).sum(axis=2)  # (5p, n): window ending at each sample
        self._hist[:] = series[:, n:]
        count = np.minimum(self._seen + np.arange(1, n + 1), self._w).astype(np.float64)
        self._seen = min(self._seen + n, self._w)
        sa, sb, sab, saa, sbb = (sums[i * p:(i + 1) * p] for i in range(5))
        cov = count * sab - sa * sb
        den = (count * saa - sa * sa) * (count * sbb - sb * sb)
        ok = (den > 0) & (count >= 2)
        r = np.where(ok, cov / np.sqrt(np.where(ok, den, 1.0)), 0.0)
        out: np.ndarray = np.minimum(np.maximum(r, -1.0), 1.0)  # rounding can step past +-1
        return out


class MotionJumps:
    """Motion flag (0/1) per pair and sample from OD ``(2, n_pairs, n)``; state kept between chunks."""

    __slots__ = ("_p", "_lag", "_hold", "_thr", "_hist", "_last", "_count")

    _NEVER = -(2 ** 62)

    def __init__(self, n_pairs: int, fs: float, *, threshold_od: float = DEFAULT_JUMP_OD,
                 lag_s: float = DEFAULT_JUMP_LAG_S, hold_s: float = 2.0) -> None:
        if not (math.isfinite(threshold_od) and threshold_od > 0):
            raise ValueError(f"motion threshold must be > 0 OD, got {threshold_od}")
        self._p = int(n_pairs)
        self._thr = float(threshold_od)
        self._lag = _samples(lag_s, fs, "motion lag", 1)
        self._hold = _samples(hold_s, fs, "motion hold", 0)
        self._hist = np.full((2 * self._p, self._lag), np.nan)  # OD lag samples ago (NaN: none yet)
        self._last = np.full(self._p, self._NEVER, dtype=np.int64)  # sample index of the last jump
        self._count = 0

    def reset(self) -> None:
        self._hist.fill(np.nan)
        self._last.fill(self._NEVER)
        self._count = 0

    def process(self, od: np.ndarray) -> np.ndarray:
        """``od`` ``(2, n_pairs, n)`` -> motion ``(n_pairs, n)`` as 0.0/1.0."""
        n = od.shape[2]
        p = self._p
        if n == 0:
            return np.empty((p, 0))
        series = np.concatenate([self._hist, od.reshape(2 * p, n)], axis=1)
        change = np.abs(series[:, self._lag:] - series[:, :n])  # NaN (no jump) until lag samples exist
        self._hist[:] = series[:, n:]
        with np.errstate(invalid="ignore"):
            big = change > self._thr
        jump = big[:p] | big[p:]
        t = self._count + np.arange(n, dtype=np.int64)
        last = np.maximum.accumulate(np.concatenate([self._last[:, None], np.where(jump, t, self._NEVER)], axis=1),
                                     axis=1)[:, 1:]
        self._last[:] = last[:, -1]
        self._count += n
        flag: np.ndarray = (t - last <= self._hold).astype(np.float64)
        return flag
