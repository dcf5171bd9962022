"""One interface for every input: a source is built with the sink it delivers to.

A source (an LSL sample stream's reader, a scanner folder, an LSL volume stream) is a thread that
waits for its next item and hands it to ``sink.on_data`` in that same thread: the hot path runs
there before the next wait. Its health goes to ``sink.on_status(status, detail, gap_s)``. The sink
is given at construction, so a source never exists half-wired; the session's sink applies one fault
policy to every modality (controller/session/input_line.py).

Statuses: ``connected``, ``stalled``, ``resumed``, ``lost`` (every source); ``gap`` and
``clock_jump`` (sample streams: ``gap_s`` is the signal time missed, < 0 when time went back),
``blocks`` (a sample stream's block size); ``missing``, ``out_of_order``, ``duplicate``,
``existing``, ``bad_file`` (volume sources).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

ItemT = TypeVar("ItemT")
ItemT_contra = TypeVar("ItemT_contra", contravariant=True)


class Sink(Protocol[ItemT_contra]):
    """Where a source delivers, from its own thread."""

    def on_data(self, item: ItemT_contra) -> None: ...

    def on_status(self, status: str, detail: str, gap_s: float | None = None) -> None: ...


class Source(Protocol):
    """What a session does with any input: open it early, run it, stop it."""

    input_name: str
    error: BaseException | None

    def open(self, timeout_s: float = 10.0) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class Chunk:
    """Samples of a sample stream as pulled: (samples, channels), their LSL stamps, and when they arrived."""

    data: NDArray[np.floating]
    timestamps: NDArray[np.float64]
    arrival: float


def _ignore_status(status: str, detail: str) -> None:
    return None


@dataclass
class Callbacks(Generic[ItemT]):
    """A sink made of two functions (tools, tests and benches that need no fault policy)."""

    data: Callable[[ItemT], None]
    status: Callable[[str, str], None] = _ignore_status

    def on_data(self, item: ItemT) -> None:
        self.data(item)

    def on_status(self, status: str, detail: str, gap_s: float | None = None) -> None:
        self.status(status, detail)
