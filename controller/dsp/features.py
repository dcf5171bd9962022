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

    def edges(self, window: int, new: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``new`` samples that left a ``window`` when ``new`` samples entered it, and those that entered
        (rows gathered only for those columns)."""
        view = self.ring.latest(window + new)
        leaving, entering = view[:, :new], view[:, window:]
        if self.rows is None:
            return leaving, entering
        return leaving.take(self.rows, axis=0), entering.take(self.rows, axis=0)


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
    """The same kinds by the mean square of causally band-passed signals over the window.

    The window's sum of squares is kept up to date rather than recomputed: each evaluation adds the
    samples that entered since the last one and takes away those that left, so its cost follows the
    hop, not the window (a 1 s window at 5 kHz over a hundred MEG sensors, evaluated every 50 ms, reads
    a tenth of what a full pass would). It is recomputed whole every ``REFRESH`` evaluations, after a
    reset of the ring, or when the ring does not reach back far enough, so rounding cannot accumulate.
    """

    __slots__ = ("_sources", "_window", "_sums", "_seen", "_since_full")

    REFRESH = 64

    def __init__(self, sources: list[ChannelSource], window: int) -> None:
        self._sources = sources  # one band-passed source per band, the ratio's numerator first
        self._window = window
        self._sums = [0.0] * len(sources)
        self._seen = [-1] * len(sources)  # ring count at the last evaluation; -1: none yet
        self._since_full = [0] * len(sources)

    def reset(self) -> None:
        self._seen = [-1] * len(self._sources)

    def _sum(self, i: int, source: ChannelSource) -> float:
        ring, window = source.ring, self._window
        count, seen = ring.count, self._seen[i]
        new = count - seen
        if (seen < 0 or new < 0 or new + window > min(count, ring.capacity)
                or self._since_full[i] >= self.REFRESH):
            w = source.window(window)
            # Equal-length rows: the mean over channels of per-channel mean squares is the grand mean.
            total = float(np.einsum("ij,ij->", w, w))
            self._since_full[i] = 0
        else:
            leaving, entering = source.edges(window, new)
            total = self._sums[i] + float(np.einsum("ij,ij->", entering, entering)
                                          - np.einsum("ij,ij->", leaving, leaving))
            self._since_full[i] += 1
        self._sums[i], self._seen[i] = total, count
        return total

    def __call__(self) -> float:
        powers = []
        for i, source in enumerate(self._sources):
            n_rows = source.ring.n_channels if source.rows is None else source.rows.size
            powers.append(self._sum(i, source) / (n_rows * self._window))
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
