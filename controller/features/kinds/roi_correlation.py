"""roi_correlation: sliding-window correlation of two ROIs' detrended series (a network / connectivity
feedback, e.g. default-mode vs central-executive network).

Pearson r over the last ``window`` volumes, optionally Fisher z (arctanh, clipped so |r| = 1 stays
finite). None until the window is full, and None when either series is constant in the window
(r is undefined there; reporting 0 would look like a real value). ``controller.fmri.connectivity``
re-exports the functions under their old names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from controller.lang.compiled import FeatureSpec, RoiCorrelationParams
from controller.lang.fields import Decl, Name, VolumeCount

from ..registration import register
from ..volume_kind import Placed, VolumeCheckContext, VolumeEvaluator, VolumeFeatureKind

MIN_WINDOW = 3  # volumes: fewer make r meaningless (two points always correlate perfectly)
_R_CLIP = 1.0 - 1e-12

# --------------------------------------------------------------------------- the definition


class SlidingCorrelation:
    """Causal sliding-window Pearson correlation of two scalar series."""

    def __init__(self, window: int, fisher_z: bool = False) -> None:
        if window < MIN_WINDOW:
            raise ValueError(f"sliding correlation needs a window of >= {MIN_WINDOW} volumes, got {window}")
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


# --------------------------------------------------------------------------- the kind


class RoiCorrelationDecl(Decl):
    """Sliding-window correlation of two ROIs' detrended series (functional connectivity)."""

    input: Name = Field(description="The fMRI input.")
    rois: Annotated[tuple[Name, Name], Field(description="The two ROIs, e.g. [pcc, dlpfc_l].")]
    window: VolumeCount = Field(description="Window in volumes, e.g. 20 TR.")
    fisher_z: bool = Field(False, description="Report Fisher z (atanh r) instead of r.")


class _CorrelationEvaluator:
    __slots__ = ("_corr",)

    def __init__(self, params: RoiCorrelationParams) -> None:
        self._corr = SlidingCorrelation(params.window, params.fisher_z)

    def __call__(self, place: Placed, values: Sequence[float]) -> float | None:
        return self._corr.update(values[0], values[1])


@register
class RoiCorrelation(VolumeFeatureKind):
    name = "roi_correlation"
    order = 220
    declaration = RoiCorrelationDecl
    summary = "fMRI: sliding-window correlation of two ROIs, e.g. {input: fmri, rois: [pcc, dlpfc_l], window: 20 TR}."
    roi_field = "rois"

    def check(self, decl: Any, ctx: VolumeCheckContext) -> None:
        if decl.rois[0] == decl.rois[1]:
            ctx.fail("rois", f"rois: give two different ROIs, got {decl.rois[0]!r} twice")
        if decl.window < MIN_WINDOW:
            ctx.fail("window", f"window: a correlation needs at least {MIN_WINDOW} volumes, got {decl.window}")

    def params(self, decl: Any) -> RoiCorrelationParams:
        return RoiCorrelationParams(tuple(decl.rois), decl.window, decl.fisher_z)

    def evaluator(self, spec: FeatureSpec) -> VolumeEvaluator:
        return _CorrelationEvaluator(spec.params)

    def offline(self, detrended: np.ndarray, places: Sequence[Placed], spec: FeatureSpec) -> np.ndarray:
        """``offline_sliding_correlation`` of the two ROIs' series, in arrival order (a filter on the sequence)."""
        d = np.asarray(detrended, dtype=np.float64)
        return offline_sliding_correlation(d[:, 0], d[:, 1], spec.params.window, spec.params.fisher_z)
