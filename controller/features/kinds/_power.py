"""What the three power kinds (band_power, band_ratio, relative_power) share: the method
(Welch's spectrum of the window, or the mean square of a causal band-pass), its load-time
checks, the evaluators and the offline reference. A kind only says which bands it needs;
with two, its value is the first band's power over the second's."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field
from scipy import signal

from controller.dsp.design import bandpass_sos, check_band
from controller.dsp.features import ChannelSource, IirPowerFeature, WelchFeature
from controller.dsp.schedule import to_samples
from controller.dsp.spectral import band_mask, welch_noverlap, welch_nperseg
from controller.lang.compiled import WELCH_DEFAULT_SEGMENT_S, Band, FeatureSpec
from controller.lang.fields import Duration, Overlap

from ..declaration import FeatureCommon
from ..kind import CheckContext, Evaluator, FeatureKind, FilterKey, OfflineValues, window_ends
from ..wording import EPS, band_text, hz, sec

PowerMethod = Literal["welch", "iir"]


class PowerCommon(FeatureCommon):
    method: PowerMethod = Field("welch", description="welch (spectrum of the window) or iir (band-pass filter, mean square).")
    segment: Duration | None = Field(
        None, description="welch: length of each FFT segment inside the window. Default: the window, at most 1 s "
                          "(a 2 s window gives 3 segments of 1 s at 50 % overlap; frequency resolution 1/segment)."
    )
    overlap: Overlap = Field("50 %", validate_default=True, description="welch: overlap of consecutive segments; default 50 %.")


def as_band(pair: tuple[float, float] | None) -> Band | None:
    return None if pair is None else Band(float(pair[0]), float(pair[1]))


class PowerKind(FeatureKind):
    """Power in one band, or the ratio of the powers in two."""

    def power_bands(self, spec: FeatureSpec) -> tuple[Band, ...]:
        """The bands whose power the value needs, the one on top of a ratio first."""
        raise NotImplementedError

    def compiled_bands(self, decl: Any) -> dict[str, Band | None]:
        """The FeatureSpec band fields of a declaration."""
        return {"band": as_band(decl.band)}

    # ------------------------------------------------------------------ language

    def compile(self, name: str, decl: Any, input_channels: tuple[str, ...]) -> FeatureSpec:
        spec = super().compile(name, decl, input_channels)
        return dataclasses.replace(spec, method=decl.method, segment_s=decl.segment, overlap=decl.overlap / 100.0,
                                   **self.compiled_bands(decl))

    def check(self, decl: Any, ctx: CheckContext) -> None:
        self.check_window(decl, ctx)

    def check_window(self, decl: Any, ctx: CheckContext) -> None:
        """The window must hold one cycle of the lowest frequency, and (welch) resolve each band."""
        bands = self.bands(decl)
        lowest = min(band[0] for _, band in bands)
        need = 1.0 / lowest
        if decl.window < need - EPS:
            ctx.fail("window",
                     f"window: {sec(decl.window)} is shorter than one cycle of {hz(lowest)} ({sec(need)}), the lowest "
                     f"frequency of this feature; use a window of at least {sec(need)}")
            return
        segment = decl.segment
        if decl.method != "welch":
            if segment is not None:
                ctx.fail("segment", "segment: only method welch splits the window into segments; "
                         "remove segment, or use method: welch", key=True)
            return
        if segment is not None and segment > decl.window + EPS:
            ctx.fail("segment", f"segment: {sec(segment)} is longer than the window {sec(decl.window)}; "
                     f"use a segment of at most {sec(decl.window)}")
            return
        # the frequency resolution is 1 / segment (default: the window, at most 1 s, as controller.dsp.spectral)
        length = segment if segment is not None else min(decl.window, WELCH_DEFAULT_SEGMENT_S)
        field_name = "segment" if segment is not None else "window"
        resolution = 1.0 / length
        for field, band in bands:
            width = band[1] - band[0]
            if width < resolution - EPS:
                ctx.fail(field_name,
                         f"{field_name}: Welch segments of {sec(length)} give a spectral resolution of "
                         f"{hz(resolution)}, coarser than the {hz(width)} wide {field} {band_text(band)}, which may "
                         f"then hold no frequency bin; {_longer_segment(segment, decl.window, 1.0 / width)}")
                return

    # ------------------------------------------------------------------ online

    def check_spec(self, spec: FeatureSpec, fs: float) -> None:
        bands = self.power_bands(spec)
        if spec.method == "welch":
            for i, band in enumerate(bands):
                check_band(band, fs, what=f"feature {spec.name!r} band {i + 1}")
        elif spec.method != "iir":
            raise ValueError(f"feature {spec.name!r}: unknown method {spec.method!r} (welch or iir)")

    def reads(self, spec: FeatureSpec) -> tuple[FilterKey, ...]:
        return (None,) if spec.method == "welch" else self.power_bands(spec)

    def ring_capacity(self, spec: FeatureSpec, window: int, every: int) -> int:
        # iir keeps the window's sum of squares up to date: it reads the samples leaving it too
        return window if spec.method == "welch" else window + every

    def evaluator(self, spec: FeatureSpec, sources: Sequence[ChannelSource], fs: float,
                  window: int, every: int) -> Evaluator:
        if spec.method == "welch":
            return WelchFeature(sources[0], fs, window, self.power_bands(spec), spec.segment_s, spec.overlap)
        return IirPowerFeature(list(sources), window)

    # ------------------------------------------------------------------ offline

    def offline(self, x: np.ndarray, fs: float, spec: FeatureSpec, stamps: np.ndarray) -> OfflineValues:
        """``scipy.signal.welch`` of each window, or a whole-array band-pass and the mean square per window."""
        bands = self.power_bands(spec)
        window, every = to_samples(spec.window_s, fs), to_samples(spec.every_s, fs)
        ends = window_ends(x.shape[0], window, every)
        powers = np.empty((ends.size, len(bands)))
        if spec.method == "welch":
            nperseg = welch_nperseg(window, fs, spec.segment_s)
            noverlap = welch_noverlap(nperseg, spec.overlap)
            df = fs / nperseg
            for j, k in enumerate(ends):
                freqs, psd = signal.welch(x[k - window + 1 : k + 1], fs=fs, window="hann", nperseg=nperseg,
                                          noverlap=noverlap, detrend="constant", axis=0)  # (n_freqs, n_channels)
                for b, band in enumerate(bands):
                    powers[j, b] = (psd[band_mask(freqs, band, df)].sum(axis=0) * df).mean()
        else:
            for b, band in enumerate(bands):
                sq = signal.sosfilt(bandpass_sos(fs, band), x, axis=0) ** 2
                powers[:, b] = [sq[k - window + 1 : k + 1].mean(axis=0).mean() for k in ends]
        if len(bands) == 1:
            return OfflineValues.untimed(ends, powers[:, 0])
        with np.errstate(divide="ignore", invalid="ignore"):
            return OfflineValues.untimed(ends, np.where(powers[:, 1] > 0, powers[:, 0] / powers[:, 1], np.nan))


def _longer_segment(segment: float | None, window: float, need: float) -> str:
    """How to get Welch segments of at least ``need`` seconds."""
    if segment is not None:
        return f"use a segment of at least {sec(need)}" + ("" if need <= window + EPS else
                                                           " (and a window at least as long)")
    if need <= window + EPS:  # the default segment (1 s) is what is too short
        return f"give segment: {sec(need)}"
    return f"use a window of at least {sec(need)}"
