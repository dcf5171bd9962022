"""roi_psc: percent signal change of an ROI against the preceding baseline block, averaged over the
last N volumes (the feedback value of most rt-fMRI protocols, e.g. OpenNFT's PSC).

Volumes are placed by acquisition: the caller gives each volume's block number (its position in the
protocol's timeline), its position in that block and its counted index, all from its acquisition
number (``controller.fmri.design.VolumeDesign.place``), so a volume lost or delivered late never
shifts another. (Without them, consecutive equal labels form a block and arrival order places
volumes, as when every volume arrives in order.)

A baseline block (label in ``baseline``) becomes a reference when it is closed: once a volume of a
later block has arrived. Its volumes at positions below ``skip`` are left out (the haemodynamic
response still settling); a volume of a closed block that arrives late does not change it (the
reference was already in use). The reference for a volume in block k is the latest closed baseline
block before k, so during a regulation block PSC is relative to the rest block just before it, and
during a rest block to the one before that. A baseline block with fewer than ``min_baseline``
usable volumes is ignored (the older reference stays). Before any reference exists the value is None.

    psc[n]      = 100 * (d[n] - B) / B       (d = detrended series, B = mean of d over the reference's volumes)
    feedback[n] = mean of psc over the volumes acquired at n - window + 1 .. n that have one so far

The feature's value is ``feedback``. ``PscFeedback`` and the offline references take several series
at once (the fMRI stage references in ``controller.fmri.offline`` use that); ``controller.fmri.psc``
re-exports them under their old names.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from controller.lang import units
from controller.lang.compiled import FeatureSpec, RoiPscParams
from controller.lang.fields import Decl, Name, VolumeCount

from ..registration import register
from ..volume_kind import Placed, VolumeCheckContext, VolumeEvaluator, VolumeFeatureKind

# --------------------------------------------------------------------------- the definition


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
        self._open: dict[int, list] = {}  # baseline block number -> [sum, count] while it is open
        self._closed_below = 0  # blocks below this number are closed
        self._refs: list[tuple[int, np.ndarray]] = []  # (block number, reference) of closed baseline blocks
        self._psc: dict[int, np.ndarray] = {}  # recent PSC by counted index (the moving average's window)
        self._top = -1  # highest counted index seen
        self._arrival: tuple[str | None, int, int, int] = (None, -1, 0, -1)  # label, block, position, n

    @property
    def baseline(self) -> np.ndarray | None:
        return None if not self._refs else self._refs[-1][1].copy()

    def _place_by_arrival(self, label: str) -> tuple[int, int, int]:
        last, block, pos, n = self._arrival
        block, pos = (block + 1, 0) if label != last or block < 0 else (block, pos + 1)
        self._arrival = (label, block, pos, n + 1)
        return block, pos, n + 1

    def _close_before(self, block: int) -> None:
        for j in sorted(b for b in self._open if b < block):
            total, count = self._open.pop(j)
            if count >= self.config.min_baseline:
                self._refs.append((j, total / count))
        self._closed_below = max(self._closed_below, block)

    def _reference_for(self, block: int) -> np.ndarray | None:
        for j, ref in reversed(self._refs):
            if j < block:
                return ref
        return None

    def update(self, label: str, values: np.ndarray | float, *, block: int | None = None,
               position: int | None = None, n: int | None = None) -> PscStep:
        """Take one volume's block label and detrended value(s), and where it was acquired (``block``
        number, ``position`` in the block, counted index ``n``; all or none); return its PSC and feedback."""
        v = np.asarray(values, dtype=np.float64).reshape(self.m)
        if block is None or position is None or n is None:
            block, position, n = self._place_by_arrival(label)
        self._close_before(block)
        if block >= self._closed_below and label in self._baseline_labels and position >= self.config.skip:
            acc = self._open.setdefault(block, [np.zeros(self.m), 0])
            acc[0] = acc[0] + v
            acc[1] += 1
        ref = self._reference_for(block)
        psc = None if ref is None else 100.0 * (v - ref) / ref
        if psc is not None:
            self._psc[n] = psc
        self._top = max(self._top, n)
        have = [self._psc[k] for k in range(n - self.config.window + 1, n + 1) if k in self._psc]
        feedback = np.mean(have, axis=0) if have else None
        for k in [k for k in self._psc if k < self._top - self.config.window - 256]:  # bounded memory
            del self._psc[k]
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


def offline_psc_placed(values: np.ndarray, labels: Sequence[str], blocks: Sequence[int], positions: Sequence[int],
                       counted: Sequence[int], config: PscConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reference for volumes in arrival order, each placed by acquisition (block number, position in the
    block, counted index): (psc, feedback), each (n, m) with NaN where there is no value.

    Written from the definition, not the online bookkeeping: block j closes at the first arrival of a
    volume of a later block; its reference is the mean over its volumes at positions >= ``skip`` that
    arrived before that."""
    cfg = config or PscConfig()
    d = np.asarray(values, dtype=np.float64)
    d2 = d[:, None] if d.ndim == 1 else d
    n_tot = d2.shape[0]
    blk, pos, cnt = (np.asarray(x, dtype=int) for x in (blocks, positions, counted))
    if not (len(labels) == blk.size == pos.size == cnt.size == n_tot):
        raise ValueError("offline_psc_placed: one label, block, position and counted index per volume")
    is_base = np.array([lab in cfg.baseline_labels for lab in labels])
    closes = {j: next((s for s in range(n_tot) if blk[s] > j), n_tot) for j in set(blk.tolist())}
    psc = np.full_like(d2, np.nan)
    for s in range(n_tot):
        for j in sorted((j for j in closes if j < blk[s] and closes[j] <= s), reverse=True):
            use = [r for r in range(closes[j]) if blk[r] == j and is_base[r] and pos[r] >= cfg.skip]
            if use and len(use) >= cfg.min_baseline:
                ref = d2[use].mean(axis=0)
                psc[s] = 100.0 * (d2[s] - ref) / ref
                break
    fb = np.full_like(d2, np.nan)
    for s in range(n_tot):
        win = [r for r in range(s + 1) if cnt[s] - cfg.window < cnt[r] <= cnt[s] and not np.isnan(psc[r, 0])]
        if win:
            fb[s] = psc[win].mean(axis=0)
    return psc.reshape(d.shape), fb.reshape(d.shape)


