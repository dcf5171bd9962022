"""The protocol timeline as a clock-driven state machine (start, pause, resume, skip, stop).

Time is the LSL clock passed in by the caller; the timeline never reads a clock itself,
so tests drive it with any times they like.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.lang.compiled import Block


@dataclass(frozen=True)
class Transition:
    """A block ended (``ended``) and/or began (``started``) at time ``t``."""

    t: float
    ended: Block | None
    started: Block | None


class Timeline:
    def __init__(self, blocks: tuple[Block, ...]) -> None:
        if not blocks:
            raise ValueError("a timeline needs at least one block")
        self.blocks = blocks
        self.index: int | None = None  # None before start; len(blocks) once finished
        self._block_started_at = 0.0  # clock time the current block (re)started running
        self._elapsed_before = 0.0  # block time accumulated before the last pause
        self.paused_at: float | None = None

    @property
    def started(self) -> bool:
        return self.index is not None

    @property
    def finished(self) -> bool:
        return self.index is not None and self.index >= len(self.blocks)

    @property
    def current(self) -> Block | None:
        if self.index is None or self.finished:
            return None
        return self.blocks[self.index]

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    def start(self, t: float) -> list[Transition]:
        if self.started:
            raise RuntimeError("timeline already started")
        self.index = 0
        self._enter(t)
        return [Transition(t, None, self.blocks[0])]

    def elapsed(self, t: float) -> float:
        """Running time spent in the current block (pauses excluded)."""
        if self.paused_at is not None:
            return self._elapsed_before
        return self._elapsed_before + (t - self._block_started_at)

    def time_left(self, t: float) -> float:
        block = self.current
        return 0.0 if block is None else max(0.0, block.duration_s - self.elapsed(t))

    def total_left(self, t: float) -> float:
        if self.index is None:
            return sum(b.duration_s for b in self.blocks)
        if self.finished:
            return 0.0
        return self.time_left(t) + sum(b.duration_s for b in self.blocks[self.index + 1:])

    def advance(self, t: float) -> list[Transition]:
        """Move past every block whose time is up at ``t`` (several if ``t`` jumped far)."""
        out: list[Transition] = []
        while self.index is not None and not self.finished and self.paused_at is None:  # started, not finished
            block = self.blocks[self.index]
            overrun = self.elapsed(t) - block.duration_s
            if overrun < 0:
                break
            boundary = t - overrun  # the exact moment the block ran out
            out.append(self._next(boundary))
        return out

    def pause(self, t: float) -> None:
        if self.paused_at is None and self.current is not None:
            self._elapsed_before = self.elapsed(t)
            self.paused_at = t

    def resume(self, t: float) -> None:
        if self.paused_at is not None:
            self.paused_at = None
            self._block_started_at = t

    def skip(self, t: float) -> Transition | None:
        """End the current block now and start the next one."""
        if self.current is None:
            return None
        was_paused = self.paused_at is not None
        transition = self._next(t)
        if was_paused and not self.finished:
            self.paused_at = t
        return transition

    def stop(self, t: float) -> Transition | None:
        """End the current block now and finish the timeline."""
        block = self.current
        if block is None:
            return None
        self.index = len(self.blocks)
        self.paused_at = None
        return Transition(t, block, None)

    def _next(self, t: float) -> Transition:
        assert self.index is not None, "the timeline has started"  # its callers see to it
        ended = self.blocks[self.index]
        self.index += 1
        self.paused_at = None
        started = None
        if not self.finished:
            started = self.blocks[self.index]
            self._enter(t)
        return Transition(t, ended, started)

    def _enter(self, t: float) -> None:
        self._block_started_at = t
        self._elapsed_before = 0.0
