"""Sample streams (EEG, MEG, fNIRS over LSL) as a session modality: the simulated participant under
``--sim``, the readers and their feature pipelines, and their wiring to the engine.

A chunk goes reader -> pipeline -> engine in the reader's own thread; its faults (stall, NaN, clock jump)
go through the shared policy (``controller.safety.input_faults``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from controller import event_records as rec
from controller.clock import now
from controller.events import EventBus
from controller.features import FeaturePipeline
from controller.inputs.front_ends import describe_front_end, front_end_for
from controller.inputs.lsl.live_check import open_and_check
from controller.inputs.lsl.reader import InputReader, OpenedInlet
from controller.inputs.lsl.resolve import StreamNotFound
from controller.inputs.source import Chunk
from controller.lang.compiled import InputSpec, Protocol, StreamSelector
from controller.protocol.stream_check import StreamFacts, StreamProblem, located
from controller.safety.faults import FaultKind, source
from controller.safety.input_faults import InputFaults
from controller.session.child_processes import child_env, end_process
from controller.session.errors import SessionError
from controller.session.input_line import InputLine
from controller.session.modality import Modality
from controller.session.sim_commands import SimOptions, participant_command, signal_modality


class SignalInputs(Modality):
    """Every signal input of a protocol (``protocol.inputs``)."""

    name = "signals"

    def __init__(self, streams: str, sim: SimOptions | None, protocol_path: Path,
                 resolve_timeout_s: float | None, say: Callable[[str], None]) -> None:
        super().__init__()
        self.streams = streams
        self.sim = sim
        self.protocol_path = protocol_path
        self.resolve_timeout_s = resolve_timeout_s
        self.say = say
        self.sim_proc: subprocess.Popen | None = None
        self.sim_name = ""
        self.pipelines: dict[str, FeaturePipeline] = {}
        self.opened: dict[str, tuple[OpenedInlet, StreamFacts, Any, InputSpec]] = {}  # until connect()

    @property
    def readers(self) -> list[InputReader]:
        return self.sources

    # ------------------------------------------------------------ before the session folder
    def prepare(self, protocol: Protocol) -> Protocol:
        try:
            if self.sim is not None:
                first = next(iter(protocol.inputs.values()))
                modality = signal_modality(first)
                if self.sim.chunk is None:  # a stimulating loop's amplifier and an fNIRS device send every sample
                    self.sim = replace(self.sim, chunk=1 if protocol.devices or modality == "fnirs" else 10)
                self.sim_name = f"{self.streams}-sim-{modality}"
                cmd = participant_command(self.sim, self.sim_name, f"{self.streams}-markers", first,
                                          rewarded_blocks(protocol))
                self.sim_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                                 env=child_env())
                protocol = inputs_from_simulator(protocol, self.sim_name)
                self.say(f"simulated participant started: LSL stream {self.sim_name!r}")
            self._open_inputs(protocol)
        except BaseException:
            self.close()  # nothing may outlive a session that did not start
            raise
        return protocol

    def _open_inputs(self, protocol: Protocol) -> None:
        """Resolve, open and check every signal input against the protocol.

        A stream that cannot serve its input (a missing channel, another rate, no units) is a
        ``ProtocolError`` at the protocol's FILE:LINE:COL, like a load-time error (exit 2)."""
        for name, spec in protocol.inputs.items():
            timeout = self.resolve_timeout_s or spec.resolve_timeout_s
            if self.sim_proc is not None and self.sim_proc.poll() is not None:
                raise SessionError(f"the simulator exited with code {self.sim_proc.returncode}: "
                                   f"{self.sim_proc.stderr.read() if self.sim_proc.stderr else ''}")
            try:
                opened, facts, checked = open_and_check(protocol, name, timeout)
            except StreamNotFound as exc:
                raise SessionError(str(exc)) from exc
            self.opened[name] = (opened, facts, checked, spec)
            if checked.problems:
                raise located(self.protocol_path, checked.problems, facts.name)
            features = [f for f in protocol.features.values() if f.input == name]
            units = checked.units
            try:
                front_end = front_end_for(spec, facts, self.protocol_path.parent)
            except ValueError as exc:  # the stream's layout cannot serve the input (a wavelength or position missing)
                raise located(self.protocol_path, [StreamProblem(("inputs", name, "stream"), f"input {name!r}: {exc}")],
                              facts.name) from exc
            self.pipelines[name] = FeaturePipeline(facts.rate, facts.labels, spec, features,
                                                   channel_types=facts.types,
                                                   scale=None if units is None else units.scale, front_end=front_end)
            if front_end is not None:
                self.say(f"input {name}: {describe_front_end(front_end)}")
            if facts.speed != 1.0:
                self.say(f"input {name}: a recording replayed at x{facts.speed:g}: the timeline and the rules "
                         "run on its signal time")
            self.say(f"input {name}: {facts.name}: units {units.summary if units else 'none'}"
                     + (" (unit: from the protocol)" if units is not None and units.from_protocol else ""))

    def speeds(self) -> dict[str, float]:
        return {name: facts.speed for name, (_, facts, _, _) in self.opened.items()}

    # ------------------------------------------------------------ the session
    def connect(self, protocol: Protocol, folder: Path, bus: EventBus, engine: Any, session_id: str,
                governor: Any) -> None:
        for pipeline in self.pipelines.values():  # kinds relative to a block (fNIRS change from rest) read it
            pipeline.blocks.follow(block_now(engine))
        for name, (opened, facts, checked, spec) in self.opened.items():
            line = signal_line(name, self.pipelines[name], engine, bus, governor, spec.max_gap_s)
            reader = InputReader(name, opened, line, stall_timeout_s=spec.stall_timeout_s, max_gap_s=spec.max_gap_s)
            reader.units, reader.speed = checked.units, facts.speed
            self.sources.append(reader)

    def record_predicates(self) -> list[dict[str, str]]:
        out = [{"source_id": r.info.source_id()} for r in self.readers]
        if self.sim_proc is None or self.sim is None:
            return out
        if self.sim.replay is None and stream_exists(f"{self.sim_name}-state", timeout_s=5.0):
            out.append({"name": f"{self.sim_name}-state"})  # the participant's true state (resolves like its EEG)
        if self.sim.replay is not None and stream_exists(f"{self.sim_name}-annotations"):
            out.append({"name": f"{self.sim_name}-annotations"})  # e.g. the annotated seizure onset
        if "--respiration" in self.sim.extra_args:
            out.append({"name": f"{self.sim_name}-resp-phase"})  # true inhale/exhale, to score gating
        return out

    def recorder_started(self, started_at: float) -> None:
        for reader in self.readers:  # the loop uses only what the XDF holds too (the inlets buffered since open)
            reader.start_after = started_at

    def start_data(self, protocol: Protocol) -> dict[str, Any]:
        return {"inputs": {r.input_name: {"name": r.info.name(), "source_id": r.info.source_id(),
                                          "rate": r.info.nominal_srate(), "channels": r.info.channel_count(),
                                          "units": r.units.summary if r.units is not None else None,
                                          "si_scale": r.units.scale.tolist() if r.units is not None else None,
                                          "uses_samples_from": r.start_after}
                           for r in self.readers}}

    def poll(self, engine: Any) -> str | None:
        proc = self.sim_proc
        if proc is not None and proc.poll() is not None:
            engine.set_inhibit(source(FaultKind.SIMULATOR), f"simulator exited with code {proc.returncode}")
        return None

    def summary(self) -> dict[str, Any]:
        first = {r.input_name: {"first_sample_used": r.first_used, "dropped_before_recording": r.samples_dropped}
                 for r in self.readers}
        return {"inputs": first} if first else {}

    def close(self) -> None:
        if not self.started:  # inlets opened for a session that did not start
            for opened, _, _, _ in self.opened.values():
                opened.close()
        end_process(self.sim_proc)


