"""A simulated fMRI neurofeedback participant who learns to raise the target ROI from feedback.

What it models (the fMRI counterpart of sim/participant.py). During regulation blocks the
participant puts an *effort* ``x`` (percent signal change added to the target ROI's drive)
into the strategy. ``x`` fluctuates around a mean ``mu`` (their current skill) as an
Ornstein-Uhlenbeck process (SD ``exploration_sd``, ~8 s): trying harder or drifting off.
Feedback moves ``mu`` by a reward-prediction-error rule:

    mu += learning_rate * (f - f_expected) * e          (one update per feedback value)

- ``f`` is the feedback value in 0..1 (the controller's ``<prefix>-feedback`` channel 0, every
  TR); a ``reward`` marker counts as a feedback value of 1;
- ``f_expected`` an exponential average of the feedback received (``expectation_s``);
- ``e`` the eligibility: the effort deviations ``x - mu`` of the recent past weighted by the
  canonical HRF, i.e. what the thermometer *now* reflects (participants are told of the
  haemodynamic delay). Feedback that follows the participant's own effort correlates with
  ``e`` and raises ``mu``; feedback that is random, constant or absent leaves it unchanged on
  average. No feedback (a transfer run) means no learning but the skill is kept.

``mu`` is kept in ``skill_limits`` and can be saved and loaded (``--participant FILE``) so that
it carries from run to run: the target level rises across runs as the skill does.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sim.fmri.bold import canonical_hrf


@dataclass(frozen=True)
class FmriParticipantConfig:
    start_skill: float = 0.4  # percent signal change the strategy adds to the target at first
    exploration_sd: float = 0.3  # percent, SD of the effort around the skill
    exploration_tau_s: float = 8.0  # correlation time of the effort fluctuation
    learning_rate: float = 0.15  # skill moved per unit (surprise x eligibility)
    expectation_s: float = 30.0  # time constant of the expected feedback
    skill_limits: tuple[float, float] = (0.0, 2.5)


class FmriParticipant:
    """Thread-safe: :meth:`feedback` and :meth:`reward` may come from a listener thread."""

    def __init__(self, config: FmriParticipantConfig | None = None, seed: int = 0, tr_s: float = 2.0) -> None:
        self.config = cfg = config or FmriParticipantConfig()
        if cfg.exploration_tau_s <= 0 or cfg.expectation_s <= 0 or cfg.exploration_sd < 0 or cfg.learning_rate < 0:
            raise ValueError(f"participant parameters out of range: {cfg}")
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 0xF3A1]))
        self._lock = threading.Lock()
        self.tr_s = float(tr_s)
        self.mu = float(cfg.start_skill)
        self._dev = 0.0  # x - mu
        self._credit = canonical_hrf(self.tr_s)[::-1]  # newest deviation last
        self._credit = self._credit / np.sqrt((self._credit**2).sum())
        self._devs = np.zeros(len(self._credit))
        self._expected: float | None = None
        self.regulating = False
        self.feedbacks = 0
        self.rewards = 0
        self.time_s = 0.0

    @property
    def effort(self) -> float:
        """Current effort (percent added to the target in regulation blocks), >= 0."""
        return max(0.0, self.mu + self._dev)

    @property
    def eligibility(self) -> float:
        return float(self._devs @ self._credit)

    def step(self, dt: float, regulating: bool) -> float:
        """Advance ``dt`` seconds (one TR); returns the effort for this TR."""
        cfg = self.config
        with self._lock:
            a = math.exp(-dt / cfg.exploration_tau_s)
            self._dev = a * self._dev + cfg.exploration_sd * math.sqrt(1 - a * a) * float(self._rng.standard_normal())
            self.regulating = regulating
            # the eligibility remembers deviations only while the strategy is applied
            dev = self._dev if regulating else 0.0
            self._devs = np.roll(self._devs, -1)
            self._devs[-1] = dev
            self.time_s += dt
            return self.effort if regulating else 0.0

    def feedback(self, value: float) -> None:
        """One feedback value in 0..1 (NaN ignored): learn from its surprise."""
        if not math.isfinite(value):
            return
        cfg = self.config
        f = min(max(float(value), 0.0), 1.0)
        with self._lock:
            self.feedbacks += 1
            if self._expected is None:
                self._expected = f
                return
            surprise = f - self._expected
            lo, hi = cfg.skill_limits
            self.mu = min(max(self.mu + cfg.learning_rate * surprise * self.eligibility, lo), hi)
            k = 1.0 - math.exp(-self.tr_s / cfg.expectation_s)
            self._expected += k * surprise

    def reward(self, count: int = 1) -> None:
        """A ``reward`` marker: a feedback value of 1."""
        for _ in range(max(0, count)):
            self.rewards += 1
            self.feedback(1.0)

    # ---- carrying the skill across runs -------------------------------------------------
    def state(self) -> dict[str, float]:
        return {"skill": self.mu, "feedbacks": self.feedbacks, "rewards": self.rewards,
                "config": asdict(self.config)}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.state(), indent=2) + "\n")

    def load(self, path: str | Path) -> bool:
        """Take the skill saved by a previous run (False if the file does not exist)."""
        p = Path(path)
        if not p.exists():
            return False
        try:
            data = json.loads(p.read_text())
            skill = float(data["skill"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{p}: not a participant state file (needs a numeric 'skill'): {exc}") from exc
        lo, hi = self.config.skill_limits
        self.mu = min(max(skill, lo), hi)
        return True
