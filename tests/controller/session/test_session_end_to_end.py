"""A whole session on real LSL: simulator process -> controller -> LabRecorder XDF, journal, report.

The XDF is read back with pyxdf and checked against the journal: every stream is there,
and every feature frame, decision and feedback value that the journal says was sent is in
the recording with the same source timestamp.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import pyxdf

from controller.recording.journal import read_journal
from controller.session.runner import RunOptions, SimOptions, run_session

pytestmark = [pytest.mark.lsl, pytest.mark.slow]

PROTOCOL = """
protocol: e2e-tbr
inputs:
  eeg:
    stream: {type: EEG}
    channels: [Cz, Fp1, Fp2]
    reference: average
    highpass: 0.5 Hz
features:
  tbr:   {band_ratio: {input: eeg, channels: [Cz], numerator: [4 Hz, 8 Hz], denominator: [13 Hz, 21 Hz], window: 2 s, every: 100 ms}}
  emg:   {band_power: {input: eeg, channels: [Cz], band: [45 Hz, 70 Hz], window: 500 ms, every: 100 ms}}
  blink: {peak_to_peak: {input: eeg, channels: [Fp1, Fp2], band: [0.5 Hz, 4 Hz], window: 500 ms, every: 100 ms}}
thresholds:
  goal:    {percentile: {feature: tbr, during: baseline, q: 40}, adapt: {every: 3 s, target_reward_rate: 0.7}}
  emg_max: {percentile: {feature: emg, during: baseline, q: 95}}
  blink_max: {fixed: 400 uV}
timeline: [{baseline: 5 s}, {repeat: 2, blocks: [{train: 6 s}, {rest: 2 s}]}]
rules:
  - during: train
    when: tbr < goal for 300 ms and emg < emg_max and blink < blink_max
    do: {feedback: reward}
