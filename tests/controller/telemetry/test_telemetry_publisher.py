"""Sessions publishing telemetry to a real mosquitto (started, killed and restarted by the test).

What must hold: a session with a ``telemetry:`` section publishes its identity and state (retained),
rate-limited features and feedback, and ends with ``status: ended``; a broker that is absent at
the start, or killed mid-session and restarted, changes nothing but the telemetry (the session
completes, the journal and the XDF hold every feature) while telemetry reconnects, sends the
retained picture again and counts what it dropped; a session process killed with SIGKILL is
marked ``offline`` by its last will. Every payload received is checked against its topic's schema.
No assertion is about how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import pyxdf
from mosquitto_broker import MISSING, Broker
from stim_session_rig import wait_for

from controller import event_records as rec
from controller.events import EventBus
from controller.operator.control_client import ENV_DIR
from controller.recording.journal import read_journal
from controller.safety.site import load_site
from controller.session.runner import RunOptions, run_session
from controller.session.sim_commands import SimOptions
from controller.telemetry import topics as tp
from controller.telemetry.publisher import TelemetryPublisher

pytestmark = [pytest.mark.lsl, pytest.mark.slow, pytest.mark.skipif(bool(MISSING), reason=MISSING or "")]

REPO = Path(__file__).resolve().parents[3]

PROTOCOL = """
protocol: telemetry-nf
inputs:
  eeg: {stream: {type: EEG}, channels: [Cz, Fp1, Fp2], reference: average}
features:
  tbr: {band_ratio: {input: eeg, channels: [Cz], numerator: [4 Hz, 8 Hz], denominator: [13 Hz, 21 Hz], window: 1 s, every: 100 ms}}
thresholds:
  goal: {fixed: 2.0}
timeline: [{baseline: BASELINE}, {train: TRAIN}]
rules:
  - {during: train, when: tbr < goal, do: {feedback: reward}}
feedback: {value: tbr, range: [4.0, 1.0]}
"""

SITE = """
site: room-t
devices:
  tms:
    driver: magstim
    port: /dev/null-unused
    limits: {intensity_max: 80 %, frequency_max: 20 Hz, pulses_per_session_max: 100}
telemetry:
  broker: URL
  site: lab-t
  rates: {features: FEATURES, feedback: 5 Hz}
  queue: QUEUE
"""


@dataclass
class Received:
    at: float  # the test's monotonic clock when it arrived
    topic: str
    kind: str
    session: str
    payload: dict[str, Any]
    retain: bool


class Collector:
    """A subscriber to every neuroreflex topic on the broker, in its own asyncio thread; it reconnects
    every 0.1 s while the broker is away, so a restarted broker's retained messages reach it."""

    def __init__(self, broker: Broker, topic: str = "neuroreflex/#", **client: Any) -> None:
        self.broker, self.topic, self.client = broker, topic, client
        self.received: list[Received] = []
        self.connects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> Collector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _main(self) -> None:
        while not self._stop.is_set():
            try:
                async with aiomqtt.Client("127.0.0.1", self.broker.port, identifier=f"test-{uuid.uuid4().hex[:8]}",
                                          timeout=2, **self.client) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.connects += 1
                    messages = aiter(client.messages)
                    while not self._stop.is_set():
                        try:
                            m = await asyncio.wait_for(anext(messages), 0.1)
                        except TimeoutError:
                            continue
                        name = tp.parse_topic(str(m.topic))
                        assert name is not None, m.topic
                        payload = json.loads(m.payload)
                        tp.PAYLOADS[name.kind].model_validate(payload)  # every payload fits its schema
                        self.received.append(Received(time.monotonic(), str(m.topic), name.kind, name.session,
                                                      payload, bool(m.retain)))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    def of(self, kind: str, session: str, since: float = -1.0) -> list[Received]:
        return [r for r in list(self.received) if r.kind == kind and r.session == session and r.at > since]


@pytest.fixture
def control_dir(monkeypatch):
    d = Path(tempfile.mkdtemp(prefix="nr-tel-"))  # short: AF_UNIX paths are limited to 107 bytes
    monkeypatch.setenv(ENV_DIR, str(d))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def write_files(tmp_path: Path, broker: Broker, *, baseline: str = "3 s", train: str = "5 s",
                features: str = "2 Hz", queue: int = 1000) -> tuple[Path, Path]:
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(PROTOCOL.replace("BASELINE", baseline).replace("TRAIN", train))
    site = tmp_path / "site.yaml"
    site.write_text(SITE.replace("URL", broker.url).replace("FEATURES", features).replace("QUEUE", str(queue)))
    return protocol, site


