"""The session's telemetry publisher: an asyncio thread (aiomqtt) fed by the event bus.

Off the hot path by construction: the loop's ``bus.publish`` only puts the event in this
subscriber's bounded queue (controller/events.py), which drops its own oldest when full. Here,
in a daemon thread with its own event loop, a pump turns events into messages
(:mod:`controller.telemetry.messages`) into a bounded outbox, and a sender publishes them. When
the broker is slow or away the outbox fills and loses its oldest (counted); the loop never
waits. After every (re)connect the retained picture (identity, state, devices, interlocks) is
sent again, since the broker may have restarted empty. Reconnects back off from 0.5 s doubling
to 10 s. Drops and connection changes are journaled as ``info`` events (what: telemetry).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import aiomqtt

from controller import event_records as rec
from controller import events as ev
from controller.clock import now
from controller.events import Event, EventBus, Subscription
from controller.telemetry import topics as tp
from controller.telemetry.config import TelemetryConfig
from controller.telemetry.connection import TelemetryConnectionError, client_options
from controller.telemetry.messages import KINDS, Message, SessionTelemetry, encode

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
PUMP_INTERVAL_S = 0.01  # how often the bus queue is drained: telemetry latency, not the loop's
REPORT_EVERY_S = 10.0  # a journal report at most this often, when something changed
FLUSH_AT_STOP_S = 2.0  # what is still queued at the end gets this long to go out
PUBLISH_TIMEOUT_S = 2.0  # a QoS 1 message unacknowledged this long: the connection is taken as lost
CONNECT_TIMEOUT_S = 5.0
KEEPALIVE_S = 5  # a broker that stopped answering is noticed within ~1.5 x this


@dataclass(frozen=True, slots=True)
class TelemetryReport(rec.Record):
    """The publisher's own account in the journal: connected or not, sent, dropped (and why), errors."""

    KIND: ClassVar[str] = ev.INFO
    WHAT: ClassVar[str] = "telemetry"
    change: str  # connected, disconnected, dropped, stopped
    broker: str
    connected: bool
    published: int
    dropped: int
    dropped_bus: int
    dropped_queue: int
    connects: int
    error: str | None = None

    def to_data(self) -> dict[str, Any]:
        return {"what": self.WHAT, "change": self.change, "broker": self.broker, "connected": self.connected,
                "published": self.published, "dropped": self.dropped, "dropped_bus": self.dropped_bus,
                "dropped_queue": self.dropped_queue, "connects": self.connects, "error": self.error}


