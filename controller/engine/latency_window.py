"""The loop's recent latencies (chunk arrival -> features out), for the operator's live view.

A fixed ring of the newest values, written on the hot path with one array store; the summary
(median, p99, max) is computed only when someone asks (the console's status poll, a few times a
second), so watching the loop costs the loop nothing measurable.
"""

from __future__ import annotations

import threading

import numpy as np

DEFAULT_SIZE = 4096  # ~8 s of frames at 500 Hz frame rates; minutes at the usual 10-20 Hz


class LatencyWindow:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError(f"latency window size must be >= 1, got {size}")
        self._values = np.full(size, np.nan)
        self._next = 0
        self._count = 0
        self._lock = threading.Lock()

    def record(self, latency_s: float) -> None:
        with self._lock:
            self._values[self._next] = latency_s
            self._next = (self._next + 1) % self._values.size
            self._count += 1

    def summary_ms(self) -> dict[str, float | int] | None:
        """{'median', 'p99', 'max' (ms), 'n' (frames seen)} over the newest values; None before any."""
        with self._lock:
            values = self._values[np.isfinite(self._values)].copy()
            count = self._count
        if values.size == 0:
            return None
        ms = values * 1e3
        return {"median": float(np.median(ms)), "p99": float(np.percentile(ms, 99)), "max": float(ms.max()),
                "n": count}