def start_session(tmp_path: Path, protocol: Path, site: Path) -> tuple[str, threading.Thread, dict[str, Any]]:
    sid = f"tel{uuid.uuid4().hex[:6]}"
    opts = RunOptions(protocol_path=protocol, session_root=tmp_path / "sessions", sim=SimOptions(channels=8, rate=250.0),
                      site_config=site, lsl_prefix=f"nrtest-{sid}", session_id=sid, progress=None, keyboard=False,
                      build_report=False, operator="ana", participant="p01")
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = run_session(opts)
        except BaseException as exc:  # the test says what failed
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return sid, thread, outcome


def finish(thread: threading.Thread, outcome: dict[str, Any]):
    thread.join(120)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.status == "completed"
    return result


def journal_of(tmp_path: Path, sid: str) -> list[dict[str, Any]]:
    found = list((tmp_path / "sessions").glob("*/journal.jsonl"))  # one session per test folder
    return read_journal(found[0], on_truncated=lambda _: None) if found else []  # (a live journal)


def telemetry_reports(events) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["kind"] == "info" and e["data"].get("what") == "telemetry"]


def assert_nothing_lost(session_dir: Path) -> list[dict[str, Any]]:
    """The journal is whole (open to end) and the XDF's Features stream holds one sample per journaled feature."""
    events = read_journal(session_dir / "journal.jsonl")
    assert events[0]["kind"] == "session_open" and events[-1]["kind"] == "session_end"
    journaled = [e for e in events if e["kind"] == "feature"]
    streams, _ = pyxdf.load_xdf(str(session_dir / "recording.xdf"), dejitter_timestamps=False)
    (features,) = [s for s in streams if s["info"]["type"][0] == "Features"]
    assert len(journaled) > 20
    assert len(features["time_stamps"]) == len(journaled)
    return events


def test_a_session_publishes_identity_state_and_rate_limited_features(tmp_path, control_dir):
    broker = Broker.plain(tmp_path / "broker").start()
    collector = Collector(broker).start()
    try:
        wait_for(lambda: collector.connects, 20, "the test's subscriber")
        protocol, site = write_files(tmp_path, broker, features="2 Hz")
        sid, thread, outcome = start_session(tmp_path, protocol, site)
        result = finish(thread, outcome)
        wait_for(lambda: [r for r in collector.of(tp.STATUS, sid) if r.payload["status"] == "ended"], 20, "status ended")

        identity = collector.of(tp.IDENTITY, sid)[-1]
        assert identity.topic == f"neuroreflex/lab-t/{sid}/identity"
        p = identity.payload
        assert (p["protocol"], p["participant"], p["operator"], p["site"]) == ("telemetry-nf", "p01", "ana", "lab-t")
        assert p["software"].startswith("neuroreflex ") and [b["label"] for b in p["timeline"]] == ["baseline", "train"]
        states = [r.payload for r in collector.of(tp.STATE, sid)]
        assert {"running"} <= {s["state"] for s in states}
        assert [s["block"]["label"] for s in states if s["block"]][-1] == "train"
        assert states[-1]["state"] == "ended" and states[-1]["status"] == "completed"
        assert [r.payload["status"] for r in collector.of(tp.STATUS, sid)] == ["online", "ended"]

        events = assert_nothing_lost(result.session_dir)
        features = collector.of(tp.FEATURES, sid)
        span = features[-1].at - features[0].at
        assert 2 <= len(features) <= 2.0 * (span + 0.5) + 2  # 2 Hz (+ the last values flushed at the end)
        assert len(features) < len([e for e in events if e["kind"] == "feature"]) / 2
        assert all(r.retain is False for r in features)
        feedback = collector.of(tp.FEEDBACK, sid)
        assert feedback and len(feedback) <= 5.0 * (feedback[-1].at - feedback[0].at + 0.5) + 2
        assert all(0.0 <= r.payload["value"] <= 1.0 for r in feedback if r.payload["value"] is not None)

        reports = telemetry_reports(events)
        assert reports[0]["change"] == "connected" and reports[-1]["change"] == "stopped"
        assert reports[-1]["dropped"] == 0 and reports[-1]["published"] > len(features)

        late = Collector(broker).start()  # a monitor that joins after the end sees the retained picture
        try:
            wait_for(lambda: late.of(tp.STATUS, sid) and late.of(tp.STATE, sid) and late.of(tp.IDENTITY, sid), 20,
                     "the retained picture")
            assert late.of(tp.STATUS, sid)[-1].payload["status"] == "ended" and late.of(tp.STATUS, sid)[-1].retain
            assert late.of(tp.STATE, sid)[-1].payload["state"] == "ended"
        finally:
            late.stop()
    finally:
        collector.stop()
        broker.stop()


