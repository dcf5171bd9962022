"""The simulated fNIRS participant: activity during regulation blocks, a gain that learns from rewards.

What it models (kept simple on purpose; the EEG participant, sim/participant.py, has the full
reinforcement rule). The participant's neural activity is 1 while a regulation block runs and 0
otherwise; its size is ``gain`` (0..1, the fraction of the largest response the strategy can
produce). Each reward strengthens the strategy, with diminishing returns as it nears the ceiling:

    gain <- gain + learning_rate * (1 - gain)      (per reward marker: text starting with 'reward')

so after ``k`` rewards ``1 - gain = (1 - start_gain) (1 - learning_rate)^k``. With the defaults
(start 0.4, rate 0.02) 35 rewards take the gain to 0.7 and 100 to 0.92. No rewards, no change
(skill is kept, never lost). Rewards count whenever they come: the model does not check that they
follow the participant's own activity.

Blocks come from the controller's markers ``block_start:<label>`` (active when ``label`` is one of
``active_labels``, case-insensitive) and ``block_end:<label>`` (inactive), each taking effect at the
marker's timestamp: :meth:`activity` answers for any sample time, so a sample stamped after a marker
is active however late the marker arrived before it was generated.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

import numpy as np

BLOCK_START = "block_start:"
BLOCK_END = "block_end:"


@dataclass(frozen=True)
class FnirsParticipantConfig:
    start_gain: float = 0.4
    learning_rate: float = 0.02  # fraction of the remaining headroom gained per reward
    active_labels: tuple[str, ...] = ("regulate",)


class FnirsParticipant:
    """Thread-safe: markers arrive on a listener thread while the streamer asks for the activity."""

    def __init__(self, config: FnirsParticipantConfig | None = None) -> None:
        self.config = cfg = config or FnirsParticipantConfig()
        if not 0.0 <= cfg.start_gain <= 1.0 or not 0.0 <= cfg.learning_rate <= 1.0:
            raise ValueError(f"start_gain and learning_rate must be within 0..1: {cfg}")
        self._active_labels = frozenset(label.strip().lower() for label in cfg.active_labels)
        self._lock = threading.Lock()
        self._times: list[float] = []  # block transitions, sorted by time
        self._states: list[bool] = []
        self.gain = float(cfg.start_gain)
        self.rewards = 0
        self.blocks = 0  # block_start markers seen
        self.label = ""  # the label of the latest block_start

    def is_active_label(self, label: str) -> bool:
        return label.strip().lower() in self._active_labels

    def reward(self, count: int = 1) -> None:
        if count <= 0:
            return
        with self._lock:
            self.gain = 1.0 - (1.0 - self.gain) * (1.0 - self.config.learning_rate) ** count
            self.rewards += count

    def on_marker(self, text: str, t: float) -> None:
        """A controller marker stamped ``t`` (LSL clock): block starts/ends change the activity from ``t``
        (rewards reach :meth:`reward` through the listener's ``on_reward``; here they are ignored)."""
        text = text.strip()
        low = text.lower()
        if low.startswith(BLOCK_START):
            label = text[len(BLOCK_START):]
            state = self.is_active_label(label)
            with self._lock:
                self.blocks += 1
                self.label = label
        elif low.startswith(BLOCK_END):
            state = False
        else:
            return
        with self._lock:
            i = bisect.bisect_right(self._times, t)
            self._times.insert(i, float(t))
            self._states.insert(i, state)

    def activity(self, times: np.ndarray) -> np.ndarray:
        """1.0 where a regulation block is running at each time, else 0.0."""
        with self._lock:
            if not self._times:
                return np.zeros(len(times))
            idx = np.searchsorted(np.asarray(self._times), times, side="right") - 1
            states = np.asarray(self._states + [False])  # index -1 (before any marker): inactive
            return states[idx].astype(float)

    def drive(self, times: np.ndarray) -> np.ndarray:
        """The neural drive at these times: ``gain`` during regulation blocks, 0 otherwise."""
        a = self.activity(times)
        with self._lock:
            gain = self.gain
        return gain * a

    def forget_before(self, t: float) -> None:
        """Drop transitions superseded before ``t`` (keeps the one in force at ``t``)."""
        with self._lock:
            keep = max(0, bisect.bisect_right(self._times, t) - 1)
            del self._times[:keep], self._states[:keep]
