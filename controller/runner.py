"""A session end to end: resolve inputs, wire the hot path, record, run the timeline, report.

Wiring per input: InputReader thread -> FeaturePipeline.push -> Engine.on_features ->
outputs, all in the reader's thread. The main thread only ticks the timeline clock,
watches the inputs and the simulator, and shuts everything down in order (so the XDF
and the journal are complete even after Ctrl-C or an error).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from controller import events as ev
from controller.child_processes import child_env
from controller.clock import now
from controller.display_text import TextDisplay
from controller.features import FeaturePipeline
from controller.engine.engine import TIMELINE_COMPLETE, Engine
from controller.events import Event, EventBus
from controller.inputs.reader import InputReader
from controller.keyboard import KeyboardControl, help_text, key_actions
from controller.operator_acts import OperatorActs
from controller.engine.signal_clock import SignalClock, common_speed
from controller.inputs.live_check import open_and_check, with_streams
from controller.inputs.resolve import StreamNotFound
from controller.protocol import load_protocol
from controller.protocol.compiled import Protocol, StreamSelector
from controller.protocol.stream_check import located
from controller.recording.journal import Journal
from controller.recording.session import SessionFolder
from controller.recording.xdf import XdfRecorder
from controller.safety.faults import FaultKind
from controller.safety.faults import source as faults_source
from controller.safety.input_faults import InputFaults
from drivers.lsl_outputs import LslFeedbackOutput


class SessionError(RuntimeError):
    """The session could not start or had to stop; the message says why."""


class SessionInputError(SessionError):
    """The command line asked for something the protocol does not have (exit 2, like a protocol error)."""


@dataclass
class SimOptions:
    channels: int = 64
    rate: float = 500.0
    chunk: int | None = None  # None: 10, or 1 when the protocol stimulates (the latency budget is ms)
    seed: int = 0
    learning_rate: float | None = None
    replay: str | None = None
    extra_args: list[str] = field(default_factory=list)


@dataclass
class RunOptions:
    protocol_path: Path
    session_root: Path = Path("sessions")
    duration_s: float | None = None
    sim: SimOptions | None = None
    site_config: Path | None = None
    record_xdf: bool = True
    build_report: bool = True
    lsl_prefix: str = "neuroreflex"  # outlets are named <lsl_prefix>-<session id>-<kind>
    session_id: str | None = None  # None: a random one
    progress: TextIO | None = field(default_factory=lambda: sys.stdout)  # the stdout of when the options are made
    keyboard: bool = True  # operator keys when stdin is a terminal
    resolve_timeout_s: float | None = None
    arm: bool = False  # arm the protocol's devices at start (unattended tests); otherwise the operator arms
    operator: str = "operator"
    participant: str = "anonymous"  # the dose ledger is per participant
    ledger_dir: Path | None = None  # default: <session_root>/ledger
    virtual_devices: bool | None = None  # None: with sim; False: the site's ports (simulated signals, real devices)
    run: str | None = None  # fMRI multi-run protocols: which run (name or 1-based number)
    volumes_folder: Path | None = None  # fMRI: the scanner's export folder (overrides the protocol's)
    streams: dict[str, str] = field(default_factory=dict)  # input -> stream name ('' = the only input), overrides
    fmri_sim: Any = None  # controller.volume_session.FmriSimOptions; default from ``sim`` for fMRI protocols


@dataclass
class SessionResult:
    session_dir: Path
    status: str
    block_stats: list[dict[str, Any]]
    report: Path | None
    summary: dict[str, Any]
    failure: str | None = None  # why a session that ran to its end still failed (e.g. no fMRI volume processed)


def _start_simulator(opts: SimOptions, name: str, marker_stream: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sim", "eeg", "--name", name, "--marker-stream", marker_stream]
    if opts.replay:
        cmd += ["--replay", str(opts.replay), "--chunk", str(opts.chunk or 10)]
    else:
        cmd += ["--channels", str(opts.channels), "--rate", f"{opts.rate:g}", "--chunk", str(opts.chunk),
                "--seed", str(opts.seed)]
        if opts.learning_rate is not None:
            cmd += ["--learning-rate", f"{opts.learning_rate:g}"]
    cmd += opts.extra_args
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=child_env())


def _say(opts: RunOptions, text: str) -> None:
    if opts.progress is not None:
        opts.progress.write(text + "\n")
        opts.progress.flush()


# The hot path shares the interpreter with the journal, display and recorder threads; a
# shorter GIL switch interval (default 5 ms) bounds how long a sample can wait for them.
GIL_SWITCH_INTERVAL_S = 0.0005


def run_session(opts: RunOptions) -> SessionResult:
    """Run one session to the end of its timeline (or ``duration_s``, or Ctrl-C)."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    site = None
    if opts.site_config is not None:
        from controller.safety.site import load_site

        site = load_site(opts.site_config)
    protocol = load_protocol(opts.protocol_path, site=site)
    from controller.protocol.runs import RunChoiceError, select_run

    try:
        protocol = select_run(protocol, opts.run)
    except RunChoiceError as exc:
        raise SessionError(str(exc)) from exc
    try:
        protocol = with_streams(protocol, opts.streams)
    except ValueError as exc:
        raise SessionInputError(str(exc)) from exc
    session_id = _session_id(opts.session_id)
    streams = f"{opts.lsl_prefix}-{session_id}"  # every outlet's name starts so: sessions never share a stream
    fmri = _fmri_plan(protocol, opts, streams) if protocol.volume_inputs else None
    if protocol.devices and site is None:
        raise SessionError(f"{opts.protocol_path} drives stimulators ({', '.join(protocol.devices)}): "
                           "give the site configuration with its devices and limits (--site config/site.yaml)")
    sim_proc: subprocess.Popen | None = None
    sim_name = ""
    try:  # every input found and checked before the session folder exists: a bad match leaves nothing behind
        if opts.sim is not None and protocol.inputs:
            if opts.sim.chunk is None:
                opts.sim = replace(opts.sim, chunk=1 if protocol.devices else 10)
            sim_name = f"{streams}-sim-eeg"
            sim_proc = _start_simulator(opts.sim, sim_name, f"{streams}-markers")
            protocol = _inputs_from_simulator(protocol, sim_name)
            _say(opts, f"simulated participant started: LSL stream {sim_name!r}")
        readers, pipelines = _open_inputs(protocol, opts, sim_proc)
    except BaseException:
        _end_simulator(sim_proc)  # nothing may outlive a session that did not start
        raise
    identity = _identity(protocol, opts, site, session_id)
    try:
        folder = SessionFolder.create(opts.session_root, Path(opts.protocol_path), opts.site_config, identity=identity)
    except BaseException:  # e.g. a full disk or a folder without write permission
        for reader in readers:
            reader.close()
        _end_simulator(sim_proc)
        raise
    _say(opts, f"session folder: {folder.path}")
    bus = EventBus()
    journal = Journal(folder.journal_path)
    journal.start(bus)
    bus.publish(Event(ev.SESSION_OPEN, now(), None, {**identity, "folder": folder.path.name}))
    recorder: XdfRecorder | None = None
    display: TextDisplay | None = None
    output: LslFeedbackOutput | None = None
    engine: Engine | None = None
    keyboard: KeyboardControl | None = None
    listener = None
    stim = None
    status = "error"
    failure: str | None = None
    acts = OperatorActs(None, bus, session_id, protocol.name, None, opts.operator)
    guard = contextlib.ExitStack()  # E-STOP on signals from the moment a device is open
    try:
        guard.enter_context(_signals_estop(acts))
        if protocol.devices:
            from controller.stimulation.session import open_stimulation

            ledger_dir = opts.ledger_dir or Path(opts.session_root) / "ledger"
            stim = open_stimulation(protocol, site, bus, session_id, folder.path / "devices",
                                    ledger_dir / f"{site.name}-{opts.participant}.jsonl",
                                    sim=opts.sim is not None if opts.virtual_devices is None else opts.virtual_devices,
                                    arm=opts.arm, operator=opts.operator, progress=opts.progress)
            acts.stim = stim
            _say(opts, "devices " + ("ARMED (--arm)" if opts.arm else "disarmed: press 'a' twice to arm"))
        listener = _open_control_channel(session_id, acts, bus, opts, required=stim is not None)
        output = LslFeedbackOutput(streams, list(protocol.features), source_id=f"{streams}",
                                   session={"session_id": session_id, "protocol": protocol.name})
        _say(opts, f"session {session_id}: LSL outlets {streams}-features, -markers, -feedback "
                   f"(displays: --session {session_id})")
        output.open()
        try:
            speed = common_speed({r.input_name: r.speed for r in readers})
        except ValueError as exc:
            raise SessionError(str(exc)) from exc
        engine = Engine(fmri.engine_protocol(protocol) if fmri else protocol, bus, [output],
                        stimulation=stim.stimulation if stim else None,
                        fired_today=_fired_today(stim, protocol) if stim else None,
                        signal_clock=SignalClock(speed))
        acts.engine = engine
        for reader in readers:
            _wire(reader, pipelines[reader.input_name], engine, bus, stim.governor if stim else None)
        if fmri is not None:
            sim_proc = fmri.open(protocol, folder.path, bus, engine, session_id, stim.governor if stim else None)
            readers = readers + fmri.sources
        if opts.record_xdf:
            predicates = [{"source_id": r.info.source_id()} for r in readers if isinstance(r, InputReader)]
            predicates += [{"source_id": sid} for sid in output.source_ids.values()]
            if sim_proc is not None and fmri is None and opts.sim.replay is None and _stream_exists(
                    f"{sim_name}-state", timeout_s=5.0):  # the participant's true state (resolves like its EEG)
                predicates.append({"name": f"{sim_name}-state"})
            if sim_proc is not None and fmri is None and opts.sim.replay is not None and _stream_exists(f"{sim_name}-annotations"):
                predicates.append({"name": f"{sim_name}-annotations"})  # e.g. the annotated seizure onset
            if sim_proc is not None and opts.sim is not None and "--respiration" in opts.sim.extra_args:
                predicates.append({"name": f"{sim_name}-resp-phase"})  # true inhale/exhale, to score gating
            if fmri is not None:
                predicates += fmri.record_predicates()
            recorder = XdfRecorder()
            started_at = recorder.start(folder.xdf_path, predicates)
            for reader in readers:  # the loop uses only what the XDF holds too (the inlets buffered since open)
                if isinstance(reader, InputReader):
                    reader.start_after = started_at
        start_data = _session_start_data(protocol, [r for r in readers if isinstance(r, InputReader)], session_id)
        if fmri is not None:
            start_data["fmri"] = fmri.start_data(protocol)
        bus.publish(Event(ev.SESSION_START, now(), None, start_data))
        if opts.progress is not None:
            fb = protocol.feedback.value if protocol.feedback else None
            display = TextDisplay(bus, engine.snapshot, fb, _main_threshold(protocol, fb), stream=opts.progress)
            display.start()
        if fmri is None:
            engine.start()
        else:
            _say(opts, fmri.waiting_text())  # the timeline starts at the run's first counted volume
        for reader in readers:
            reader.start()
        if fmri is not None:
            fmri.go()  # the recorder has subscribed: the simulated scanner may send volume 1
        if opts.keyboard and KeyboardControl.available():
            actions = key_actions(acts, estop=True, arm=stim is not None)
            keyboard = KeyboardControl(actions, notify=lambda text: _say(opts, text))
            keyboard.start()
            _say(opts, help_text(actions))
        status = _control_loop(engine, readers, sim_proc, opts, stim.watchdog if stim else None, fmri=fmri)
        if fmri is not None and fmri.volumes_processed() == 0:
            failure = fmri.no_volumes_reason(engine.stop_reason)
            status = "error"
    except KeyboardInterrupt:
        status = "stopped"
        if engine is not None:
            engine.stop("operator stop (Ctrl-C)")
        if fmri is not None and fmri.volumes_processed() == 0:
            failure = fmri.no_volumes_reason("operator stop (Ctrl-C)")
            status = "error"
    except Exception as exc:
        bus.publish(Event(ev.FAULT, now(), None, {"source": "session", "reason": f"{type(exc).__name__}: {exc}"}))
        if engine is not None:
            engine.stop(f"error: {exc}")
        raise SessionError(str(exc)) from exc
    finally:
        guard.close()
        if keyboard is not None:
            keyboard.stop()
        if listener is not None:
            listener.close()
        if stim is not None:  # disarm before anything else stops
            try:
                stim.close()
            except Exception as exc:
                bus.publish(Event(ev.FAULT, now(), None, {"source": "stimulation", "reason": f"closing: {exc}"}))
        if fmri is not None:
            fmri.close()
        if failure is not None:
            bus.publish(Event(ev.FAULT, now(), None, {"source": "session", "reason": failure}))
        extra = {"failure": failure} if failure else {}
        if fmri is not None:
            extra["volumes"] = fmri.volume_summary()
        result = _shutdown(folder, bus, journal, recorder, readers, display, output, engine, sim_proc, status, opts,
                           extra)
        result.failure = failure
    return result


