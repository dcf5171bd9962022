"""Cross-reference checks and compilation of a protocol's fMRI parts (volume inputs, ROIs, runs).

Files named by a protocol (ROI masks, the realignment template, the MNI registration) are
resolved against the protocol file's folder and must exist: a missing mask is reported at
its line when validating, not discovered when the scanner is already running.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.lang import compiled as c
from controller.lang.source import Loc
from controller.protocol import fmri_raw as fr
from controller.protocol import raw

if TYPE_CHECKING:
    from controller.protocol.semantics import Semantics

MIN_CORRELATION_WINDOW = 3


def is_volume_input(inp: Any) -> bool:
    return isinstance(inp, fr.VolumeInputDecl)


class FmriChecks:
    def __init__(self, sem: Semantics) -> None:
        self.sem = sem
        name = sem.src.filename
        self.base_dir = Path(name).resolve().parent if name and not name.startswith("<") else Path.cwd()
        self.rois: dict[str, fr.RoiDecl] = sem._valid_entries("rois")
        self.raw_rois = sem._names("rois")

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
            if kind not in c.FMRI_KINDS:
                if p.input in volume_inputs:
                    sem.error(base + ("input",), f"input: {p.input!r} is an fMRI input (volumes); {kind} needs a "
                              f"signal stream. fMRI feature kinds: {', '.join(fr.FMRI_FEATURE_KINDS)}")
                continue
            if p.input in sem.inputs and p.input not in volume_inputs:
                sem.error(base + ("input",), f"input: {p.input!r} is a signal stream; {kind} needs an fMRI input "
                          f"({{volumes: ..., tr: ...}})")
            elif p.input not in sem.raw_inputs and sem.known["inputs"]:
                from controller.protocol.semantics import unknown

                sem.error(base + ("input",), f"input: {unknown('input', p.input, sem.raw_inputs)}")
            rois = (p.roi,) if kind != "roi_correlation" else p.rois
            for k, roi in enumerate(rois):
                if roi not in self.raw_rois:
                    from controller.protocol.semantics import unknown

                    loc = base + (("roi",) if kind != "roi_correlation" else ("rois", k))
                    sem.error(loc, f"{loc[-1] if kind != 'roi_correlation' else 'rois'}: "
                              f"{unknown('ROI', roi, self.raw_rois)}")
            if kind == "roi_correlation":
                if p.rois[0] == p.rois[1]:
                    sem.error(base + ("rois",), f"rois: give two different ROIs, got {p.rois[0]!r} twice")
                if p.window < MIN_CORRELATION_WINDOW:
                    sem.error(base + ("window",), f"window: a correlation needs at least {MIN_CORRELATION_WINDOW} "
                              f"volumes, got {p.window}")
            if kind == "roi_psc":
                if p.baseline not in sem.raw_labels and sem.timeline_complete:
                    from controller.protocol.semantics import unknown

                    sem.error(base + ("baseline",), f"baseline: {unknown('block', p.baseline, sem.raw_labels)}")
                if p.average < 1:
                    sem.error(base + ("average",), "average: at least 1 volume")
                durations = [b.duration_s for b in sem.blocks if b.label == p.baseline]
                inp = volume_inputs.get(p.input)
                if durations and inp is not None and p.skip >= round(min(durations) / inp.tr):
                    sem.error(base + ("skip",), f"skip: {p.skip} volumes leave nothing of the shortest "
                              f"{p.baseline!r} block ({min(durations):g} s = {round(min(durations) / inp.tr)} volumes)")

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
                        from controller.protocol.semantics import unknown

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

    @staticmethod
    def compile_runs(decls: list[fr.RunDecl] | None) -> tuple[c.RunSpec, ...]:
        if not decls:
            return ()
        return tuple(c.RunSpec(r.name, i, {k: q.value for k, q in r.thresholds.items()}, r.feedback)
                     for i, r in enumerate(decls))


def fmri_feature(name: str, feat: raw.FeatureDecl, tr_s: float) -> c.FeatureSpec:
    """A compiled fMRI feature: one value per volume, so window and every are one TR."""
    kind, p = feat.kind, feat.params
    if kind == "roi_psc":
        params: Any = c.RoiPscParams(p.roi, p.baseline, p.skip, p.average)
    elif kind == "roi_mean":
        params = c.RoiMeanParams(p.roi)
    else:
        params = c.RoiCorrelationParams(tuple(p.rois), p.window, p.fisher_z)
    return c.FeatureSpec(name=name, kind=kind, input=p.input, channels=(), window_s=tr_s, every_s=tr_s, params=params)