feedback: {value: tbr, range: [4.0, 1.0], during: [train]}
"""


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sessions")
    protocol = root / "e2e.yaml"
    protocol.write_text(PROTOCOL)
    opts = RunOptions(
        protocol_path=protocol, session_root=root, sim=SimOptions(channels=16, rate=250.0, chunk=5, seed=3),
        lsl_prefix=f"e2e-{uuid.uuid4().hex[:6]}", progress=None, participant="p07", operator="ana",
    )
    result = run_session(opts)
    assert result.status == "completed"
    return result.session_dir


def test_session_folder_contents(session):
    names = {p.name for p in session.iterdir()}
    assert {"recording.xdf", "journal.jsonl", "manifest.json", "protocol.yaml"} <= names
    manifest = json.loads((session / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert (session / "protocol.yaml").read_text() == PROTOCOL


def test_journal_tells_the_whole_session(session):
    events = read_journal(session / "journal.jsonl")
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "session_open" and kinds[-1] == "session_end" and "session_start" in kinds
    identity = events[0]["data"]
    assert (identity["participant"], identity["operator"], identity["protocol"]) == ("p07", "ana", "e2e-tbr")
    assert identity["software"].startswith("neuroreflex ") and identity["protocol_sha256"]
    manifest = json.loads((session / "manifest.json").read_text())
    assert {k: manifest["identity"][k] for k in ("participant", "operator", "session_id")} == \
        {k: identity[k] for k in ("participant", "operator", "session_id")}
    labels = [e["data"]["label"] for e in events if e["kind"] == "block_start"]
    assert labels == ["baseline", "train", "rest", "train", "rest"]
    thresholds = [e["data"] for e in events if e["kind"] == "threshold"]
    reasons = {(t["name"], t["reason"]) for t in thresholds}
    assert {("goal", "percentile"), ("emg_max", "percentile"), ("blink_max", "fixed")} <= reasons
    decisions = [e for e in events if e["kind"] == "decision"]
    assert decisions, "the simulated participant should earn some rewards"
    assert all(e["data"]["block"] == "train" for e in decisions)
    assert all(np.isfinite(e["data"]["latency_s"]) and e["data"]["latency_s"] >= 0 for e in decisions)


def test_xdf_holds_every_stream_with_the_journaled_samples(session):
    streams, _ = pyxdf.load_xdf(str(session / "recording.xdf"), dejitter_timestamps=False)
    by_type = {s["info"]["type"][0]: s for s in streams}
    assert {"EEG", "Features", "Markers", "Feedback", "SimState"} <= set(by_type)
    eeg = by_type["EEG"]
    assert int(eeg["info"]["channel_count"][0]) == 16
    assert len(eeg["time_stamps"]) > 250 * 10  # most of the session's samples
    events = read_journal(session / "journal.jsonl")

    # markers: every decision, block change and threshold value, in order, with the journaled source times
    # (a threshold set before any sample, e.g. at start, is stamped when it was set)
    sent = [e for e in events if e["kind"] in ("decision", "block_start", "block_end")
            or e["kind"] == "threshold" and e["data"]["value"] is not None]
    markers = by_type["Markers"]
    texts = [m[0] for m in markers["time_series"]]
    assert len(texts) == len(sent)
    expected = [e["data"]["action"] if e["kind"] == "decision"
                else f"threshold:{e['data']['name']}={e['data']['value']:.6g}" if e["kind"] == "threshold"
                else f"{e['kind']}:{e['data']['label']}" for e in sent]
    assert texts == expected
    stamps = [e["t"] if e["t_source"] is None else e["t_source"] for e in sent]
    np.testing.assert_allclose(markers["time_stamps"], stamps, atol=1e-9)

    # feedback: one sample per feedback event, same value and source time
    fb_events = [e for e in events if e["kind"] == "feedback"]
    fb = by_type["Feedback"]
    assert len(fb["time_stamps"]) == len(fb_events) > 0
    np.testing.assert_allclose(fb["time_series"][:, 0], [e["data"]["value"] for e in fb_events], rtol=1e-12)
    np.testing.assert_allclose(fb["time_stamps"], [e["t_source"] for e in fb_events], atol=1e-9)

    # features: one sample per frame (distinct sample index); the tbr channel carries the journaled values
    feats = [e for e in events if e["kind"] == "feature"]
    frames = sorted({e["t_source"] for e in feats})
    fx = by_type["Features"]
    assert len(fx["time_stamps"]) == len(frames)
    labels = [c["label"][0] for c in fx["info"]["desc"][0]["channels"][0]["channel"]]
    assert labels == ["tbr", "emg", "blink"]
    tbr = [e["data"]["value"] for e in feats if e["data"]["name"] == "tbr"]
    np.testing.assert_allclose(fx["time_series"][-len(tbr):, 0], tbr, rtol=1e-12)
    # every number in the Features stream is fresh: the value journaled for that feature at that
    # source sample; a feature not computed at a sample is NaN there, never its previous value
    # (frame by frame: pyxdf's clock correction moves the stamps by some microseconds)
    by_frame: dict[float, dict[str, float]] = {}
    for e in feats:
        by_frame.setdefault(e["t_source"], {})[e["data"]["name"]] = e["data"]["value"]
    for (t, journaled), t_x, row in zip(sorted(by_frame.items()), fx["time_stamps"], fx["time_series"]):
        assert t_x == pytest.approx(t, abs=1e-3)
        streamed = {labels[i]: float(v) for i, v in enumerate(row) if np.isfinite(v)}
        assert streamed.keys() == journaled.keys()
        assert all(streamed[k] == pytest.approx(journaled[k], rel=1e-12) for k in streamed)


def test_report_was_built(session):
    report = session / "report" / "report.html"
    assert report.is_file()
    pngs = list((session / "report").glob("*.png"))
    assert len(pngs) >= 4


def test_every_feature_is_recomputed_from_the_xdf_alone_from_the_first_one(session):
    """The recording is complete (issue 10): the loop used no sample that LabRecorder missed, so the
    XDF alone reproduces every journaled feature value, the first ones included."""
    from controller.features import offline_feature
    from controller.protocol import load_protocol

    protocol = load_protocol(session / "protocol.yaml")
    manifest = json.loads((session / "manifest.json").read_text())
    first_used = manifest["summary"]["inputs"]["eeg"]["first_sample_used"]
    streams, _ = pyxdf.load_xdf(str(session / "recording.xdf"), dejitter_timestamps=False)
    [eeg] = [s for s in streams if s["info"]["type"][0] == "EEG"]
    stamps = eeg["time_stamps"]
    i0 = int(np.argmin(np.abs(stamps - first_used)))
    assert abs(stamps[i0] - first_used) < 1e-3, "the first sample the loop used is in the XDF"
    channels = eeg["info"]["desc"][0]["channels"][0]["channel"]
    labels = [c["label"][0] for c in channels]
    assert {c["unit"][0] for c in channels} == {"volts"}
    data = np.asarray(eeg["time_series"], dtype=np.float64)[i0:]
    fs = float(eeg["info"]["nominal_srate"][0])

    events = read_journal(session / "journal.jsonl")
    journaled: dict[str, dict[int, float]] = {}
    for e in events:
        if e["kind"] == "feature":
            journaled.setdefault(e["data"]["name"], {})[e["data"]["sample_index"]] = e["data"]["value"]
    for name, spec in protocol.features.items():
        ends, values = offline_feature(data, fs, labels, protocol.inputs["eeg"], spec)
        offline = dict(zip(ends.tolist(), values.tolist()))
        online = journaled[name]
        assert min(online) == min(offline), f"{name}: the first value the loop computed is reproduced"
        for k, v in online.items():
            assert v == pytest.approx(offline[k], rel=1e-9, abs=1e-20), (name, k)
