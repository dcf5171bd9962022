"""What the displays read from the controller's marker stream, and the block instructions.

Markers the engine sends (controller/engine/engine.py): ``block_start:<label>`` and
``block_end:<label>`` at block edges, rule actions (``reward``, free markers, ``<kind>:<device>``
for stimulation). The displays also understand two target markers (not sent by the engine yet,
see ``parse_marker``): ``target:<fraction>`` and ``threshold:<name>=<value>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Block label -> what the participant reads. Matching is case-insensitive, then on the label's part
# before the first '_' or '-' (so `happy_transfer` or `happy-run2` read as `happy`).
DEFAULT_INSTRUCTIONS: dict[str, str] = {
    "happy": "Recall a happy memory",
    "count": "Count backwards from 300 by 7",
    "rest": "Rest",
    "baseline": "Rest",
    "transfer": "Recall a happy memory",
    "cbt": "Apply your strategy",
    "regulate": "Raise the bar",
    "train": "Raise the bar",
}


@dataclass(frozen=True)
class Marker:
    """One parsed marker: ``kind`` is block_start, block_end, target, threshold or other."""

    kind: str
    label: str = ""  # block label, threshold name, or the whole text for `other`
    value: float | None = None


def parse_marker(text: str) -> Marker:
    """Parse one marker string; anything unknown (or malformed) is ``other`` and ignored by the bar.

    ``target:0.6`` sets the target line at 60 % of the bar; ``threshold:goal=1.25`` gives a
    threshold in the feedback feature's own units, converted with the feedback range.
    """
    head, sep, rest = text.partition(":")
    if sep and head in ("block_start", "block_end"):
        return Marker(head, rest)
    if sep and head == "target":
        try:
            return Marker("target", "", float(rest))
        except ValueError:
            return Marker("other", text)
    if sep and head == "threshold":
        name, eq, value = rest.partition("=")
        try:
            return Marker("threshold", name.strip(), float(value)) if eq else Marker("other", text)
        except ValueError:
            return Marker("other", text)
    return Marker("other", text)


def instruction_for(label: str | None, table: Mapping[str, str]) -> str:
    """The text shown during block ``label``: exact (case-insensitive) match, then its stem, then
    the label itself made readable (``count_down`` -> ``Count down``)."""
    if not label:
        return ""
    lower = {k.lower(): v for k, v in table.items()}
    key = label.lower()
    if key in lower:
        return lower[key]
    stem = key.replace("-", "_").split("_")[0]
    if stem in lower:
        return lower[stem]
    readable = label.replace("_", " ").replace("-", " ").strip()
    return readable[:1].upper() + readable[1:]


def parse_instructions(items: Iterable[str], base: Mapping[str, str] = DEFAULT_INSTRUCTIONS) -> dict[str, str]:
    """``LABEL=TEXT`` options over the defaults; a malformed item raises ValueError naming it."""
    table = dict(base)
    for item in items:
        label, eq, text = item.partition("=")
        if not eq or not label.strip():
            raise ValueError(f"--instruction {item!r}: expected LABEL=TEXT, e.g. happy='Recall a happy memory'")
        table[label.strip()] = text.strip()
    return table


def scale_to_bar(value: float, low: float, high: float) -> float:
    """A value in the feedback feature's units -> bar fraction, exactly as the engine scales
    feedback (linear, ``low`` -> 0, ``high`` -> 1, clipped)."""
    return min(1.0, max(0.0, (value - low) / (high - low)))
