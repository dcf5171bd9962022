"""Sliding-window correlation between two ROIs' detrended series (a network / connectivity feedback).

The definition lives with the feature kind that computes it, ``controller.features.kinds.roi_correlation``
(its online evaluator and its offline reference); the fMRI stage references (``controller.fmri.offline``)
import it from here.
"""

from __future__ import annotations

from controller.features.kinds.roi_correlation import (
    SlidingCorrelation,
    offline_sliding_correlation,
    window_correlation,
)

__all__ = ["SlidingCorrelation", "offline_sliding_correlation", "window_correlation"]
