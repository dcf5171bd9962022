"""The report of closed-loop stimulation sessions: commands, refusals, interlocks, latency to the
device, seizure detection metrics and the phase error of phase-locked pulses.

Session folders are made the way a session makes them (SessionFolder, the real Journal on an
EventBus; the real safety Governor and stimulation dispatcher with a scripted driver; device logs
written by the virtual devices' own DeviceJournal; XDF files written by a minimal XDF writer or
recorded by LabRecorder from real LSL outlets), with known times, so every number is checked.
"""

from __future__ import annotations

import json
import math
import struct
import uuid
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest
from matplotlib.image import imread

from controller.dsp.circular import circ_mean, circ_std, wrap_angle
from controller.events import DECISION, FEATURE, INFO, SESSION_END, SESSION_START, Event, EventBus
from controller.lang.compiled import DeviceUse, StimAction
from controller.recording.journal import Journal
from controller.recording.session import SessionFolder
from controller.report import build_report
from controller.report.build import closed_loop
from controller.report.data import load_session
from controller.report.device_logs import EARLY_S, LATE_S, DeviceLog, match_arrivals
from controller.report.protocol_copy import load_session_protocol
from controller.report.recording import load_recording
from controller.report.stim_html import seizure_section
from controller.safety import DoseLedger, Governor, loads_site
from controller.stimulation.dispatcher import COMMAND, Link, Stimulation
from drivers.stimulator import DeviceStatus, Stimulator
from sim.devices.journal import DeviceJournal

T0 = 1000.0

SITE = """
site: report-test
timezone: UTC
max_loop_latency: 20 ms
input_stall: 1 s
devices:
  tms:
    driver: magstim
    port: loop://tms
    limits:
      intensity_max: 80 %
      min_pulse_interval: 50 ms
      pulses_per_session_max: 100
"""

SEIZURE_PROTOCOL = """\
protocol: seizure-test
description: line length detector, one TMS pulse per detection
inputs:
  ieeg: {stream: {type: EEG}, channels: [c3, c4]}
features:
  ll: {line_length: {input: ieeg, window: 1 s, every: 100 ms, trend: 30 s}}
timeline: [{monitor: 10 min}]
devices:
  tms: {intensity: 50 %}
rules:
  - during: monitor
    when: ll > 175 %
    refractory: 5 s
    do: {stimulate: {device: tms}}
"""

PHASE_PROTOCOL = """\
protocol: mu-phase-test
description: TMS at the mu trough of a C3 Laplacian
inputs:
  eeg: {stream: {name: PhaseEEG, type: EEG}, channels: [C3, FC1, FC5, CP1, CP5]}
features:
  mu: {phase: {input: eeg, laplacian: {center: C3, neighbours: [FC1, FC5, CP1, CP5]}, band: [8 Hz, 13 Hz],
       target: trough, delay: 5 ms, min_interval: 2 s, every: 10 ms}}
timeline: [{stim: 60 s}]
devices:
  tms: {intensity: 50 %}
rules:
  - during: stim
    when: mu > 0.5
    do: {stimulate: {device: tms, at: mu}}
"""


# ----------------------------------------------------------------------------- helpers


def _varlen(n: int) -> bytes:
    return struct.pack("<BB", 1, n) if n < 256 else struct.pack("<BI", 4, n)


def _chunk(tag: int, content: bytes) -> bytes:
    body = struct.pack("<H", tag) + content
    return _varlen(len(body)) + body


def write_xdf(path: Path, streams: list[dict]) -> None:
    """A minimal XDF 1.0 file (header, stream headers, one samples chunk each, clock offset 0, footers).

    Each stream: name, type, fmt ('double64' | 'float32' | 'string'), srate, labels, times, values, and
    optionally header_xml (the stream's own <info> XML, e.g. from a real outlet's ``as_xml()``).
    """
    out = bytearray(b"XDF:")
    out += _chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')
    for sid, s in enumerate(streams, start=1):
        labels = s.get("labels") or ["marker"]
        chans = "".join(f"<channel><label>{escape(lab)}</label></channel>" for lab in labels)
        xml = s.get("header_xml") or (
            f'<?xml version="1.0"?><info><name>{escape(s["name"])}</name><type>{escape(s["type"])}</type>'
            f'<channel_count>{len(labels)}</channel_count><nominal_srate>{s["srate"]}</nominal_srate>'
            f'<channel_format>{s["fmt"]}</channel_format><source_id>{escape(s["name"])}</source_id>'
            f"<desc><channels>{chans}</channels></desc></info>")
        out += _chunk(2, struct.pack("<I", sid) + xml.encode())
    for sid, s in enumerate(streams, start=1):
        times = np.asarray(s["times"], dtype=float)
        buf = bytearray(struct.pack("<I", sid)) + _varlen(len(times))
        for k, t in enumerate(times):
            buf += struct.pack("<Bd", 8, t)
            if s["fmt"] == "string":
                text = str(s["values"][k]).encode()
                buf += _varlen(len(text)) + text
            else:
                buf += np.asarray(s["values"][k], "<f4" if s["fmt"] == "float32" else "<f8").tobytes()
        out += _chunk(3, bytes(buf))
        out += _chunk(4, struct.pack("<Idd", sid, float(times[0]) if times.size else 0.0, 0.0))
    for sid, _ in enumerate(streams, start=1):
        out += _chunk(6, struct.pack("<I", sid) + b'<?xml version="1.0"?><info></info>')
    path.write_bytes(bytes(out))


