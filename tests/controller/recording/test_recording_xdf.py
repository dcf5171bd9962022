"""XDF recording with LabRecorder on real LSL outlets (loopback), read back with pyxdf."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pylsl
import pytest
import pyxdf

from controller.recording.xdf import (
    StreamsNotFoundError,
    XdfRecorder,
    XdfRecorderError,
    check_predicate,
    predicate_text,
)

pytestmark = pytest.mark.lsl

LABELS = ["Fz", "Cz", "Pz", "C3", "C4", "O1", "O2", "Oz"]


def _uid() -> str:
    return uuid.uuid4().hex[:10]


def _load(path: Path) -> dict[str, dict]:
    streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False, dejitter_timestamps=False)
    return {s["info"]["name"][0]: s for s in streams}


def test_round_trip_every_sample_pushed_after_start(tmp_path: Path) -> None:
    uid = _uid()
    eeg_info = pylsl.StreamInfo(f"nr-test-eeg-{uid}", "EEG", 8, 250, "float32", f"eeg-{uid}")
    eeg_info.set_channel_labels(LABELS)
    eeg = pylsl.StreamOutlet(eeg_info)
    feat = pylsl.StreamOutlet(pylsl.StreamInfo(f"nr-test-feat-{uid}", "Feature", 1, 0, "double64", f"feat-{uid}"))
    mark = pylsl.StreamOutlet(pylsl.StreamInfo(f"nr-test-mark-{uid}", "Markers", 1, 0, "string", f"mark-{uid}"))
    path = tmp_path / "recording.xdf"
    rec = XdfRecorder()
    assert rec.stop() is None  # nothing to stop yet
    started_at = rec.start(
        path,
        [
            {"name": f"nr-test-eeg-{uid}", "source_id": f"eeg-{uid}"},
            {"name": f"nr-test-feat-{uid}", "source_id": f"feat-{uid}"},
            {"name": f"nr-test-mark-{uid}", "type": "Markers"},
        ],
    )
    assert rec.recording and rec.alive
    assert started_at <= pylsl.local_clock()
    assert all(len(found) == 1 for found in rec.matched.values())

    rng = np.random.default_rng(0)
    eeg_data = rng.standard_normal((500, 8)).astype(np.float32)  # 2 s at 250 Hz
    t0 = pylsl.local_clock()
    eeg_ts = t0 + np.arange(500) / 250.0
    feat_ts, feat_vals, mark_ts, mark_vals = [], [], [], []
    for k in range(20):  # 20 chunks of 100 ms, pushed as they would arrive
        eeg.push_chunk(eeg_data[k * 25 : (k + 1) * 25].tolist(), eeg_ts[k * 25 : (k + 1) * 25].tolist())
        t_feat = eeg_ts[(k + 1) * 25 - 1] + rng.uniform(0.001, 0.004)  # irregular
        feat.push_sample([float(k) + 0.5], t_feat)
        feat_ts.append(t_feat)
        feat_vals.append(float(k) + 0.5)
        if k % 4 == 0:
            mark.push_sample([f"reward {k}"], t_feat + 0.0001)
            mark_ts.append(t_feat + 0.0001)
            mark_vals.append(f"reward {k}")
        time.sleep(0.1)
    assert rec.stop() == path
    assert rec.stop() is None  # idempotent
    assert not rec.alive

    streams = _load(path)
    assert set(streams) == {f"nr-test-eeg-{uid}", f"nr-test-feat-{uid}", f"nr-test-mark-{uid}"}
    s_eeg, s_feat, s_mark = (streams[f"nr-test-{k}-{uid}"] for k in ("eeg", "feat", "mark"))

    assert s_eeg["time_series"].shape == (500, 8)
    np.testing.assert_array_equal(s_eeg["time_stamps"], eeg_ts)
    np.testing.assert_array_equal(s_eeg["time_series"], eeg_data)
    channels = s_eeg["info"]["desc"][0]["channels"][0]["channel"]
    assert [c["label"][0] for c in channels] == LABELS
    assert s_eeg["info"]["nominal_srate"][0].startswith("250")

    np.testing.assert_array_equal(s_feat["time_stamps"], feat_ts)
    np.testing.assert_array_equal(s_feat["time_series"][:, 0], feat_vals)

    np.testing.assert_array_equal(s_mark["time_stamps"], mark_ts)
    assert [row[0] for row in s_mark["time_series"]] == mark_vals
    for s in (s_eeg, s_feat, s_mark):  # footers written: the file was finalised
        assert int(s["footer"]["info"]["sample_count"][0]) == len(s["time_stamps"])


def test_missing_streams_are_all_named_and_nothing_is_left_running(tmp_path: Path) -> None:
    uid = _uid()
    present = pylsl.StreamOutlet(pylsl.StreamInfo(f"nr-test-present-{uid}", "EEG", 1, 100, "float32", uid))
    rec = XdfRecorder()
    path = tmp_path / "recording.xdf"
    with pytest.raises(StreamsNotFoundError) as info:
        rec.start(
            path,
            [
                {"name": f"nr-test-present-{uid}"},
                {"name": f"nr-test-absent-a-{uid}"},
                {"name": f"nr-test-absent-b-{uid}", "type": "EEG"},
            ],
        )
    msg = str(info.value)
    assert f"nr-test-absent-a-{uid}" in msg and f"nr-test-absent-b-{uid}" in msg
    assert f"name='nr-test-present-{uid}'" not in msg  # the found one is not blamed ...
    assert f"nr-test-present-{uid} (type=EEG" in msg  # ... but listed as available
    assert [p["name"] for p in info.value.missing] == [f"nr-test-absent-a-{uid}", f"nr-test-absent-b-{uid}"]
    assert not rec.recording and not rec.alive
    assert not path.exists()
    del present


def test_refuses_to_overwrite_and_rejects_bad_predicates(tmp_path: Path) -> None:
    path = tmp_path / "recording.xdf"
    path.write_bytes(b"earlier")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        XdfRecorder().start(path, [{"name": "x"}])
    assert path.read_bytes() == b"earlier"
    with pytest.raises(ValueError, match="may not contain a quote"):
        check_predicate({"name": "it's"})
    with pytest.raises(ValueError, match="non-empty dict"):
        check_predicate({})
    with pytest.raises(ValueError, match="must be a string"):
        check_predicate({"channel_count": 8})
    assert predicate_text({"name": "EEG", "source_id": "a1"}) == "name='EEG' and source_id='a1'"


SIGINT_SCRIPT = """
import os, signal, sys, time, pylsl
from controller.recording.xdf import XdfRecorder
name, path = sys.argv[1], sys.argv[2]
out = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 2, 100, "float32", name))
rec = XdfRecorder()
t0 = rec.start(path, [{"name": name}])
for i in range(30):
    out.push_sample([float(i), -float(i)], t0 + 0.01 + i / 100)
