"""The like-for-like pipeline's parts and the incremental t-map, on the real OpenNFT run (issue 12, item 5).

Correctness only (bench/fmri_like_for_like.py prints the times): smoothing a delta gives the FWHM asked
for on an anisotropic grid; reslicing an unmoved volume gives it back unchanged, and a moved one equals
scipy's trilinear reslice; the like-for-like ROI means (reslice, smooth, average) equal the feedback
pipeline's (sampled at realigned positions, smoothing folded into the weights); the incremental t-map
equals a fresh offline least-squares t-map over the same volumes after every volume, to 1e-8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controller.fmri.glm import GlmConfig
from controller.fmri.hrf import task_regressor
from controller.fmri.like_for_like import LikeForLikePipeline
from controller.fmri.motion import RigidMotion
from controller.fmri.offline import offline_tmap
from controller.fmri.opennft_json import opennft_block_labels
from controller.fmri.pipeline import VolumePipeline
from controller.fmri.realign import brain_mask
from controller.fmri.realign_sample import reslice
from controller.fmri.reslice import Reslicer
from controller.fmri.rois import roi_from_mask
from controller.fmri.smoothing import FWHM_PER_SIGMA, GaussianSmoother, voxel_size_mm
from controller.fmri.tmap import IncrementalTmap
from controller.inputs.volumes.volume import Volume
from controller.protocol import loads_protocol

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT.parent / "shared" / "data" / "fmri" / "opennft"
RUN = DATA / "opennft_psc_run_vols001-048_4d.nii.gz"
TR = 1.97
SKIP = 5
needs_data = pytest.mark.skipif(not RUN.exists(), reason="../shared/data/fmri/opennft not present")


@pytest.fixture(scope="module")
def run4d() -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    img = nib.load(str(RUN))
    return np.asarray(img.dataobj, dtype=np.float32), np.asarray(img.affine, dtype=np.float64)


@pytest.fixture(scope="module")
def task() -> np.ndarray:
    labels = opennft_block_labels(DATA / "NF_PSC_cont_155.json", 48 - SKIP)
    return task_regressor(labels, {"NFBREG"}, TR)


def _fwhm_mm(profile: np.ndarray, voxel_mm: float) -> float:
    """FWHM of a sampled Gaussian from its second moment (exact for a Gaussian, whatever the sampling)."""
    x = np.arange(profile.size) - (profile.size - 1) / 2
    w = profile / profile.sum()
    return float(FWHM_PER_SIGMA * np.sqrt((w * x * x).sum() - (w * x).sum() ** 2) * voxel_mm)


# ---------------------------------------------------------------------------- smoothing
@pytest.mark.parametrize("fwhm_mm", [5.0, 8.0])
def test_smoothing_a_delta_gives_the_expected_fwhm(fwhm_mm: float) -> None:
    """On the real run's oblique, anisotropic grid (2.97 x 2.97 x 3.75 mm): the impulse response is the
    Gaussian asked for, FWHM in mm along each axis, separable, unit sum, symmetric."""
    import nibabel as nib

    affine = nib.load(str(DATA / "fanon-0007-00006-000006-01.nii")).affine if RUN.exists() else \
        np.diag([2.97, 2.97, 3.75, 1.0])
    vox = voxel_size_mm(affine)
    delta = np.zeros((41, 41, 41), dtype=np.float32)
    delta[20, 20, 20] = 1.0
    out = GaussianSmoother.for_affine(fwhm_mm, affine)(delta)
    assert out.dtype == np.float32 and out.sum() == pytest.approx(1.0, abs=1e-6)
    for axis in range(3):
        profile = np.moveaxis(out, axis, 0)[:, 20, 20]
        assert np.allclose(profile, profile[::-1], atol=1e-9)
        assert _fwhm_mm(profile, vox[axis]) == pytest.approx(fwhm_mm, rel=1e-3), axis
    # separable: the 3D response is the outer product of its three 1D profiles
    px, py, pz = out[:, 20, 20], out[20, :, 20], out[20, 20, :]
    outer = np.einsum("i,j,k->ijk", px, py, pz) / (out[20, 20, 20] ** 2)
    np.testing.assert_allclose(out, outer, atol=1e-7)


# ---------------------------------------------------------------------------- reslice
@needs_data
def test_reslice_of_an_unmoved_volume_is_the_identity(run4d) -> None:
    data, affine = run4d
    vol = np.asfortranarray(data[..., 20])
    out = Reslicer(vol.shape, affine)(vol, RigidMotion.from_params6(np.zeros(6)))
    np.testing.assert_array_equal(out, vol)
    assert out.dtype == np.float32


@needs_data
@pytest.mark.parametrize("params", [[0.4, -0.3, 0.2, 0.6, -0.4, 0.3], [-3.0, 2.0, 5.0, -2.0, 3.0, 1.5]])
def test_reslice_of_a_moved_volume_equals_scipys_trilinear_reslice(run4d, params) -> None:
    """Same interpolation and the same edge rule (nearest edge value), including large motions that carry
    voxels out of the field of view."""
    data, affine = run4d
    vol = np.asfortranarray(data[..., 30])
    motion = RigidMotion.from_params6(np.array(params))
    ours = Reslicer(vol.shape, affine)(vol, motion)
    ref = reslice(vol.astype(np.float64), affine, motion, order=1)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5 * float(vol.max()))


# ---------------------------------------------------------------------------- like-for-like = feedback pipeline
@needs_data
def test_like_for_like_roi_means_equal_the_feedback_pipelines(run4d, task) -> None:
    """Reslice + smooth + average over the ROI (like-for-like) and sampling the ROI at its realigned positions
    with the smoothing folded into its weights (the feedback pipeline) are the same linear map of the volume."""
    data, affine = run4d
    text = f"""
