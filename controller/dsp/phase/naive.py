"""Naive causal phase baseline: causal IIR band-pass + Hilbert of the window, read at its last sample.

No prediction and no compensation of the filter's group delay or of the Hilbert transform's
edge. The only extrapolation is advancing the phase at the band-centre frequency by the system
delay and to the next target crossing. This is what the predictive methods must beat.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal  # type: ignore[import-untyped]  # scipy: no type stubs installed

from controller.dsp.design import BANDPASS_ORDER, check_band
from controller.dsp.phase.ar import analytic_rows
from controller.dsp.schedule import to_samples
from controller.lang.compiled import Band

TWO_PI = 2.0 * math.pi


class HilbertPhase:
    """Phase method: analytic signal of the causally band-passed window at its newest sample."""

    def __init__(
        self,
        fs: float,
        band: Band = Band(8.0, 13.0),
        *,
        window_s: float = 0.5,
        frequency_hz: float | None = None,
        delay_s: float = 0.0,
        target_phase: float = math.pi,
        order: int = BANDPASS_ORDER,
    ) -> None:
        """``order``: Butterworth order per band edge; the default is the feature pipeline's band stage."""
        if delay_s < 0:
            raise ValueError(f"naive phase: delay_s must be >= 0, got {delay_s}")
        check_band(band, fs, what="naive phase band", open_interval=True)
        self.fs = float(fs)
        self.delay_s = float(delay_s)
        self.target_phase = float(target_phase)
        self.causal_sos = signal.butter(order, [band.lo_hz, band.hi_hz], btype="bandpass", fs=fs, output="sos")
        self.window = to_samples(window_s, fs)
        if self.window < 2:
            raise ValueError(f"naive phase: window {window_s} s is under 2 samples at fs={fs} Hz")
        self.frequency_hz = 0.5 * (band.lo_hz + band.hi_hz) if frequency_hz is None else float(frequency_hz)
        row = analytic_rows(np.array([self.window - 1.0]), self.window)
        self._row = np.ascontiguousarray(np.vstack([row.real, row.imag]))

    def __call__(self, x: np.ndarray) -> tuple[float, float, float, float]:
        re, im = self._row @ x
        rate = TWO_PI * self.frequency_hz
        phase = math.atan2(im, re) + rate * self.delay_s
        ahead = self.delay_s + ((self.target_phase - phase) % TWO_PI) / rate
        return (phase + math.pi) % TWO_PI - math.pi, math.hypot(re, im), self.frequency_hz, ahead
