"""peak_to_peak: largest minus smallest value in the window (blinks and other artifacts), in volts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field
from scipy import signal

from controller.dsp.design import bandpass_sos
from controller.dsp.features import ChannelSource, PeakToPeakFeature
from controller.dsp.schedule import to_samples
from controller.lang import units
from controller.lang.compiled import FeatureSpec
from controller.lang.fields import FreqBand

from ..declaration import FeatureCommon
from ..kind import Evaluator, FeatureKind, OfflineValues, window_ends
from ..registration import register


class PeakToPeakDecl(FeatureCommon):
    """Largest minus smallest value in the window (artifacts such as blinks), in volts."""

    band: FreqBand | None = Field(None, description="Optional causal band-pass applied first, e.g. [0.5 Hz, 4 Hz].")


@register
class PeakToPeak(FeatureKind):
    name = "peak_to_peak"
    order = 40
    declaration = PeakToPeakDecl
    summary = "Peak-to-peak amplitude in the window (artifact detection), in volts."
    unit = units.VOLTAGE

    def evaluator(self, spec: FeatureSpec, sources: Sequence[ChannelSource], fs: float,
                  window: int, every: int) -> Evaluator:
        return PeakToPeakFeature(sources[0], window)

    def offline(self, x: np.ndarray, fs: float, spec: FeatureSpec, stamps: np.ndarray) -> OfflineValues:
        if spec.band is not None:
            x = signal.sosfilt(bandpass_sos(fs, spec.band), x, axis=0)
        window, every = to_samples(spec.window_s, fs), to_samples(spec.every_s, fs)
        ends = window_ends(x.shape[0], window, every)
        return OfflineValues.untimed(ends, [np.ptp(x[k - window + 1 : k + 1], axis=0).mean() for k in ends])