def _open_inputs(protocol: Protocol, opts: RunOptions, sim_proc) -> tuple[list[InputReader], dict]:
    """Resolve, open and check every signal input against the protocol.

    A stream that cannot serve its input (a missing channel, another rate, no units) is a
    ``ProtocolError`` at the protocol's FILE:LINE:COL, like a load-time error (exit 2)."""
    readers, pipelines = [], {}
    try:
        for name, spec in protocol.inputs.items():
            timeout = opts.resolve_timeout_s or spec.resolve_timeout_s
            if sim_proc is not None and sim_proc.poll() is not None:
                raise SessionError(f"the simulator exited with code {sim_proc.returncode}: {sim_proc.stderr.read()}")
            try:
                reader, facts, checked = open_and_check(protocol, name, timeout, spec.stall_timeout_s, spec.max_gap_s)
            except StreamNotFound as exc:
                raise SessionError(str(exc)) from exc
            readers.append(reader)
            if checked.problems:
                raise located(opts.protocol_path, checked.problems, facts.name)
            features = [f for f in protocol.features.values() if f.input == name]
            units = checked.units
            pipelines[name] = FeaturePipeline(facts.rate, facts.labels, spec, features, channel_types=facts.types,
                                              scale=None if units is None else units.scale)
            reader.units = units
            reader.speed = facts.speed
            if facts.speed != 1.0:
                _say(opts, f"input {name}: a recording replayed at x{facts.speed:g}: the timeline and the rules "
                           "run on its signal time")
            _say(opts, f"input {name}: {facts.name}: units {units.summary if units else 'none'}"
                 + (" (unit: from the protocol)" if units is not None and units.from_protocol else ""))
    except BaseException:
        for reader in readers:
            reader.close()
        raise
    return readers, pipelines


