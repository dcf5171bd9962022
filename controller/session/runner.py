"""A session end to end: resolve inputs, wire the hot path, record, run the timeline, report.

Wiring per input: InputReader thread -> FeaturePipeline.push -> Engine.on_features ->
outputs, all in the reader's thread. The main thread only ticks the timeline clock,
watches the inputs and the simulator, and shuts everything down in order (so the XDF
and the journal are complete even after Ctrl-C or an error).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from controller import event_records as rec
from controller import events as ev
from controller.clock import now
from controller.engine.engine import TIMELINE_COMPLETE, Engine
from controller.engine.signal_clock import SignalClock, common_speed
from controller.events import Event, EventBus
from controller.inputs.lsl.live_check import with_streams
from controller.lang.compiled import Protocol
from controller.operator.acts import OperatorActs
from controller.operator.keyboard import KeyboardControl, help_text, key_actions
from controller.operator.terminal import TextDisplay
from controller.protocol import load_protocol
from controller.recording.journal import Journal
from controller.recording.session import SessionFolder
from controller.recording.xdf import XdfRecorder
from controller.session.errors import SessionError, SessionInputError
from controller.session.modality import Modality
from controller.session.signal_modality import SignalInputs
from controller.session.sim_commands import SimOptions
from drivers.lsl_outputs import LslFeedbackOutput

__all__ = ["RunOptions", "SessionError", "SessionInputError", "SessionResult", "SimOptions", "run_session"]


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
    fmri_sim: Any = None  # controller.session.fmri_modality.FmriSimOptions; default from ``sim`` for fMRI protocols


@dataclass
class SessionResult:
    session_dir: Path
    status: str
    block_stats: list[dict[str, Any]]
    report: Path | None
    summary: dict[str, Any]
    failure: str | None = None  # why a session that ran to its end still failed (e.g. no fMRI volume processed)


def _say(opts: RunOptions, text: str) -> None:
    if opts.progress is not None:
        opts.progress.write(text + "\n")
        opts.progress.flush()


# The hot path shares the interpreter with the journal, display and recorder threads; a
# shorter GIL switch interval (default 5 ms) bounds how long a sample can wait for them.
GIL_SWITCH_INTERVAL_S = 0.0005


def run_session(opts: RunOptions) -> SessionResult:
    """Run one session to the end of its timeline (or ``duration_s``, or Ctrl-C): one lifecycle over the
    protocol's modalities (controller/session/modality.py), none of which it knows by kind."""
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
    modalities = _modalities(protocol, opts, streams)
    if protocol.devices and site is None:
        raise SessionError(f"{opts.protocol_path} drives stimulators ({', '.join(protocol.devices)}): "
                           "give the site configuration with its devices and limits (--site config/site.yaml)")
    try:  # every input found and checked before the session folder exists: a bad match leaves nothing behind
        for modality in modalities:
            protocol = modality.prepare(protocol)
    except BaseException:
        for modality in modalities:
            modality.close()  # nothing may outlive a session that did not start
        raise
    identity = _identity(protocol, opts, site, session_id)
    if site is not None and site.telemetry is not None:
        _check_telemetry(site.telemetry, modalities)
    try:
        folder = SessionFolder.create(opts.session_root, Path(opts.protocol_path), opts.site_config, identity=identity)
    except BaseException:  # e.g. a full disk or a folder without write permission
        for modality in modalities:
            modality.close()
        raise
    _say(opts, f"session folder: {folder.path}")
    bus = EventBus()
    journal = Journal(folder.journal_path)
    journal.start(bus)
    telemetry = None
    if site is not None and site.telemetry is not None:
        from controller.telemetry.publisher import TelemetryPublisher  # aiomqtt: only for a site that asks

        telemetry = TelemetryPublisher(site.telemetry, bus, {**identity, "started": time.time(),
                                                             "devices": list(protocol.devices)}).start()
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
    remote = None
    try:
        guard.enter_context(_signals_estop(acts))
        if site is not None and site.telemetry is not None:  # remote commands (E-STOP too) from the broker's
            from controller.telemetry.remote import RemoteCommands  # operators, on their own connection

            remote = RemoteCommands(site.telemetry, session_id, acts,
                                    on_error=lambda text: bus.publish(rec.Fault("telemetry commands",
                                                                                text).event(now()))).start()
        if protocol.devices:
            from controller.session.stimulation import open_stimulation

            ledger_dir = opts.ledger_dir or Path(opts.session_root) / "ledger"
            stim = open_stimulation(protocol, site, bus, session_id, folder.path / "devices",
                                    ledger_dir / f"{site.name}-{opts.participant}.jsonl",
                                    sim=opts.sim is not None if opts.virtual_devices is None else opts.virtual_devices,
                                    arm=opts.arm, operator=opts.operator, progress=opts.progress)
            acts.stim = stim
            acts.follow_commands()
            _say(opts, "devices " + ("ARMED (--arm)" if opts.arm else "disarmed: press 'a' twice to arm"))
        listener = _open_control_channel(session_id, acts, bus, opts, required=stim is not None)
        output = LslFeedbackOutput(streams, list(protocol.features), source_id=f"{streams}",
                                   session={"session_id": session_id, "protocol": protocol.name})
        _say(opts, f"session {session_id}: LSL outlets {streams}-features, -markers, -feedback "
                   f"(displays: --session {session_id})")
        output.open()
        try:
            speed = common_speed({k: v for m in modalities for k, v in m.speeds().items()})
        except ValueError as exc:
            raise SessionError(str(exc)) from exc
        engine_protocol = protocol
        for modality in modalities:
            engine_protocol = modality.engine_protocol(engine_protocol)
        engine = Engine(engine_protocol, bus, [output], stimulation=stim.stimulation if stim else None,
                        fired_today=_fired_today(stim, protocol) if stim else None,
                        signal_clock=SignalClock(speed))
        acts.engine = engine
        for modality in modalities:
            modality.connect(protocol, folder.path, bus, engine, session_id, stim.governor if stim else None)
        if opts.record_xdf:
            predicates = [p for m in modalities for p in m.record_predicates()]
            predicates += [{"source_id": sid} for sid in output.source_ids.values()]
            recorder = XdfRecorder()
            started_at = recorder.start(folder.xdf_path, predicates)
            for modality in modalities:
                modality.recorder_started(started_at)
        start = _session_start(protocol, session_id)
        for modality in modalities:
            start = replace(start, **modality.start_data(protocol))
        bus.publish(start.event(now()))
        acts.info = {"protocol_path": str(Path(opts.protocol_path).resolve()), "folder": str(folder.path),
                     "outlets": output.stream_names, "inputs": start.to_data().get("inputs") or {},
                     "fmri": start.to_data().get("fmri"), "prefix": streams,
                     "participant": opts.participant, "operator": opts.operator}
        if opts.progress is not None:
            fb = protocol.feedback.value if protocol.feedback else None
            display = TextDisplay(bus, engine.snapshot, fb, _main_threshold(protocol, fb), stream=opts.progress,
                                  family=_unit_family(protocol, fb))
            display.start()
        if all(m.starts_timeline for m in modalities):
            engine.start()
        for modality in modalities:
            if not modality.starts_timeline:
                _say(opts, modality.waiting_text())  # the input starts the timeline when its data begins
        for modality in modalities:
            modality.start()
        if opts.keyboard and KeyboardControl.available():
            actions = key_actions(acts, estop=True, arm=stim is not None)
            keyboard = KeyboardControl(actions, notify=lambda text: _say(opts, text))
            keyboard.start()
            _say(opts, help_text(actions))
        status = _control_loop(engine, modalities, opts, stim.watchdog if stim else None)
        failure = _failure(modalities, engine.stop_reason)
        if failure is not None:
            status = "error"
    except KeyboardInterrupt:
        status = "stopped"
        if engine is not None:
            engine.stop("operator stop (Ctrl-C)")
        failure = _failure(modalities, "operator stop (Ctrl-C)")
        if failure is not None:
            status = "error"
    except Exception as exc:
        bus.publish(rec.Fault("session", f"{type(exc).__name__}: {exc}").event(now()))
        if engine is not None:
            engine.stop(f"error: {exc}")
        raise SessionError(str(exc)) from exc
    finally:
        guard.close()
        if keyboard is not None:
            keyboard.stop()
        if listener is not None:
            listener.close()
        if remote is not None:
            remote.close()
        if stim is not None:  # disarm before anything else stops
            try:
                stim.close()
            except Exception as exc:
                bus.publish(rec.Fault("stimulation", f"closing: {exc}").event(now()))
        if failure is not None:
            bus.publish(rec.Fault("session", failure).event(now()))
        result = _shutdown(folder, bus, journal, recorder, modalities, display, output, engine, status, opts,
                           {"failure": failure} if failure else {}, telemetry)
        result.failure = failure
    return result


