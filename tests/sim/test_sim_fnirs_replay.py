"""Replaying a real SNIRF recording as a NIRS stream: its samples, layout and annotations, exactly."""

import threading
import uuid
from pathlib import Path

import numpy as np
import pylsl
import pytest
from helpers import wait_for

from sim.fnirs.replay import FnirsReplayStreamer, load_fnirs, read_raw_fnirs
from sim.fnirs.stream_info import NIRS_TYPE, read_layout

SNIRF = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fnirs" / "snirf_samples_neuro_run01.snirf"
needs_data = pytest.mark.skipif(not SNIRF.is_file(), reason=f"real recording not available: {SNIRF}")


@pytest.fixture(scope="module")
def snirf():
    raw = read_raw_fnirs(SNIRF)
    recording, layout = load_fnirs(SNIRF)
    return raw, recording, layout


@needs_data
def test_the_file_becomes_a_recording_and_a_layout_in_mm(snirf):
    raw, rec, layout = snirf
    assert rec.rate == pytest.approx(20.033, abs=1e-3) and rec.data.shape == (8000, 18)
    assert rec.labels == tuple(raw.ch_names) and rec.labels[:2] == ("S1_D1 690", "S1_D2 690")  # wavelength-major
    assert [c.wavelength for c in layout.columns] == [690.0] * 9 + [830.0] * 9
    assert {c.measure for c in layout.columns} == {"intensity"} and set(rec.units) == {"a.u."}
    for ch, col in zip(raw.info["chs"], layout.columns, strict=True):
        np.testing.assert_array_equal(layout.sources[col.source], ch["loc"][3:6] * 1000.0)
        np.testing.assert_array_equal(layout.detectors[col.detector], ch["loc"][6:9] * 1000.0)
    assert [(a.label, a.onset_sample) for a in rec.annotations] == list(
        zip(raw.annotations.description, raw.time_as_index(raw.annotations.onset, use_rounding=True), strict=True))
    assert len(rec.annotations) == 6


def test_missing_or_foreign_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.snirf"):
        load_fnirs(tmp_path / "nothing.snirf")
    other = tmp_path / "x.edf"
    other.write_text("")
    with pytest.raises(ValueError, match="expected a .snirf file or a NIRx folder"):
        load_fnirs(other)


@needs_data
@pytest.mark.lsl
def test_replay_streams_the_files_samples_layout_and_annotations(snirf):
    raw, rec, layout = snirf
    name = f"sim-fnirs-replay-{uuid.uuid4().hex[:10]}"
    speed, n = 100.0, rec.n_samples  # 399 s of recording in 4 s
    streamer = FnirsReplayStreamer(rec, layout, name, chunk=10, speed=speed)
    streamer.open()
    try:
        infos = pylsl.resolve_byprop("name", name, minimum=1, timeout=10)
        marks = pylsl.resolve_byprop("name", f"{name}-annotations", minimum=1, timeout=10)
        assert infos and marks
        inlet = pylsl.StreamInlet(infos[0], max_buflen=60)
        mark_inlet = pylsl.StreamInlet(marks[0])
        info = inlet.info(timeout=5.0)
        inlet.open_stream(timeout=5.0)
        mark_inlet.open_stream(timeout=5.0)
        thread = threading.Thread(target=streamer.run, daemon=True)
        thread.start()
        data, stamps, labels, mark_stamps = [], [], [], []

        def collect() -> bool:
            d, ts = inlet.pull_chunk(timeout=0.05, max_samples=4000)
            data.extend(d)
            stamps.extend(ts)
            m, mts = mark_inlet.pull_chunk(timeout=0.0)
            labels.extend(x[0] for x in m)
            mark_stamps.extend(mts)
            return len(stamps) >= n and len(labels) >= 6

        assert wait_for(collect, timeout=15.0), (len(stamps), labels)
        thread.join(5)
    finally:
        streamer.close()
    assert info.type() == NIRS_TYPE and info.channel_count() == 18
    assert info.nominal_srate() == pytest.approx(rec.rate, rel=1e-14)  # liblsl's XML keeps ~16 digits
    assert float(info.desc().child("recording").child_value("rate")) == rec.rate  # exact
    assert info.desc().child_value("manufacturer") == f"neuroreflex replay of {SNIRF.name}"
    parsed = read_layout(info)
    assert parsed == layout and parsed.labels == tuple(raw.ch_names)
    for ch, col in zip(raw.info["chs"], parsed.columns, strict=True):
        assert parsed.sources[col.source] == tuple(ch["loc"][3:6] * 1000.0)  # mm, exact through the XML
        assert parsed.detectors[col.detector] == tuple(ch["loc"][6:9] * 1000.0)
        assert col.wavelength == ch["loc"][9]
    x = np.asarray(data)
    np.testing.assert_array_equal(x, raw.get_data().T.astype(np.float32))  # every sample, in order
    ts = np.asarray(stamps)
    np.testing.assert_array_equal(ts, streamer.lsl_time(np.arange(n)))
    assert labels == list(raw.annotations.description)
    onsets = raw.time_as_index(raw.annotations.onset, use_rounding=True)
    np.testing.assert_array_equal(mark_stamps, streamer.lsl_time(onsets))  # at exactly their samples' stamps
