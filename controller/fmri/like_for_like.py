"""The per-volume work pyOpenNFT does, stage for stage: realign -> reslice the whole volume -> smooth
it (Gaussian, 5 mm FWHM) -> ROI means of the smoothed volume -> cumulative GLM.

Why it exists beside ``controller.fmri.pipeline``: the feedback pipeline gets the same ROI values
without reslicing or smoothing a whole volume (it samples only the ROI voxels at their realigned
positions, with the smoothing folded into the ROI weights), which is why it is fast. A comparison
with pyOpenNFT's per-volume time is only fair against a pipeline that does what pyOpenNFT does, and
the operator's whole-brain t-map (``controller.fmri.tmap``) needs the resliced, smoothed volume
anyway. This pipeline is off the feedback path: nothing waits for it to decide.

The ROI means equal the feedback pipeline's to float32 rounding: trilinear interpolation at the
ROI voxels' realigned positions is the resliced volume at those voxels, and smoothing is linear
(both use zero padding at the grid edge), so mean(ROI, smooth(reslice(v))) = folded weights .
reslice(v). The interpolation is trilinear (SPM/OpenNFT reslice with a 4th-degree B-spline: more
expensive, and not what the feedback pipeline samples with).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from controller.fmri.glm import GlmConfig, IncrementalGlm
from controller.fmri.motion import RigidMotion
from controller.fmri.realign import Realigner
from controller.fmri.reslice import Reslicer
from controller.fmri.rois import Roi, RoiSet
from controller.fmri.smoothing import GaussianSmoother

STAGES = ("realign", "reslice", "smooth", "roi", "glm")


@dataclass
class LikeForLikeStep:
    """One volume's output: motion, ROI means (raw and detrended), the realigned smoothed volume, ms per stage."""

    motion: RigidMotion
    roi_means: np.ndarray
    detrended: np.ndarray
    volume: np.ndarray  # realigned (resliced) and smoothed, float32 on the reference grid
    timing_ms: dict[str, float] = field(default_factory=dict)


class LikeForLikePipeline:
    """realign -> reslice -> smooth -> ROI means -> cumulative GLM, one volume at a time (``push``)."""

    def __init__(self, reference: np.ndarray, affine: np.ndarray, rois: Sequence[Roi], glm: GlmConfig,
                 fwhm_mm: float = 5.0) -> None:
        ref = np.asarray(reference, dtype=np.float64)
        self.affine = np.asarray(affine, dtype=np.float64)
        self.realigner = Realigner(ref, self.affine)
        self.reslicer = Reslicer(ref.shape, self.affine)
        self.smoother = GaussianSmoother.for_affine(fwhm_mm, self.affine)
        self.rois = RoiSet(list(rois))
        self.glm = IncrementalGlm(glm, n_series=len(self.rois.rois))

    def push(self, volume: np.ndarray, task: np.ndarray | None = None) -> LikeForLikeStep:
        """Process the next volume (``task``: its task regressor value(s), when the GLM has task columns)."""
        clock = time.perf_counter
        t0 = clock()
        motion = self.realigner.estimate(volume)
        t1 = clock()
        moved = self.reslicer(volume, motion)
        t2 = clock()
        smoothed = self.smoother(moved, out=np.empty_like(moved))
        t3 = clock()
        means = self.rois.means_of(smoothed)
        t4 = clock()
        step = self.glm.update(means, motion.params6() if self.glm.config.motion else None, task)
        t5 = clock()
        timing = dict(zip(STAGES, (1e3 * (b - a) for a, b in zip((t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5)))))
        return LikeForLikeStep(motion, means, step.detrended, smoothed, timing)
