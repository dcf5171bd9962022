"""The fMRI section of the session report, from synthetic fMRI session folders with known numbers.

The folders are made the way a session makes them (SessionFolder with the protocol copy, the real
Journal on an EventBus) and hold exactly the events the volume pipeline publishes (volume, input,
feature, feedback, block events, session_start's fmri part), plus a simulator truth TSV written in
sim/fmri/simulator.py's format. Every number of the section is checked against a computation
made here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from controller.events import (
    BLOCK_END,
    BLOCK_START,
    FEATURE,
    FEEDBACK,
    INPUT,
    SESSION_END,
    SESSION_START,
    VOLUME,
    Event,
    EventBus,
)
from controller.fmri.hrf import canonical_hrf
from controller.fmri.motion import RigidMotion
from controller.recording.journal import Journal
from controller.recording.session import SessionFolder
from controller.report import build_report
from controller.report.build import fmri_part
from controller.report.data import load_session
from controller.report.fmri import collect, read_truth
from controller.report.protocol_copy import load_session_protocol
from sim.fmri.motion import rigid_matrix

T0 = 2000.0
TR = 2.0
SKIP = 3
BLOCK_TR = 8  # volumes per block
LABELS = ["rest", "happy", "rest", "happy", "rest"]
N = BLOCK_TR * len(LABELS)  # counted volumes 0..N-1, acquisition numbers SKIP+1 .. SKIP+N
MISSING = 20  # acquisition number never processed
LATE = 25  # processed after LATE + 1
FD = 0.1 + 0.6 * (np.arange(N) % 7 == 3)  # 6 volumes over 0.5 mm
PROTOCOL = """\
protocol: amygdala-test
description: synthetic fMRI session for the report
inputs:
  fmri:
    volumes: {folder: scanner_export, pattern: "*.nii"}
    tr: 2 s
    skip: 3 TR
    reference: first
rois:
  amy: {sphere: {center: [-21, -5, -16], radius: 7 mm}, space: mni}
  ctl: {sphere: {center: [30, 10, 40], radius: 7 mm}, space: mni}
features:
  amy_psc: {roi_psc: {input: fmri, roi: amy, baseline: rest}}
  amy_mean: {roi_mean: {input: fmri, roi: amy}}
timeline:
  - {rest: 16 s}
  - repeat: 2
    blocks: [{happy: 16 s}, {rest: 16 s}]
feedback: {value: amy_psc, range: [0 %, 2 %], during: happy}
"""


def truth_params(index: np.ndarray) -> np.ndarray:
    """The head's true motion relative to volume 1 (zero there), as the simulator writes it."""
    k = index.astype(float) - 1.0
    return np.column_stack([0.02 * k, -0.01 * k, 0.3 * np.sin(0.2 * k), 0.01 * k, 0.05 * np.cos(0.3 * k) - 0.05,
                            -0.004 * k])


def design(tr: float = TR) -> np.ndarray:
    box = np.repeat([lab == "happy" for lab in LABELS], BLOCK_TR).astype(float)
    return np.convolve(box, canonical_hrf(tr))[:N]


def expected_estimates(index: np.ndarray, ref: int) -> np.ndarray:
    """What realignment to volume ``ref`` should estimate, from sim/fmri/motion.py's own matrices."""
    params = truth_params(np.arange(1, index.max() + 1))
    inv_ref = np.linalg.inv(rigid_matrix(params[ref - 1]))
    return np.array([RigidMotion.from_matrix(rigid_matrix(params[i - 1]) @ inv_ref).params6() for i in index])


ERROR = np.array([0.01, -0.02, 0.03, 0.004, -0.005, 0.006])  # added to every estimate, sign by volume