class Clock:
    """The session's LSL clock (and a wall clock moving with it), advanced by the test."""

    def __init__(self, t: float = T0) -> None:
        self.t = t
        self.wall0 = datetime(2024, 3, 5, 10, 0, tzinfo=UTC)

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return self.wall0 + timedelta(seconds=self.t - T0)

    def step(self, dt: float) -> float:
        self.t += dt
        return self.t


class ScriptedMagstim(Stimulator):
    """A driver whose bytes leave ``send_s`` after the call and reach the device ``arrive_s`` later;
    the device side is journaled with the virtual devices' own DeviceJournal (magstim meanings)."""

    def __init__(self, clock: Clock, journal: DeviceJournal, send_s: float) -> None:
        self.name = "tms"
        self.clock = clock
        self.journal = journal
        self.send_s = send_s
        self.arrive_s = 0.0005
        self.sent: list[tuple[str, float, float]] = []  # (meaning, t_sent, arrival)

    def _wire(self, meaning: str) -> float:
        t_sent = self.clock.t + self.send_s
        arrival = t_sent + self.arrive_s
        self.journal.write("command", meaning, t=arrival, data=b"EH")
        self.sent.append((meaning, t_sent, arrival))
        return t_sent

    def connect(self) -> None:
        pass

    def arm(self) -> float:
        return self._wire("arm")

    def disarm(self) -> float:
        return self._wire("disarm")

    def set_parameters(self, **params: float) -> float:
        return self._wire(f"set power {int(params['intensity_pct'])}")

    def command_parameters(self, settings: Mapping[str, float], changed: Collection[str] | None = None) -> dict:
        return {"intensity_pct": int(round(settings["intensity_pct"]))} if "intensity_pct" in settings else {}

    def fire(self) -> float:
        t = self._wire("fire")
        self.journal.write("pulse", "pulse 50 %", t=self.sent[-1][2] + 0.0001)
        return t

    def status(self) -> DeviceStatus:
        return DeviceStatus(self.clock.t, True, True, True, True)

    def close(self) -> None:
        pass


def _session(tmp_path: Path, protocol_text: str, name: str) -> tuple[SessionFolder, EventBus, Journal]:
    protocol = tmp_path / f"{name}.yaml"
    protocol.write_text(protocol_text)
    folder = SessionFolder.create(tmp_path / "sessions", protocol, name=name)
    bus = EventBus()
    journal = Journal(folder.journal_path)
    journal.start(bus)
    return folder, bus, journal


def _summary(folder: SessionFolder) -> dict:
    return json.loads((folder.report_dir / "summary.json").read_text())


def _closed_loop(folder: SessionFolder) -> dict:
    """The stimulation/seizure/phase parts of the summary, computed as build_report does, without figures."""
    data = load_session(folder.path)
    protocol, problem = load_session_protocol(folder.path, data.manifest)
    _, parts = closed_loop(data, load_recording(folder.xdf_path), protocol, problem, folder.path)
    return json.loads(json.dumps(parts))


def _check_png(path: Path) -> None:
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
    assert float(img[..., :3].std()) > 0.01


# ----------------------------------------------------------------------------- stimulation section


