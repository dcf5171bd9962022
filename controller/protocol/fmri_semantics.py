"""Cross-reference checks and compilation of a protocol's fMRI parts (volume inputs, ROIs, runs,
and the features computed on volumes).

Files named by a protocol (ROI masks, the realignment template, the MNI registration) are
resolved against the protocol file's folder and must exist: a missing mask is reported at
its line when validating, not discovered when the scanner is already running.

The fMRI feature kinds are handed in by :class:`controller.protocol.semantics.Semantics` from the
feature registry (``controller.features.volume_kind.VolumeFeatureKind``, by name): what every
kind needs (an fMRI input, ROIs that exist) is checked here, the rest by the kind itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.lang import compiled as c
from controller.lang.source import Loc
from controller.protocol import fmri_raw as fr
from controller.protocol import raw
from controller.protocol.document import Document, unknown


def is_volume_input(inp: Any) -> bool:
    return isinstance(inp, fr.VolumeInputDecl)


@dataclass(frozen=True)
class _FeatureContext:
    """What a volume kind's checks see (``controller.features.volume_kind.VolumeCheckContext``)."""

    sem: Document
    base: Loc
    input: fr.VolumeInputDecl | None
    blocks: tuple[c.Block, ...]

    def fail(self, where: Loc | str, message: str, *, key: bool = False) -> None:
        loc = (where,) if isinstance(where, str) else where
        self.sem.error(self.base + loc, message, key=key)

    def unknown_block(self, label: str) -> str | None:
        sem = self.sem
        if label in sem.raw_labels or not sem.timeline_complete:
            return None

        return unknown("block", label, sem.raw_labels)


