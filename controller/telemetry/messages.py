"""From the event bus's events to telemetry messages: which topic, which payload, retained or not,
and the rate limits of the high-rate topics.

Pure (no network, no thread, the clocks passed in), so what a session publishes is tested without
a broker and the publisher (:mod:`controller.telemetry.publisher`) only moves bytes. It also keeps
the session's current retained picture (identity, state, devices, interlocks), which the publisher
sends again after every reconnect: a monitor that joins, or a broker that restarted empty, gets the
whole picture at once.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller import events as ev
from controller.events import Event
from controller.telemetry import topics as tp

# the event kinds telemetry listens to (info and operator events are the journal's; the publisher's own
# reports go out as info events and must not come back to it)
KINDS = frozenset({
    ev.SESSION_START, ev.SESSION_END, ev.STATE, ev.BLOCK_START, ev.BLOCK_END, ev.THRESHOLD, ev.FEATURE,
    ev.DECISION, ev.FEEDBACK, ev.INPUT, ev.FAULT, ev.SAFETY, ev.DELIVERY, ev.SHORT_TRAIN, ev.VOLUME, ev.COMMAND,
})
INTERLOCK_WHATS = frozenset({"inhibited", "inhibit", "cleared", "estop", "estop_done", "estop_cleared"})


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message: the topic's last level, the JSON bytes, QoS and retain flag."""

    kind: str
    payload: bytes
    qos: int
    retain: bool


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: a value without a number is null (as the journal's readers take it)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def encode(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(_clean(payload), separators=(",", ":"), allow_nan=False, default=str).encode("utf-8")


class _Limiter:
    """At most one message per ``1/rate_hz`` s (None: every update): in any window of T seconds,
    at most rate x T + 1 messages, the newest values always sent once the interval has passed."""

    def __init__(self, rate_hz: float | None) -> None:
        self.interval = 0.0 if rate_hz is None else 1.0 / rate_hz
        self.last = -math.inf
        self.pending = False

    def ready(self, now: float) -> bool:
        return self.pending and now - self.last >= self.interval

    def sent(self, now: float) -> None:
        self.last, self.pending = now, False


class SessionTelemetry:
    """The messages one session publishes, built from its events.

    ``identity``: the runner's session identity (``session_id``, ``protocol``, ``participant``,
    ``operator``, ``software``, ``protocol_sha256``, ``simulated``, and optionally ``started``
    (Unix time) and ``devices`` (the protocol's stimulators)). ``mono`` paces the rate limits,
    ``wall`` stamps the state; both are injectable for tests.
    """

    def __init__(self, identity: Mapping[str, Any], site: str, *, features_hz: float | None, feedback_hz: float | None,
                 mono: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.session = str(identity["session_id"])
        self.site = site
        self._mono, self._wall = mono, wall
        self._seq = 0
        self._identity: dict[str, Any] = {
            "version": tp.PROTOCOL_VERSION, "session": self.session, "site": site,
            "protocol": identity.get("protocol"), "protocol_sha256": identity.get("protocol_sha256"),
            "participant": identity.get("participant"), "operator": identity.get("operator"),
            "started": float(identity.get("started") or wall()), "software": identity.get("software"),
            "simulated": bool(identity.get("simulated", False)), "devices": list(identity.get("devices") or []),
            "feedback_feature": None, "timeline": [],
        }
        self._state: dict[str, Any] = {"state": "starting", "reason": None, "block": None, "block_started": None,
                                       "status": None}
        self._state_t: tuple[float | None, float | None] = (None, None)
        self._stimulators: dict[str, dict[str, Any]] = {d: {"armed": False} for d in self._identity["devices"]}
        self._inputs: dict[str, dict[str, Any]] = {}
        self._inhibited: dict[str, str] = {}
        self._estop = False
        self._last_interlock: dict[str, Any] | None = None
        self._features: dict[str, float | None] = {}
        self._features_meta: dict[str, Any] = {}
        self._feedback: dict[str, Any] | None = None
        self._feature_limit = _Limiter(features_hz)
        self._feedback_limit = _Limiter(feedback_hz)
        self._retained: dict[str, Message] = {}
        self._remember(self._identity_message())
        self._remember(self._state_message())
        self._remember(self._devices_message(None, None))
        self._remember(self._interlocks_message(None, None))

    # ------------------------------------------------------------------ what the publisher asks

    def retained(self) -> list[Message]:
        """The current retained picture (identity, state, devices, interlocks), to send after a (re)connect.
        The state's ``time_left_s`` is recomputed now."""
        self._remember(self._state_message())
        return [self._retained[k] for k in (tp.IDENTITY, tp.STATE, tp.DEVICES, tp.INTERLOCKS)]

    def on_events(self, events: Iterable[Event]) -> list[Message]:
        """The messages these events make now (rate-limited kinds only when their interval has passed)."""
        out: list[Message] = []
        for event in events:
            out += self.on_event(event)
        out += self.due()
        return out

    def on_event(self, event: Event) -> list[Message]:
        handler = _HANDLERS.get(event.kind)
        return handler(self, event) if handler is not None else []

    def due(self) -> list[Message]:
        """Rate-limited values whose interval has passed (call it every so often: the newest value of a
        feature that stopped changing still goes out)."""
        now = self._mono()
        out = []
        if self._feature_limit.ready(now):
            self._feature_limit.sent(now)
            out.append(self._message(tp.FEATURES, {**self._features_meta, "values": dict(self._features)}))
            self._features.clear()
        if self._feedback_limit.ready(now) and self._feedback is not None:
            self._feedback_limit.sent(now)
            out.append(self._message(tp.FEEDBACK, self._feedback))
        return out

    def status(self, status: str) -> Message:
        """The retained ``status`` message (online / ended; offline is the last will's)."""
        return Message(tp.STATUS, encode({"status": status, "session": self.session, "site": self.site}), 1, True)

    # ------------------------------------------------------------------ building

    def _message(self, kind: str, body: Mapping[str, Any], t: float | None = None, t_source: float | None = None,
                 ) -> Message:
        self._seq += 1
        payload = {"session": self.session, "seq": self._seq, "t": body.get("t", t),
                   "t_source": body.get("t_source", t_source), **body}
        return Message(kind, encode(payload), tp.qos(kind), kind in tp.RETAINED)

    def _remember(self, message: Message) -> Message:
        self._retained[message.kind] = message
        return message

    def _identity_message(self) -> Message:
        return Message(tp.IDENTITY, encode(self._identity), 1, True)

    def _state_message(self) -> Message:
        wall = self._wall()
        block, started = self._state["block"], self._state["block_started"]
        left = None
        if block is not None and block.get("duration_s") is not None and started is not None:
            left = max(0.0, block["duration_s"] - (wall - started))
        if self._state["state"] == "ended":
            left = None
        t, t_source = self._state_t
        return self._message(tp.STATE, {**self._state, "time_left_s": left, "wall": wall}, t, t_source)

    def _devices_message(self, t: float | None, t_source: float | None) -> Message:
        return self._message(tp.DEVICES, {"stimulators": self._stimulators, "inputs": self._inputs}, t, t_source)

    def _interlocks_message(self, t: float | None, t_source: float | None) -> Message:
        return self._message(tp.INTERLOCKS, {"inhibited": self._inhibited, "estop": self._estop,
                                             "last": self._last_interlock}, t, t_source)

    # ------------------------------------------------------------------ per event kind

    def _session_start(self, e: Event) -> list[Message]:
        d = e.data
        if d.get("feedback_feature") is not None:
            self._identity["feedback_feature"] = d["feedback_feature"]
        self._identity["timeline"] = [b for b in d.get("timeline") or [] if isinstance(b, Mapping)]
        return [self._remember(self._identity_message())]

    def _session_end(self, e: Event) -> list[Message]:
        self._state.update(state="ended", status=e.data.get("status"))
        self._state_t = (e.t, e.t_source)
        return self.due_all() + [self._remember(self._state_message())]

    def due_all(self) -> list[Message]:
        """Every pending rate-limited value, now (the session ends: the last values are not held back)."""
        self._feature_limit.last = self._feedback_limit.last = -math.inf
        return self.due()

    def _engine_state(self, e: Event) -> list[Message]:
        self._state.update(state=e.data.get("state"), reason=e.data.get("reason"))
        self._state_t = (e.t, e.t_source)
        return [self._remember(self._state_message())]

    def _block_start(self, e: Event) -> list[Message]:
        d = e.data
        self._state["block"] = {"index": d.get("index"), "label": d.get("label"), "cycle": d.get("cycle"),
                                "duration_s": d.get("duration_s")}
        self._state["block_started"] = self._wall()
        self._state_t = (e.t, e.t_source)
        return [self._remember(self._state_message())]

    def _feature(self, e: Event) -> list[Message]:
        d = e.data
        self._features[str(d.get("name"))] = d.get("value")
        self._features_meta = {"t": e.t, "t_source": e.t_source, "block_index": d.get("block_index")}
        self._feature_limit.pending = True
        return self.due() if self._feature_limit.interval == 0.0 else []  # `all`: every update, as it comes

    def _feedback_event(self, e: Event) -> list[Message]:
        self._feedback = {"t": e.t, "t_source": e.t_source, **e.data}
        self._feedback_limit.pending = True
        return self.due() if self._feedback_limit.interval == 0.0 else []

    def _input(self, e: Event) -> list[Message]:
        d = e.data
        self._inputs[str(d.get("input"))] = {"status": d.get("status"), "detail": d.get("detail") or ""}
        return [self._remember(self._devices_message(e.t, e.t_source))]

    def _command(self, e: Event) -> list[Message]:
        d = e.data
        device, command, ok = d.get("device"), d.get("kind"), bool(d.get("ok"))
        out = [self._message(tp.STIM, {**_without(d, "kind", "ok"), "event": "command", "device": device,
                                        "command": command, "allowed": ok, "reason": d.get("reason") or None},
                             e.t, e.t_source)]
        if command in ("arm", "disarm") and isinstance(device, str):
            state = self._stimulators.setdefault(device, {"armed": False})
            if ok:
                state["armed"] = command == "arm"
            state.update(last_command=command, ok=ok, reason=d.get("reason") or None)
            out.append(self._remember(self._devices_message(e.t, e.t_source)))
        return out

    def _safety(self, e: Event) -> list[Message]:
        d = e.data
        what = d.get("what")
        if what in ("allowed", "refused"):
            body = {**_without(d, "what", "verdict"), "event": "verdict", "allowed": what == "allowed",
                    "reason": d.get("verdict") or None}
            return [self._message(tp.STIM, body, e.t, e.t_source)]
        if what not in INTERLOCK_WHATS:
            return [self._message(tp.STIM, {**_without(d, "what"), "event": str(what)}, e.t, e.t_source)]
        out: list[Message] = []
        if what in ("inhibited", "inhibit"):
            self._inhibited[str(d.get("source"))] = str(d.get("reason") or "")
        elif what == "cleared":
            self._inhibited.pop(str(d.get("source")), None)
        elif what in ("estop", "estop_done"):
            self._estop = True
            for state in self._stimulators.values():
                state.update(armed=False, last_command="estop", ok=True, reason=d.get("reason") or None)
            out.append(self._remember(self._devices_message(e.t, e.t_source)))
        elif what == "estop_cleared":
            self._estop = False
        self._last_interlock = dict(d)
        out.append(self._remember(self._interlocks_message(e.t, e.t_source)))
        return out

    def _delivery(self, e: Event) -> list[Message]:
        return [self._message(tp.STIM, {**e.data, "event": e.kind}, e.t, e.t_source)]


def _without(data: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in keys}


def _forward(kind: str) -> Callable[[SessionTelemetry, Event], list[Message]]:
    """Events whose data is the payload as it is (decision, threshold, volume QC, fault)."""

    def handler(self: SessionTelemetry, e: Event) -> list[Message]:
        return [self._message(kind, e.data, e.t, e.t_source)]

    return handler


_HANDLERS: dict[str, Callable[[SessionTelemetry, Event], list[Message]]] = {
    ev.SESSION_START: SessionTelemetry._session_start,
    ev.SESSION_END: SessionTelemetry._session_end,
    ev.STATE: SessionTelemetry._engine_state,
    ev.BLOCK_START: SessionTelemetry._block_start,
    ev.FEATURE: SessionTelemetry._feature,
    ev.FEEDBACK: SessionTelemetry._feedback_event,
    ev.DECISION: _forward(tp.DECISION),
    ev.THRESHOLD: _forward(tp.THRESHOLD),
    ev.VOLUME: _forward(tp.FMRI_QC),
    ev.FAULT: _forward(tp.FAULT),
    ev.INPUT: SessionTelemetry._input,
    ev.COMMAND: SessionTelemetry._command,
    ev.SAFETY: SessionTelemetry._safety,
    ev.DELIVERY: SessionTelemetry._delivery,
    ev.SHORT_TRAIN: SessionTelemetry._delivery,
}
