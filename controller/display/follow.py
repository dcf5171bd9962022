"""Follow one LSL stream by name without ever blocking the caller (a GUI timer).

Resolution runs in liblsl's background ``ContinuousResolver``; pulls use ``timeout=0``; the clock
offset to the sender is measured in a daemon thread (liblsl's ``proc_clocksync`` would block the
first pull for ~0.6 s while it measures, freezing the GUI). When the
stream we follow disappears and another stream of the same name appears (the next run's session),
the follower switches to it and counts the switch, so a display can run across several runs.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pylsl

_RECHECK_S = 2.0  # how often an attached follower looks for a newer stream of the same name
_OFFSET_EVERY_S = 5.0  # clock-offset refresh period


class _OffsetThread(threading.Thread):
    """Measures the sender's clock offset in the background (``time_correction`` blocks), after reading
    the stream's channel labels (``info`` blocks too)."""

    def __init__(self, inlet: pylsl.StreamInlet, channels: int) -> None:
        super().__init__(name="display:clock-offset", daemon=True)
        self.inlet = inlet
        self.channels = channels
        self.offset = 0.0  # same host: ~0, good enough until the first measurement
        self.labels: list[str] | None = None  # None until read
        self.stopped = threading.Event()

    def run(self) -> None:
        self.labels = _labels(self.inlet, self.channels)
        while not self.stopped.is_set():
            try:
                self.offset = self.inlet.time_correction(timeout=2.0)
            except Exception:  # lost or timed out: keep the last offset, try again later
                pass
            self.stopped.wait(_OFFSET_EVERY_S)


def _labels(inlet: pylsl.StreamInlet, count: int) -> list[str]:
    """The channel labels the stream describes, or ``ch1..chN`` (a stream without a description)."""
    labels: list[str] = []
    try:
        ch = inlet.info(timeout=1.0).desc().child("channels").child("channel")
        while not ch.empty() and len(labels) < count:
            labels.append(ch.child_value("label"))
            ch = ch.next_sibling()
    except Exception:  # a timeout or a stream that went away: numbered channels are still usable
        labels = []
    if len(labels) != count or not all(labels):
        labels = [f"ch{i + 1}" for i in range(count)]
    return labels


class StreamFollower:
    """Non-blocking reader of the stream called ``name``.

    ``poll()`` returns what arrived since the last call: ``(samples, stamps)`` with samples a
    float64 array (n, channels) for numeric streams, a list of str for string streams, and stamps
    in this host's ``local_clock`` (clock offsets are corrected by liblsl in the background).
    """

    def __init__(self, name: str, max_chunk: int = 4096) -> None:
        self.name = name
        self.max_chunk = max_chunk
        self.switches = 0  # times the followed stream changed (a new session)
        self._resolver = pylsl.ContinuousResolver(prop="name", value=name, forget_after=3.0)
        self._inlet: pylsl.StreamInlet | None = None
        self._uid: str | None = None
        self._string = False
        self._channels = 0
        self._next_check = 0.0
        self._offset: _OffsetThread | None = None

    @property
    def attached(self) -> bool:
        return self._inlet is not None

    @property
    def labels(self) -> list[str] | None:
        """The followed stream's channel labels; None until they have been read (in the background)."""
        return None if self._offset is None else self._offset.labels

    @property
    def channel_count(self) -> int:
        return self._channels

    def _attach(self, info: pylsl.StreamInfo) -> None:
        if self._uid is not None:
            self.switches += 1
        self._inlet = pylsl.StreamInlet(info, max_buflen=360, recover=True)
        self._offset = _OffsetThread(self._inlet, info.channel_count())
        self._offset.start()
        self._uid = info.uid()
        self._string = info.channel_format() == pylsl.cf_string
        self._channels = info.channel_count()

    def _maybe_switch(self) -> None:
        now = pylsl.local_clock()
        if self._inlet is not None and now < self._next_check:
            return
        self._next_check = now + _RECHECK_S
        found = self._resolver.results()  # non-blocking: the resolver works in its own thread
        if not found:
            return
        if self._inlet is not None and any(i.uid() == self._uid for i in found):
            return
        newest = max(found, key=lambda i: i.created_at())
        if newest.uid() != self._uid:
            self.close()
            self._attach(newest)

    def poll(self) -> tuple[Any, np.ndarray]:
        """Everything that arrived since the last call (possibly nothing); never waits."""
        self._maybe_switch()
        if self._inlet is None:
            return ([] if self._string else np.empty((0, 0))), np.empty(0)
        rows: list = []
        stamps: list[float] = []
        while True:
            chunk, ts = self._inlet.pull_chunk(timeout=0.0, max_samples=self.max_chunk)
            rows.extend(chunk)
            stamps.extend(ts)
            if len(ts) < self.max_chunk:
                break
        t = np.asarray(stamps, dtype=float) + self._offset.offset
        if self._string:
            return [r[0] for r in rows], t
        return np.asarray(rows, dtype=float).reshape(len(stamps), self._channels), t

    def close(self) -> None:
        """Stop following (the offset thread ends by itself; it never blocks the caller)."""
        if self._offset is not None:
            self._offset.stopped.set()
        self._inlet = self._offset = None