protocol: lfl
inputs:
  fmri: {{volumes: {{folder: unused}}, tr: 1.97 s, skip: 5 TR, smoothing: 5 mm, detrend: {{drift: 2, motion: true}}}}
rois:
  lroi: {{mask: {DATA / "lROI_1.nii"}}}
  rroi: {{mask: {DATA / "rROI_2.nii"}}}
features:
  l: {{roi_mean: {{input: fmri, roi: lroi}}}}
  r: {{roi_mean: {{input: fmri, roi: rroi}}}}
timeline: [{{baseline: 19.7 s}}, {{nf: 19.7 s}}]
"""
    protocol = loads_protocol(text, "lfl.yaml")
    feedback = VolumePipeline(protocol.volume_inputs["fmri"], list(protocol.features.values()), protocol.rois,
                              protocol.timeline)
    rois = [roi_from_mask(DATA / "lROI_1.nii", data.shape[:3], affine, name="lroi"),
            roi_from_mask(DATA / "rROI_2.nii", data.shape[:3], affine, name="rroi")]
    lfl = LikeForLikePipeline(data[..., SKIP], affine, rois, GlmConfig(drift_order=2, motion=True, n_task=1,
                                                                       n_planned=150), fwhm_mm=5.0)
    for v in range(SKIP, data.shape[3]):
        vol = np.asfortranarray(data[..., v])
        res = feedback.push(Volume(index=v + 1, data=vol, affine=affine, tr_s=TR, acquired=0.0, arrived=0.0))
        step = lfl.push(vol, task[v - SKIP:v - SKIP + 1])
        raw = np.array([res.qc.rois[r].raw for r in ("lroi", "rroi")])
        np.testing.assert_allclose(step.roi_means, raw, rtol=1e-5)
        np.testing.assert_allclose(step.motion.params6(), res.motion.params6(), atol=1e-9)  # the same realigner
        assert set(step.timing_ms) == {"realign", "reslice", "smooth", "roi", "glm"}


# ---------------------------------------------------------------------------- incremental t-map
CONFIGS = {
    "drift2+motion+task, planned 150": GlmConfig(drift_order=2, motion=True, n_task=1, n_planned=150),
    "drift1+task+high-pass, planned 43": GlmConfig(drift_order=1, motion=False, n_task=1, highpass_s=60.0,
                                                   tr_s=TR, n_planned=43),
}


@needs_data
@pytest.mark.parametrize("name", list(CONFIGS))
def test_incremental_tmap_equals_offline_ols_after_every_volume(run4d, task, name) -> None:
    """The real run realigned, resliced and smoothed (the like-for-like pipeline), then the t-map of the NF
    blocks over the brain mask: after every volume the incremental map equals a fresh OLS fit of all volumes
    so far (SVD, on the design itself, drift over the current window), to 1e-8; None exactly where the
    offline fit says the map is not defined (no task block yet, too few volumes)."""
    data, affine = run4d
    cfg = CONFIGS[name]
    reference = data[..., SKIP]
    lroi = roi_from_mask(DATA / "lROI_1.nii", data.shape[:3], affine)
    lfl = LikeForLikePipeline(reference, affine, [lroi], cfg, fwhm_mm=5.0)
    tmap = IncrementalTmap(brain_mask(reference.astype(np.float64), dilate=0), cfg)
    online, values, motion = [], [], []
    for k, v in enumerate(range(SKIP, data.shape[3])):
        step = lfl.push(np.asfortranarray(data[..., v]), task[k:k + 1])
        got = tmap.update(step.volume, k, step.motion.params6(), task[k:k + 1])
        assert got.n == k + 1 and (got.t is None) == bool(got.why_none)
        online.append(got.t)
        values.append(tmap.values(step.volume))
        motion.append(step.motion.params6())
    offline = offline_tmap(np.array(values), np.array(motion) if cfg.motion else None, cfg, task[:, None])
    assert [t is None for t in online] == [t is None for t in offline]
    defined = [k for k, t in enumerate(online) if t is not None]
    assert defined and defined == list(range(defined[0], len(online))) and defined[0] <= 12
    for k in defined:
        np.testing.assert_allclose(online[k], offline[k], rtol=1e-8, atol=1e-8, err_msg=f"volume {k}")
    final = tmap.volume(online[-1])
    assert final.shape == data.shape[:3] and np.isnan(final[~tmap.mask]).all()
    # the NF target region follows the NF blocks (without motion regressors: this run's motion follows the task)
    if not cfg.motion:
        assert np.nanmean(final[lroi.mask() > 0]) > 1.0


def test_tmap_says_why_it_is_not_defined_yet() -> None:
    cfg = GlmConfig(drift_order=1, motion=False, n_task=1, n_planned=20)
    rng = np.random.default_rng(0)
    mask = np.zeros((4, 4, 4), bool)
    mask[1:3, 1:3, 1:3] = True
    tmap = IncrementalTmap(mask, cfg)
    whys = []
    for k in range(10):  # the task column joins at 6 volumes (3 columns + 3 residual dof); first block at 8
        vol = rng.normal(100.0, 1.0, (4, 4, 4))
        whys.append(tmap.update(vol, k, task=np.array([0.0 if k < 7 else 1.0 + 0.1 * k])).why_none)
    assert all("not in the design yet" in w for w in whys[:5])
    assert all("all zero so far" in w for w in whys[5:7])
    assert whys[7:] == ["", "", ""] and tmap.last is not None and tmap.last.t.shape == (8,)
    with pytest.raises(ValueError, match="at least one task regressor"):
        IncrementalTmap(mask, GlmConfig(n_task=0, motion=False))
    with pytest.raises(ValueError, match="differs from the t-map mask"):
        tmap.update(np.zeros((5, 5, 5)), 8, task=np.array([1.0]))


def test_tmap_view_tiles_slices_and_colours_only_above_threshold() -> None:
    from controller.fmri.tmap_view import mosaic, overlay

    vol = np.arange(4 * 3 * 5, dtype=float).reshape(4, 3, 5)
    m = mosaic(vol, [0, 2, 4], columns=2)
    assert m.shape == (2 * 3, 2 * 4) and np.isnan(m[3:, 4:]).all()  # 3 slices in a 2x2 grid, one tile empty
    np.testing.assert_array_equal(m[:3, 4:], vol[:, ::-1, 2].T)  # slice 2: j upwards, i to the right
    t = np.zeros_like(m)
    t[0, 0], t[0, 1], t[1, 0] = 5.0, -9.0, 2.9
    rgb = overlay(np.nan_to_num(m), t, threshold=3.0, t_max=8.0)
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (255, 102, 0)  # positive: red towards yellow, (5 - 3) / (8 - 3) = 0.4
    assert tuple(rgb[0, 1]) == (0, 255, 255)  # negative beyond t_max: saturated cyan
    assert rgb[1, 0, 0] == rgb[1, 0, 1] == rgb[1, 0, 2]  # below threshold: the grey background