def rewarded_blocks(protocol: Protocol) -> tuple[str, ...]:
    """The block labels the protocol's rules reward in (where a simulated fNIRS participant engages)."""
    out: list[str] = []
    for rule in protocol.rules:
        for label in getattr(rule, "during", ()) or ():
            if label not in out:
                out.append(label)
    return tuple(out)


def block_now(engine: Any) -> Callable[[], tuple[int, str] | None]:
    """The engine's current block as (index, label); read from the input's thread (one attribute read)."""
    def now() -> tuple[int, str] | None:
        block = engine.timeline.current
        return None if block is None else (block.index, block.label)
    return now


def inputs_from_simulator(protocol: Protocol, sim_name: str) -> Protocol:
    """The simulator stands in for the first input; its other streams are named after it."""
    first = next(iter(protocol.inputs))
    inputs = dict(protocol.inputs)
    inputs[first] = replace(inputs[first], stream=StreamSelector(name=sim_name))
    for name, spec in protocol.inputs.items():
        if name != first and spec.stream.type:
            inputs[name] = replace(spec, stream=StreamSelector(name=f"{sim_name}-{spec.stream.type.lower()}"))
    return replace(protocol, inputs=inputs)


def stream_exists(name: str, timeout_s: float = 2.0) -> bool:
    import pylsl

    return bool(pylsl.resolve_byprop("name", name, 1, timeout_s))


