"""halfwave: how many half-waves (monotonic runs between turning points) of the band-passed
signal in the window have a qualifying height and duration; a count per channel, reduced."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field

from controller.dsp.features import ChannelSource
from controller.dsp.seizure.detectors import HalfWaveParams as HalfWaveSettings
from controller.dsp.seizure.features import HalfWaveFeature, halfwave_ring_capacity
from controller.dsp.seizure.halfwave import HalfWaveCriteria, default_durations
from controller.dsp.seizure.offline import offline_half_wave
from controller.lang import units
from controller.lang.compiled import FeatureSpec, HalfWaveParams
from controller.lang.fields import Amplitude, DurationRange, FreqBand

from ..channel_reduce import ChannelReduce, compile_reduce, reduce_offline
from ..declaration import FeatureCommon
from ..kind import CheckContext, Evaluator, FeatureKind, OfflineValues
from ..registration import register


class HalfWaveDecl(FeatureCommon):
    """Number of qualified half-waves (monotonic runs between turning points) of the band-passed
    signal in the window: height and duration within the given ranges."""

    band: FreqBand = Field(description="Causal band-pass applied first, e.g. [3 Hz, 30 Hz].")
    min_amplitude: Amplitude = Field(description="Smallest qualifying half-wave height, e.g. 50 uV.")
    max_amplitude: Amplitude | None = Field(None, description="Largest qualifying height (e.g. against artifacts), e.g. 1 mV. Default: no limit.")
    duration: DurationRange | None = Field(
        None, description="[SHORTEST, LONGEST] qualifying duration, e.g. [20 ms, 150 ms]. Default: half a period of the band's high .. low edge."
    )
    reduce: ChannelReduce = Field(
        "mean", description="How per-channel counts become one: mean, median, max, or a vote {channels_above: 6}."
    )


def durations(spec: FeatureSpec) -> tuple[float, float]:
    """(shortest, longest) qualifying half-wave in seconds; unset ones are half periods of the band's edges."""
    p: HalfWaveParams = spec.params
    short, long = default_durations(spec.band.lo_hz, spec.band.hi_hz)  # type: ignore[union-attr]
    return (short if p.min_duration_s is None else p.min_duration_s,
            long if p.max_duration_s is None else p.max_duration_s)


def criteria(spec: FeatureSpec, fs: float) -> HalfWaveCriteria:
    return HalfWaveCriteria.from_seconds(fs, spec.params.min_amplitude, spec.params.max_amplitude, *durations(spec))


@register
class HalfWave(FeatureKind):
    name = "halfwave"
    order = 70
    declaration = HalfWaveDecl
    summary = ("Count of qualified half-waves in the window, e.g. {input: ieeg, band: [3 Hz, 30 Hz], "
               "min_amplitude: 50 uV, window: 1 s, every: 100 ms}.")

    # ------------------------------------------------------------------ language

    def params(self, decl: Any) -> HalfWaveParams:
        lo, hi = decl.duration if decl.duration is not None else (None, None)
        top = decl.max_amplitude if decl.max_amplitude is not None else float("inf")
        return HalfWaveParams(decl.min_amplitude, top, lo, hi, compile_reduce(decl.reduce, percent=False))

    def check(self, decl: Any, ctx: CheckContext) -> None:
        if not isinstance(decl.reduce, str) and decl.reduce.channels_above.family is not None:
            ctx.fail(("reduce", "channels_above"), "channels_above: a half-wave count is a plain "
                     f"number, e.g. 6, not {decl.reduce.channels_above}")
        if decl.max_amplitude is not None and decl.max_amplitude <= decl.min_amplitude:
            v = units.VOLTAGE
            ctx.fail("max_amplitude",
                     f"max_amplitude: {units.format_quantity(decl.max_amplitude, v)} is not above min_amplitude "
                     f"{units.format_quantity(decl.min_amplitude, v)}")

    def rate_problems(self, spec: FeatureSpec, fs: float) -> list[tuple[str, str]]:
        if spec.band is None or spec.band.hi_hz >= fs / 2:
            return []
        longest = criteria(spec, fs).max_samples
        if longest < 1.0:
            return [("duration", f"the longest qualifying half-wave is {longest:.3g} samples at {fs:g} Hz; "
                                 "a half-wave lasts at least 1 sample")]
        return []

    # ------------------------------------------------------------------ online

    def check_spec(self, spec: FeatureSpec, fs: float) -> None:
        if not isinstance(spec.params, HalfWaveParams):
            raise ValueError(f"feature {spec.name!r} ({spec.kind}) needs params of type HalfWaveParams, got {spec.params!r}")
        if spec.band is None:
            raise ValueError(f"feature {spec.name!r} ({spec.kind}) needs a band")

    def ring_capacity(self, spec: FeatureSpec, window: int, every: int) -> int:
        return halfwave_ring_capacity(window, every)  # the tracker consumes every sample once

    def evaluator(self, spec: FeatureSpec, sources: Sequence[ChannelSource], fs: float,
                  window: int, every: int) -> Evaluator:
        return HalfWaveFeature(sources[0], window, criteria(spec, fs), spec.params.reduce)

    # ------------------------------------------------------------------ offline

    def offline(self, x: np.ndarray, fs: float, spec: FeatureSpec, stamps: np.ndarray) -> OfflineValues:
        """Every half-wave of the whole recording at once (``seizure_offline``), counted per window."""
        p = spec.params
        settings = HalfWaveSettings(p.min_amplitude, p.max_amplitude, *durations(spec), spec.band,
                                    spec.window_s, spec.every_s)
        out = offline_half_wave(x, fs, settings)
        return OfflineValues.untimed(out.sample_index, reduce_offline(out.value, p.reduce, percent=False))
