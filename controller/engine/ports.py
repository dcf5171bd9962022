"""What the engine needs from the stimulation side and reads from the features, as typed ports
(``typing.Protocol``).

The engine decides; the dispatcher and the governor act and refuse. The engine sees only these
few methods, so it can be tested against a fake and never reaches into a concrete class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from controller.lang.compiled import StimAction


class FeatureSample(Protocol):
    """One feature value as the engine reads it (controller.dsp.features.FeatureValue is one). It may also
    carry ``arrival``, ``at`` and ``block_index`` (read with ``getattr``, None when absent)."""

    @property
    def name(self) -> str: ...

    @property
    def value(self) -> float: ...

    @property
    def source_time(self) -> float: ...  # LSL time of the newest sample it used

    @property
    def sample_index(self) -> int: ...


class SafetyPort(Protocol):
    """The governor: the engine raises and lifts its protocol interlocks and shows the safety state."""

    @property
    def inhibitions(self) -> Mapping[str, Any]: ...

    def inhibit(self, source: str, reason: str) -> None: ...

    def clear(self, source: str) -> bool: ...

    def armed(self, device: str) -> bool: ...


class StimulationPort(Protocol):
    """The dispatcher: carries out a rule's stimulation action through the governor."""

    # read-only (properties): a settable member would have to be exactly SafetyPort, which the dispatcher's
    # Governor is not (a Protocol's mutable attributes are invariant)
    @property
    def governor(self) -> SafetyPort: ...

    @property
    def links(self) -> Mapping[str, Any]: ...

    def execute(self, action: StimAction, t_source: float, rule: str, features: Mapping[str, float],
                at: float | None = None, arrival: float | None = None) -> None: ...

    def observe_latency(self, latency_s: float) -> None: ...
