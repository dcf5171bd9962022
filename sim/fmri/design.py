"""The block design the simulated participant follows: a fixed list, or the controller's markers live.

Fixed lists (``--blocks``) are comma-separated ``label:duration`` items; a duration is seconds
(``40``, ``40s``), minutes (``1.5min``) or volumes (``20tr``); ``N*(...)`` repeats a group::

    rest:20s,3*(happy:40s,count:40s,rest:40s)

After the last block the design reads ``rest``. A live design follows the controller's marker
stream: ``block_start:LABEL`` switches to LABEL, ``block_end:LABEL`` back to ``rest``
(the protocol engine's markers, controller/engine/engine.py).
"""

from __future__ import annotations

import bisect
import re
import threading
from dataclasses import dataclass

REST = "rest"
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|sec|min|tr|vol|)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Block:
    label: str
    onset_s: float
    duration_s: float


def _duration_s(text: str, tr_s: float, where: str) -> float:
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"--blocks: bad duration {text!r} in {where!r} (use e.g. 40s, 1.5min or 20tr)")
    value, unit = float(m.group(1)), m.group(2).lower()
    seconds = value * 60.0 if unit == "min" else value * tr_s if unit in ("tr", "vol") else value
    if seconds <= 0:
        raise ValueError(f"--blocks: duration must be > 0 in {where!r}")
    return seconds


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"--blocks: unbalanced ')' at character {i + 1} of {text!r}")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"--blocks: unbalanced '(' in {text!r}")
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _parse_items(text: str, tr_s: float) -> list[tuple[str, float]]:
    items: list[tuple[str, float]] = []
    for part in _split_top(text):
        if not part:
            raise ValueError(f"--blocks: empty item in {text!r}")
        rep = re.match(r"^(\d+)\s*[*x]\s*\((.*)\)$", part, re.DOTALL)
        if rep:
            n = int(rep.group(1))
            if n < 1:
                raise ValueError(f"--blocks: repeat count must be >= 1 in {part!r}")
            items.extend(_parse_items(rep.group(2), tr_s) * n)
            continue
        label, sep, dur = part.rpartition(":")
        if not sep or not label.strip() or "(" in label:
            raise ValueError(f"--blocks: expected LABEL:DURATION or N*(...), got {part!r}")
        items.append((label.strip(), _duration_s(dur, tr_s, part)))
    return items


class FixedDesign:
    """A block list known in advance (standalone runs, tests)."""

    def __init__(self, blocks: list[Block]) -> None:
        self.blocks = list(blocks)
        self._onsets = [b.onset_s for b in self.blocks]

    @classmethod
    def parse(cls, text: str, tr_s: float = 2.0) -> FixedDesign:
        t = 0.0
        blocks = []
        for label, dur in _parse_items(text, tr_s):
            blocks.append(Block(label, t, dur))
            t += dur
        return cls(blocks)

    @property
    def duration_s(self) -> float:
        return self.blocks[-1].onset_s + self.blocks[-1].duration_s if self.blocks else 0.0

    def label_at(self, t_s: float) -> str:
        i = bisect.bisect_right(self._onsets, t_s) - 1
        if i < 0 or t_s >= self.duration_s:
            return REST
        return self.blocks[i].label


class LiveDesign:
    """Labels from the controller's markers, as change points on the simulation's time axis."""

    def __init__(self) -> None:
        self._times: list[float] = [float("-inf")]
        self._labels: list[str] = [REST]
        self._lock = threading.Lock()
        self.markers = 0

    def on_marker(self, text: str, t_s: float) -> None:
        """Apply one marker received at simulation time ``t_s`` (non-block markers are ignored)."""
        kind, _, label = text.strip().partition(":")
        if kind == "block_start" and label:
            new = label
        elif kind == "block_end":
            new = REST
        else:
            return
        with self._lock:
            self.markers += 1
            i = bisect.bisect_right(self._times, t_s)
            self._times.insert(i, t_s)
            self._labels.insert(i, new)

    def label_at(self, t_s: float) -> str:
        with self._lock:
            return self._labels[bisect.bisect_right(self._times, t_s) - 1]
