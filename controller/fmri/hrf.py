"""Task regressors for the cumulative GLM: block designs convolved with a canonical HRF.

The protocol timeline is known before the run, so the whole planned regressor can be built up
front and handed to the GLM one row per volume (causal: row n depends only on blocks up to n).
Double-gamma HRF with SPM's default shape (peak 6 s, undershoot 16 s, ratio 1/6).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.stats import gamma  # type: ignore[import-untyped]  # scipy: no type stubs installed


def canonical_hrf(tr_s: float, length_s: float = 32.0) -> np.ndarray:
    """Double-gamma HRF sampled every ``tr_s`` seconds from 0, normalised to unit sum."""
    if not tr_s > 0:
        raise ValueError(f"HRF needs tr_s > 0, got {tr_s}")
    t = np.arange(0.0, length_s, tr_s)
    h = gamma.pdf(t, 6.0) - gamma.pdf(t, 16.0) / 6.0
    hrf: NDArray[np.float64] = h / h.sum()
    return hrf


def task_regressor(labels: Sequence[str], conditions: str | Collection[str], tr_s: float) -> np.ndarray:
    """(n,) boxcar of the volumes whose label is in ``conditions``, convolved with the HRF (causal)."""
    cond = {conditions} if isinstance(conditions, str) else set(conditions)
    box = np.array([lab in cond for lab in labels], dtype=np.float64)
    return np.convolve(box, canonical_hrf(tr_s))[: box.size]