def _inputs_from_simulator(protocol: Protocol, sim_name: str) -> Protocol:
    """The simulator stands in for the first input; its other streams are named after it."""
    first = next(iter(protocol.inputs))
    inputs = dict(protocol.inputs)
    inputs[first] = replace(inputs[first], stream=StreamSelector(name=sim_name))
    for name, spec in protocol.inputs.items():
        if name != first and spec.stream.type:
            inputs[name] = replace(spec, stream=StreamSelector(name=f"{sim_name}-{spec.stream.type.lower()}"))
    return replace(protocol, inputs=inputs)


def _end_simulator(sim_proc) -> None:
    if sim_proc is None:
        return
    sim_proc.terminate()
    try:
        sim_proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        sim_proc.kill()


def _wire(reader: InputReader, pipeline: FeaturePipeline, engine: Engine, bus: EventBus, governor=None) -> None:
    """A sample stream: chunks -> pipeline -> engine, its faults through the shared policy (InputFaults)."""
    name = reader.input_name
    faults = InputFaults(name, engine, governor, bus)

    def on_chunk(data: np.ndarray, timestamps: np.ndarray) -> None:
        faults.data_seen()
        was_bad = faults.nonfinite
        finite = np.isfinite(data)
        if not faults.check_finite(int(finite.size - np.count_nonzero(finite)), int(finite.size),
                                   f"a chunk of {len(data)} samples"):
            return  # a NaN would poison every filter state: dropped, and everything starts over when clean
        if was_bad:
            pipeline.reset()
        engine.on_features(pipeline.push(data, timestamps, reader.chunk_arrival))

    def start_over(why: str) -> None:
        """Windows restart after a short gap; after a long one (or time going back) everything does."""
        gap = reader.last_gap_s
        if gap is not None and 0.0 <= gap <= reader.max_gap_s:
            pipeline.restart_windows()
            return
        pipeline.reset()
        if pipeline.warmup_s > 0:
            missed = "an unknown time" if gap is None else f"{gap:+.3f} s"
            bus.publish(Event(ev.INPUT, now(), None, {
                "input": name, "status": "rewarming",
                "detail": f"{why} ({missed}, max_gap {reader.max_gap_s:g} s): features start over; "
                          f"the longest needs {pipeline.warmup_s:g} s of signal before it has a value"}))

    def on_status(status: str, detail: str) -> None:
        bus.publish(Event(ev.INPUT, now(), None, {"input": name, "status": status, "detail": detail}))
        if status in ("stalled", "lost"):
            faults.stalled(status, detail)
        elif status == "resumed":
            start_over("input resumed after a stall")
            faults.resumed()
        elif status == "gap":
            pipeline.restart_windows()  # lost samples: no window spans them; trends carry on
        elif status == "clock_jump":
            start_over("input clock jump")  # windows spanning the jump would mix two time bases
            faults.clock_jumped(detail)

    reader.on_chunk, reader.on_status = on_chunk, on_status


