"""One session core for every modality: what a kind of input (sample streams, fMRI volumes, ...) does at
each step of a session's life, so ``run_session`` is one lifecycle with no modality-specific branch.

A modality owns its sources (LSL readers, volume sources), the processes that feed them under
``--sim`` (the simulated participant, the simulated scanner), and how they are wired to the engine;
the fault policy they share is ``controller.safety.input_faults``. The order of the calls:

    prepare   before the session folder exists: start simulators, find and check every input
              (a bad match is an error that leaves nothing behind)
    connect   the engine exists: wire the sources to it (and to the governor)
    record_predicates / recorder_started   what LabRecorder records, and from when the loop uses data
    start     sources run; ``starts_timeline`` says whether the session starts the timeline now or the
              input does (an fMRI run starts it at its first counted volume)
    poll      every control-loop cycle: a stop reason, or None
    drain     after the timeline completed: wait for data still on its way
    failure / summary / close   at the end
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.events import EventBus
from controller.lang.compiled import Protocol


class Modality:
    """Base: every step is a no-op, so a modality implements only what it does."""

    name = "inputs"
    starts_timeline = True  # False: the input starts the timeline (engine.start(t)) when its data begins

    def __init__(self) -> None:
        self.sources: list[Any] = []  # threads with .input_name .error .start() .stop() .join() .is_alive()
        self.started = False

    def prepare(self, protocol: Protocol) -> Protocol:
        return protocol

    def speeds(self) -> dict[str, float]:
        """Each input's signal speed (a replay faster than real time)."""
        return {}

    def engine_protocol(self, protocol: Protocol) -> Protocol:
        return protocol

    def connect(self, protocol: Protocol, folder: Path, bus: EventBus, engine: Any, session_id: str,
                governor: Any) -> None:
        pass

    def record_predicates(self) -> list[dict[str, str]]:
        return []

    def recorder_started(self, started_at: float) -> None:
        pass

    def start_data(self, protocol: Protocol) -> dict[str, Any]:
        """The fields of ``session_start`` this modality fills (names of :class:`SessionStart`'s fields,
        controller/event_records.py), e.g. ``{"inputs": ...}`` or ``{"fmri": FmriStart(...)}``."""
        return {}

    def waiting_text(self) -> str:
        return ""

    def start(self) -> None:
        self.started = True
        for source in self.sources:
            source.start()

    def poll(self, engine: Any) -> str | None:
        return None

    def drain(self, engine: Any, kick: Callable[[], None]) -> None:
        pass

    def failure(self, stop_reason: str | None) -> str | None:
        return None

    def summary(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass
