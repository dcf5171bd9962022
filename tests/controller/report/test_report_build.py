"""The session report, built from a fake session journaled through the real Journal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from controller.events import (
    BLOCK_END,
    BLOCK_START,
    DECISION,
    FEATURE,
    FEEDBACK,
    INPUT,
    SESSION_END,
    SESSION_START,
    STATE,
    THRESHOLD,
    Event,
    EventBus,
)
from controller.recording.journal import Journal
from controller.recording.session import SessionFolder
from controller.report import build_report
from controller.report.__main__ import main as report_main
from controller.report.data import load_session
from controller.report.xdf_summary import summarize_xdf

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
CITATION = "PhysioNet eegmat 1.0.0, subject 00 (ODC-By 1.0)"
T0 = 5000.0
STEP = 0.5  # feature update interval (s)
TRAIN_S, REST_S, BASELINE_S = 20.0, 5.0, 10.0
REWARDS_PER_TRAIN = [10, 20, 30]  # of 40 updates per train block
TRAIN_MEANS = [2.8, 2.6, 2.4]  # the simulated participant learns


class FakeSession:
    """Emits exactly the event data the engine contract promises, with known numbers."""

    def __init__(self, bus: EventBus, protocol_sha256: str) -> None:
        self.bus = bus
        self.protocol_sha256 = protocol_sha256
        self.latencies_ms: list[float] = []
        self.t = T0

    def emit(self, kind: str, data: dict, t_source: float | None = None, t: float | None = None) -> None:
        self.bus.publish(Event(kind, self.t if t is None else t, t_source, data))

    def run(self) -> None:
        timeline = [{"index": 0, "label": "baseline", "duration_s": BASELINE_S, "cycle": None}]
        for c in range(3):
            timeline += [
                {"index": 1 + 2 * c, "label": "train", "duration_s": TRAIN_S, "cycle": c},
                {"index": 2 + 2 * c, "label": "rest", "duration_s": REST_S, "cycle": c},
            ]
        self.emit(SESSION_START, {"protocol": "tbr-fake", "protocol_sha256": self.protocol_sha256, "timeline": timeline,
                                  "feedback_feature": "tbr"})
        self.emit(STATE, {"state": "running", "reason": None})
        self.emit(INPUT, {"input": "eeg", "status": "connected", "detail": "fake amp"})
        train_no = 0
        for block in timeline:
            d = {"index": block["index"], "label": block["label"], "cycle": block["cycle"]}
            self.emit(BLOCK_START, d)
            n = round(block["duration_s"] / STEP)
            start = self.t
            if block["label"] == "train":
                mean, rewards = TRAIN_MEANS[train_no], REWARDS_PER_TRAIN[train_no]
            else:
                mean, rewards = 3.0, 0
            for i in range(n):
                self.t = start + (i + 1) * STEP
                src = self.t - 0.004
                value = mean + 0.1 * np.sin(i)  # sums to ~0 over the block: mean ~ `mean`
                self.emit(FEATURE, {"name": "tbr", "value": float(value), "sample_index": int(src * 250)}, src)
                self.emit(FEATURE, {"name": "emg", "value": 1.0 + 0.01 * i, "sample_index": int(src * 250)}, src)
                if block["label"] == "train":
                    lat = 1.0 + 0.25 * (i % 8)  # ms
                    self.latencies_ms.append(lat)
                    self.emit(FEEDBACK, {"value": 0.5, "raw": float(value), "latency_s": lat / 1e3}, src,
                              t=src + lat / 1e3)
                    if i < rewards:
                        lat = 2.0 + 0.5 * (i % 4)
                        self.latencies_ms.append(lat)
                        self.emit(DECISION, {"rule": 0, "action": "reward", "block": "train", "latency_s": lat / 1e3,
                                             "condition": "tbr < goal for 500 ms and emg < emg_max"},
                                  src, t=src + lat / 1e3)
                    if train_no == 1 and i == 5:
                        self.emit(DECISION, {"rule": 1, "action": "note", "block": "train", "latency_s": 0.003,
                                             "condition": "emg > emg_max"}, src, t=src + 0.003)
                        self.latencies_ms.append(3.0)
                    if train_no == 1 and i == 10:
                        self.emit(STATE, {"state": "inhibited", "reason": "artifact: emg"})
                    if train_no == 1 and i == 14:
                        self.emit(STATE, {"state": "running", "reason": None})
                    if train_no == 2 and i == 3:
                        self.emit(INPUT, {"input": "eeg", "status": "stalled", "detail": "no samples for 1 s"})
                    if train_no == 2 and i == 6:
                        self.emit(INPUT, {"input": "eeg", "status": "resumed", "detail": ""})
                    if i == 20:
                        self.emit(THRESHOLD, {"name": "goal", "value": mean - 0.05 * train_no, "reason": "adapt",
                                              "reward_rate": 0.5})
            if block["label"] == "baseline":
                self.emit(THRESHOLD, {"name": "goal", "value": 2.9, "reason": "percentile", "reward_rate": None})
                self.emit(THRESHOLD, {"name": "emg_max", "value": 1.2, "reason": "percentile", "reward_rate": None})
            if block["label"] == "train":
                train_no += 1
            self.emit(BLOCK_END, d)
        self.emit(STATE, {"state": "stopped", "reason": "timeline finished"})
        self.emit(SESSION_END, {"status": "completed", "summary": {"rewards": sum(REWARDS_PER_TRAIN)}})


@pytest.fixture
def session(tmp_path: Path) -> tuple[SessionFolder, FakeSession]:
    protocol = tmp_path / "tbr-fake.yaml"
    protocol.write_text("protocol: tbr-fake\n")
    folder = SessionFolder.create(tmp_path / "sessions", protocol, name="tbr-fake", source={"citation": CITATION})
    bus = EventBus()
    journal = Journal(folder.journal_path)
    journal.start(bus)
    fake = FakeSession(bus, folder.manifest()["protocol"]["sha256"])
    fake.run()
    journal.stop()
    assert journal.dropped == 0
    folder.finish("completed", {"rewards": sum(REWARDS_PER_TRAIN)})
    return folder, fake


def _check_png(path: Path) -> None:
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
    assert float(img[..., :3].std()) > 0.01  # not blank


def test_report_files_numbers_and_figures(session: tuple[SessionFolder, FakeSession]) -> None:
    folder, fake = session
    report = build_report(folder.path)
    assert report == folder.report_dir / "report.html"
    summary = json.loads((folder.report_dir / "summary.json").read_text())

    assert summary["protocol"] == "tbr-fake" and summary["session_id"] == folder.session_id
    assert summary["status"] == "completed"
    assert summary["feedback_feature"] == "tbr"
    blocks = summary["blocks"]
    assert [b["label"] for b in blocks] == ["baseline"] + ["train", "rest"] * 3
    assert [b["n_rewards"] for b in blocks] == [0, 10, 0, 20, 0, 30, 0]
    assert [b["n_feature_updates"] for b in blocks] == [20, 40, 10, 40, 10, 40, 10]
    assert [b["n_decisions"] for b in blocks] == [0, 10, 0, 21, 0, 30, 0]
    assert summary["feedback_blocks"] == [1, 3, 5]
    rates = [b["reward_rate"] for b in blocks if b["label"] == "train"]
    assert rates == pytest.approx([10 / 40, 20 / 40, 30 / 40])
    assert summary["totals"]["rewards"] == 60

    curve = summary["learning_curve"]
    assert curve["block_index"] == [1, 3, 5]
    expected_means = [m + 0.1 * np.mean(np.sin(np.arange(40))) for m in TRAIN_MEANS]
    assert curve["mean"] == pytest.approx(expected_means)
    assert curve["slope_per_block"] == pytest.approx(-0.2)

    lat = summary["latency_ms"]
    assert lat["n"] == len(fake.latencies_ms)
    assert lat["median"] == pytest.approx(np.median(fake.latencies_ms))
    assert lat["max"] == pytest.approx(max(fake.latencies_ms))
    assert lat["p99"] == pytest.approx(np.percentile(fake.latencies_ms, 99))

    q = summary["signal_quality"]
    assert q["inhibited_s"] == pytest.approx(4 * STEP)  # from update 10 to update 14
    assert q["inhibited_fraction"] == pytest.approx(4 * STEP / q["active_s"])
    assert q["inputs"]["eeg"]["stalls"] == 1
    assert q["inputs"]["eeg"]["stalled_s"] == pytest.approx(3 * STEP)

    th = summary["thresholds"]
    assert th["goal"]["feature"] == "tbr" and th["emg_max"]["feature"] == "emg"
    assert th["goal"]["n_updates"] == 4 and th["goal"]["initial"] == 2.9
    assert th["goal"]["reasons"] == ["adapt", "percentile"]

    assert summary["citation"] == CITATION
    assert summary["journal"]["problems"] == []
    assert "error" in summary["xdf"]  # this fake session has no recording
    assert set(summary["figures"]) == {"features", "reward_rate", "learning_curve", "latency", "signal_quality"}
    for name in summary["figures"].values():
        _check_png(folder.report_dir / name)

    text = report.read_text()
    assert text.count("data:image/png;base64,") == 5
    assert "tbr-fake" in text and folder.session_id in text and CITATION in text


def test_rebuild_after_a_crash_mid_line_and_with_a_real_xdf(session: tuple[SessionFolder, FakeSession]) -> None:
    folder, _ = session
    lines = folder.journal_path.read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if '"kind":"block_start"' in line and '"index":5' in line)
    # the session "crashed" in block 5, in the middle of writing a line
    folder.journal_path.write_text("".join(lines[: cut + 30]) + lines[cut + 30][:25])
    has_xdf = (DATA / "xdf" / "minimal.xdf").is_file()  # a real LabRecorder-format file
    if has_xdf:
        shutil.copyfile(DATA / "xdf" / "minimal.xdf", folder.xdf_path)
    report = build_report(folder.path)
    summary = json.loads((folder.report_dir / "summary.json").read_text())
    problems = " ".join(summary["journal"]["problems"])
    assert "truncated last line" in problems and "no session_end" in problems
    assert summary["status"] == "completed"  # from the manifest (finish() ran in the fixture)
    assert summary["blocks"][-1]["index"] == 5 and summary["blocks"][-1]["ended"] is False
    for name in summary["figures"].values():
        _check_png(folder.report_dir / name)
    if not has_xdf:
        pytest.skip(f"shared data folder {DATA} is absent: XDF part not checked")
    assert [s["n_samples"] for s in summary["xdf"]] == [9, 9]
    assert {s["name"] for s in summary["xdf"]} == {"SendDataC", "SendDataString"}
    assert "SendDataC" in report.read_text()


def test_sparse_journal_still_gives_a_report(tmp_path: Path) -> None:
    """No manifest, no thresholds, a NaN feature, a block that never ended, no latency data."""
    session = tmp_path / "s"
    session.mkdir()
    bus = EventBus()
    with Journal(session / "journal.jsonl") as journal:
        journal.start(bus)
        bus.publish(Event(SESSION_START, 10.0, None, {"protocol": "p", "protocol_sha256": "x", "timeline": [],
                                                      "feedback_feature": None}))
        bus.publish(Event(BLOCK_START, 10.0, None, {"index": 0, "label": "train", "cycle": None}))
        for i, v in enumerate([1.0, float("nan"), 3.0]):
            bus.publish(Event(FEATURE, 11.0 + i, 10.9 + i, {"name": "lin", "value": v, "sample_index": i}))
    report = build_report(session)
    summary = json.loads((session / "report" / "summary.json").read_text())
    assert summary["feedback_feature"] == "lin"
    (block,) = summary["blocks"]
    assert block["n_feature_updates"] == 3 and block["feature_n_nonfinite"] == 1
    assert block["feature_mean"] == pytest.approx(2.0) and block["reward_rate"] == 0.0
    assert block["ended"] is False
    assert summary["latency_ms"]["median"] is None
    assert summary["learning_curve"]["slope_per_block"] is None
    assert summary["signal_quality"]["available"] is False
    assert set(summary["figures"]) == {"features", "reward_rate", "learning_curve"}
    assert any("manifest.json is missing" in p for p in summary["journal"]["problems"])
    assert "NaN" not in (session / "report" / "summary.json").read_text()  # strict JSON
    assert report.is_file()


def test_report_cli_and_missing_journal(session: tuple[SessionFolder, FakeSession], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = session
    assert report_main([str(folder.path)]) == 0
    assert (folder.report_dir / "report.html").is_file()
    empty = tmp_path / "empty-session"
    empty.mkdir()
    assert report_main([str(empty)]) == 1
    assert "has no journal.jsonl" in capsys.readouterr().err


@pytest.mark.skipif(not DATA.is_dir(), reason="shared data folder ../shared/data is absent")
def test_xdf_summary_of_reference_file_with_empty_streams() -> None:
    rows = {r["name"]: r for r in summarize_xdf(DATA / "xdf" / "empty_streams.xdf")}
    assert rows["ctrl"]["n_samples"] == 1
    assert rows["Empty marker stream: test stream 0 counter"]["n_samples"] == 0
    assert rows["Empty data stream: test stream 0 counter"]["n_samples"] == 0
    data_stream = rows["Data stream: test stream 0 counter"]
    assert data_stream["n_samples"] == 10 and data_stream["labels"] == ["ch:00"]
    assert data_stream["effective_srate"] == pytest.approx(1.0, rel=1e-4)


def test_protocol_hash_mismatch_is_reported(tmp_path: Path) -> None:
    protocol = tmp_path / "p.yaml"
    protocol.write_text("protocol: p\n")
    folder = SessionFolder.create(tmp_path, protocol)
    bus = EventBus()
    with Journal(folder.journal_path) as journal:
        journal.start(bus)
        FakeSession(bus, "ab" * 32).run()
    problems = load_session(folder.path).journal_problems
    assert len(problems) == 1 and "differs from the session's protocol copy" in problems[0]
