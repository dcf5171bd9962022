"""alpha_asymmetry: frontal alpha asymmetry, ln(alpha power at F4) - ln(alpha power at F3).

The EEG marker of approach/withdrawal motivation used in depression neurofeedback (Davidson;
Allen et al. 2004): alpha power is inversely related to cortical activity, so a value above
0 means relatively more LEFT frontal activity, the direction training aims for. Alpha power
per channel is Welch's (as band_power's), over the whole window; the value is a plain number
(a log ratio), NaN when either power is zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field, model_validator
from scipy import signal

from controller.dsp.design import check_band
from controller.dsp.features import ChannelSource
from controller.dsp.schedule import to_samples
from controller.dsp.spectral import WelchBandPowers, band_mask, welch_noverlap, welch_nperseg
from controller.lang.compiled import WELCH_DEFAULT_SEGMENT_S, Band, FeatureSpec
from controller.lang.fields import Decl, Duration, FreqBand, Name, Overlap, fail

from ..kind import CheckContext, Evaluator, FeatureKind, FilterKey, OfflineValues, window_ends
from ..registration import register
from ..wording import EPS, band_text, hz, sec


class AlphaAsymmetryDecl(Decl):
    """Frontal alpha asymmetry: ln(alpha power at the right channel) - ln(alpha power at the left
    one), by default ln(F4) - ln(F3); above 0 = relatively more left frontal activity."""

    input: Name = Field(description="The input (a key of inputs) the feature is computed on.")
    right: str = Field("F4", description="The right-hemisphere channel, default F4 (e.g. F8, FC4).")
    left: str = Field("F3", description="The left-hemisphere channel, default F3 (e.g. F7, FC3).")
    band: FreqBand = Field(("8 Hz", "13 Hz"), validate_default=True, description="The alpha band; default [8 Hz, 13 Hz].")
    window: Duration = Field(description="Length of the sliding window, e.g. 2 s.")
    every: Duration = Field(description="How often the feature is computed, e.g. 250 ms; at most the window.")
    segment: Duration | None = Field(
        None, description="Length of each Welch segment inside the window. Default: the window, at most 1 s."
    )
    overlap: Overlap = Field("50 %", validate_default=True, description="Overlap of consecutive Welch segments; default 50 %.")

    @model_validator(mode="after")
    def _two_channels(self) -> AlphaAsymmetryDecl:
        if self.right == self.left:
            fail(f"right and left are both {self.right!r}; an asymmetry compares two channels, e.g. right: F4, left: F3")
        return self

    @property
    def channels(self) -> tuple[str, str]:
        """The input channels it reads: right, then left (the value is ln(right) - ln(left))."""
        return (self.right, self.left)


class AlphaAsymmetryFeature:
    """ln(power in the band of row 0) - ln(power of row 1), by Welch on the newest window."""

    __slots__ = ("_source", "_window", "_powers")

    def __init__(self, source: ChannelSource, fs: float, window: int, band: Band,
                 segment_s: float | None, overlap: float) -> None:
        self._source = source
        self._window = window
        self._powers = WelchBandPowers(fs, window, (band,), segment_s, overlap)

    def __call__(self) -> float:
        w = self._source.window(self._window)  # (2, window): right, left
        right, left = float(self._powers(w[0:1])[0]), float(self._powers(w[1:2])[0])
        return math.log(right) - math.log(left) if right > 0.0 and left > 0.0 else math.nan


@register
class AlphaAsymmetry(FeatureKind):
    name = "alpha_asymmetry"
    order = 100
    declaration = AlphaAsymmetryDecl
    summary = ("Frontal alpha asymmetry ln(alpha power at F4) - ln(alpha power at F3), e.g. "
               "{input: eeg, window: 2 s, every: 250 ms} (right, left and band configurable).")

    # ------------------------------------------------------------------ language

    def compile(self, name: str, decl: Any, input_channels: tuple[str, ...]) -> FeatureSpec:
        return FeatureSpec(name=name, kind=self.name, input=decl.input, channels=decl.channels,
                           window_s=decl.window, every_s=decl.every, band=Band(*map(float, decl.band)),
                           segment_s=decl.segment, overlap=decl.overlap / 100.0)

    def check(self, decl: Any, ctx: CheckContext) -> None:
        inp = ctx.input
        if inp is not None:
            for side in ("right", "left"):
                ch = getattr(decl, side)
                if ch not in inp.channels:
                    written = side in decl.model_fields_set  # else the default: point at the feature
                    ctx.fail(side if written else (), f"{side}: {ch!r} is not a channel of input {decl.input!r}; add "
                             f"it to the input's channels (its channels: {', '.join(inp.channels)})")
        lo, hi = decl.band
        if decl.window < 1.0 / lo - EPS:
            ctx.fail("window", f"window: {sec(decl.window)} is shorter than one cycle of {hz(lo)} ({sec(1.0 / lo)}), "
                     f"the band's low edge; use a window of at least {sec(1.0 / lo)}")
            return
        if decl.segment is not None and decl.segment > decl.window + EPS:
            ctx.fail("segment", f"segment: {sec(decl.segment)} is longer than the window {sec(decl.window)}; "
                     f"use a segment of at most {sec(decl.window)}")
            return
        length = decl.segment if decl.segment is not None else min(decl.window, WELCH_DEFAULT_SEGMENT_S)
        if hi - lo < 1.0 / length - EPS:
            ctx.fail("segment" if decl.segment is not None else "window",
                     f"Welch segments of {sec(length)} give a spectral resolution of {hz(1.0 / length)}, coarser "
                     f"than the band {band_text(decl.band)}; use segments of at least {sec(1.0 / (hi - lo))}")

    # ------------------------------------------------------------------ online

    def check_spec(self, spec: FeatureSpec, fs: float) -> None:
        if len(spec.channels) != 2 or spec.band is None:
            raise ValueError(f"feature {spec.name!r} ({spec.kind}) needs a band and two channels (right, left), "
                             f"got {spec.channels} and {spec.band}")
        check_band(spec.band, fs, what=f"feature {spec.name!r} band")

    def reads(self, spec: FeatureSpec) -> tuple[FilterKey, ...]:
        return (None,)  # Welch of the conditioned window

    def evaluator(self, spec: FeatureSpec, sources: Sequence[ChannelSource], fs: float,
                  window: int, every: int) -> Evaluator:
        return AlphaAsymmetryFeature(sources[0], fs, window, spec.band, spec.segment_s, spec.overlap)

    # ------------------------------------------------------------------ offline

    def offline(self, x: np.ndarray, fs: float, spec: FeatureSpec, stamps: np.ndarray) -> OfflineValues:
        """``scipy.signal.welch`` of each window of both channels, the band's bins summed."""
        window, every = to_samples(spec.window_s, fs), to_samples(spec.every_s, fs)
        nperseg = welch_nperseg(window, fs, spec.segment_s)
        noverlap = welch_noverlap(nperseg, spec.overlap)
        df = fs / nperseg
        ends = window_ends(x.shape[0], window, every)
        values = np.empty(ends.size)
        for j, k in enumerate(ends):
            freqs, psd = signal.welch(x[k - window + 1 : k + 1], fs=fs, window="hann", nperseg=nperseg,
                                      noverlap=noverlap, detrend="constant", axis=0)  # (n_freqs, [right, left])
            right, left = psd[band_mask(freqs, spec.band, df)].sum(axis=0) * df
            values[j] = np.log(right) - np.log(left) if right > 0 and left > 0 else np.nan
        return OfflineValues.untimed(ends, values)
