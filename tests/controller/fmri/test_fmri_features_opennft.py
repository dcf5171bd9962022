"""The feature pipeline on the real OpenNFT run (../shared/data/fmri/opennft, Koush et al. 2017).

Online, volume by volume: realign (controller.fmri.realign), sample each ROI at its realigned
positions, cumulative GLM, optional spike filter, PSC against the preceding baseline block,
sliding correlation lROI_1 vs rROI_2. Offline: the same stages on the whole resliced 4D array
with a fresh least-squares fit per volume. They must agree to ~1e-9, and the online lROI_1
series must follow the run's block design (NF_PSC_cont_155.json; blocks count after the 5
skipped volumes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from controller.fmri.connectivity import SlidingCorrelation
from controller.fmri.glm import GlmConfig, IncrementalGlm
from controller.fmri.hrf import task_regressor
from controller.fmri.offline import FeaturePipelineConfig, OfflineFeatures, offline_features
from controller.fmri.opennft_json import opennft_block_labels
from controller.fmri.psc import PscConfig, PscFeedback
from controller.fmri.realign import Realigner, resample_points, reslice
from controller.fmri.rois import Roi, RoiSet, roi_from_mask
from controller.fmri.smoothing import GaussianSmoother
from controller.fmri.spikes import SpikeConfig, SpikeFilter

RUN = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "fmri" / "opennft"
pytestmark = pytest.mark.skipif(not (RUN / "opennft_psc_run_vols001-048_4d.nii.gz").exists(), reason="../shared/data/fmri/opennft not present")

SKIP = 5  # OpenNFT nrSkipVol; volume 6 is the template / realignment reference
TR = 1.97
N_PLANNED = 150  # the run's 155 volumes minus the skipped ones


@dataclass
class Run:
    vols: np.ndarray  # (x, y, z, 43) float64, volumes 6..48
    affine: np.ndarray
    rois: list[Roi]
    labels: list[str]
    task: np.ndarray


@pytest.fixture(scope="module")
def run() -> Run:
    img = nib.load(str(RUN / "opennft_psc_run_vols001-048_4d.nii.gz"))
    data = np.asarray(img.dataobj, dtype=np.float64)[..., SKIP:]
    shape = data.shape[:3]
    rois = [roi_from_mask(RUN / "lROI_1.nii", shape, img.affine), roi_from_mask(RUN / "rROI_2.nii", shape, img.affine)]
    assert [r.n_voxels for r in rois] == [83, 106]
    labels = opennft_block_labels(RUN / "NF_PSC_cont_155.json", data.shape[3])
    assert labels[9:11] == ["BAS", "NFBREG"] and labels[19:21] == ["NFBREG", "BAS"]  # onset 11 = acquired volume 16
    return Run(data, np.asarray(img.affine), rois, labels, task_regressor(labels, "NFBREG", TR))


@dataclass
class Online:
    motion: np.ndarray
    raw: np.ndarray
    detrended: np.ndarray
    psc: np.ndarray
    feedback: np.ndarray
    connectivity: np.ndarray


def _online(run: Run, cfg: FeaturePipelineConfig) -> Online:
    """The per-volume composition (the lead's pipeline does the same, plus I/O and timing)."""
    rois = run.rois
    if cfg.smoothing_fwhm_mm:
        sm = GaussianSmoother.for_affine(cfg.smoothing_fwhm_mm, run.affine)
        rois = [r.smoothed(sm) for r in rois]  # smoothing folded into the weights
    roi_set = RoiSet(rois)  # one resample call for all ROI voxels
    realigner = Realigner(run.vols[..., 0], run.affine)
    m = len(rois)
    glm = IncrementalGlm(cfg.glm, m)
    spikes = SpikeFilter(cfg.spike, m) if cfg.spike else None
    psc = PscFeedback(cfg.psc, m)
    conn = SlidingCorrelation(cfg.connectivity_window, cfg.fisher_z)
    out: dict[str, list] = {k: [] for k in ("motion", "raw", "detrended", "psc", "feedback", "connectivity")}
    nan = np.full(m, np.nan)
    for n in range(run.vols.shape[3]):
        vol = run.vols[..., n]
        motion = realigner.estimate(vol)
        raw = roi_set.means(resample_points(vol, run.affine, motion, roi_set.points_vox))
        step = glm.update(raw, motion.params6(), run.task[n : n + 1])
        d = step.detrended if spikes is None else spikes.update(step.cleaned) + step.level
        p = psc.update(run.labels[n], d)
        c = conn.update(d[0], d[1])
        out["motion"].append(motion.params6())
        out["raw"].append(raw)
        out["detrended"].append(d)
        out["psc"].append(nan if p.psc is None else p.psc)
        out["feedback"].append(nan if p.feedback is None else p.feedback)
        out["connectivity"].append(np.nan if c is None else c)
    return Online(**{k: np.array(v) for k, v in out.items()})


def _offline(run: Run, motion: np.ndarray, cfg: FeaturePipelineConfig) -> OfflineFeatures:
    from controller.fmri.motion import RigidMotion

    resliced = np.stack(
        [reslice(run.vols[..., n], run.affine, RigidMotion.from_params6(motion[n])) for n in range(run.vols.shape[3])], axis=-1
    )
    return offline_features(resliced, run.affine, run.rois, motion, run.labels, cfg, run.task[:, None])


CONFIGS = {
    # OpenNFT-like: quadratic drift, motion, the task regressor fitted but kept; PSC vs the preceding
    # baseline skipping 3 volumes for the HRF, 3-volume moving average.
    "drift+motion+task": FeaturePipelineConfig(
        glm=GlmConfig(drift_order=2, motion=True, n_task=1, n_planned=N_PLANNED),
        psc=PscConfig("BAS", skip=3, window=3),
        connectivity=(0, 1),
        connectivity_window=10,
    ),
    "smoothed+highpass+spikes": FeaturePipelineConfig(
        glm=GlmConfig(drift_order=1, motion=True, n_task=1, highpass_s=100.0, tr_s=TR, n_planned=N_PLANNED),
        psc=PscConfig("BAS", skip=3, window=3),
        spike=SpikeConfig(),
        smoothing_fwhm_mm=5.0,
        connectivity=(0, 1),
        connectivity_window=12,
        fisher_z=True,
    ),
    # What protocols/opennft_psc_replay.yaml runs: this run's motion follows the task, so it is not regressed.
    "drift+task": FeaturePipelineConfig(
        glm=GlmConfig(drift_order=2, motion=False, n_task=1, n_planned=N_PLANNED),
        psc=PscConfig("BAS", skip=3, window=3),
        connectivity=(0, 1),
    ),
    "linear drift only": FeaturePipelineConfig(
        glm=GlmConfig(drift_order=1, motion=False, n_planned=N_PLANNED),
        psc=PscConfig("BAS", skip=3, window=3),
        connectivity=(0, 1),
    ),
}


def _rel(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    assert np.array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(a)
    return float(np.abs(a[ok] - b[ok]).max() / scale)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_online_equals_offline_on_real_run(run: Run, name: str) -> None:
    cfg = CONFIGS[name]
    on = _online(run, cfg)
    off = _offline(run, on.motion, cfg)
    level = np.abs(off.raw).max()
    errs = {
        "raw": _rel(on.raw, off.raw, level),
        "detrended": _rel(on.detrended, off.detrended, level),
        "psc": _rel(on.psc, off.psc, 1.0),  # percent units
        "feedback": _rel(on.feedback, off.feedback, 1.0),
        "connectivity": _rel(on.connectivity, off.connectivity, 1.0),
    }
    print(f"{name}: max |online - offline| (raw/detrended relative to the signal level, PSC in %): {errs}")
    assert all(e < 1e-9 for e in errs.values()), errs
    assert np.isnan(on.psc[:10]).all() and not np.isnan(on.psc[10:]).any()  # first BAS block completes at volume 10
    assert np.abs(on.motion[:, :3]).max() < 0.5  # a still participant: motion well under a voxel


@pytest.mark.parametrize("name", ["drift+task", "linear drift only"])
def test_online_lroi1_follows_block_design(run: Run, name: str) -> None:
    on = _online(run, CONFIGS[name])
    design = run.task  # boxcar convolved with the canonical HRF (peak ~5 s: lag ~3 volumes)
    r_det = np.corrcoef(on.detrended[:, 0], design)[0, 1]
    ok = ~np.isnan(on.feedback[:, 0])
    r_fb = np.corrcoef(on.feedback[ok, 0], design[ok])[0, 1]
    print(f"{name}: r(online detrended lROI_1, design) = {r_det:.3f}; r(PSC feedback, design) = {r_fb:.3f} over {ok.sum()} volumes")
    assert r_fb > 0.5
    assert r_det > 0.4
    # Feedback is higher during regulation than during baseline, by a fraction of a percent.
    up = np.array([lab == "NFBREG" for lab in run.labels]) & ok & (design > 0.5)
    assert np.nanmean(on.feedback[up, 0]) > np.nanmean(on.feedback[ok & ~up, 0]) + 0.2


def test_motion_regressors_take_the_signal_when_motion_follows_the_task(run: Run) -> None:
    """Why the replay protocol does not regress motion: on this run the estimated motion correlates
    with the task, and as regressors it removes most of the regulation signal."""
    on = _online(run, CONFIGS["drift+motion+task"])
    r_motion = max(abs(np.corrcoef(on.motion[:, k], run.task)[0, 1]) for k in range(6))
    with_motion = _online(run, CONFIGS["drift+motion+task"]).feedback[:, 0]
    without = _online(run, CONFIGS["drift+task"]).feedback[:, 0]
    ok = ~np.isnan(without)
    r_with = np.corrcoef(with_motion[ok], run.task[ok])[0, 1]
    r_without = np.corrcoef(without[ok], run.task[ok])[0, 1]
    print(f"max |r(motion param, task)| = {r_motion:.2f}; r(feedback, task) with motion regressors {r_with:.2f}, "
          f"without {r_without:.2f}")
    assert r_motion > 0.3 and r_without > r_with + 0.3
