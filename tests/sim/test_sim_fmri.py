"""The fMRI simulator: phantom geometry, BOLD vs design, true motion, learning, files, LSL, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import pylsl
import pytest
from scipy import ndimage, optimize

from sim.fmri.bold import BoldConfig, BoldGenerator, block_regressor, condition_of
from sim.fmri.design import FixedDesign, LiveDesign
from sim.fmri.motion import MotionConfig, RigidResampler, framewise_displacement, rigid_matrix
from sim.fmri.noise import NoiseConfig
from sim.fmri.participant import FmriParticipant, FmriParticipantConfig
from sim.fmri.phantom import LABELS_NAME, ROIS, make_phantom, write_atlas
from sim.fmri.simulator import HEAD_PAD_SLICES, STATE_COLUMNS, FmriSimulator, build_parser, read_truth, run

REPO = Path(__file__).resolve().parents[2]
STILL = MotionConfig(0.0, 0.0, 0.0, 0.0)
DESIGN = "rest:20s,3*(happy:40s,count:40s,rest:40s)"


@pytest.fixture(scope="module")
def head():
    return make_phantom(3.0, pad_slices=HEAD_PAD_SLICES)


@pytest.fixture(scope="module")
def phantom(head):
    return head.crop_slices(HEAD_PAD_SLICES)


def _detrend(y: np.ndarray) -> np.ndarray:
    x = np.linspace(-1, 1, len(y))
    basis = np.column_stack([np.ones_like(x), x, x * x])
    return y - basis @ np.linalg.lstsq(basis, y, rcond=None)[0]


# ---------------------------------------------------------------- phantom
@pytest.mark.parametrize("tilt", [0.0, 17.0])
def test_phantom_rois_sit_at_their_mni_coordinates(tilt):
    ph = make_phantom(3.0, tilt_deg=tilt)
    assert ph.shape == (74, 74, 36)
    assert np.allclose(np.sqrt((ph.affine[:3, :3] ** 2).sum(axis=0)), [3.0, 3.0, 3.75])
    for roi in ROIS:
        ijk = np.argwhere(ph.labels == roi.label)
        assert len(ijk) > 15, roi.name
        centroid = ph.voxel_to_world(ijk).mean(axis=0)
        assert np.linalg.norm(centroid - roi.centre_mm) < 2.0, (roi.name, centroid)
        # the voxel under the MNI centre carries the label
        i, j, k = np.round(ph.world_to_voxel(np.array(roi.centre_mm))).astype(int)
        assert ph.labels[i, j, k] == roi.label, roi.name
    # contrast for realignment: CSF > grey > white, a brain-shaped mask
    grey = ph.intensity[(ph.grey > 0.95)].mean()
    white = ph.intensity[(ph.white > 0.95)].mean()
    csf = ph.intensity[(ph.csf > 0.95)].mean()
    assert csf > grey > white > 0
    assert 0.15 < ph.brain.mean() < 0.5


def test_two_mm_grid_and_atlas_files(tmp_path):
    ph = make_phantom(2.0, supersample=1)
    assert ph.shape == (104, 104, 72)
    paths = write_atlas(ph, tmp_path)
    img = nib.load(paths["atlas"])
    assert np.allclose(img.affine, ph.affine)
    assert np.array_equal(np.asarray(img.dataobj), ph.labels)
    rows = [line.split("\t") for line in (tmp_path / LABELS_NAME).read_text().splitlines()]
    assert rows[0][:3] == ["id", "name", "network"]
    assert {r[1] for r in rows[1:]} == {r.name for r in ROIS}
    amy = next(r for r in rows[1:] if r[1] == "amygdala_l")
    assert [float(v) for v in amy[3:6]] == [-24.0, -4.0, -18.0] and int(amy[7]) > 100


# ---------------------------------------------------------------- design
def test_block_syntax_and_errors():
    d = FixedDesign.parse("rest:20s,2*(happy:40,count:10tr),rest:0.5min", tr_s=2.0)
    assert [b.label for b in d.blocks] == ["rest", "happy", "count", "happy", "count", "rest"]
    assert d.duration_s == 20 + 2 * 60 + 30
    assert d.label_at(25.0) == "happy" and d.label_at(65.0) == "count" and d.label_at(1e6) == "rest"
    for bad, what in [("rest", "LABEL:DURATION"), ("rest:abc", "bad duration"), ("2*(a:1s", "unbalanced"),
                      ("a:1s,,b:2s", "empty item")]:
        with pytest.raises(ValueError, match=what):
            FixedDesign.parse(bad)
    live = LiveDesign()
    live.on_marker("block_start:Happy", 10.0)
    live.on_marker("reward", 11.0)
    live.on_marker("block_end:Happy", 50.0)
    assert (live.label_at(5.0), live.label_at(20.0), live.label_at(60.0)) == ("rest", "Happy", "rest")
    assert condition_of("Happy") == "regulate" and condition_of("Count") == "count" and condition_of("CBT") == "cbt"


# ---------------------------------------------------------------- BOLD
def test_bold_follows_the_design(head, phantom):
    tr = 2.0
    design = FixedDesign.parse(DESIGN, tr)
    n = int(design.duration_s / tr)
    reg = block_regressor(design, tr, n, "regulate")
    cnt = block_regressor(design, tr, n, "count")
    clean = FmriSimulator.build(tr, design, seed=3, motion=STILL, noise=NoiseConfig().scaled(0), head=head)
    noisy = FmriSimulator.build(tr, design, seed=3, motion=STILL, head=head)
    amy, dl, truth = phantom.roi_mask("amygdala_l"), phantom.roi_mask("dlpfc_l"), []
    series = {"clean": [], "noisy": []}
    for _ in range(n):
        c, v = clean.next_volume(), noisy.next_volume()
        truth.append(c.truth)
        series["clean"].append((c.data[amy].mean(), c.data[dl].mean()))
        series["noisy"].append((v.data[amy].mean(), v.data[dl].mean()))
    clean_s, noisy_s = np.array(series["clean"]), np.array(series["noisy"])
    # noise-free and still: the ROI mean is the phantom times (1 + true BOLD)
    base = phantom.intensity[amy].mean()
    true_amy = np.array([t["bold_amygdala_l"] for t in truth])
    assert np.allclose(clean_s[:, 0] / base - 1.0, true_amy / 100.0, atol=1e-5)
    assert np.corrcoef(clean_s[:, 0], reg)[0, 1] > 0.75
    assert np.corrcoef(clean_s[:, 1], cnt)[0, 1] > 0.75
    # with scanner + physiological noise still clearly there
    assert np.corrcoef(_detrend(noisy_s[:, 0]), _detrend(reg))[0, 1] > 0.35
    assert np.corrcoef(_detrend(noisy_s[:, 1]), _detrend(cnt))[0, 1] > 0.45
    # realistic temporal SNR in grey matter (the real OpenNFT run: ~67)
    vols = []
    sim = FmriSimulator.build(tr, FixedDesign.parse("rest:60tr", tr), seed=4, motion=STILL, head=head)
    vols = np.array([sim.next_volume().data for _ in range(60)])
    gm = phantom.grey > 0.95
    ts = vols[:, gm]
    resid = ts - ts.mean(0)
    tsnr = np.median(ts.mean(0) / resid.std(0))
    assert 45 < tsnr < 110, tsnr


def test_dmn_cen_coupling_is_controllable():
    def corr(coupling: float) -> float:
        gen = BoldGenerator(2.0, BoldConfig(baseline_coupling=coupling), seed=1)
        ys = np.array([gen.step(lambda t: "rest", 0.0)[0] for _ in range(600)])
        return float(np.corrcoef(ys[:, [r.name for r in ROIS].index("pcc")],
                                 ys[:, [r.name for r in ROIS].index("dlpfc_l")])[0, 1])
    assert corr(0.8) < -0.5 < corr(0.0) and abs(corr(0.0)) < 0.3


# ---------------------------------------------------------------- motion
def _realign(ref: np.ndarray, moved: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Least-squares rigid registration of ``moved`` to ``ref`` (our own, scipy only) -> params6."""
    coeffs = ndimage.spline_filter(moved.astype(np.float64), order=3)
    grad = np.linalg.norm(np.gradient(ref), axis=0)
    grad[:, :, :2] = grad[:, :, -2:] = 0  # stay clear of the slab's ends
    pts = np.argwhere(grad > np.percentile(grad, 80)).T.astype(float)
    pts1 = np.vstack([pts, np.ones(pts.shape[1])])
    target = ref[tuple(pts.astype(int))]
    inv = np.linalg.inv(affine)

    def residual(p):
        m = inv @ rigid_matrix(p) @ affine  # reference voxel -> where that tissue is in the moved volume
        return ndimage.map_coordinates(coeffs, (m @ pts1)[:3], order=3, prefilter=False) - target

    return optimize.least_squares(residual, np.zeros(6), x_scale=0.1, diff_step=1e-4).x


