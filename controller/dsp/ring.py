"""A preallocated multichannel ring buffer whose recent windows are contiguous views.

The hot path writes every chunk here and, when a feature is due, reads the last W samples.
Storing each sample twice (at position p and p + capacity) makes the newest ``n <= capacity``
samples one contiguous slice, so a window read never allocates or concatenates.
Layout is channel-major, ``(n_channels, n_samples)``, to match the filters and the FFTs.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class RingBuffer:
    """Fixed-capacity ring of ``n_channels`` float rows; keeps the newest ``capacity`` samples."""

    __slots__ = ("_buf", "_cap", "_pos", "_count")

    def __init__(self, n_channels: int, capacity: int, dtype: type = np.float64) -> None:
        if capacity < 1:
            raise ValueError(f"ring buffer capacity must be >= 1 sample, got {capacity}")
        if n_channels < 0:
            raise ValueError(f"ring buffer needs n_channels >= 0, got {n_channels}")
        # (n_channels, 2 * capacity) of ``dtype``
        self._buf: np.ndarray[tuple[int, int], np.dtype[Any]] = np.zeros((n_channels, 2 * capacity), dtype=dtype)
        self._cap = capacity
        self._pos = 0  # where the next sample goes, in [0, capacity)
        self._count = 0  # samples written since construction / reset

    @property
    def capacity(self) -> int:
        return self._cap

    @property
    def n_channels(self) -> int:
        return self._buf.shape[0]

    @property
    def count(self) -> int:
        """Samples written since the last reset (may exceed capacity)."""
        return self._count

    def reset(self) -> None:
        """Forget everything written (the storage is kept and zeroed)."""
        self._buf.fill(0.0)
        self._pos = 0
        self._count = 0

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` of shape ``(n_channels, n)``; only the newest ``capacity`` samples are kept."""
        n = block.shape[1]
        if n == 0:
            return
        buf, cap = self._buf, self._cap
        self._count += n
        if n >= cap:
            tail = block[:, n - cap :]
            buf[:, :cap] = tail
            buf[:, cap:] = tail
            self._pos = 0
            return
        p = self._pos
        end = p + n
        buf[:, p:end] = block  # end < 2 * cap: the doubled storage holds it in one piece
        if end <= cap:
            buf[:, p + cap : end + cap] = block
            self._pos = end if end < cap else 0
        else:
            split = cap - p
            buf[:, p + cap :] = block[:, :split]
            buf[:, : end - cap] = block[:, split:]
            self._pos = end - cap

    def latest(self, n: int) -> np.ndarray:
        """View ``(n_channels, n)`` of the newest ``n`` samples, oldest first (valid until the next write)."""
        if not 0 < n <= self._cap:
            raise ValueError(f"window of {n} samples does not fit a ring of capacity {self._cap}")
        if n > self._count:
            raise ValueError(f"window of {n} samples requested but only {self._count} were written")
        end = self._pos + self._cap
        return self._buf[:, end - n : end]
