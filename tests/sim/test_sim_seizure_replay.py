"""Replay of the real seizure recording over LSL: exact timestamps, --speed/--start, and the annotated onset
published as a marker stamped with the onset sample's own timestamp (and in the stream description)."""

from __future__ import annotations

import signal
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pylsl
import pytest

from sim.recording import Annotation, Recording, load_for_replay, load_text_archive
from sim.replay_stream import ReplayStreamer

REPO = Path(__file__).resolve().parents[2]
ARCHIVE = REPO.parent / "shared" / "data" / "seizure" / "ombao_malow_8ch.tar.gz"
EDF = REPO.parent / "shared" / "data" / "eeg" / "physionet_eegmmidb_S001R01_baseline_eyes_open.edf"
needs_archive = pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"real recording not available: {ARCHIVE}")
LABELS = ("C3", "C4", "Cz", "P3", "P4", "T3", "T4", "T5")
N, ONSET = 32678, 32678 // 2


def _raw_columns() -> np.ndarray:
    """The archive's numbers as written (microvolts), channels in LABELS order."""
    with tarfile.open(ARCHIVE) as tar:
        files = {Path(m.name).name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}
    return np.stack([np.array(files[c.lower()].split(), dtype=float) for c in LABELS], axis=1)


@needs_archive
def test_the_archive_reads_as_8_channels_at_100_hz_in_volts_with_the_onset_at_half():
    rec = load_for_replay(ARCHIVE)
    assert rec.labels == LABELS and rec.rate == 100.0 and rec.data.shape == (N, 8)
    assert set(rec.units) == {"volts"} and set(rec.types) == {"EEG"}
    np.testing.assert_allclose(rec.data, _raw_columns() * 1e-6, rtol=0, atol=0)  # microvolts -> volts
    assert rec.data[0, 0] == pytest.approx(-2.551564e-6)
    [onset] = rec.annotations
    assert (onset.onset_sample, onset.label) == (ONSET, "seizure_onset") and "first half" in onset.source
    assert any("microvolts" in n for n in rec.notes) and any("100 Hz" in n for n in rec.notes)
    assert load_text_archive(ARCHIVE, unit="V").data[0, 0] == pytest.approx(-2.551564)


def test_a_text_archive_without_rate_or_a_folder_with_ragged_channels_is_refused(tmp_path):
    (tmp_path / "c3").write_text("1 2 3")
    (tmp_path / "c4").write_text("1 2 3 4")
    with pytest.raises(ValueError, match="differ in length"):
        load_for_replay(tmp_path, rate=100)
    (tmp_path / "c4").write_text("1 2 3")
    with pytest.raises(ValueError, match="no sampling rate"):
        load_for_replay(tmp_path)
    rec = load_for_replay(tmp_path, rate=10, unit="uV")
    assert rec.labels == ("C3", "C4") and rec.data[2, 1] == pytest.approx(3e-6)


def _desc(info: pylsl.StreamInfo, *path: str) -> pylsl.XMLElement:
    node = info.desc()
    for name in path:
        node = node.child(name)
    return node


def _labels(info: pylsl.StreamInfo) -> list[str]:
    out, ch = [], _desc(info, "channels").child("channel")
    while not ch.empty():
        out.append(ch.child_value("label"))
        ch = ch.next_sibling()
    return out


@needs_archive
@pytest.mark.lsl
def test_replay_at_4x_from_140_s_publishes_the_onset_at_the_exact_timestamp_of_sample_16339():
    name = f"seizure-replay-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim", "eeg", "--replay", str(ARCHIVE), "--name", name, "--start", "140",
         "--speed", "4", "--once", "--marker-stream", "ignored-in-replay"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        found_eeg = pylsl.resolve_byprop("name", name, minimum=1, timeout=20)
        found_marks = pylsl.resolve_byprop("name", f"{name}-annotations", minimum=1, timeout=10)
        assert found_eeg and found_marks, proc.stderr.read() if proc.poll() is not None else "not resolved"
        eeg = pylsl.StreamInlet(found_eeg[0], max_buflen=60)  # no clock processing: stamps as pushed
        marks = pylsl.StreamInlet(found_marks[0])
        eeg.open_stream(timeout=5)
        marks.open_stream(timeout=5)
        info = eeg.info(timeout=5)
        data, stamps, labels, mark_t = [], [], [], []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not (mark_t and stamps and stamps[-1] > mark_t[0] + 0.5):
            d, ts = eeg.pull_chunk(timeout=0.2)
            data += d
            stamps += ts
            m, tm = marks.pull_chunk(timeout=0.0)
            labels += [s[0] for s in m]
            mark_t += tm
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "replaying ombao_malow_8ch.tar.gz" in out and "microvolts" in out

    # the stream as a controller sees it
    assert (info.type(), info.channel_count(), info.nominal_srate()) == ("EEG", 8, 100.0)
    assert _labels(info) == list(LABELS)
    assert _desc(info, "channels").child("channel").child_value("unit") == "volts"
    note = _desc(info, "annotations").child("annotation")
    assert note.child_value("label") == "seizure_onset"
    assert int(note.child_value("onset_sample")) == ONSET and float(note.child_value("onset_s")) == 163.39
    replay = _desc(info, "replay")
    assert int(replay.child_value("start_sample")) == 14000 and float(replay.child_value("start_s")) == 140.0
    assert float(replay.child_value("speed")) == 4.0 and replay.child_value("loop") == "false"
    first = float(replay.child_value("first_sample_lsl_time"))
    dt = float(replay.child_value("sample_interval_s"))
    assert dt == 1 / 400
    onset_in_desc = float(note.child_value("onset_lsl_time"))
    assert onset_in_desc == first + (ONSET - 14000) * dt  # the documented rule, to the last bit

    # the marker: exactly the onset sample's stamp, and that sample is the recording's sample 16339
    assert labels == ["seizure_onset"], labels
    assert mark_t[0] == onset_in_desc
    stamps, data = np.asarray(stamps), np.asarray(data)
    assert np.allclose(np.diff(stamps), dt, rtol=0, atol=1e-9)  # 4x faster than recorded, no gaps
    [at] = np.flatnonzero(stamps == mark_t[0])
    expected = (_raw_columns() * 1e-6).astype(np.float32)
    np.testing.assert_array_equal(data[at], expected[ONSET])
    file_index = 14000 + np.rint((stamps - first) / dt).astype(int)  # every sample is where the rule says
    np.testing.assert_array_equal(data, expected[file_index])


