"""The simulator over real LSL on loopback: streaming, rewards from markers, replay of a real file."""

import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pylsl
import pytest
from helpers import wait_for

from sim.markers import MarkerListener, is_reward
from sim.montage import channel_labels
from sim.stream import STATE_TYPE, EegStreamer

pytestmark = pytest.mark.lsl

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EDF_64 = DATA / "eeg" / "physionet_eegmmidb_S001R01_baseline_eyes_open.edf"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def resolve_one(name: str, timeout: float = 10.0) -> pylsl.StreamInfo:
    infos = pylsl.resolve_byprop("name", name, minimum=1, timeout=timeout)
    assert infos, f"LSL stream {name!r} not found within {timeout} s"
    return infos[0]


def marker_outlet(name: str) -> pylsl.StreamOutlet:
    info = pylsl.StreamInfo(name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, name)
    return pylsl.StreamOutlet(info)


def channel_meta(info: pylsl.StreamInfo, key: str) -> list[str]:
    out, ch = [], info.desc().child("channels").child("channel")
    while not ch.empty():
        out.append(ch.child_value(key))
        ch = ch.next_sibling()
    return out


def test_reward_marker_text():
    assert is_reward("reward") and is_reward("Reward: goal met") and is_reward(" reward")
    assert not is_reward("rest") and not is_reward("no reward") and not is_reward("")


def test_stream_round_trip_with_rewards_and_state():
    eeg_name, markers_name = unique("sim-eeg"), unique("sim-markers")
    rate, chunk = 250.0, 10
    markers = marker_outlet(markers_name)
    streamer = EegStreamer(channels=8, rate=rate, chunk=chunk, name=eeg_name, marker_stream=markers_name, seed=1)
    stop = threading.Event()
    result = {}
    thread = threading.Thread(target=lambda: result.update(stats=streamer.run(stop_event=stop)), daemon=True)
    thread.start()
    try:
        info = resolve_one(eeg_name)
        inlet = pylsl.StreamInlet(info, max_buflen=30)
        full = inlet.info(timeout=5.0)
        assert full.type() == "EEG" and full.channel_count() == 8
        assert full.nominal_srate() == rate and full.channel_format() == pylsl.cf_float32
        assert channel_meta(full, "label") == channel_labels(8)
        assert set(channel_meta(full, "unit")) == {"volts"} and set(channel_meta(full, "type")) == {"EEG"}

        state_inlet = pylsl.StreamInlet(resolve_one(f"{eeg_name}-state"))
        assert state_inlet.info().type() == STATE_TYPE

        # rewards sent by a "controller" reach the participant
        assert wait_for(lambda: streamer.listener is not None and streamer.listener.connected.is_set())
        for text in ("reward", "rest", "reward:goal", "reward", "baseline", "reward", "reward"):
            markers.push_sample([text])
        assert wait_for(lambda: streamer.participant.rewards == 5), streamer.participant.rewards
        assert streamer.listener.markers == 7

        # data keep flowing in real time, stamped on the sample grid
        inlet.open_stream(timeout=5.0)
        inlet.pull_chunk(timeout=0.0, max_samples=100_000)  # drop what queued up while we set up
        t_start = pylsl.local_clock()
        data, stamps = [], []
        while pylsl.local_clock() - t_start < 1.5:
            d, ts = inlet.pull_chunk(timeout=0.2, max_samples=1000)
            data.extend(d)
            stamps.extend(ts)
        elapsed = pylsl.local_clock() - t_start
        x, ts = np.asarray(data), np.asarray(stamps)
        assert len(ts) >= 0.8 * elapsed * rate
        np.testing.assert_allclose(np.diff(ts), 1.0 / rate, atol=1e-6)
        assert np.all(np.abs(x) < 1e-3) and np.all(x.std(axis=0) > 1e-6)  # volts

        state: list = []
        assert wait_for(lambda: bool(state.extend(state_inlet.pull_chunk(timeout=0.2)[0]) or state), 5.0)
        assert all(0.3 < s[0] < 20 for s in state)  # the participant's true theta/beta ratio
    finally:
        stop.set()
        thread.join(10)
    stats = result["stats"]
    assert stats.rewards == 5 and stats.markers == 7
    assert stats.samples % chunk == 0 and stats.samples > rate
    streamer.close()


def test_stream_stops_after_duration_without_a_controller():
    streamer = EegStreamer(channels=4, rate=200.0, chunk=7, name=unique("sim-eeg"), marker_stream=unique("absent"))
    stats = streamer.run(duration=0.5)
    streamer.close()
    assert stats.samples == 105  # ceil(100 / 7) chunks of 7
    assert stats.rewards == 0 and stats.mean_tbr == pytest.approx(3.0)


def test_marker_listener_reconnects_when_the_controller_restarts():
    name = unique("sim-markers")
    got = []
    listener = MarkerListener(name, got.append).start()
    try:
        outlet = marker_outlet(name)
        assert wait_for(listener.connected.is_set)
        outlet.push_sample(["reward"])
        assert wait_for(lambda: sum(got) == 1)
        del outlet  # the controller goes away
        assert wait_for(lambda: not listener.connected.is_set())
        outlet = marker_outlet(name)  # and comes back
        assert wait_for(lambda: listener.connections == 2 and listener.connected.is_set())
        outlet.push_sample(["reward"])
        outlet.push_sample(["reward"])
        assert wait_for(lambda: sum(got) == 3)
    finally:
        listener.stop()


def test_marker_listener_by_pattern_follows_the_only_session_and_never_guesses():
    """A standalone simulator learns from 'neuroreflex-*-markers': the only session visible; with two
    sessions it takes neither (it cannot know which one its participant is in)."""
    base = unique("pat")
    got = []
    first = marker_outlet(f"{base}-s1-markers")
    second = marker_outlet(f"{base}-s2-markers")
    # started once both sessions exist (started between them, it would rightly follow the only one it saw)
    assert wait_for(lambda: len(pylsl.resolve_bypred(f"starts-with(name,'{base}-')", 0, 1.0)) == 2)
    listener = MarkerListener(f"{base}-*-markers", got.append, resolve_timeout=0.3).start()
    try:
        time.sleep(1.5)
        assert not listener.connected.is_set()
        del second
        assert wait_for(listener.connected.is_set)
        first.push_sample(["reward"])
        assert wait_for(lambda: sum(got) == 1)
    finally:
        listener.stop()


@pytest.mark.skipif(not EDF_64.is_file(), reason=f"real recording not available: {EDF_64}")
def test_replay_of_a_real_edf():
    from sim.replay import make_player

    name = unique("sim-replay")
    player = make_player(EDF_64, name=name, chunk=16)
    player.start()
    try:
        inlet = pylsl.StreamInlet(resolve_one(name))
        info = inlet.info(timeout=5.0)
        assert info.channel_count() == 64 and info.nominal_srate() == 160.0
        labels = channel_meta(info, "label")
        assert labels[0] == "Fc5." and "Cz.." in labels  # kept as in the file
        inlet.open_stream(timeout=5.0)
        n, chunks = 0, []
        deadline = time.monotonic() + 10
        while n < 160 and time.monotonic() < deadline:
            d, ts = inlet.pull_chunk(timeout=0.5)
            chunks.extend(d)
            n += len(ts)
        x = np.asarray(chunks)
        assert n >= 160 and x.shape[1] == 64
        assert 1e-6 < np.median(x.std(axis=0)) < 1e-3  # volts, as MNE loads EDF
    finally:
        player.stop()