def signal_line(name: str, pipeline: FeaturePipeline, engine: Any, bus: EventBus, governor: Any,
                max_gap_s: float) -> InputLine[Chunk]:
    """A sample stream's sink: the shared fault policy, then chunks -> pipeline -> engine."""
    return InputLine(InputFaults(name, engine, governor, bus), ChunkConsumer(name, pipeline, engine, bus, max_gap_s))


class ChunkConsumer:
    """Clean chunks through the feature pipeline to the engine; after a gap the windows (or, after a long
    one, everything) start over, so no window spans lost or shifted signal."""

    def __init__(self, name: str, pipeline: FeaturePipeline, engine: Any, bus: EventBus, max_gap_s: float) -> None:
        self.name = name
        self.pipeline = pipeline
        self.engine = engine
        self.bus = bus
        self.max_gap_s = max_gap_s

    def arrived(self, item: Chunk) -> None:
        return None

    def values(self, item: Chunk) -> np.ndarray:
        return item.data

    def describe(self, item: Chunk) -> str:
        return f"a chunk of {len(item.data)} samples"

    def consume(self, item: Chunk) -> None:
        self.engine.on_features(self.pipeline.push(item.data, item.timestamps, item.arrival))

    def recovered(self) -> None:
        self.pipeline.reset()  # every filter state saw the NaN: start over

    def on_status(self, status: str, detail: str, gap_s: float | None) -> None:
        if status == "resumed":
            self._start_over("input resumed after a stall", gap_s)
        elif status == "gap":
            self.pipeline.restart_windows()  # lost samples: no window spans them; trends carry on
        elif status == "clock_jump":
            self._start_over("input clock jump", gap_s)  # windows spanning the jump would mix two time bases

    def _start_over(self, why: str, gap_s: float | None) -> None:
        """Windows restart after a short gap; after a long one (or time going back) everything does."""
        pipeline = self.pipeline
        if gap_s is not None and 0.0 <= gap_s <= self.max_gap_s:
            pipeline.restart_windows()
            return
        pipeline.reset()
        if pipeline.warmup_s > 0:
            missed = "an unknown time" if gap_s is None else f"{gap_s:+.3f} s"
            self.bus.publish(rec.InputStatus(
                self.name, "rewarming",
                f"{why} ({missed}, max_gap {self.max_gap_s:g} s): features start over; "
                f"the longest needs {pipeline.warmup_s:g} s of signal before it has a value").event(now()))
