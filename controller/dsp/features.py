"""Feature values and the per-feature window computations of the streaming pipeline.

Each evaluator reads the newest W samples of a ring buffer (conditioned signal, or a
band-passed copy of it) at the moment its window is due and returns one float: the value
averaged over the feature's channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from controller.dsp.ring import RingBuffer
from controller.dsp.spectral import WelchBandPowers
from controller.lang.compiled import Band


@dataclass(frozen=True, slots=True)
class FeatureValue:
    """One feature value, stamped with the LSL time and index of the newest sample it used.

    ``at``: for a ``phase`` feature whose value is 1.0, the LSL time the pulse should land at
    (the predicted target-phase crossing; send the command at ``at - device delay``). None
    for every other value. ``block_index``: for a volume's features, the block the scanner acquired
    it in; rules and feedback use it rather than the block running when it was processed.
    """

    name: str
    value: float
    source_time: float
    sample_index: int
    at: float | None = None
    block_index: int | None = None  # fMRI: the position in the timeline of the block the volume was acquired in
    arrival: float | None = None  # LSL time the chunk holding the sample reached the controller


def combine_powers(powers: np.ndarray | list[float]) -> float:
    """One band's power, or a ratio of two; a zero/negative denominator gives NaN (undefined)."""
    if len(powers) == 1:
        return float(powers[0])
    den = float(powers[1])
    return float(powers[0]) / den if den > 0.0 else math.nan


class ChannelSource:
    """A ring buffer and the rows of it that one feature averages over."""

    __slots__ = ("ring", "rows")

    def __init__(self, ring: RingBuffer, rows: np.ndarray) -> None:
        self.ring = ring
        # None = all rows in order: the window is then a view, no gather needed.
        whole = rows.size == ring.n_channels and np.array_equal(rows, np.arange(ring.n_channels))
        self.rows = None if whole else np.asarray(rows, dtype=np.intp)

    def window(self, n: int) -> np.ndarray:
        view = self.ring.latest(n)
        return view if self.rows is None else view.take(self.rows, axis=0)


class WelchFeature:
    """band_power / band_ratio / relative_power by Welch's PSD of the conditioned window."""

    __slots__ = ("_source", "_window", "_powers")

    def __init__(self, source: ChannelSource, fs: float, window: int, bands: tuple[Band, ...],
                 segment_s: float | None = None, overlap: float = 0.5) -> None:
        self._source = source
        self._window = window
        self._powers = WelchBandPowers(fs, window, bands, segment_s, overlap)

    def __call__(self) -> float:
        return combine_powers(self._powers(self._source.window(self._window)))


class IirPowerFeature:
    """The same kinds by the mean square of causally band-passed signals over the window."""

    __slots__ = ("_sources", "_window")

    def __init__(self, sources: list[ChannelSource], window: int) -> None:
        self._sources = sources  # one band-passed source per band, the ratio's numerator first
        self._window = window

    def __call__(self) -> float:
        powers = []
        for source in self._sources:
            w = source.window(self._window)
            # Equal-length rows: the mean over channels of per-channel mean squares is the grand mean.
            powers.append(np.einsum("ij,ij->", w, w) / w.size)
        return combine_powers(powers)


class PeakToPeakFeature:
    """Max minus min over the window (optionally band-passed first), averaged over channels."""

    __slots__ = ("_source", "_window")

    def __init__(self, source: ChannelSource, window: int) -> None:
        self._source = source
        self._window = window

    def __call__(self) -> float:
        w = self._source.window(self._window)
        return float(np.mean(w.max(axis=1) - w.min(axis=1)))
