"""The event journal: every line on disk as soon as it is published, crash-tolerant reading."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from controller.events import DECISION, FAULT, FEATURE, Event, EventBus
from controller.recording.journal import (
    Journal,
    JournalError,
    TruncatedJournalWarning,
    read_journal,
)


def _wait_for_lines(path: Path, n: int, timeout: float = 5.0) -> list[str]:
    """Poll the file until it holds ``n`` complete lines (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.005)


def _feature(i: int) -> Event:
    return Event(FEATURE, 100.0 + i, 99.9 + i, {"name": "tbr", "value": 1.5 + i, "sample_index": 25 * i})


def test_each_event_is_on_disk_while_the_writer_runs(tmp_path: Path) -> None:
    bus = EventBus()
    journal = Journal(tmp_path / "journal.jsonl")
    journal.start(bus)
    try:
        for i in range(5):
            event = _feature(i)
            bus.publish(event)
            lines = _wait_for_lines(journal.path, i + 1)
            assert len(lines) == i + 1, f"event {i} not flushed to disk"
            assert json.loads(lines[-1]) == event.to_dict()
        assert journal.running
    finally:
        journal.stop()
    assert not journal.running
    assert journal.lines_written == 5


def test_stop_writes_everything_still_queued_in_order(tmp_path: Path) -> None:
    bus = EventBus()
    journal = Journal(tmp_path / "journal.jsonl", fsync=True)
    journal.start(bus)
    events = [_feature(i) for i in range(100)]
    for e in events:
        bus.publish(e)
    journal.stop()
    journal.stop()  # idempotent
    assert read_journal(journal.path) == [e.to_dict() for e in events]
    bus.publish(_feature(999))  # after stop: unsubscribed, not written
    assert len(read_journal(journal.path)) == 100


def test_numpy_values_and_nan_round_trip(tmp_path: Path) -> None:
    bus = EventBus()
    with Journal(tmp_path / "j.jsonl") as journal:
        journal.start(bus)
        bus.publish(Event(FEATURE, 1.0, 0.9, {"name": "x", "value": np.float32(0.25), "sample_index": np.int64(7)}))
        bus.publish(Event(FEATURE, 2.0, 1.9, {"name": "x", "value": float("nan"), "sample_index": 8}))
        bus.publish(Event(DECISION, 3.0, 2.9, {"rule": 0, "chans": np.arange(3), "path": tmp_path}))
    first, second, third = read_journal(tmp_path / "j.jsonl")
    assert first["data"] == {"name": "x", "value": 0.25, "sample_index": 7}
    assert math.isnan(second["data"]["value"])
    assert third["data"] == {"rule": 0, "chans": [0, 1, 2], "path": str(tmp_path)}


def test_truncated_last_line_is_reported_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    bus = EventBus()
    journal = Journal(path)
    journal.start(bus)
    for i in range(3):
        bus.publish(_feature(i))
    journal.stop()
    with open(path, "a", encoding="utf-8") as f:  # a crash in the middle of the 4th line
        f.write('{"kind":"decision","t":12.5,"t_source":12.4,"data":{"rule":0,"act')
    with pytest.warns(TruncatedJournalWarning, match=r"journal.jsonl:4: truncated"):
        events = read_journal(path)
    assert events == [_feature(i).to_dict() for i in range(3)]


def test_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text(json.dumps(_feature(0).to_dict()) + "\n" + json.dumps(_feature(1).to_dict()))
    assert read_journal(path) == [_feature(0).to_dict(), _feature(1).to_dict()]


def test_corrupt_line_in_the_middle_raises_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    good = json.dumps(_feature(0).to_dict())
    path.write_text(f"{good}\n{{oops\n{good}\n")
    with pytest.raises(JournalError, match=r"journal.jsonl:2: not valid JSON"):
        read_journal(path)
    path.write_text(f"{good}\n[1, 2]\n")
    with pytest.raises(JournalError, match=r"journal.jsonl:2: expected an event object"):
        read_journal(path)


def test_empty_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text("")
    assert read_journal(path) == []


class _StallingJournal(Journal):
    """A journal whose first write blocks until released: a disk that cannot keep up."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.entered = threading.Event()
        self.release = threading.Event()

    def _write(self, event: Event) -> None:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(10)
        super()._write(event)


def test_overflow_is_recorded_as_a_fault_line(tmp_path: Path) -> None:
    bus = EventBus()
    journal = _StallingJournal(tmp_path / "journal.jsonl", maxsize=10)
    journal.start(bus)
    bus.publish(_feature(0))
    assert journal.entered.wait(5)
    for i in range(1, 51):  # the writer is stuck: 10 fit, the 40 oldest are dropped
        bus.publish(_feature(i))
    journal.release.set()
    journal.stop()
    events = read_journal(journal.path)
    kept = [0, *range(41, 51)]
    assert [e["data"]["value"] for e in events[:-1]] == [_feature(i).to_dict()["data"]["value"] for i in kept]
    assert events[-1]["kind"] == FAULT
    assert events[-1]["data"] == {"source": "journal", "dropped_events": 40}
    assert journal.dropped == 40
