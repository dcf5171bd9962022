"""Which protocol block a volume belongs to, by its acquisition number (not by when it arrived).

A scanner runs on its own clock: volume n is acquired at n * TR after the first counted
volume whether or not the controller was quick. Assigning blocks by index keeps the
baseline and feedback windows exact even when a volume is processed late, and makes the
online result equal to an offline computation on the same 4D array.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from controller.protocol.compiled import Block


class VolumeDesign:
    def __init__(self, blocks: Sequence[Block], tr_s: float, first_counted_index: int) -> None:
        if tr_s <= 0:
            raise ValueError(f"TR must be above 0, got {tr_s}")
        self.blocks = tuple(blocks)
        self.tr_s = tr_s
        self.first = first_counted_index
        ends, t = [], 0.0
        for b in self.blocks:
            t += b.duration_s
            ends.append(t)
        self._ends = ends

    def counted(self, index: int) -> int:
        """0-based position of a volume after the skipped dummies (negative for a dummy)."""
        return index - self.first

    def block_of(self, index: int) -> Block | None:
        """The block whose time span holds the middle of volume ``index`` (None: dummy or after the end)."""
        n = self.counted(index)
        if n < 0:
            return None
        t = (n + 0.5) * self.tr_s
        k = bisect.bisect_right(self._ends, t)
        return self.blocks[k] if k < len(self.blocks) else None

    def labels(self, indices: Sequence[int]) -> list[str | None]:
        return [None if (b := self.block_of(i)) is None else b.label for i in indices]

    @property
    def volumes(self) -> int:
        """Counted volumes that the timeline spans."""
        return int(round(self._ends[-1] / self.tr_s)) if self._ends else 0