@needs_archive
@pytest.mark.lsl
def test_once_stops_at_the_end_and_an_onset_before_start_is_described_but_not_streamed():
    name = f"seizure-tail-{uuid.uuid4().hex[:8]}"
    r = subprocess.run([sys.executable, "-m", "sim", "eeg", "--replay", str(ARCHIVE), "--name", name,
                        "--start", "325", "--speed", "8", "--once"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "replay stopped after 178 samples" in r.stdout and "1 pass(es)); 0 annotation markers" in r.stdout


@pytest.mark.lsl
def test_looping_replay_marks_every_pass_at_the_rule_time():
    rate, n = 100.0, 40
    rec = Recording(np.arange(n * 2, dtype=float).reshape(n, 2), rate, ("A", "B"), ("volts", "volts"),
                    ("EEG", "EEG"), "synthetic", annotations=[Annotation(25, "event", "test"),
                                                              Annotation(5, "before-start", "test")])
    name = f"replay-loop-{uuid.uuid4().hex[:8]}"
    streamer = ReplayStreamer(rec, name, chunk=4, speed=2.0, start_s=0.1, loop=True)
    streamer.open()
    inlet = pylsl.StreamInlet(pylsl.resolve_byprop("name", f"{name}-annotations", timeout=10)[0])
    inlet.open_stream(timeout=5)
    eeg = pylsl.StreamInlet(pylsl.resolve_byprop("name", name, timeout=10)[0])
    eeg.open_stream(timeout=5)
    notes = _desc(eeg.info(timeout=5), "annotations").child("annotation")
    described = {}
    while not notes.empty():
        described[notes.child_value("label")] = notes.child_value("onset_lsl_time")
        notes = notes.next_sibling()
    assert described == {"before-start": "", "event": repr(streamer.onset_lsl_time(25))}
    stop = threading.Event()
    worker = threading.Thread(target=lambda: streamer.run(stop_event=stop), daemon=True)
    worker.start()
    got, t_got, samples = [], [], []
    deadline = time.monotonic() + 20
    while len(got) < 3 and time.monotonic() < deadline:
        m, tm = inlet.pull_chunk(timeout=0.2)
        got += [s[0] for s in m]
        t_got += tm
        d, _ = eeg.pull_chunk(timeout=0.0)
        samples += d
    stop.set()
    worker.join(timeout=5)
    streamer.close()
    assert set(got) == {"event"} and len(got) >= 3  # once per pass; the one before --start is never streamed
    n_pass = n - 10
    for p, t in enumerate(t_got):
        # the published rule: first_sample_lsl_time + (i - start_sample + p * pass_samples) * sample_interval_s
        assert t == streamer.onset_lsl_time(25, p) == streamer.lsl_time(0) + (25 - 10 + p * n_pass) * streamer.dt
    first_values = np.asarray(samples)[:, 0]
    assert first_values[0] == 20.0  # sample 10 of channel A (value = 2 * index)
    assert 20.0 in first_values[n_pass:]  # wrapped back to --start, not to 0


@pytest.mark.skipif(not EDF.is_file(), reason=f"real recording not available: {EDF}")
@pytest.mark.lsl
def test_an_edf_replays_through_the_same_streamer_with_its_annotations():
    name = f"edf-replay-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, "-m", "sim", "eeg", "--replay", str(EDF), "--name", name,
                             "--speed", "2"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        found = pylsl.resolve_byprop("name", name, minimum=1, timeout=30)
        assert found, "EDF replay stream not found"
        info = pylsl.StreamInlet(found[0]).info(timeout=5)
        assert info.channel_count() == 64 and info.nominal_srate() == 160.0
        assert _labels(info)[0] == "Fc5."
        assert _desc(info, "annotations").child("annotation").child_value("label") == "T0"
        assert pylsl.resolve_byprop("name", f"{name}-annotations", minimum=1, timeout=10)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "looping" in out


@needs_archive
def test_an_onset_given_on_the_command_line_replaces_the_readmes_rough_split():
    """MANIFEST (corrected): the electrographic onset is at about 180 s, not the README's half/half split."""
    rec = load_for_replay(ARCHIVE)
    assert [a.onset_sample for a in rec.annotations if a.label == "seizure_onset"] == [32678 // 2]
    rec.annotate("seizure_onset", 180.0)
    assert [(a.onset_sample, a.source) for a in rec.annotations if a.label == "seizure_onset"] == [(18000, "command line")]
    assert any("seizure_onset at sample 16339" in n and "replaced by sample 18000" in n for n in rec.notes)
    rec.annotate("seizure_onset", 181.0)  # a second one from the same source is another mark, not a correction
    assert [a.onset_sample for a in rec.annotations if a.label == "seizure_onset"] == [18000, 18100]
