"""What the engine needs from the stimulation side, as typed ports (``typing.Protocol``).

The engine decides; the dispatcher and the governor act and refuse. The engine sees only these
few methods, so it can be tested against a fake and never reaches into a concrete class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from controller.lang.compiled import StimAction


class SafetyPort(Protocol):
    """The governor: the engine raises and lifts its protocol interlocks and shows the safety state."""

    @property
    def inhibitions(self) -> Mapping[str, Any]: ...

    def inhibit(self, source: str, reason: str) -> None: ...

    def clear(self, source: str) -> bool: ...

    def armed(self, device: str) -> bool: ...


class StimulationPort(Protocol):
    """The dispatcher: carries out a rule's stimulation action through the governor."""

    governor: SafetyPort
    links: Mapping[str, Any]

    def execute(self, action: StimAction, t_source: float, rule: str, features: Mapping[str, float],
                at: float | None = None, arrival: float | None = None) -> None: ...

    def observe_latency(self, latency_s: float) -> None: ...