def test_commands_refusals_interlocks_estop_and_latency_to_the_device(tmp_path: Path) -> None:
    folder, bus, journal = _session(tmp_path, SEIZURE_PROTOCOL, "seizure-test")
    clock = Clock()
    site = loads_site(SITE, "site.yaml")
    ledger = DoseLedger(tmp_path / "ledger.jsonl", tz=site.tzinfo)
    governor = Governor(site, ledger, folder.session_id, clock=clock, wall=clock.wall, publish=bus.publish)
    (folder.path / "devices").mkdir()
    device_log = DeviceJournal(folder.path / "devices" / "tms.jsonl", "magstim")
    device_log.write("start", "virtual magstim on /dev/pts/9", t=T0 - 1.0, info={"kind": "magstim"})
    driver = ScriptedMagstim(clock, device_log, send_s=0.001)
    stim = Stimulation(governor, {"tms": Link("tms", driver)}, bus, clock=clock)
    rule = "seizure-test rule 1 (line 11)"
    fire = StimAction("stimulate", "tms")
    bus.publish(Event(SESSION_START, T0, None, {"protocol": "seizure-test", "timeline": [], "feedback_feature": "ll"}))
    try:
        assert stim.prepare({"tms": DeviceUse("tms", {"intensity_pct": 50.0})}) == []
        assert stim.arm("operator A") == []

        clock.step(1.0)
        # a stray fire logged 0.2 s before the first one (e.g. from the front panel): never matched
        device_log.write("command", "fire", t=clock.t - 0.2, data=b"EH")
        stim.execute(fire, clock.t - 0.003, rule, {})  # allowed: 3 ms + 1 ms send, arrives 0.5 ms later
        device_log.write("command", "keep-alive", t=clock.t + 0.0012, data=b"Q@")
        clock.step(0.010)
        stim.execute(fire, clock.t - 0.002, rule, {})  # refused: 10 ms since the last pulse < 50 ms
        clock.step(1.0)
        governor.inhibit("artifact", "emg 80 uV > 50 uV")
        stim.execute(fire, clock.t - 0.002, rule, {})  # refused: inhibited
        clock.step(0.5)
        assert governor.clear("artifact")
        clock.step(1.0)
        driver.send_s, driver.arrive_s = 0.002, 0.0007
        stim.execute(fire, clock.t - 0.004, rule, {})  # allowed: 4 + 2 ms, arrives 0.7 ms later
        clock.step(1.0)
        stim.estop("operator pressed E-STOP")
        clock.step(0.5)
    finally:
        stim.close()
        ledger.close()
    bus.publish(Event(SESSION_END, clock.t, None, {"status": "stopped", "summary": {}}))
    journal.stop()
    device_log.close()
    with open(folder.path / "devices" / "tms.jsonl", "a") as f:
        f.write('{"seq": 99, "t": 1')  # the device process was killed mid-line
    folder.finish("stopped", {})

    report = build_report(folder.path)
    s = _summary(folder)["stimulation"]
    tms = s["devices"]["tms"]
    assert (tms["fires"], tms["single_pulses"], tms["trains"], tms["pulses"]) == (2, 2, 0, 2.0)
    assert (tms["refused"], tms["sets"], tms["arms"], tms["not_ready"]) == (2, 1, 1, 0)
    assert tms["disarms"] >= 1 and tms["device_log"] == "tms.jsonl"
    assert s["totals"]["delivered"] == 2 and s["totals"]["refused"] == 2

    fires = [c for c in s["commands"] if c["kind"] == "fire"]
    assert [c["ok"] for c in fires] == [True, False, False, True]
    sent = [t for m, t, _ in driver.sent if m == "fire"]
    arrived = [a for m, _, a in driver.sent if m == "fire"]
    assert [c["t_sent"] for c in fires if c["ok"]] == sent
    assert [c["arrival_t"] for c in fires if c["ok"]] == pytest.approx(arrived, abs=1e-12)
    assert fires[0]["latency_ms"] == pytest.approx(4.0, abs=1e-6)
    assert fires[0]["source_to_arrival_ms"] == pytest.approx(4.5, abs=1e-6)
    assert fires[0]["sent_to_arrival_ms"] == pytest.approx(0.5, abs=1e-6)
    assert fires[3]["latency_ms"] == pytest.approx(6.0, abs=1e-6)
    assert fires[3]["source_to_arrival_ms"] == pytest.approx(6.7, abs=1e-6)
    assert fires[0]["t_s"] == pytest.approx(1.001, abs=1e-9)
    assert fires[1]["verdict"].startswith("refused: ") and "min_pulse_interval" in fires[1]["verdict"]
    assert fires[1]["limit"] == "min_pulse_interval" and fires[1]["limit_value"] == pytest.approx(0.05)
    assert fires[0]["verdict"] == "allowed (1 pulse)"

    lat = s["latency_ms"]
    assert lat["source_to_sent"]["n"] == 2
    assert lat["source_to_sent"]["median"] == pytest.approx(5.0, abs=1e-6)
    assert lat["source_to_sent"]["max"] == pytest.approx(6.0, abs=1e-6)
    assert lat["source_to_arrival"]["median"] == pytest.approx(5.6, abs=1e-6)
    assert lat["source_to_arrival"]["p99"] == pytest.approx(np.percentile([4.5, 6.7], 99), abs=1e-6)
    assert lat["source_to_arrival"]["max"] == pytest.approx(6.7, abs=1e-6)

    interval, inhibited = s["refusals"]
    assert interval["limit"] == "min_pulse_interval" and interval["rule"] == rule and interval["by"] == "governor"
    assert interval["value"] == pytest.approx(0.010, abs=1e-9) and interval["limit_value"] == pytest.approx(0.05)
    assert "min_pulse_interval" in interval["reason"] and interval["t_s"] == pytest.approx(1.010)
    assert inhibited["limit"] == "inhibited" and "artifact" in inhibited["reason"]

    locks = {lk["source"]: lk for lk in s["interlocks"]}
    assert locks["artifact"]["from_s"] == pytest.approx(2.010) and locks["artifact"]["to_s"] == pytest.approx(2.510)
    assert locks["artifact"]["reason"] == "emg 80 uV > 50 uV" and locks["artifact"]["active_at_end"] is False
    assert locks["estop"]["to_s"] is None and locks["estop"]["active_at_end"] is True
    assert locks["estop"]["duration_s"] == pytest.approx(0.5)
    (estop,) = s["estops"]
    assert estop["reason"] == "operator pressed E-STOP" and estop["t_s"] == pytest.approx(4.51)
    assert estop["took_ms"] >= 0
    assert any("skipped" in p for p in s["problems"])  # the torn device-log line is reported
    assert s["device_logs"]["tms"]["kind"] == "magstim"

    summary = _summary(folder)
    assert {"stim_commands", "stim_latency"} <= set(summary["figures"])
    for key in ("stim_commands", "stim_latency"):
        _check_png(folder.report_dir / summary["figures"][key])
    text = report.read_text()
    assert "<h2>Stimulation</h2>" in text and "still active" in text and "operator pressed E-STOP" in text
    assert "min_pulse_interval" in text


