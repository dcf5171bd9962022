"""The fMRI side of a session: volume sources, the per-volume pipeline, the simulator or replay.

Wiring per fMRI input: VolumeSource thread -> VolumePipeline.push -> Engine.on_features ->
feedback/markers, and the volume's QC (motion, FD, time per stage) to the journal and the
``<prefix>-fmri-qc`` LSL outlet, all in the source's thread (a volume is one chunk). Time is
journaled as the stages it is (controller/inputs/volumes/timing.py): acquisition -> arrival (delivery,
when the source knows the acquisition time), arrival -> feedback (the pipeline, measured here
after the engine took the values) and their sum.

The protocol's timeline is the scanner's: it starts at the acquisition of the first counted volume
(after the dummies), as a scanner's trigger starts a paradigm, whichever volume the session
receives first. A session started late, or whose first counted volume was lost, places the first
volume it receives by its acquisition number x TR (``run_start``) and goes on from there: it costs
only the volumes not seen, and the journal says which (input status ``joined``). With ``--speed`` (simulator or replay faster than real time) the
engine's timeline is shortened by the same factor, so its blocks (markers for the display) stay
in step with the volumes; everything stays on the LSL clock. Each volume's block for the PSC
baseline, rules and feedback comes from its acquisition number, so it does not depend on speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from controller import event_records as rec
from controller.clock import now
from controller.events import EventBus
from controller.fmri.pipeline import VolumePipeline, VolumePipelineError
from controller.inputs.source import Sink
from controller.inputs.volumes.source import index_ranges
from controller.inputs.volumes.timing import acquisition_time, qc_times_ms, stage_times_ms
from controller.inputs.volumes.volume import Volume
from controller.lang.compiled import Protocol, VolumeInputSpec, VolumeSourceSpec
from controller.safety.faults import FaultKind
from controller.safety.faults import source as faults_source
from controller.safety.input_faults import InputFaults
from controller.session.child_processes import end_process
from controller.session.errors import SessionInputError
from controller.session.export_check import ExportMismatch, check_sim_export
from controller.session.input_line import InputLine
from controller.session.modality import Modality
from controller.session.scanner_process import ScannerProcess
from controller.session.sim_commands import FmriSimOptions, fmri_source_command, sim_design, sim_target  # noqa: F401
from drivers.base import Command

SIM_FOLDER = "scanner"  # the simulated scanner's export folder inside the session folder
FIRST_ACQUISITION = 1  # a run's first acquisition number (the design counts from it, dummies included)


def sim_source_spec(spec: VolumeInputSpec, opts: FmriSimOptions, folder: Path, lsl_name: str) -> VolumeSourceSpec:
    """Where the session reads what the simulator (or the replay) writes: its LSL stream or its folder."""
    if spec.source.stream is not None:
        return replace(spec.source, stream=replace(spec.source.stream, name=lsl_name, type=None, source_id=None))
    pattern = spec.source.pattern if opts.replay else "*.nii"  # the replay writes as the protocol's scanner would
    return replace(spec.source, folder=str(folder), pattern=pattern, existing="process", index_regex=None)


def start_fmri_source_process(protocol: Protocol, spec: VolumeInputSpec, opts: FmriSimOptions, folder: Path,
                              prefix: str, lsl_name: str) -> ScannerProcess:
    """Start the simulator (or the replay) feeding this input, and wait until its outlets exist."""
    if spec.source.stream is None:
        folder.mkdir(parents=True, exist_ok=True)
    cmd = fmri_source_command(protocol, spec, opts, folder, prefix, lsl_name)
    scanner = ScannerProcess(cmd, " ".join(cmd[2:5]))
    scanner.await_ready()
    return scanner


def run_start(volume: Any, n: int, tr_lsl_s: float) -> float:
    """LSL time at which the run's first counted volume was (or would have been) acquired, from a volume
    acquired ``n`` TRs after it: the scanner's clock, so the blocks begin where the scanner's do."""
    return volume.acquired - n * tr_lsl_s


def joined_detail(volume: Any, n: int, first_counted: int, unseen: list[int], block: Any) -> str:
    """What a session that did not see its run's start says about the volumes it missed."""
    where = f"block {block.label!r} (block {block.index + 1})" if block is not None else "after the timeline's end"
    lost = [i for i in unseen if i >= first_counted]
    return (f"the run's timeline starts from volume {volume.index}, placed by its acquisition number {n} TR after "
            f"the first counted volume ({first_counted}), in {where}; volume(s) {index_ranges(unseen)} were not "
            f"seen ({len(lost)} counted)")


