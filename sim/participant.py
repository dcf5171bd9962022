"""A simulated participant whose theta/beta ratio drifts and is shaped by reinforcement.

What it models. The log theta/beta ratio ``x`` fluctuates as an Ornstein-Uhlenbeck
process around a mean ``mu`` (spontaneous waxing and waning of theta and beta, about a
second long). Learning moves ``mu``, by a reward-prediction-error ("three-factor") rule,
the standard account of operant conditioning and of how neurofeedback is thought to work:

    d mu = learning_rate * (R(t) - R_expected(t)) * e(t) dt

- ``e`` is the eligibility trace: the deviation ``x - mu`` seen through a rise-and-decay
  window (two exponential stages) whose mean lag is ``eligibility_s``. A reward credits
  what the brain did during the second or two before it, not the instant it arrives:
  the controller judges 2 s windows, asks for the condition to hold for 500 ms, and its
  marker arrives tens of milliseconds later. (This kernel correlates with the controller's
  rewards about 25 % better than a plain exponential average of the same state.)
- ``R`` is the train of rewards received and ``R_expected`` the rate the participant has
  come to expect, an exponential average over ``reward_memory_s``. Each reward moves
  ``mu`` toward the eligible state by ``learning_rate`` x ``e``; expected rewards that do
  not come move it away from the current state, in proportion.

Consequences, which tests check: rewards that come more often when the ratio is low lower
it, rewards for high ratios raise it (the model knows no "good" direction); no rewards,
rewards at a steady rate or at random, or rewards that come too late to be credited leave
the mean unchanged on average, because only the correlation between surprise and state
moves it. (The earlier rule, "every reward pulls the mean toward the current state", made
the mean chase the fluctuations: at ~7 rewards/s it random-walked about as fast as it
learnt, and short closed-loop sessions did not improve reliably.)

Why these fluctuation sizes. A 2 s Welch estimate of the ratio is noisy by itself (SD of
its log 0.45-0.50 for the simulated EEG at a constant ratio: chi-square statistics of a
few cycles), so the learning signal - how well rewards track the true state - depends on
the true fluctuation being comparable. SD 0.5 of log(tbr), relaxing in 1 s, gives a
measured log-SD of 0.53-0.56 through the controller's pipeline (tbr_demo.yaml), within the
0.52 and 0.72 of the same feature on the two real recordings in ../shared/data/eeg
(PhysioNet eegmat subject 00 rest, eegmmidb S001R01 eyes open). The earlier SD 0.25 over
2 s (measured 0.50) let rewards follow the measurement noise more than the state.
``bench/closed_loop_learning.py`` prints the resulting learning per block.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from sim.markers import MarkerListener
from sim.names import DEFAULT_MARKER_STREAM  # re-exported


@dataclass(frozen=True)
class ParticipantConfig:
    """Parameters of the participant model (times in seconds, sizes in natural-log units)."""

    start_tbr: float = 3.0  # a typical ADHD-like theta/beta ratio
    time_constant_s: float = 1.0  # how fast fluctuations relax to the mean
    fluctuation_sd: float = 0.5  # stationary SD of log(tbr) around the mean
    learning_rate: float = 0.001  # fraction of the eligible deviation learnt per (unexpected) reward
    eligibility_s: float = 1.4  # credit goes to the state about this long before a reward (mean lag)
    reward_memory_s: float = 20.0  # the expected reward rate averages the rewards over this time
    tbr_limits: tuple[float, float] = (0.5, 10.0)  # the mean stays within these ratios


class ParticipantModel:
    """Thread-safe: :meth:`reward` may be called from a marker thread while :meth:`step` runs."""

    def __init__(self, config: ParticipantConfig | None = None, seed: int = 0, **overrides: float) -> None:
        cfg = config or ParticipantConfig()
        if overrides:
            cfg = ParticipantConfig(**{**cfg.__dict__, **overrides})
        if min(cfg.start_tbr, cfg.time_constant_s, cfg.eligibility_s, cfg.reward_memory_s) <= 0:
            raise ValueError(f"participant parameters must be positive: {cfg}")
        if cfg.learning_rate < 0 or cfg.fluctuation_sd < 0:
            raise ValueError(f"learning_rate and fluctuation_sd must be >= 0: {cfg}")
        self.config = cfg
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
        self._lock = threading.Lock()
        self._mu = math.log(cfg.start_tbr)
        self._x = self._mu
        self._e1 = 0.0  # first stage of the eligibility trace
        self._e = 0.0  # eligibility: x - mu seen through a rise-and-decay window
        self._expected = 0.0  # expected rewards per second
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

    @property
    def expected_reward_rate(self) -> float:
        """Rewards per second the participant currently expects."""
        return self._expected

    def _move_mean(self, delta: float) -> None:
        self._mu = min(max(self._mu + delta, self._log_lo), self._log_hi)

    def step(self, dt: float) -> float:
        """Advance the model by ``dt`` seconds (exact OU update); returns the new ratio."""
        if dt < 0:
            raise ValueError(f"time step must be >= 0, got {dt}")
        cfg = self.config
        with self._lock:
            if self._expected > 0.0:  # the expected rewards that did not come, over dt
                self._move_mean(-cfg.learning_rate * self._expected * self._e * dt)
                self._expected *= math.exp(-dt / cfg.reward_memory_s)
            decay = math.exp(-dt / cfg.time_constant_s)
            sd = cfg.fluctuation_sd * math.sqrt(1.0 - decay * decay)
            self._x = self._mu + (self._x - self._mu) * decay + sd * float(self._rng.standard_normal())
            a = 1.0 - math.exp(-2.0 * dt / cfg.eligibility_s)  # two stages of eligibility_s / 2 each
            self._e1 += (self._x - self._mu - self._e1) * a
            self._e += (self._e1 - self._e) * a
            self.time_s += dt
            return math.exp(self._x)

    def reward(self, count: int = 1) -> None:
        """Reinforce the recent state: the mean moves toward it by ``learning_rate`` per reward."""
        if count <= 0:
            return
        cfg = self.config
        with self._lock:
            self._move_mean(cfg.learning_rate * count * self._e)
            self._expected += count / cfg.reward_memory_s
            self.rewards += count

    def listen(self, marker_stream: str = DEFAULT_MARKER_STREAM) -> MarkerListener:
        """Subscribe to the controller's LSL marker stream in the background; rewards reach :meth:`reward`."""
        return MarkerListener(marker_stream, self.reward).start()
