"""Per-volume time of a like-for-like rt-fMRI pipeline (what pyOpenNFT does per volume) beside the feedback
pipeline, and of the incremental whole-brain t-map (OpenNFT's iGLM idea) for the operator (issue 12, item 5).

Replays the real OpenNFT run (../shared/data/fmri/opennft: 48 volumes of 74x74x36, TR 1.97 s; its 5 dummy
volumes skipped as its configuration says, so 43 counted), in memory as the volume sources hand volumes over
(float32, Fortran order), ``--passes`` times, fresh state each pass. Per counted volume, in this order and so
under the same load:

- baseline: the feedback pipeline, as a session runs it (``controller.fmri.pipeline.VolumePipeline.push``:
  realign, lROI_1 and rROI_2 sampled at their realigned positions with 5 mm smoothing folded into the ROI
  weights, cumulative GLM with quadratic drift + motion + task, PSC);
- like-for-like (``controller.fmri.like_for_like``): realign + reslice of the whole volume (trilinear) +
  5 mm FWHM Gaussian smoothing of the whole volume + the two ROI means + the same cumulative GLM, by stage;
- iGLM t-map update (``controller.fmri.tmap``) on the like-for-like volume, over the brain mask, design
  quadratic drift + motion + the HRF-convolved NF blocks, planned for the run's 150 counted volumes;
- for scale, on the first pass only: scipy's reslice of the same volume (``ndimage.affine_transform``,
  trilinear and cubic B-spline; SPM/OpenNFT reslice with a 4th-degree B-spline).

Printed: min, median, p99 and max in ms over all passes (each pass's first counted volume, which sets up the
reference, left out), the ratio of each median to the baseline's median measured in the same run, and the
fraction of the TR. The machine's load average is printed before and after: on a loaded machine (other
jobs on both cores) every row slows down together and the ratios are the comparable figures. Also printed:
how far the like-for-like ROI means are from the feedback pipeline's (the same quantity computed two ways).

    python bench/fmri_like_for_like.py [--passes 3] [--tmap-png docs/img/fmri_tmap_opennft.png]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.clock import now  # noqa: E402
from controller.fmri.glm import GlmConfig  # noqa: E402
from controller.fmri.hrf import task_regressor  # noqa: E402
from controller.fmri.like_for_like import STAGES, LikeForLikePipeline  # noqa: E402
from controller.fmri.opennft_json import opennft_block_labels  # noqa: E402
from controller.fmri.pipeline import VolumePipeline  # noqa: E402
from controller.fmri.realign import brain_mask  # noqa: E402
from controller.fmri.realign_sample import reslice  # noqa: E402
from controller.fmri.rois import roi_from_mask  # noqa: E402
from controller.fmri.tmap import IncrementalTmap  # noqa: E402
from controller.inputs.volumes.volume import Volume  # noqa: E402
from controller.protocol import loads_protocol  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "fmri" / "opennft"
RUN = DATA / "opennft_psc_run_vols001-048_4d.nii.gz"
TR = 1.97
SKIP = 5
PLANNED = 150  # the run's 155 volumes minus its 5 dummies

PROTOCOL = f"""
protocol: bench-like-for-like
inputs:
  fmri:
    volumes: {{folder: unused, pattern: "*.nii"}}
    tr: 1.97 s
    skip: 5 TR
    smoothing: 5 mm
    detrend: {{drift: 2, motion: true}}
rois:
  lroi: {{mask: {DATA / "lROI_1.nii"}}}
  rroi: {{mask: {DATA / "rROI_2.nii"}}}
features:
  lroi_psc: {{roi_psc: {{input: fmri, roi: lroi, baseline: baseline, skip: 3 TR, average: 3 TR}}}}
  rroi_psc: {{roi_psc: {{input: fmri, roi: rroi, baseline: baseline, skip: 3 TR, average: 3 TR}}}}
timeline:
  - repeat: 8
    blocks: [{{baseline: 19.7 s}}, {{nf: 19.7 s}}]
