"""How often a rule may fire (refractory, per episode, per session, per day), and interlock hysteresis.

A rule's firing is its decision, whether or not the governor then allows the command: a
refused therapy still counts towards its caps, which errs towards stimulating less.
"""

from __future__ import annotations

import math

from controller.lang.compiled import Interlock, Rule


class RulePacing:
    def __init__(self, rule: Rule, fired_today: int = 0) -> None:
        self.rule = rule
        self.last: float = -math.inf
        self.episode_count = 0
        self.session_count = 0
        self.day_count = fired_today
        self._announced: str | None = None

    def refusal(self, t: float) -> str | None:
        """Why the rule may not fire at ``t`` (None: it may)."""
        r = self.rule
        if r.refractory_s is not None and t - self.last < r.refractory_s:
            return f"refractory {r.refractory_s:g} s"
        if r.max_per_episode is not None:
            new_episode = r.episode_gap_s is not None and t - self.last >= r.episode_gap_s
            if not new_episode and self.episode_count >= r.max_per_episode:
                return f"{r.max_per_episode} per episode reached"
        if r.max_per_session is not None and self.session_count >= r.max_per_session:
            return f"{r.max_per_session} per session reached"
        if r.max_per_day is not None and self.day_count >= r.max_per_day:
            return f"{r.max_per_day} per day reached"
        return None

    def fired(self, t: float) -> None:
        r = self.rule
        if r.episode_gap_s is not None and t - self.last >= r.episode_gap_s:
            self.episode_count = 0
        self.episode_count += 1
        self.session_count += 1
        self.day_count += 1
        self.last = t
        self._announced = None

    def announce(self, why: str) -> bool:
        """True the first time in a row a given reason holds (so the journal is not flooded)."""
        if why == self._announced:
            return False
        self._announced = why
        return True


class InterlockState:
    """Raised as soon as the condition holds; cleared once it has been false for clear_after_s."""

    def __init__(self, lock: Interlock) -> None:
        self.lock = lock
        self.active = False
        self.false_since: float | None = None

    def update(self, holds: bool, t: float) -> str | None:
        if holds:
            self.false_since = None
            if not self.active:
                self.active = True
                return "raise"
            return None
        if not self.active:
            return None
        if self.false_since is None:
            self.false_since = t
        if t - self.false_since >= self.lock.clear_after_s:
            self.active = False
            self.false_since = None
            return "clear"
        return None
