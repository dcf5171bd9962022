"""What an input's faults do, the same for every modality: a stall, NaN/inf data and a clock jump inhibit
feedback (the engine) and stimulation (the governor), and data flowing cleanly again lifts them.

An EEG amplifier's chunks and an fMRI scanner's volumes go through the same policy, so a stalled
scanner or a NaN volume inhibits stimulation exactly as a stalled or NaN EEG stream does. What
is modality-specific (restarting filters, dropping a volume) stays in the wiring; what the
fault means for safety lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from controller import event_records as rec
from controller.clock import now
from controller.events import EventBus
from controller.safety.faults import FaultKind, source

CLOCK_JUMP_SETTLE_S = 2.0  # steady data after an input's clock jump before stimulation may resume


class FeedbackGate(Protocol):
    """The engine as the policy sees it: feedback and rules stop while any inhibition is set."""

    def set_inhibit(self, source: str, reason: str) -> None: ...

    def clear_inhibit(self, source: str) -> None: ...


class StimulationGate(Protocol):
    """The governor as the policy sees it."""

    def inhibit(self, source: str, reason: str) -> None: ...

    def clear(self, source: str) -> bool: ...

    def inhibited_by(self, source: str) -> bool: ...

    def input_seen(self, name: str, t: float | None = None, period_s: float = 0.0) -> None: ...


class InputFaults:
    """The fault policy of one input. ``period_s``: its own delivery interval (an fMRI TR; 0 for sample
    streams), so the governor's silence check allows for it."""

    def __init__(self, name: str, engine: FeedbackGate, governor: StimulationGate | None, bus: EventBus,
                 period_s: float = 0.0, clock: Callable[[], float] = now) -> None:
        self.name = name
        self.engine = engine
        self.governor = governor
        self.bus = bus
        self.period_s = float(period_s)
        self.clock = clock
        self.stall = source(FaultKind.INPUT_STALL, name)
        self.nonfinite_source = source(FaultKind.NONFINITE, name)
        self.jump_source = source(FaultKind.CLOCK_JUMP, name)
        self.nonfinite = False  # the last data held NaN/inf
        self._jump_at: float | None = None

    def _publish(self, status: str, detail: str) -> None:
        self.bus.publish(rec.InputStatus(self.name, status, detail).event(self.clock()))

    def data_seen(self) -> None:
        """Data arrived (per chunk or volume, finite or not): the input is alive."""
        gov = self.governor
        if gov is None:
            return
        gov.input_seen(self.name, period_s=self.period_s)
        if gov.inhibited_by(self.stall):
            # raised by the governor's own silence check while the source never said 'stalled'
            # (data late by just over input_stall): data flowing again lifts it, as 'resumed' does
            gov.clear(self.stall)

    def report(self, status: str, detail: str) -> None:
        """A source's status (controller/inputs/lsl/reader.py, controller/inputs/volumes/source.py): journaled, and a
        stall, a loss, a resumption or a clock jump applied. Modality-specific reactions stay with the caller."""
        self._publish(status, detail)
        if status in ("stalled", "lost"):
            self.stalled(status, detail)
        elif status == "resumed":
            self.resumed()
        elif status == "clock_jump":
            self.clock_jumped(detail)

    def stalled(self, status: str, detail: str) -> None:
        """The source said 'stalled' or 'lost'."""
        self.engine.set_inhibit(self.stall, f"input {self.name} {status}")
        if self.governor is not None:
            self.governor.inhibit(self.stall, f"input {self.name} {status}: {detail}")

    def resumed(self) -> None:
        self.engine.clear_inhibit(self.stall)
        if self.governor is not None:
            self.governor.input_seen(self.name, period_s=self.period_s)
            self.governor.clear(self.stall)

    def check_finite(self, values: np.ndarray, what: str) -> bool:
        """NaN/inf in ``values`` (``what``: a chunk, a volume) inhibit at the first such data and lift at the
        first clean data. Returns whether the data may be used."""
        total = int(np.size(values))
        bad = total - int(np.count_nonzero(np.isfinite(values)))
        if bad:
            if not self.nonfinite:
                self.nonfinite = True
                reason = f"input {self.name}: {bad} NaN/inf value(s) of {total} in {what}"
                self.engine.set_inhibit(self.nonfinite_source, reason)
                if self.governor is not None:
                    self.governor.inhibit(self.nonfinite_source, reason)
                self._publish("nan", reason)
            return False
        if self.nonfinite:
            self.nonfinite = False
            self.engine.clear_inhibit(self.nonfinite_source)
            if self.governor is not None:
                self.governor.clear(self.nonfinite_source)
            self._publish("clean", "finite again")
        if self._jump_at is not None and self.governor is not None and \
                self.clock() - self._jump_at >= CLOCK_JUMP_SETTLE_S:
            self._jump_at = None  # the windows now hold only samples of the new time base
            self.governor.clear(self.jump_source)
        return True

    def clock_jumped(self, detail: str) -> None:
        if self.governor is not None:
            self._jump_at = self.clock()
            self.governor.inhibit(self.jump_source, f"input {self.name}: clock jump ({detail}); stimulation "
                                                    f"resumes after {CLOCK_JUMP_SETTLE_S:g} s of steady data")
