"""Sliding-window correlation between two ROIs' detrended series (a network / connectivity feedback).

Pearson r over the last ``window`` volumes, optionally Fisher z (arctanh, clipped so |r| = 1 stays
finite). None until the window is full, and None when either series is constant in the window
(r is undefined there; reporting 0 would look like a real value).
"""

from __future__ import annotations

import numpy as np

_R_CLIP = 1.0 - 1e-12


class SlidingCorrelation:
    """Causal sliding-window Pearson correlation of two scalar series."""

    def __init__(self, window: int, fisher_z: bool = False) -> None:
        if window < 3:
            raise ValueError(f"sliding correlation needs a window of >= 3 volumes, got {window}")
        self.window = int(window)
        self.fisher_z = bool(fisher_z)
        self._buf = np.zeros((2, self.window))
        self._n = 0

    def update(self, a: float, b: float) -> float | None:
        """Take the next pair of values; return r (or z) over the last ``window`` volumes."""
        self._buf[:, self._n % self.window] = (a, b)
        self._n += 1
        if self._n < self.window:
            return None
        return window_correlation(self._buf[0], self._buf[1], self.fisher_z)


def window_correlation(a: np.ndarray, b: np.ndarray, fisher_z: bool = False) -> float | None:
    """Pearson r of two equal-length arrays (order-free, so a ring buffer can be passed as is)."""
    da = a - a.mean()
    db = b - b.mean()
    den = np.sqrt((da @ da) * (db @ db))
    if not den > 0:
        return None
    r = float((da @ db) / den)
    return float(np.arctanh(np.clip(r, -_R_CLIP, _R_CLIP))) if fisher_z else r


def offline_sliding_correlation(a: np.ndarray, b: np.ndarray, window: int, fisher_z: bool = False) -> np.ndarray:
    """Reference: r (or z) at every volume with NaN before the window fills, via ``np.corrcoef``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = np.full(a.shape[0], np.nan)
    for n in range(window, a.shape[0] + 1):
        wa, wb = a[n - window : n], b[n - window : n]
        if wa.std() > 0 and wb.std() > 0:
            r = np.corrcoef(wa, wb)[0, 1]
            out[n - 1] = np.arctanh(np.clip(r, -_R_CLIP, _R_CLIP)) if fisher_z else r
    return out