def _check_telemetry(cfg, modalities: list[Modality]) -> None:
    """A site that asks for telemetry gets it or a clear error before the session folder exists: the
    client installed, the password file or variable and the TLS files there. (The broker itself may be
    away: that changes nothing but the telemetry.)"""
    import importlib.util

    from controller.telemetry.connection import TelemetryConnectionError, client_options

    if importlib.util.find_spec("aiomqtt") is None:
        for modality in modalities:
            modality.close()
        raise SessionError("the site config has a telemetry: section but aiomqtt is not installed: "
                           "pip install 'neuroreflex[mqtt]'")
    try:
        client_options(cfg, client_id="check")
    except TelemetryConnectionError as exc:
        for modality in modalities:
            modality.close()
        raise SessionError(str(exc)) from exc


def _modalities(protocol: Protocol, opts: RunOptions, streams: str) -> list[Modality]:
    """The protocol's kinds of input, each one modality (one kind per session is supported today)."""
    if protocol.inputs and protocol.volume_inputs:
        raise SessionError(f"protocol {protocol.name!r} mixes signal streams and fMRI volumes; "
                           "one kind per session is supported")
    if protocol.volume_inputs:
        from controller.session.fmri_modality import FmriPlan, FmriSimOptions

        sim = opts.fmri_sim
        if sim is None and opts.sim is not None:
            sim = FmriSimOptions(replay=opts.sim.replay, seed=opts.sim.seed)
        return [FmriPlan(protocol, streams, sim if opts.sim is not None or opts.fmri_sim else None,
                         opts.volumes_folder, opts.resolve_timeout_s, Path(opts.protocol_path),
                         Path(opts.session_root))]
    return [SignalInputs(streams, opts.sim if protocol.inputs else None, Path(opts.protocol_path),
                         opts.resolve_timeout_s, lambda text: _say(opts, text))]


