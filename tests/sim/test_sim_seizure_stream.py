"""Simulated seizures over real LSL: onset/offset markers stamped with their samples' own timestamps, the
schedule in the stream description, the samples equal to the offline recording, and `sim eeg --seizure`."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pylsl
import pytest
from scipy import signal

from sim.participant import ParticipantConfig, ParticipantModel
from sim.seizure import SEIZURE_OFFSET, SEIZURE_ONSET, Seizure, SeizureConfig, SeizureSchedule, simulate_seizures
from sim.stream import EegStreamer

pytestmark = pytest.mark.lsl

REPO = Path(__file__).resolve().parents[2]
PROTOCOL_LABELS = ("C3", "C4", "Cz", "P3", "P4", "T3", "T4", "T5")  # protocols/seizure_responsive.yaml


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def inlet(name: str) -> pylsl.StreamInlet:
    found = pylsl.resolve_byprop("name", name, minimum=1, timeout=20)
    assert found, f"LSL stream {name!r} not found"
    stream = pylsl.StreamInlet(found[0], max_buflen=60)  # no clock processing: stamps as pushed
    stream.open_stream(timeout=5)
    return stream


def child(node: pylsl.XMLElement, *path: str) -> pylsl.XMLElement:
    for name in path:
        node = node.child(name)
    return node


def children(node: pylsl.XMLElement, name: str) -> list[pylsl.XMLElement]:
    out, item = [], node.child(name)
    while not item.empty():
        out.append(item)
        item = item.next_sibling(name)
    return out


class Collector:
    """Pulls an EEG inlet and a marker inlet until told to stop, then drains both."""

    def __init__(self, eeg: pylsl.StreamInlet, marks: pylsl.StreamInlet) -> None:
        self.eeg, self.marks = eeg, marks
        self.data: list = []
        self.stamps: list[float] = []
        self.labels: list[str] = []
        self.mark_stamps: list[float] = []

    def pull(self, timeout: float = 0.2) -> int:
        d, ts = self.eeg.pull_chunk(timeout=timeout, max_samples=10_000)
        self.data += d
        self.stamps += ts
        m, tm = self.marks.pull_chunk(timeout=0.0)
        self.labels += [s[0] for s in m]
        self.mark_stamps += tm
        return len(ts) + len(tm)

    def until(self, done, hang_guard_s: float = 60.0) -> None:
        deadline = time.monotonic() + hang_guard_s  # a hang guard, not a timing assertion
        while not done() and time.monotonic() < deadline:
            self.pull()
        assert done(), "the simulator never finished"
        while self.pull(timeout=0.5):
            pass


def test_stream_announces_onset_and_offset_at_their_samples_and_carries_the_offline_recording():
    rate, chunk, name = 250.0, 8, unique("seizure-stream")
    schedule = SeizureSchedule((Seizure(0.6, 0.8),), SeizureConfig(focus="T3"))
    steady = ParticipantModel(ParticipantConfig(fluctuation_sd=0.0, learning_rate=0.0))
    streamer = EegStreamer(channels=PROTOCOL_LABELS, rate=rate, chunk=chunk, name=name, marker_stream=None, seed=4,
                           participant=steady, seizures=schedule)
    streamer.open()  # t0 fixed: the description can give the onset's LSL time before any sample is sent
    eeg, marks = inlet(name), inlet(f"{name}-annotations")
    info = eeg.info(timeout=5)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(stats=streamer.run(duration=2.0)), daemon=True)
    worker.start()
    got = Collector(eeg, marks)
    got.until(lambda: not worker.is_alive())
    streamer.close()

    node = child(info.desc(), "seizures")
    assert node.child_value("annotation_stream") == f"{name}-annotations"
    assert (node.child_value("focus"), node.child_value("focus_channel")) == ("T3", "T3")
    [seizure] = children(node, "seizure")
    assert (int(seizure.child_value("onset_sample")), int(seizure.child_value("offset_sample"))) == (150, 350)
    assert float(seizure.child_value("onset_s")) == 0.6 and float(seizure.child_value("duration_s")) == 0.8
    first, dt = float(node.child_value("first_sample_lsl_time")), float(node.child_value("sample_interval_s"))
    assert first == streamer.lsl_time(0) and dt == 1 / rate
    onset_t, offset_t = float(seizure.child_value("onset_lsl_time")), float(seizure.child_value("offset_lsl_time"))
    assert onset_t == first + 150 * dt and offset_t == first + 350 * dt  # the published rule, to the last bit
    delays = {ch.child_value("label"): float(ch.child_value("delay_s")) for ch in children(child(node, "recruitment"),
                                                                                        "channel")}
    assert set(delays) == set(PROTOCOL_LABELS) and delays["T3"] == 0.0 and delays["T5"] < delays["C3"] < delays["T4"]

    # every sample where the rule puts it; the markers stamped with exactly their samples' stamps
    stamps = np.asarray(got.stamps)
    assert result["stats"].samples == len(stamps) == 504 and result["stats"].seizure_markers == 2
    np.testing.assert_array_equal(stamps, first + np.arange(len(stamps)) * dt)
    assert got.labels == [SEIZURE_ONSET, SEIZURE_OFFSET] and got.mark_stamps == [onset_t, offset_t]
    assert stamps[150] == onset_t and stamps[350] == offset_t

    # the streamed samples are the offline recording's (same seed, a participant whose ratio stays put)
    offline = simulate_seizures(len(stamps) / rate, schedule, channels=PROTOCOL_LABELS, rate=rate, seed=4,
                                tbr=steady.tbr)
    np.testing.assert_allclose(np.asarray(got.data, dtype=np.float32), offline.data.astype(np.float32),
                               rtol=2e-7, atol=1e-13)


def test_cli_streams_a_scheduled_seizure_and_announces_its_onset():
    """`sim eeg --seizure 5:10 --duration 8`: the onset is in the description and on the marker stream at the
    onset sample's own timestamp; the seizure outlasts the stream, so no offset marker comes."""
    name, rate = unique("seizure-cli"), 250.0
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim", "eeg", "--seizure", "5:10", "--duration", "8", "--name", name,
         "--channels", ",".join(PROTOCOL_LABELS), "--rate", f"{rate:g}", "--seizure-focus", "left-temporal",
         "--marker-stream", f"absent-{name}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        eeg, marks = inlet(name), inlet(f"{name}-annotations")
        info = eeg.info(timeout=5)
        got = Collector(eeg, marks)
        got.until(lambda: proc.poll() is not None)
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "seizures at 5 s (10 s); focus T3" in out and "1 seizure markers" in out

    node = child(info.desc(), "seizures")
    [seizure] = children(node, "seizure")
    assert int(seizure.child_value("onset_sample")) == 1250 and float(seizure.child_value("onset_s")) == 5.0
    assert float(seizure.child_value("duration_s")) == 10.0 and int(seizure.child_value("offset_sample")) == 3750
    onset_t = float(seizure.child_value("onset_lsl_time"))
    first, dt = float(node.child_value("first_sample_lsl_time")), float(node.child_value("sample_interval_s"))
    assert onset_t == first + 1250 * dt
    assert got.labels == [SEIZURE_ONSET] and got.mark_stamps == [onset_t]

    stamps, data = np.asarray(got.stamps), np.asarray(got.data)
    [at] = np.flatnonzero(stamps == onset_t)  # the marked sample arrived, stamped exactly so
    j = np.rint((stamps - first) / dt).astype(int)  # stream sample numbers by the published rule
    assert j[at] == 1250 and j[-1] == 1999 and np.all(np.diff(j) == 1)
    # the focus (T3) carries the discharge after onset: 2-12 Hz amplitude well above the seconds before
    t3 = signal.sosfiltfilt(signal.butter(4, [2.0, 12.0], btype="bandpass", fs=rate, output="sos"),
                            data[:, PROTOCOL_LABELS.index("T3")])
    before, after = t3[at - int(2.5 * rate) : at], t3[at + int(2.0 * rate) : at + int(3.0 * rate)]
    assert len(before) == int(2.5 * rate) and after.std() > 1.4 * before.std()
