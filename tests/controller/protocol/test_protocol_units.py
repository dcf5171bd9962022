"""Quantities with units: SI values, and messages that name the expected unit family."""

from __future__ import annotations

import pytest

from controller.lang import units
from controller.lang.units import UnitError, format_quantity, parse_quantity, parse_si


@pytest.mark.parametrize(
    "text, family, value",
    [
        ("500 ms", units.DURATION, 0.5),
        ("100 ms", units.DURATION, 0.1),
        ("2 s", units.DURATION, 2.0),
        ("2 min", units.DURATION, 120.0),
        ("250 us", units.DURATION, 250e-6),
        ("250 µs", units.DURATION, 250e-6),
        ("1.5 kHz", units.FREQUENCY, 1500.0),
        ("0.5Hz", units.FREQUENCY, 0.5),
        ("150 uV", units.VOLTAGE, 150e-6),
        ("150 µV", units.VOLTAGE, 150e-6),
        ("150 \u03bcV", units.VOLTAGE, 150e-6),
        ("1 mV", units.VOLTAGE, 1e-3),
        ("1.5 mA", units.CURRENT, 1.5e-3),
        ("500 uA", units.CURRENT, 500e-6),
        ("2 A", units.CURRENT, 2.0),
        ("50 %", units.PERCENT, 50.0),
        ("1e3 ms", units.DURATION, 1.0),
        ("-3 mV", units.VOLTAGE, -3e-3),
    ],
)
def test_parse_to_si(text: str, family: str, value: float) -> None:
    assert parse_si(text, family) == pytest.approx(value, rel=1e-12)


def test_exact_decimal_values() -> None:
    # '100 ms' must compare equal to 0.1 as written in Python
    assert parse_si("100 ms", units.DURATION) == 0.1
    assert parse_si("150 uV", units.VOLTAGE) == 150e-6
    assert parse_si("0.3 ms", units.DURATION) == 0.0003


@pytest.mark.parametrize(
    "value, family, message",
    [
        (2, units.DURATION, "expected a duration like '2 s' or '500 ms', got 2"),
        ("2", units.DURATION, "expected a duration like '2 s' or '500 ms', got '2' (no unit)"),
        ("2 Hz", units.DURATION, "expected a duration like '2 s' or '500 ms', got '2 Hz' (a frequency)"),
        ("2 sec", units.DURATION, "unknown unit 'sec' in '2 sec'; expected a duration like '2 s' or '500 ms' (units: us, ms, s, min, h)"),
        ("fast", units.FREQUENCY, "expected a frequency like '8 Hz' or '1.5 kHz', got 'fast'"),
        (True, units.CURRENT, "expected a current like '1.5 mA' or '500 uA', got true"),
        (None, units.PERCENT, "expected a percentage like '50 %', got null (nothing)"),
        ([1, 2], units.VOLTAGE, "expected an amplitude like '150 uV' or '1 mV', got list [1, 2]"),
    ],
)
def test_errors_say_what_is_expected(value: object, family: str, message: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_quantity(value, family)
    assert str(info.value) == message


def test_bare_numbers_when_allowed() -> None:
    q = parse_quantity(3, units.VOLTAGE, allow_bare=True)
    assert (q.value, q.unit, q.family) == (3.0, None, None)
    assert parse_quantity("2.5", units.VOLTAGE, allow_bare=True).value == 2.5
    q = parse_quantity("150 uV", units.VOLTAGE, allow_bare=True)
    assert (q.unit, q.family) == ("uV", units.VOLTAGE)
    with pytest.raises(UnitError, match="expected a plain number or an amplitude"):
        parse_quantity("3 s", units.VOLTAGE, allow_bare=True)


def test_several_families() -> None:
    assert parse_quantity("1 mA", [units.CURRENT, units.PERCENT]).family == units.CURRENT
    assert parse_quantity("30 %", [units.CURRENT, units.PERCENT]).family == units.PERCENT
    with pytest.raises(UnitError, match="expected a current like '1.5 mA' or '500 uA' or a percentage like '50 %'"):
        parse_quantity("3 s", [units.CURRENT, units.PERCENT])


def test_unknown_family_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown unit family 'mass'"):
        parse_quantity("3 kg", "mass")


@pytest.mark.parametrize(
    "value, family, text",
    [
        (0.25, units.DURATION, "250 ms"),
        (120.0, units.DURATION, "2 min"),
        (90.0, units.DURATION, "90 s"),
        (250e-6, units.DURATION, "250 us"),
        (1500.0, units.FREQUENCY, "1.5 kHz"),
        (0.5, units.FREQUENCY, "0.5 Hz"),
        (150e-6, units.VOLTAGE, "150 uV"),
        (2.5, None, "2.5"),
    ],
)
def test_format_quantity(value: float, family: str | None, text: str) -> None:
    assert format_quantity(value, family) == text
