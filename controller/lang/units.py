"""Physical quantities written out in protocol and config files (``500 ms``, ``4 Hz``, ``1.5 mA``).

A unit is required wherever a quantity has a dimension, so that ``window: 2`` can never
silently mean two seconds or two samples. Values come back in SI units (seconds, hertz,
volts, amperes); percentages come back as the number written (``50 %`` -> 50.0), since
device settings such as stimulator output are conventionally given in 0..100 %.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

DURATION = "duration"
FREQUENCY = "frequency"
VOLTAGE = "voltage"
CURRENT = "current"
PERCENT = "percent"
LENGTH = "length"  # ROI radii, smoothing kernels (fMRI)
CONCENTRATION = "concentration"  # haemoglobin changes (fNIRS), in mol/L

FAMILIES = (DURATION, FREQUENCY, VOLTAGE, CURRENT, PERCENT, LENGTH, CONCENTRATION)

# unit symbol -> (family, factor to SI). Both micro signs (U+00B5, U+03BC) and "u" are accepted.
UNITS: dict[str, tuple[str, float]] = {
    "us": (DURATION, 1e-6),
    "\u00b5s": (DURATION, 1e-6),
    "\u03bcs": (DURATION, 1e-6),
    "ms": (DURATION, 1e-3),
    "s": (DURATION, 1.0),
    "min": (DURATION, 60.0),
    "h": (DURATION, 3600.0),
    "Hz": (FREQUENCY, 1.0),
    "kHz": (FREQUENCY, 1e3),
    "V": (VOLTAGE, 1.0),
    "mV": (VOLTAGE, 1e-3),
    "uV": (VOLTAGE, 1e-6),
    "\u00b5V": (VOLTAGE, 1e-6),
    "\u03bcV": (VOLTAGE, 1e-6),
    "A": (CURRENT, 1.0),
    "mA": (CURRENT, 1e-3),
    "uA": (CURRENT, 1e-6),
    "\u00b5A": (CURRENT, 1e-6),
    "\u03bcA": (CURRENT, 1e-6),
    "%": (PERCENT, 1.0),
    "m": (LENGTH, 1.0),
    "cm": (LENGTH, 1e-2),
    "mm": (LENGTH, 1e-3),
    "mol/L": (CONCENTRATION, 1.0),
    "mmol/L": (CONCENTRATION, 1e-3),
    "umol/L": (CONCENTRATION, 1e-6),
    "\u00b5mol/L": (CONCENTRATION, 1e-6),
    "nmol/L": (CONCENTRATION, 1e-9),
    "mM": (CONCENTRATION, 1e-3),
    "uM": (CONCENTRATION, 1e-6),
    "\u00b5M": (CONCENTRATION, 1e-6),
    "nM": (CONCENTRATION, 1e-9),
}

# How each family is described in messages: (noun phrase, examples).
_DESCRIBE: dict[str, tuple[str, str]] = {
    DURATION: ("a duration", "'2 s' or '500 ms'"),
    FREQUENCY: ("a frequency", "'8 Hz' or '1.5 kHz'"),
    VOLTAGE: ("an amplitude", "'150 uV' or '1 mV'"),
    CURRENT: ("a current", "'1.5 mA' or '500 uA'"),
    PERCENT: ("a percentage", "'50 %'"),
    LENGTH: ("a length", "'7 mm' or '1 cm'"),
    CONCENTRATION: ("a concentration", "'0.5 umol/L' or '0.5 uM'"),
}

_QUANTITY = re.compile(
    r"^\s*(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>\S.*?)?\s*$"
)


class UnitError(ValueError):
    """A value is not a quantity of the expected family; the message says what would be valid."""


@dataclass(frozen=True)
class Quantity:
    """A parsed quantity: ``value`` in SI, ``unit`` as written (None for a bare number)."""

    value: float
    unit: str | None
    family: str | None  # None for a bare (dimensionless) number

    def __str__(self) -> str:
        return format_quantity(self.value, self.family)


def describe_family(families: str | Iterable[str], *, allow_bare: bool = False) -> str:
    """``expected a duration like '2 s' or '500 ms'`` style phrase for one or more families."""
    fams = (families,) if isinstance(families, str) else tuple(families)
    parts = [f"{_DESCRIBE[f][0]} like {_DESCRIBE[f][1]}" for f in fams]
    if allow_bare:
        parts.insert(0, "a plain number")
    return " or ".join(parts)


def shown(value: object) -> str:
    """A value as the author wrote it in YAML, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null (nothing)"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and value.is_integer():
        return str(value)
    return str(value)


