"""Quantities the site configuration needs beyond the protocol language's units.

Charge (``20 uC``), electrode area (``1.0 cm2``), charge density per phase
(``30 uC/cm2``) and current ramp rate (``0.1 mA/s``) appear only in site limits, so they
are parsed here rather than added to :mod:`controller.lang.units`; the grammar and
the wording of messages are the same (a number, a space, a unit symbol). Values come back
in SI: coulombs, square metres, coulombs per square metre, amperes per second.

:func:`fmt` renders any limit value for messages, in the units people use for it
(charge density in uC/cm2, area in cm2, ramp rate in mA/s).
"""

from __future__ import annotations

import math
import re

from controller.lang import units

CHARGE = "charge"
AREA = "area"
CHARGE_DENSITY = "charge density"
CURRENT_RATE = "current rate"
COUNT = "count"  # a whole number of pulses
NUMBER = "number"  # a dimensionless number (Shannon k)

_MICRO = ("u", "\u00b5", "\u03bc")

# symbol -> (family, divisor or multiplier to SI); exact powers of ten so '250 uC' == 250e-6 as written
UNITS: dict[str, tuple[str, float]] = {
    "C": (CHARGE, 1.0),
    "mC": (CHARGE, 1e-3),
    "nC": (CHARGE, 1e-9),
    "m2": (AREA, 1.0),
    "cm2": (AREA, 1e-4),
    "mm2": (AREA, 1e-6),
    "m\u00b2": (AREA, 1.0),
    "cm\u00b2": (AREA, 1e-4),
    "mm\u00b2": (AREA, 1e-6),
    "C/m2": (CHARGE_DENSITY, 1.0),
    "mC/cm2": (CHARGE_DENSITY, 10.0),
    "mC/cm\u00b2": (CHARGE_DENSITY, 10.0),
    "A/s": (CURRENT_RATE, 1.0),
    "mA/s": (CURRENT_RATE, 1e-3),
}
for _m in _MICRO:
    UNITS[f"{_m}C"] = (CHARGE, 1e-6)
    UNITS[f"{_m}C/cm2"] = (CHARGE_DENSITY, 1e-2)
    UNITS[f"{_m}C/cm\u00b2"] = (CHARGE_DENSITY, 1e-2)
    UNITS[f"{_m}A/s"] = (CURRENT_RATE, 1e-6)

_DESCRIBE = {
    CHARGE: ("a charge", "'20 uC' or '0.5 mC'"),
    AREA: ("an area", "'1.0 cm2' or '6 mm2'"),
    CHARGE_DENSITY: ("a charge density per phase", "'30 uC/cm2'"),
    CURRENT_RATE: ("a ramp rate", "'0.1 mA/s'"),
}

_QUANTITY = re.compile(
    r"^\s*(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>\S.*?)?\s*$"
)


def describe(family: str) -> str:
    """``a charge like '20 uC' or '0.5 mC'``."""
    noun, examples = _DESCRIBE[family]
    return f"{noun} like {examples}"


def parse(value: object, family: str) -> float:
    """Parse ``'20 uC'`` (family CHARGE) etc. into SI; raises units.UnitError with what is valid."""
    expected = f"expected {describe(family)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise units.UnitError(f"{expected}, got {units.shown(value)} (no unit)")
    if not isinstance(value, str):
        raise units.UnitError(f"{expected}, got {units.shown(value)}")
    m = _QUANTITY.match(value)
    if m is None:
        raise units.UnitError(f"{expected}, got {units.shown(value)}")
    number = float(m.group("num"))
    if not math.isfinite(number):
        raise units.UnitError(f"{expected}, got {units.shown(value)} (too large)")
    unit = m.group("unit")
    if unit is None:
        raise units.UnitError(f"{expected}, got {units.shown(value)} (no unit)")
    entry = UNITS.get(unit)
    if entry is None:
        known = ", ".join(u for u, (f, _) in UNITS.items() if f == family and u.isascii())
        raise units.UnitError(f"unknown unit {unit!r} in {units.shown(value)}; {expected} (units: {known})")
    got_family, factor = entry
    if got_family != family:
        raise units.UnitError(f"{expected}, got {units.shown(value)} ({_DESCRIBE[got_family][0]})")
    return number * factor if factor >= 1 else number / round(1 / factor)


# ----------------------------------------------------------------------------- formatting


def _g(x: float) -> str:
    return f"{x:.6g}"


def fmt(value: float | int | None, family: str | None) -> str:
    """A value in SI rendered for messages: ``85 %``, ``250 ms``, ``0.125 uC``, ``30 uC/cm2``."""
    if value is None:
        return "unknown"
    if family == COUNT:
        return f"{value:.6g}" if not float(value).is_integer() else str(int(value))
    if family == NUMBER or family is None:
        return _g(value)
    if family == CHARGE:
        if value == 0:
            return "0 C"
        for unit, factor in (("C", 1.0), ("mC", 1e-3)):
            if abs(value) >= factor:
                return f"{_g(value / factor)} {unit}"
        return f"{_g(value / 1e-6)} uC"
    if family == AREA:
        return f"{_g(value / 1e-4)} cm2"
    if family == CHARGE_DENSITY:
        return f"{_g(value / 1e-2)} uC/cm2"
    if family == CURRENT_RATE:
        return f"{_g(value / 1e-3)} mA/s"
    if family == units.DURATION and math.isinf(value):
        return "forever"
    return units.format_quantity(value, family)