def test_motion_truth_matches_what_was_applied(head, phantom):
    tr = 2.0
    big = MotionConfig(drift_mm_per_min=1.0, drift_deg_per_min=0.8, jerks_per_min=20.0, jerk_mm=1.5)
    sim = FmriSimulator.build(tr, FixedDesign.parse("rest:12tr", tr), seed=7, motion=big,
                              noise=NoiseConfig().scaled(0), head=head)
    vols = [sim.next_volume() for _ in range(12)]
    params = np.array([[v.truth[c] for c in ("tx", "ty", "tz", "rx", "ry", "rz")] for v in vols])
    assert np.all(params[0] == 0) and np.abs(params).max() > 0.5
    assert np.allclose([v.truth["fd"] for v in vols], framewise_displacement(params))
    ref = vols[0].data
    for k in (3, 7, 11):
        est = _realign(ref, vols[k].data, phantom.affine)
        assert np.abs(est[:3] - params[k, :3]).max() < 0.05, (k, est, params[k])
        assert np.abs(est[3:] - params[k, 3:]).max() < 0.05, (k, est, params[k])


def test_motion_convention_is_the_realignment_one():
    motion = pytest.importorskip("controller.fmri.motion")
    p = np.array([1.0, -2.0, 0.5, 3.0, -1.5, 2.0])
    theirs = motion.RigidMotion.from_params6(p).matrix()
    assert np.allclose(rigid_matrix(p), theirs)


