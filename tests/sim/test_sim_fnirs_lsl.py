"""The fNIRS simulator over real LSL on loopback: its description, its stamps, blocks and rewards from markers."""

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pylsl
import pytest
from helpers import wait_for

from sim.fnirs.generator import FnirsGenerator, canonical_hrf
from sim.fnirs.participant import FnirsParticipant
from sim.fnirs.stream import STATE_TYPE, FnirsStreamer
from sim.fnirs.stream_info import NIRS_TYPE, read_layout

pytestmark = pytest.mark.lsl

ROOT = Path(__file__).resolve().parents[2]
RATE = 20.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def resolve_one(name: str, timeout: float = 10.0) -> pylsl.StreamInfo:
    infos = pylsl.resolve_byprop("name", name, minimum=1, timeout=timeout)
    assert infos, f"LSL stream {name!r} not found within {timeout} s"
    return infos[0]


def marker_outlet(name: str) -> pylsl.StreamOutlet:
    return pylsl.StreamOutlet(pylsl.StreamInfo(name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, name))


class Running:
    """A streamer running in a thread for the duration of a ``with``."""

    def __init__(self, chunk: int = 4, marker_stream: str | None = None) -> None:
        self.name = unique("sim-fnirs")
        self.streamer = FnirsStreamer(FnirsGenerator(rate=RATE, seed=3), FnirsParticipant(), self.name,
                                      chunk=chunk, marker_stream=marker_stream)
        self.stop = threading.Event()
        self.result: dict = {}

    def __enter__(self) -> "Running":
        self.streamer.open()
        self.thread = threading.Thread(target=lambda: self.result.update(stats=self.streamer.run(stop_event=self.stop)),
                                       daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)
        self.streamer.close()


def pull(inlet: pylsl.StreamInlet, until, timeout: float = 10.0) -> tuple[list, list]:
    data, stamps = [], []
    wait_for(lambda: bool(_extend(inlet, data, stamps)) or until(data, stamps), timeout)
    return data, stamps


def _extend(inlet, data, stamps) -> None:
    d, ts = inlet.pull_chunk(timeout=0.05)
    data.extend(d)
    stamps.extend(ts)


def test_description_parses_back_to_the_layout_and_samples_follow_the_stamping_rule():
    with Running(chunk=4) as run:
        montage = run.streamer.generator.montage
        inlet = pylsl.StreamInlet(resolve_one(run.name), max_buflen=30)
        info = inlet.info(timeout=5.0)
        assert info.type() == NIRS_TYPE and info.channel_format() == pylsl.cf_float32
        assert info.nominal_srate() == RATE and info.channel_count() == 60
        assert info.desc().child_value("manufacturer") == "neuroreflex simulator"
        layout = read_layout(info)
        assert layout.labels == montage.labels
        assert [c.wavelength for c in layout.columns] == [760.0, 850.0] * 30
        assert {c.measure for c in layout.columns} == {"intensity"} and {c.unit for c in layout.columns} == {"a.u."}
        assert [(c.source, c.detector) for c in layout.columns[:6]] == [("S1", "D1")] * 2 + [("S1", "D2")] * 2 + [
            ("S1", "D9")] * 2
        assert layout.sources.keys() == montage.sources.keys() and layout.detectors.keys() == montage.detectors.keys()
        for label, xyz in {**montage.sources, **montage.detectors}.items():
            assert (layout.sources | layout.detectors)[label] == tuple(xyz)  # mm, exact
        assert [layout.distance_mm(i) for i in range(0, 60, 2)] == pytest.approx(list(montage.distances_mm))
        ch = info.desc().child("channels").child("channel")
        assert ch.child_value("type") == "NIRS" and ch.child_value("label") == "S1_D1 760"
        sim = info.desc().child("simulation")
        first, dt = float(sim.child_value("first_sample_lsl_time")), float(sim.child_value("sample_interval_s"))
        assert first == run.streamer.lsl_time(0) and dt == 1 / RATE

        inlet.open_stream(timeout=5.0)
        data, stamps = pull(inlet, lambda d, s: len(s) >= 40)
        received = pylsl.local_clock()
    x, ts = np.asarray(data), np.asarray(stamps)
    j = np.round((ts - first) * RATE).astype(int)
    np.testing.assert_array_equal(np.diff(j), 1)  # consecutive samples, none lost
    np.testing.assert_array_equal(ts, first + j * (1.0 / RATE))  # sample j carries first + j / rate, exactly
    assert ts[-1] <= received  # never stamped in the future: a chunk leaves once its last sample is due
    assert np.all(x > 0) and x.shape[1] == 60


