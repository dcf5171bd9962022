"""Motion artefacts: the optodes of one region lose or change their skin contact for a second or two.

Events start at random samples, on average every ``every_s`` seconds (a Bernoulli draw per sample,
so the times do not depend on the chunking). Each event picks a region (the left, middle or right
third of the montage, by channel midpoint), a duration (1-2 s), a kind and a size:

- ``spike``: the light drops (or jumps) and comes back, a raised-cosine bump of OD 0.1-0.5;
- ``shift``: a step of OD 0.05-0.25 with 0.15 s edges, held for the duration.

Every channel of the region gets it, scaled by its own factor (0.6-1.4, the same at both wavelengths:
a coupling change attenuates all light alike). The events are returned in OD (added before
``I = I0 exp(-OD)``), and :attr:`events` keeps (onset sample, duration, region, kind, OD) for tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGIONS = ("left", "middle", "right")
EDGE_S = 0.15


@dataclass(frozen=True)
class MotionEvent:
    onset: int  # sample index (0 = first sample generated)
    duration_s: float
    region: str
    kind: str  # "spike" or "shift"
    od: float  # signed size before the per-channel factor


class Motion:
    """Streaming motion artefacts in OD per column."""

    def __init__(self, every_s: float, rate: float, pair_x_mm: np.ndarray, column_pairs: np.ndarray,
                 seed: int) -> None:
        if not every_s > 0:
            raise ValueError(f"motion spacing must be > 0 s, got {every_s}")
        self.rate = float(rate)
        self.p = min(1.0, 1.0 / (every_s * rate))  # per-sample onset probability
        onsets, params = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, 0x0A7E]).spawn(2))
        self._onsets, self._params = onsets, params
        edges = np.quantile(pair_x_mm, [1 / 3, 2 / 3])
        pair_region = np.digitize(pair_x_mm, edges)  # 0 left, 1 middle, 2 right
        self._column_region = pair_region[column_pairs]
        self._weight = params.uniform(0.6, 1.4, len(pair_x_mm))[column_pairs]
        self._active: list[MotionEvent] = []
        self.events: list[MotionEvent] = []
        self.n = 0  # samples generated so far

    def _new_event(self, onset: int) -> MotionEvent:
        r = self._params
        region = REGIONS[int(r.integers(len(REGIONS)))]
        kind = "spike" if r.random() < 0.6 else "shift"
        size = r.uniform(0.1, 0.5) if kind == "spike" else r.uniform(0.05, 0.25)
        sign = 1.0 if r.random() < 0.8 else -1.0  # mostly light lost (OD up)
        return MotionEvent(onset, float(r.uniform(1.0, 2.0)), region, kind, sign * float(size))

    def _shape(self, event: MotionEvent, t: np.ndarray) -> np.ndarray:
        """0..1 profile at ``t`` seconds after the onset."""
        inside = (t >= 0) & (t < event.duration_s)
        if event.kind == "spike":
            return np.where(inside, 0.5 - 0.5 * np.cos(2 * np.pi * t / event.duration_s), 0.0)
        up = np.clip(t / EDGE_S, 0.0, 1.0)
        down = np.clip((event.duration_s - t) / EDGE_S, 0.0, 1.0)
        return np.where(inside, np.minimum(up, down), 0.0)

    def generate(self, n: int, n_columns: int) -> np.ndarray:
        """(n, n_columns) OD of the motion events overlapping these samples."""
        j0 = self.n
        starts = j0 + np.flatnonzero(self._onsets.random(n) < self.p)
        for onset in starts:
            event = self._new_event(int(onset))
            self._active.append(event)
            self.events.append(event)
        out = np.zeros((n, n_columns))
        j = np.arange(j0, j0 + n)
        for event in self._active:  # a handful at most
            profile = self._shape(event, (j - event.onset) / self.rate)
            cols = self._column_region == REGIONS.index(event.region)
            out[:, cols] += np.outer(profile, event.od * self._weight[cols])
        end = j0 + n
        self._active = [e for e in self._active if e.onset + e.duration_s * self.rate > end]
        self.n = end
        return out