def test_resampler_moves_the_head_the_right_way(phantom):
    shift = np.array([6.0, 0, 0, 0, 0, 0])  # head 6 mm to the right (+x)
    moved = RigidResampler(phantom.shape, phantom.affine, order=1).apply(phantom.labels.astype(np.float32), shift)
    ijk = np.argwhere(np.round(moved) == 1)  # amygdala_l
    centroid = phantom.voxel_to_world(ijk).mean(axis=0)
    assert abs(centroid[0] - (-24.0 + 6.0)) < 1.5


# ---------------------------------------------------------------- learning
def _closed_loop(seed: int, rewarded: bool, runs: int = 4) -> list[float]:
    """Runs of 3 x (rest, happy) with feedback = target PSC vs the preceding rest (or random)."""
    tr = 2.0
    design = FixedDesign.parse("3*(rest:30s,happy:40s)", tr)
    n = int(design.duration_s / tr)
    rng = np.random.default_rng(seed + 1000)
    person = FmriParticipant(FmriParticipantConfig(), seed=seed, tr_s=tr)
    skills = [person.mu]
    for run_no in range(runs):
        bold = BoldGenerator(tr, BoldConfig(), seed=seed * 100 + run_no)
        rest: list[float] = []
        for k in range(n):
            label = design.label_at(k * tr + 1.0)
            effort = person.step(tr, label == "happy")
            y = bold.step(design.label_at, effort)[0][0] + 0.15 * rng.standard_normal()  # measured PSC
            if label == "rest":
                rest.append(y)
            elif rewarded:
                person.feedback(float(np.clip((y - np.mean(rest[-10:])) / 1.5, 0, 1)))
            else:
                person.feedback(float(rng.uniform()))
        skills.append(person.mu)
    return skills


def test_learning_raises_the_target_when_rewarded():
    gains = np.array([_closed_loop(s, True)[-1] - _closed_loop(s, True)[0] for s in range(6)])
    random = np.array([_closed_loop(s, False)[-1] - _closed_loop(s, False)[0] for s in range(6)])
    assert gains.mean() > 0.3 and (gains > 0).sum() >= 5, gains
    assert abs(random.mean()) < gains.mean() / 3, (gains, random)
    # the skill rises run after run on average
    curves = np.array([_closed_loop(s, True) for s in range(6)]).mean(axis=0)
    assert curves[-1] > curves[2] > curves[0]


