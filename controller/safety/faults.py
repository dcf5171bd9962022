"""The fault vocabulary: every reason stimulation (and feedback) can be inhibited, named in one place.

An inhibition is keyed by its source, ``kind`` or ``kind:subject`` (``input_stall:eeg``,
``device:tms``), so clearing one fault never clears another; the journal, the status line and
the report show these names. The wiring, the engine, the dispatcher and the governor all build
them here, never by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class FaultKind(str, Enum):
    """What raised an inhibition (the source name's first part)."""

    ESTOP = "estop"  # the operator's or a remote E-STOP
    CLOCK = "clock"  # the LSL and wall clocks disagree, or the LSL clock went back (governor)
    LATENCY = "latency"  # the controller's delay over the site's max_loop_latency
    LEDGER = "ledger"  # the dose ledger cannot be written
    GOVERNOR = "governor"  # the governor itself failed
    DELIVERY = "delivery"  # a device reported more than was committed
    INPUT_STALL = "input_stall"  # an input stopped delivering (or was lost)
    NONFINITE = "nonfinite"  # NaN or inf in an input's data
    CLOCK_JUMP = "clock_jump"  # an input's time stamps jumped
    VOLUMES = "volumes"  # an fMRI input's volumes cannot be processed (grid, ROI, reference)
    ARTIFACT = "artifact"  # an artifact feature over its limit
    INTERLOCK = "interlock"  # a protocol's interlock condition holds
    DEVICE = "device"  # a stimulator's driver failed (no reply, error, link lost)
    WATCHDOG = "watchdog"  # a keep-alive was not served in time
    OUTPUT = "output"  # a feedback/marker output failed
    SIMULATOR = "simulator"  # the simulated participant or scanner exited


@dataclass(frozen=True)
class FaultSource:
    """One inhibition's key: a kind and, for faults of one thing, its name (input, device, interlock)."""

    kind: FaultKind
    subject: str | None = None

    def __str__(self) -> str:
        return self.kind.value if self.subject is None else f"{self.kind.value}:{self.subject}"

    @classmethod
    def parse(cls, text: str) -> FaultSource:
        """The source a journal or status line names (``ValueError`` for a name outside the vocabulary)."""
        kind, sep, subject = text.partition(":")
        try:
            return cls(FaultKind(kind), subject if sep else None)
        except ValueError:
            known = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"unknown fault source {text!r}: its kind is one of {known}") from None


def source(kind: FaultKind, subject: str | None = None) -> str:
    """The source name as the governor, the engine and the journal key it."""
    return str(FaultSource(kind, subject))