def test_arrival_matching_is_in_order_within_its_window() -> None:
    log = DeviceLog("tms", Path("tms.jsonl"), "magstim",
                    np.array([9.0, 10.0005, 10.0006, 10.0101, 11.0 - EARLY_S / 2, 20.0 + LATE_S + 0.5]),
                    ["fire", "fire", "set power 40", "fire", "fire", "fire"])
    commands = [
        {"device": "tms", "kind": "fire", "t_sent": 10.0},  # 9.0 is too early: 10.0005
        {"device": "tms", "kind": "set", "t_sent": 10.0001},  # 10.0006
        {"device": "tms", "kind": "fire", "t_sent": 10.0002},  # 10.0005 taken: the next fire, 10.0101
        {"device": "tms", "kind": "fire", "t_sent": 11.0},  # logged just before t_sent (within EARLY_S)
        {"device": "tms", "kind": "fire", "t_sent": 20.0},  # nothing within LATE_S
        {"device": "tms", "kind": "fire", "t_sent": None},  # refused: nothing sent
        {"device": "other", "kind": "fire", "t_sent": 10.0},  # no log for this device
    ]
    assert match_arrivals(commands, {"tms": log}) == [10.0005, 10.0006, 10.0101, 11.0 - EARLY_S / 2, None, None, None]


# ----------------------------------------------------------------------------- seizure metrics

ONSET = T0 + 120.0
LIVE = T0 + 30.0  # the line-length trend forms after 30 s
PREICTAL_DECISIONS = [40.0, 45.1, 50.2, 80.0]  # refractory 5 s: 40/45.1/50.2 are one episode, 80 another
ICTAL_DECISION = 123.5