class FakeFmriSession:
    """Emits the events the fMRI volume pipeline publishes, with known numbers."""

    def __init__(self, folder: SessionFolder, truth: bool = True, delivery_known: bool = True) -> None:
        self.folder = folder
        self.bus = EventBus()
        self.journal = Journal(folder.journal_path)
        self.journal.start(self.bus)
        self.index = np.arange(SKIP + 1, SKIP + N + 1)
        self.processed = self.index[self.index != MISSING]
        self.signs = np.where(self.processed % 2 == 0, 1.0, -1.0)
        self.motion = expected_estimates(self.processed, SKIP + 1) + self.signs[:, None] * ERROR
        self.timing = {
            "read": 3.0 + (self.processed % 2), "realign": 12.0 + 0.1 * (self.processed - SKIP),
            "roi": np.full(self.processed.size, 0.4), "glm": np.full(self.processed.size, 0.3),
            "features": np.full(self.processed.size, 0.1),
        }
        self.pipeline = self.timing["read"] + self.timing["realign"] + 0.8 + 1.5  # 1.5 ms outside the stages
        # LSL: the scanner sends a volume once it is complete, about a TR after its acquisition stamp
        self.delivery = 1000.0 * TR + 5.0 * np.sin(self.processed) if delivery_known else None
        self.total = self.pipeline + (self.delivery if delivery_known else 0.0)
        reg = design()
        counted = self.processed - SKIP - 1
        self.mean = 600.0 + 5.0 * reg[counted]  # amy_mean: exactly the design (r = 1)
        self.psc = np.where(np.array([LABELS[c // BLOCK_TR] for c in counted]) == "happy",
                            0.5 + 0.1 * np.cos(counted), np.nan)  # amy_psc only in feedback blocks
        self.ctl = 400.0 + np.sin(1.3 * counted)
        if truth:
            self.write_truth()

    def write_truth(self) -> None:
        scanner = self.folder.path / "scanner"
        scanner.mkdir()
        idx = np.arange(1, SKIP + N + 1)
        params = truth_params(idx)
        cols = ["index", "t_s", "tx", "ty", "tz", "rx", "ry", "rz", "fd", "effort", "label", "lsl_time"]
        lines = ["\t".join(cols)]
        for i, p in zip(idx, params, strict=True):
            lines.append("\t".join([str(i), f"{(i - 1) * TR:g}", *(repr(float(x)) for x in p), "0.1", "0",
                                    "rest", f"{T0 + i * TR:.6f}"]))
        (scanner / "sim_truth.tsv").write_text("\n".join(lines) + "\n")

    def emit(self, kind: str, t: float, t_source: float | None, data: dict) -> None:
        self.bus.publish(Event(kind, t, t_source, data))

    def volume(self, k: int) -> None:
        i = int(self.processed[k])
        acq = T0 + (i - 1) * TR
        c = i - SKIP - 1
        t_out = acq + self.total[k] / 1e3
        known = self.delivery is not None
        timing = {**{s: float(v[k]) for s, v in self.timing.items()},
                  "acquisition_to_arrival": float(self.delivery[k]) if known else None,
                  "arrival_to_feedback": float(self.pipeline[k]), "total": float(self.total[k]) if known else None}
        label = LABELS[c // BLOCK_TR]
        self.emit(FEATURE, t_out, acq, {"name": "amy_mean", "value": float(self.mean[k]), "sample_index": i})
        if np.isfinite(self.psc[k]):
            self.emit(FEATURE, t_out, acq, {"name": "amy_psc", "value": float(self.psc[k]), "sample_index": i})
            self.emit(FEEDBACK, t_out, acq, {"value": float(self.psc[k]) / 2, "raw": float(self.psc[k]),
                                             "latency_s": self.total[k] / 1e3})
        self.emit(VOLUME, t_out, acq, {
            "input": "fmri", "index": i, "counted": c, "block": label,
            "motion": [float(x) for x in self.motion[k]], "fd_mm": float(FD[c]),
            "rois": {"amy": {"raw": float(self.mean[k]) + 3.0, "detrended": float(self.mean[k])},
                     "ctl": {"raw": float(self.ctl[k]), "detrended": float(self.ctl[k]) - 1.0}},
            "timing_ms": timing,
            "acquisition_time": "known (LSL timestamp)" if known else "unknown (a folder file does not say)",
            "acquired": acq, "arrived": acq + self.timing["read"][k] / 1e3, "source": f"vol_{i:05d}.nii"})

    def run(self, start_fmri: dict | None = None) -> None:
        fmri = start_fmri if start_fmri is not None else {
            "inputs": {"fmri": {"tr_s": TR, "skip": SKIP, "shape": [74, 74, 36], "source": {"where": "scanner"}}},
            "run": "nf1"}
        self.emit(SESSION_START, T0 - 10, None, {"protocol": "amygdala-test", "feedback_feature": "amy_psc",
                                                  "fmri": fmri})
        for i in range(1, SKIP + 1):
            self.emit(VOLUME, T0 + (i - 1) * TR + 0.01, T0 + (i - 1) * TR,
                      {"input": "fmri", "index": i, "counted": i - SKIP - 1, "block": None, "dummy": True})
        order = list(range(self.processed.size))
        late = int(np.flatnonzero(self.processed == LATE)[0])
        order[late], order[late + 1] = order[late + 1], order[late]
        block = -1
        for k in order:
            c = int(self.processed[k]) - SKIP - 1
            b = c // BLOCK_TR
            acq = T0 + (self.processed[k] - 1) * TR
            if b != block:
                if block >= 0:
                    self.emit(BLOCK_END, acq, None, {"index": block, "label": LABELS[block], "cycle": None})
                block = b
                self.emit(BLOCK_START, acq, None, {"index": b, "label": LABELS[b], "cycle": None})
            if self.processed[k] == MISSING + 1:
                self.emit(INPUT, acq + 0.5, None, {"input": "fmri", "status": "missing",
                                                   "detail": f"volume {MISSING} never arrived"})
            self.volume(k)
            if self.processed[k] == LATE:
                self.emit(INPUT, acq + 0.5, None, {"input": "fmri", "status": "out_of_order",
                                                   "detail": f"volume {LATE} after {LATE + 1}"})
        t_end = T0 + (SKIP + N) * TR
        self.emit(BLOCK_END, t_end, None, {"index": block, "label": LABELS[block], "cycle": None})
        self.emit(SESSION_END, t_end + 1, None, {"status": "completed", "summary": {}})
        self.journal.stop()
        assert self.journal.dropped == 0


def _folder(tmp_path: Path, protocol_text: str = PROTOCOL, name: str = "amygdala-test") -> SessionFolder:
    protocol = tmp_path / f"{name}.yaml"
    protocol.write_text(protocol_text)
    return SessionFolder.create(tmp_path / "sessions", protocol, name=name)


def _summary(folder: SessionFolder) -> dict:
    return json.loads((folder.report_dir / "summary.json").read_text())


def _check_png(path: Path) -> None:
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
    assert float(img[..., :3].std()) > 0.01


def _stats(v: np.ndarray) -> dict:
    return {"n": v.size, "mean": pytest.approx(v.mean(), rel=1e-12), "median": pytest.approx(np.median(v), rel=1e-12),
            "p99": pytest.approx(np.percentile(v, 99), rel=1e-12), "max": pytest.approx(v.max(), rel=1e-12)}


def _fmri_summary(folder: SessionFolder) -> dict:
    data = load_session(folder.path)
    protocol, problem = load_session_protocol(folder.path, data.manifest)
    assert problem is None
    _, part = fmri_part(data, protocol)
    return part


# ----------------------------------------------------------------------------- tests


def test_fmri_numbers_figures_and_section(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    fake = FakeFmriSession(folder)
    fake.run()
    report = build_report(folder.path)
    s = _summary(folder)
    f = s["fmri"]
    assert (f["input"], f["run"], f["tr_s"], f["skip"], f["shape"]) == ("fmri", "nf1", TR, SKIP, [74, 74, 36])
    assert f["volumes"] == {"processed": N - 1, "dummies": SKIP, "first_index": SKIP + 1, "last_index": SKIP + N,
                            "index_gaps": 1, "missing": 1, "missing_indices": [MISSING], "out_of_order": 1,
                            "duplicate": 0, "reference_index": SKIP + 1, "joined": None,
                            "existing_files": None}
    assert [i["detail"] for i in f["input_issues"]["missing"]] == [f"volume {MISSING} never arrived"]

    fd = np.delete(FD, MISSING - SKIP - 1)
    assert f["fd_mm"] == {**_stats(fd), "limit_mm": 0.5, "over_limit": int((fd > 0.5).sum())}
    assert f["fd_mm"]["over_limit"] == 6
    assert f["max_abs_translation_mm"] == pytest.approx(np.abs(fake.motion[:, :3]).max(), rel=1e-12)
    assert f["max_abs_rotation_deg"] == pytest.approx(np.abs(fake.motion[:, 3:]).max(), rel=1e-12)

    t = f["timing_ms"]
    assert list(t) == ["read", "realign", "roi", "glm", "features", "other", "arrival_to_feedback",
                       "acquisition_to_arrival", "total"]
    for stage in ("read", "realign", "roi", "glm", "features"):
        assert t[stage] == _stats(fake.timing[stage]), stage
    assert t["arrival_to_feedback"] == _stats(fake.pipeline)
    assert t["acquisition_to_arrival"] == _stats(fake.delivery)
    assert t["total"] == _stats(fake.total)
    assert t["other"]["median"] == pytest.approx(1.5) and t["other"]["max"] == pytest.approx(1.5)
    assert f["acquisition_time"] == "known (LSL timestamp)"
    # the TR budget is the pipeline's: a TR of delivery before it is not counted against it
    assert f["tr_fraction"] == pytest.approx(np.median(fake.pipeline) / 2000.0, rel=1e-12)
    assert f["tr_fraction"] < 0.02 and f["pipeline_over_tr"] == 0
    assert f["acquired_tr_s"] == pytest.approx(TR, rel=1e-12)
    assert f["acquired_tr_fraction"] == pytest.approx(f["tr_fraction"], rel=1e-9)

    assert f["design"]["on_labels"] == ["happy"]
    assert "feedback" in f["design"]["from"]
    reg = design()[fake.processed - SKIP - 1]
    assert f["features"]["amy_mean"]["r"] == pytest.approx(1.0, abs=1e-12)
    assert f["features"]["amy_mean"]["n"] == N - 1
    ok = np.isfinite(fake.psc)
    assert f["features"]["amy_psc"]["n"] == int(ok.sum())
    assert f["features"]["amy_psc"]["r"] == pytest.approx(np.corrcoef(fake.psc[ok], reg[ok])[0, 1], rel=1e-9)
    assert f["rois"]["ctl"]["raw"]["r"] == pytest.approx(np.corrcoef(fake.ctl, reg)[0, 1], rel=1e-9)
    assert f["rois"]["amy"]["detrended"]["r"] == pytest.approx(1.0, abs=1e-12)

    acc = f["motion_accuracy"]
    assert acc["truth_file"] == "scanner/sim_truth.tsv" and acc["reference_index"] == SKIP + 1 and acc["n"] == N - 1
    assert acc["translation_mm"]["mean_abs"] == pytest.approx(np.abs(ERROR[:3]).mean(), abs=1e-9)
    assert acc["translation_mm"]["max_abs"] == pytest.approx(0.03, abs=1e-9)
    assert acc["rotation_deg"]["mean_abs"] == pytest.approx(np.abs(ERROR[3:]).mean(), abs=1e-9)
    assert acc["rotation_deg"]["max_abs"] == pytest.approx(0.006, abs=1e-9)
    assert acc["per_axis_max_abs"]["ty"] == pytest.approx(0.02, abs=1e-9)
    assert f["problems"] == []

    assert {"fmri_motion", "fmri_timing", "fmri_series", "fmri_pipeline"} <= set(s["figures"])
    for key in ("fmri_motion", "fmri_timing", "fmri_series", "fmri_pipeline"):
        _check_png(folder.report_dir / s["figures"][key])
    html = report.read_text()
    assert "<h2>fMRI</h2>" in html
    for key in ("fmri_motion", "fmri_timing", "fmri_series", "fmri_pipeline"):
        assert html.count(f"<figure id='{key}'>") == 1  # in the section only, not among the general figures
    assert "volume 20 never arrived" in html and "Realignment vs the simulator's truth" in html
    assert html.index("<h2>fMRI</h2>") < html.index("<h2>Blocks</h2>")


def test_timing_stages_apart_with_delivery_known_and_unknown(tmp_path: Path) -> None:
    """The section states the budget about the pipeline and shows delivery and total apart; a source that does
    not know the acquisition time (a folder) has them 'unknown', not zero."""
    folder = _folder(tmp_path)
    fake = FakeFmriSession(folder)
    fake.run()
    html = build_report(folder.path).read_text()
    med = np.median(fake.pipeline)
    assert f"The pipeline (arrival → feedback) took a median <b>{med:.1f} ms</b>" in html
    assert f"<b>{med / 2000.0:.2%}</b> of the TR budget" in html
    assert f"Delivery (acquisition → arrival; acquisition time known (LSL timestamp)): median " \
           f"{np.median(fake.delivery):.1f} ms" in html
    assert f"Total (acquisition → feedback, their sum): median {np.median(fake.total):.1f} ms" in html

    folder2 = _folder(tmp_path, name="folder-source")
    fake2 = FakeFmriSession(folder2, delivery_known=False)
    fake2.run()
    f = _fmri_summary(folder2)
    t = f["timing_ms"]
    assert t["acquisition_to_arrival"]["n"] == 0 and t["acquisition_to_arrival"]["median"] is None
    assert t["total"]["n"] == 0 and t["arrival_to_feedback"] == _stats(fake2.pipeline)
    assert f["acquisition_time"].startswith("unknown")
    html2 = build_report(folder2.path).read_text()
    assert "Delivery (acquisition → arrival): <b>unknown</b>" in html2 and "the total is unknown too" in html2
    _check_png(folder2.report_dir / _summary(folder2)["figures"]["fmri_timing"])


def test_an_older_journal_without_the_split_is_said(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    fake = FakeFmriSession(folder)
    real_emit = fake.emit

    def old_style(kind: str, t: float, t_source: float | None, data: dict) -> None:
        if kind == VOLUME and "timing_ms" in data:
            tm = dict(data["timing_ms"])
            data = {**data, "timing_ms": {**{k: tm[k] for k in fake.timing}, "total": tm["total"]}}
            data.pop("acquisition_time")
        real_emit(kind, t, t_source, data)

    fake.emit = old_style  # type: ignore[method-assign]
    fake.run()
    f = _fmri_summary(folder)
    assert any("predates the split" in p for p in f["problems"])
    assert f["tr_fraction"] is None and f["timing_ms"]["total"] == _stats(fake.total)


def test_motion_accuracy_uses_the_reference_volume(tmp_path: Path) -> None:
    """Compared with the truth as written (relative to volume 1), the same estimates would be far off."""
    folder = _folder(tmp_path)
    fake = FakeFmriSession(folder)
    fake.run()
    acc = _fmri_summary(folder)["motion_accuracy"]
    naive = np.abs(fake.motion - truth_params(fake.processed))
    assert naive[:, :3].max() > 5 * acc["translation_mm"]["max_abs"]
    assert acc["translation_mm"]["max_abs"] == pytest.approx(0.03, abs=1e-9)


def test_without_truth_protocol_or_start_data(tmp_path: Path) -> None:
    """No truth file: no accuracy; no protocol copy and no session_start fmri part: TR from the acquisition
    times, 'on' = non-baseline labels, the fMRI features found by their source times."""
    folder = _folder(tmp_path, "protocol: amygdala-test\n")  # the copy does not compile: no protocol
    fake = FakeFmriSession(folder, truth=False)
    fake.run(start_fmri={})
    data = load_session(folder.path)
    protocol, problem = load_session_protocol(folder.path, data.manifest)
    assert protocol is None and problem
    _, f = fmri_part(data, protocol)
    assert f["motion_accuracy"] is None
    assert f["tr_s"] == pytest.approx(TR) and f["skip"] is None and f["run"] is None
    assert any("TR not in session_start" in p for p in f["problems"])
    assert f["design"]["on_labels"] == ["happy"] and "baselines" in f["design"]["from"]
    assert sorted(f["features"]) == ["amy_mean", "amy_psc"]
    # the missing volume (first of a rest block) takes the label of the volume before it (happy)
    box = np.repeat([lab == "happy" for lab in LABELS], BLOCK_TR).astype(float)
    box[MISSING - SKIP - 1] = 1.0
    reg = np.convolve(box, canonical_hrf(TR))[:N][fake.processed - SKIP - 1]
    assert f["features"]["amy_mean"]["r"] == pytest.approx(np.corrcoef(fake.mean, reg)[0, 1], rel=1e-9)
    assert f["features"]["amy_mean"]["r"] < 0.99
    report = build_report(folder.path)
    assert "<h2>fMRI</h2>" in report.read_text()
    assert _summary(folder)["fmri"]["motion_accuracy"] is None


def test_template_reference_and_a_bad_truth_file_are_said(tmp_path: Path) -> None:
    folder = _folder(tmp_path, PROTOCOL.replace("reference: first", "reference: template.nii"))
    (folder.path / "template.nii").write_bytes(b"")  # the protocol copy names it; the report never reads it
    FakeFmriSession(folder).run()
    acc = _fmri_summary(folder)["motion_accuracy"]
    assert "template" in acc["error"]

    folder2 = _folder(tmp_path, name="other")
    (folder2.path / "scanner").mkdir()
    (folder2.path / "scanner" / "sim_truth.tsv").write_text("index\ttx\n1\t0\n")
    FakeFmriSession(folder2, truth=False).run()
    data = load_session(folder2.path)
    fm = collect(data, None)
    assert fm.truth is None
    assert any("lacks column(s) ty, tz, rx, ry, rz" in p and "sim_truth.tsv:1" in p for p in fm.problems)


def test_truth_reader_reads_the_simulator_format(tmp_path: Path) -> None:
    """read_truth parses what sim/fmri/simulator.py's TruthWriter writes (its real columns)."""
    from sim.fmri.simulator import MOTION_COLUMNS, STATE_COLUMNS, SimVolume, TruthWriter

    path = tmp_path / "sim_truth.tsv"
    w = TruthWriter(path)
    for k in (1, 2):
        truth = {c: 0.0 for c in STATE_COLUMNS} | {"index": float(k), "tx": 0.5 * k, "rz": -0.25 * k}
        w.write(SimVolume(k, np.zeros((2, 2, 2), np.float32), "rest", truth), T0 + k)
    w.close()
    t = read_truth(path)
    assert t["index"].tolist() == [1.0, 2.0] and t["tx"].tolist() == [0.5, 1.0] and t["rz"].tolist() == [-0.25, -0.5]
    assert set(MOTION_COLUMNS) <= set(t)


def test_eeg_session_has_no_fmri_section(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "protocol: nf\n", "nf")
    bus = EventBus()
    journal = Journal(folder.journal_path)
    journal.start(bus)
    bus.publish(Event(SESSION_START, T0, None, {"protocol": "nf", "timeline": [], "feedback_feature": "tbr"}))
    for k in range(5):
        bus.publish(Event(FEATURE, T0 + k, T0 + k - 0.01, {"name": "tbr", "value": 1.0 + k, "sample_index": k}))
    bus.publish(Event(SESSION_END, T0 + 6, None, {"status": "completed"}))
    journal.stop()
    report = build_report(folder.path)
    s = _summary(folder)
    assert s["fmri"] is None
    assert not any(k.startswith("fmri") for k in s["figures"])
    assert "fMRI" not in report.read_text()


def test_a_failing_fmri_part_is_reported_and_the_rest_is_built(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _folder(tmp_path)
    FakeFmriSession(folder).run()
    from controller.report import fmri

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(fmri, "summary", broken)
    report = build_report(folder.path)
    s = _summary(folder)
    assert "boom" in s["fmri"]["error"]
    assert not any(k.startswith("fmri") for k in s["figures"])
    assert "the fMRI part of the report failed" in report.read_text()
    assert "features" in s["figures"]  # the general figures are still there
