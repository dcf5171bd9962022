"""Offline reference of the newer feature kinds on a whole recording (the yardstick for the pipeline).

Like ``offline.py`` it shares only definitions with the streaming side and takes the direct
route: conditioning and filters as one whole-array ``sosfilt``, then

- line_length / area / halfwave: ``seizure_offline`` (sliding sums, cumulative-sum trends,
  every half-wave of the recording at once), reduced over channels;
- slope: ``numpy.polyfit`` of a line to each window;
- phase: the spatial filter and the method's causal filter on the whole recording, the method
  on sliced windows, the amplitude gate from the list of previous estimates, and the same
  ``PhaseTrigger`` decisions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import signal

from controller.protocol.compiled import ChannelsAbove, FeatureSpec, InputSpec

from .design import bandpass_sos, conditioning_sos
from .feature_kinds import halfwave_durations
from .labels import resolve_channels
from .reference import reference_columns
from .phase import PhaseEstimate
from .phase_etp import fit_etp
from .phase_feature import gate_length, make_method, spatial_weights
from .phase_trigger import PhaseTrigger
from .schedule import to_samples
from .seizure import HalfWaveParams, TrendedWindowParams
from .seizure_offline import offline_area, offline_half_wave, offline_line_length
from .slope import lowpass_sos

_REDUCE = {"mean": np.mean, "median": np.median, "max": np.max}


def conditioned(
    data: np.ndarray, fs: float, labels: Sequence[str], input_spec: InputSpec, channels: Sequence[str],
    channel_types: Sequence[str] | None = None,
) -> np.ndarray:
    """``channels`` of ``data`` ``(n_samples, n_stream)`` re-referenced and high-passed/notched as the input says."""
    data = np.asarray(data, dtype=np.float64)
    labels = list(labels)
    x = data[:, resolve_channels(channels, labels, where=f"stream of input {input_spec.name!r}")]
    ref_cols = reference_columns(input_spec, labels, channel_types)
    if ref_cols is not None:
        x = x - data[:, ref_cols].mean(axis=1)[:, None]
    sos = conditioning_sos(fs, input_spec)
    return x if sos is None else signal.sosfilt(sos, x, axis=0)


def offline_kind_feature(
    data: np.ndarray,
    fs: float,
    labels: Sequence[str],
    input_spec: InputSpec,
    spec: FeatureSpec,
    stamps: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sample indices, values, at) of ``spec`` over ``data``; ``at`` is NaN except at phase pulses.

    ``stamps``: LSL time of each sample (default ``index / fs``); only the phase kind uses them.
    """
    x = conditioned(data, fs, labels, input_spec, spec.channels)
    if stamps is None:
        stamps = np.arange(x.shape[0]) / fs
    if spec.kind == "phase":
        return offline_phase(x, fs, spec, np.asarray(stamps, dtype=np.float64))
    p = spec.params
    if spec.kind in ("line_length", "area"):
        params = TrendedWindowParams(spec.window_s, spec.every_s, p.trend_s, p.trend_kind, p.warmup_s, spec.band,
                                     p.hold_above, p.hold_max_s)
        run = offline_line_length if spec.kind == "line_length" else offline_area
        out = run(x, fs, params)
        values = _reduced(out.ratio, p.reduce, percent=True)
    elif spec.kind == "halfwave":
        params = HalfWaveParams(
            p.min_amplitude, p.max_amplitude, *halfwave_durations(spec), spec.band, spec.window_s, spec.every_s
        )
        out = offline_half_wave(x, fs, params)
        values = _reduced(out.value, p.reduce, percent=False)
    elif spec.kind == "slope":
        return _offline_slope(x, fs, spec)
    else:
        raise ValueError(f"feature {spec.name!r}: {spec.kind} is not one of the newer kinds")
    return out.sample_index, values, np.full(values.shape, math.nan)


def _reduced(per_channel: np.ndarray, reduce, *, percent: bool) -> np.ndarray:
    """(n, n_channels) -> (n,): a statistic (in percent for trend ratios), or a channel vote's count."""
    if isinstance(reduce, ChannelsAbove):
        with np.errstate(invalid="ignore"):
            return (per_channel > reduce.level).sum(axis=1).astype(np.float64)
    values = _REDUCE[reduce](per_channel, axis=1)
    return 100.0 * values if percent else values


def _offline_slope(x: np.ndarray, fs: float, spec: FeatureSpec):
    if spec.params.lowpass_hz is not None:
        x = signal.sosfilt(lowpass_sos(fs, spec.params.lowpass_hz), x, axis=0)
    elif spec.band is not None:
        x = signal.sosfilt(bandpass_sos(fs, spec.band), x, axis=0)
    window, every = to_samples(spec.window_s, fs), to_samples(spec.every_s, fs)
    ends = np.arange(window - 1, x.shape[0], every)
    t = np.arange(window) / fs
    values = np.array([np.polyfit(t, x[k - window + 1 : k + 1], 1)[0].mean() for k in ends])
    return ends, values, np.full(values.shape, math.nan)


def offline_phase(x: np.ndarray, fs: float, spec: FeatureSpec, stamps: np.ndarray):
    """The phase kind on conditioned ``(center, *neighbours)`` columns ``x``."""
    p = spec.params
    s = x @ spatial_weights(p)
    window, every = to_samples(spec.window_s, fs), to_samples(spec.every_s, fs)
    ends = np.arange(window - 1, s.size, every)
    start, ready = 0, 0  # filtering starts at `start`; estimates from sample `ready` on
    if p.method == "etp":
        n_train = to_samples(p.train_s, fs)
        model = None
        while model is None and start + n_train <= s.size:
            try:
                model = fit_etp(s[start : start + n_train], fs, spec.band)
            except ValueError:
                start += n_train
        if model is None:
            return ends, np.zeros(ends.size), np.full(ends.size, math.nan)
        method = make_method(spec, fs, model)
        ready = start + n_train - 1
    else:
        method = make_method(spec, fs)
    y = s[start:] if method.causal_sos is None else signal.sosfilt(method.causal_sos, s[start:])
    trigger = PhaseTrigger(min_interval_s=p.min_interval_s, hop_s=every / fs, device_delay_s=p.delay_s)
    history: list[float] = []
    n_gate = gate_length(spec, fs) if p.amplitude_q is not None else 0
    values, at = np.zeros(ends.size), np.full(ends.size, math.nan)
    for i, k in enumerate(ends):
        if k < ready or k - start + 1 < window:
            continue
        phase, amp, freq, ahead = method(y[k - start - window + 1 : k - start + 1])
        ok = p.amplitude_min is None or amp >= p.amplitude_min
        if p.amplitude_q is not None:
            ok = ok and len(history) >= n_gate and amp >= np.percentile(history[-n_gate:], p.amplitude_q)
            history.append(amp if math.isfinite(amp) else 0.0)
        if not ok:
            continue
        t = float(stamps[k])
        pulse = trigger.decide(PhaseEstimate(phase, amp, freq, t + p.delay_s, t + ahead, t, int(k)))
        if pulse is not None:
            values[i], at[i] = 1.0, pulse
    return ends, values, at