def test_a_block_marker_starts_a_response_at_its_timestamp():
    markers_name = unique("sim-markers")
    markers = marker_outlet(markers_name)
    with Running(chunk=2, marker_stream=markers_name) as run:
        streamer = run.streamer
        state = pylsl.StreamInlet(resolve_one(streamer.state_name))
        assert state.info(timeout=5.0).type() == STATE_TYPE
        state.open_stream(timeout=5.0)
        assert wait_for(lambda: streamer.listener is not None and streamer.listener.connected.is_set())
        # stamped ahead (known before its samples are generated), half-way between two samples' stamps
        j = int((pylsl.local_clock() + 0.5 - streamer.lsl_time(0)) * RATE)
        onset = streamer.lsl_time(j) + 0.5 / RATE
        markers.push_sample(["block_start:regulate"], onset)
        data, stamps = pull(state, lambda d, s: bool(s) and s[-1] > onset + 3.0)
    x, ts = np.asarray(data), np.asarray(stamps)
    active = x[:, 2] > 0
    assert not active[ts < onset].any() and active[ts >= onset].all()
    # the true neural HbO: gain x 1 uM x the HRF's running sum since the first active sample
    k = np.round((ts - streamer.lsl_time(0)) * RATE).astype(int)
    first_active = j + 1
    step = np.cumsum(canonical_hrf(RATE))
    since = k - first_active
    expected = np.where(since >= 0, 0.4 * step[np.clip(since, 0, len(step) - 1)], 0.0)
    np.testing.assert_allclose(x[:, 0], expected, rtol=1e-9, atol=1e-12)
    assert x[-1, 0] > 0.03  # rising 3 s in (uM)
    assert streamer.participant.blocks == 1


def test_reward_markers_raise_the_gain():
    markers_name = unique("sim-markers")
    markers = marker_outlet(markers_name)
    with Running(marker_stream=markers_name) as run:
        streamer = run.streamer
        state = pylsl.StreamInlet(resolve_one(streamer.state_name))
        state.open_stream(timeout=5.0)
        assert wait_for(lambda: streamer.listener is not None and streamer.listener.connected.is_set())
        for text in ("reward", "block_start:rest", "reward:goal", "Reward"):
            markers.push_sample([text])
        assert wait_for(lambda: streamer.participant.rewards == 3)
        expected = 1 - 0.6 * 0.98**3
        assert streamer.participant.gain == pytest.approx(expected)
        data, _ = pull(state, lambda d, s: bool(d) and d[-1][1] == pytest.approx(expected))
        assert data[-1][1] == pytest.approx(expected)  # the plateau a block would now reach, uM
    stats = run.result["stats"]
    assert stats.rewards == 3 and stats.markers == 4 and stats.blocks == 1 and stats.gain == pytest.approx(expected)


def test_a_run_stops_after_its_duration_in_whole_chunks():
    streamer = FnirsStreamer(FnirsGenerator(rate=RATE, seed=1), FnirsParticipant(), unique("sim-fnirs"), chunk=3)
    stats = streamer.run(duration=0.5)
    streamer.close()
    assert stats.samples == 12 and stats.seconds == pytest.approx(0.6)  # ceil(10 / 3) chunks of 3
    assert stats.rewards == 0 and stats.blocks == 0 and stats.gain == 0.4


def test_cli_streams_until_sigterm_and_rejects_simulator_options_with_replay():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    name = unique("cli-fnirs")
    proc = subprocess.Popen([sys.executable, "-m", "sim", "fnirs", "--name", name, "--marker-stream", "",
                             "--motion-every", "2"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        info = resolve_one(name, timeout=20.0)
        assert info.type() == NIRS_TYPE and info.nominal_srate() == 10.0 and info.channel_count() == 60
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"streaming fNIRS '{name}' (60 columns: 22 long + 8 short pairs x 760/850 nm @ 10 Hz" in out
    assert "neuroreflex sim: stopped after" in out
    bad = subprocess.run([sys.executable, "-m", "sim", "fnirs", "--replay", "x.snirf", "--motion-every", "3"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--motion-every: options of the simulator" in bad.stderr