def test_broker_absent_at_start_then_started(tmp_path, control_dir):
    broker = Broker.plain(tmp_path / "broker")  # configured, not started
    protocol, site = write_files(tmp_path, broker, baseline="4 s", train="10 s")
    sid, thread, outcome = start_session(tmp_path, protocol, site)
    collector = None
    try:
        wait_for(lambda: sum(e["kind"] == "feature" for e in journal_of(tmp_path, sid)) >= 10, 60,
                 "a running session without its broker")
        broker.start()
        collector = Collector(broker).start()
        wait_for(lambda: collector.of(tp.IDENTITY, sid) and collector.of(tp.STATE, sid), 30,
                 "telemetry connecting once the broker is there")
        assert collector.of(tp.STATE, sid)[-1].payload["state"] in ("running", "ended")
        late = Collector(broker).start()  # the broker holds the picture for whoever comes next
        try:
            wait_for(lambda: late.of(tp.IDENTITY, sid) and late.of(tp.STATE, sid), 20, "the retained picture")
            assert late.of(tp.IDENTITY, sid)[0].retain and late.of(tp.STATE, sid)[0].retain
            assert late.of(tp.IDENTITY, sid)[0].payload["participant"] == "p01"
        finally:
            late.stop()
        result = finish(thread, outcome)
        events = assert_nothing_lost(result.session_dir)
        reports = telemetry_reports(events)
        assert [r["change"] for r in reports][0] == "connected" and reports[-1]["connects"] == 1
        wait_for(lambda: [r for r in collector.of(tp.STATUS, sid) if r.payload["status"] == "ended"], 20, "ended")
    finally:
        thread.join(120)
        if collector is not None:
            collector.stop()
        broker.stop()


def test_broker_killed_mid_session_and_restarted(tmp_path, control_dir):
    broker = Broker.plain(tmp_path / "broker").start()
    collector = Collector(broker).start()
    # every feature update is published and the queue is small: a broker outage must overflow it
    protocol, site = write_files(tmp_path, broker, baseline="4 s", train="12 s", features="all", queue=5)
    sid, thread, outcome = start_session(tmp_path, protocol, site)
    try:
        wait_for(lambda: len(collector.of(tp.FEATURES, sid)) >= 5, 60, "features over telemetry")
        broker.kill()
        killed_at = time.monotonic()
        n = sum(e["kind"] == "feature" for e in journal_of(tmp_path, sid))
        wait_for(lambda: sum(e["kind"] == "feature" for e in journal_of(tmp_path, sid)) >= n + 20, 60,
                 "the session going on without its broker")
        broker.start()
        wait_for(lambda: collector.of(tp.IDENTITY, sid, since=killed_at) and collector.of(tp.STATE, sid, since=killed_at)
                 and collector.of(tp.STATUS, sid, since=killed_at), 30, "the retained picture sent again")
        assert collector.of(tp.STATUS, sid, since=killed_at)[0].payload["status"] == "online"
        wait_for(lambda: collector.of(tp.FEATURES, sid, since=killed_at), 30, "features again")
        result = finish(thread, outcome)
        events = assert_nothing_lost(result.session_dir)  # the outage cost the session nothing
        reports = telemetry_reports(events)
        changes = [r["change"] for r in reports if r["change"] != "dropped"]  # (drops are reported every 10 s)
        assert changes == ["connected", "disconnected", "connected", "stopped"], changes
        last = reports[-1]
        assert last["change"] == "stopped" and last["connects"] == 2
        assert last["dropped"] > 0 and last["dropped"] == last["dropped_bus"] + last["dropped_queue"]
        print(f"\ntelemetry across a broker restart: {last['published']} published, {last['dropped']} dropped "
              f"({last['dropped_queue']} from the outbox, {last['dropped_bus']} from the bus queue)")
    finally:
        thread.join(120)
        collector.stop()
        broker.stop()


