"""Online optical density: OD = -ln(I / I_ref) per channel, with a reference known at every sample.

MNE's ``optical_density`` divides each channel by its mean over the WHOLE recording, which a
causal system cannot know. Online the reference is either given (``reference=``; with the
whole-recording mean this reproduces MNE exactly) or learnt: the mean over the first
``reference_s`` seconds, the running mean so far while those seconds are not complete, frozen
after. Once frozen, online OD differs from MNE's by a constant per channel,
``ln(ref_online / ref_mne)``; Beer-Lambert is linear, so the haemoglobin differs by that
constant pushed through the same 2x2 inverse, and any high-pass or baseline removes it.

MNE replaces non-positive intensities by their absolute value, floored at the smallest
non-zero channel minimum of the whole recording. Online the absolute value is kept, but the
floor is unknowable; a zero, negative-zero or non-finite sample instead holds the channel's
last usable intensity (so a dropout cannot poison the filters downstream with inf/NaN). A
channel that has not yet delivered a usable sample reads OD 0 and does not enter its reference.
A stream that already sends optical density (``measure='od'``) passes through, with the same
hold for non-finite samples.
"""

from __future__ import annotations

import math

import numpy as np


class OpticalDensity:
    """Intensity (or OD) rows ``(n_channels, n)`` in, OD rows out; state kept between chunks."""

    __slots__ = ("_n", "_measure", "_given", "_ref_n", "_sum", "_count", "_seen", "_ref", "_last")

    def __init__(self, n_channels: int, fs: float, *, measure: str = "intensity",
                 reference: np.ndarray | None = None, reference_s: float = 10.0) -> None:
        if measure not in ("intensity", "od"):
            raise ValueError(f"measure must be 'intensity' or 'od', got {measure!r}")
        self._n = int(n_channels)
        self._measure = measure
        self._given: np.ndarray | None = None
        if reference is not None:
            ref = np.asarray(reference, dtype=np.float64)
            if ref.shape != (self._n,):
                raise ValueError(f"reference: one intensity per channel ({self._n}) expected, got {ref.shape}")
            if not np.all(np.isfinite(ref) & (ref > 0)):
                raise ValueError("reference intensities must be finite and > 0")
            self._given = ref.copy()
        if not (math.isfinite(reference_s) and reference_s > 0):
            raise ValueError(f"reference_s must be > 0 s, got {reference_s}")
        self._ref_n = max(1, round(reference_s * fs))  # samples whose mean becomes the frozen reference
        self._sum = np.zeros(self._n)
        self._count = np.zeros(self._n)
        self._seen = 0  # stream samples seen (learning stops after _ref_n of them)
        self._ref = np.full(self._n, np.nan)  # current reference (NaN: no usable sample yet)
        self._last = np.full(self._n, np.nan)  # last usable value per channel, for the hold
        if self._given is not None:
            self._ref[:] = self._given

    @property
    def reference(self) -> np.ndarray:
        """The reference intensity per channel now (NaN before a channel's first usable sample)."""
        return self._ref.copy()

    @property
    def reference_frozen(self) -> bool:
        return self._given is not None or self._seen >= self._ref_n

    def reset(self) -> None:
        self._sum.fill(0.0)
        self._count.fill(0.0)
        self._seen = 0
        self._last.fill(np.nan)
        self._ref[:] = np.nan if self._given is None else self._given

    def process(self, x: np.ndarray) -> np.ndarray:
        """``x`` ``(n_channels, n)`` -> OD ``(n_channels, n)`` (a new array)."""
        n = x.shape[1]
        if n == 0:
            return np.empty((self._n, 0))
        if self._measure == "od":
            return self._hold(x, np.isfinite(x))
        v = np.abs(x)
        v = self._hold(v, np.isfinite(v) & (v > 0))  # NaN where nothing usable was ever seen
        if self.reference_frozen:
            ref = self._ref[:, None]
        else:
            ref = self._learn(v)
        od: np.ndarray = -np.log(v / ref)
        od[~np.isfinite(od)] = 0.0  # channels without a usable sample yet
        return od

    def _hold(self, v: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """Replace unusable samples by the channel's last usable one (NaN if there is none yet)."""
        if ok.all():
            self._last[:] = v[:, -1]
            return np.array(v, dtype=np.float64)
        idx = np.where(ok, np.arange(v.shape[1]), -1)
        np.maximum.accumulate(idx, axis=1, out=idx)
        rows = np.arange(v.shape[0])[:, None]
        out = np.where(idx >= 0, v[rows, np.maximum(idx, 0)], self._last[:, None])
        self._last[:] = out[:, -1]
        return out

    def _learn(self, v: np.ndarray) -> np.ndarray:
        """Reference per sample while learning: running mean of the usable samples so far (this one
        included); after ``_ref_n`` stream samples the mean freezes. Returns ``(n_channels, n)``."""
        n = v.shape[1]
        k = min(n, self._ref_n - self._seen)  # samples of this chunk that still teach
        ok = np.isfinite(v[:, :k])
        # Prepending the carried sum keeps the additions in one order whatever the chunking.
        sums = np.cumsum(np.concatenate([self._sum[:, None], np.where(ok, v[:, :k], 0.0)], axis=1), axis=1)[:, 1:]
        counts = self._count[:, None] + np.cumsum(ok, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ref = np.empty_like(v)
            ref[:, :k] = sums / counts  # NaN while a channel has no usable sample
        self._sum[:] = sums[:, -1]
        self._count[:] = counts[:, -1]
        self._seen += k
        with np.errstate(invalid="ignore", divide="ignore"):
            self._ref[:] = self._sum / self._count
        ref[:, k:] = self._ref[:, None]
        return ref
