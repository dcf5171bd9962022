"""``sim fmri --replay``: a recorded 4D run streamed as a scanner would, as a real subprocess,
into a watch folder (read back by FolderSource) and over LSL (read back by LslVolumeSource).

Also prints the time from "file complete" (the replay process's LSL clock right after writing)
to "Volume delivered" (on_volume called) for 74x74x36 NIfTI and MOSAIC, inotify and polling.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from controller.clock import now
from controller.inputs.source import Callbacks
from controller.inputs.volumes.lsl_volumes import LslVolumeSource
from controller.inputs.volumes.watch_folder import FolderSource

DATA = Path("../shared/data/fmri/opennft")
RUN = DATA / "opennft_psc_run_vols001-048_4d.nii.gz"
MOSAIC = DATA / "001_000007_000006.dcm"
pytestmark = pytest.mark.skipif(not RUN.exists() or not MOSAIC.exists(),
                                reason="real OpenNFT data not found in ../shared/data/fmri/opennft")


@pytest.fixture(scope="module")
def run4d():
    import nibabel as nib

    return np.asarray(nib.load(str(RUN)).dataobj)


class Replay:
    """The replay subprocess; stdout lines parsed in a thread (READY, VOLUME)."""

    def __init__(self, *args: str, cmd: list[str] | None = None) -> None:
        base = cmd or [sys.executable, "-m", "sim", "fmri"]
        self.proc = subprocess.Popen(base + ["--replay", str(RUN), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.ready: dict | None = None
        self.volumes: list[dict] = []
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if line.startswith("READY "):
                self.ready = json.loads(line[6:])
                self._ready.set()
            elif line.startswith("VOLUME "):
                self.volumes.append(json.loads(line[7:]))
        self._ready.set()

    def wait_ready(self, timeout: float = 30.0) -> dict:
        assert self._ready.wait(timeout), "replay did not print READY"
        err = self.proc.stderr.read() if self.ready is None and self.proc.stderr else ""
        assert self.ready is not None, f"replay failed: {self.lines} {err}"
        return self.ready

    def finish(self, timeout: float = 60.0) -> int:
        rc = self.proc.wait(timeout)
        return rc


class Sink:
    def __init__(self) -> None:
        self.volumes = []
        self.cb = []
        self.statuses: list[tuple[str, str]] = []
        self.cond = threading.Condition()

    def on_volume(self, v) -> None:
        t = now()
        with self.cond:
            self.volumes.append(v)
            self.cb.append(t)
            self.cond.notify_all()

    def on_status(self, s: str, d: str) -> None:
        with self.cond:
            self.statuses.append((s, d))
            self.cond.notify_all()

    def wait_n(self, n: int, timeout: float = 30.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.volumes) >= n, timeout)


def _folder_source(folder: Path, sink: Sink, **kw) -> FolderSource:
    folder.mkdir(exist_ok=True)
    src = FolderSource("fmri", folder, Callbacks(sink.on_volume, sink.on_status), **kw)
    src.open(timeout_s=5)
    src.start()
    return src


def _stop(src) -> None:
    src.stop()
    src.join(timeout=5)
    assert src.error is None, src.error


def test_replay_into_folder_as_mosaic(tmp_path, run4d):
    sink = Sink()
    src = _folder_source(tmp_path / "export", sink, pattern="*.dcm")
    rp = Replay("--folder", str(tmp_path / "export"), "--format", "dicom", "--dicom-template", str(MOSAIC),
                "--speed", "20", "--steps", "8")
    info = rp.wait_ready()
    assert info["shape"] == [74, 74, 36] and info["tr_s"] == pytest.approx(1.97) and info["volumes"] == 8
    assert rp.finish() == 0
    assert sink.wait_n(8)
    _stop(src)
    assert [v.index for v in sink.volumes] == list(range(1, 9))
    assert sorted(p.name for p in (tmp_path / "export").iterdir())[0] == "001_000007_000001.dcm"
    for v in sink.volumes:
        assert np.array_equal(v.data, run4d[..., v.index - 1])
        assert v.tr_s == pytest.approx(1.97)
    assert "stopped after 8 volumes" in rp.lines[-1]


def test_replay_over_lsl(run4d):
    name = f"replay-{uuid.uuid4().hex[:8]}"
    rp = Replay("--lsl", name, "--speed", "20", "--steps", "6", "--start", "10", "--first-index", "1",
                "--wait-consumer", "20")
    rp.wait_ready()
    sink = Sink()
    src = LslVolumeSource("fmri", name, Callbacks(sink.on_volume, sink.on_status), stall_timeout_s=5)
    src.open(timeout_s=20)
    assert src.describe()["first_index"] == 11 and src.describe()["source"] == RUN.name
    src.start()
    assert sink.wait_n(6)
    assert rp.finish() == 0
    _stop(src)
    assert [v.index for v in sink.volumes] == list(range(11, 17))
    sent = {d["index"]: d["acquired"] for d in rp.volumes}
    for v in sink.volumes:
        assert np.array_equal(v.data, run4d[..., v.index - 1])
        assert v.acquired == pytest.approx(sent[v.index], abs=0.005)  # the acquisition time, not arrival
    assert "missing" not in [s for s, _ in sink.statuses]


def test_replay_steps_drop_swap_polling(tmp_path, run4d):
    """Files written in 3 appends with pauses over a 'share' read by polling; a gap and a swap reported."""
    sink = Sink()
    src = _folder_source(tmp_path / "share", sink, pattern="*.nii.gz", watch="poll", poll_interval_s=0.03)
    rp = Replay("--folder", str(tmp_path / "share"), "--format", "nifti-gz", "--write", "steps",
                "--write-steps", "3", "--step-pause", "0.04", "--speed", "12", "--steps", "7",
                "--drop", "3", "--swap", "5")
    rp.wait_ready()
    assert rp.finish() == 0
    assert sink.wait_n(6)
    _stop(src)
    assert [v.index for v in sink.volumes] == [1, 2, 4, 6, 5, 7]
    for v in sink.volumes:
        assert np.array_equal(v.data, run4d[..., v.index - 1])
    missing = [d for s, d in sink.statuses if s == "missing"]
    late = [d for s, d in sink.statuses if s == "out_of_order"]
    assert missing == ["volume(s) 3 missing (got 4 after 2)", "volume(s) 5 missing (got 6 after 4)"]
    assert late == ["volume 5 arrived after 6 (was reported missing)"]


def test_neuroreflex_sim_fmri_forwards(tmp_path):
    exe = Path(sys.executable).with_name("neuroreflex")
    if not exe.exists():
        pytest.skip("neuroreflex console script not installed next to the interpreter")
    rp = Replay("--folder", str(tmp_path), "--speed", "50", "--steps", "2", "--quiet", cmd=[str(exe), "sim", "fmri"])
    assert rp.wait_ready()["volumes"] == 2
    assert rp.finish() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol_000001.nii", "vol_000002.nii"]


def test_replay_bad_input_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sim", "fmri", "--replay", str(DATA / "lROI_1.nii"), "--folder",
                        str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "needs a 4D NIfTI" in r.stderr
    r = subprocess.run([sys.executable, "-m", "sim", "fmri", "--replay", str(RUN)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "--lsl NAME and/or --folder DIR" in r.stderr


@pytest.mark.parametrize("watch", ["inotify", "poll"])
@pytest.mark.parametrize("fmt", ["nifti", "dicom"])
def test_print_replay_file_to_volume_latency(tmp_path, run4d, fmt, watch):
    """Printed, not asserted: replay process writes (atomic) -> on_volume in this process."""
    sink = Sink()
    pattern = "*.dcm" if fmt == "dicom" else "*.nii"
    src = _folder_source(tmp_path / "x", sink, pattern=pattern, watch=watch, poll_interval_s=0.02)
    n = 16
    rp = Replay("--folder", str(tmp_path / "x"), "--format", fmt, "--dicom-template", str(MOSAIC),
                "--speed", "12", "--steps", str(n))
    rp.wait_ready()
    assert rp.finish() == 0
    assert sink.wait_n(n)
    _stop(src)
    written = {d["index"]: d["written"] for d in rp.volumes}
    lat = np.array([(t - written[v.index]) * 1000 for v, t in zip(sink.volumes, sink.cb)])
    decode = np.array([(v.arrived - v.acquired) * 1000 for v in sink.volumes])
    print(f"\n74x74x36 {fmt:5s} {watch:7s}: file complete -> Volume delivered median {np.median(lat):.2f} ms, "
          f"p90 {np.percentile(lat, 90):.2f}, max {lat.max():.2f} ms; "
          f"seen -> decoded median {np.median(decode):.2f} ms")