def test_participant_state_carries_across_runs(tmp_path):
    path = tmp_path / "p.json"
    a = FmriParticipant(seed=1)
    a.mu = 1.23
    a.save(path)
    b = FmriParticipant(seed=2)
    assert b.load(path) and b.mu == pytest.approx(1.23)
    assert not FmriParticipant().load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json"):
        FmriParticipant().load(tmp_path / "bad.json")


# ---------------------------------------------------------------- outputs: files, LSL, live markers, CLI
def _desc_volume(info: pylsl.StreamInfo) -> dict[str, str]:
    vol = info.desc().child("volume")
    return {k: vol.child_value(k) for k in ("shape", "order", "affine", "tr", "first_index")}


@pytest.mark.lsl
@pytest.mark.slow
def test_cli_end_to_end_files_lsl_and_truth(tmp_path):
    name = f"simfmri-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "export"
    n = 8
    cmd = [sys.executable, "-m", "sim", "fmri", "--folder", str(out), "--lsl", name, "--blocks", "rest:4tr,happy:4tr",
           "--tr", "2", "--speed", "8", "--interp", "1", "--prefix", "", "--seed", "5", "--wait-consumer", "20"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        ready = None
        for line in proc.stdout:
            if line.startswith("READY "):
                ready = json.loads(line[6:])
                break
        assert ready is not None, proc.stderr.read()
        assert ready["shape"] == [74, 74, 36] and ready["lsl"] == name and ready["state"] == f"{name}-state"
        vol_info = pylsl.resolve_byprop("name", name, timeout=10)[0]
        state_info = pylsl.resolve_byprop("name", f"{name}-state", timeout=10)[0]
        volumes = pylsl.StreamInlet(vol_info, max_buflen=60, recover=False)
        states = pylsl.StreamInlet(state_info, max_buflen=60, recover=False)
        full = volumes.info(timeout=5)
        # docs/lsl_volumes.md
        assert full.type() == "fMRI" and full.channel_format() == pylsl.cf_float32
        assert full.channel_count() == 1 + 74 * 74 * 36 and full.nominal_srate() == pytest.approx(0.5)
        geo = _desc_volume(full)
        assert geo["shape"] == "74 74 36" and geo["order"] == "F" and float(geo["tr"]) == 2.0
        assert geo["first_index"] == "1"
        affine = np.array(geo["affine"].split(), float).reshape(4, 4)
        assert np.allclose(affine, ready["affine"], atol=1e-5)
        states.open_stream(timeout=5)
        got, stamps, state_rows = [], [], []
        deadline = time.monotonic() + 60
        while (len(got) < n or len(state_rows) < n) and time.monotonic() < deadline:
            if len(got) < n:
                sample, ts = volumes.pull_sample(timeout=0.5)
                if sample is not None:
                    got.append(np.asarray(sample, np.float32))
                    stamps.append(ts)
            rows, _ = states.pull_chunk(timeout=0.0)
            state_rows.extend(rows)
        volumes.close_stream()
        states.close_stream()
        assert [int(s[0]) for s in got] == list(range(1, n + 1))
        assert np.all(np.diff(stamps) > 0)
        assert proc.wait(timeout=60) == 0
        tail = proc.stdout.read()
        assert "stopped after 8 volumes" in tail
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
    # files with increasing indices, the same data as the stream
    files = sorted(p.name for p in out.glob("*.nii"))
    assert files == [f"vol_{k:06d}.nii" for k in range(1, n + 1)]
    first = nib.load(out / files[0])
    assert np.allclose(first.affine, affine, atol=1e-4)
    lsl_first = got[0][1:].reshape((74, 74, 36), order="F")
    assert np.allclose(np.asarray(first.dataobj, np.float32), lsl_first, atol=1.0)  # file may be integer-coded
    # the truth: TSV and LSL state stream agree, one row per volume
    truth = read_truth(out / "sim_truth.tsv")
    assert list(truth["index"]) == list(range(1, n + 1))
    assert list(truth["label"]) == ["rest"] * 4 + ["happy"] * 4
    assert list(truth["regulating"]) == [0] * 4 + [1] * 4
    rows = np.array(state_rows)
    assert rows.shape == (n, len(STATE_COLUMNS))
    by_index = {int(r[0]): r for r in rows}
    for k, row in by_index.items():
        assert np.allclose(row[2:8], [truth[c][k - 1] for c in ("tx", "ty", "tz", "rx", "ry", "rz")], atol=1e-5)
    assert (out / "sim_atlas" / "sim_fmri_atlas.nii.gz").exists()
    assert (out / "sim_atlas" / LABELS_NAME).exists()


@pytest.mark.lsl
def test_follows_controller_markers_and_learns_from_feedback(tmp_path):
    prefix = f"ctl-{uuid.uuid4().hex[:8]}"
    markers = pylsl.StreamOutlet(pylsl.StreamInfo(f"{prefix}-markers", "Markers", 1, pylsl.IRREGULAR_RATE,
                                                  pylsl.cf_string, f"{prefix}-m"))
    feedback = pylsl.StreamOutlet(pylsl.StreamInfo(f"{prefix}-feedback", "Feedback", 2, pylsl.IRREGULAR_RATE,
                                                   pylsl.cf_double64, f"{prefix}-f"))
    args = build_parser().parse_args(["--folder", str(tmp_path), "--prefix", prefix, "--tr", "1", "--speed", "4",
                                      "--volumes", "16", "--interp", "1", "--name", f"{prefix}-sim",
                                      "--participant", str(tmp_path / "participant.json")])
    stop = threading.Event()
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(run(args, stop)), daemon=True)
    thread.start()
    try:
        assert markers.wait_for_consumers(15) and feedback.wait_for_consumers(15)
        deadline = time.monotonic() + 30
        truth_path = tmp_path / "sim_truth.tsv"
        while time.monotonic() < deadline and (not truth_path.exists() or len(truth_path.read_text().splitlines()) < 4):
            time.sleep(0.05)
        markers.push_sample(["block_start:Happy"])
        for _ in range(20):
            time.sleep(0.1)
            feedback.push_sample([0.7, 0.5])
        markers.push_sample(["reward"])
        thread.join(timeout=60)
    finally:
        stop.set()
        thread.join(timeout=10)
    truth = read_truth(tmp_path / "sim_truth.tsv")
    assert truth["regulating"][0] == 0 and truth["regulating"][-1] == 1
    assert "Happy" in set(truth["label"])
    assert result["feedbacks"] >= 20 and result["rewards"] == 1 and result["markers"] >= 2
    assert json.loads((tmp_path / "participant.json").read_text())["feedbacks"] >= 20


