"""haemoglobin: mean HbO (or HbR) over a set of fNIRS source-detector pairs and the window, in mol/L;
optionally as the change from the preceding baseline block (the usual fNIRS neurofeedback value).

An fNIRS input's front end (controller.dsp.nirs) has already turned light into concentration per pair
(optical density, modified Beer-Lambert law, short-separation regression, low-pass); the input's
``highpass:`` then removes drift. This kind averages what it is given.

Block-relative change (``change_from: rest``): the reference is the mean of this feature's own values
during the latest *completed* baseline block, leaving out its first ``skip`` (the haemodynamic response
of the previous block still decaying); until one exists the value is None. Values are sampled every
``every``, so the reference is the mean of those samples - the offline reference does the same
(``relative_to_baseline``), given the block each value fell in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from controller.dsp.features import ChannelSource
from controller.dsp.schedule import to_samples
from controller.lang import units
from controller.lang.compiled import FeatureSpec
from controller.lang.fields import Duration

from ..blocks import BlockClock
from ..declaration import FeatureCommon
from ..kind import CheckContext, Evaluator, FeatureKind, OfflineValues, window_ends
from ..registration import register
from ._nirs_pairs import BaselineLabels, check_pairs, pair_channels

Chromophore = Literal["hbo", "hbr"]


class HaemoglobinDecl(FeatureCommon):
    """Mean HbO or HbR over fNIRS pairs and the window, or its change from the preceding baseline block."""

    chromophore: Chromophore = Field("hbo", description="hbo (oxygenated) or hbr (deoxygenated haemoglobin).")
    change_from: BaselineLabels = Field(
        None, description="Block label(s) of the baseline, e.g. rest: the value is then the change from the mean "
                          "over the latest completed baseline block.")
    skip: Duration = Field("2 s", validate_default=True,
                           description="change_from: the first seconds of the baseline block left out of its mean.")


@dataclass(frozen=True)
class HaemoglobinParams:
    chromophore: str
    change_from: tuple[str, ...]  # () = the plain mean
    skip_s: float


class BaselineChange:
    """The change of a value from the mean of its values in the latest completed baseline block."""

    __slots__ = ("labels", "skip", "_block", "_seen", "_sum", "_count", "_reference")

    def __init__(self, labels: tuple[str, ...], skip: int) -> None:
        self.labels = frozenset(labels)
        self.skip = skip
        self.reset()

    def reset(self) -> None:
        self._block: tuple[int, str] | None = None
        self._seen = 0  # values seen in the current block
        self._sum = 0.0
        self._count = 0
        self._reference: float | None = None

    def __call__(self, value: float, block: tuple[int, str] | None) -> float | None:
        if block != self._block:
            if self._block is not None and self._block[1] in self.labels and self._count:
                self._reference = self._sum / self._count  # the baseline block just ended
            self._block, self._seen, self._sum, self._count = block, 0, 0.0, 0
        if block is not None and block[1] in self.labels:
            if self._seen >= self.skip:
                self._sum += value
                self._count += 1
            self._seen += 1
        return None if self._reference is None else value - self._reference


def relative_to_baseline(values: np.ndarray, blocks: Sequence[tuple[int, str] | None], labels: tuple[str, ...],
                         skip: int) -> np.ndarray:
    """Offline: ``values`` as changes from their own mean over the latest completed baseline block (NaN before)."""
    change = BaselineChange(labels, skip)
    out = [change(float(v), b) for v, b in zip(values, blocks, strict=True)]
    return np.asarray([np.nan if v is None else v for v in out], dtype=np.float64)


class HaemoglobinFeature:
    __slots__ = ("_source", "_window", "_change", "_blocks")

    def __init__(self, source: ChannelSource, window: int, change: BaselineChange | None) -> None:
        self._source = source
        self._window = window
        self._change = change
        self._blocks: BlockClock | None = None

    def bind_blocks(self, blocks: BlockClock) -> None:
        self._blocks = blocks

    def reset(self) -> None:
        if self._change is not None:
            self._change.reset()

    def __call__(self) -> float | None:
        value = float(self._source.window(self._window).mean())
        if self._change is None:
            return value
        return self._change(value, None if self._blocks is None else self._blocks.current())


@register
class Haemoglobin(FeatureKind):
    name = "haemoglobin"
    order = 120
    declaration = HaemoglobinDecl
    summary = ("fNIRS: mean HbO/HbR (mol/L) over pairs, or its change from the last rest, e.g. "
               "{input: nirs, channels: [S1_D1, S2_D1], chromophore: hbo, change_from: rest, window: 1 s, every: 100 ms}.")
    unit = units.CONCENTRATION

    def params(self, decl: Any) -> HaemoglobinParams:
        labels = () if decl.change_from is None else tuple(decl.change_from)
        return HaemoglobinParams(decl.chromophore, labels, decl.skip)

    def check(self, decl: Any, ctx: CheckContext) -> None:
        check_pairs(decl, ctx)

    def compile(self, name: str, decl: Any, input_channels: tuple[str, ...]) -> FeatureSpec:
        spec = super().compile(name, decl, input_channels)
        return pair_channels(spec, decl.chromophore, decl.channels, input_channels)

    def evaluator(self, spec: FeatureSpec, sources: Sequence[ChannelSource], fs: float,
                  window: int, every: int) -> Evaluator:
        p: HaemoglobinParams = spec.params
        change = BaselineChange(p.change_from, round(p.skip_s / spec.every_s)) if p.change_from else None
        return HaemoglobinFeature(sources[0], window, change)

    def offline(self, x: np.ndarray, fs: float, spec: FeatureSpec, stamps: np.ndarray) -> OfflineValues:
        """The plain window means; a ``change_from`` feature's offline values are these passed through
        ``relative_to_baseline`` with the block of each value (the session's timeline, not in the signal)."""
        window, every = to_samples(spec.window_s, fs), to_samples(spec.every_s, fs)
        ends = window_ends(x.shape[0], window, every)
        csum = np.concatenate([np.zeros(1), np.cumsum(x.mean(axis=1))])
        return OfflineValues.untimed(ends, (csum[ends + 1] - csum[ends + 1 - window]) / window)