def _session_id(chosen: str | None) -> str:
    """The operator's id for the session (e.g. a room, kept across the runs of one participant) or a random one."""
    from controller.control_channel import valid_session_id

    if chosen is None:
        return uuid.uuid4().hex[:8]
    if not valid_session_id(chosen):
        raise SessionInputError(f"--session-id {chosen!r}: use 1-64 letters, digits, '_', '-' or '.', "
                                "starting with a letter or digit")
    return chosen


def _fmri_plan(protocol: Protocol, opts: RunOptions, streams: str):
    """The fMRI inputs' plan: simulator/replay (with --sim), the scanner folder, the scanner clock."""
    from controller.volume_session import FmriPlan, FmriSimOptions

    sim = opts.fmri_sim
    if sim is None and opts.sim is not None:
        sim = FmriSimOptions(replay=opts.sim.replay, seed=opts.sim.seed)
    if protocol.inputs:
        raise SessionError(f"protocol {protocol.name!r} mixes signal streams and fMRI volumes; "
                           "one kind per session is supported")
    from controller.volume_exports import ExportMismatch

    plan = FmriPlan(protocol, streams, sim if opts.sim is not None or opts.fmri_sim else None,
                    opts.volumes_folder, opts.resolve_timeout_s)
    try:
        plan.check(protocol, Path(opts.protocol_path), Path(opts.session_root))
    except ExportMismatch as exc:
        raise SessionInputError(str(exc)) from exc
    except (OSError, ValueError) as exc:  # e.g. --replay names no readable 4D NIfTI
        raise SessionInputError(f"--replay {sim.replay}: {exc}") from exc
    return plan