def _seizure_session(tmp_path: Path, *, onset_in_journal: bool, onset_in_xdf: bool) -> SessionFolder:
    folder, bus, journal = _session(tmp_path, SEIZURE_PROTOCOL, "seizure-test")
    bus.publish(Event(SESSION_START, T0, None, {"protocol": "seizure-test", "timeline": [], "feedback_feature": "ll"}))
    decisions = {round(T0 + d, 6) for d in PREICTAL_DECISIONS + [ICTAL_DECISION]}
    for k in range(1, 1501):  # ll every 100 ms for 150 s
        t = T0 + 0.1 * k
        value = math.nan if t < LIVE - 1e-9 else (250.0 if t >= ONSET else 100.0)
        bus.publish(Event(FEATURE, t + 0.002, t, {"name": "ll", "value": value, "sample_index": k}))
        if round(t, 6) in decisions:
            bus.publish(Event(DECISION, t + 0.003, t, {"rule": 0, "action": "stimulate:tms", "block": "monitor",
                                                       "latency_s": 0.003, "condition": "ll > 175 %"}))
            bus.publish(Event(COMMAND, t + 0.004, t, {"device": "tms", "kind": "fire", "ok": True,
                                                      "rule": "seizure-test rule 1 (line 11)", "t_sent": t + 0.004,
                                                      "latency_s": 0.004, "note": "1 pulse"}))
        if onset_in_journal and abs(t - ONSET) < 1e-9:
            bus.publish(Event(INFO, t + 0.01, None, {"what": "annotation", "text": "seizure_onset", "t": ONSET}))
    bus.publish(Event(SESSION_END, T0 + 150.1, None, {"status": "completed", "summary": {}}))
    journal.stop()
    folder.finish("completed", {})
    dj = DeviceJournal(folder.path / "devices" / "tms.jsonl", "magstim")  # each fire arrives 0.6 ms after t_sent
    for d in PREICTAL_DECISIONS + [ICTAL_DECISION]:
        dj.write("command", "fire", t=T0 + d + 0.004 + 0.0006, data=b"EH")
    dj.close()
    if onset_in_xdf:
        t_eeg = T0 + np.arange(0, 150 * 100) / 100.0
        write_xdf(folder.xdf_path, [
            {"name": "seizure-replay", "type": "EEG", "fmt": "double64", "srate": 100, "labels": ["c3", "c4"],
             "times": t_eeg, "values": np.zeros((t_eeg.size, 2))},
            {"name": "seizure-replay-annotations", "type": "Markers", "fmt": "string", "srate": 0,
             "times": [ONSET], "values": ["seizure_onset"]},
        ])
    return folder


@pytest.mark.parametrize(("in_journal", "in_xdf"), [(False, True), (True, False), (True, True)])
def test_seizure_detection_latency_and_false_detections(tmp_path: Path, in_journal: bool, in_xdf: bool) -> None:
    folder = _seizure_session(tmp_path, onset_in_journal=in_journal, onset_in_xdf=in_xdf)
    parts = _closed_loop(folder)
    s = parts["seizure"]
    assert len(s["onsets"]) == 1  # seen in both sources: counted once
    assert s["first_onset_s"] == pytest.approx(120.0, abs=1e-9)
    assert s["onsets"][0]["source"] == ("journal" if in_journal else "seizure-replay-annotations")
    assert s["detector_features"] == ["ll"] and s["stimulation_rules"] == [0]
    assert s["detector_live_s"] == pytest.approx(30.0, abs=1e-9)
    lat = s["detection_latency_s"]
    assert lat["decision"] == pytest.approx(3.5, abs=1e-9)
    assert lat["delivered"] == pytest.approx(3.504, abs=1e-9)
    assert lat["arrival"] == pytest.approx(3.5046, abs=1e-9)
    assert s["episode_gap_s"] == pytest.approx(5.0 + 1.5 * 0.1, abs=1e-6)
    assert s["false_detection_decisions"] == 4 and s["false_detections"] == 2
    assert s["preictal_live_s"] == pytest.approx(90.0, abs=1e-9)
    assert s["false_detections_per_hour"] == pytest.approx(2 / 90 * 3600, rel=1e-9)
    assert s["problems"] == []
    assert parts["stimulation"]["devices"]["tms"]["fires"] == 5


def test_seizure_report_figure_and_section(tmp_path: Path) -> None:
    folder = _seizure_session(tmp_path, onset_in_journal=False, onset_in_xdf=True)
    report = build_report(folder.path)
    summary = _summary(folder)
    assert summary["seizure"]["false_detections"] == 2
    _check_png(folder.report_dir / summary["figures"]["seizure"])
    text = report.read_text()
    assert "<h2>Seizure detection</h2>" in text and "<td class=\"\">3.500</td>" in text  # detection latency


def test_seizure_section_without_an_onset_says_so(tmp_path: Path) -> None:
    folder = _seizure_session(tmp_path, onset_in_journal=False, onset_in_xdf=False)
    s = _closed_loop(folder)["seizure"]
    assert s["onsets"] == [] and s["detection_latency_s"]["decision"] is None
    assert s["false_detections_per_hour"] is None
    assert any("no seizure_onset annotation" in p for p in s["problems"])