def unit_family(unit: str) -> str | None:
    """The family of a unit symbol, or None when it is not a known unit."""
    entry = UNITS.get(unit)
    return entry[0] if entry else None


def parse_quantity(
    value: object, families: str | Iterable[str], *, allow_bare: bool = False
) -> Quantity:
    """Parse ``'500 ms'`` (or a number, if ``allow_bare``) into a :class:`Quantity`.

    ``families`` is the accepted unit family or families (see :data:`FAMILIES`). Raises
    :class:`UnitError` with a message such as
    ``expected a duration like '2 s' or '500 ms', got 2``.
    """
    fams = (families,) if isinstance(families, str) else tuple(families)
    for f in fams:
        if f not in _DESCRIBE:
            raise ValueError(f"unknown unit family {f!r}; known: {', '.join(FAMILIES)}")
    expected = f"expected {describe_family(fams, allow_bare=allow_bare)}"
    if isinstance(value, bool) or value is None:
        raise UnitError(f"{expected}, got {shown(value)}")
    if isinstance(value, (int, float)):
        if not allow_bare:
            raise UnitError(f"{expected}, got {shown(value)}")
        number = float(value)
        if not math.isfinite(number):
            raise UnitError(f"{expected}, got {shown(value)} (not a finite number)")
        return Quantity(number, None, None)
    if not isinstance(value, str):
        raise UnitError(f"{expected}, got {type(value).__name__} {shown(value)}")
    m = _QUANTITY.match(value)
    if m is None:
        raise UnitError(f"{expected}, got {shown(value)}")
    number = float(m.group("num"))
    if not math.isfinite(number):
        raise UnitError(f"{expected}, got {shown(value)} (too large)")
    unit = m.group("unit")
    if unit is None:
        if allow_bare:
            return Quantity(number, None, None)
        raise UnitError(f"{expected}, got {shown(value)} (no unit)")
    entry = UNITS.get(unit)
    if entry is None:
        known = ", ".join(u for f in fams for u, (uf, _) in UNITS.items() if uf == f and u.isascii())
        raise UnitError(f"unknown unit {unit!r} in {shown(value)}; {expected} (units: {known})")
    family, factor = entry
    if family not in fams:
        raise UnitError(f"{expected}, got {shown(value)} ({_DESCRIBE[family][0]})")
    # dividing by an exact power of ten keeps '100 ms' == 0.1 exactly as written
    si = number * factor if factor >= 1 else number / round(1 / factor)
    return Quantity(si, unit, family)


def parse_si(value: object, families: str | Iterable[str], *, allow_bare: bool = False) -> float:
    """Like :func:`parse_quantity` but just the SI value (e.g. ``'1.5 mA'`` -> 0.0015)."""
    return parse_quantity(value, families, allow_bare=allow_bare).value


# family -> ladder of (unit, factor), largest first, for readable messages
_LADDERS: dict[str, tuple[tuple[str, float], ...]] = {
    DURATION: (("min", 60.0), ("s", 1.0), ("ms", 1e-3), ("us", 1e-6)),
    FREQUENCY: (("kHz", 1e3), ("Hz", 1.0)),
    VOLTAGE: (("V", 1.0), ("mV", 1e-3), ("uV", 1e-6)),
    CURRENT: (("A", 1.0), ("mA", 1e-3), ("uA", 1e-6)),
    PERCENT: (("%", 1.0),),
    LENGTH: (("m", 1.0), ("cm", 1e-2), ("mm", 1e-3)),
    CONCENTRATION: (("mol/L", 1.0), ("mmol/L", 1e-3), ("umol/L", 1e-6), ("nmol/L", 1e-9)),
}


def format_quantity(si_value: float, family: str | None) -> str:
    """A readable rendering of an SI value: 0.25, duration -> ``'250 ms'``."""
    if family is None:
        return f"{si_value:g}"
    ladder = _LADDERS[family]
    magnitude = abs(si_value)
    for unit, factor in ladder:
        if magnitude >= factor or (unit, factor) == ladder[-1]:
            if family == DURATION and unit == "min" and not (si_value / 60.0).is_integer():
                continue
            return f"{si_value / factor:.6g} {unit}"
    unit, factor = ladder[-1]
    return f"{si_value / factor:.6g} {unit}"
