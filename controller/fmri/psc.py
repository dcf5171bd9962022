"""Percent signal change against the preceding baseline block, and the moving-average feedback value.

The caller gives each volume's block label (the lead maps volumes to the protocol timeline by
index). Consecutive volumes with the same label form a block. A baseline block (label in
``baseline``) becomes the reference once it is complete, i.e. when the first volume of the next
block arrives; its first ``skip`` volumes are left out (the haemodynamic response still settling).
The reference for volume n is the most recent such completed block, so during a regulation block
PSC is relative to the rest block just before it, and during a rest block to the one before that.
A baseline block with fewer than ``min_baseline`` usable volumes is ignored (the older reference
stays). Before any reference exists the value is None.

    psc[n]      = 100 * (d[n] - B) / B       (d = detrended series, B = mean of d over the reference's volumes)
    feedback[n] = mean of psc over the last ``window`` volumes that have one
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PscConfig:
    baseline: str | tuple[str, ...] = "rest"
    skip: int = 0
    window: int = 1
    min_baseline: int = 1

    def __post_init__(self) -> None:
        if self.skip < 0 or self.window < 1 or self.min_baseline < 1:
            raise ValueError(f"PSC needs skip >= 0, window >= 1, min_baseline >= 1; got {self}")

    @property
    def baseline_labels(self) -> frozenset[str]:
        return frozenset([self.baseline] if isinstance(self.baseline, str) else self.baseline)


@dataclass(frozen=True)
class PscStep:
    """One volume's values per series; None where no complete baseline exists yet."""

    psc: np.ndarray | None
    feedback: np.ndarray | None
    baseline: np.ndarray | None


class PscFeedback:
    """Causal PSC + moving average for ``n_series`` series sharing the block labels."""

    def __init__(self, config: PscConfig | None = None, n_series: int = 1) -> None:
        self.config = config or PscConfig()
        self._baseline_labels: Collection[str] = self.config.baseline_labels
        self.m = int(n_series)
        self._label: str | None = None
        self._pos = 0
        self._sum = np.zeros(self.m)
        self._count = 0
        self._ref: np.ndarray | None = None
        self._hist: deque[np.ndarray | None] = deque(maxlen=self.config.window)

    @property
    def baseline(self) -> np.ndarray | None:
        return None if self._ref is None else self._ref.copy()

    def _close_block(self) -> None:
        if self._label in self._baseline_labels and self._count >= self.config.min_baseline:
            self._ref = self._sum / self._count

    def update(self, label: str, values: np.ndarray | float) -> PscStep:
        """Take volume n's block label and detrended value(s); return its PSC and feedback."""
        v = np.asarray(values, dtype=np.float64).reshape(self.m)
        if label != self._label or self._pos == 0:
            self._close_block()
            self._label, self._pos, self._count = label, 0, 0
            self._sum = np.zeros(self.m)
        self._pos += 1
        if label in self._baseline_labels and self._pos > self.config.skip:
            self._sum += v
            self._count += 1
        if self._ref is None:
            psc = None
        else:
            psc = 100.0 * (v - self._ref) / self._ref
        self._hist.append(psc)
        have = [p for p in self._hist if p is not None]
        feedback = np.mean(have, axis=0) if have else None
        return PscStep(psc, feedback, self.baseline)


def offline_psc(values: np.ndarray, labels: Sequence[str], config: PscConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reference: (psc, feedback), each (n, m) with NaN where there is no value, from block segments."""
    cfg = config or PscConfig()
    d = np.asarray(values, dtype=np.float64)
    d2 = d[:, None] if d.ndim == 1 else d
    n_tot = d2.shape[0]
    if len(labels) != n_tot:
        raise ValueError(f"offline_psc: {len(labels)} labels for {n_tot} volumes")
    # Segments of equal labels: (label, start, stop) half-open.
    segs: list[tuple[str, int, int]] = []
    for i, lab in enumerate(labels):
        if segs and segs[-1][0] == lab:
            segs[-1] = (lab, segs[-1][1], i + 1)
        else:
            segs.append((lab, i, i + 1))
    psc = np.full_like(d2, np.nan)
    for si, (_, start, stop) in enumerate(segs):
        ref = None
        for lab, b0, b1 in reversed(segs[:si]):
            if lab in cfg.baseline_labels and (b1 - b0 - cfg.skip) >= cfg.min_baseline:
                ref = d2[b0 + cfg.skip : b1].mean(axis=0)
                break
        if ref is not None:
            psc[start:stop] = 100.0 * (d2[start:stop] - ref) / ref
    fb = np.full_like(d2, np.nan)
    for n in range(n_tot):
        win = psc[max(0, n - cfg.window + 1) : n + 1]
        ok = ~np.isnan(win[:, 0])
        if ok.any():
            fb[n] = win[ok].mean(axis=0)
    return psc.reshape(d.shape), fb.reshape(d.shape)