def volume_line(name: str, pipeline: VolumePipeline, engine: Any, bus: EventBus, qc_output: Any,
                start_run: Callable[[float], None], governor: Any = None,
                tr_lsl_s: float | None = None) -> InputLine[Volume]:
    """A volume source's sink: the same fault policy as a sample stream's (a stall or a NaN volume inhibits
    feedback and stimulation as an EEG stall or NaN chunk does), then the volume pipeline.

    ``tr_lsl_s``: the TR on the LSL clock (the protocol's TR / the replay's speed)."""
    tr_lsl = pipeline.spec.tr_s if tr_lsl_s is None else tr_lsl_s
    faults = InputFaults(name, engine, governor, bus, period_s=tr_lsl)
    return InputLine(faults, VolumeConsumer(name, pipeline, engine, bus, qc_output, start_run, governor, tr_lsl))


class VolumeConsumer:
    """Volumes through the per-volume pipeline to the engine, with their QC on the fMRI QC outlet. The first
    counted volume that arrives starts the run's timeline, placed by its acquisition index."""

    def __init__(self, name: str, pipeline: VolumePipeline, engine: Any, bus: EventBus, qc_output: Any,
                 start_run: Callable[[float], None], governor: Any, tr_lsl_s: float) -> None:
        self.name = name
        self.pipeline = pipeline
        self.engine = engine
        self.bus = bus
        self.qc_output = qc_output
        self.start_run = start_run
        self.governor = governor
        self.tr_lsl_s = tr_lsl_s
        self.seen: set[int] = set()  # indices delivered before the run started (to name the ones never seen)
        self.started = False

    def arrived(self, volume: Volume) -> None:
        """The run starts at the first counted volume, whether or not its data are usable."""
        if self.started:
            return
        design = self.pipeline.design
        n = design.counted(volume.index)
        if n < 0:
            self.seen.add(volume.index)
            return
        self.started = True
        if n > 0:
            before = range(design.first - self.pipeline.spec.skip, volume.index)
            unseen = [i for i in before if i not in self.seen]
            detail = joined_detail(volume, n, design.first, unseen, design.block_of(volume.index))
            self.bus.publish(rec.InputStatus(self.name, "joined", detail, volume.index).event(now(), volume.acquired))
        self.start_run(run_start(volume, n, self.tr_lsl_s))

    def values(self, volume: Volume) -> np.ndarray:
        return volume.data

    def describe(self, volume: Volume) -> str:
        return f"volume {volume.index}"

    def recovered(self) -> None:
        return None  # a NaN volume was never used (as if lost): nothing to undo

    def on_status(self, status: str, detail: str, gap_s: float | None) -> None:
        return None  # missing, out-of-order and stalled volumes: the fault policy and the pipeline's design

    def consume(self, volume: Volume) -> None:
        try:
            result = self.pipeline.push(volume)
        except VolumePipelineError as exc:
            reason = str(exc)
            self.engine.set_inhibit(faults_source(FaultKind.VOLUMES, self.name), reason)
            if self.governor is not None:
                self.governor.inhibit(faults_source(FaultKind.VOLUMES, self.name), reason)
            self.bus.publish(rec.Fault(f"input {self.name}", reason).event(now(), volume.acquired))
            raise
        self.engine.on_features(result.values)
        t_out = now()
        qc = replace(result.qc, input=self.name)
        if qc.timing_ms is not None and qc.motion is not None:  # processed, not a dummy
            times = stage_times_ms(volume, t_out, dict(qc.timing_ms))
            qc = replace(qc, timing_ms=times, acquisition_time=acquisition_time(volume))
            row = [volume.index, *qc.motion, qc.fd_mm, *qc_times_ms(times)]
            if self.qc_output is not None:
                self.qc_output.send(Command("fmri_qc", volume.acquired, {"row": row}))
        self.bus.publish(qc.event(t_out, volume.acquired))


