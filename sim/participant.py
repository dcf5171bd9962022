"""A simulated participant whose theta/beta ratio drifts and is shaped by reinforcement.

The log theta/beta ratio follows an Ornstein-Uhlenbeck process around a mean. Each
reward moves the mean toward the state that earned it (an eligibility trace of the
last ~second of state): rewarded states become more likely, which is operant
conditioning with no built-in notion of which direction is "good". Reward TBR below
a threshold and the ratio falls; reward it above and the ratio rises; give no rewards
and it wanders around where it started.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from sim.markers import MarkerListener

DEFAULT_MARKER_STREAM = "neuroreflex-markers"


@dataclass(frozen=True)
class ParticipantConfig:
    """Parameters of the participant model (times in seconds, sizes in natural-log units)."""

    start_tbr: float = 3.0  # a typical ADHD-like theta/beta ratio
    time_constant_s: float = 2.0  # how fast fluctuations relax to the mean
    fluctuation_sd: float = 0.25  # stationary SD of log(tbr) around the mean
    learning_rate: float = 0.002  # fraction of (rewarded state - mean) learned per reward
    eligibility_s: float = 1.0  # the state that earns a reward is averaged over this time
    tbr_limits: tuple[float, float] = (0.5, 10.0)  # the mean stays within these ratios


class ParticipantModel:
    """Thread-safe: :meth:`reward` may be called from a marker thread while :meth:`step` runs."""

    def __init__(self, config: ParticipantConfig | None = None, seed: int = 0, **overrides: float) -> None:
        cfg = config or ParticipantConfig()
        if overrides:
            cfg = ParticipantConfig(**{**cfg.__dict__, **overrides})
        if cfg.start_tbr <= 0 or cfg.time_constant_s <= 0 or cfg.eligibility_s <= 0:
            raise ValueError(f"participant parameters must be positive: {cfg}")
        if cfg.learning_rate < 0 or cfg.fluctuation_sd < 0:
            raise ValueError(f"learning_rate and fluctuation_sd must be >= 0: {cfg}")
        self.config = cfg
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
        self._lock = threading.Lock()
        self._mu = math.log(cfg.start_tbr)
        self._x = self._mu
        self._trace = self._mu
        self._log_lo, self._log_hi = (math.log(v) for v in cfg.tbr_limits)
        self.time_s = 0.0
        self.rewards = 0

    @property
    def tbr(self) -> float:
        """Current true theta/beta power ratio."""
        return math.exp(self._x)

    @property
    def mean_tbr(self) -> float:
        """The ratio the fluctuations currently revert to (what learning moves)."""
        return math.exp(self._mu)

    def step(self, dt: float) -> float:
        """Advance the model by ``dt`` seconds (exact OU update); returns the new ratio."""
        if dt < 0:
            raise ValueError(f"time step must be >= 0, got {dt}")
        cfg = self.config
        with self._lock:
            decay = math.exp(-dt / cfg.time_constant_s)
            sd = cfg.fluctuation_sd * math.sqrt(1.0 - decay * decay)
            self._x = self._mu + (self._x - self._mu) * decay + sd * float(self._rng.standard_normal())
            self._trace += (self._x - self._trace) * (1.0 - math.exp(-dt / cfg.eligibility_s))
            self.time_s += dt
            return math.exp(self._x)

    def reward(self, count: int = 1) -> None:
        """Reinforce the recent state: the mean moves toward it by ``learning_rate`` per reward."""
        if count <= 0:
            return
        with self._lock:
            keep = (1.0 - self.config.learning_rate) ** count
            self._mu = self._trace + (self._mu - self._trace) * keep
            self._mu = min(max(self._mu, self._log_lo), self._log_hi)
            self.rewards += count

    def listen(self, marker_stream: str = DEFAULT_MARKER_STREAM) -> MarkerListener:
        """Subscribe to the controller's LSL marker stream in the background; rewards reach :meth:`reward`."""
        return MarkerListener(marker_stream, self.reward).start()
