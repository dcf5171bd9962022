"""Rigid-body realignment on the real OpenNFT run: known simulated motion, the reference itself,
the motion convention, FD, point resampling vs reslicing, and agreement with a careful offline
registration (itself cross-checked with SimpleITK). Accuracy only; timing is in bench/realign_accuracy.py."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from controller.fmri.motion import RigidMotion, framewise_displacement, rotation_matrix
from controller.fmri.realign import Realigner, brain_mask, resample_points, reslice
from controller.offline.realign import OfflineRegistration, simulate_motion

DATA = Path(__file__).resolve().parents[3] / "../shared/data/fmri/opennft"
RUN = DATA / "opennft_psc_run_vols001-048_4d.nii.gz"
TOL_MM = 0.05
TOL_DEG = 0.05


@pytest.fixture(scope="module")
def run() -> tuple[np.ndarray, np.ndarray]:
    if not RUN.exists():
        pytest.skip(f"real fMRI run not available: {RUN}")
    import nibabel as nib

    img = nib.load(str(RUN))
    return np.asarray(img.dataobj).astype(np.float32), img.affine


@pytest.fixture(scope="module")
def reference(run) -> np.ndarray:
    return run[0][..., 5]  # volume 6 = the run's template


def _max_err(a: RigidMotion, b: RigidMotion) -> tuple[float, float]:
    d = np.abs(a.params6() - b.params6())
    return float(d[:3].max()), float(d[3:].max())


# --- motion convention and FD -------------------------------------------------------------------


def test_params_matrix_round_trip_and_rotation_order() -> None:
    m = RigidMotion.from_params6([1.0, -2.0, 0.5, 3.0, -1.5, 2.0])
    np.testing.assert_allclose(RigidMotion.from_matrix(m.matrix()).params6(), m.params6(), atol=1e-12)
    rx, ry, rz = np.deg2rad([3.0, -1.5, 2.0])
    one = lambda a, axis: rotation_matrix(*[a if i == axis else 0.0 for i in range(3)])
    np.testing.assert_allclose(m.rotation(), one(rx, 0) @ one(ry, 1) @ one(rz, 2), atol=1e-15)
    # right-handed: a positive rotation about x takes +y towards +z
    np.testing.assert_allclose(one(np.pi / 2, 0) @ [0, 1, 0], [0, 0, 1], atol=1e-15)
    np.testing.assert_allclose(m.matrix()[:3, 3], [1.0, -2.0, 0.5])


def test_rigid_motion_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="3 translations"):
        RigidMotion(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        RigidMotion(np.array([0.0, np.nan, 0.0]), np.zeros(3))
    with pytest.raises(ValueError, match="6 numbers"):
        RigidMotion.from_params6([1, 2, 3])


def test_framewise_displacement_power() -> None:
    a = RigidMotion.from_params6([0.1, -0.2, 0.3, 0.0, 0.0, 0.0])
    b = RigidMotion.from_params6([0.2, 0.1, 0.3, 1.0, -0.5, 0.25])
    expected = 0.1 + 0.3 + 0.0 + 50.0 * np.deg2rad(1.0 + 0.5 + 0.25)
    assert framewise_displacement(a, b) == pytest.approx(expected, rel=1e-12)
    assert framewise_displacement(b, a) == pytest.approx(expected, rel=1e-12)
    assert framewise_displacement(a, b, radius_mm=80.0) == pytest.approx(0.4 + 80.0 * np.deg2rad(1.75), rel=1e-12)
    assert framewise_displacement(a, a) == 0.0


# --- estimator on real volumes -------------------------------------------------------------------


def test_zero_motion_on_the_reference(run, reference) -> None:
    r = Realigner(reference, run[1])
    m = r.estimate(reference)
    assert np.abs(m.params6()).max() < 1e-3


def test_direction_from_an_integer_voxel_shift(run, reference) -> None:
    """Content moved one voxel along +i: the head moved by the affine's first column (-2.97 mm in x)."""
    affine = run[1]
    moved = np.empty_like(reference)
    moved[1:] = reference[:-1]
    moved[0] = reference[0]
    m = Realigner(reference, affine).estimate(moved)
    np.testing.assert_allclose(m.translation_mm, affine[:3, 0], atol=0.02)
    assert np.abs(np.rad2deg(m.rotation_rad)).max() < 0.02