class FmriChecks:
    def __init__(self, sem: Document, kinds: Mapping[str, Any]) -> None:
        """``kinds``: the fMRI feature kinds by name, in the language's order (VolumeFeatureKind)."""
        self.sem = sem
        self.kinds = dict(kinds)
        name = sem.src.filename
        self.base_dir = Path(name).resolve().parent if name and not name.startswith("<") else Path.cwd()
        self.rois: dict[str, fr.RoiDecl] = sem.valid_entries("rois")
        self.raw_rois = sem.section_names("rois")

    # ------------------------------------------------------------------ paths

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def _existing_file(self, loc: Loc, path: str, what: str) -> None:
        if not self.resolve(path).is_file():
            self.sem.error(loc, f"{what}: file {path!r} not found (looked in {self.resolve(path).parent})")

    # ------------------------------------------------------------------ checks

    def check(self) -> None:
        volume_inputs = {n: i for n, i in self.sem.inputs.items() if is_volume_input(i)}
        for name, inp in volume_inputs.items():
            base: Loc = ("inputs", name)
            if inp.reference != "first":
                self._existing_file(base + ("reference",), inp.reference, "reference")
            if inp.registration != "identity":
                self._existing_file(base + ("registration",), inp.registration, "registration")
            if inp.volumes.folder is not None and inp.volumes.index is not None:
                import re

                try:
                    if re.compile(inp.volumes.index).groups < 1:
                        self.sem.error(base + ("volumes", "index"), "index: the expression needs a group, e.g. 'vol_(\\d+)'")
                except re.error as exc:
                    self.sem.error(base + ("volumes", "index"), f"index: not a valid regular expression: {exc}")
        for name, roi in self.rois.items():
            if roi.mask is not None:
                self._existing_file(("rois", name, "mask"), roi.mask, "mask")
        self._check_features(volume_inputs)
        self._check_runs()

    def _check_features(self, volume_inputs: dict[str, fr.VolumeInputDecl]) -> None:
        sem = self.sem
        for name, feat in sem.features.items():
            kind, p = feat.kind, feat.params
            base: Loc = ("features", name, kind)
            volume_kind = self.kinds.get(kind)
            if volume_kind is None:
                if p.input in volume_inputs:
                    sem.error(base + ("input",), f"input: {p.input!r} is an fMRI input (volumes); {kind} needs a "
                              f"signal stream. fMRI feature kinds: {', '.join(self.kinds)}")
                continue
            if p.input in sem.inputs and p.input not in volume_inputs:
                sem.error(base + ("input",), f"input: {p.input!r} is a signal stream; {kind} needs an fMRI input "
                          f"({{volumes: ..., tr: ...}})")
            elif p.input not in sem.raw_inputs and sem.known["inputs"]:

                sem.error(base + ("input",), f"input: {unknown('input', p.input, sem.raw_inputs)}")
            for loc, roi in volume_kind.roi_refs(p):
                if roi not in self.raw_rois:

                    sem.error(base + loc, f"{loc[0]}: {unknown('ROI', roi, self.raw_rois)}")
            volume_kind.check(p, _FeatureContext(sem, base, volume_inputs.get(p.input), tuple(sem.blocks)))

    def _check_runs(self) -> None:
        sem = self.sem
        runs = sem.data.get("runs")
        if not isinstance(runs, list):
            return
        seen: set[str] = set()
        for i, run in enumerate(runs):
            if not isinstance(run, dict):
                continue
            name = run.get("name")
            if isinstance(name, str):
                if name in seen:
                    sem.error(("runs", i, "name"), f"name: run {name!r} is given twice")
                seen.add(name)
            ths = run.get("thresholds")
            if isinstance(ths, dict):
                for th in ths:
                    decl = sem.thresholds.get(th)
                    if th not in sem.raw_thresholds:

                        sem.error(("runs", i, "thresholds", th), f"{unknown('threshold', th, sem.raw_thresholds)}",
                                  key=True)
                    elif decl is not None and decl.fixed is None:
                        sem.error(("runs", i, "thresholds", th), f"threshold {th!r} is not fixed; a run can only "
                                  "set fixed thresholds", key=True)

    # ------------------------------------------------------------------ compile

    def compile_volume_input(self, name: str, inp: fr.VolumeInputDecl) -> c.VolumeInputSpec:
        v = inp.volumes
        stream = None if v.stream is None else c.StreamSelector(v.stream.name, v.stream.type, v.stream.source_id)
        folder = None if v.folder is None else str(self.resolve(v.folder))
        return c.VolumeInputSpec(
            name=name,
            source=c.VolumeSourceSpec(folder, v.pattern, v.index, v.existing, v.poll, stream),
            tr_s=inp.tr,
            skip=inp.skip,
            reference=inp.reference if inp.reference == "first" else str(self.resolve(inp.reference)),
            smoothing_fwhm_mm=inp.smoothing,
            registration=inp.registration if inp.registration == "identity" else str(self.resolve(inp.registration)),
            detrend=c.DetrendSpec(inp.detrend.drift, inp.detrend.motion, inp.detrend.spikes),
            stall_timeout_s=inp.stall or 0.0,
            resolve_timeout_s=inp.resolve_timeout,
        )

    def compile_rois(self, decls: dict[str, fr.RoiDecl]) -> dict[str, c.RoiSpec]:
        out = {}
        for name, r in decls.items():
            sphere = r.sphere
            out[name] = c.RoiSpec(
                name=name,
                mask=None if r.mask is None else str(self.resolve(r.mask)),
                label=r.label,
                sphere_center_mm=None if sphere is None else tuple(float(x) for x in sphere.center),
                sphere_radius_mm=None if sphere is None else sphere.radius,
                space=r.space,
                threshold=r.threshold,
                line=self.sem.src.position(("rois", name))[0],
            )
        return out

    def compile_feature(self, name: str, feat: raw.FeatureDecl, tr_s: float) -> c.FeatureSpec:
        """A compiled fMRI feature (by its kind: one value per volume, so window and every are one TR)."""
        return self.kinds[feat.kind].compile(name, feat.params, tr_s)

    @staticmethod
    def compile_runs(decls: list[fr.RunDecl] | None) -> tuple[c.RunSpec, ...]:
        if not decls:
            return ()
        return tuple(c.RunSpec(r.name, i, {k: q.value for k, q in r.thresholds.items()}, r.feedback)
                     for i, r in enumerate(decls))
