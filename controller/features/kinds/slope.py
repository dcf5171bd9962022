"""slope: least-squares slope of the (low-passed) signal over the window, in its units per
second, mean over channels; e.g. a respiration belt: slope < 0 while exhaling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field
from scipy import signal

from controller.dsp.design import bandpass_sos
from controller.dsp.features import ChannelSource
from controller.dsp.schedule import to_samples
from controller.dsp.slope import SlopeFeature, lowpass_sos
from controller.lang.compiled import FeatureSpec, SlopeParams
from controller.lang.fields import FreqBand, Frequency

from ..declaration import FeatureCommon
from ..kind import CheckContext, Evaluator, FeatureKind, FilterKey, Lowpass, OfflineValues, window_ends
from ..registration import register


class SlopeDecl(FeatureCommon):
    """Least-squares slope of the (low-passed) signal over the window, in its units per second,
    averaged over channels; e.g. respiration: slope < 0 while exhaling."""

    lowpass: Frequency | None = Field(None, description="Causal low-pass applied first, e.g. 1 Hz.")
    band: FreqBand | None = Field(None, description="Or a causal band-pass applied first, e.g. [0.1 Hz, 1 Hz]; not with lowpass.")


@register
class Slope(FeatureKind):
    name = "slope"
    order = 80
    declaration = SlopeDecl
    summary = ("Slope (units per second) of the low-passed signal, e.g. respiration: "
               "{input: resp, lowpass: 1 Hz, window: 500 ms, every: 50 ms}.")

    def params(self, decl: Any) -> SlopeParams:
        return SlopeParams(decl.lowpass)

    def check(self, decl: Any, ctx: CheckContext) -> None:
        if decl.lowpass is not None and decl.band is not None:
            ctx.fail("band", "band: give a lowpass or a band, not both", key=True)

    def rate_problems(self, spec: FeatureSpec, fs: float) -> list[tuple[str, str]]:
        out = []
        window = round(spec.window_s * fs)
        if window < 2:
            out.append(("window", f"window {spec.window_s:g} s is {window} sample at {fs:g} Hz; {spec.kind} needs at least 2"))
        lowpass = spec.params.lowpass_hz
        if lowpass is not None and lowpass >= fs / 2:
            out.append(("lowpass", f"lowpass {lowpass:g} Hz is at or above the Nyquist frequency {fs / 2:g} Hz"))
        return out

    def check_spec(self, spec: FeatureSpec, fs: float) -> None:
        if not isinstance(spec.params, SlopeParams):
            raise ValueError(f"feature {spec.name!r} ({spec.kind}) needs params of type SlopeParams, got {spec.params!r}")
        if spec.params.lowpass_hz is not None and spec.band is not None:
            raise ValueError(f"feature {spec.name!r} (slope): give a lowpass or a band, not both")

    def reads(self, spec: FeatureSpec) -> tuple[FilterKey, ...]:
        return (Lowpass(spec.params.lowpass_hz),) if spec.params.lowpass_hz is not None else (spec.band,)

    def evaluator(self, spec: FeatureSpec, sources: Sequence[ChannelSource], fs: float,
                  window: int, every: int) -> Evaluator:
        return SlopeFeature(sources[0], window, fs)

    def offline(self, x: np.ndarray, fs: float, spec: FeatureSpec, stamps: np.ndarray) -> OfflineValues:
        """``numpy.polyfit`` of a line to each window of the whole-array filtered signal."""
        if spec.params.lowpass_hz is not None:
            x = signal.sosfilt(lowpass_sos(fs, spec.params.lowpass_hz), x, axis=0)
        elif spec.band is not None:
            x = signal.sosfilt(bandpass_sos(fs, spec.band), x, axis=0)
        window, every = to_samples(spec.window_s, fs), to_samples(spec.every_s, fs)
        ends = window_ends(x.shape[0], window, every)
        t = np.arange(window) / fs
        return OfflineValues.untimed(ends, [np.polyfit(t, x[k - window + 1 : k + 1], 1)[0].mean() for k in ends])
