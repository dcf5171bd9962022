"""The terminal display: status line and announced events, including fMRI volumes."""

from __future__ import annotations

import io
import time

from controller import events as ev
from controller.events import Event, EventBus
from controller.operator.terminal import TextDisplay, describe_event, status_line, volume_text

SNAP = {"block": "happy", "block_index": 1, "n_blocks": 13, "time_left_s": 30.2, "total_left_s": 512.0,
        "features": {"amygdala": 0.8461}, "thresholds": {"target": 1.0}, "frames": 4, "rewarded": 1,
        "state": "running", "inhibitions": {}}
VOLUME = {"index": 23, "counted": 20, "block": "happy", "motion": [0.0] * 6, "fd_mm": 0.061,
          "timing_ms": {"read": 2.1, "realign": 5.0, "acquisition_to_arrival": 1970.2, "arrival_to_feedback": 9.4,
                        "total": 1979.6}}


def test_status_line_shows_the_newest_volume_motion_and_time():
    line = status_line(SNAP, "amygdala", "target", VOLUME)
    assert line == ("[happy 2/13] 00:30 left (session 08:32) | vol 23 FD 0.06 mm pipeline 9 ms (after 1970 ms "
                    "delivery) | amygdala 0.846 (goal 1) | reward 25% | running")
    folder = {**VOLUME, "timing_ms": {**VOLUME["timing_ms"], "acquisition_to_arrival": None, "total": None}}
    assert volume_text(folder) == "vol 23 FD 0.06 mm pipeline 9 ms (delivery unknown)"
    assert status_line(SNAP, "amygdala", "target") == \
        "[happy 2/13] 00:30 left (session 08:32) | amygdala 0.846 (goal 1) | reward 25% | running"
    assert volume_text({"index": 2, "dummy": True}) == "vol 2 (dummy)"


def test_a_large_head_movement_gets_a_line_of_its_own():
    still = Event(ev.VOLUME, 1.0, 1.0, VOLUME)
    moved = Event(ev.VOLUME, 2.0, 2.0, {**VOLUME, "index": 24, "fd_mm": 1.634})
    assert describe_event(still) is None
    assert describe_event(moved) == "volume 24: head moved, FD 1.63 mm (> 0.5 mm)"
    assert describe_event(Event(ev.VOLUME, 3.0, 3.0, {"index": 2, "dummy": True})) is None


def test_the_display_thread_follows_volume_events_from_the_bus():
    bus = EventBus()
    out = io.StringIO()  # not a tty: a log, one line per change
    display = TextDisplay(bus, lambda: SNAP, "amygdala", "target", stream=out, period_s=0.05)
    display.start()
    try:
        bus.publish(Event(ev.VOLUME, 1.0, 1.0, VOLUME))
        bus.publish(Event(ev.VOLUME, 2.0, 2.0, {**VOLUME, "index": 24, "fd_mm": 1.634}))
        deadline = time.monotonic() + 30
        while "vol 24" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        display.stop()
    text = out.getvalue()
    assert "volume 24: head moved, FD 1.63 mm (> 0.5 mm)\n" in text
    assert "| vol 24 FD 1.63 mm pipeline 9 ms (after 1970 ms delivery) |" in text
