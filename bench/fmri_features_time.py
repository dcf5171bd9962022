"""Per-volume cost of the fMRI feature stages after realignment (prints figures; not a test).

On the real OpenNFT run (../shared/data/fmri/opennft, 74x74x36, volumes 6..48, cycled to
``--volumes``): realignment is done first and not timed here (bench/realign_accuracy.py and the
lead's pipeline bench cover it). Timed per volume, in microseconds: sampling the ROIs at their
realigned positions (lROI_1, rROI_2 and a 7 mm sphere; with 5 mm smoothing folded into the ROI
weights), the cumulative GLM for the three series (quadratic drift + motion + task + DCT
high-pass), spike filter, PSC + moving average, sliding correlation; and, for comparison,
smoothing the whole volume.

    .venv/bin/python bench/fmri_features_time.py [--volumes 150]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from controller.fmri.connectivity import SlidingCorrelation
from controller.fmri.glm import GlmConfig, IncrementalGlm
from controller.fmri.hrf import task_regressor
from controller.fmri.psc import PscConfig, PscFeedback
from controller.fmri.realign import Realigner, resample_points
from controller.fmri.rois import RoiSet, roi_from_mask, sphere_roi
from controller.fmri.smoothing import GaussianSmoother
from controller.fmri.spikes import SpikeFilter

RUN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fmri" / "opennft"
TR = 1.97


def main(n_vol: int) -> None:
    img = nib.load(str(RUN / "opennft_psc_run_vols001-048_4d.nii.gz"))
    data = np.asarray(img.dataobj, dtype=np.float32)[..., 5:]
    aff = np.asarray(img.affine)
    shape = data.shape[:3]
    sm = GaussianSmoother.for_affine(5.0, aff)
    lroi = roi_from_mask(RUN / "lROI_1.nii", shape, aff)
    rois = [lroi, roi_from_mask(RUN / "rROI_2.nii", shape, aff), sphere_roi(lroi.centroid_mm(), 7.0, shape, aff)]
    folded = RoiSet([r.smoothed(sm) for r in rois])
    labels = (["rest"] * 10 + ["up"] * 10) * (n_vol // 20 + 1)
    task = task_regressor(labels[:n_vol], "up", TR)
    realigner = Realigner(data[..., 0], aff)
    glm = IncrementalGlm(GlmConfig(drift_order=2, motion=True, n_task=1, highpass_s=100.0, tr_s=TR, n_planned=n_vol), 3)
    spikes, psc, conn = SpikeFilter(n_series=3), PscFeedback(PscConfig("rest", skip=3, window=3), 3), SlidingCorrelation(12)
    t: dict[str, list[float]] = {k: [] for k in ("roi sample (3 ROIs, smoothing folded)", "GLM (3 series)", "spike filter", "PSC + feedback", "correlation", "total after realign", "[full-volume smoothing]")}
    clock = time.perf_counter_ns
    for n in range(n_vol):
        vol = data[..., n % data.shape[3]]
        motion = realigner.estimate(vol)
        params = motion.params6()
        t0 = clock()
        raw = folded.means(resample_points(vol, aff, motion, folded.points_vox))
        t1 = clock()
        step = glm.update(raw, params, task[n : n + 1])
        t2 = clock()
        d = spikes.update(step.cleaned) + step.level
        t3 = clock()
        psc.update(labels[n], d)
        t4 = clock()
        conn.update(d[0], d[1])
        t5 = clock()
        sm(vol)
        t6 = clock()
        for k, a, b in zip(t, (t0, t1, t2, t3, t4, t0, t5), (t1, t2, t3, t4, t5, t5, t6)):
            t[k].append((b - a) / 1000.0)
    print(f"74x74x36 real run, {n_vol} volumes, ROI voxels after folding 5 mm smoothing: {[r.n_voxels for r in folded.rois]}")
    for k, v in t.items():
        a = np.asarray(v[5:])
        print(f"  {k:40s} median {np.median(a):8.1f} us   p99 {np.percentile(a, 99):8.1f} us   max {a.max():8.1f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=150)
    main(parser.parse_args().volumes)
