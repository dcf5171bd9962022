"""Streaming signal processing that knows no feature kind: filters, ring buffers, window
schedules, spectral estimates, and the evaluators and detectors the kinds are built from.

The feature kinds, the streaming ``FeaturePipeline`` and the offline reference live in
``controller.features``.
"""

from controller.dsp.features import FeatureValue
from controller.dsp.filters import Conditioner, StreamingSOS
from controller.dsp.labels import normalize_label, resolve_channels
from controller.dsp.ring import RingBuffer
from controller.dsp.schedule import WindowSchedule, feature_window, to_samples

__all__ = [
    "Conditioner",
    "FeatureValue",
    "RingBuffer",
    "StreamingSOS",
    "WindowSchedule",
    "feature_window",
    "normalize_label",
    "resolve_channels",
    "to_samples",
]