def _stream_exists(name: str, timeout_s: float = 2.0) -> bool:
    import pylsl

    return bool(pylsl.resolve_byprop("name", name, 1, timeout_s))


def _open_control_channel(session_id: str, acts: OperatorActs, bus: EventBus, opts: RunOptions, required: bool):
    """`neuroreflex estop|status|arm|disarm` from another terminal reach this session here.
    A session that drives stimulators does not start without it (remote E-STOP is part of its safety)."""
    from controller.control_channel import ControlError, ControlListener

    def on_error(text: str) -> None:
        bus.publish(Event(ev.FAULT, now(), None, {"source": "control channel", "reason": text}))

    try:
        listener = ControlListener(session_id, acts.on_command, on_error=on_error).start()
    except (ControlError, OSError) as exc:
        if required:
            raise SessionError(f"the control channel (remote E-STOP) cannot be opened: {exc}") from exc
        on_error(f"control channel not available: {exc}")  # neurofeedback only: keys and signals still work
        return None
    _say(opts, f"control channel: {listener.path} (neuroreflex estop | status)")
    return listener


def _signals_estop(acts: OperatorActs):
    """SIGINT/SIGTERM E-STOP first, then stop (only in the main thread, where signals are handled)."""
    import contextlib
    import threading

    if threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()
    from controller.estop_signals import estop_on_signals

    return estop_on_signals(acts.estop)


