"""A simulated MEG participant whose posterior alpha rises with the rewards it receives.

What it models, and why so simply. The log alpha amplitude ``x`` (relative to the participant's
starting level) fluctuates as an Ornstein-Uhlenbeck process around a mean ``mu``: alpha waxes and
wanes over about a second, which gives a controller's threshold something to catch. Each reward
raises ``mu`` by ``learning_rate`` (natural-log units), up to ``max_gain``; nothing lowers it. This is
alpha up-training as the MEG simulator is used for (rewards for high posterior alpha), with the
contingency taken for granted: unlike the EEG participant (sim/participant.py, a reward-prediction-
error rule that learns only what rewards correlate with), it does not check that the rewards followed
high alpha, so a test or a demo sees learning from any reward train. Thread-safe like the EEG model:
rewards arrive on a marker thread while the streaming thread steps the model.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from sim.markers import MarkerListener
from sim.names import DEFAULT_MARKER_STREAM


@dataclass(frozen=True)
class AlphaConfig:
    """Parameters (times in seconds, sizes in natural-log units of the alpha amplitude)."""

    time_constant_s: float = 1.0  # how fast fluctuations relax to the mean
    fluctuation_sd: float = 0.3  # stationary SD of log amplitude around the mean (x0.74 .. x1.35)
    learning_rate: float = 0.001  # rise of the mean log amplitude per reward (1000 rewards: x2.7)
    max_gain: float = 4.0  # the mean amplitude stays below this multiple of the starting one


class AlphaParticipant:
    """``gain``: the current alpha amplitude relative to the start; :meth:`reward` raises its mean."""

    def __init__(self, config: AlphaConfig | None = None, seed: int = 0, **overrides: float) -> None:
        cfg = config or AlphaConfig()
        if overrides:
            cfg = AlphaConfig(**{**cfg.__dict__, **overrides})
        if cfg.time_constant_s <= 0 or cfg.max_gain < 1 or cfg.learning_rate < 0 or cfg.fluctuation_sd < 0:
            raise ValueError(f"invalid participant parameters: {cfg}")
        self.config = cfg
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 0xA1FA]))
        self._lock = threading.Lock()
        self._mu = 0.0
        self._x = 0.0
        self._log_max = math.log(cfg.max_gain)
        self.time_s = 0.0
        self.rewards = 0

    @property
    def gain(self) -> float:
        """Current alpha amplitude / starting amplitude."""
        return math.exp(self._x)

    @property
    def mean_gain(self) -> float:
        """The amplitude (relative) the fluctuations revert to: what rewards raise."""
        return math.exp(self._mu)

    def step(self, dt: float) -> float:
        """Advance ``dt`` seconds (exact OU update); returns the new gain."""
        if dt < 0:
            raise ValueError(f"time step must be >= 0, got {dt}")
        cfg = self.config
        with self._lock:
            decay = math.exp(-dt / cfg.time_constant_s)
            sd = cfg.fluctuation_sd * math.sqrt(1.0 - decay * decay)
            self._x = self._mu + (self._x - self._mu) * decay + sd * float(self._rng.standard_normal())
            self.time_s += dt
            return math.exp(self._x)

    def reward(self, count: int = 1) -> None:
        """Each reward raises the mean log amplitude by ``learning_rate`` (and the current state with it)."""
        if count <= 0:
            return
        with self._lock:
            rise = min(self.config.learning_rate * count, self._log_max - self._mu)
            if rise > 0:
                self._mu += rise
                self._x += rise
            self.rewards += count

    def listen(self, marker_stream: str = DEFAULT_MARKER_STREAM) -> MarkerListener:
        """Rewards from the controller's LSL marker stream, in the background."""
        return MarkerListener(marker_stream, self.reward).start()
