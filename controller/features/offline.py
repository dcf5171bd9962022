"""Offline reference: a feature computed on a whole recording at once, the yardstick for the
streaming pipeline (online values must equal it to numerical precision).

It shares only definitions with the streaming side (filter coefficients, label matching, PSD
bins of a band) and otherwise takes the direct route: conditioning as one whole-array
``sosfilt``, then each kind's own ``offline`` on the whole conditioned recording.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import signal

from controller.dsp.design import conditioning_sos
from controller.dsp.labels import resolve_channels
from controller.dsp.reference import reference_columns
from controller.lang.compiled import FeatureSpec, InputSpec

from .kind import OfflineValues
from .registry import kind


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


def offline_values(
    data: np.ndarray,
    fs: float,
    labels: Sequence[str],
    input_spec: InputSpec,
    spec: FeatureSpec,
    stamps: np.ndarray | None = None,
    channel_types: Sequence[str] | None = None,
) -> OfflineValues:
    """(sample indices, values, at) of ``spec`` over ``data`` ``(n_samples, n_stream_channels)`` in SI.

    ``stamps``: LSL time of each sample (default ``index / fs``); only timed kinds (phase) use them.
    """
    x = conditioned(data, fs, labels, input_spec, spec.channels, channel_types)
    stamps = np.arange(x.shape[0]) / fs if stamps is None else np.asarray(stamps, dtype=np.float64)
    return kind(spec.kind).offline(x, fs, spec, stamps)


def offline_feature(
    data: np.ndarray,
    fs: float,
    stream_labels: Sequence[str],
    input_spec: InputSpec,
    feature: FeatureSpec,
    channel_types: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(sample_indices, values) of ``feature`` over ``data``: ``offline_values`` without pulse times."""
    index, value, _ = offline_values(data, fs, stream_labels, input_spec, feature, channel_types=channel_types)
    return index, value