def test_last_will_marks_a_killed_session_offline(tmp_path, control_dir):
    broker = Broker.plain(tmp_path / "broker").start()
    collector = Collector(broker).start()
    protocol, site = write_files(tmp_path, broker, baseline="60 s", train="60 s")
    sid = f"will{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "run", str(protocol), "--sim", "--site", str(site),
                             "--session-id", sid, "--prefix", f"nrtest-{sid}", "--session-dir", str(tmp_path / "sessions"),
                             "--no-report", "--channels", "8", "--rate", "250"],
                            env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is not None or collector.of(tp.STATUS, sid), 60, "the session online")
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert collector.of(tp.STATUS, sid)[-1].payload["status"] == "online"
        os.kill(proc.pid, signal.SIGKILL)  # no goodbye: only the broker can tell
        proc.wait(20)
        wait_for(lambda: [r for r in collector.of(tp.STATUS, sid) if r.payload["status"] == "offline"], 30,
                 "the last will")
        late = Collector(broker).start()
        try:
            wait_for(lambda: late.of(tp.STATUS, sid), 20, "the retained status")
            assert late.of(tp.STATUS, sid)[-1].payload["status"] == "offline" and late.of(tp.STATUS, sid)[-1].retain
        finally:
            late.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(20)
        try:  # the session's simulator, orphaned by the SIGKILL, is in the session's process group
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        collector.stop()
        broker.stop()


ACL = """user room1
topic write neuroreflex/#
user monitor
topic read neuroreflex/#
"""


def test_tls_and_password_from_the_site_file(tmp_path):
    broker = Broker.secured(tmp_path / "broker", users={"room1": "pw-room1", "monitor": "pw-monitor"}, acl=ACL).start()
    certs = broker.certs
    (tmp_path / "room1.pw").write_text("pw-room1\n")
    site_text = SITE.replace("URL", broker.url).replace("FEATURES", "all").replace("QUEUE", "100")
    site_text += (f"  tls: {{ca: {certs['ca']}}}\n  username: room1\n  password_file: room1.pw\n")
    (tmp_path / "site.yaml").write_text(site_text)
    cfg = load_site(tmp_path / "site.yaml").telemetry
    assert cfg is not None and cfg.broker.tls
    monitor_tls = ssl.create_default_context(cafile=str(certs["ca"]))
    collector = Collector(broker, username="monitor", password="pw-monitor", tls_context=monitor_tls).start()
    bus = EventBus()
    journal = bus.subscribe()
    publisher = TelemetryPublisher(cfg, bus, {"session_id": "tls1", "protocol": "p"}).start()
    try:
        wait_for(lambda: collector.of(tp.STATUS, "tls1"), 30, "the session online over TLS")
        bus.publish(rec.Feature("tbr", 1.5).event(1.0))
        wait_for(lambda: collector.of(tp.FEATURES, "tls1"), 20, "a feature over TLS")
        assert collector.of(tp.FEATURES, "tls1")[0].payload["values"] == {"tbr": 1.5}
        (tmp_path / "room1.pw").write_text("wrong\n")  # read at connect time: the next connect is refused
        stats = publisher.stop()
        assert stats["ended_sent"] and stats["dropped"] == 0
        refused = TelemetryPublisher(cfg, bus, {"session_id": "tls2", "protocol": "p"}).start()
        wait_for(lambda: refused.stats()["last_error"], 20, "the broker refusing a wrong password")
        assert not refused.stats()["connected"] and refused.stats()["connects"] == 0
        print(f"\nwrong password: {refused.stats()['last_error']}")
        refused.stop()
        reports = [e.data for e in journal.drain() if e.kind == "info" and e.data.get("what") == "telemetry"]
        assert reports[-1]["connects"] == 0 and "authori" in (reports[-1]["error"] or "").lower()
    finally:
        collector.stop()
        broker.stop()
