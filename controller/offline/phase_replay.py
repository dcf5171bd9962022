"""Replay a recording through a phase tracker and a trigger, as the live loop would.

For scoring and dry runs (bench, tests, reports): chunks go through ``PhaseTracker.push`` in
order, estimates are collected as arrays, and ``fire`` applies a ``PhaseTrigger`` to them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from controller.dsp.phase.tracker import PhaseEstimate, PhaseTracker
from controller.dsp.phase.trigger import PhaseTrigger


@dataclass(frozen=True)
class EstimateSeries:
    """The fields of a run of ``PhaseEstimate`` as parallel arrays."""

    phase: np.ndarray
    amplitude: np.ndarray
    frequency_hz: np.ndarray
    at_time: np.ndarray
    next_target_time: np.ndarray
    source_time: np.ndarray
    sample_index: np.ndarray

    @classmethod
    def of(cls, estimates: list[PhaseEstimate]) -> EstimateSeries:
        rows = [(e.phase, e.amplitude, e.frequency_hz, e.at_time, e.next_target_time, e.source_time) for e in estimates]
        floats = np.asarray(rows, dtype=np.float64).reshape(len(rows), 6)
        return cls(*floats.T.copy(), np.asarray([e.sample_index for e in estimates], dtype=np.int64))

    def __len__(self) -> int:
        return int(self.phase.size)

    def select(self, mask: np.ndarray) -> EstimateSeries:
        return EstimateSeries(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))

    def estimates(self) -> list[PhaseEstimate]:
        fields = (self.phase, self.amplitude, self.frequency_hz, self.at_time, self.next_target_time, self.source_time)
        floats = np.stack(fields, axis=1).tolist()
        return [PhaseEstimate(*row, int(k)) for row, k in zip(floats, self.sample_index)]


def replay(tracker: PhaseTracker, data: np.ndarray, stamps: np.ndarray, *, chunk: int = 32) -> EstimateSeries:
    """Push ``data`` ``(n_samples, n_stream_channels)`` through ``tracker`` in chunks of ``chunk`` samples."""
    if chunk < 1:
        raise ValueError(f"replay: chunk must be >= 1 sample, got {chunk}")
    out: list[PhaseEstimate] = []
    for a in range(0, data.shape[0], chunk):
        out.extend(tracker.push(data[a : a + chunk], stamps[a : a + chunk]))
    return EstimateSeries.of(out)


def fire(series: EstimateSeries, trigger: PhaseTrigger, *, start_time: float = -math.inf) -> np.ndarray:
    """Pulse times (LSL) the trigger schedules from estimates whose newest sample is at or after ``start_time``."""
    pulses = []
    for est in series.select(series.source_time >= start_time).estimates():
        t = trigger.decide(est)
        if t is not None:
            pulses.append(t)
    return np.asarray(pulses, dtype=np.float64)
