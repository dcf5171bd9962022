"""Evaluating rule conditions on the hot path.

The compiled condition tree is turned into small evaluator objects once; each keeps the
state it needs (``for DURATION`` remembers since when its inner condition has held).
A comparison whose feature or threshold has no value yet is false: no reward is given
on a quantity that does not exist.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping

from controller.lang.compiled import (
    And,
    Compare,
    Condition,
    Constant,
    FeatureRef,
    Not,
    Operand,
    Or,
    Sustained,
    ThresholdRef,
)

# timestamps are floats: 10 steps of 0.1 s must count as 1 s
_TIME_EPS = 1e-9

Features = Mapping[str, float]
Thresholds = Mapping[str, float | None]
# An operand's value now (None: its feature or threshold has none yet).
OperandValue = Callable[[Features, Thresholds], float | None]

_OPS: dict[str, Callable[[float, float], bool]] = {"<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}


class Evaluator:
    def __call__(self, features: Features, thresholds: Thresholds, t: float) -> bool:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget history (after an inhibition or a stream gap)."""


def _operand(op: Operand) -> OperandValue:
    if isinstance(op, Constant):
        value = op.value
        return lambda f, th: value
    if isinstance(op, FeatureRef):
        name = op.name
        return lambda f, th: f.get(name)
    if isinstance(op, ThresholdRef):
        name = op.name
        return lambda f, th: th.get(name)
    raise TypeError(f"not an operand: {op!r}")


class _Compare(Evaluator):
    def __init__(self, node: Compare) -> None:
        self.left, self.right, self.op = _operand(node.left), _operand(node.right), _OPS[node.op]

    def __call__(self, features: Features, thresholds: Thresholds, t: float) -> bool:
        a, b = self.left(features, thresholds), self.right(features, thresholds)
        if a is None or b is None or math.isnan(a) or math.isnan(b):
            return False
        return bool(self.op(a, b))


class _And(Evaluator):
    def __init__(self, items: list[Evaluator]) -> None:
        self.items = items

    def __call__(self, features: Features, thresholds: Thresholds, t: float) -> bool:
        # evaluate every item so each `for` keeps an up-to-date history
        results = [item(features, thresholds, t) for item in self.items]
        return all(results)

    def reset(self) -> None:
        for item in self.items:
            item.reset()


class _Or(_And):
    def __call__(self, features: Features, thresholds: Thresholds, t: float) -> bool:
        results = [item(features, thresholds, t) for item in self.items]
        return any(results)


class _Not(Evaluator):
    def __init__(self, item: Evaluator) -> None:
        self.item = item

    def __call__(self, features: Features, thresholds: Thresholds, t: float) -> bool:
        return not self.item(features, thresholds, t)

    def reset(self) -> None:
        self.item.reset()


class _Sustained(Evaluator):
    def __init__(self, item: Evaluator, duration_s: float) -> None:
        self.item, self.duration_s = item, duration_s
        self.since: float | None = None

    def __call__(self, features: Features, thresholds: Thresholds, t: float) -> bool:
        if self.item(features, thresholds, t):
            if self.since is None:
                self.since = t
            return t - self.since >= self.duration_s - _TIME_EPS
        self.since = None
        return False

    def reset(self) -> None:
        self.since = None
        self.item.reset()


def build(node: Condition) -> Evaluator:
    if isinstance(node, Compare):
        return _Compare(node)
    if isinstance(node, And):
        return _And([build(i) for i in node.items])
    if isinstance(node, Or):
        return _Or([build(i) for i in node.items])
    if isinstance(node, Not):
        return _Not(build(node.item))
    if isinstance(node, Sustained):
        return _Sustained(build(node.item), node.duration_s)
    raise TypeError(f"not a condition: {node!r}")


def names_in(node: Condition) -> tuple[set[str], set[str]]:
    """(feature names, threshold names) a condition reads."""
    feats: set[str] = set()
    ths: set[str] = set()

    def visit(n: Condition) -> None:
        if isinstance(n, Compare):
            for side in (n.left, n.right):
                if isinstance(side, FeatureRef):
                    feats.add(side.name)
                elif isinstance(side, ThresholdRef):
                    ths.add(side.name)
        elif isinstance(n, (And, Or)):
            for i in n.items:
                visit(i)
        elif isinstance(n, (Not, Sustained)):
            visit(n.item)

    visit(node)
    return feats, ths


def compared_pairs(node: Condition) -> set[tuple[str, str]]:
    """(feature, threshold) for every comparison of a feature with a threshold in a condition (what a
    display draws together: the threshold's line over that feature's trace)."""
    pairs: set[tuple[str, str]] = set()

    def visit(n: Condition) -> None:
        if isinstance(n, Compare):
            if isinstance(n.left, FeatureRef) and isinstance(n.right, ThresholdRef):
                pairs.add((n.left.name, n.right.name))
            elif isinstance(n.left, ThresholdRef) and isinstance(n.right, FeatureRef):
                pairs.add((n.right.name, n.left.name))
        elif isinstance(n, (And, Or)):
            for i in n.items:
                visit(i)
        elif isinstance(n, (Not, Sustained)):
            visit(n.item)

    visit(node)
    return pairs