def session_start_fmri(protocol: Protocol, sources: list[Any]) -> rec.FmriStart:
    """What the session_start event says about the fMRI inputs (the report reads it)."""
    inputs = {}
    for s in sources:
        spec = protocol.volume_inputs[s.input_name]
        inputs[s.input_name] = rec.FmriInputStart(spec.tr_s, spec.skip, s.describe(), tuple(sorted(protocol.rois)))
    return rec.FmriStart(inputs, protocol.run.name if protocol.run else None)


def check_source_tr(source: Any, spec: VolumeInputSpec, bus: EventBus, speed: float = 1.0) -> None:
    """A source that knows its TR is checked against the protocol's (a mismatch is reported, the protocol's TR is used)."""
    tr = getattr(source, "tr_s", None)
    if tr and abs(tr * speed - spec.tr_s) > 0.01 * spec.tr_s and abs(tr - spec.tr_s) > 0.01 * spec.tr_s:
        bus.publish(rec.TrMismatch(spec.name, f"source says TR {tr:g} s, protocol {spec.tr_s:g} s; "
                                              "the protocol's TR sets the design").event(now()))


class FmriPlan(Modality):
    """The fMRI input of a session as a modality: its volume source, the simulated scanner or replay under
    ``--sim``, the per-volume pipeline; the run starts the timeline at its first counted volume."""

    name = "fmri"
    starts_timeline = False

    def __init__(self, protocol: Protocol, prefix: str, sim: FmriSimOptions | None,
                 volumes_folder: Path | None, resolve_timeout_s: float | None,
                 protocol_path: Path | None = None, session_root: Path | None = None) -> None:
        super().__init__()
        if len(protocol.volume_inputs) != 1:
            raise VolumePipelineError(f"protocol {protocol.name!r} has {len(protocol.volume_inputs)} fMRI inputs; "
                                      "one per session is supported")
        self.prefix = prefix
        self.sim = sim
        self.volumes_folder = volumes_folder
        self.resolve_timeout_s = resolve_timeout_s
        self.speed = sim.speed if sim else 1.0
        self.protocol_path = protocol_path
        self.session_root = session_root
        self.pipelines: dict[str, VolumePipeline] = {}
        self.qc_output: Any = None
        self.scanner: ScannerProcess | None = None
        self.state_stream: str | None = None
        self.volume_stream: str | None = None
        self._sender_exit_seen: float | None = None

    def prepare(self, protocol: Protocol) -> Protocol:
        """Before the session folder exists: a simulator or replay whose files the protocol's pattern can
        never read is refused (ExportMismatch names the pattern, the files and the folder)."""
        if self.sim is None or self.volumes_folder is not None or self.session_root is None:
            return protocol
        (_, spec), = protocol.volume_inputs.items()
        root = Path(self.session_root)
        planned = sim_source_spec(spec, self.sim, root, "")
        if planned.stream is not None:
            return protocol
        try:
            check_sim_export(protocol, Path(self.protocol_path or ""), spec, planned.pattern,
                             Path(self.sim.replay) if self.sim.replay else None, self.sim.volumes,
                             f"the new session folder's {SIM_FOLDER}/ (under {root.absolute()})")
        except ExportMismatch as exc:
            raise SessionInputError(str(exc)) from exc
        except (OSError, ValueError) as exc:  # e.g. --replay names no readable 4D NIfTI
            raise SessionInputError(f"--replay {self.sim.replay}: {exc}") from exc
        return protocol

    def start_data(self, protocol: Protocol) -> dict[str, Any]:
        return {"fmri": session_start_fmri(protocol, self.sources)}

    def start(self) -> None:
        super().start()
        self.go()  # the recorder has subscribed: the simulated scanner may send volume 1

    def poll(self, engine: Any) -> str | None:
        """The simulated scanner's end: the reason to stop once what it sent was processed (None meanwhile); a
        scanner that failed inhibits, as a simulated participant that died does."""
        if self.scanner is None or not self.scanner.exited():
            return None
        if self.scanner.proc.returncode == 0:
            return self.sender_finished()
        engine.set_inhibit(faults_source(FaultKind.SIMULATOR),
                           f"simulator exited with code {self.scanner.proc.returncode}")
        return None

    def drain(self, engine: Any, kick: Callable[[], None]) -> None:
        ended = now()  # the run's last volume is delivered as its timeline ends: let it be processed
        while not self.timeline_done_waiting(ended):
            kick()
            time.sleep(0.02)

    def failure(self, stop_reason: str | None) -> str | None:
        return self.no_volumes_reason(stop_reason) if self.volumes_processed() == 0 else None

    def summary(self) -> dict[str, Any]:
        return {"volumes": self.volume_summary()}

    def connect(self, protocol: Protocol, folder: Path, bus: EventBus, engine: Any, session_id: str,
                governor: Any) -> None:
        from drivers.lsl_fmri_qc import LslFmriQcOutput

        (name, spec), = protocol.volume_inputs.items()
        source_spec = spec.source
        if self.volumes_folder is not None:
            source_spec = replace(source_spec, folder=str(self.volumes_folder), stream=None)
        self.qc_output = LslFmriQcOutput(self.prefix, f"neuroreflex-{session_id}")
        self.qc_output.open()
        pipeline = VolumePipeline(spec, list(protocol.features.values()), protocol.rois, protocol.timeline,
                                  feedback_blocks=protocol.feedback.during if protocol.feedback else ())
        timeout = self.resolve_timeout_s or spec.resolve_timeout_s

        def start_run(t: float) -> None:
            engine.start(t)

        line = volume_line(name, pipeline, engine, bus, self.qc_output, start_run, governor, spec.tr_s / self.speed)
        source = None
        if self.sim is not None:
            lsl_name = f"{self.prefix}-sim-fmri-{session_id}"
            scanner = folder / SIM_FOLDER
            planned = sim_source_spec(spec, self.sim, scanner, lsl_name)
            if planned.stream is None:  # watch the folder before the first file can appear
                scanner.mkdir(parents=True, exist_ok=True)
                source = self._make_source(name, spec, planned, line)
                source.open(timeout)
            self.scanner = start_fmri_source_process(protocol, spec, self.sim, scanner, self.prefix, lsl_name)
            self.state_stream = f"{lsl_name}-state" if self.sim.replay is None else None
            source_spec = planned
        if source is None:
            source = self._make_source(name, spec, source_spec, line)
            source.open(timeout)
        check_source_tr(source, spec, bus, self.sim.speed if self.sim else 1.0)
        self.sources.append(source)
        self.pipelines[name] = pipeline

    def go(self) -> None:
        """The recorder has the streams and the sources run: the simulated scanner may send volume 1."""
        if self.scanner is not None:
            self.scanner.go()

    def _make_source(self, name: str, spec: VolumeInputSpec, src: VolumeSourceSpec, sink: Sink[Volume]) -> Any:
        if src.stream is not None:
            from controller.inputs.lsl.resolve import resolve
            from controller.inputs.volumes.lsl_volumes import LslVolumeSource

            info = resolve(src.stream, self.resolve_timeout_s or spec.resolve_timeout_s)
            self.volume_stream = info.name()
            return LslVolumeSource(name, info, sink, stall_timeout_s=spec.stall_s)
        from controller.inputs.volumes.watch_folder import FolderSource

        if src.folder is None:
            raise VolumePipelineError(f"input {name!r}: no volume folder (give --volumes-folder)")
        return FolderSource(name, src.folder, sink, stall_timeout_s=spec.stall_s, pattern=src.pattern,
                            watch="poll" if src.poll_s else "auto", poll_interval_s=src.poll_s or 0.05,
                            existing=src.existing, index_regex=src.index_regex, tr_s=spec.tr_s,
                            first_index=FIRST_ACQUISITION)

    def engine_protocol(self, protocol: Protocol) -> Protocol:
        """The protocol as the engine's wall-clock timeline runs it: blocks shortened by ``--speed``."""
        if self.speed == 1.0:
            return protocol
        blocks = tuple(replace(b, duration_s=b.duration_s / self.speed) for b in protocol.timeline)
        return replace(protocol, timeline=blocks)

    def record_predicates(self) -> list[dict[str, str]]:
        out = [{"source_id": self.qc_output.source_id}] if self.qc_output is not None else []
        if self.state_stream:
            out.append({"name": self.state_stream})  # the simulated truth: motion, ROI BOLD
        if self.volume_stream:
            out.append({"name": self.volume_stream})  # LSL volumes exist nowhere else: record them
        return out


    def waiting_text(self) -> str:
        where = ", ".join(f"{s.input_name}: {s.describe().get('where')}" for s in self.sources)
        return (f"waiting for the scanner's first volume ({where}); the timeline starts at the first counted volume "
                "(or, joining a run already under way, at the first volume received, placed by its number)")

    # ------------------------------------------------------------ the end of the run
    def drain_s(self) -> float:
        """How long the end of a run waits for volumes still on their way: a stall's time."""
        return max(s.stall_timeout_s for s in self.sources) if self.sources else 0.0

    def _processed(self) -> set[int]:
        return set().union(*(s.processed for s in self.sources)) if self.sources else set()

    def sender_finished(self) -> str | None:
        """Called while the simulated scanner's process has exited with code 0: None while volumes it sent are
        still on their way (up to :meth:`drain_s`), then the reason the session stops."""
        assert self.scanner is not None
        if self._sender_exit_seen is None:
            self._sender_exit_seen = now()
        if not self.scanner.stdout_closed.is_set() and now() - self._sender_exit_seen < 1.0:
            return None  # its last VOLUME lines are still in the pipe
        sent = self.scanner.sent
        processed = self._processed()
        absent = sorted(set(sent) - processed)
        waited = now() - self._sender_exit_seen
        if absent and waited < self.drain_s():
            return None
        if not absent and self.last_design_index() in processed and waited < self.drain_s():
            return None  # the run covered the whole timeline, which ends by itself within a TR: let it complete
        if not sent:
            return "the simulated scanner finished without sending a volume"
        if absent:
            return (f"the simulated scanner finished: {len(sent) - len(absent)} of its {len(sent)} volumes processed; "
                    f"volume(s) {index_ranges(absent)} never arrived within {self.drain_s():.1f} s")
        return f"the simulated scanner finished: all {len(sent)} volumes sent were processed"

    def last_design_index(self) -> int | None:
        """Acquisition index of the timeline's last counted volume (None before the first volume)."""
        ends = [p.design.first + p.design.volumes - 1 for p in self.pipelines.values() if p.design.volumes]
        return max(ends) if ends else None

    def timeline_done_waiting(self, since: float) -> bool:
        """After the timeline completed: True once its last volume was processed, or a stall's time passed
        (the last volume is delivered as the timeline ends, and is part of the run)."""
        last = self.last_design_index()
        if last is None or last in self._processed() or now() - since >= self.drain_s():
            return True
        return self.scanner is not None and self.scanner.exited() and self.sender_finished() is not None

    def volumes_processed(self) -> int:
        return sum(s.volumes_received for s in self.sources)

    def volume_summary(self) -> dict[str, dict[str, Any]]:
        """Per input, for session_end: volumes received, and those never received (reported missing and
        never late, or sent by the simulated scanner and never arrived)."""
        sent = set(self.scanner.sent) if self.scanner is not None else set()
        out = {}
        for s in self.sources:
            seen = s.tracker.seen
            never = sorted(set(s.tracker.missing) | (sent - seen))
            out[s.input_name] = {"received": s.volumes_received, "first_index": min(seen) if seen else None,
                                 "last_index": max(seen) if seen else None, "missing": never,
                                 "late": sorted(s.tracker.late), "sent": len(sent) if self.scanner else None}
        return out

    def no_volumes_reason(self, stop_reason: str | None) -> str:
        """Why a session that processed no volume failed: where it looked, what was there instead."""
        parts = []
        for s in self.sources:
            text = f"input {s.input_name!r} received no volume from {s.describe().get('where')}"
            unread = getattr(s, "unmatched_files", lambda: [])()
            if unread:
                text += (f": {len(unread)} file(s) there match none of its pattern {s.pattern!r} "
                         f"(e.g. {', '.join(unread[:3])})")
            parts.append(text)
        if self.scanner is not None and self.scanner.exited():
            parts.append(f"the simulated scanner sent {len(self.scanner.sent)} volume(s) and exited with code "
                         f"{self.scanner.proc.returncode}")
        if stop_reason:
            parts.append(f"the session ended: {stop_reason}")
        return "no fMRI volume was processed: " + "; ".join(parts)

    def close(self) -> None:
        if self.qc_output is not None:
            self.qc_output.close()
            self.qc_output = None
        if self.scanner is not None:
            end_process(self.scanner.proc)