def test_recovers_known_simulated_motion(run, reference) -> None:
    """Random motions up to 2 mm / 2 deg per axis, independent per volume (worst case for the warm start)."""
    data, affine = run
    mask = brain_mask(reference)
    noise_sd = float(np.median(np.diff(data[mask], axis=1).std(axis=1)) / np.sqrt(2))
    rng = np.random.default_rng(7)
    r = Realigner(reference, affine)
    errs = []
    for _ in range(8):
        truth = RigidMotion(rng.uniform(-2, 2, 3), np.deg2rad(rng.uniform(-2, 2, 3)))
        est = r.estimate(simulate_motion(reference, affine, truth, noise_sd, rng))
        errs.append(_max_err(est, truth))
    errs = np.array(errs)
    assert errs[:, 0].max() < TOL_MM, errs
    assert errs[:, 1].max() < TOL_DEG, errs


def test_agrees_with_careful_offline_registration_on_real_run(run, reference) -> None:
    data, affine = run
    r = Realigner(reference, affine)
    online = [r.estimate(data[..., k]) for k in range(data.shape[3])]  # causal, warm-started, in order
    offline = OfflineRegistration(reference, affine)
    for k in list(range(0, data.shape[3], 4)) + [data.shape[3] - 1]:
        off = offline.register(data[..., k])
        assert offline.converged
        e_mm, e_deg = _max_err(online[k], off)
        assert e_mm < TOL_MM and e_deg < TOL_DEG, (k, online[k].params6(), off.params6())
    fd = [framewise_displacement(a, b) for a, b in itertools.pairwise(online)]
    assert max(fd) < 0.5  # a compliant participant: this run barely moves


@pytest.mark.slow
def test_offline_registration_cross_checked_by_simpleitk(run, reference) -> None:
    pytest.importorskip("SimpleITK", reason="SimpleITK (test extra) not installed")
    from controller.offline.realign_sitk import sitk_register

    data, affine = run
    rng = np.random.default_rng(3)
    truth = RigidMotion(rng.uniform(-2, 2, 3), np.deg2rad(rng.uniform(-2, 2, 3)))
    moved = simulate_motion(reference, affine, truth, 6.0, rng)
    offline = OfflineRegistration(reference, affine)
    mask = brain_mask(reference)
    for vol, known in ((moved, truth), (data[..., -1], None)):
        off = offline.register(vol)
        s = sitk_register(reference, vol, affine, mask, init=off, learning_rate=0.05)
        e_mm, e_deg = _max_err(s, off)
        assert e_mm < TOL_MM and e_deg < TOL_DEG, (s.params6(), off.params6())
        if known is not None:
            assert max(_max_err(off, known)) < TOL_MM


def test_shape_mismatch_is_a_clear_error(run, reference) -> None:
    r = Realigner(reference, run[1])
    with pytest.raises(ValueError, match="differs from the reference shape"):
        r.estimate(reference[:, :, :-1])
    with pytest.raises(ValueError, match="affine must be"):
        Realigner(reference, np.eye(3))


# --- resampling ----------------------------------------------------------------------------------


def test_resample_points_equals_reslice_at_those_points(run, reference) -> None:
    affine = run[1]
    motion = RigidMotion.from_params6([0.7, -1.2, 0.4, 1.1, -0.6, 0.9])
    vol = run[0][..., 20]
    if (DATA / "lROI_1.nii").exists():
        import nibabel as nib

        pts = np.argwhere(np.asarray(nib.load(str(DATA / "lROI_1.nii")).dataobj) > 0)
    else:
        pts = np.argwhere(brain_mask(reference))[::50]
    for order in (1, 3):
        full = reslice(vol, affine, motion, order=order)
        at = resample_points(vol, affine, motion, pts, order=order)
        np.testing.assert_allclose(at, full[tuple(pts.T)], rtol=1e-5, atol=1e-3)


def test_reslice_undoes_simulated_motion(run, reference) -> None:
    affine = run[1]
    truth = RigidMotion.from_params6([1.5, -1.0, 0.8, -1.2, 1.8, 0.5])
    moved = simulate_motion(reference, affine, truth)
    back = reslice(moved, affine, truth, order=3)
    inner = brain_mask(reference, dilate=0)
    inner[:, :, :3] = inner[:, :, -3:] = False  # slices that left the field of view are unrecoverable
    err = lambda v: np.abs(v[inner] - reference[inner]).mean() / reference[inner].mean()
    # two resamplings of sharp EPI cost ~3%; leaving the motion in (or undoing it backwards) costs 15-21%
    assert err(back) < 0.05
    assert err(moved) > 3 * err(back)
    assert err(reslice(moved, affine, RigidMotion.from_matrix(np.linalg.inv(truth.matrix())), order=3)) > 3 * err(back)
    assert reslice(reference, affine, RigidMotion.identity()).dtype == np.float32
