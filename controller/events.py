"""The state/event stream: how the hot path tells everybody else what happened.

The loop publishes events; recorders, the journal, telemetry, the console and displays
subscribe. Publishing never blocks: each subscriber has its own bounded queue and a slow
subscriber loses its own oldest events (counted), never the loop's time.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

# Event kinds, one vocabulary for journal, console and telemetry. What each kind carries is defined once,
# as a typed record, in controller/event_records.py (the emitters build it, the report reads it back).
SESSION_OPEN = "session_open"  # the journal's first line: who, what, where, which software
SESSION_START = "session_start"
SESSION_END = "session_end"
STATE = "state"  # engine state changed (running, paused, inhibited, stopped ...)
BLOCK_START = "block_start"
BLOCK_END = "block_end"
THRESHOLD = "threshold"  # a threshold was set or adapted
FEATURE = "feature"  # a new feature value
DECISION = "decision"  # a rule fired
FEEDBACK = "feedback"  # continuous feedback value sent
INPUT = "input"  # input connected / stalled / resumed / clock jump
FAULT = "fault"
SAFETY = "safety"  # governor verdicts, arming, interlocks
DELIVERY = "delivery"  # a train ended: its planned, counted and delivered pulses, as the ledger now records them
SHORT_TRAIN = "short_train"  # a train delivered fewer pulses than planned, and why (skipped slots, stop, disarm, fault)
INFO = "info"
OPERATOR = "operator"  # an operator act: pause, resume, skip, stop, arm, disarm, E-STOP; who, via what, why
VOLUME = "volume"  # an fMRI volume was processed: motion, FD, ROI values, time per stage
COMMAND = "command"  # a command sent to a stimulator, or refused before the wire (the dispatcher)


@dataclass(frozen=True)
class Event:
    """Something that happened, stamped on the one clock (LSL local_clock).

    ``t_source`` is the timestamp of the newest sample that caused it (None for events
    not caused by data, e.g. an operator command); ``t`` is when it was emitted.
    """

    kind: str
    t: float
    t_source: float | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Subscription:
    """A bounded mailbox; when full, the oldest event is dropped and counted."""

    def __init__(self, maxsize: int, kinds: frozenset[str] | None) -> None:
        self._queue: queue.Queue[Event] = queue.Queue(maxsize=maxsize)
        self.kinds = kinds
        self.dropped = 0

    def offer(self, event: Event) -> None:
        if self.kinds is not None and event.kind not in self.kinds:
            return
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after ``timeout`` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self) -> list[Event]:
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out


class EventBus:
    """Fan-out of events to subscribers; ``publish`` is O(subscribers) and never waits."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()

    def subscribe(self, kinds: set[str] | None = None, maxsize: int = 10000) -> Subscription:
        sub = Subscription(maxsize, frozenset(kinds) if kinds is not None else None)
        with self._lock:
            self._subs = [*self._subs, sub]
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = [s for s in self._subs if s is not sub]

    def publish(self, event: Event) -> None:
        for sub in self._subs:  # copy-on-write list: no lock on the hot path
            sub.offer(event)
