"""Slope of a slow signal over a window, e.g. a respiration belt: falling (exhaling) = slope < 0.

The slope is the least-squares line through the window's samples (signal units per second):
a weighted mean of the rate of change that, unlike (last - first) / duration, does not hinge
on the two end samples. It is one dot product with weights fixed at construction, so it is
cheap and exactly causal (it reads only the window). A causal low-pass (or band-pass) in
front removes what is faster than the movement of interest.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import signal  # type: ignore[import-untyped]  # scipy: no type stubs installed

from controller.dsp.features import ChannelSource

LOWPASS_ORDER = 4  # Butterworth order of the slope feature's low-pass


def lowpass_sos(fs: float, cutoff_hz: float, *, what: str = "lowpass") -> np.ndarray:
    """Causal Butterworth low-pass as second-order sections; ``what`` names it in errors."""
    if not 0.0 < cutoff_hz < fs / 2:
        raise ValueError(f"{what} {cutoff_hz} Hz must lie in (0, {fs / 2}) Hz (Nyquist at fs={fs} Hz)")
    sos: NDArray[np.float64] = signal.butter(LOWPASS_ORDER, cutoff_hz, btype="lowpass", fs=fs, output="sos")
    return sos


def slope_weights(window: int, fs: float) -> np.ndarray:
    """Weights ``w`` with ``x @ w`` = least-squares slope (units/s) of ``window`` samples ``x`` at ``fs``."""
    if window < 2:
        raise ValueError(f"a slope needs a window of at least 2 samples, got {window}")
    t = (np.arange(window) - (window - 1) / 2.0) / fs
    weights: NDArray[np.float64] = t / np.dot(t, t)
    return weights


class SlopeFeature:
    """Least-squares slope of the window, averaged over the feature's channels (the slope is linear)."""

    __slots__ = ("_source", "_window", "_weights")

    def __init__(self, source: ChannelSource, window: int, fs: float) -> None:
        self._source = source
        self._window = window
        self._weights = slope_weights(window, fs)

    def __call__(self) -> float:
        return float(np.mean(self._source.window(self._window) @ self._weights))
