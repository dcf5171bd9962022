"""Streaming signal processing and features: filters, ring buffers, windowed features.

``FeaturePipeline`` is the hot-path object (one per input); ``offline_feature`` computes the
same values on a whole recording and is what tests compare the pipeline against.
"""

from .features import DEFAULT_TOTAL_BAND, FeatureValue
from .filters import Conditioner, StreamingSOS
from .labels import normalize_label, resolve_channels
from .offline import offline_feature
from .pipeline import FeaturePipeline
from .ring import RingBuffer
from .schedule import WindowSchedule, feature_window, to_samples

__all__ = [
    "DEFAULT_TOTAL_BAND",
    "Conditioner",
    "FeaturePipeline",
    "FeatureValue",
    "RingBuffer",
    "StreamingSOS",
    "WindowSchedule",
    "feature_window",
    "normalize_label",
    "offline_feature",
    "resolve_channels",
    "to_samples",
]
