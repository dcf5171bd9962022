"""How quantities are written in the kinds' load-time messages (as the protocol writes them)."""

from __future__ import annotations

from controller.lang import units

EPS = 1e-9  # slack when comparing durations and frequencies parsed from text


def sec(value: float) -> str:
    return units.format_quantity(value, units.DURATION)


def hz(value: float) -> str:
    return units.format_quantity(value, units.FREQUENCY)


def band_text(band: tuple[float, float]) -> str:
    return f"[{hz(band[0])}, {hz(band[1])}]"