def block_number(place: Placed) -> int:
    """The place's block number in the timeline; -1 after its end."""
    return place.block.index if place.block is not None else -1


# --------------------------------------------------------------------------- the kind


class RoiPscDecl(Decl):
    """Percent signal change of an ROI against the preceding baseline block, averaged over the last N volumes."""

    input: Name = Field(description="The fMRI input.")
    roi: Name = Field(description="The ROI (a key of rois).")
    baseline: Name = Field(description="Block label of the baseline, e.g. rest.")
    skip: VolumeCount = Field(0, description="Volumes at the start of each baseline block left out for the HRF, e.g. 2 TR.")
    average: VolumeCount = Field(1, description="Moving average over the last N volumes, e.g. 3 TR.")


class _PscEvaluator:
    """The PSC feedback of one ROI, volume by volume."""

    __slots__ = ("_psc",)

    def __init__(self, params: RoiPscParams) -> None:
        self._psc = PscFeedback(PscConfig(baseline=params.baseline, skip=params.skip, window=params.average))

    def __call__(self, place: Placed, values: Sequence[float]) -> float | None:
        out = self._psc.update(place.label, values[0], block=block_number(place), position=place.position,
                               n=place.n).feedback
        return None if out is None else float(out[0])


@register
class RoiPsc(VolumeFeatureKind):
    name = "roi_psc"
    order = 200
    declaration = RoiPscDecl
    summary = ("fMRI: percent signal change of an ROI against the preceding baseline block, e.g. "
               "{input: fmri, roi: amygdala_l, baseline: rest, skip: 2 TR, average: 3 TR}.")
    unit = units.PERCENT

    def check(self, decl: Any, ctx: VolumeCheckContext) -> None:
        problem = ctx.unknown_block(decl.baseline)
        if problem is not None:
            ctx.fail("baseline", f"baseline: {problem}")
        if decl.average < 1:
            ctx.fail("average", "average: at least 1 volume")
        durations = [b.duration_s for b in ctx.blocks if b.label == decl.baseline]
        if durations and ctx.input is not None:
            volumes = round(min(durations) / ctx.input.tr)
            if decl.skip >= volumes:
                ctx.fail("skip", f"skip: {decl.skip} volumes leave nothing of the shortest {decl.baseline!r} block "
                         f"({min(durations):g} s = {volumes} volumes)")

    def params(self, decl: Any) -> RoiPscParams:
        return RoiPscParams(decl.roi, decl.baseline, decl.skip, decl.average)

    def baselines(self, spec: FeatureSpec) -> frozenset[str]:
        return frozenset({spec.params.baseline})

    def evaluator(self, spec: FeatureSpec) -> VolumeEvaluator:
        return _PscEvaluator(spec.params)

    def offline(self, detrended: np.ndarray, places: Sequence[Placed], spec: FeatureSpec) -> np.ndarray:
        """``offline_psc_placed`` of the ROI's series: the feedback column."""
        p = spec.params
        _, feedback = offline_psc_placed(
            np.asarray(detrended, dtype=np.float64)[:, 0], [pl.label for pl in places],
            [block_number(pl) for pl in places], [pl.position for pl in places], [pl.n for pl in places],
            PscConfig(baseline=p.baseline, skip=p.skip, window=p.average))
        return feedback
