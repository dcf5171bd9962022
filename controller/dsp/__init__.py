"""Streaming signal processing that knows no feature kind: filters, ring buffers, window
schedules, spectral estimates, and the evaluators and detectors the kinds are built from.

The feature kinds, the streaming ``FeaturePipeline`` and the offline reference live in
``controller.features``.
"""

from .features import FeatureValue
from .filters import Conditioner, StreamingSOS
from .labels import normalize_label, resolve_channels
from .ring import RingBuffer
from .schedule import WindowSchedule, feature_window, to_samples

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
