"""Thresholds: fixed, a percentile of a baseline block, and adaptation to a target reward rate.

Adaptation: over each adaptation period (``every`` seconds of feature time spent in blocks
where the threshold is used) the threshold moves to the quantile of that period's feature
values that would have given the target rate (reward when below: the ``target`` quantile;
when above: the ``1 - target`` quantile). The observed rate of the comparison in the
period (how often the comparison held, ``comparison_rate``; not the reward rate, which also
needs the rule's other conditions and pacing) is reported with each change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from controller.lang.compiled import ThresholdSpec


@dataclass
class ThresholdChange:
    name: str
    value: float
    reason: str  # "fixed" | "percentile" | "adapt"
    comparison_rate: float | None = None  # adapt: fraction of the period's values for which the comparison held
    n_values: int = 0


@dataclass
class _AdaptPeriod:
    values: list[float] = field(default_factory=list)
    accumulated_s: float = 0.0


class ThresholdBank:
    def __init__(self, specs: dict[str, ThresholdSpec], feature_every_s: dict[str, float]) -> None:
        self.specs = specs
        self.values: dict[str, float | None] = {name: None for name in specs}
        self._every = feature_every_s
        self._periods = {name: _AdaptPeriod() for name, s in specs.items() if s.adapt is not None}

    def initial(self) -> list[ThresholdChange]:
        changes = []
        for name, spec in self.specs.items():
            if spec.fixed is not None:
                self.values[name] = spec.fixed
                changes.append(ThresholdChange(name, spec.fixed, "fixed"))
        return changes

    def block_ended(self, label: str, history: dict[str, list[float]]) -> tuple[list[ThresholdChange], list[str]]:
        """Set percentile thresholds whose ``during`` block just ended.

        ``history`` maps feature name -> values recorded during that block. Returns the
        changes and the problems (a percentile over no values cannot be set).
        """
        changes, problems = [], []
        for name, spec in self.specs.items():
            p = spec.percentile
            if p is None or p.during != label or self.values[name] is not None:
                continue
            values = np.asarray(history.get(p.feature, ()), dtype=float)
            values = values[np.isfinite(values)]
            if values.size == 0:
                problems.append(f"threshold {name!r}: no values of {p.feature!r} during {label!r}")
                continue
            value = float(np.percentile(values, p.q))
            self.values[name] = value
            changes.append(ThresholdChange(name, value, "percentile", n_values=int(values.size)))
        return changes, problems

    def observe(self, name: str, feature_value: float) -> ThresholdChange | None:
        """Feed a value of the adaptive threshold's feature seen while its rule is live."""
        spec = self.specs[name]
        adapt = spec.adapt
        current = self.values[name]
        if adapt is None or current is None or not np.isfinite(feature_value):
            return None
        period = self._periods[name]
        period.values.append(feature_value)
        period.accumulated_s += self._every[adapt.feature]
        if period.accumulated_s + 1e-9 < adapt.every_s:
            return None
        values = np.asarray(period.values)
        below = adapt.direction == "below"
        observed = float(np.mean(values < current) if below else np.mean(values > current))
        q = adapt.target_reward_rate if below else 1.0 - adapt.target_reward_rate
        value = float(np.quantile(values, q))
        self._periods[name] = _AdaptPeriod()
        self.values[name] = value
        return ThresholdChange(name, value, "adapt", comparison_rate=observed, n_values=int(values.size))

    def adaptive_for(self, feature: str) -> list[str]:
        return [n for n, s in self.specs.items() if s.adapt is not None and s.adapt.feature == feature]
