"""The governor's vocabulary: the commands it is asked about and its answers.

Command kinds are those of the stimulator driver interface (drivers/stimulator.py); the
parameters are the driver's SI 'set' keys, plus ``duration_s`` and ``ramp_s`` for a 'start'.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.safety.limits import Violation, summary

ARM, DISARM, SET, FIRE, START, STOP = "arm", "disarm", "set", "fire", "start", "stop"
KINDS = (ARM, DISARM, SET, FIRE, START, STOP)
STIMULATING = frozenset({FIRE, START})


@dataclass(frozen=True)
class StimRequest:
    """A command for the governor: kind and parameters as the stimulator driver takes them.

    ``t`` is when the controller had the data that decided: the arrival (LSL clock) of the chunk
    holding the detecting sample; the site's ``max_loop_latency`` bounds ``now - t``, the
    controller's own delay. ``t_sample`` is that sample's LSL time stamp (earlier by the
    amplifier's block and transport); the optional ``max_end_to_end_latency`` bounds
    ``now - t_sample``. For an operator command both are the time of the click. ``params`` are SI: intensity_pct,
    current_a, frequency_hz, pulse_width_s, phases, n_pulses (settings, for 'set'), and
    duration_s, ramp_s for 'start'. ``rule`` says who asked, e.g. "rule 2 'tbr < goal'".
    """

    device: str
    kind: str
    t: float
    params: Mapping[str, float] = field(default_factory=dict)
    rule: str | None = None
    t_sample: float | None = None


@dataclass(frozen=True)
class Verdict:
    """The governor's answer; falsy when refused. ``str()`` is the sentence to log/show."""

    allowed: bool
    kind: str
    device: str | None
    t: float  # LSL clock reading at the decision
    violations: tuple[Violation, ...] = ()
    rule: str | None = None
    note: str = ""  # what an allowed command committed, e.g. "20 pulses"

    def __bool__(self) -> bool:
        return self.allowed

    @property
    def reason(self) -> str:
        return summary(self.violations) if self.violations else self.note

    @property
    def limit(self) -> str | None:
        return self.violations[0].limit if self.violations else None

    @property
    def value(self) -> float | None:
        return self.violations[0].value if self.violations else None

    @property
    def limit_value(self) -> float | None:
        return self.violations[0].limit_value if self.violations else None

    def __str__(self) -> str:
        if self.allowed:
            return f"allowed: {self.device} {self.kind}" + (f" ({self.note})" if self.note else "")
        asks = f"{self.rule} asks " if self.rule else ""
        return f"refused: {asks}{self.reason}"


@dataclass(frozen=True)
class Inhibition:
    source: str
    reason: str
    t: float
