"""The one small interface every output implements: LSL feedback outlets today, stimulators later.

The engine never talks to a device directly: it hands a ``Command`` to an ``Output``
(through the safety governor, once stimulation exists), and the output reports the LSL
time at which the command left the process, so ``t_sent - t_source`` is the loop latency.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Command:
    """What the engine decided, stamped with the source time of the sample that caused it."""

    kind: str  # "marker" | "feedback" | "features" (stimulation kinds come with the stimulation drivers)
    t_source: float
    payload: Mapping[str, Any] = field(default_factory=dict)


class OutputError(RuntimeError):
    """The output could not deliver; the message names the output and the cause."""


class Output(ABC):
    """A destination for commands. ``send`` runs on the hot path: it must not block."""

    name: str = "output"
    accepts: frozenset[str] = frozenset()

    @abstractmethod
    def open(self) -> None:
        """Acquire the port/outlet; raise OutputError with the reason if impossible."""

    @abstractmethod
    def send(self, command: Command) -> float:
        """Deliver ``command``; return the LSL time the bytes left."""

    @abstractmethod
    def close(self) -> None:
        """Release resources; safe to call twice."""

    def __enter__(self) -> Output:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