def test_seizure_passes_of_a_looping_fast_replay_from_its_stream_description(tmp_path: Path) -> None:
    """The replay streamer's own description (2x speed, looping) places every pass's onset and start;
    the recording begins in the ictal half of pass 0, which must not count as pre-ictal."""
    from sim.recording import Annotation, Recording
    from sim.replay_stream import ReplayStreamer

    rate, n = 100.0, 6000  # 60 s file, onset at 30 s; at 2x a pass lasts 30 s of LSL time
    rec = Recording(np.zeros((n, 2)), rate, ("c3", "c4"), ("volts", "volts"), ("EEG", "EEG"), "test.tar.gz",
                    [Annotation(3000, "seizure_onset", "README")])
    streamer = ReplayStreamer(rec, f"replay-{uuid.uuid4().hex[:8]}", speed=2.0, loop=True)
    streamer.open()
    try:
        header = streamer.outlet.get_info().as_xml()
        first = float(streamer.lsl_time(0))
        j = np.arange(4500, 15600)  # from 22.5 s (pass 0, ictal) to 78 s of LSL time after the first sample
        times = np.asarray(streamer.lsl_time(j), dtype=float)
        pass1_onset = float(streamer.lsl_time(9000))
    finally:
        streamer.close()
    t0 = float(times[0])
    folder, bus, journal = _session(tmp_path, SEIZURE_PROTOCOL, "seizure-test")
    bus.publish(Event(SESSION_START, t0, None, {"protocol": "seizure-test", "timeline": [], "feedback_feature": "ll"}))
    decisions = [25.0, 35.0, 40.0, 46.2, 62.0, 75.9]  # s after the first sample
    for k in range(1, 1111):  # ll every 50 ms, live 5 s after the start
        t = t0 + 0.05 * k
        bus.publish(Event(FEATURE, t, t, {"name": "ll", "value": 100.0 if k >= 100 else math.nan, "sample_index": k}))
    for d in decisions:
        bus.publish(Event(DECISION, first + d, first + d, {"rule": 0, "action": "stimulate:tms",
                                                           "condition": "ll > 175 %", "latency_s": 0.0}))
    bus.publish(Event(SESSION_END, float(times[-1]), None, {"status": "completed", "summary": {}}))
    journal.stop()
    write_xdf(folder.xdf_path, [
        {"name": streamer.name, "type": "EEG", "fmt": "float32", "srate": rate, "labels": ["c3", "c4"],
         "times": times, "values": np.zeros((times.size, 2)), "header_xml": header},
        {"name": streamer.annotation_name, "type": "Markers", "fmt": "string", "srate": 0,
         "times": [pass1_onset], "values": ["seizure_onset"]},  # the marker of pass 1 was recorded too
    ])
    s = _closed_loop(folder)["seizure"]
    assert [o["onset_s"] for o in s["onsets"]] == pytest.approx([45.0 - 22.5, 75.0 - 22.5], abs=1e-6)
    assert [o["end_s"] for o in s["onsets"]] == pytest.approx([60.0 - 22.5, None], abs=1e-6)
    assert s["replay_speed"] == 2.0
    assert [o["decision_latency_s"] for o in s["onsets"]] == pytest.approx([1.2, 0.9], abs=1e-6)
    assert s["detection_latency_s"]["decision"] == pytest.approx(1.2, abs=1e-6)
    assert s["detection_latency_recording_s"] == pytest.approx(2.4, abs=1e-6)
    # pre-ictal: [30, 45) and [60, 75) s; 25 s is ictal (pass 0). The rule's 5 s refractory counts the
    # recording's time (the signal clock): 35 and 40 s of LSL time are 10 s of recording apart at 2x,
    # two episodes, and 62 a third
    assert s["preictal_live_s"] == pytest.approx(30.0, abs=1e-6)
    assert s["false_detection_decisions"] == 3 and s["false_detections"] == 3
    assert s["false_detections_per_hour"] == pytest.approx(360.0, rel=1e-6)
    assert s["false_detections_per_recording_hour"] == pytest.approx(180.0, rel=1e-6)
    html = seizure_section(s, {})
    assert "replayed at 2x" in html and "2.400 s" in html and "180 per hour" in html
    assert "52.500" in html  # the second onset's row (s since session start)


# ----------------------------------------------------------------------------- phase error

FS = 500.0
MU_HZ = 10.0
TARGET = math.pi  # trough
LABELS = ["C3", "FC1", "FC5", "CP1", "CP5", "Cz"]


def _phase_eeg(t: np.ndarray, t_start: float) -> np.ndarray:
    """C3 = local mu (phase 0 at t_start) + volume-conducted alpha shared by every channel; the
    Laplacian C3 - mean(FC1, FC5, CP1, CP5) leaves the mu alone."""
    mu = 20e-6 * np.cos(2 * np.pi * MU_HZ * (t - t_start))
    shared = 40e-6 * np.sin(2 * np.pi * 10.5 * (t - t_start) + 1.0) + 5e-6 * np.sin(2 * np.pi * 3.0 * t)
    x = np.repeat(shared[:, None], len(LABELS), axis=1)
    x[:, 0] += mu
    x[:, 5] += 30e-6 * np.cos(2 * np.pi * 11.0 * t)  # Cz: not part of the filter
    return x


