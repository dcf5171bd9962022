"""Causal streaming filters and re-referencing, with state carried from chunk to chunk.

Filter state starts at zero, so running chunks through here gives exactly what one
``scipy.signal.sosfilt`` call gives on the whole recording.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import signal  # type: ignore[import-untyped]  # scipy: no type stubs installed

try:  # The compiled loop behind scipy.signal.sosfilt. Calling it directly skips ~50 us of
    # argument checking and axis shuffling per call, which dominates at one sample per chunk.
    from scipy.signal._sosfilt import _sosfilt as _SOS_KERNEL  # type: ignore[import-untyped]  # as above
except ImportError:  # pragma: no cover - other scipy layouts fall back to the public API
    _SOS_KERNEL = None


class StreamingSOS:
    """A second-order-sections IIR filter over ``n_channels`` rows, state kept between chunks."""

    __slots__ = ("_sos", "_zi", "_use_kernel")

    def __init__(self, sos: np.ndarray, n_channels: int, *, use_kernel: bool = True) -> None:
        sos = np.ascontiguousarray(sos, dtype=np.float64)
        if sos.ndim != 2 or sos.shape[1] != 6:
            raise ValueError(f"sos must have shape (n_sections, 6), got {sos.shape}")
        self._sos = sos
        # Kernel layout: (n_channels, n_sections, 2), C-contiguous.
        self._zi = np.zeros((n_channels, sos.shape[0], 2))
        self._use_kernel = use_kernel and _SOS_KERNEL is not None

    @property
    def sos(self) -> np.ndarray:
        return self._sos

    def reset(self) -> None:
        """Back to zero state (a fresh stream)."""
        self._zi.fill(0.0)

    def process_(self, x: np.ndarray) -> np.ndarray:
        """Filter ``x`` of shape ``(n_channels, n)`` IN PLACE and return it.

        ``x`` must be a C-contiguous float64 array that the caller owns.
        """
        if x.shape[1] == 0 or x.shape[0] == 0:
            return x
        if self._use_kernel:
            _SOS_KERNEL(self._sos, x, self._zi)
            return x
        y, zf = signal.sosfilt(self._sos, x, axis=-1, zi=self._zi.transpose(1, 0, 2))
        self._zi[...] = zf.transpose(1, 0, 2)
        x[...] = y
        return x


class Conditioner:
    """Pick an input's channels, re-reference them, then high-pass/notch them.

    Referencing needs every reference channel of every sample, so it is one vectorised
    reduction over the chunk; filtering is done only for the picked channels.
    """

    __slots__ = ("_n_stream", "_picks", "_ref", "_ref_scale", "_filter", "_scale")

    def __init__(
        self,
        n_stream_channels: int,
        picks: Sequence[int] | np.ndarray,
        reference: None | str | Sequence[int] | np.ndarray,
        sos: np.ndarray | None,
        scale: np.ndarray | None = None,
    ) -> None:
        """``reference``: None (as recorded), "average" (all stream channels) or column indices.
        ``scale``: per stream column factor to SI (e.g. 1e-6 for a µV amplifier), applied first."""
        self._n_stream = n_stream_channels
        self._scale = None
        if scale is not None:
            scale = np.asarray(scale, dtype=np.float64)
            if scale.shape != (n_stream_channels,):
                raise ValueError(f"scale must have one factor per stream channel ({n_stream_channels}), got {scale.shape}")
            if not np.all(scale == 1.0):
                self._scale = scale
        self._picks = np.asarray(picks, dtype=np.intp)
        self._ref: slice | np.ndarray | None  # None: as recorded; slice(None): average; else column indices
        if reference is None:
            self._ref = None
        elif isinstance(reference, str):
            if reference != "average":
                raise ValueError(f"reference must be None, 'average' or channel indices, got {reference!r}")
            self._ref = slice(None)
            self._ref_scale = n_stream_channels
        else:
            idx = np.asarray(reference, dtype=np.intp)
            if idx.size == 0:
                raise ValueError("a named reference needs at least one channel")
            self._ref = idx
            self._ref_scale = idx.size
        self._filter = None if sos is None else StreamingSOS(sos, self._picks.size)

    @property
    def n_channels(self) -> int:
        return int(self._picks.size)

    def reset(self) -> None:
        if self._filter is not None:
            self._filter.reset()

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Chunk ``(n, n_stream)`` -> conditioned picked channels ``(n_picks, n)`` (a new array)."""
        if self._scale is not None:
            chunk = chunk * self._scale
        out = chunk.T.take(self._picks, axis=0)  # new C-contiguous (n_picks, n)
        ref = self._ref
        if ref is not None:
            source = chunk if isinstance(ref, slice) else chunk.take(ref, axis=1)
            out -= np.add.reduce(source, axis=1) / self._ref_scale
        if self._filter is not None:
            self._filter.process_(out)
        return out
