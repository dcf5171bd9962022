"""optode_quality: how well fNIRS optodes couple to the scalp, and whether the head moved, over pairs.

The fNIRS front end (controller.dsp.nirs) derives, per pair and sample, the scalp coupling index
('S1_D1 sci': the cardiac pulse seen at both wavelengths alike means light went through tissue) and a
motion flag ('S1_D1 motion': a sudden jump of optical density, held for a while). A rule uses this
feature as it uses an EEG artifact feature: ``and motion < 0.5`` withholds rewards while it lasts.

- ``measure: sci``: the WORST pair's mean SCI over the window (one uncoupled optode spoils the ROI mean);
- ``measure: motion``: the fraction of pairs flagged at any sample of the window (0..1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from controller.dsp.features import ChannelSource
from controller.dsp.schedule import to_samples
from controller.lang.compiled import FeatureSpec

from ..declaration import FeatureCommon
from ..kind import CheckContext, Evaluator, FeatureKind, OfflineValues, window_ends
from ..registration import register
from ._nirs_pairs import check_pairs, pair_channels


class OptodeQualityDecl(FeatureCommon):
    """The worst pair's scalp coupling, or the fraction of pairs moving, over the window."""

    measure: Literal["sci", "motion"] = Field(
        "motion", description="sci: the worst pair's scalp coupling index (good above 0.7); motion: the fraction of "
                              "pairs with a motion artifact in the window.")


@dataclass(frozen=True)
class QualityParams:
    measure: str


def _reduce(window: np.ndarray, measure: str) -> float:
    """``window`` (pairs, samples) -> the feature's value."""
    if measure == "sci":
        return float(window.mean(axis=1).min())
    return float((window.max(axis=1) > 0.5).mean())


class OptodeQualityFeature:
    __slots__ = ("_source", "_window", "_measure")

    def __init__(self, source: ChannelSource, window: int, measure: str) -> None:
        self._source = source
        self._window = window
        self._measure = measure

    def __call__(self) -> float:
        return _reduce(self._source.window(self._window), self._measure)


@register
class OptodeQuality(FeatureKind):
    name = "optode_quality"
    order = 125
    declaration = OptodeQualityDecl
    summary = ("fNIRS: the worst pair's scalp coupling (sci) or the fraction of pairs moving (motion), e.g. "
               "{input: nirs, measure: motion, window: 1 s, every: 100 ms}.")

    def params(self, decl: Any) -> QualityParams:
        return QualityParams(decl.measure)

    def check(self, decl: Any, ctx: CheckContext) -> None:
        check_pairs(decl, ctx)

    def compile(self, name: str, decl: Any, input_channels: tuple[str, ...]) -> FeatureSpec:
        spec = super().compile(name, decl, input_channels)
        return pair_channels(spec, decl.measure, decl.channels, input_channels)

    def evaluator(self, spec: FeatureSpec, sources: Sequence[ChannelSource], fs: float,
                  window: int, every: int) -> Evaluator:
        return OptodeQualityFeature(sources[0], window, spec.params.measure)

    def offline(self, x: np.ndarray, fs: float, spec: FeatureSpec, stamps: np.ndarray) -> OfflineValues:
        window, every = to_samples(spec.window_s, fs), to_samples(spec.every_s, fs)
        ends = window_ends(x.shape[0], window, every)
        return OfflineValues.untimed(ends, [_reduce(x[k - window + 1: k + 1].T, spec.params.measure) for k in ends])
