"""The console's review mode on a real session folder: a short simulated session run in-process
(simulator -> controller -> LabRecorder XDF + journal), then read back by ``SessionRecord`` and shown
by ``ReviewPage`` offscreen.

The record is checked against the files themselves (pyxdf on the XDF, ``read_journal`` on the journal);
the page is checked by what it shows after scrubbing (cursor, slider, the signal window's x range, the
curves drawn). Damaged folders (no XDF, a damaged XDF, a cut-off or broken journal, not a session) are
derived from the real one by copying it. A screenshot is saved under pytest's tmp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

os.environ["QT_QPA_PLATFORM"] = "offscreen"
pytest.importorskip("PySide6", reason="the gui extra is not installed: pip install -e '.[gui,test]'")
pytest.importorskip("pyqtgraph", reason="the gui extra is not installed: pip install -e '.[gui,test]'")
pyxdf = pytest.importorskip("pyxdf")
pytestmark = [pytest.mark.lsl, pytest.mark.slow]

from PySide6 import QtCore  # noqa: E402

from controller.console.review import EVENT_KINDS, ReviewError, SessionRecord  # noqa: E402
from controller.console.review_page import SLIDER_STEPS_PER_S, ReviewPage  # noqa: E402
from controller.display.qt import application  # noqa: E402
from controller.recording.journal import read_journal  # noqa: E402
from controller.session.runner import RunOptions, SimOptions, run_session  # noqa: E402

PROTOCOL = """
protocol: review-tbr
inputs:
  eeg:
    stream: {type: EEG}
    channels: [Cz, Fp1, Fp2]
    reference: average
    highpass: 0.5 Hz
features:
  tbr:   {band_ratio: {input: eeg, channels: [Cz], numerator: [4 Hz, 8 Hz], denominator: [13 Hz, 21 Hz], window: 2 s, every: 100 ms}}
  blink: {peak_to_peak: {input: eeg, channels: [Fp1, Fp2], band: [0.5 Hz, 4 Hz], window: 500 ms, every: 100 ms}}
thresholds:
  goal:      {percentile: {feature: tbr, during: baseline, q: 40}, adapt: {every: 3 s, target_reward_rate: 0.7}}
  blink_max: {fixed: 400 uV}
timeline: [{baseline: 5 s}, {repeat: 2, blocks: [{train: 6 s}, {rest: 2 s}]}]
rules:
  - during: train
    when: tbr < goal for 300 ms and blink < blink_max
    do: {feedback: reward}
