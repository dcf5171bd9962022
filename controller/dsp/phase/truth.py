"""Offline ground-truth phase: zero-phase band-pass of the whole recording, then Hilbert.

A real-time estimator only ever sees the past; this sees past and future, so it has no filter
delay and no window edge. Scoring a trigger against it asks "where in the cycle did the pulse
really land?". The band-pass is a Butterworth run forwards and backwards (sosfiltfilt), so its
magnitude response is the square of the designed order-``order`` filter and its phase is zero.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import signal  # type: ignore[import-untyped]  # scipy: no type stubs installed

from controller.dsp.design import check_band
from controller.lang.compiled import Band

TRUTH_ORDER = 4  # Butterworth order per band edge, before doubling by filtfilt


class TruePhase:
    """Analytic signal of a whole recording on a uniform time grid, queried at any time.

    ``t0`` is the LSL time of sample 0 and ``fs`` the nominal rate: sample k is at ``t0 + k / fs``.
    """

    __slots__ = ("fs", "t0", "analytic")

    def __init__(
        self, x: np.ndarray, fs: float, band: Band = Band(8.0, 13.0), *, t0: float = 0.0, order: int = TRUTH_ORDER
    ) -> None:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"ground-truth phase needs a 1-D signal, got shape {x.shape}")
        check_band(band, fs, what="ground-truth band", open_interval=True)
        sos = signal.butter(order, [band.lo_hz, band.hi_hz], btype="bandpass", fs=fs, output="sos")
        self.fs = float(fs)
        self.t0 = float(t0)
        self.analytic: NDArray[np.complex128] = signal.hilbert(signal.sosfiltfilt(sos, x - x.mean()))

    @property
    def phase(self) -> np.ndarray:
        """Phase in (-pi, pi] at every sample; 0 = peak, +-pi = trough of the band-passed signal."""
        return np.angle(self.analytic)

    @property
    def amplitude(self) -> np.ndarray:
        return np.abs(self.analytic)

    def at(self, times: np.ndarray | float) -> np.ndarray:
        """Analytic signal at LSL ``times`` (linear interpolation between samples; NaN outside)."""
        pos = (np.asarray(times, dtype=np.float64) - self.t0) * self.fs
        n = self.analytic.size
        i = np.floor(pos).astype(np.intp)
        frac = pos - i
        ok = (pos >= 0) & (pos <= n - 1)
        i = np.clip(i, 0, n - 2)
        out = self.analytic[i] * (1.0 - frac) + self.analytic[i + 1] * frac
        return np.where(ok, out, np.nan + 0j)

    def phase_at(self, times: np.ndarray | float) -> np.ndarray:
        """True phase (rad) at LSL ``times``; NaN outside the recording."""
        a = self.at(times)
        return np.where(np.isnan(a.real), np.nan, np.angle(a))