class TelemetryPublisher:
    """Publishes one session's events to the broker of ``cfg``; ``start()``, then ``stop()`` at the end."""

    def __init__(self, cfg: TelemetryConfig, bus: EventBus, session_identity: Mapping[str, Any], *,
                 report_every_s: float = REPORT_EVERY_S) -> None:
        self.cfg = cfg
        self.bus = bus
        self.messages = SessionTelemetry(session_identity, cfg.site, features_hz=cfg.features_hz,
                                         feedback_hz=cfg.feedback_hz)
        self.session = self.messages.session
        self.client_id = f"neuroreflex-{cfg.site}-{self.session}"
        self.report_every_s = report_every_s
        self._sub: Subscription | None = None
        self._outbox: deque[Message] = deque()
        self._resend_retained = False
        self._published = 0
        self._dropped_queue = 0
        self._connects = 0
        self._connected = False
        self._ended_sent = False
        self._last_error: str | None = None
        self._config_fault_said = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def topic(self, kind: str) -> str:
        return tp.topic(self.cfg.topic_prefix, self.cfg.site, self.session, kind)

    # ------------------------------------------------------------------ the session's side

    def start(self) -> TelemetryPublisher:
        """Subscribe to the bus (from now on nothing is missed) and start the thread; returns at once."""
        self._sub = self.bus.subscribe(set(KINDS), maxsize=self.cfg.queue)
        self._thread = threading.Thread(target=self._run, name=f"telemetry-{self.session}", daemon=True)
        self._thread.start()
        return self

    def stop(self, status: str | None = None, timeout_s: float = FLUSH_AT_STOP_S + 3.0) -> dict[str, Any]:
        """Send what is queued (within ``FLUSH_AT_STOP_S``), ``status: ended`` when connected, disconnect,
        and join the thread within ``timeout_s``. Returns :meth:`stats`; journals a last report.

        ``status`` (completed / stopped / error): the session's end as the state topic will say it, for a
        session that stops telemetry before it journals its own end (so ``session_end`` stays the journal's
        last line and can carry these stats)."""
        if status is not None and self._sub is not None:
            self._sub.offer(Event(ev.SESSION_END, now(), None, {"status": status}))  # in order, after the rest
        self._stopping.set()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop has already closed
                pass
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._sub is not None:
            self.bus.unsubscribe(self._sub)
        stats = self.stats()
        self._report("stopped")
        return stats

    def stats(self) -> dict[str, Any]:
        """What telemetry did: connected now, messages published, dropped (bus queue + outbox), queued."""
        dropped_bus = self._sub.dropped if self._sub is not None else 0
        return {"broker": self.cfg.broker.url, "connected": self._connected, "published": self._published,
                "dropped": dropped_bus + self._dropped_queue, "dropped_bus": dropped_bus,
                "dropped_queue": self._dropped_queue, "queued": len(self._outbox), "connects": self._connects,
                "ended_sent": self._ended_sent, "last_error": self._last_error,
                "alive": self._thread is not None and self._thread.is_alive()}

    def _report(self, change: str) -> None:
        s = self.stats()
        self.bus.publish(TelemetryReport(change, s["broker"], s["connected"], s["published"], s["dropped"],
                                         s["dropped_bus"], s["dropped_queue"], s["connects"],
                                         self._last_error).event(now()))

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # telemetry fails alone; the session goes on
            self._last_error = f"{type(exc).__name__}: {exc}"
            self.bus.publish(rec.Fault("telemetry", self._last_error).event(now()))
        finally:
            self._connected = False

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._stopping.is_set():
            self._wake.set()
        pump = asyncio.create_task(self._pump())
        try:
            await self._connect_loop()
        finally:
            pump.cancel()
            try:
                await pump
            except asyncio.CancelledError:
                pass

    def _enqueue(self, messages: list[Message]) -> None:
        for message in messages:
            self._outbox.append(message)
        while len(self._outbox) > self.cfg.queue:
            lost = self._outbox.popleft()
            self._dropped_queue += 1
            if lost.retain:
                self._resend_retained = True  # the retained picture goes out again instead
        if messages and self._wake is not None:
            self._wake.set()

    def _take_events(self) -> None:
        assert self._sub is not None
        self._enqueue(self.messages.on_events(self._sub.drain()))

    async def _pump(self) -> None:
        """Bus queue -> messages -> outbox, every PUMP_INTERVAL_S; a journal report when drops grew."""
        reported_drops, last_report = 0, time.monotonic()
        while True:
            self._take_events()
            t = time.monotonic()
            if t - last_report >= self.report_every_s:
                dropped = self.stats()["dropped"]
                if dropped != reported_drops:
                    reported_drops, last_report = dropped, t
                    self._report("dropped")
            await asyncio.sleep(PUMP_INTERVAL_S)

    async def _connect_loop(self) -> None:
        backoff = BACKOFF_FIRST_S
        assert self._wake is not None
        while not self._stopping.is_set():
            will = aiomqtt.Will(self.topic(tp.STATUS), encode({"status": tp.OFFLINE, "session": self.session,
                                                               "site": self.cfg.site}), qos=1, retain=True)
            try:
                options = client_options(self.cfg, client_id=self.client_id, will=will)
                async with aiomqtt.Client(**options, keepalive=KEEPALIVE_S, timeout=CONNECT_TIMEOUT_S) as client:
                    self._connected = True
                    self._connects += 1
                    self._last_error = None
                    backoff = BACKOFF_FIRST_S
                    self._report("connected")
                    await self._send(client)
                    return  # stopping: sent what could be sent, then a clean disconnect (no last will)
            except TelemetryConnectionError as exc:
                self._last_error = str(exc)
                if not self._config_fault_said:  # a configuration problem: said once, retried quietly
                    self._config_fault_said = True
                    self.bus.publish(rec.Fault("telemetry", str(exc)).event(now()))
            except (aiomqtt.MqttError, OSError) as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"
            was_connected, self._connected = self._connected, False
            if was_connected:
                self._report("disconnected")
            if self._stopping.is_set():
                return
            try:  # wait before the next attempt; stop() cuts the wait short
                self._wake.clear()
                await asyncio.wait_for(self._wait_for_stop(), backoff)
            except TimeoutError:
                pass
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _wait_for_stop(self) -> None:
        assert self._wake is not None
        while not self._stopping.is_set():
            await self._wake.wait()
            self._wake.clear()

    async def _publish(self, client: aiomqtt.Client, message: Message) -> None:
        await client.publish(self.topic(message.kind), message.payload, qos=message.qos, retain=message.retain,
                             timeout=PUBLISH_TIMEOUT_S)
        self._published += 1

    async def _send(self, client: aiomqtt.Client) -> None:
        """Status online, the retained picture, then the outbox in order until stopping."""
        assert self._wake is not None
        self._outbox = deque(m for m in self._outbox if not m.retain)  # the picture below supersedes them
        await self._publish(client, self.messages.status(tp.ONLINE))
        await self._send_retained(client)
        deadline: float | None = None
        while True:
            if self._resend_retained:
                await self._send_retained(client)
            if self._stopping.is_set() and deadline is None:
                self._take_events()  # the last events (session end), the last held values
                self._enqueue(self.messages.due_all())
                deadline = time.monotonic() + FLUSH_AT_STOP_S
            if not self._outbox or (deadline is not None and time.monotonic() > deadline):
                if deadline is not None:
                    break
                self._wake.clear()
                await self._wake.wait()
                continue
            message = self._outbox[0]
            await self._publish(client, message)
            if self._outbox and self._outbox[0] is message:  # (the pump may have dropped it meanwhile)
                self._outbox.popleft()
        await self._publish(client, self.messages.status(tp.ENDED))
        self._ended_sent = True

    async def _send_retained(self, client: aiomqtt.Client) -> None:
        self._resend_retained = False
        for message in self.messages.retained():
            await self._publish(client, message)
