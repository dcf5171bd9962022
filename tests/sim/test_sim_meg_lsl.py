"""The MEG simulator over real LSL on loopback: the description reads back with the controller's own parsers,
the stamping rule holds at 5 kHz in chunks of 5, and rewards on a real marker outlet raise alpha."""

import threading
import uuid
import warnings
from pathlib import Path

import numpy as np
import pylsl
import pytest
from helpers import wait_for
from scipy import signal

from controller.dsp.meg.layout import MegLayout
from controller.dsp.meg.ssp import projector_matrix, projectors_from_stream
from controller.inputs.lsl.resolve import channel_field, channel_labels
from sim.meg.layout import read_layout, read_projectors
from sim.meg.participant import AlphaParticipant
from sim.meg.stream import MegStreamer
from sim.meg.stream_info import STATE_TYPE

pytestmark = pytest.mark.lsl

FIF = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "meg" / "sample_audvis_trunc_raw_sss.fif"
needs_fif = pytest.mark.skipif(not FIF.is_file(), reason=f"real MEG recording not available: {FIF}")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def resolve_one(name: str, timeout: float = 10.0) -> pylsl.StreamInfo:
    infos = pylsl.resolve_byprop("name", name, minimum=1, timeout=timeout)
    assert infos, f"LSL stream {name!r} not found within {timeout} s"
    return infos[0]


def projector_entries(info: pylsl.StreamInfo) -> list[dict[str, str]]:
    out, node = [], info.desc().child("projectors").child("projector")
    while not node.empty():
        out.append({key: node.child_value(key) for key in ("name", "active", "channels", "data")})
        node = node.next_sibling()
    return out


def locations(info: pylsl.StreamInfo) -> np.ndarray:
    rows, ch = [], info.desc().child("channels").child("channel")
    while not ch.empty():
        loc = ch.child("location")
        rows.append([float(loc.child_value(f"loc{k}")) for k in range(1, 13)])
        ch = ch.next_sibling()
    return np.array(rows)


class Running:
    """A streamer on a thread, stopped on exit."""

    def __init__(self, streamer: MegStreamer) -> None:
        self.streamer, self.stop, self.result = streamer, threading.Event(), {}
        self.thread = threading.Thread(target=lambda: self.result.update(stats=streamer.run(stop_event=self.stop)),
                                       daemon=True)

    def __enter__(self) -> MegStreamer:
        self.thread.start()
        return self.streamer

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.streamer.close()