def _failure(modalities: list[Modality], stop_reason: str | None) -> str | None:
    """Why a session that ran to its end still failed (e.g. no fMRI volume processed), or None."""
    for modality in modalities:
        why = modality.failure(stop_reason)
        if why is not None:
            return why
    return None


def _session_id(chosen: str | None) -> str:
    """The operator's id for the session (e.g. a room, kept across the runs of one participant) or a random one."""
    from controller.operator.control_channel import valid_session_id

    if chosen is None:
        return uuid.uuid4().hex[:8]
    if not valid_session_id(chosen):
        raise SessionInputError(f"--session-id {chosen!r}: use 1-64 letters, digits, '_', '-' or '.', "
                                "starting with a letter or digit")
    return chosen


def _open_control_channel(session_id: str, acts: OperatorActs, bus: EventBus, opts: RunOptions, required: bool):
    """`neuroreflex estop|status|arm|disarm` from another terminal reach this session here.
    A session that drives stimulators does not start without it (remote E-STOP is part of its safety)."""
    from controller.operator.control_channel import ControlError, ControlListener

    def on_error(text: str) -> None:
        bus.publish(rec.Fault("control channel", text).event(now()))

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
    from controller.operator.estop_signals import estop_on_signals

    return estop_on_signals(acts.estop)


