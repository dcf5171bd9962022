"""roi_mean: an ROI's detrended mean signal (drift and motion removed), in scanner units, every volume."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field

from controller.lang.compiled import FeatureSpec, RoiMeanParams
from controller.lang.fields import Decl, Name

from ..registration import register
from ..volume_kind import Placed, VolumeEvaluator, VolumeFeatureKind


class RoiMeanDecl(Decl):
    """The ROI's detrended mean (drift and motion removed), in scanner units."""

    input: Name = Field(description="The fMRI input.")
    roi: Name = Field(description="The ROI (a key of rois).")


def _detrended(place: Placed, values: Sequence[float]) -> float:
    return values[0]


@register
class RoiMean(VolumeFeatureKind):
    name = "roi_mean"
    order = 210
    declaration = RoiMeanDecl
    summary = "fMRI: an ROI's detrended mean signal, e.g. {input: fmri, roi: acc}."

    def params(self, decl: Any) -> RoiMeanParams:
        return RoiMeanParams(decl.roi)

    def evaluator(self, spec: FeatureSpec) -> VolumeEvaluator:
        return _detrended  # no state: the pipeline's detrended value is the feature

    def offline(self, detrended: np.ndarray, places: Sequence[Placed], spec: FeatureSpec) -> np.ndarray:
        return np.array(detrended, dtype=np.float64)[:, 0]
