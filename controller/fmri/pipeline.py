"""The per-volume hot path of one fMRI input: realign -> ROI means -> cumulative GLM -> features.

The fMRI counterpart of ``controller.dsp.FeaturePipeline``: a volume is one chunk. Everything
here is causal and incremental; ``controller.fmri.offline`` computes the same numbers on a whole
4D array, and the tests hold the two equal.

- Dummy volumes (``skip``) are reported but not used.
- The reference is the first counted volume (or the protocol's template); the realigner, the
  ROIs on the functional grid and the GLM are built when it arrives, since only then is the
  grid known.
- ROI means are taken at the realigned positions of the ROI voxels (no full reslice). Smoothing
  is linear, so it is folded into the ROI weights once (``Roi.smoothed``): the mean of the
  smoothed volume over an ROI, without smoothing the volume.
- The cumulative GLM fits drift, motion and the task (the feedback blocks convolved with the HRF)
  and removes drift and motion only, as OpenNFT does: without the task column, motion that
  correlates with the task would take the signal with it.
- Each volume is placed by its acquisition number (``VolumeDesign.place``), never by arrival order or
  count: its block, its position in the block (PSC baselines), its row's drift in the GLM.
- What a feature does with its ROIs' detrended values is its kind's business: each kind
  (``controller.features.volume_kind.VolumeFeatureKind``, from the feature registry) says which ROIs it
  reads and gives the evaluator that holds its state; the pipeline only samples the union of the ROIs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from controller.dsp.features import FeatureValue
from controller.event_records import RoiValues, VolumeQC
from controller.features import registry as feature_registry
from controller.features.volume_kind import VolumeEvaluator, VolumeFeatureKind
from controller.fmri.design import VolumeDesign
from controller.fmri.glm import GlmConfig, IncrementalGlm
from controller.fmri.hrf import task_regressor
from controller.fmri.motion import RigidMotion, framewise_displacement
from controller.fmri.realign import Realigner
from controller.fmri.realign_sample import resample_points
from controller.fmri.rois import Roi, RoiSet, roi_from_mask, roi_from_mni, sphere_roi
from controller.fmri.smoothing import GaussianSmoother
from controller.fmri.spikes import SpikeConfig, SpikeFilter
from controller.inputs.volumes.volume import Volume
from controller.lang.compiled import Block, FeatureSpec, RoiSpec, VolumeInputSpec


class VolumePipelineError(RuntimeError):
    """The volumes cannot be processed as the protocol says (grid, ROI, reference); the message says why."""


@dataclass
class VolumeResult:
    """What one volume produced: feature values for the engine and the QC record for the journal."""

    values: list[FeatureValue]
    qc: VolumeQC
    motion: RigidMotion | None = None


def load_registration(spec: VolumeInputSpec) -> np.ndarray | None:
    """The functional-world -> MNI affine (None = identity: data already in MNI space)."""
    if spec.registration == "identity":
        return None
    try:
        m = np.loadtxt(spec.registration, dtype=float)
    except (OSError, ValueError) as exc:
        raise VolumePipelineError(f"registration {spec.registration}: cannot read a 4x4 matrix: {exc}") from exc
    if m.shape != (4, 4):
        raise VolumePipelineError(f"registration {spec.registration}: expected a 4x4 matrix, got shape {m.shape}")
    return m


def build_roi(spec: RoiSpec, shape: tuple[int, int, int], affine: np.ndarray, func_to_mni: np.ndarray | None) -> Roi:
    """An ROI of the protocol on the functional grid."""
    mni = spec.space == "mni"
    to_mni = (func_to_mni if func_to_mni is not None else np.eye(4)) if mni else None
    where = f"ROI {spec.name!r} (protocol line {spec.line})"
    try:
        if spec.sphere_center_mm is not None:
            return sphere_roi(spec.sphere_center_mm, spec.sphere_radius_mm, shape, affine, func_to_mni=to_mni,
                              name=spec.name)
        if mni:
            return roi_from_mni(spec.mask, shape, affine, to_mni, label=spec.label, name=spec.name,
                                threshold=spec.threshold)
        return roi_from_mask(spec.mask, shape, affine, name=spec.name, label=spec.label)
    except (ValueError, OSError) as exc:
        raise VolumePipelineError(f"{where}: {exc}") from exc


class _Built:
    """State that needs the functional grid: made at the reference volume."""

    def __init__(self, pipe: VolumePipeline, reference: np.ndarray, affine: np.ndarray) -> None:
        spec = pipe.spec
        self.shape = tuple(reference.shape[:3])
        self.affine = affine
        self.realigner = Realigner(reference, affine)
        to_mni = load_registration(spec)
        rois = [build_roi(pipe.rois[name], self.shape, affine, to_mni) for name in pipe.roi_names]
        if spec.smoothing_fwhm_mm:
            smoother = GaussianSmoother.for_affine(spec.smoothing_fwhm_mm, affine)
            rois = [r.smoothed(smoother) for r in rois]
        self.rois = rois
        self.roi_set = RoiSet(rois) if rois else None
        d = spec.detrend
        self.task = pipe.task
        self.glm = IncrementalGlm(GlmConfig(drift_order=d.drift_order, motion=d.motion,
                                            n_task=0 if self.task is None else 1,
                                            n_planned=max(2, pipe.design.volumes)), n_series=max(1, len(rois)))
        self.spikes = SpikeFilter(SpikeConfig(), max(1, len(rois))) if d.spikes else None

    def roi_means(self, data: np.ndarray, motion: RigidMotion) -> np.ndarray:
        if self.roi_set is None:
            return np.zeros(0)
        return self.roi_set.means(resample_points(data, self.affine, motion, self.roi_set.points_vox))

    def task_at(self, n: int) -> np.ndarray | None:
        if self.task is None:
            return None
        return np.array([self.task[n] if n < self.task.size else 0.0])


class VolumePipeline:
    """Features of one fMRI input, one volume at a time (``push``)."""

    def __init__(self, spec: VolumeInputSpec, features: Sequence[FeatureSpec], rois: Mapping[str, RoiSpec],
                 timeline: Sequence[Block], first_index: int = 1, feedback_blocks: Sequence[str] = ()) -> None:
        self.spec = spec
        self.features = [f for f in features if f.input == spec.name]
        self.rois = dict(rois)
        kinds = [_kind_of(f) for f in self.features]
        used: list[str] = []
        for f, kind in zip(self.features, kinds):
            for name in kind.rois(f):
                if name not in used:
                    used.append(name)
        self.roi_names = used
        # (feature, its evaluator, the columns of its ROIs in roi_names), in feature order
        self._evaluators: list[tuple[FeatureSpec, VolumeEvaluator, tuple[int, ...]]] = [
            (f, kind.evaluator(f), tuple(used.index(name) for name in kind.rois(f)))
            for f, kind in zip(self.features, kinds)
        ]
        self.design = VolumeDesign(timeline, spec.tr_s, first_index + spec.skip)
        self._reference_file = None if spec.reference == "first" else Path(spec.reference)
        self._built: _Built | None = None
        self._previous: RigidMotion | None = None
        self.task_conditions = task_conditions(self.features, timeline, feedback_blocks)
        self.task = self._task()

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def _task(self) -> np.ndarray | None:
        """The planned task regressor, one value per counted volume (None: no task blocks)."""
        if not self.task_conditions:
            return None
        n = self.design.volumes
        labels = self.design.labels(range(self.design.first, self.design.first + n))
        return task_regressor([lab or "" for lab in labels], self.task_conditions, self.spec.tr_s)

    def _build(self, volume: Volume) -> None:
        if self._reference_file is not None:
            import nibabel as nib

            img = nib.load(str(self._reference_file))
            ref = np.asarray(img.dataobj, dtype=np.float64)
            if ref.ndim == 4 and ref.shape[3] == 1:
                ref = ref[..., 0]
            if ref.shape != volume.shape:
                raise VolumePipelineError(f"reference {self._reference_file}: grid {ref.shape} differs from the "
                                          f"volumes' {volume.shape}")
            affine = img.affine
        else:
            ref, affine = np.asarray(volume.data, dtype=np.float64), volume.affine
        self._built = _Built(self, ref, np.asarray(affine, dtype=float))

    def push(self, volume: Volume) -> VolumeResult:
        place = self.design.place(volume.index)
        n, block = place.n, place.block
        qc = VolumeQC(volume.index, n, block.label if block else None, block.index if block else None,
                      volume.acquired, volume.received_at, volume.arrived, volume.source)
        if n < 0:
            return VolumeResult([], replace(qc, dummy=True))
        built = self._built
        if built is None:
            self._build(volume)
            built = self._built
        elif volume.shape != built.shape:
            raise VolumePipelineError(f"volume {volume.index} ({volume.source}) has grid {volume.shape}; the run's "
                                      f"reference has {built.shape}")
        t0 = time.perf_counter()
        motion = built.realigner.estimate(volume.data)
        t1 = time.perf_counter()
        means = built.roi_means(volume.data, motion)
        t2 = time.perf_counter()
        params = motion.params6()
        step = built.glm.update(means if means.size else np.zeros(1), params, built.task_at(n), t=n + 1)
        cleaned = step.detrended if built.spikes is None else built.spikes.update(step.cleaned) + step.level
        t3 = time.perf_counter()
        series = cleaned.tolist()
        detrended = dict(zip(self.roi_names, series))
        values = []
        for f, evaluate, columns in self._evaluators:
            value = evaluate(place, [series[c] for c in columns])
            if value is not None and np.isfinite(value):
                values.append(FeatureValue(f.name, float(value), volume.acquired, volume.index,
                                           block_index=block.index if block else None))
        t4 = time.perf_counter()
        fd = 0.0 if self._previous is None else framewise_displacement(self._previous, motion)
        self._previous = motion
        qc = replace(
            qc, motion=tuple(round(float(x), 6) for x in params), fd_mm=round(float(fd), 6),
            rois={name: RoiValues(float(m), float(detrended[name])) for name, m in zip(self.roi_names, means)},
            # the pipeline's own stages; the session adds delivery, arrival -> feedback and total
            # (controller.inputs.volumes.timing), since only it knows when the values reached the engine
            timing_ms={"read": 1e3 * (volume.arrived - volume.received_at), "realign": 1e3 * (t1 - t0),
                       "roi": 1e3 * (t2 - t1), "glm": 1e3 * (t3 - t2), "features": 1e3 * (t4 - t3)})
        return VolumeResult(values, qc, motion)


def task_conditions(features: Sequence[FeatureSpec], timeline: Sequence[Block],
                    feedback_blocks: Sequence[str] = ()) -> tuple[str, ...]:
    """Block labels modelled as task in the GLM: the feedback blocks, else every label that no feature
    takes as its baseline (none: no task column)."""
    if feedback_blocks:
        return tuple(feedback_blocks)
    kinds = feature_registry.volume_kinds()
    baselines = {label for f in features if f.kind in kinds for label in kinds[f.kind].baselines(f)}
    if not baselines:
        return ()
    return tuple(sorted({b.label for b in timeline} - baselines))


def _kind_of(f: FeatureSpec) -> VolumeFeatureKind:
    kind = feature_registry.find(f.kind)
    if not isinstance(kind, VolumeFeatureKind):
        raise VolumePipelineError(f"feature {f.name!r}: kind {f.kind!r} is not an fMRI feature")
    return kind
