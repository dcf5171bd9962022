"""Stream inputs on real LSL (loopback): resolving, channel labels, stalls, reconnects, clock jumps."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pylsl
import pytest
from helpers import wait_for

from controller.inputs.lsl.reader import InputReader
from controller.inputs.lsl.resolve import StreamNotFound, channel_labels, resolve
from controller.inputs.source import Callbacks
from controller.lang.compiled import StreamSelector

pytestmark = pytest.mark.lsl


def make_outlet(name: str, n_ch: int = 4, rate: float = 100.0, source_id: str | None = None,
                labels: list[str] | None = None) -> pylsl.StreamOutlet:
    info = pylsl.StreamInfo(name, "EEG", n_ch, rate, "float32", source_id or name)
    if labels:
        chans = info.desc().append_child("channels")
        for lab in labels:
            chans.append_child("channel").append_child_value("label", lab)
    return pylsl.StreamOutlet(info)


class Collector:
    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.stamps: list[np.ndarray] = []
        self.status: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def on_chunk(self, data, ts) -> None:
        with self.lock:
            self.chunks.append(np.array(data))
            self.stamps.append(np.array(ts))

    def on_status(self, status, detail) -> None:
        self.status.append((status, detail))

    def n(self) -> int:
        with self.lock:
            return sum(len(s) for s in self.stamps)

    def statuses(self) -> list[str]:
        return [s for s, _ in self.status]


def test_resolve_by_name_and_labels():
    name = f"t-{uuid.uuid4().hex[:8]}"
    outlet = make_outlet(name, 3, labels=["Fz", "Cz", "Pz"])  # noqa: F841 (kept alive)
    info = resolve(StreamSelector(name=name, type="EEG"), timeout_s=5)
    assert info.name() == name
    assert channel_labels(info) == ["ch1", "ch2", "ch3"]  # a resolver's answer has no desc
    assert channel_labels(pylsl.StreamInlet(info).info(timeout=5)) == ["Fz", "Cz", "Pz"]


def test_missing_labels_fall_back_to_generic_names():
    name = f"t-{uuid.uuid4().hex[:8]}"
    outlet = make_outlet(name, 2)  # noqa: F841
    info = resolve(StreamSelector(name=name), timeout_s=5)
    assert channel_labels(pylsl.StreamInlet(info).info(timeout=5)) == ["ch1", "ch2"]


def test_not_found_error_lists_what_is_visible():
    visible = f"visible-{uuid.uuid4().hex[:8]}"
    outlet = make_outlet(visible)  # noqa: F841
    with pytest.raises(StreamNotFound) as err:
        resolve(StreamSelector(name=f"absent-{uuid.uuid4().hex[:8]}"), timeout_s=0.5)
    msg = str(err.value)
    assert "no LSL stream matches [name='absent-" in msg
    assert visible in msg


def test_two_matching_streams_is_an_error_not_a_guess():
    name = f"dup-{uuid.uuid4().hex[:8]}"
    a = make_outlet(name, source_id=name + "a")  # noqa: F841
    b = make_outlet(name, source_id=name + "b")  # noqa: F841
    time.sleep(0.3)
    with pytest.raises(StreamNotFound, match="2 LSL streams match"):
        resolve(StreamSelector(name=name), timeout_s=3)


@pytest.mark.parametrize("chunk", [1, 7, 32])
def test_reader_delivers_every_sample_in_order(chunk):
    name = f"t-{uuid.uuid4().hex[:8]}"
    outlet = make_outlet(name, 4, rate=1000.0)
    info = resolve(StreamSelector(name=name), 5)
    col = Collector()
    reader = InputReader("eeg", info, Callbacks(lambda c: col.on_chunk(c.data, c.timestamps), col.on_status), stall_timeout_s=2.0)
    reader.open()
    reader.start()
    n_total = 700
    data = np.arange(n_total * 4, dtype=np.float32).reshape(n_total, 4)
    t0 = pylsl.local_clock()
    stamps = t0 + np.arange(n_total) / 1000.0
    for i in range(0, n_total, chunk):
        for j in range(i, min(i + chunk, n_total)):
            outlet.push_sample(data[j], stamps[j], pushthrough=(j == min(i + chunk, n_total) - 1))
    assert wait_for(lambda: col.n() >= n_total)
    reader.stop()
    reader.join(2)
    got = np.concatenate(col.chunks)
    np.testing.assert_array_equal(got, data)
    got_t = np.concatenate(col.stamps)
    # the inlet applies liblsl's clock-offset estimate (proc_clocksync): on loopback it is ~0 but, from
    # round trips on a loaded machine, it may be off by tens of microseconds. The intervals must be exact.
    np.testing.assert_allclose(np.diff(got_t), np.diff(stamps), atol=1e-6)
    assert abs(np.median(got_t - stamps)) < 1e-3
    assert col.statuses() == ["connected"]


def test_stall_then_resume_then_clock_jump():
    name = f"t-{uuid.uuid4().hex[:8]}"
    outlet = make_outlet(name, 2, rate=100.0)
    info = resolve(StreamSelector(name=name), 5)
    col = Collector()
    reader = InputReader("eeg", info, Callbacks(lambda c: col.on_chunk(c.data, c.timestamps), col.on_status), stall_timeout_s=0.3, clock_jump_s=0.5)
    reader.open()
    reader.start()
    t = pylsl.local_clock()
    for i in range(10):
        outlet.push_sample([0.0, 0.0], t + i / 100)
    assert wait_for(lambda: col.n() >= 10)
    assert wait_for(lambda: "stalled" in col.statuses())  # nothing pushed for > 0.3 s
    t = pylsl.local_clock()
    outlet.push_sample([1.0, 1.0], t)
    assert wait_for(lambda: "resumed" in col.statuses())
    outlet.push_sample([1.0, 1.0], t + 0.01)
    outlet.push_sample([1.0, 1.0], t + 5.0)  # the sender's clock jumped 5 s ahead
    assert wait_for(lambda: "clock_jump" in col.statuses())
    outlet.push_sample([1.0, 1.0], t + 1.0)  # and back
    assert wait_for(lambda: col.statuses().count("clock_jump") >= 2)
    reader.stop()
    reader.join(2)
    assert col.statuses()[:3] == ["connected", "stalled", "resumed"]
    detail = dict((s, d) for s, d in col.status)["clock_jump"]
    assert "ms between samples" in detail


def test_lost_samples_up_to_max_gap_are_a_gap_and_longer_ones_a_clock_jump():
    """A hiccup (1.2 s of samples lost) keeps the features' long-term state; 3 s with max_gap 2 s does not."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    outlet = make_outlet(name, 2, rate=100.0)
    info = resolve(StreamSelector(name=name), 5)
    col = Collector()
    reader = InputReader("eeg", info, Callbacks(lambda c: col.on_chunk(c.data, c.timestamps), col.on_status), stall_timeout_s=5.0, max_gap_s=2.0)
    reader.open()
    reader.start()
    t = pylsl.local_clock()
    stamps = [t + i / 100 for i in range(20)] + [t + 0.19 + 1.21 + i / 100 for i in range(20)]
    for s in stamps:
        outlet.push_sample([0.0, 0.0], s)
    assert wait_for(lambda: col.n() >= 40)
    assert col.statuses() == ["connected", "gap"]
    assert reader.last_gap_s == pytest.approx(1.2, abs=1e-3)
    assert "1200 ms of samples missing" in dict(col.status)["gap"]
    outlet.push_sample([0.0, 0.0], stamps[-1] + 3.01)
    assert wait_for(lambda: "clock_jump" in col.statuses())
    reader.stop()
    reader.join(2)
    assert reader.last_gap_s == pytest.approx(3.0, abs=1e-3)
    assert "more than max_gap 2 s" in dict(col.status)["clock_jump"]