def _control_loop(engine: Engine, modalities: list[Modality], opts: RunOptions, watchdog=None) -> str:
    t0 = time.monotonic()
    sources = [src for m in modalities for src in m.sources]

    def kick() -> None:
        if watchdog is not None:
            watchdog.kick()
        _check_sources(sources)

    if watchdog is not None:
        watchdog.start()  # from here on the loop kicks it every cycle
    while not engine.done.wait(0.02):
        if watchdog is not None:
            watchdog.kick()
        engine.tick()
        if opts.duration_s is not None and time.monotonic() - t0 >= opts.duration_s:
            engine.stop(f"duration {opts.duration_s:g} s reached")
            return "stopped"
        _check_sources(sources)
        for modality in modalities:
            reason = modality.poll(engine)
            if reason is not None:
                engine.stop(reason)
                return "stopped"
    if engine.stop_reason == TIMELINE_COMPLETE:
        for modality in modalities:
            modality.drain(engine, kick)
    return "completed" if engine.stop_reason == TIMELINE_COMPLETE else "stopped"


def _check_sources(sources) -> None:
    for source in sources:
        if source.error is not None:
            raise SessionError(f"input {source.input_name!r} failed: {source.error}")


def _shutdown(folder, bus, journal, recorder, modalities, display, output, engine, status, opts, extra=None,
              telemetry=None):
    sources = [src for m in modalities for src in m.sources]
    for source in sources:
        source.stop()
    for source in sources:
        if source.is_alive():
            source.join(timeout=2)
    summary: dict[str, Any] = {
        "blocks": engine.block_stats if engine else [],
        "samples": {r.input_name: getattr(r, "samples_received", getattr(r, "volumes_received", 0)) for r in sources},
        **(extra or {}),
    }
    for modality in modalities:
        summary.update(modality.summary())
    if recorder is not None:
        try:
            recorder.stop()
        except Exception as exc:  # the journal still says what happened
            bus.publish(rec.Fault("recorder", str(exc)).event(now()))
    if telemetry is not None:  # the end goes out (state ended, status ended); its account is in the summary
        summary["telemetry"] = telemetry.stop(status)
    bus.publish(rec.SessionEnd(status, summary).event(now()))
    if display is not None:
        display.stop()
        if opts.progress is not None:
            opts.progress.write("\n")
    journal.stop()
    if output is not None:
        output.close()
    for modality in modalities:
        modality.close()
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


def _session_start(protocol: Protocol, session_id: str) -> rec.SessionStart:
    """What every session's start says; each modality adds its inputs (``Modality.start_data``)."""
    fb = protocol.feedback.value if protocol.feedback else None
    return rec.SessionStart(
        session_id, protocol.name, protocol.sha256,
        tuple(rec.TimelineEntry(b.index, b.label, b.duration_s, b.cycle) for b in protocol.timeline), fb,
        {n: _main_threshold_kind(t) for n, t in protocol.thresholds.items()}, _threshold_features(protocol),
        {}, os.getpid())


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


def _unit_family(protocol: Protocol, feature: str | None) -> str | None:
    """The unit family of the feature the status line shows (None: a plain number)."""
    from controller.features.registry import find

    spec = protocol.features.get(feature) if feature else None
    found = find(spec.kind) if spec is not None else None
    return getattr(found, "unit", None)


def _main_threshold(protocol: Protocol, feature: str | None) -> str | None:
    """The threshold the feedback feature is compared with (for the status line)."""
    for name, spec in protocol.thresholds.items():
        if spec.adapt is not None and spec.adapt.feature == feature:
            return name
        if spec.percentile is not None and spec.percentile.feature == feature:
            return name
    return None
