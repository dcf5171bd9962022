"""Follow the controller over LSL: its markers (block changes, rewards) and its feedback values.

The controller publishes ``<prefix>-markers`` (strings: ``block_start:LABEL``, ``block_end:LABEL``,
``reward``...) and ``<prefix>-feedback`` (channel 0 the feedback value in 0..1, channel 1 the raw
feature; drivers/lsl_outputs.py). Both are resolved in a background thread that never blocks
the scanner: with no controller the participant just gets no feedback; a restarted controller
is picked up again. Times handed to the callbacks are the samples' timestamps on this
machine's LSL clock (clock-synchronised).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pylsl
from pylsl.util import LostError
from pylsl.util import TimeoutError as LslTimeoutError

from sim.markers import is_reward


class ControllerListener:
    """Background inlets on ``<prefix>-markers`` and ``<prefix>-feedback``."""

    def __init__(self, prefix: str, on_marker: Callable[[str, float], None],
                 on_feedback: Callable[[float, float], None] | None = None,
                 on_reward: Callable[[int], None] | None = None, resolve_timeout: float = 0.3) -> None:
        self.prefix = prefix
        self._on_marker = on_marker
        self._on_feedback = on_feedback
        self._on_reward = on_reward
        self._resolve_timeout = resolve_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.markers = 0
        self.feedbacks = 0
        self.rewards = 0
        self.connected_markers = threading.Event()
        self.connected_feedback = threading.Event()

    def start(self) -> ControllerListener:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"fmri-listen:{self.prefix}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _open(self, name: str, stream_type: str) -> pylsl.StreamInlet | None:
        for info in pylsl.resolve_byprop("name", name, minimum=1, timeout=self._resolve_timeout):
            if info.type() != stream_type:
                continue
            inlet = pylsl.StreamInlet(info, recover=False, processing_flags=pylsl.proc_clocksync)
            try:
                inlet.open_stream(timeout=2.0)
            except (LslTimeoutError, LostError):
                inlet.close_stream()
                continue
            return inlet
        return None

    def _run(self) -> None:
        markers: pylsl.StreamInlet | None = None
        feedback: pylsl.StreamInlet | None = None
        want_feedback = self._on_feedback is not None
        while not self._stop.is_set():
            if markers is None:
                markers = self._open(f"{self.prefix}-markers", "Markers")
                if markers is not None:
                    self.connected_markers.set()
            if feedback is None and want_feedback:
                feedback = self._open(f"{self.prefix}-feedback", "Feedback")
                if feedback is not None:
                    self.connected_feedback.set()
            if markers is None and (feedback is None):
                continue
            try:
                if markers is not None:
                    chunk, stamps = markers.pull_chunk(timeout=0.05)
                    for sample, t in zip(chunk, stamps, strict=True):
                        self._marker(str(sample[0]) if sample else "", float(t))
            except LostError:
                markers.close_stream()
                markers = None
                self.connected_markers.clear()
            try:
                if feedback is not None:
                    chunk, stamps = feedback.pull_chunk(timeout=0.05)
                    for sample, t in zip(chunk, stamps, strict=True):
                        self.feedbacks += 1
                        self._on_feedback(float(sample[0]), float(t))
            except LostError:
                feedback.close_stream()
                feedback = None
                self.connected_feedback.clear()
        for inlet in (markers, feedback):
            if inlet is not None:
                inlet.close_stream()

    def _marker(self, text: str, t: float) -> None:
        self.markers += 1
        if is_reward(text):
            self.rewards += 1
            if self._on_reward is not None:
                self._on_reward(1)
        self._on_marker(text, t)