@pytest.fixture(scope="module")
def ssp_file(tmp_path_factory):
    import mne

    raw = mne.io.read_raw_fif(FIF, preload=True, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a 1 s file: "covariance may be unreliable"
        projs = mne.compute_proj_raw(raw, duration=1, n_grad=2, n_mag=1, n_eeg=0, verbose=False)
    path = tmp_path_factory.mktemp("ssp") / "sample-proj.fif"
    mne.write_proj(path, projs, verbose=False)
    return path


@needs_fif
def test_description_reads_back_with_the_controllers_parsers(ssp_file):
    import mne

    layout = read_layout(FIF, all_channels=True).with_projectors(read_projectors(ssp_file))
    name = unique("sim-meg")
    with Running(MegStreamer(layout, rate=1000.0, chunk=10, name=name, marker_stream=None)):
        info = pylsl.StreamInlet(resolve_one(name)).info(timeout=5.0)
    assert info.type() == "MEG" and info.channel_format() == pylsl.cf_float32 and info.nominal_srate() == 1000.0
    raw_info = mne.io.read_info(FIF, verbose=False)
    labels = channel_labels(info)
    types = channel_field(info, "type")
    units = channel_field(info, "unit")
    assert labels == raw_info["ch_names"] and len(labels) == 376  # the file's channels, its order
    assert types == list(raw_info.get_channel_types())
    assert {(t, u) for t, u in zip(types, units)} == {("grad", "T/m"), ("mag", "T"), ("eeg", "V"), ("eog", "V"),
                                                      ("stim", "counts")}
    assert [int(c) for c in channel_field(info, "coil_type")] == [int(ch["coil_type"]) for ch in raw_info["chs"]]
    np.testing.assert_array_equal(locations(info), np.array([ch["loc"] for ch in raw_info["chs"]]))  # exact

    meg = MegLayout.from_stream(labels, types, units)
    assert len(meg.mags) == 102 and meg.pairs.shape == (102, 2)
    projectors = projectors_from_stream(projector_entries(info))
    expected = ["Average EEG reference"] + [p["desc"] for p in mne.read_proj(ssp_file, verbose=False)]
    assert [p.name for p in projectors] == expected and not any(p.active for p in projectors)
    from mne._fiff.proj import make_projector

    reference, nproj, _ = make_projector(list(raw_info["projs"]) + mne.read_proj(ssp_file, verbose=False), labels)
    assert nproj == 4
    np.testing.assert_allclose(projector_matrix(projectors, labels), reference, rtol=0, atol=1e-10)


@needs_fif
def test_meg_channels_only_by_default_and_no_eeg_projector():
    layout = read_layout(FIF)
    name = unique("sim-meg")
    with Running(MegStreamer(layout, rate=1000.0, chunk=10, name=name, marker_stream=None)):
        info = pylsl.StreamInlet(resolve_one(name)).info(timeout=5.0)
    assert info.channel_count() == 306 and set(channel_field(info, "type")) == {"grad", "mag"}
    assert projector_entries(info) == []  # the file's only projector spans EEG channels, not streamed


@needs_fif
def test_stamping_rule_at_5khz_in_chunks_of_5():
    rate, chunk = 5000.0, 5
    name = unique("sim-meg")
    streamer = MegStreamer(read_layout(FIF), rate=rate, chunk=chunk, name=name, marker_stream=None)
    with Running(streamer):
        inlet = pylsl.StreamInlet(resolve_one(name), max_buflen=30)
        inlet.open_stream(timeout=5.0)
        data, stamps = [], []
        while len(stamps) < 3 * rate:  # 3 s of samples
            d, ts = inlet.pull_chunk(timeout=1.0, max_samples=5000)
            assert ts, "the stream stalled"
            data.extend(d)
            stamps.extend(ts)
        first = streamer.first
    ts = np.asarray(stamps)
    j0 = int(round((ts[0] - first) * rate))
    # every sample carries first + j / rate, j counting every sample streamed: no gap, no drift, exact
    np.testing.assert_array_equal(ts, first + np.arange(j0, j0 + len(ts)) * (1.0 / rate))
    x = np.asarray(data, dtype=np.float64)
    assert x.shape == (len(ts), 306)
    layout = streamer.generator.layout
    sd = x.std(axis=0)
    assert 5e-14 < np.median(sd[layout.indices("mag")]) < 1e-12  # tesla
    assert 1e-12 < np.median(sd[layout.indices("grad")]) < 3e-11  # tesla per metre


def _alpha_power(x: np.ndarray, fs: float) -> float:
    f, p = signal.welch(x, fs, nperseg=int(fs))
    return float(p[(f >= 8) & (f <= 12)].sum())


@needs_fif
def test_rewards_on_a_marker_outlet_raise_alpha():
    rate = 1000.0
    name, markers_name = unique("sim-meg"), unique("sim-markers")
    markers = pylsl.StreamOutlet(pylsl.StreamInfo(markers_name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string,
                                                  markers_name))
    participant = AlphaParticipant(seed=4, learning_rate=0.01, fluctuation_sd=0.02)
    streamer = MegStreamer(read_layout(FIF), rate=rate, chunk=10, name=name, marker_stream=markers_name,
                           participant=participant)
    mags = streamer.generator.layout.indices("mag")
    best = mags[np.argmax(streamer.generator.alpha_weights[mags])]

    def pull(inlet: pylsl.StreamInlet, n: int) -> np.ndarray:
        got: list = []
        while len(got) < n:
            d, _ = inlet.pull_chunk(timeout=1.0, max_samples=n - len(got))
            assert d, "the stream stalled"
            got.extend(d)
        return np.asarray(got)[:, best]

    with Running(streamer):
        inlet = pylsl.StreamInlet(resolve_one(name), max_buflen=30)
        state = pylsl.StreamInlet(resolve_one(f"{name}-state"))
        assert state.info(timeout=5.0).type() == STATE_TYPE
        state.open_stream(timeout=5.0)
        inlet.open_stream(timeout=5.0)
        before = pull(inlet, int(3 * rate))
        alpha_before = np.asarray(state.pull_chunk(timeout=1.0)[0]).ravel()
        assert wait_for(lambda: streamer.listener is not None and streamer.listener.connected.is_set())
        for text in ["reward"] * 100 + ["baseline", "block_start:train"]:
            markers.push_sample([text])
        assert wait_for(lambda: participant.rewards == 100)
        pull(inlet, int(0.2 * rate))  # the gain ramps in over 50 ms of the next block
        after = pull(inlet, int(3 * rate))
        alpha_after = np.asarray(state.pull_chunk(timeout=1.0)[0]).ravel()
    assert participant.mean_gain == pytest.approx(np.e)  # 100 rewards x 0.01 in log amplitude
    assert 1.3e-13 < np.median(alpha_before) < 1.7e-13  # 150 fT at the start
    assert np.median(alpha_after) / np.median(alpha_before) == pytest.approx(np.e, rel=0.1)
    ratio = _alpha_power(after, rate) / _alpha_power(before, rate)
    assert ratio > 3.0  # e^2 = 7.4 in alpha power, background and estimation noise aside
