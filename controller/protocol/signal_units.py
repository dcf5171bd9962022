"""Signal units as amplifiers write them ('uV', 'µV', 'microvolts', 'fT/cm', ...) and their SI factor.

Pure (no I/O): the protocol loader checks an input's ``unit:`` with it, and the input reads each
channel's unit from the stream description with it (controller.inputs.channel_units).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# unit spelling (case kept where it matters: mV vs MV) -> (factor to SI, SI unit)
_PREFIXES = {"": 1.0, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "μ": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15}
_PREFIX_WORDS = {"": 1.0, "milli": 1e-3, "micro": 1e-6, "nano": 1e-9, "pico": 1e-12, "femto": 1e-15}
_BASES = {"V": "V", "T": "T", "T/m": "T/m", "mol/L": "mol/L", "M": "mol/L"}
_BASE_WORDS = {"volt": "V", "volts": "V", "tesla": "T", "teslas": "T", "molar": "mol/L"}
_SPECIAL = {
    "fT/cm": (1e-13, "T/m"),  # MEG planar gradiometers
    "T/cm": (1e2, "T/m"),
    "mmol/L": (1e-3, "mol/L"),
    "umol/L": (1e-6, "mol/L"),
    "µmol/L": (1e-6, "mol/L"),
}
# Unitless signals pass unchanged (ratios, optical density, arbitrary units, counts).
DIMENSIONLESS = frozenset({"1", "ratio", "a.u.", "au", "arbitrary", "od", "optical density", "counts", "%"})


@dataclass(frozen=True)
class Unit:
    text: str  # as written
    scale: float  # multiply by this to get SI
    si: str  # the SI unit ("" for dimensionless)

    def describe(self) -> str:
        if self.scale == 1.0:
            return f"{self.text} (SI)" if self.si else f"{self.text} (unitless)"
        return f"{self.text} -> {self.si} (x{self.scale:g})"


def parse_unit(text: str) -> Unit | None:
    """The unit named by ``text``, or None if it is not a unit this controller knows."""
    t = text.strip()
    if t in _SPECIAL:
        return Unit(t, *_SPECIAL[t])
    if t.lower() in DIMENSIONLESS:
        return Unit(t, 1.0, "")
    for base, si in _BASES.items():
        if t.endswith(base) and t[: len(t) - len(base)] in _PREFIXES:
            return Unit(t, _PREFIXES[t[: len(t) - len(base)]], si)
    low = t.lower()
    for word, si in _BASE_WORDS.items():
        if low.endswith(word) and low[: len(low) - len(word)] in _PREFIX_WORDS:
            return Unit(t, _PREFIX_WORDS[low[: len(low) - len(word)]], si)
    return None


KNOWN_UNITS = "V, mV, uV (µV, microvolts), nV, T, fT, pT, T/m, fT/cm, mol/L, mmol/L, umol/L, ratio, a.u."


@dataclass(frozen=True)
class InputUnits:
    """The per-column SI factors of one stream, and what to tell the operator about them."""

    scale: np.ndarray  # (n_stream_channels,), 1.0 for columns the session does not use
    summary: str  # e.g. "Cz, Fp1, Fp2: uV -> V (x1e-06)"
    from_protocol: bool  # True when the protocol's unit: filled in missing stream units

    @property
    def identity(self) -> bool:
        return bool(np.all(self.scale == 1.0))


def input_units(stream_units: Sequence[str], labels: Sequence[str], used: Sequence[int],
                protocol_unit: str | None, stream: str) -> tuple[InputUnits | None, list[str]]:
    """SI factors for the ``used`` columns of a stream, or the problems that prevent them.

    A used channel needs a unit: its own (from the stream description) or the protocol's
    ``unit:``. When both are given they must agree: a protocol cannot overrule what the
    amplifier says it sends.
    """
    problems: list[str] = []
    declared = parse_unit(protocol_unit) if protocol_unit else None
    if protocol_unit and declared is None:  # the loader checks this too; kept for direct callers
        problems.append(f"unit {protocol_unit!r} is not a known unit ({KNOWN_UNITS})")
    scale = np.ones(len(labels))
    groups: dict[str, list[str]] = {}
    unitless: list[str] = []
    filled = False
    for col in used:
        text = stream_units[col].strip() if col < len(stream_units) else ""
        label = labels[col]
        if not text:
            if declared is None:
                unitless.append(label)
                continue
            unit, filled = declared, True
        else:
            unit = parse_unit(text)
            if unit is None:
                problems.append(f"channel {label!r} of stream {stream!r} has unit {text!r}, which is not a known "
                                f"unit ({KNOWN_UNITS})")
                continue
            if declared is not None and (unit.scale, unit.si) != (declared.scale, declared.si):
                problems.append(f"channel {label!r} of stream {stream!r} is in {text!r} by its stream description, "
                                f"but the protocol says unit: {protocol_unit}; remove unit: or correct it")
                continue
        scale[col] = unit.scale
        groups.setdefault(unit.describe(), []).append(label)
    if unitless:
        problems.append(f"stream {stream!r} gives no unit for channel{'s' if len(unitless) > 1 else ''} "
                        f"{', '.join(unitless)}: write the unit the amplifier sends in the protocol's input, "
                        f"e.g. unit: uV (or unit: V)")
    if problems:
        return None, problems
    summary = "; ".join(f"{_channels_text(chs)}: {what}" for what, chs in groups.items())
    return InputUnits(scale, summary, filled), []


def _channels_text(labels: list[str], most: int = 6) -> str:
    """A few labels in full; a long montage as its count, first and last."""
    if len(labels) <= most:
        return ", ".join(labels)
    return f"{len(labels)} channels ({labels[0]} ... {labels[-1]})"