def test_cli_rejects_bad_arguments(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sim", "fmri", "--blocks", "rest:2tr", "--prefix", ""], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--folder DIR and/or --lsl" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "sim", "fmri", "--folder", str(tmp_path), "--target", "nowhere",
                           "--prefix", "", "--blocks", "rest:2tr"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "unknown target 'nowhere'" in proc.stderr


def test_mosaic_files_read_back_on_the_same_grid(tmp_path):
    dicom = pytest.importorskip("controller.inputs.volumes.dicom")
    args = build_parser().parse_args(["--folder", str(tmp_path), "--format", "mosaic", "--blocks", "rest:2tr",
                                      "--speed", "50", "--prefix", "", "--interp", "1", "--quiet"])
    assert run(args, threading.Event())["volumes"] == 2
    files = sorted(tmp_path.glob("*.dcm"))
    assert len(files) == 2
    vols = [dicom.read_dicom(f) for f in files]
    assert [v.index for v in vols] == [1, 2]
    assert vols[0].data.shape == (74, 74, 36)
    assert np.allclose(vols[0].affine, make_phantom(3.0, supersample=1).affine, atol=1e-3)


def test_target_by_mni_point_is_the_nearest_labelled_roi():
    from sim.fmri.simulator import resolve_target

    assert resolve_target("mni:-21,-5,-16") == "amygdala_l"  # amygdala_mdd.yaml's 7 mm sphere
    assert resolve_target("mni:21,-5,-16") == "amygdala_r"
    assert resolve_target("acc") == "acc" and resolve_target("dmn-cen") == "dmn-cen"
    for bad in ("mni:1,2", "mni:a,b,c", "mni:"):
        with pytest.raises(ValueError, match="mni:X,Y,Z"):
            resolve_target(bad)
