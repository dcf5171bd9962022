"""Seizure-onset detector features for responsive stimulation: line length, area, half-waves.

The three classic responsive-neurostimulation detectors, as streaming objects with state kept
from chunk to chunk and values on a sample schedule (window W, hop S: values at samples
W-1, W-1+S, ... exactly as ``schedule.py``), so their output does not depend on chunking:

- ``LineLengthDetector``: line length of the last ``window_s`` and its ratio to its own
  long-term trend (``seizure_trend``): a protocol writes ``ll > 175 %`` for "75 % above trend".
- ``AreaDetector``: the same for the area (sum of |x|).
- ``HalfWaveDetector``: qualified half-waves (amplitude and duration in range) of a band-passed
  signal counted over the window (``seizure_halfwave``).

Each detector is a causal band-pass (optional for line length/area) + a ring buffer + one
evaluator from ``seizure_features``: the same pieces the feature pipeline uses, so the lead can
build them there from a ``FeatureSpec``. The whole-recording reference is ``seizure_offline``.
All parameters are in SI units (seconds, hertz; amplitudes in the stream's own unit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from controller.dsp.design import bandpass_sos
from controller.dsp.features import ChannelSource
from controller.dsp.filters import StreamingSOS
from controller.dsp.ring import RingBuffer
from controller.dsp.schedule import WindowSchedule, to_samples
from controller.dsp.seizure.features import AreaFeature, HalfWaveFeature, LineLengthFeature, halfwave_ring_capacity
from controller.dsp.seizure.halfwave import HalfWaveCriteria, default_durations
from controller.dsp.seizure.trend import TREND_KINDS, Trend, TrendKind, hold_evaluations, trend_lengths
from controller.lang.compiled import Band

DEFAULT_HALFWAVE_BAND = Band(3.0, 30.0)


@dataclass(frozen=True)
class TrendedWindowParams:
    """Line length / area settings a protocol author chooses.

    window_s: short window; every_s: evaluation hop; trend_s: span of the long-term trend
    (for ``trend="ema"`` its time constant); trend_min_s: history needed before the ratio is
    defined (default trend_s; NaN before); band: optional causal Butterworth band-pass first;
    hold_above: ratio above which a channel's trend holds (an episode must not become its own
    baseline; None: never), for at most hold_max_s (None: as long as it lasts).
    """

    window_s: float = 1.0
    every_s: float = 0.1
    trend_s: float = 60.0
    trend: TrendKind = "mean"
    trend_min_s: float | None = None
    band: Band | None = None
    hold_above: float | None = None
    hold_max_s: float | None = None

    def trend_for(self, n_channels: int, every: int, fs: float) -> Trend:
        """The streaming trend these settings describe, for a detector evaluated every ``every`` samples."""
        length, min_count = trend_lengths(self.trend_s, self.trend_min_s, every, fs)
        return Trend(n_channels, length, min_count, self.trend, self.hold_above, hold_evaluations(self.hold_max_s, every, fs))


@dataclass(frozen=True)
class HalfWaveParams:
    """Half-wave detector settings.

    min_amplitude / max_amplitude: half-wave height range in the stream's unit (e.g. volts),
    one number or a tuple with one per channel;
    min_duration_s / max_duration_s: half-wave duration range, default half a period of
    band.hi_hz .. band.lo_hz; band: causal Butterworth band-pass applied first (None: the signal is used as is,
    then both durations must be given).
    """

    min_amplitude: float | tuple[float, ...]
    max_amplitude: float | tuple[float, ...] = math.inf
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    band: Band | None = DEFAULT_HALFWAVE_BAND
    window_s: float = 1.0
    every_s: float = 0.1

    def criteria(self, fs: float) -> HalfWaveCriteria:
        """The qualification rule at ``fs``; durations default to the band's half periods."""
        lo_s, hi_s = self.min_duration_s, self.max_duration_s
        if lo_s is None or hi_s is None:
            if self.band is None:
                raise ValueError("half-wave detector without a band needs min_duration_s and max_duration_s")
            short, long = default_durations(self.band.lo_hz, self.band.hi_hz)
            lo_s = short if lo_s is None else lo_s
            hi_s = long if hi_s is None else hi_s
        return HalfWaveCriteria.from_seconds(fs, self.min_amplitude, self.max_amplitude, lo_s, hi_s)


@dataclass(frozen=True)
class SeizureValues:
    """Detector output at the due samples: ``value``/``ratio`` are ``(n_due, n_channels)``.

    ``ratio`` is value / long-term trend (NaN while the trend warms up); None for half-waves.
    """

    sample_index: np.ndarray
    value: np.ndarray
    ratio: np.ndarray | None

    @staticmethod
    def concat(parts: list[SeizureValues], n_channels: int) -> SeizureValues:
        """Join the outputs of successive pushes."""
        idx = np.concatenate([p.sample_index for p in parts]) if parts else np.empty(0, dtype=np.int64)
        val = np.concatenate([p.value for p in parts]) if parts else np.empty((0, n_channels))
        has_ratio = bool(parts) and parts[0].ratio is not None
        ratio = np.concatenate([p.ratio for p in parts]) if has_ratio else None
        return SeizureValues(idx, val, ratio)