def _control_loop(engine: Engine, readers, sim_proc, opts: RunOptions, watchdog=None, fmri=None) -> str:
    t0 = time.monotonic()
    if watchdog is not None:
        watchdog.start()  # from here on the loop kicks it every cycle
    while not engine.done.wait(0.02):
        if watchdog is not None:
            watchdog.kick()
        engine.tick()
        if opts.duration_s is not None and time.monotonic() - t0 >= opts.duration_s:
            engine.stop(f"duration {opts.duration_s:g} s reached")
            return "stopped"
        _check_readers(readers)
        if sim_proc is not None and sim_proc.poll() is not None:
            if fmri is not None and fmri.scanner is not None and sim_proc.returncode == 0:
                reason = fmri.sender_finished()  # None while the volumes it sent are still being processed
                if reason is not None:
                    engine.stop(reason)
                    return "stopped"
                continue
            engine.set_inhibit(faults_source(FaultKind.SIMULATOR), f"simulator exited with code {sim_proc.returncode}")
    if fmri is not None and engine.stop_reason == TIMELINE_COMPLETE:
        ended = now()  # the run's last volume is delivered as its timeline ends: let it be processed
        while not fmri.timeline_done_waiting(ended):
            if watchdog is not None:
                watchdog.kick()
            _check_readers(readers)
            time.sleep(0.02)
    return "completed" if engine.stop_reason == TIMELINE_COMPLETE else "stopped"


def _check_readers(readers) -> None:
    for reader in readers:
        if reader.error is not None:
            raise SessionError(f"input {reader.input_name!r} failed: {reader.error}")


def _shutdown(folder, bus, journal, recorder, readers, display, output, engine, sim_proc, status, opts, extra=None):
    for reader in readers:
        reader.stop()
    for reader in readers:
        if reader.is_alive():
            reader.join(timeout=2)
    summary: dict[str, Any] = {
        "blocks": engine.block_stats if engine else [],
        "samples": {r.input_name: getattr(r, "samples_received", getattr(r, "volumes_received", 0)) for r in readers},
        **(extra or {}),
    }
    first = {r.input_name: {"first_sample_used": r.first_used, "dropped_before_recording": r.samples_dropped}
             for r in readers if isinstance(r, InputReader)}
    if first:
        summary["inputs"] = first
    if recorder is not None:
        try:
            recorder.stop()
        except Exception as exc:  # the journal still says what happened
            bus.publish(Event(ev.FAULT, now(), None, {"source": "recorder", "reason": str(exc)}))
    bus.publish(Event(ev.SESSION_END, now(), None, {"status": status, "summary": summary}))
    if display is not None:
        display.stop()
        if opts.progress is not None:
            opts.progress.write("\n")
    journal.stop()
    if output is not None:
        output.close()
    _end_simulator(sim_proc)
    folder.finish(status, summary)
    report = None
    if opts.build_report:
        from controller.report import build_report  # plotting stays off the hot path's imports

        try:
            report = build_report(folder.path)
        except Exception as exc:
            _say(opts, f"report could not be built: {type(exc).__name__}: {exc}")
    return SessionResult(folder.path, status, summary["blocks"], report, summary)


