"""Welch band power on one window, with everything but the FFT precomputed.

Matches ``scipy.signal.welch(x, fs, window='hann', nperseg=P, noverlap=floor(P * overlap),
detrend='constant')`` with P = the feature's ``segment`` in samples (default min(window, 1 s of
samples)) and ``overlap`` 50 % by default; a band's power is the sum of the PSD bins with
lo <= f <= hi times the bin width fs / P.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import NDArray
from scipy import fft as sp_fft  # type: ignore[import-untyped]  # scipy: no type stubs installed
from scipy import signal

from controller.lang.compiled import WELCH_DEFAULT_SEGMENT_S, Band

# Bin edges equal to a band edge count as inside; this slack absorbs float rounding of f = i * fs / P.
BIN_TOLERANCE = 1e-6


def welch_nperseg(window: int, fs: float, segment_s: float | None = None) -> int:
    """Segment length in samples: the protocol's ``segment``, else the whole window, at most 1 s."""
    if segment_s is None:
        return int(min(window, round(fs * WELCH_DEFAULT_SEGMENT_S)))
    return int(min(window, round(fs * segment_s)))


def welch_noverlap(nperseg: int, overlap: float) -> int:
    """Samples shared by consecutive segments (``overlap`` a fraction, 0.5 = the usual half)."""
    return int(nperseg * overlap)


def band_mask(freqs: np.ndarray, band: Band, df: float) -> np.ndarray:
    """Boolean mask of the frequency bins inside ``band`` (edges inclusive)."""
    slack = BIN_TOLERANCE * df
    return (freqs >= band.lo_hz - slack) & (freqs <= band.hi_hz + slack)


class WelchBandPowers:
    """Band powers of a ``(n_channels, window)`` block, each averaged over channels."""

    __slots__ = ("window", "nperseg", "step", "n_segments", "_win", "_weights")

    def __init__(self, fs: float, window: int, bands: Sequence[Band], segment_s: float | None = None,
                 overlap: float = 0.5) -> None:
        nperseg = welch_nperseg(window, fs, segment_s)
        if nperseg < 2:
            raise ValueError(f"Welch needs segments of at least 2 samples, got {nperseg} at fs={fs} Hz")
        noverlap = welch_noverlap(nperseg, overlap)
        self.window = window
        self.nperseg = nperseg
        self.step = nperseg - noverlap
        self.n_segments = (window - noverlap) // self.step
        self._win = signal.get_window("hann", nperseg)  # periodic (DFT-even), as welch uses
        freqs = sp_fft.rfftfreq(nperseg, 1.0 / fs)
        df = fs / nperseg
        # Density scaling, one-sided doubling (not DC, not an even-length Nyquist bin),
        # the mean over segments and the bin width, folded into one weight per bin and band.
        onesided = np.full(freqs.size, 2.0)
        onesided[0] = 1.0
        if nperseg % 2 == 0:
            onesided[-1] = 1.0
        scale = 1.0 / (fs * np.sum(self._win**2))
        per_bin = onesided * scale * df / self.n_segments
        self._weights = np.stack([per_bin * band_mask(freqs, b, df) for b in bands], axis=1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Powers ``(n_bands,)`` for ``x`` of shape ``(n_channels, window)`` with unit-stride rows."""
        n_ch = x.shape[0]
        s_ch, s_t = x.strides
        segs = as_strided(x, (n_ch, self.n_segments, self.nperseg), (s_ch, self.step * s_t, s_t), writeable=False)
        d = segs - segs.mean(axis=-1, keepdims=True)
        d *= self._win
        spec = sp_fft.rfft(d, axis=-1)
        power = spec.real**2 + spec.imag**2  # (n_ch, n_segments, n_freqs)
        per_channel = power.sum(axis=1) @ self._weights  # (n_ch, n_bands)
        band_power: NDArray[np.float64] = per_channel.mean(axis=0)
        return band_power