feedback: {value: tbr, range: [4.0, 1.0], during: [train]}
"""
TIMELINE = [("baseline", 5.0), ("train", 6.0), ("rest", 2.0), ("train", 6.0), ("rest", 2.0)]


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("review-sessions")
    protocol = root / "review.yaml"
    protocol.write_text(PROTOCOL)
    opts = RunOptions(
        protocol_path=protocol, session_root=root, sim=SimOptions(channels=16, rate=250.0, chunk=5, seed=4),
        lsl_prefix=f"rv-{uuid.uuid4().hex[:6]}", progress=None, keyboard=False, build_report=False,
        participant="p09", operator="ana",
    )
    result = run_session(opts)
    assert result.status == "completed"
    return result.session_dir


@pytest.fixture(scope="module")
def record(session) -> SessionRecord:
    return SessionRecord.load(session)


@pytest.fixture(scope="module")
def app():
    return application()


def _journal_t0(session: Path) -> float:
    return next(e["t"] for e in read_journal(session / "journal.jsonl") if e["kind"] == "session_start")


def _at(e: dict) -> float:
    return e["t"] if e.get("t_source") is None else e["t_source"]


def _copy(session: Path, dest: Path, *, xdf: bool = True) -> Path:
    dest.mkdir()
    for p in session.iterdir():
        if p.is_file() and (xdf or p.name != "recording.xdf"):
            shutil.copy2(p, dest / p.name)
    return dest


# ------------------------------------------------------------------------------------------ the record


def test_identity_from_the_manifest_and_journal(record, session):
    ident = record.identity
    manifest = json.loads((session / "manifest.json").read_text())
    assert (ident.protocol, ident.participant, ident.operator) == ("review-tbr", "p09", "ana")
    assert ident.session_id == manifest["identity"]["session_id"] and ident.folder == session.name
    assert ident.start == manifest["start"]["iso"] and ident.status == "completed"
    assert "p09" in ident.text() and "ana" in ident.text() and "review-tbr" in ident.text()
    assert record.xdf_error is None and record.problems == []


def test_signals_are_the_xdf_samples_on_the_session_clock(record, session):
    streams, _ = pyxdf.load_xdf(str(session / "recording.xdf"), synchronize_clocks=True,
                                dejitter_timestamps=False)
    eeg = next(s for s in streams if s["info"]["type"][0] == "EEG")
    sig = record.signals["eeg"]
    assert sig.name == eeg["info"]["name"][0] and sig.srate == 250.0
    assert sig.data.shape == (len(eeg["time_stamps"]), 16)
    np.testing.assert_array_equal(sig.data, eeg["time_series"])
    t0 = _journal_t0(session)
    assert record.t0_lsl == t0
    np.testing.assert_allclose(sig.times + t0, eeg["time_stamps"], rtol=0, atol=1e-9)
    labels = [c["label"][0] for c in eeg["info"]["desc"][0]["channels"][0]["channel"]]
    assert sig.labels == labels
    assert sig.default_channels == ["Cz", "Fp1", "Fp2"]  # the protocol's picks, in its order
    np.testing.assert_array_equal(sig.channel("Cz"), eeg["time_series"][:, labels.index("Cz")])
    # the session's own streams are not inputs; its markers come from the recording
    assert set(record.signals) == {"eeg"}
    markers = next(s for s in streams if s["info"]["type"][0] == "Markers")
    assert record.markers.source == "xdf"
    order = np.argsort(markers["time_stamps"], kind="stable")  # in time order (stamped at source samples)
    assert record.markers.texts == [markers["time_series"][i][0] for i in order]
    np.testing.assert_allclose(record.markers.t + t0, np.asarray(markers["time_stamps"])[order], rtol=0, atol=1e-9)
    assert "block_start:baseline" in record.markers.texts and "reward" in record.markers.texts


def test_features_feedback_and_thresholds_from_the_journal(record, session):
    events = read_journal(session / "journal.jsonl")
    t0 = _journal_t0(session)
    tbr = [e for e in events if e["kind"] == "feature" and e["data"]["name"] == "tbr"]
    assert set(record.features) == {"tbr", "blink"} and record.feedback_feature == "tbr"
    np.testing.assert_allclose(record.features["tbr"].t, [_at(e) - t0 for e in tbr], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(record.features["tbr"].value, [e["data"]["value"] for e in tbr])
    fb = [e for e in events if e["kind"] == "feedback"]
    assert len(record.feedback) == len(fb) > 0
    np.testing.assert_array_equal(record.feedback.value, [e["data"]["value"] for e in fb])
    goal = [e["data"]["value"] for e in events if e["kind"] == "threshold" and e["data"]["name"] == "goal"]
    np.testing.assert_array_equal(record.thresholds["goal"].value, goal)
    assert record.threshold_features["goal"] == "tbr"


def test_events_are_the_journal_s_in_order_with_summaries(record, session):
    events = read_journal(session / "journal.jsonl")
    t0 = _journal_t0(session)
    expected = [(i + 1, e["kind"]) for i, e in enumerate(events) if e["kind"] in EVENT_KINDS]
    assert [(e.line, e.kind) for e in record.events] == expected
    for e in record.events:
        np.testing.assert_allclose(e.t, _at(events[e.line - 1]) - t0, rtol=0, atol=1e-9)
    kinds = [e.kind for e in record.events]
    assert kinds[0] == "session_open" and kinds[-1] == "session_end"
    assert "feature" not in kinds and "decision" not in kinds  # plotted, not listed
    texts = [e.text for e in record.events]
    assert texts[0] == "opened: review-tbr for p09 by ana"
    assert "blink_max = 0.0004 (fixed)" in texts
    assert any(t.startswith("goal = ") and "(adapt): comparison held" in t for t in texts)
    assert texts[-1] == "ended: completed"


def test_blocks_follow_the_protocol_timeline(record, session):
    assert [b.label for b in record.blocks] == [label for label, _ in TIMELINE]
    assert [b.index for b in record.blocks] == list(range(len(TIMELINE)))
    t0 = _journal_t0(session)
    starts = [_at(e) - t0 for e in read_journal(session / "journal.jsonl") if e["kind"] == "block_start"]
    np.testing.assert_allclose([b.start for b in record.blocks], starts, rtol=0, atol=1e-9)
    # block edges are placed at the source samples (the signal's clock): one chunk (20 ms) of slack
    np.testing.assert_allclose([b.end - b.start for b in record.blocks], [d for _, d in TIMELINE], atol=0.05)
    assert all(b.ended for b in record.blocks)
    assert record.block_at(record.blocks[1].start + 1.0).label == "train"
    assert record.block_at(-1.0) is None


def test_window_slices_every_series(record):
    train = record.blocks[1]
    t0, t1 = train.start + 1.0, train.start + 4.0
    w = record.window(t0, t1)
    sig, part = record.signals["eeg"], w.signals["eeg"]
    inside = (sig.times >= t0) & (sig.times <= t1)
    assert part.times.size == int(inside.sum()) > 3 * 250 - 5
    np.testing.assert_array_equal(part.data, sig.data[inside])
    assert part.times[0] >= t0 and part.times[-1] <= t1
    for name, track in record.features.items():
        keep = (track.t >= t0) & (track.t <= t1)
        np.testing.assert_array_equal(w.features[name].value, track.value[keep])
    keep = (record.markers.t >= t0) & (record.markers.t <= t1)
    assert w.markers.texts == [x for x, k in zip(record.markers.texts, keep) if k]
    assert [b.label for b in w.blocks] == ["train"]
    assert all(t0 <= e.t <= t1 for e in w.events)
    assert w.events == [e for e in record.events if t0 <= e.t <= t1]
    around = record.around(10.0, 4.0)
    assert (around.t0, around.t1) == (8.0, 12.0)
    assert record.window(t1, t0).signals["eeg"].times.size == part.times.size  # ends in either order


# ------------------------------------------------------------------------------------------ damaged folders


def test_without_xdf_the_journal_is_reviewed_with_the_reason(session, tmp_path):
    folder = _copy(session, tmp_path / "no-xdf", xdf=False)
    rec = SessionRecord.load(folder)
    assert rec.signals == {} and not rec.has_signals
    assert rec.xdf_error is not None and "recording.xdf is absent" in rec.xdf_error
    assert rec.markers.source == "journal"
    full = SessionRecord.load(session)
    assert rec.markers.texts == full.markers.texts  # rebuilt from the journal as the session sent them
    assert [e.text for e in rec.events] == [e.text for e in full.events]
    assert [b.label for b in rec.blocks] == [label for label, _ in TIMELINE]


def test_damaged_xdf_is_named_and_the_review_goes_on(session, tmp_path):
    folder = _copy(session, tmp_path / "bad-xdf", xdf=False)
    (folder / "recording.xdf").write_bytes(b"XDF:" + b"\x00garbage" * 10)
    rec = SessionRecord.load(folder)
    assert rec.signals == {} and rec.xdf_error == "recording.xdf holds no stream (empty or damaged)"
    assert rec.events and rec.features
    # cut off mid-file (the recorder killed): what was written before is reviewed
    xdf = (session / "recording.xdf").read_bytes()
    (folder / "recording.xdf").write_bytes(xdf[: len(xdf) // 2])
    part = SessionRecord.load(folder).signals["eeg"]
    full = SessionRecord.load(session).signals["eeg"]
    assert 0 < part.times.size < full.times.size
    np.testing.assert_array_equal(part.data, full.data[: part.times.size])


def test_journal_events_of_other_kinds_and_a_cut_off_last_line(session, tmp_path):
    folder = _copy(session, tmp_path / "cut", xdf=False)
    t = _journal_t0(session) + 7.5
    extra = [
        {"kind": "operator", "t": t, "t_source": None,
         "data": {"act": "pause", "by": "ana", "via": "console", "reason": "participant coughing", "done": True}},
        {"kind": "operator", "t": t + 0.1, "t_source": None, "data": {"act": "note", "by": "ana", "text": "drowsy"}},
        {"kind": "fault", "t": t + 0.2, "t_source": None, "data": {"source": "input:eeg", "reason": "stalled 1.2 s"}},
        {"kind": "safety", "t": t + 0.3, "t_source": None,
         "data": {"what": "refused", "verdict": "refused: amplitude 3 mA > 2 mA", "device": "stim1"}},
    ]
    with open(folder / "journal.jsonl", "a", encoding="utf-8") as f:
        for e in extra:
            f.write(json.dumps(e) + "\n")
        f.write('{"kind": "feature", "t": 1.0, "da')  # the writer stopped mid-line
    rec = SessionRecord.load(folder)
    assert any("truncated last line ignored" in p and "journal.jsonl" in p for p in rec.problems)
    assert [e.text for e in rec.events[-4:]] == [
        "pause by ana via console, reason: participant coughing", "note by ana: drowsy",
        "fault in input:eeg: stalled 1.2 s", "refused: amplitude 3 mA > 2 mA"]
    assert [e.kind for e in rec.events[-4:]] == ["operator", "operator", "fault", "safety"]
    assert rec.events[-4].t == pytest.approx(7.5, abs=1e-6)


def test_not_a_session_and_a_broken_journal_are_clear_errors(session, tmp_path):
    plain = tmp_path / "holiday-photos"
    plain.mkdir()
    (plain / "beach.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ReviewError, match="is not a session folder: it holds neither manifest.json nor journal"):
        SessionRecord.load(plain)
    with pytest.raises(ReviewError, match="no such folder"):
        SessionRecord.load(tmp_path / "nowhere")
    only_manifest = tmp_path / "only-manifest"
    only_manifest.mkdir()
    shutil.copy2(session / "manifest.json", only_manifest / "manifest.json")
    with pytest.raises(ReviewError, match=r"journal\.jsonl is missing"):
        SessionRecord.load(only_manifest)
    broken = _copy(session, tmp_path / "broken", xdf=False)
    lines = (broken / "journal.jsonl").read_text().splitlines(keepends=True)
    lines[3] = "this is not json\n"
    (broken / "journal.jsonl").write_text("".join(lines))
    with pytest.raises(ReviewError, match=r"journal\.jsonl:4: not valid JSON"):
        SessionRecord.load(broken)


# ------------------------------------------------------------------------------------------ the page


def _x_range(page: ReviewPage) -> tuple[float, float]:
    x = [c.getData()[0] for c in page.signal_curves.values()]
    return float(min(a.min() for a in x)), float(max(a.max() for a in x))


def test_page_opens_and_scrubs(app, qtbot, session, tmp_path):
    page = ReviewPage(span_s=4.0)
    qtbot.addWidget(page)
    page.resize(1400, 900)
    page.open(session)
    page.show()
    rec = page.record
    assert "review-tbr" in page.identity_label.text() and "p09" in page.identity_label.text()
    assert not page.reason_label.isVisible()
    assert list(page.signal_curves) == ["Cz", "Fp1", "Fp2"]
    assert page.feature_box.currentText() == "tbr"
    assert page.block_labels() == [label for label, _ in TIMELINE]
    assert [r.getRegion() for r in page.block_regions] == [(b.start, b.end) for b in rec.blocks]
    assert page.slider.maximum() == int(np.ceil(rec.duration * SLIDER_STEPS_PER_S))
    np.testing.assert_array_equal(page.feature_curve.getData()[1], rec.features["tbr"].value)

    page.slider.setValue(125)  # the slider scrubs: cursor and signal window follow
    assert page.position == pytest.approx(12.5)
    assert page.cursor_line.value() == pytest.approx(12.5)
    lo, hi = _x_range(page)
    assert 10.5 <= lo < 10.6 and 14.4 < hi <= 14.5
    part = rec.around(12.5, 4.0).signals["eeg"]
    y = page.signal_curves["Cz"].getData()[1]
    cz = part.channel("Cz")  # float32 in the XDF: compare to its precision
    np.testing.assert_allclose(np.diff(y), np.diff(cz), rtol=1e-5, atol=1e-6 * float(np.max(np.abs(cz))))
    assert "block " + rec.block_at(12.5).label in page.position_label.text()

    page.cursor_line.setValue(3.0)  # dragging the cursor scrubs too
    assert page.position == pytest.approx(3.0) and page.slider.value() == 30
    assert _x_range(page)[0] == pytest.approx(1.0, abs=0.01)

    row = next(i for i, e in enumerate(rec.events) if e.kind == "block_start" and "train" in e.text)
    item = page.events_table.item(row, 2)
    page.events_table.scrollToItem(item)
    rect = page.events_table.visualItemRect(item)
    qtbot.mouseClick(page.events_table.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=rect.center())
    assert page.position == pytest.approx(rec.events[row].t)
    assert page.cursor_line.value() == pytest.approx(rec.events[row].t)
    assert page.slider.value() == round(rec.events[row].t * SLIDER_STEPS_PER_S)
    assert "block train" in page.position_label.text()

    page.set_position(1e6)  # clamped to the session
    assert page.position == rec.duration
    page.set_position(12.5)
    page.grab().save(str(tmp_path / "review.png"))
    assert (tmp_path / "review.png").stat().st_size > 10_000


def test_page_channel_picking(app, qtbot, session):
    page = ReviewPage()
    qtbot.addWidget(page)
    page.open(session)
    page.set_channels([("eeg", "Fp2"), ("eeg", "nope"), ("eeg", "Cz")])
    assert list(page.signal_curves) == ["Fp2", "Cz"]
    checked = [page.channel_list.item(k).text() for k in range(page.channel_list.count())
               if page.channel_list.item(k).checkState() == QtCore.Qt.CheckState.Checked]
    assert sorted(checked) == ["Cz", "Fp2"]
    labels = [page.channel_list.item(k).text() for k in range(page.channel_list.count())]
    page.channel_list.item(labels.index("Fp1")).setCheckState(QtCore.Qt.CheckState.Checked)  # the user ticks one
    assert set(page.signal_curves) == {"Cz", "Fp1", "Fp2"}
    ticks = page.signal_plot.getAxis("left")._tickLevels[0]
    assert sorted(label for _, label in ticks) == ["Cz", "Fp1", "Fp2"]


def test_page_without_xdf_shows_the_journal_and_why(app, qtbot, session, tmp_path):
    folder = _copy(session, tmp_path / "no-xdf-page", xdf=False)
    page = ReviewPage()
    qtbot.addWidget(page)
    page.show()
    page.open(folder)
    assert page.reason_label.isVisible()
    assert page.reason_label.text().startswith("journal only - no signals: recording.xdf is absent")
    assert page.signal_curves == {} and page.channel_list.count() == 0
    assert page.no_signals.isVisible() and "recording.xdf is absent" in page.no_signals.toPlainText()
    assert page.events_table.rowCount() == len(page.record.events) > 0
    page.scrub_to_event(len(page.record.events) - 1)
    assert page.position == pytest.approx(min(page.record.events[-1].t, page.record.duration))


def test_marker_labels_sent_together_are_staggered():
    from controller.console.review_page import label_levels

    assert label_levels(np.array([0.0, 0.1, 0.2, 5.0, 5.05, 9.0]), 0.5) == [0, 1, 2, 0, 1, 0]
    assert label_levels(np.arange(6) * 0.01, 0.5, levels=4) == [0, 1, 2, 3, 0, 1]