def _pulse_times(t_start: float, errors: np.ndarray, first_cycle: int) -> np.ndarray:
    """Times where the mu phase is TARGET + error, in cycles first_cycle, first_cycle + 20, ..."""
    cycles = first_cycle + 20 * np.arange(errors.size)
    return t_start + (cycles + (TARGET + errors) / (2 * np.pi)) / MU_HZ


def test_phase_error_from_recording_and_device_arrivals(tmp_path: Path) -> None:
    folder, bus, journal = _session(tmp_path, PHASE_PROTOCOL, "mu-phase-test")
    t_start = 5123.4567
    rng = np.random.default_rng(3)
    errors = wrap_angle(0.35 + 0.25 * rng.standard_normal(12))
    arrivals = _pulse_times(t_start, errors, first_cycle=30)
    send_ahead = 0.003  # each pulse left the controller 3 ms before it reached the device
    bus.publish(Event(SESSION_START, t_start, None, {"protocol": "mu-phase-test", "timeline": []}))
    rule = "mu-phase-test rule 1 (line 11)"
    for k, a in enumerate(arrivals):
        t_sent = a - send_ahead
        bus.publish(Event(COMMAND, t_sent, t_sent - 0.004, {"device": "tms", "kind": "fire", "ok": True, "rule": rule,
                                                            "t_sent": t_sent, "latency_s": 0.004, "note": "1 pulse"}))
        if k == 4:  # one refused pulse: not scored
            bus.publish(Event(COMMAND, t_sent + 0.5, t_sent + 0.49, {"device": "tms", "kind": "fire", "ok": False,
                                                                      "rule": rule, "reason": "inhibited"}))
    late = t_start + 61.0  # after the recording ended: counted, not scored
    bus.publish(Event(COMMAND, late, late - 0.004, {"device": "tms", "kind": "fire", "ok": True, "rule": rule,
                                                    "t_sent": late, "latency_s": 0.004, "note": "1 pulse"}))
    bus.publish(Event(SESSION_END, t_start + 62.0, None, {"status": "completed", "summary": {}}))
    journal.stop()
    folder.finish("completed", {})
    t = t_start + np.arange(int(60 * FS)) / FS
    write_xdf(folder.xdf_path, [
        {"name": "PhaseEEG", "type": "EEG", "fmt": "double64", "srate": FS, "labels": LABELS,
         "times": t, "values": _phase_eeg(t, t_start)},
        {"name": "other-EEG", "type": "EEG", "fmt": "double64", "srate": FS, "labels": LABELS,  # not the input
         "times": t, "values": np.zeros((t.size, len(LABELS)))},
    ])
    # the device saw all but the last two pulses (its log ended early): those are timed by t_sent
    (folder.path / "devices").mkdir()
    dj = DeviceJournal(folder.path / "devices" / "tms.jsonl", "magstim")
    for a in arrivals[:-2]:
        dj.write("command", "fire", t=float(a), data=b"EH")
    dj.close()

    report = build_report(folder.path)
    summary = _summary(folder)
    res = summary["phase_error"]["mu"]
    expected = np.concatenate([errors[:-2], wrap_angle(errors[-2:] - 2 * np.pi * MU_HZ * send_ahead)])
    assert res["n_pulses"] == 13 and res["n_scored"] == 12 and res["outside_recording"] == 1
    assert res["timed_by"] == {"arrival": 10, "t_sent": 3}
    assert res["stream"] == "PhaseEEG" and res["signal"] == "C3 - mean(FC1, FC5, CP1, CP5)"
    assert res["target_rad"] == pytest.approx(math.pi) and res["band_hz"] == [8.0, 13.0]
    np.testing.assert_allclose(res["errors_rad"], expected, atol=2e-3)
    assert res["circ_mean_rad"] == pytest.approx(circ_mean(expected), abs=2e-3)
    assert res["circ_std_rad"] == pytest.approx(circ_std(expected), abs=2e-3)
    assert res["circ_mean_deg"] == pytest.approx(math.degrees(circ_mean(expected)), abs=0.1)
    _check_png(folder.report_dir / summary["figures"]["phase_error"])
    assert "<h2>Phase error</h2>" in report.read_text()


def test_phase_error_names_a_missing_recording(tmp_path: Path) -> None:
    folder, bus, journal = _session(tmp_path, PHASE_PROTOCOL, "mu-phase-test")
    bus.publish(Event(SESSION_START, T0, None, {"protocol": "mu-phase-test", "timeline": []}))
    bus.publish(Event(COMMAND, T0 + 1, T0 + 0.99, {"device": "tms", "kind": "fire", "ok": True, "t_sent": T0 + 1,
                                                   "rule": "mu-phase-test rule 1 (line 11)"}))
    journal.stop()
    report = build_report(folder.path)
    res = _summary(folder)["phase_error"]["mu"]
    assert "recording.xdf is absent" in res["error"]
    assert "recording.xdf is absent" in report.read_text()


