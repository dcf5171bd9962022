"""The condition grammar: precedence (for > not > and > or), operands, and error offsets."""

from __future__ import annotations

import pytest

from controller.lang.compiled import (
    And,
    Compare,
    Constant,
    FeatureRef,
    Not,
    Or,
    Sustained,
    ThresholdRef,
)
from controller.protocol.condition import iter_compares, parse_condition, reward_direction, to_text

FEATURES = {"a", "b", "c", "d", "tbr", "blink"}
THRESHOLDS = {"goal", "t"}


def parse(text: str):
    parsed = parse_condition(text, FEATURES, THRESHOLDS)
    assert parsed.issues == [], parsed.issues
    return parsed.condition


def cmp(name: str, op: str = "<", value: float = 1.0) -> Compare:
    return Compare(FeatureRef(name), op, Constant(value))


A, B, C, D = cmp("a"), cmp("b"), cmp("c"), cmp("d")


def test_single_comparison_operands() -> None:
    assert parse("tbr < goal") == Compare(FeatureRef("tbr"), "<", ThresholdRef("goal"))
    assert parse("goal >= tbr") == Compare(ThresholdRef("goal"), ">=", FeatureRef("tbr"))
    assert parse("a <= -2.5e-1") == Compare(FeatureRef("a"), "<=", Constant(-0.25))
    assert parse("blink < 150 uV") == Compare(FeatureRef("blink"), "<", Constant(150e-6))
    assert parse("blink<150µV") == Compare(FeatureRef("blink"), "<", Constant(150e-6))
    assert parse("a > b") == Compare(FeatureRef("a"), ">", FeatureRef("b"))


def test_and_binds_tighter_than_or() -> None:
    assert parse("a < 1 or b < 1 and c < 1") == Or((A, And((B, C))))
    assert parse("a < 1 and b < 1 or c < 1") == Or((And((A, B)), C))
    assert parse("a < 1 and b < 1 and c < 1 or d < 1") == Or((And((A, B, C)), D))


def test_not_binds_tighter_than_and() -> None:
    assert parse("not a < 1 and b < 1") == And((Not(A), B))
    assert parse("not a < 1 or b < 1") == Or((Not(A), B))
    assert parse("not not a < 1") == Not(Not(A))
    assert parse("not (a < 1 and b < 1)") == Not(And((A, B)))


def test_for_binds_tighter_than_and_or_and_not() -> None:
    assert parse("a < 1 for 500 ms and b < 1") == And((Sustained(A, 0.5), B))
    assert parse("a < 1 and b < 1 for 2 s") == And((A, Sustained(B, 2.0)))
    assert parse("a < 1 or b < 1 for 1 min") == Or((A, Sustained(B, 60.0)))
    assert parse("not a < 1 for 250 ms") == Not(Sustained(A, 0.25))


def test_for_applies_to_a_parenthesised_group() -> None:
    assert parse("(a < 1 and b < 1) for 1 s") == Sustained(And((A, B)), 1.0)
    assert parse("(a < 1 or b < 1) for 100 us and c < 1") == And((Sustained(Or((A, B)), 1e-4), C))


def test_parentheses_override_precedence() -> None:
    assert parse("(a < 1 or b < 1) and c < 1") == And((Or((A, B)), C))
    assert parse("((a < 1))") == A


@pytest.mark.parametrize(
    "text, offset, message",
    [
        ("", 0, "empty condition"),
        ("a < 1 and", 9, "expected a feature, a threshold or a number, got the end of the condition"),
        ("a < < 1", 4, "expected a feature, a threshold or a number, got '<'"),
        ("a 1", 2, "expected a comparison (<, >, <=, >=) after 'a', got '1'"),
        ("a < 1 < 2", 6, "comparisons cannot be chained"),
        ("(a < 1", 6, "expected ')' to close the '(' at column 1"),
        ("a < 1)", 5, "unmatched ')'"),
        ("a == 1", 2, "equality is not supported"),
        ("a < 1 && b < 1", 6, "write 'and' rather than '&&'"),
        ("a < 1 for 500", 10, "expected a duration after 'for', like '500 ms', got 500 (no unit)"),
        ("a < 1 for 5 Hz", 10, "after 'for': expected a duration like '2 s' or '500 ms', got '5 Hz' (a frequency)"),
        ("a < 1 for 1 s for 2 s", 14, "'for' is already given"),
        ("a < 3 sec", 6, "unknown unit 'sec' after 3"),
        ("a < 1 $", 6, "unexpected character '$'"),
        ("a < 1 and or b < 1", 10, "got 'or'"),
    ],
)
def test_syntax_errors_point_at_the_token(text: str, offset: int, message: str) -> None:
    parsed = parse_condition(text, FEATURES, THRESHOLDS)
    assert parsed.condition is None
    ((got_offset, got_message),) = parsed.issues
    assert got_offset == offset, got_message
    assert message in got_message


def test_every_unknown_name_is_reported_with_its_offset() -> None:
    parsed = parse_condition("tbx < goal and a < gaol", FEATURES, THRESHOLDS)
    assert parsed.condition is not None
    assert [o for o, _ in parsed.issues] == [0, 19]
    assert "unknown name 'tbx' in condition (did you mean 'tbr'?)" in parsed.issues[0][1]
    assert "did you mean 'goal'?" in parsed.issues[1][1]
    parsed = parse_condition("AND < 1", FEATURES, THRESHOLDS)
    assert parsed.issues == [(0, "unknown name 'AND' in condition; keywords are lower case: 'and'")]


@pytest.mark.parametrize("text, offset", [("a < 1 AND b < 1", 6), ("a < b Or c < 1", 6)])
def test_upper_case_keywords_get_a_hint(text: str, offset: int) -> None:
    parsed = parse_condition(text, FEATURES, THRESHOLDS)
    ((got_offset, message),) = parsed.issues
    assert got_offset == offset
    assert message.startswith("keywords are lower case: write ")


def test_a_name_after_a_number_is_not_taken_for_a_unit() -> None:
    parsed = parse_condition("a < 1 b < 2", FEATURES, THRESHOLDS)
    assert parsed.issues == [(6, "unexpected 'b'; expected 'and', 'or', 'for DURATION' or the end of the condition")]


def test_negation_parity_and_reward_direction() -> None:
    parsed = parse_condition("not (tbr < goal and not goal > tbr)", FEATURES, THRESHOLDS)
    negs = [site.negated for site in parsed.compares]
    assert negs == [True, False]
    assert [n for _, n in iter_compares(parsed.condition)] == negs
    below = Compare(FeatureRef("tbr"), "<", ThresholdRef("goal"))
    assert reward_direction(below, "goal") == ("below", "tbr")
    assert reward_direction(below, "goal", negated=True) == ("above", "tbr")
    assert reward_direction(Compare(ThresholdRef("goal"), ">", FeatureRef("tbr")), "goal") == ("below", "tbr")
    assert reward_direction(Compare(ThresholdRef("goal"), "<=", FeatureRef("tbr")), "goal") == ("above", "tbr")
    assert reward_direction(below, "other") is None


@pytest.mark.parametrize(
    "text",
    [
        "tbr < goal for 500 ms and a < 1 and blink < 150 uV",
        "not (a < 1 or b < 1) and c < 1",
        "(a < 1 and b < 1) for 1 s or not c < 1 for 2 s",
        "not a < 1 for 250 ms",
    ],
)
def test_to_text_round_trips(text: str) -> None:
    cond = parse(text)
    assert parse(to_text(cond)) == cond