feedback: {{value: lroi_psc, range: [0 %, 2 %], during: nf}}
"""


def _stats(ms: list[float]) -> tuple[float, float, float, float]:
    a = np.asarray(ms)
    return float(a.min()), float(np.median(a)), float(np.percentile(a, 99)), float(a.max())


def run_pass(data: np.ndarray, affine: np.ndarray, protocol, task: np.ndarray, out: dict[str, list[float]],
             scipy_rows: bool) -> tuple[float, IncrementalTmap]:
    """One replay of the run; appends ms per row to ``out``; returns the largest relative ROI-mean difference
    and the t-map as it stands after the last volume."""
    spec = protocol.volume_inputs["fmri"]
    base = VolumePipeline(spec, list(protocol.features.values()), protocol.rois, protocol.timeline,
                          feedback_blocks=("nf",))
    shape = data.shape[:3]
    reference = data[..., SKIP]
    rois = [roi_from_mask(DATA / "lROI_1.nii", shape, affine, name="lroi"),
            roi_from_mask(DATA / "rROI_2.nii", shape, affine, name="rroi")]
    glm = GlmConfig(drift_order=2, motion=True, n_task=1, n_planned=PLANNED)
    lfl = LikeForLikePipeline(reference, affine, rois, glm, fwhm_mm=5.0)
    tmap = IncrementalTmap(brain_mask(reference.astype(np.float64), dilate=0), glm)
    worst = 0.0
    clock = time.perf_counter
    for v in range(data.shape[3]):
        counted = v - SKIP
        vol = np.asfortranarray(data[..., v])
        t = now()
        volume = Volume(index=v + 1, data=vol, affine=affine, tr_s=TR, acquired=t, arrived=t, received=t)
        t0 = clock()
        result = base.push(volume)
        t1 = clock()
        if counted < 0:
            continue
        step = lfl.push(vol, task[counted:counted + 1])
        t2 = clock()
        tmap.update(step.volume, counted, step.motion.params6(), task[counted:counted + 1])
        t3 = clock()
        if scipy_rows:
            s0 = clock()
            reslice(vol, affine, step.motion, order=1)
            s1 = clock()
            reslice(vol, affine, step.motion, order=3)
            s2 = clock()
        raw = np.array([result.qc.rois[r.name].raw for r in rois])
        worst = max(worst, float(np.max(np.abs(step.roi_means - raw) / np.abs(raw))))
        if counted == 0:  # the reference volume: set-up, not a steady-state volume
            continue
        out["baseline"].append(1e3 * (t1 - t0))
        out["like-for-like"].append(1e3 * (t2 - t1))
        for k in STAGES:
            out[k].append(step.timing_ms[k])
        out["t-map"].append(1e3 * (t3 - t2))
        if scipy_rows:
            out["scipy trilinear"].append(1e3 * (s1 - s0))
            out["scipy cubic"].append(1e3 * (s2 - s1))
    return worst, tmap


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passes", type=int, default=3, help="replays of the 48 volumes (fresh state each)")
    ap.add_argument("--tmap-png", type=Path, default=None, metavar="PNG",
                    help="also write the final t-map (NF blocks, |t| >= 3) over the reference volume as a PNG")
    args = ap.parse_args(argv)
    if not RUN.exists():
        print(f"needs the real run: {RUN} (../shared/data beside the repository)", file=sys.stderr)
        return 2
    img = nib.load(str(RUN))
    data = np.asarray(img.dataobj, dtype=np.float32)
    affine = np.asarray(img.affine, dtype=np.float64)
    protocol = loads_protocol(PROTOCOL, str(ROOT / "bench" / "like_for_like.yaml"))
    labels = opennft_block_labels(DATA / "NF_PSC_cont_155.json", data.shape[3] - SKIP)
    task = task_regressor(labels, {"NFBREG"}, TR)
    rows = ["baseline", "like-for-like", *STAGES, "t-map", "scipy trilinear", "scipy cubic"]
    out: dict[str, list[float]] = {k: [] for k in rows}
    load0 = os.getloadavg()
    worst = 0.0
    for p in range(args.passes):
        w, tmap = run_pass(data, affine, protocol, task, out, scipy_rows=p == 0)
        worst = max(worst, w)
    load1 = os.getloadavg()
    shape = "x".join(map(str, data.shape[:3]))
    print(f"rt-fMRI per-volume time, real OpenNFT run {shape}, {data.shape[3] - SKIP} counted volumes ({data.shape[3] - SKIP - 1} timed) x "
          f"{args.passes} passes, {os.cpu_count()} cores; load average (1/5/15 min) "
          f"{' '.join(f'{x:.1f}' for x in load0)} before, {' '.join(f'{x:.1f}' for x in load1)} after")
    base = np.median(out["baseline"])
    print(f"{'ms per volume':34s}{'min':>8s}{'median':>8s}{'p99':>8s}{'max':>8s}   {'x baseline':>10s}  "
          f"{'of TR':>7s}")
    labels_out = {
        "baseline": "baseline: feedback pipeline",
        "like-for-like": "like-for-like total",
        "realign": "  realign",
        "reslice": "  reslice (whole volume)",
        "smooth": "  smooth 5 mm (whole volume)",
        "roi": "  ROI means",
        "glm": "  cumulative GLM",
        "t-map": "iGLM t-map update",
        "scipy trilinear": "[scale] scipy reslice trilinear",
        "scipy cubic": "[scale] scipy reslice cubic",
    }
    for k in rows:
        if not out[k]:
            continue
        mn, med, p99, mx = _stats(out[k])
        print(f"{labels_out[k]:34s}{mn:8.2f}{med:8.2f}{p99:8.2f}{mx:8.2f}   {med / base:9.1f}x  "
              f"{med / (1e3 * TR):7.2%}")
    print(f"t-map voxels: brain mask of the reference volume; ROI means like-for-like vs feedback pipeline: "
          f"max relative difference {worst:.1e}")
    if args.tmap_png is not None and tmap.last is not None and tmap.last.t is not None:
        from matplotlib.image import imsave

        from controller.fmri.tmap_view import mosaic, overlay

        slices = range(4, 32, 2)
        rgb = overlay(mosaic(data[..., SKIP], slices, columns=7), mosaic(tmap.volume(tmap.last.t), slices, columns=7))
        imsave(args.tmap_png, np.kron(rgb, np.ones((2, 2, 1), dtype=np.uint8)))
        print(f"t-map after {tmap.n} volumes ({tmap.last.dof} residual dof), |t| >= 3 in colour: {args.tmap_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
