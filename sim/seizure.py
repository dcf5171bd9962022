"""Simulated seizures for users of the simulator: the model's vocabulary and whole recordings with ground truth.

The model (schedule, configuration, the streaming discharge source) lives in sim/seizure_source.py,
below the EEG generator that adds it (sim/eeg.py); the offline recording here needs that generator,
so it sits above both. Importing everything from here keeps one place to look (``sim eeg --seizure``,
tests, benches), without the generator and the model importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sim.eeg import UV, EegGenerator
from sim.montage import make_montage
from sim.seizure_source import (
    AREAS,
    BACKGROUND_BAND,
    SEIZURE_OFFSET,
    SEIZURE_ONSET,
    Seizure,
    SeizureConfig,
    SeizureSchedule,
    SeizureSource,
    focus_site,
    spike_wave,
)

__all__ = [
    "AREAS", "BACKGROUND_BAND", "SEIZURE_OFFSET", "SEIZURE_ONSET", "Seizure", "SeizureConfig", "SeizureRecording",
    "SeizureSchedule", "SeizureSource", "focus_site", "simulate_seizures", "spike_wave",
]


@dataclass(frozen=True)
class SeizureRecording:
    """A simulated recording with its seizures' ground truth (samples count from 0 = the first sample)."""

    data: np.ndarray  # (n_samples, n_channels), volts
    rate: float
    labels: tuple[str, ...]
    schedule: SeizureSchedule
    onsets: np.ndarray  # onset sample of each seizure
    offsets: np.ndarray  # end sample of each seizure
    focus: str  # the focus channel's label
    delay_s: np.ndarray  # (n_channels,): recruitment after onset
    gain: np.ndarray  # (n_channels,): developed amplitude relative to the focus
    recruitment: np.ndarray  # (n_seizures, n_channels): sample each channel joins, -1 if the seizure ends first
    discharge: np.ndarray | None  # (n_samples, n_channels) volts: the seizure component alone (keep_discharge)
    source: SeizureSource  # the model, for frequency_hz / phase_cycles

    def frequency_hz(self, sample: int | np.ndarray, seizure: int = 0) -> np.ndarray:
        """The scheduled discharge frequency at the focus at ``sample`` (absolute) of seizure ``seizure``."""
        onset, end = int(self.onsets[seizure]), int(self.offsets[seizure])
        return self.source.frequency_hz((np.asarray(sample) - onset) / self.rate, (end - onset) / self.rate)


def simulate_seizures(
    duration_s: float,
    schedule: SeizureSchedule,
    channels: int | Sequence[str] = 64,
    rate: float = 500.0,
    seed: int = 0,
    tbr: float = 3.0,
    line_freq: float = 50.0,
    keep_discharge: bool = False,
    block_s: float = 10.0,
) -> SeizureRecording:
    """``duration_s`` of simulated EEG with ``schedule``'s seizures, as the stream would carry it.

    The same generator and source as ``sim eeg --seizure`` (generated in blocks of ``block_s``,
    which does not change a sample): a stream from a participant whose ratio stays at ``tbr``
    (learning and fluctuation off) carries these samples exactly.
    """
    montage = make_montage(channels)
    gen = EegGenerator(montage, rate, seed=seed, line_freq=line_freq, tbr=tbr, seizures=schedule)
    n = int(round(duration_s * rate))
    step = max(1, int(round(block_s * rate)))
    data = np.empty((n, gen.n_channels))
    for k in range(0, n, step):
        data[k : k + step] = gen.generate(min(step, n - k))
    src = gen.seizures
    assert src is not None
    discharge = None
    if keep_discharge:
        discharge = np.zeros_like(data)
        for k in range(0, n, step):
            part, _ = src.block(k, min(step, n - k))
            if part is not None:
                discharge[k : k + step] = part * UV
    return SeizureRecording(data, gen.rate, gen.labels, schedule, src.onsets, src.offsets, src.focus_channel,
                            src.delay_s.copy(), src.gain.copy(), src.recruitment(), discharge, src)