time.sleep(0.2)
os.killpg(os.getpgid(0), signal.SIGINT)  # Ctrl+C in the terminal: the whole process group
time.sleep(30)
"""


def test_ctrl_c_interrupted_session_still_finalises_its_xdf(tmp_path: Path) -> None:
    """Ctrl+C hits the controller only (LabRecorderCLI ignores it); atexit then stops the recording."""
    name = f"nr-test-sigint-{_uid()}"
    path = tmp_path / "recording.xdf"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SIGINT_SCRIPT), name, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,  # its own process group, so the SIGINT stays there
    )
    assert "KeyboardInterrupt" in proc.stderr
    stream = _load(path)[name]
    np.testing.assert_array_equal(stream["time_series"][:, 0], np.arange(30, dtype=np.float32))
    assert int(stream["footer"]["info"]["sample_count"][0]) == 30


def _fake_cli(tmp_path: Path, body: str) -> Path:
    """A stand-in for LabRecorderCLI that misbehaves in a chosen way."""
    path = tmp_path / "FakeLabRecorderCLI"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_start_that_never_completes_is_killed_not_waited_for(tmp_path: Path) -> None:
    name = f"nr-test-hang-{_uid()}"
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 1, 100, "float32", name))
    rec = XdfRecorder(start_timeout_s=0.5, labrecorder_cli_path=_fake_cli(tmp_path, "exec sleep 600\n"))
    with pytest.raises(XdfRecorderError, match=r"did not start collecting all 1 stream\(s\) within 0.5 s"):
        rec.start(tmp_path / "r.xdf", [{"name": name}])
    assert not rec.alive and not rec.recording
    del outlet


def test_stop_that_never_completes_is_killed_not_waited_for(tmp_path: Path) -> None:
    name = f"nr-test-stuck-{_uid()}"
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 1, 100, "float32", name))
    script = (
        f"echo \"Found {name}@host matching 'name='{name}''\"\n"
        'echo "Starting the recording, press Enter to quit"\n'
        f'echo "Started data collection for stream {name}."\n'
        "exec sleep 600\n"  # never reads stdin: Enter does nothing
    )
    rec = XdfRecorder(stop_timeout_s=0.5, flush_s=0.0, labrecorder_cli_path=_fake_cli(tmp_path, script))
    rec.start(tmp_path / "r.xdf", [{"name": name}])
    assert rec.recording and rec.alive and rec.matched == {f"name='{name}'": [f"{name}@host"]}
    proc = rec._process()
    with pytest.raises(XdfRecorderError, match="did not finish within 0.5 s and was killed"):
        rec.stop()
    assert proc.poll() is not None  # the child is gone
    assert not rec.alive and not rec.recording
    assert rec.stop() is None
    del outlet
