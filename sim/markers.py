"""Listen to the controller's marker stream over LSL and pass rewards to the participant.

Resolution runs in a background thread and never blocks the EEG stream: with no
controller on the network the participant simply gets no rewards. If the marker
stream disappears (controller restarted), the listener goes back to resolving and
connects to whichever stream of that name appears next.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable

import pylsl
from pylsl.util import LostError
from pylsl.util import TimeoutError as LslTimeoutError

MARKER_TYPE = "Markers"


def is_reward(text: str) -> bool:
    """A marker counts as a reward when its text is 'reward' or starts with 'reward' (any case)."""
    return text.strip().lower().startswith("reward")


class MarkerListener:
    """Background LSL inlet on the marker stream called ``name`` (or the only one matching it, when
    it holds a ``*``: ``neuroreflex-*-markers``); calls ``on_reward(count)``, and with ``on_marker``
    also ``on_marker(text, timestamp)`` for every marker (timestamps clock-synchronised to this
    machine's LSL clock: the fNIRS participant starts a block at the marker's time)."""

    def __init__(
        self,
        name: str,
        on_reward: Callable[[int], None],
        stream_type: str = MARKER_TYPE,
        resolve_timeout: float = 0.5,
        pull_timeout: float = 0.2,
        on_marker: Callable[[str, float], None] | None = None,
    ) -> None:
        self.name = name
        self.stream_type = stream_type
        self._on_reward = on_reward
        self._on_marker = on_marker
        self._resolve_timeout = resolve_timeout
        self._pull_timeout = pull_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()  # set while an inlet is open
        self.connections = 0  # how many times a marker stream was (re)connected
        self.markers = 0  # markers received
        self.rewards = 0  # of which rewards

    def start(self) -> MarkerListener:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"markers:{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _resolve(self) -> pylsl.StreamInlet | None:
        if "*" in self.name:  # a pattern (a session's name carries its id): the only match, never a guess
            infos = pylsl.resolve_streams(wait_time=max(self._resolve_timeout, 1.0))  # all of them, to see a second
            infos = [i for i in infos if i.type() == self.stream_type and fnmatch.fnmatchcase(i.name(), self.name)]
            if len(infos) != 1:
                return None
        else:
            infos = pylsl.resolve_byprop("name", self.name, minimum=1, timeout=self._resolve_timeout)
        for info in infos:
            if info.type() == self.stream_type and info.channel_format() == pylsl.cf_string:
                flags = pylsl.proc_clocksync if self._on_marker is not None else 0
                inlet = pylsl.StreamInlet(info, recover=False, processing_flags=flags)
                try:
                    inlet.open_stream(timeout=2.0)
                    if flags:  # measure the clock offset now: the first pull would wait for it (~0.5 s)
                        inlet.time_correction(timeout=2.0)
                except (LslTimeoutError, LostError):
                    inlet.close_stream()
                    continue
                return inlet
        return None

    def _handle(self, chunk: list[list[str]], stamps: list[float] | None = None) -> None:
        if self._on_marker is not None and stamps is not None:
            for sample, t in zip(chunk, stamps, strict=True):
                self._on_marker(str(sample[0]) if sample else "", float(t))
        n_rewards = sum(1 for sample in chunk if sample and is_reward(str(sample[0])))
        self.markers += len(chunk)
        if n_rewards:
            self.rewards += n_rewards
            self._on_reward(n_rewards)

    def _run(self) -> None:
        inlet: pylsl.StreamInlet | None = None
        while not self._stop.is_set():
            if inlet is None:
                inlet = self._resolve()
                if inlet is None:
                    continue
                self.connections += 1
                self.connected.set()
            try:
                chunk, stamps = inlet.pull_chunk(timeout=self._pull_timeout)
            except LostError:
                self.connected.clear()
                inlet.close_stream()
                inlet = None
                continue
            if chunk:
                self._handle(chunk, stamps)
        if inlet is not None:
            inlet.close_stream()
        self.connected.clear()
