"""fMRI feature stages: ROIs, smoothing, incremental GLM, spike filter, PSC, sliding correlation.

Each online (per-volume) class is checked against its straightforward offline reference; ROI
construction is checked on the real atlases in ../shared/data/atlas.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from controller.fmri.connectivity import SlidingCorrelation, offline_sliding_correlation
from controller.fmri.glm import GlmConfig, IncrementalGlm, offline_glm
from controller.fmri.hrf import task_regressor
from controller.fmri.opennft_json import opennft_block_labels
from controller.fmri.psc import PscConfig, PscFeedback, offline_psc
from controller.fmri.rois import RoiError, RoiSet, roi_from_mask, roi_from_mni, sphere_roi
from controller.fmri.smoothing import GaussianSmoother
from controller.fmri.spikes import SpikeConfig, SpikeFilter, offline_spike_filter

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
ATLAS = DATA / "atlas"
AAL = ATLAS / "atlas_aal.nii.gz"
LAMY = ATLAS / "RTPSpy_MNI152_2009_template_LAmy.nii.gz"
needs_atlas = pytest.mark.skipif(not AAL.exists() or not LAMY.exists(), reason="../shared/data/atlas not present")

# A 3 mm grid in MNI space covering the brain (radiological-free RAS+, x flipped like the AAL file).
MNI3_SHAPE = (61, 73, 61)
MNI3 = np.array([[-3.0, 0, 0, 90], [0, 3.0, 0, -126], [0, 0, 3.0, -72], [0, 0, 0, 1]])


def _rigid(rx_deg: float, ry_deg: float, rz_deg: float, t: tuple[float, float, float]) -> np.ndarray:
    rx, ry, rz = np.deg2rad([rx_deg, ry_deg, rz_deg])
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    r = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r = r @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = r, t
    return m


def _label_centroid_and_volume(path: Path, label: float | None) -> tuple[np.ndarray, float]:
    img = nib.load(str(path))
    d = np.asanyarray(img.dataobj)
    sel = (d == label) if label is not None else (d != 0)
    ijk = np.argwhere(sel).astype(float)
    xyz = ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
    return xyz.mean(axis=0), float(sel.sum() * abs(np.linalg.det(img.affine[:3, :3])))


# ---------------------------------------------------------------- ROIs


def test_roi_from_mask_matches_direct_mean(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    shape, aff = (10, 12, 8), np.diag([2.0, 2.0, 3.0, 1.0])
    mask = np.zeros(shape, np.uint8)
    mask[2:5, 3:7, 1:4] = 1
    nib.save(nib.Nifti1Image(mask, aff), tmp_path / "m.nii")
    roi = roi_from_mask(tmp_path / "m.nii", shape, aff)
    vol = rng.normal(size=shape).astype(np.float32)
    assert roi.n_voxels == 36 and roi.name == "m"
    assert roi.mean_of(vol) == pytest.approx(float(vol[mask > 0].astype(float).mean()), rel=1e-12)
    assert roi.mean(roi.values(vol)) == pytest.approx(roi.mean_of(vol), rel=1e-15)
    # A Fortran-ordered volume (as nibabel returns) gives the same mean without a copy.
    assert roi.mean_of(np.asfortranarray(vol)) == pytest.approx(roi.mean_of(vol), rel=1e-15)
    np.testing.assert_array_equal(roi.mask() > 0, mask > 0)

    weights = np.zeros(shape, np.float32)
    weights[2:5, 3:7, 1:4] = rng.uniform(0.1, 1.0, size=(3, 4, 3))
    nib.save(nib.Nifti1Image(weights, aff), tmp_path / "w.nii")
    wroi = roi_from_mask(tmp_path / "w.nii", shape, aff, weighted=True)
    expect = float((weights * vol).sum(dtype=float) / weights.sum(dtype=float))
    assert wroi.mean_of(vol) == pytest.approx(expect, rel=1e-6)


def test_roi_from_mask_rejects_other_grid_and_empty(tmp_path: Path) -> None:
    shape, aff = (10, 12, 8), np.diag([2.0, 2.0, 3.0, 1.0])
    mask = np.zeros(shape, np.uint8)
    mask[1, 1, 1] = 1
    shifted = aff.copy()
    shifted[0, 3] = 1.0
    nib.save(nib.Nifti1Image(mask, shifted), tmp_path / "shifted.nii")
    with pytest.raises(RoiError, match=r"shifted\.nii.*does not match the functional grid"):
        roi_from_mask(tmp_path / "shifted.nii", shape, aff)
    nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), aff), tmp_path / "empty.nii")
    with pytest.raises(RoiError, match=r"empty\.nii: no non-zero voxels"):
        roi_from_mask(tmp_path / "empty.nii", shape, aff)
    with pytest.raises(RoiError, match="file not found"):
        roi_from_mask(tmp_path / "missing.nii", shape, aff)


@needs_atlas
def test_aal_amygdala_on_mni_grid_keeps_volume_and_centroid() -> None:
    centre, vol = _label_centroid_and_volume(AAL, 4201)
    roi = roi_from_mni(AAL, MNI3_SHAPE, MNI3, np.eye(4), label=4201)
    assert roi.name == "atlas_aal_4201"
    assert roi.weights.min() > 0 and roi.weights.max() <= 1.0
    assert roi.volume_mm3() == pytest.approx(vol, rel=0.01)  # partial volumes add up to the region
    assert np.linalg.norm(roi.centroid_mm() - centre) < 0.5
    assert roi.coverage == pytest.approx(1.0, abs=0.02)
    # Binary at half coverage: about the same size, fewer voxels than the weighted support.
    half = roi_from_mni(AAL, MNI3_SHAPE, MNI3, label=4201, weighted=False, threshold=0.5)
    assert set(np.unique(half.weights)) == {1.0}
    assert half.n_voxels < roi.n_voxels
    assert half.volume_mm3() == pytest.approx(vol, rel=0.2)


@needs_atlas
def test_mni_mask_through_a_registration() -> None:
    """The 1 mm left-amygdala mask onto an oblique native grid given func->MNI; lands where it should."""
    centre, vol = _label_centroid_and_volume(LAMY, None)
    reg = _rigid(8.0, -5.0, 12.0, (4.0, -6.0, 3.0))  # functional world -> MNI world
    native = np.array([[-2.97, 0, 0, 110.5], [0, 2.85, -1.09, -81.5], [0, 0.86, 3.59, -70.1], [0, 0, 0, 1]])
    shape = (74, 74, 36)
    roi = roi_from_mni(LAMY, shape, native, reg)
    assert roi.volume_mm3() == pytest.approx(vol, rel=0.03)
    c_mni = reg[:3, :3] @ roi.centroid_mm() + reg[:3, 3]
    assert np.linalg.norm(c_mni - centre) < 0.7
    # Same answer whether the grid is expressed in MNI directly or via an equivalent registration.
    direct = roi_from_mni(AAL, MNI3_SHAPE, MNI3, label=4201)
    via = roi_from_mni(AAL, MNI3_SHAPE, np.linalg.inv(reg) @ MNI3, reg, label=4201)
    assert via.volume_mm3() == pytest.approx(direct.volume_mm3(), rel=0.01)
    assert np.linalg.norm(reg[:3, :3] @ via.centroid_mm() + reg[:3, 3] - direct.centroid_mm()) < 0.3


@needs_atlas
def test_mni_roi_errors_name_the_problem() -> None:
    with pytest.raises(RoiError, match=r"atlas_aal\.nii\.gz label 9999: no voxels"):
        roi_from_mni(AAL, MNI3_SHAPE, MNI3, label=9999)
    far = MNI3.copy()
    far[:3, 3] += 1000.0  # the functional FOV is a metre away from the atlas
    with pytest.raises(RoiError, match="outside the functional field of view"):
        roi_from_mni(AAL, MNI3_SHAPE, far, label=4201)
    # Grid that cuts the amygdala in half: too little of it inside.
    half = MNI3.copy()
    half[0, 3] = -26.0  # x from -24.5 leftwards: less than half of Amygdala_L (centroid x -23.5) is in
    with pytest.raises(RoiError, match=r"only \d+% of the region is inside"):
        roi_from_mni(AAL, (20, 73, 61), half, label=4201, min_coverage=0.6)
    with pytest.raises(RoiError, match="empty after thresholding"):
        roi_from_mni(AAL, MNI3_SHAPE, MNI3, label=4201, threshold=1.0)


def test_sphere_native_and_mni() -> None:
    shape, aff = (40, 40, 30), np.array([[3.0, 0, 0, -60], [0, 3.0, 0, -60], [0, 0, 3.75, -50], [0, 0, 0, 1]])
    c = np.array([1.0, -2.0, 3.0])
    ball = 4.0 / 3.0 * np.pi * 7.0**3
    roi = sphere_roi(c, 7.0, shape, aff)
    assert set(np.unique(roi.weights)) == {1.0}
    assert roi.volume_mm3() == pytest.approx(ball, rel=0.2)
    xyz = roi.ijk @ aff[:3, :3].T + aff[:3, 3]
    assert np.all(np.linalg.norm(xyz - c, axis=1) <= 7.0)
    w = sphere_roi(c, 7.0, shape, aff, weighted=True, subsamples=8)
    assert w.volume_mm3() == pytest.approx(ball, rel=0.02)
    assert np.linalg.norm(w.centroid_mm() - c) < 0.1
    # MNI centre through a registration: the sphere is round around the MNI point.
    reg = _rigid(0.0, 10.0, -7.0, (2.0, 1.0, -4.0))
    m = sphere_roi(c, 7.0, shape, aff, func_to_mni=reg, weighted=True, subsamples=8)
    assert np.linalg.norm(reg[:3, :3] @ m.centroid_mm() + reg[:3, 3] - c) < 0.1
    with pytest.raises(RoiError, match=r"sphere r=7 mm at native \(500, 0, 0\): centre falls at voxel .* outside"):
        sphere_roi((500.0, 0.0, 0.0), 7.0, shape, aff)
    with pytest.raises(RoiError, match="radius must be > 0"):
        sphere_roi(c, 0.0, shape, aff)
    with pytest.raises(RoiError, match="only .* inside the functional field of view"):
        sphere_roi((-61.0, 0.0, 0.0), 7.0, shape, aff, min_coverage=0.6)  # on the grid's edge: ~half in


def test_roi_set_reads_several_rois_at_once() -> None:
    rng = np.random.default_rng(8)
    shape, aff = (20, 20, 16), np.diag([3.0, 3.0, 3.5, 1.0])
    rois = [sphere_roi((20.0, 20.0, 20.0), 6.0, shape, aff), sphere_roi((35.0, 30.0, 25.0), 8.0, shape, aff, weighted=True)]
    vol = rng.normal(size=shape)
    rs = RoiSet(rois)
    assert rs.points_vox.shape == (sum(r.n_voxels for r in rois), 3)
    np.testing.assert_allclose(rs.means_of(vol), [r.mean_of(vol) for r in rois], rtol=1e-13)
    other = sphere_roi((20.0, 20.0, 20.0), 6.0, (21, 20, 16), aff)
    with pytest.raises(RoiError, match="different grids"):
        RoiSet([rois[0], other])


def test_opennft_json_labels(tmp_path: Path) -> None:
    p = tmp_path / "prot.json"
    p.write_text('{"ConditionIndex": [{"ConditionName": "NF", "OnOffsets": [[3, 4], [7, 20]]}]}')
    assert opennft_block_labels(p, 8) == ["BAS", "BAS", "NF", "NF", "BAS", "BAS", "NF", "NF"]
    p.write_text('{"ConditionIndex": [{"ConditionName": "NF", "OnOffsets": [[5, 4]]}]}')
    with pytest.raises(ValueError, match=r"ConditionIndex\[0\]\.OnOffsets\[0\] = \[5, 4\]"):
        opennft_block_labels(p, 8)


# ---------------------------------------------------------------- smoothing


def test_smoothed_roi_equals_mean_of_smoothed_volume() -> None:
    rng = np.random.default_rng(2)
    shape, aff = (30, 28, 20), np.diag([2.9, 2.9, 3.75, 1.0])
    vol = rng.normal(100.0, 10.0, size=shape)
    sm = GaussianSmoother.for_affine(6.0, aff)
    np.testing.assert_allclose(sm.sigma_vox, 6.0 / 2.3548200450309493 / np.array([2.9, 2.9, 3.75]))
    roi = sphere_roi((40.0, 40.0, 35.0), 8.0, shape, aff, weighted=True)
    direct = roi.mean_of(sm(vol))
    folded = roi.smoothed(sm)
    assert folded.n_voxels > roi.n_voxels
    assert folded.mean_of(vol) == pytest.approx(direct, rel=1e-12)
    # float32 volume stays float32; FWHM 0 is a copy.
    assert sm(vol.astype(np.float32)).dtype == np.float32
    np.testing.assert_array_equal(GaussianSmoother(0.0, (3, 3, 3))(vol), vol)
    # Smoothing white noise lowers its variance, keeps its mean.
    out = sm(vol)[8:-8, 8:-8, 6:-6]
    assert out.std() < vol.std() / 3 and out.mean() == pytest.approx(100.0, rel=0.01)


# ---------------------------------------------------------------- GLM


def _synthetic_run(n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    labels = (["rest"] * 8 + ["up"] * 8) * (n // 16 + 1)
    labels = labels[:n]
    task = task_regressor(labels, "up", 2.0)
    t = np.arange(n)
    motion = np.cumsum(rng.normal(0, 0.02, size=(n, 6)), axis=0)
    motion[:, 5] = 0.0  # a parameter that never moves: rank-deficient design, must be handled
    y = 1000.0 + 0.3 * t[:, None] + 2e-3 * (t[:, None] - 20) ** 2 + rng.normal(0, 1.0, size=(n, m))
    y += 8.0 * task[:, None] * np.arange(1, m + 1) + 5.0 * motion[:, :1]
    return y, motion, task, labels


@pytest.mark.parametrize(
    "cfg",
    [
        GlmConfig(drift_order=1, motion=False, n_planned=80),
        GlmConfig(drift_order=2, motion=True, n_planned=80),
        GlmConfig(drift_order=2, motion=True, n_task=1, n_planned=80, level_volumes=4),
        GlmConfig(drift_order=3, motion=True, n_task=1, highpass_s=60.0, tr_s=2.0, n_planned=80, min_dof=2),
        GlmConfig(drift_order=0, motion=False, n_planned=30),  # run longer than planned: storage grows
    ],
)
def test_incremental_glm_equals_per_volume_lstsq(cfg: GlmConfig) -> None:
    y, motion, task, _ = _synthetic_run(70, 3, seed=3)
    glm = IncrementalGlm(cfg, n_series=3)
    steps = [glm.update(y[i], motion[i], task[i : i + 1]) for i in range(70)]
    online = np.array([s.detrended for s in steps])
    cleaned = np.array([s.cleaned for s in steps])
    off_clean, off_detr = offline_glm(y, motion if cfg.motion else None, cfg, task[:, None])
    scale = np.abs(y).max()
    assert np.abs(online - off_detr).max() / scale < 1e-9
    assert np.abs(cleaned - off_clean).max() / scale < 1e-9
    cols = [s.n_columns for s in steps]
    assert cols == sorted(cols) and cols[0] == 1 and cols[-1] == cfg.active_columns(70)
    assert steps[0].detrended[0] == pytest.approx(y[0, 0])  # n = 1: nothing to remove, level = y[0]


def test_glm_removes_drift_and_motion_keeps_task() -> None:
    y, motion, task, _ = _synthetic_run(120, 1, seed=4)
    cfg = GlmConfig(drift_order=2, motion=True, n_task=1, n_planned=120)
    glm = IncrementalGlm(cfg)
    d = np.array([glm.update(y[i], motion[i], task[i]).detrended[0] for i in range(120)])
    late = slice(40, None)
    # Raw series is dominated by drift; detrended follows the task (8 * task) around a flat level.
    assert np.corrcoef(y[late, 0], task[late])[0, 1] < 0.5
    assert np.corrcoef(d[late], task[late])[0, 1] > 0.9
    resid = d[late] - 8.0 * task[late]
    assert abs(np.polyfit(np.arange(resid.size), resid, 1)[0]) < 0.02  # drift slope was >= 0.3 per volume
    assert resid.mean() == pytest.approx(y[0, 0], abs=3.0)


def test_glm_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="high-pass needs tr_s"):
        GlmConfig(highpass_s=128.0)
    glm = IncrementalGlm(GlmConfig(motion=True))
    with pytest.raises(ValueError, match="no motion parameters"):
        glm.update(1.0)
    with pytest.raises(ValueError, match="not finite"):
        glm.update(float("nan"), np.zeros(6))
    with pytest.raises(ValueError, match="task regressor"):
        IncrementalGlm(GlmConfig(motion=False, n_task=1)).update(1.0)


# ---------------------------------------------------------------- spikes


def test_spike_filter_online_equals_loop_and_clips_spikes() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1.0, size=(80, 2))
    x[40, 0] += 25.0
    x[60:, 1] += 6.0  # a real level shift: followed after max_spike_run volumes
    cfg = SpikeConfig(threshold_sd=3.0, max_spike_run=2)
    f = SpikeFilter(cfg, 2)
    online = np.array([f.update(row) for row in x])
    np.testing.assert_allclose(online, offline_spike_filter(x, cfg), rtol=0, atol=1e-12)
    assert abs(online[40, 0]) < 5.0 and f.spikes[0] >= 1
    assert online[70:, 1].mean() > 4.0


# ---------------------------------------------------------------- PSC


def test_psc_hand_example() -> None:
    cfg = PscConfig(baseline="rest", skip=1, window=2)
    p = PscFeedback(cfg)
    seq = [("rest", 90.0), ("rest", 100.0), ("rest", 100.0), ("up", 101.0), ("up", 103.0), ("rest", 50.0), ("rest", 200.0), ("up", 204.0)]
    out = [p.update(lab, v) for lab, v in seq]
    assert all(o.psc is None and o.feedback is None for o in out[:3])  # no complete rest block yet
    assert out[3].psc[0] == pytest.approx(1.0)  # baseline = mean(100, 100): the 90 was skipped
    assert out[4].feedback[0] == pytest.approx(2.0)  # mean of 1 % and 3 %
    assert out[5].baseline[0] == pytest.approx(100.0)  # during rest 2 the reference is still rest 1
    assert out[7].psc[0] == pytest.approx(2.0)  # rest 2 done: baseline = 200 (50 skipped)


def test_psc_online_equals_offline_with_irregular_blocks() -> None:
    rng = np.random.default_rng(6)
    labels: list[str] = []
    for _ in range(12):
        labels += [rng.choice(["rest", "happy", "count"])] * int(rng.integers(1, 7))
    n = len(labels)
    d = 500.0 + rng.normal(0, 3.0, size=(n, 2))
    cfg = PscConfig(baseline=("rest", "count"), skip=2, window=3, min_baseline=2)
    p = PscFeedback(cfg, 2)
    steps = [p.update(labels[i], d[i]) for i in range(n)]
    on_psc = np.array([s.psc if s.psc is not None else [np.nan, np.nan] for s in steps])
    on_fb = np.array([s.feedback if s.feedback is not None else [np.nan, np.nan] for s in steps])
    off_psc, off_fb = offline_psc(d, labels, cfg)
    np.testing.assert_allclose(on_psc, off_psc, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(on_fb, off_fb, rtol=1e-12, equal_nan=True)
    assert np.isnan(on_psc[0]).all() and not np.isnan(on_psc[-1]).all()


# ---------------------------------------------------------------- connectivity


@pytest.mark.parametrize("fisher_z", [False, True])
def test_sliding_correlation_equals_corrcoef(fisher_z: bool) -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(size=60)
    b = -0.6 * a + 0.8 * rng.normal(size=60)
    sc = SlidingCorrelation(15, fisher_z=fisher_z)
    on = np.array([np.nan if (r := sc.update(a[i], b[i])) is None else r for i in range(60)])
    off = offline_sliding_correlation(a, b, 15, fisher_z)
    np.testing.assert_allclose(on, off, rtol=0, atol=1e-12, equal_nan=True)
    assert np.isnan(on[:14]).all() and np.nanmean(on) < -0.3
    flat = SlidingCorrelation(3)
    assert [flat.update(1.0, float(i)) for i in range(4)] == [None, None, None, None]  # constant series
    with pytest.raises(ValueError, match="window of >= 3"):
        SlidingCorrelation(2)