def test_neurofeedback_session_has_no_stimulation_parts(tmp_path: Path) -> None:
    folder, bus, journal = _session(tmp_path, "protocol: nf\n", "nf")
    bus.publish(Event(SESSION_START, T0, None, {"protocol": "nf", "timeline": [], "feedback_feature": "tbr"}))
    for k in range(5):
        bus.publish(Event(FEATURE, T0 + k, T0 + k - 0.01, {"name": "tbr", "value": 1.0 + k, "sample_index": k}))
    journal.stop()
    report = build_report(folder.path)
    s = _summary(folder)
    assert s["stimulation"] is None and s["seizure"] is None and s["phase_error"] is None
    assert not {"stim_commands", "stim_latency", "seizure", "phase_error"} & set(s["figures"])
    assert "<h2>Stimulation</h2>" not in report.read_text()


# ----------------------------------------------------------------------------- through LabRecorder


@pytest.mark.lsl
def test_onset_and_phase_from_a_labrecorder_recording(tmp_path: Path) -> None:
    """Real LSL outlets recorded by LabRecorder: the annotation stream gives the onset, the EEG the phase."""
    pylsl = pytest.importorskip("pylsl")
    from controller.recording.xdf import XdfRecorder

    uid = uuid.uuid4().hex[:8]
    name = f"PhaseEEG-{uid}"
    folder, bus, journal = _session(tmp_path, PHASE_PROTOCOL.replace("PhaseEEG", name), "mu-phase-test")
    info = pylsl.StreamInfo(name, "EEG", len(LABELS), FS, "double64", f"eeg-{uid}")
    info.set_channel_labels(LABELS)
    eeg = pylsl.StreamOutlet(info)
    notes = pylsl.StreamOutlet(pylsl.StreamInfo(f"{name}-annotations", "Markers", 1, 0, "string", f"ann-{uid}"))
    rec = XdfRecorder()
    rec.start(folder.xdf_path, [{"name": name}, {"name": f"{name}-annotations"}])
    try:
        t_start = pylsl.local_clock()
        bus.publish(Event(SESSION_START, t_start, None, {"protocol": "mu-phase-test", "timeline": []}))
        n = int(4.0 * FS)
        t = t_start + np.arange(n) / FS
        x = _phase_eeg(t, t_start)
        errors = np.array([-0.2, 0.1, 0.3, 0.4])
        pulses = t_start + (np.array([10, 15, 20, 25]) + (TARGET + errors) / (2 * np.pi)) / MU_HZ
        onset = float(t[1000])
        for k in range(0, n, 50):  # 100 ms chunks with their own timestamps (no need to wait for them)
            eeg.push_chunk(x[k:k + 50].tolist(), t[k:k + 50].tolist())
            if k == 1000:
                notes.push_sample(["seizure_onset"], onset)
        for p in pulses:
            bus.publish(Event(COMMAND, float(p), float(p) - 0.005,
                              {"device": "tms", "kind": "fire", "ok": True, "t_sent": float(p),
                               "rule": "mu-phase-test rule 1 (line 11)", "latency_s": 0.005, "note": "1 pulse"}))
        bus.publish(Event(SESSION_END, float(t[-1]), None, {"status": "completed", "summary": {}}))
    finally:
        rec.stop()
        journal.stop()
    s = _closed_loop(folder)
    res = s["phase_error"]["mu"]
    assert res["n_scored"] == 4 and res["timed_by"] == {"arrival": 0, "t_sent": 4}
    np.testing.assert_allclose(res["errors_rad"], errors, atol=5e-3)
    onsets = s["seizure"]["onsets"] if s["seizure"] else []
    assert s["seizure"] is None or onsets  # no seizure detector in this protocol: present only with the onset
    assert [o["onset_s"] for o in onsets] == pytest.approx([onset - t_start], abs=1e-4)


def test_a_failing_part_is_reported_and_the_rest_is_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from controller.report import seizure

    folder = _seizure_session(tmp_path, onset_in_journal=True, onset_in_xdf=False)

    def broken(*args: object) -> None:
        raise RuntimeError("detector table damaged")

    monkeypatch.setattr(seizure, "seizure_metrics", broken)
    report = build_report(folder.path)
    s = _summary(folder)
    assert "detector table damaged" in s["seizure"]["error"]
    assert s["stimulation"]["devices"]["tms"]["fires"] == 5 and "stim_commands" in s["figures"]
    assert "seizure" not in s["figures"] and "detector table damaged" in report.read_text()