def window_and_hop(window_s: float, every_s: float, fs: float, what: str, min_window: int = 1) -> tuple[int, int]:
    """(W, S) in samples, with an error naming the detector when either is too short."""
    if not (math.isfinite(fs) and fs > 0):
        raise ValueError(f"{what}: sampling rate must be a positive number, got {fs}")
    window, every = to_samples(window_s, fs), to_samples(every_s, fs)
    if window < min_window or every < 1:
        raise ValueError(
            f"{what}: window {window_s} s and every {every_s} s are {window} and {every} samples at fs={fs} Hz; "
            f"need a window of at least {min_window} samples and a hop of at least 1"
        )
    return window, every


class _StreamingDetector:
    """Band-pass (optional) -> ring -> evaluator at due samples; one object per stream."""

    has_ratio = True
    _evaluator: LineLengthFeature | AreaFeature | HalfWaveFeature  # set by the subclass, after this __init__

    def __init__(self, fs: float, n_channels: int, window: int, every: int, band: Band | None, capacity: int) -> None:
        if n_channels < 1:
            raise ValueError(f"{type(self).__name__} needs at least one channel, got {n_channels}")
        self.fs = float(fs)
        self.n_channels = n_channels
        self.window, self.every = window, every
        self._filter = None
        if band is not None:
            self._filter = StreamingSOS(bandpass_sos(fs, band, what=f"{type(self).__name__} band"), n_channels)
        self._ring = RingBuffer(n_channels, capacity)
        self._schedule = WindowSchedule(window, every)
        self._source = ChannelSource(self._ring, np.arange(n_channels))
        self._count = 0

    @property
    def sample_count(self) -> int:
        return self._count

    def reset(self) -> None:
        """Start over (new stream): filter state, ring, schedule and trend/tracker."""
        if self._filter is not None:
            self._filter.reset()
        self._ring.reset()
        self._schedule.reset()
        self._evaluator.reset()
        self._count = 0

    def _evaluate(self) -> tuple[np.ndarray, np.ndarray | None]:  # pragma: no cover - abstract
        raise NotImplementedError

    def push(self, chunk: np.ndarray) -> SeizureValues:
        """Feed ``chunk`` ``(n_samples, n_channels)`` (1-D allowed for one channel); values due inside it."""
        x = np.asarray(chunk, dtype=np.float64)
        if x.ndim == 1 and self.n_channels == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise ValueError(
                f"{type(self).__name__}: chunk must have shape (n_samples, {self.n_channels}), got {x.shape}"
            )
        n = x.shape[0]
        block = np.array(x.T, dtype=np.float64, order="C")  # own copy: the filter works in place
        if self._filter is not None:
            self._filter.process_(block)
        start, end = self._count, self._count + n
        self._count = end
        due = self._schedule.take_due(end)
        values = np.empty((len(due), self.n_channels))
        ratios = np.empty((len(due), self.n_channels)) if self.has_ratio else None
        written = 0
        for i, k in enumerate(due):
            upto = k - start + 1
            self._ring.write(block[:, written:upto])
            written = upto
            value, ratio = self._evaluate()
            values[i] = value
            if ratios is not None:
                ratios[i] = ratio
        self._ring.write(block[:, written:])
        return SeizureValues(np.asarray(due, dtype=np.int64), values, ratios)


class _TrendedDetector(_StreamingDetector):
    _feature_class: type[LineLengthFeature | AreaFeature] = LineLengthFeature
    _evaluator: LineLengthFeature | AreaFeature
    _min_window = 1

    def __init__(self, fs: float, n_channels: int, params: TrendedWindowParams = TrendedWindowParams()) -> None:
        name = type(self).__name__
        window, every = window_and_hop(params.window_s, params.every_s, fs, name, self._min_window)
        if params.trend not in TREND_KINDS:
            raise ValueError(f"{name}: trend must be one of {TREND_KINDS}, got {params.trend!r}")
        trend = params.trend_for(n_channels, every, fs)
        super().__init__(fs, n_channels, window, every, params.band, window)
        self.params = params
        self._evaluator = self._feature_class(self._source, window, trend)

    def _evaluate(self) -> tuple[np.ndarray, np.ndarray]:
        return self._evaluator.values()


class LineLengthDetector(_TrendedDetector):
    """Streaming line length (sum of |x[n] - x[n-1]| in the window) and its ratio to trend."""

    _feature_class = LineLengthFeature
    _min_window = 2


class AreaDetector(_TrendedDetector):
    """Streaming area (sum of |x[n]| in the window) and its ratio to trend."""

    _feature_class = AreaFeature


class HalfWaveDetector(_StreamingDetector):
    """Streaming count of qualified half-waves of the band-passed signal in the window."""

    has_ratio = False
    _evaluator: HalfWaveFeature

    def __init__(self, fs: float, n_channels: int, params: HalfWaveParams) -> None:
        window, every = window_and_hop(params.window_s, params.every_s, fs, "HalfWaveDetector")
        criteria = params.criteria(fs)
        criteria.check_channels(n_channels, "HalfWaveDetector")
        super().__init__(fs, n_channels, window, every, params.band, halfwave_ring_capacity(window, every))
        self.params = params
        self._evaluator = HalfWaveFeature(self._source, window, criteria)

    def _evaluate(self) -> tuple[np.ndarray, None]:
        return self._evaluator.values(), None
