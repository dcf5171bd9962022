"""Which block of the timeline the session is in, for kinds whose value is relative to a block
(an fNIRS concentration change against the preceding rest).

The features layer sits below the engine, so a pipeline cannot ask the timeline itself: the session
hands it a function (``follow``) and evaluators that need it receive this object (``bind_blocks``).
"""

from __future__ import annotations

from collections.abc import Callable

BlockNow = Callable[[], "tuple[int, str] | None"]


def _no_block() -> tuple[int, str] | None:
    return None


class BlockClock:
    """(block index, label) of the block running now, or None before the timeline starts or after it ends."""

    __slots__ = ("_now",)

    def __init__(self) -> None:
        self._now: BlockNow = _no_block

    def follow(self, now: BlockNow) -> None:
        self._now = now

    def current(self) -> tuple[int, str] | None:
        return self._now()
