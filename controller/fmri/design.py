"""Which protocol block a volume belongs to, by its acquisition number (not by when it arrived).

A scanner runs on its own clock: volume n is acquired at n * TR after the first counted
volume whether or not the controller was quick. Assigning blocks by index keeps the
baseline and feedback windows exact even when a volume is processed late, and makes the
online result equal to an offline computation on the same 4D array.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

from controller.lang.compiled import Block


@dataclass(frozen=True)
class VolumePlace:
    """Where a volume sits in the run, from its acquisition number alone.

    ``n``: 0-based counted position (negative for a dummy); ``block``: the protocol block holding it
    (None for a dummy or after the timeline's end); ``position``: its 0-based place in that block,
    counted in acquisitions, so a lost or late volume never shifts the ones after it.
    """

    index: int
    n: int
    block: Block | None
    position: int

    @property
    def label(self) -> str:
        return self.block.label if self.block is not None else ""


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

    def _block_k(self, index: int) -> int | None:
        """Position in ``blocks`` of the block holding volume ``index``'s middle (None: dummy or after the end)."""
        n = self.counted(index)
        if n < 0:
            return None
        k = bisect.bisect_right(self._ends, (n + 0.5) * self.tr_s)
        return k if k < len(self.blocks) else None

    def block_of(self, index: int) -> Block | None:
        """The block whose time span holds the middle of volume ``index`` (None: dummy or after the end)."""
        k = self._block_k(index)
        return None if k is None else self.blocks[k]

    def place(self, index: int) -> VolumePlace:
        n, k = self.counted(index), self._block_k(index)
        if k is None:
            return VolumePlace(index, n, None, -1)
        start_s = self._ends[k - 1] if k else 0.0
        first = max(0, math.ceil(start_s / self.tr_s - 0.5 - 1e-9))  # first volume whose middle is in the block
        return VolumePlace(index, n, self.blocks[k], n - first)

    def labels(self, indices: Sequence[int]) -> list[str | None]:
        return [None if (b := self.block_of(i)) is None else b.label for i in indices]

    @property
    def volumes(self) -> int:
        """Counted volumes that the timeline spans."""
        return int(round(self._ends[-1] / self.tr_s)) if self._ends else 0