def _fired_today(stim, protocol: Protocol):
    """For per_day rule caps: how often each rule delivered today, from the dose ledger (survives restarts)."""
    from controller.safety.governor import utc_now
    from controller.stimulation.dispatcher import fired_today

    def count(rule) -> int:
        st = rule.do.stimulation
        label = f"{protocol.name} {rule.label}"  # = Engine.rule_label
        return fired_today(stim.governor, st.device, label, utc_now()) if st else 0

    return count


def _session_start_data(protocol: Protocol, readers, session_id: str) -> dict[str, Any]:
    fb = protocol.feedback.value if protocol.feedback else None
    return {
        "session_id": session_id,
        "protocol": protocol.name,
        "protocol_sha256": protocol.sha256,
        "timeline": [{"index": b.index, "label": b.label, "duration_s": b.duration_s, "cycle": b.cycle}
                     for b in protocol.timeline],
        "feedback_feature": fb,
        "thresholds": {n: _main_threshold_kind(t) for n, t in protocol.thresholds.items()},
        "threshold_features": _threshold_features(protocol),
        "inputs": {r.input_name: {"name": r.info.name(), "source_id": r.info.source_id(),
                                  "rate": r.info.nominal_srate(), "channels": r.info.channel_count(),
                                  "units": r.units.summary if r.units is not None else None,
                                  "si_scale": r.units.scale.tolist() if r.units is not None else None,
                                  "uses_samples_from": r.start_after}
                   for r in readers},
        "pid": os.getpid(),
    }


def _identity(protocol: Protocol, opts: RunOptions, site, session_id: str) -> dict[str, Any]:
    """Who, what and where: the manifest's ``identity`` and the journal's first line."""
    from controller import __version__

    return {
        "session_id": session_id,
        "participant": opts.participant,
        "operator": opts.operator,
        "site": site.name if site is not None else None,
        "site_config": str(opts.site_config) if opts.site_config else None,
        "protocol": protocol.name,
        "protocol_file": str(opts.protocol_path),
        "protocol_sha256": protocol.sha256,
        "run": opts.run,
        "simulated": opts.sim is not None,
        "software": f"neuroreflex {__version__}",
        "pid": os.getpid(),
    }


def _threshold_features(protocol: Protocol) -> dict[str, str]:
    """Which feature each threshold is compared with (for plotting thresholds over features)."""
    from controller.engine.conditions import names_in

    out: dict[str, str] = {}
    for name, spec in protocol.thresholds.items():
        if spec.adapt is not None:
            out[name] = spec.adapt.feature
        elif spec.percentile is not None:
            out[name] = spec.percentile.feature
    for rule in protocol.rules:
        feats, ths = names_in(rule.when)
        if len(feats) == 1:
            for th in ths:
                out.setdefault(th, next(iter(feats)))
    return out


def _main_threshold_kind(t) -> str:
    return "adaptive" if t.adapt else ("percentile" if t.percentile else "fixed")


def _main_threshold(protocol: Protocol, feature: str | None) -> str | None:
    """The threshold the feedback feature is compared with (for the status line)."""
    for name, spec in protocol.thresholds.items():
        if spec.adapt is not None and spec.adapt.feature == feature:
            return name
        if spec.percentile is not None and spec.percentile.feature == feature:
            return name
    return None
