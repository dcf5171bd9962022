"""Offline reference of the seizure detectors: whole-recording arrays, no rings, no carried state.

Shares only definitions with the streaming side (filter coefficients, parameter dataclasses,
the half-wave criteria); the computations take a different route, so agreement means something:

- line length / area: sliding-window sums over the whole ``|diff|`` / ``|x|`` array;
- trend: cumulative sums (moving mean) or ``lfilter`` (exponential), see ``seizure_trend``;
- half-waves: zero steps removed first, turning points where consecutive non-zero step signs
  differ, every half-wave of the recording at once; windows count them by ``searchsorted``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray
from scipy import signal  # type: ignore[import-untyped]  # scipy: no type stubs installed

from controller.dsp.design import bandpass_sos
from controller.dsp.seizure.detectors import HalfWaveParams, SeizureValues, TrendedWindowParams, window_and_hop
from controller.dsp.seizure.halfwave import HalfWaveCriteria
from controller.dsp.seizure.trend import hold_evaluations, offline_trend_ratio, trend_lengths
from controller.lang.compiled import Band


def _prepared(data: np.ndarray, fs: float, band: Band | None) -> np.ndarray:
    x = np.asarray(data, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if band is not None:
        x = signal.sosfilt(bandpass_sos(fs, band), x, axis=0)
    return x


def _window_sums(per_sample: np.ndarray, span: int, ends: np.ndarray) -> np.ndarray:
    """Sum of ``per_sample[e - span + 1 : e + 1]`` for each ``e`` in ``ends`` -> (len(ends), n_channels)."""
    windows = sliding_window_view(per_sample, span, axis=0)  # (n - span + 1, n_channels, span)
    sums: NDArray[np.float64] = windows[ends - span + 1].sum(axis=-1)
    return sums


def _trended(data: np.ndarray, fs: float, params: TrendedWindowParams, measure: str, min_window: int) -> SeizureValues:
    window, every = window_and_hop(params.window_s, params.every_s, fs, f"offline {measure}", min_window)
    length, min_count = trend_lengths(params.trend_s, params.trend_min_s, every, fs)
    x = _prepared(data, fs, params.band)
    ends = np.arange(window - 1, x.shape[0], every)
    if measure == "line length":
        # |x[i+1] - x[i]| sits at index i; the window [e-W+1, e] holds steps e-W+1 .. e-1.
        values = _window_sums(np.abs(np.diff(x, axis=0)), window - 1, ends - 1)
    else:
        values = _window_sums(np.abs(x), window, ends)
    ratio = offline_trend_ratio(values, length, min_count, params.trend, params.hold_above,
                                hold_evaluations(params.hold_max_s, every, fs))
    return SeizureValues(ends, values, ratio)


def offline_line_length(data: np.ndarray, fs: float, params: TrendedWindowParams = TrendedWindowParams()) -> SeizureValues:
    """Line length and ratio to trend of ``data`` ``(n_samples, n_channels)`` at every due sample."""
    return _trended(data, fs, params, "line length", 2)


def offline_area(data: np.ndarray, fs: float, params: TrendedWindowParams = TrendedWindowParams()) -> SeizureValues:
    """Area (sum |x|) and ratio to trend of ``data`` ``(n_samples, n_channels)`` at every due sample."""
    return _trended(data, fs, params, "area", 1)


def halfwaves(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every half-wave of one channel ``x``: (end turning sample, amplitude, duration in samples).

    Also what a threshold is calibrated from (e.g. a percentile of baseline amplitudes).
    """
    x = np.asarray(x, dtype=np.float64)
    step_sign = np.sign(np.diff(x))  # index i: the step from sample i to sample i + 1
    moving = np.flatnonzero(step_sign)  # plateaus dropped: they never change direction
    # A step whose sign differs from the previous moving step leaves a turning point: sample i.
    turns = moving[1:][step_sign[moving[1:]] != step_sign[moving[:-1]]]
    if turns.size < 2:
        empty = np.empty(0)
        return empty.astype(np.int64), empty, empty
    amplitude = np.abs(x[turns[1:]] - x[turns[:-1]])
    duration = (turns[1:] - turns[:-1]).astype(np.float64)
    return turns[1:].astype(np.int64), amplitude, duration


def halfwave_events(x: np.ndarray, criteria: HalfWaveCriteria, channel: int = 0) -> np.ndarray:
    """Confirmation samples (end turning point + 1) of the qualified half-waves of one channel ``x``.

    ``channel`` picks the amplitude bounds when the criteria give one per channel.
    """
    ends, amplitude, duration = halfwaves(x)
    confirmed: NDArray[np.int64] = ends[criteria.qualifies(amplitude, duration, channel)] + 1
    return confirmed


def offline_half_wave(data: np.ndarray, fs: float, params: HalfWaveParams) -> SeizureValues:
    """Qualified half-wave counts of ``data`` ``(n_samples, n_channels)`` in every due window."""
    window, every = window_and_hop(params.window_s, params.every_s, fs, "offline half-wave")
    x = _prepared(data, fs, params.band)
    criteria = params.criteria(fs)
    criteria.check_channels(x.shape[1], "offline half-wave")
    ends = np.arange(window - 1, x.shape[0], every)
    counts = np.empty((ends.size, x.shape[1]))
    for c in range(x.shape[1]):
        events = halfwave_events(x[:, c], criteria, c)
        counts[:, c] = np.searchsorted(events, ends, side="right") - np.searchsorted(events, ends - window, side="right")
    return SeizureValues(ends, counts, None)
