"""Offline reference: the same feature computed on a whole recording at once.

This is the yardstick for the streaming pipeline. It shares only the definitions (filter
coefficients, label matching, which PSD bins belong to a band) and otherwise takes the
direct route: whole-array ``sosfilt``, then ``scipy.signal.welch`` / mean of squares /
peak-to-peak on each window, no ring buffers, no carried state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import signal

from controller.protocol.compiled import FeatureSpec, InputSpec

from .design import bandpass_sos, conditioning_sos
from .features import DEFAULT_TOTAL_BAND
from .labels import resolve_channels
from .reference import reference_columns
from .spectral import band_mask, welch_noverlap, welch_nperseg


def offline_feature(
    data: np.ndarray,
    fs: float,
    stream_labels: Sequence[str],
    input_spec: InputSpec,
    feature: FeatureSpec,
    channel_types: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(sample_indices, values) of ``feature`` over ``data`` ``(n_samples, n_stream_channels)`` in SI."""
    data = np.asarray(data, dtype=np.float64)
    labels = list(stream_labels)
    cols = resolve_channels(feature.channels, labels, where=f"stream of input {input_spec.name!r}")

    # Reference, then high-pass/notch, on the whole recording.
    x = data[:, cols]
    ref_cols = reference_columns(input_spec, labels, channel_types)
    if ref_cols is not None:
        x = x - data[:, ref_cols].mean(axis=1)[:, None]
    sos = conditioning_sos(fs, input_spec)
    if sos is not None:
        x = signal.sosfilt(sos, x, axis=0)

    window = int(round(feature.window_s * fs))
    every = int(round(feature.every_s * fs))
    ends = np.arange(window - 1, x.shape[0], every)

    if feature.kind == "peak_to_peak":
        if feature.band is not None:
            x = signal.sosfilt(bandpass_sos(fs, feature.band), x, axis=0)
        values = [np.ptp(x[k - window + 1 : k + 1], axis=0).mean() for k in ends]
        return ends, np.asarray(values, dtype=np.float64)

    if feature.kind == "band_power":
        bands = [feature.band]
    elif feature.kind == "band_ratio":
        bands = [feature.numerator, feature.denominator]
    else:  # relative_power
        bands = [feature.band, feature.total or DEFAULT_TOTAL_BAND]

    if feature.method == "welch":
        nperseg = welch_nperseg(window, fs, feature.segment_s)
        noverlap = welch_noverlap(nperseg, feature.overlap)
        df = fs / nperseg
        powers = np.empty((ends.size, len(bands)))
        for j, k in enumerate(ends):
            freqs, psd = signal.welch(
                x[k - window + 1 : k + 1],
                fs=fs,
                window="hann",
                nperseg=nperseg,
                noverlap=noverlap,
                detrend="constant",
                axis=0,
            )  # psd: (n_freqs, n_channels)
            for b, band in enumerate(bands):
                powers[j, b] = (psd[band_mask(freqs, band, df)].sum(axis=0) * df).mean()
    else:  # iir: causal band-pass of the whole recording, then mean square per window
        powers = np.empty((ends.size, len(bands)))
        for b, band in enumerate(bands):
            y = signal.sosfilt(bandpass_sos(fs, band), x, axis=0)
            sq = y**2
            powers[:, b] = [sq[k - window + 1 : k + 1].mean(axis=0).mean() for k in ends]

    if len(bands) == 1:
        return ends, powers[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(powers[:, 1] > 0, powers[:, 0] / powers[:, 1], np.nan)
    return ends, values
