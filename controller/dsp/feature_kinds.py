"""The newer feature kinds (line_length, area, halfwave, slope, phase) as pipeline evaluators.

The pipeline asks three things of a feature: which filtered copy of the conditioned signal it
reads (``reads``), how many samples of it must be kept (``ring_capacity``), and the evaluator
itself (``build``). ``rate_problems`` says, for a stream rate, what would stop a feature from
running (the loader uses it when the protocol states a rate, the runner with the real one).

Values, in the units the protocol compares them with:

- line_length, area: percent of the measure's own long-term trend (``100 * value / trend``,
  reduced over channels; NaN until the trend has formed, conditions on NaN are false);
  with ``reduce: {channels_above: 200 %}`` the number of channels above 200 % (a vote);
- halfwave: qualified half-waves in the window (a count, reduced over channels, or the number
  of channels with more than N);
- slope: least-squares slope in signal units per second, mean over channels;
- phase: 1.0 when a pulse is committed, else 0.0, with ``FeatureValue.at`` (see phase_feature).
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.protocol.compiled import (
    Band, ChannelsAbove, FeatureSpec, HalfWaveParams, PhaseParams, SeizureParams, SlopeParams,
)

from .features import ChannelSource
from .phase_feature import PhaseFeature, gate_length, make_method
from .seizure_features import AreaFeature, HalfWaveFeature, LineLengthFeature, halfwave_ring_capacity
from .seizure_halfwave import HalfWaveCriteria, default_durations
from .seizure_trend import Trend, hold_evaluations, trend_lengths
from .slope import SlopeFeature

KINDS = frozenset({"line_length", "area", "halfwave", "slope", "phase"})
_PARAMS = {
    "line_length": SeizureParams,
    "area": SeizureParams,
    "halfwave": HalfWaveParams,
    "slope": SlopeParams,
    "phase": PhaseParams,
}


@dataclass(frozen=True)
class Lowpass:
    """A low-passed copy of the conditioned signal (the key of a pipeline filter stage)."""

    hz: float


FilterKey = Band | Lowpass | None  # None: the conditioned signal itself


def check_spec(spec: FeatureSpec) -> None:
    """ValueError naming the feature when its params do not belong to its kind."""
    want = _PARAMS[spec.kind]
    if not isinstance(spec.params, want):
        raise ValueError(f"feature {spec.name!r} ({spec.kind}) needs params of type {want.__name__}, got {spec.params!r}")
    if spec.kind in ("halfwave", "phase") and spec.band is None:
        raise ValueError(f"feature {spec.name!r} ({spec.kind}) needs a band")
    if spec.kind == "slope" and spec.params.lowpass_hz is not None and spec.band is not None:
        raise ValueError(f"feature {spec.name!r} (slope): give a lowpass or a band, not both")


def reads(spec: FeatureSpec) -> FilterKey:
    """The filtered copy of the conditioned signal the feature's window is taken from."""
    if spec.kind == "phase":
        return None  # the phase method filters the spatially filtered signal itself
    if spec.kind == "slope" and spec.params.lowpass_hz is not None:
        return Lowpass(spec.params.lowpass_hz)
    return spec.band


def ring_capacity(spec: FeatureSpec, window: int, every: int) -> int:
    """Samples the feature needs kept: the window, or every sample between evaluations for the
    kinds that consume each sample once (half-wave tracker, phase filter)."""
    if spec.kind in ("halfwave", "phase"):
        return halfwave_ring_capacity(window, every)
    return window


class _Percent:
    """A ratio evaluator scaled to percent (the unit protocols write: ``ll > 175 %``)."""

    __slots__ = ("_inner",)

    def __init__(self, inner) -> None:
        self._inner = inner

    def reset(self) -> None:
        self._inner.reset()

    def __call__(self) -> float:
        return 100.0 * self._inner()


def halfwave_durations(spec: FeatureSpec) -> tuple[float, float]:
    """(shortest, longest) qualifying half-wave in seconds; unset ones are half periods of the band's edges."""
    p: HalfWaveParams = spec.params
    short, long = default_durations(spec.band.lo_hz, spec.band.hi_hz)  # type: ignore[union-attr]
    return (short if p.min_duration_s is None else p.min_duration_s,
            long if p.max_duration_s is None else p.max_duration_s)


def halfwave_criteria(spec: FeatureSpec, fs: float) -> HalfWaveCriteria:
    return HalfWaveCriteria.from_seconds(fs, spec.params.min_amplitude, spec.params.max_amplitude, *halfwave_durations(spec))


def build(spec: FeatureSpec, source: ChannelSource, fs: float, window: int, every: int):
    """The evaluator of ``spec``: ``()`` -> float, or for phase ``(time, index)`` -> (value, at)."""
    check_spec(spec)
    p = spec.params
    n = source.ring.n_channels if source.rows is None else source.rows.size
    if spec.kind in ("line_length", "area"):
        length, min_count = trend_lengths(p.trend_s, p.warmup_s, every, fs)
        trend = Trend(n, length, min_count, p.trend_kind, p.hold_above, hold_evaluations(p.hold_max_s, every, fs))
        cls = LineLengthFeature if spec.kind == "line_length" else AreaFeature
        feature = cls(source, window, trend, "ratio", p.reduce)
        return feature if isinstance(p.reduce, ChannelsAbove) else _Percent(feature)  # a vote is a channel count
    if spec.kind == "halfwave":
        return HalfWaveFeature(source, window, halfwave_criteria(spec, fs), p.reduce)
    if spec.kind == "slope":
        return SlopeFeature(source, window, fs)
    return PhaseFeature(source, spec, fs, every)


def rate_problems(spec: FeatureSpec, fs: float) -> list[tuple[str, str]]:
    """(protocol key, message) for each reason ``spec`` cannot run on a stream at ``fs`` Hz.

    Only what is specific to the kind; window/every sample counts and bands against Nyquist
    are checked for every feature by the callers.
    """
    out: list[tuple[str, str]] = []
    p = spec.params
    window, every = round(spec.window_s * fs), round(spec.every_s * fs)
    if window < 1 or every < 1:
        return out  # reported by the generic checks
    at = f"at {fs:g} Hz"
    if spec.kind in ("line_length", "slope") and window < 2:
        out.append(("window", f"window {spec.window_s:g} s is {window} sample {at}; {spec.kind} needs at least 2"))
    if spec.kind in ("line_length", "area"):
        try:
            trend_lengths(p.trend_s, p.warmup_s, every, fs)
        except ValueError as exc:
            out.append(("warmup" if "warm-up" in str(exc) else "trend", f"{exc} {at}"))
    if spec.kind == "slope" and p.lowpass_hz is not None and p.lowpass_hz >= fs / 2:
        out.append(("lowpass", f"lowpass {p.lowpass_hz:g} Hz is at or above the Nyquist frequency {fs / 2:g} Hz"))
    if spec.kind == "halfwave" and spec.band is not None and spec.band.hi_hz < fs / 2:
        criteria = halfwave_criteria(spec, fs)
        if criteria.max_samples < 1.0:
            out.append(("duration", f"the longest qualifying half-wave is {criteria.max_samples:.3g} samples {at}; "
                                    "a half-wave lasts at least 1 sample"))
    if spec.kind == "phase" and spec.band is not None and spec.band.hi_hz < fs / 2:
        try:
            make_method(spec, fs)
        except ValueError as exc:
            out.append(("window", str(exc)))
        if p.amplitude_q is not None and gate_length(spec, fs) < 1:
            out.append(("amplitude_over", f"amplitude_over {p.amplitude_over_s:g} s is shorter than one evaluation {at}"))
    return out
