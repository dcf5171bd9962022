"""Volume readers and sources on real files, real inotify/polling and real LSL (loopback).

Partial files are written by the scanner-like writer (several appends with pauses, a close
after each) and must never be delivered; indices gaps/reorders/duplicates are reported.
Timing (file complete -> Volume delivered) is printed, never asserted.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pylsl
import pytest

from controller.clock import now
from controller.inputs.source import Callbacks
from controller.inputs.volumes.dicom import IncompleteFile, read_dicom
from controller.inputs.volumes.lsl_volumes import LslVolumeSource, parse_stream_info
from controller.inputs.volumes.nifti import decode_nifti, read_nifti
from controller.inputs.volumes.source import IndexTracker
from controller.inputs.volumes.watch_folder import FolderSource
from sim.fmri.folder_out import make_writer, nifti_bytes, write_file
from sim.fmri.lsl_out import VolumeOutlet

DATA = Path("../shared/data/fmri/opennft")
RUN = DATA / "opennft_psc_run_vols001-048_4d.nii.gz"
MOSAIC = DATA / "001_000007_000006.dcm"
RTCLOUD = Path("../shared/data/fmri/rtcloud")
needs_data = pytest.mark.skipif(not RUN.exists() or not MOSAIC.exists(),
                                reason="real OpenNFT data not found in ../shared/data/fmri/opennft")


@pytest.fixture(scope="module")
def run4d():
    if not RUN.exists():
        pytest.skip("real OpenNFT run not found in ../shared/data/fmri/opennft")
    import nibabel as nib

    img = nib.load(str(RUN))
    return np.asarray(img.dataobj), np.asarray(img.affine, dtype=float)


def small_volume(seed: int = 0, shape=(20, 22, 9)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    affine = np.array([[-3.0, 0, 0, 30], [0, 2.9, -0.9, -40], [0, 0.8, 3.5, -20], [0, 0, 0, 1]])
    return rng.integers(0, 3000, shape).astype(np.uint16), affine


class Collector:
    """on_volume / on_status sinks with waits."""

    def __init__(self) -> None:
        self.volumes = []
        self.statuses: list[tuple[str, str]] = []
        self.cb_times: list[float] = []
        self._cond = threading.Condition()

    def on_volume(self, v) -> None:
        t = now()
        with self._cond:
            self.volumes.append(v)
            self.cb_times.append(t)
            self._cond.notify_all()

    def on_status(self, status: str, detail: str) -> None:
        with self._cond:
            self.statuses.append((status, detail))
            self._cond.notify_all()

    def wait(self, predicate, timeout: float = 15.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def kinds(self) -> list[str]:
        return [s for s, _ in self.statuses]


def start_folder(folder: Path, col: Collector, **kw) -> FolderSource:
    src = FolderSource("fmri", folder, Callbacks(col.on_volume, col.on_status), **kw)
    src.open(timeout_s=5)
    src.start()
    assert col.wait(lambda c: "connected" in c.kinds(), 5)
    return src


def stop(src) -> None:
    src.stop()
    src.join(timeout=5)
    assert not src.is_alive()
    assert src.error is None, src.error


# ------------------------------------------------------------------ readers
@needs_data
def test_mosaic_equals_nifti_volume6(run4d):
    data, affine = run4d
    vol = read_dicom(MOSAIC)
    assert vol.kind == "mosaic" and vol.index == 6 and vol.tr_s == pytest.approx(1.97)
    assert vol.data.shape == (74, 74, 36)
    assert np.array_equal(vol.data, data[..., 5])  # lossless: exactly volume 6
    # the NIfTI's affine is stored in float32 (sform): equal to ~4e-6 mm
    assert np.abs(vol.affine - affine).max() < 1e-3
    assert len(vol.info["slice_times_ms"]) == 36


@pytest.mark.skipif(not RTCLOUD.exists(), reason="rt-cloud sample DICOMs not found")
def test_skyra_mosaics_read():
    for path in sorted(RTCLOUD.glob("*.dcm")):
        vol = read_dicom(path)
        assert vol.data.shape == (64, 64, 27) and vol.tr_s == pytest.approx(1.5)
        assert abs(np.linalg.det(vol.affine[:3, :3])) > 1


def test_truncated_files_are_incomplete(tmp_path):
    data, affine = small_volume()
    for fmt in ("nifti", "nifti-gz", "mosaic", "dicom-enhanced"):
        w = make_writer(tmp_path / fmt, fmt, affine=affine, shape=data.shape, tr_s=2.0)
        raw = w.encode(data, 3)
        for cut in (10, 200, len(raw) // 2, len(raw) - 1):
            with pytest.raises(IncompleteFile):
                if fmt.startswith("nifti"):
                    decode_nifti(raw[:cut])
                else:
                    read_dicom(raw[:cut])


def test_enhanced_multiframe_round_trip(tmp_path, run4d):
    data4, affine = run4d
    data = data4[..., 9]
    for order in ("ascending", "descending", "interleaved"):
        w = make_writer(tmp_path / order, "dicom-enhanced", affine=affine, shape=data.shape, tr_s=1.97,
                        frame_order=order)
        vol = read_dicom(w.write(data, 10))
        assert vol.kind == "enhanced" and vol.index == 10 and vol.tr_s == pytest.approx(1.97)
        assert np.array_equal(vol.data, data)
        assert np.abs(vol.affine - affine).max() < 1e-4
    # a right-handed oblique grid: frames are sorted along the slice normal, so k comes back
    # reversed with the affine's k column negated -- the same voxels in the same places
    from scipy.spatial.transform import Rotation

    rh = np.eye(4)
    rh[:3, :3] = Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix() @ np.diag([2, 2.5, 3])
    rh[:3, 3] = [10, -20, 5]
    x, _ = small_volume(1)
    vol = read_dicom(make_writer(tmp_path / "rh", "dicom-enhanced", affine=rh, shape=x.shape).write(x, 1))
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1, x.shape[2] - 1
    assert np.array_equal(vol.data, x[..., ::-1])
    assert np.abs(vol.affine - rh @ flip).max() < 1e-6


def test_synthesized_mosaic_round_trip_oblique(tmp_path):
    from scipy.spatial.transform import Rotation

    x, _ = small_volume(2, (30, 40, 7))
    for handed in (1, -1):
        a = np.eye(4)
        a[:3, :3] = Rotation.from_euler("xyz", [8, -12, 25], degrees=True).as_matrix() @ np.diag([2, 2.5, 3 * handed])
        a[:3, 3] = [10, -20, 5]
        vol = read_dicom(make_writer(tmp_path / str(handed), "mosaic", affine=a, shape=x.shape, tr_s=2).write(x, 4))
        assert vol.kind == "mosaic" and vol.index == 4
        assert np.array_equal(vol.data, x)
        assert np.abs(vol.affine - a).max() < 1e-4


@needs_data
def test_mosaic_template_writer_reproduces_the_real_file(tmp_path, run4d):
    data4, affine = run4d
    w = make_writer(tmp_path, "dicom", affine=affine, shape=data4.shape[:3], tr_s=1.97, template=MOSAIC)
    path = w.write(data4[..., 5], 6)
    assert path.name == "001_000007_000006.dcm"
    import pydicom

    mine, real = pydicom.dcmread(path), pydicom.dcmread(MOSAIC)
    assert mine.PixelData == real.PixelData
    vol = read_dicom(w.write(data4[..., 20], 21))
    assert vol.index == 21 and np.array_equal(vol.data, data4[..., 20])


def test_nifti_reader(tmp_path, run4d):
    data4, affine = run4d
    with pytest.raises(ValueError, match="4D NIfTI with 48 volumes"):
        read_nifti(RUN)
    v = read_nifti(RUN, volume=5)
    assert np.array_equal(v.data, data4[..., 5]) and v.tr_s == pytest.approx(1.97) and v.n_volumes == 48
    import nibabel as nib

    img = nib.Nifti1Image(data4[..., 0].astype(np.float32), affine)
    img.set_sform(None, code=0)
    img.set_qform(affine, code=1)
    v = decode_nifti(img.to_bytes())
    assert np.abs(v.affine - img.affine).max() < 1e-4
    v = decode_nifti(nifti_bytes(data4[..., 1], affine, 1.97, gz=True))
    assert np.array_equal(v.data, data4[..., 1]) and v.tr_s == pytest.approx(1.97)


def test_index_tracker():
    t = IndexTracker(first_index=1)
    assert t.check(1) == (True, [])
    ok, ev = t.check(4)
    assert ok and ev[0][0] == "missing" and "2-3" in ev[0][1]
    ok, ev = t.check(3)
    assert ok and ev[0][0] == "out_of_order" and "reported missing" in ev[0][1]
    ok, ev = t.check(3)
    assert not ok and ev[0][0] == "duplicate"
    assert t.missing == {2}


# ------------------------------------------------------------------ folder source
@pytest.mark.parametrize("watch", ["inotify", "poll"])
def test_folder_atomic_nifti(tmp_path, watch):
    col = Collector()
    src = start_folder(tmp_path, col, pattern="*.nii", watch=watch, poll_interval_s=0.02)
    assert src.describe()["watch"] == watch
    data, affine = small_volume()
    w = make_writer(tmp_path, "nifti", affine=affine, shape=data.shape, tr_s=2.0)
    for i in range(1, 5):
        w.write(data + i, i)
    assert col.wait(lambda c: len(c.volumes) == 4)
    stop(src)
    assert [v.index for v in col.volumes] == [1, 2, 3, 4]
    for i, v in enumerate(col.volumes, 1):
        assert v.data.dtype == np.float32 and v.data.flags.f_contiguous
        assert np.array_equal(v.data, data + i)
        assert np.abs(v.affine - affine).max() < 1e-4 and v.tr_s == pytest.approx(2.0)
        assert v.acquired <= v.arrived
    assert src.volumes_received == 4
    assert src.describe()["shape"] == list(data.shape)
    assert not {"missing", "out_of_order", "duplicate", "bad_file"} & set(col.kinds())


@pytest.mark.parametrize("watch", ["inotify", "poll"])
@pytest.mark.parametrize("fmt", ["nifti", "nifti-gz", "mosaic", "dicom-enhanced"])
def test_folder_partial_writes_never_read(tmp_path, watch, fmt):
    """Files written in 4 appends (each closed) with pauses: only complete volumes come out."""
    col = Collector()
    pattern = "*.dcm" if "dicom" in fmt or fmt == "mosaic" else "*.nii*"
    src = start_folder(tmp_path, col, pattern=pattern, watch=watch, poll_interval_s=0.02)
    data, affine = small_volume(3)
    w = make_writer(tmp_path, fmt, affine=affine, shape=data.shape, tr_s=2.0, mode="steps", steps=4,
                    step_pause_s=0.08)
    for i in range(1, 4):
        w.write(data + i, i)
    assert col.wait(lambda c: len(c.volumes) == 3)
    stop(src)
    assert [v.index for v in col.volumes] == [1, 2, 3]
    for i, v in enumerate(col.volumes, 1):
        assert np.array_equal(v.data, data + i)
    assert "bad_file" not in col.kinds()
    if watch == "inotify":  # every intermediate close woke it up: it looked and declined
        assert src.incomplete_reads > 0
    print(f"\n{fmt}/{watch}: {src.incomplete_reads} partial looks declined")


def test_folder_missing_out_of_order_duplicate(tmp_path):
    col = Collector()
    src = start_folder(tmp_path, col, pattern="*.nii", index_regex=r"vol(\d+)", first_index=1)
    data, affine = small_volume()
    for i in (1, 2, 5, 4):
        write_file(tmp_path / f"vol{i:03d}.nii", nifti_bytes(data, affine))
        assert col.wait(lambda c, i=i: len(c.volumes) == [1, 2, 5, 4].index(i) + 1)
    write_file(tmp_path / "vol004_again.nii", nifti_bytes(data, affine))  # same index 4
    assert col.wait(lambda c: "duplicate" in c.kinds())
    stop(src)
    assert [v.index for v in col.volumes] == [1, 2, 5, 4]  # never renumbered
    missing = [d for s, d in col.statuses if s == "missing"]
    assert len(missing) == 1 and "3-4" in missing[0]
    assert any(s == "out_of_order" and "volume 4" in d for s, d in col.statuses)


def test_folder_two_files_per_tr_keeps_the_named_one(tmp_path):
    col = Collector()
    src = start_folder(tmp_path, col, pattern="*.dcm")
    data, affine = small_volume()
    writers = [make_writer(tmp_path, f, affine=affine, shape=data.shape, tr_s=2.0) for f in ("mosaic", "nifti")]
    for i in range(1, 4):
        for w in writers:
            w.write(data + i, i)
    assert col.wait(lambda c: len(c.volumes) == 3)
    time.sleep(0.3)
    stop(src)
    assert [v.index for v in col.volumes] == [1, 2, 3]
    assert all(v.source.endswith(".dcm") for v in col.volumes)
    assert "duplicate" not in col.kinds()


def test_folder_two_files_per_tr_without_a_pattern_reports_duplicates(tmp_path):
    col = Collector()
    src = start_folder(tmp_path, col)  # default pattern: DICOM and NIfTI extensions
    data, affine = small_volume()
    writers = [make_writer(tmp_path, f, affine=affine, shape=data.shape, tr_s=2.0) for f in ("mosaic", "nifti")]
    for w in writers:
        w.write(data, 1)
    assert col.wait(lambda c: "duplicate" in c.kinds())
    stop(src)
    assert [v.index for v in col.volumes] == [1]
    (tmp_path / "notes.txt").write_text("not a volume")  # not matched: silently ignored


@pytest.mark.parametrize("existing", ["skip", "process"])
def test_folder_existing_files(tmp_path, existing):
    data, affine = small_volume()
    w = make_writer(tmp_path, "nifti", affine=affine, shape=data.shape)
    w.write(data, 1)
    w.write(data, 2)
    col = Collector()
    src = start_folder(tmp_path, col, pattern="*.nii", existing=existing)
    w.write(data, 3)
    assert col.wait(lambda c: 3 in [v.index for v in c.volumes])
    time.sleep(0.2)
    stop(src)
    assert [v.index for v in col.volumes] == ([1, 2, 3] if existing == "process" else [3])
    said = [d for k, d in col.statuses if k == "existing"]  # the default says what it did, and with which files
    assert len(said) == 1 and "2 file(s) matching '*.nii' were already in" in said[0]
    assert ("skipped" if existing == "skip" else "read in name order first") in said[0]


def test_folder_existing_files_refused(tmp_path):
    data, affine = small_volume()
    w = make_writer(tmp_path, "nifti", affine=affine, shape=data.shape)
    w.write(data, 1)
    src = FolderSource("fmri", tmp_path, Callbacks(Collector().on_volume, Collector().on_status), pattern="*.nii",
                       existing="refuse")
    with pytest.raises(FileExistsError, match=r"1 file\(s\) matching '\*\.nii' were already in .*existing: refuse"):
        src.open(timeout_s=5)


def test_folder_stall_resume_and_bad_file(tmp_path, run4d):
    col = Collector()
    src = start_folder(tmp_path, col, pattern="*.nii*", stall_timeout_s=0.3)
    data, affine = small_volume()
    w = make_writer(tmp_path, "nifti", affine=affine, shape=data.shape)
    w.write(data, 1)
    assert col.wait(lambda c: "stalled" in c.kinds(), 5)
    w.write(data, 2)
    assert col.wait(lambda c: "resumed" in c.kinds(), 5)
    os.symlink(RUN.absolute(), tmp_path / "whole_run.nii.gz")  # a 4D file: not a volume
    assert col.wait(lambda c: "bad_file" in c.kinds(), 5)
    stop(src)
    assert "48 volumes" in dict(col.statuses)["bad_file"]
    assert [v.index for v in col.volumes] == [1, 2]


def test_folder_missing_folder_is_a_clear_error(tmp_path):
    src = FolderSource("fmri", tmp_path / "nope", Callbacks(lambda v: None))
    with pytest.raises(FileNotFoundError, match="nope"):
        src.open(timeout_s=0.2)


# ------------------------------------------------------------------ LSL source
def _outlet(shape=(20, 22, 9), affine=None, **kw) -> VolumeOutlet:
    name = f"vol-{uuid.uuid4().hex[:8]}"
    return VolumeOutlet(name, shape, affine if affine is not None else small_volume()[1], 2.0, name, **kw)


@pytest.mark.lsl
def test_lsl_source_round_trip_and_gaps():
    data, affine = small_volume()
    outlet = _outlet(affine=affine, source="test")
    col = Collector()
    src = LslVolumeSource("fmri", outlet.name, Callbacks(col.on_volume, col.on_status), stall_timeout_s=5)
    src.open(timeout_s=10)
    assert src.describe() == {"kind": "lsl", "where": f"LSL {outlet.name}", "tr_s": 2.0, "shape": [20, 22, 9],
                              "first_index": 1, "source": "test"}
    src.start()
    assert outlet.wait_for_consumers(10)
    time.sleep(0.2)
    stamps = {}
    for i in (1, 2, 4, 3):
        stamps[i] = pylsl.local_clock() - 0.5
        outlet.push(data + i, i, stamps[i])
    assert col.wait(lambda c: len(c.volumes) == 4)
    stop(src)
    outlet.close()
    assert [v.index for v in col.volumes] == [1, 2, 4, 3]
    for v in col.volumes:
        assert np.array_equal(v.data, data + v.index) and v.data.flags.f_contiguous
        assert v.acquired == pytest.approx(stamps[v.index], abs=0.01)
        assert np.allclose(v.affine, affine)
    assert "missing" in col.kinds() and "out_of_order" in col.kinds()


@pytest.mark.lsl
def test_lsl_source_refuses_bad_streams():
    name = f"bad-{uuid.uuid4().hex[:8]}"
    info = pylsl.StreamInfo(name, "fMRI", 11, 0.5, pylsl.cf_float32, name)
    with pytest.raises(ValueError, match="no <volume>"):
        parse_stream_info(info)
    vol = info.desc().append_child("volume")
    vol.append_child_value("shape", "2 2 2")
    vol.append_child_value("affine", " ".join(map(str, np.eye(4).ravel())))
    vol.append_child_value("tr", "2")
    with pytest.raises(ValueError, match=r"channel_count 11 != 1 \+ 2\*2\*2 = 9"):
        parse_stream_info(info)
    eeg = pylsl.StreamInfo(name, "EEG", 9, 0.5, pylsl.cf_float32, name)
    with pytest.raises(ValueError, match="type is 'EEG'"):
        parse_stream_info(eeg)
    # the real thing, through resolve, reports the problem on open()
    outlet = pylsl.StreamOutlet(info)
    src = LslVolumeSource("fmri", name, Callbacks(lambda v: None, lambda s, d: None))
    with pytest.raises(ValueError, match="channel_count"):
        src.open(timeout_s=10)
    del outlet


# ------------------------------------------------------------------ timing (printed)
@pytest.mark.parametrize("watch", ["inotify", "poll"])
def test_print_file_to_volume_latency(tmp_path, run4d, watch):
    """File complete (rename done) -> on_volume called, 74x74x36, NIfTI and MOSAIC. Printed only."""
    data4, affine = run4d
    for fmt, pattern in (("nifti", "*.nii"), ("dicom", "*.dcm")):
        folder = tmp_path / fmt
        folder.mkdir()
        col = Collector()
        src = start_folder(folder, col, pattern=pattern, watch=watch, poll_interval_s=0.02)
        w = make_writer(folder, fmt, affine=affine, shape=data4.shape[:3], tr_s=1.97,
                        template=MOSAIC if fmt == "dicom" else None)
        done = []
        n = 15
        for i in range(n):
            raw = w.encode(data4[..., i], i + 1)
            write_file(folder / w.file_name(i + 1), raw)
            done.append(now())
            assert col.wait(lambda c, i=i: len(c.volumes) == i + 1)
            time.sleep(0.03)
        stop(src)
        lat = (np.array(col.cb_times) - np.array(done)) * 1000
        read = np.array([v.arrived - v.acquired for v in col.volumes]) * 1000
        print(f"\n{fmt:5s} {watch:7s} file complete -> Volume delivered: median {np.median(lat):.2f} ms, "
              f"max {lat.max():.2f} ms (appeared -> read: median {np.median(read):.2f} ms)")


@pytest.mark.lsl
@pytest.mark.parametrize("shape", [(74, 74, 36), (104, 104, 72)])
def test_print_lsl_push_to_volume_latency(shape):
    """Printed only: VolumeOutlet.push() start -> on_volume called (same host, loopback)."""
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    outlet = _outlet(shape=shape, affine=affine)
    col = Collector()
    src = LslVolumeSource("fmri", outlet.name, Callbacks(col.on_volume, col.on_status), stall_timeout_s=5)
    src.open(timeout_s=10)
    src.start()
    assert outlet.wait_for_consumers(10)
    time.sleep(0.2)
    data = np.random.default_rng(0).random(shape, dtype=np.float32) * 1000
    sent, push_ms = [], []
    for i in range(1, 13):
        t0 = now()
        outlet.push(data, i)
        push_ms.append((now() - t0) * 1000)
        sent.append(t0)
        assert col.wait(lambda c, i=i: len(c.volumes) == i)
        time.sleep(0.05)
    stop(src)
    outlet.close()
    assert np.array_equal(col.volumes[-1].data, data)
    lat = (np.array(col.cb_times) - np.array(sent)) * 1000
    print(f"\nLSL {'x'.join(map(str, shape))} ({np.prod(shape)} voxels): push {np.median(push_ms):.2f} ms, "
          f"push -> Volume delivered median {np.median(lat):.2f} ms, max {lat.max():.2f} ms (first {lat[0]:.0f} ms)")