def test_reader_recovers_when_the_stream_comes_back():
    name = f"t-{uuid.uuid4().hex[:8]}"
    source_id = f"sid-{uuid.uuid4().hex[:8]}"
    outlet = make_outlet(name, 2, rate=100.0, source_id=source_id)
    info = resolve(StreamSelector(name=name), 5)
    col = Collector()
    reader = InputReader("eeg", info, Callbacks(lambda c: col.on_chunk(c.data, c.timestamps), col.on_status), stall_timeout_s=0.3)
    reader.open()
    reader.start()
    outlet.push_sample([1.0, 2.0])
    assert wait_for(lambda: col.n() >= 1)
    del outlet  # the amplifier goes away
    assert wait_for(lambda: "stalled" in col.statuses())
    outlet = make_outlet(name, 2, rate=100.0, source_id=source_id)  # and comes back
    stop = threading.Event()

    def keep_pushing():
        while not stop.is_set():
            outlet.push_sample([3.0, 4.0])
            time.sleep(0.01)

    pusher = threading.Thread(target=keep_pushing, daemon=True)
    pusher.start()
    try:
        assert wait_for(lambda: "resumed" in col.statuses(), timeout=30)
    finally:
        stop.set()
        pusher.join(1)
        reader.stop()
        reader.join(2)
    assert np.concatenate(col.chunks)[-1].tolist() == [3.0, 4.0]
