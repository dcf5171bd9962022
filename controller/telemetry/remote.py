"""Remote commands to a running session over MQTT: pause, resume, stop, E-STOP and notes from another room.

A session subscribes to ``<prefix>/<site>/<session>/cmd/+`` and answers every request on
``<prefix>/<site>/<session>/ack``. A request is JSON::

    {"id": "7f3a...", "cmd": "pause", "args": {"reason": "participant asked"}, "by": "Dr. A. Smith"}

Who may command is the broker's decision, not ours: the last topic level is the sender's broker
user name, and the ACL (config/mosquitto/acl) lets an operator account write ``cmd/<its own name>``
only, so the name a session journals is one the broker checked (MQTT does not tell a subscriber
who published; ``by`` is the sender's own claim and is journaled beside it, never trusted alone).
A monitor account may not write there at all: the broker refuses its publish.

What a remote request can do is deliberately less than the console: ``pause``, ``resume``,
``stop``, ``estop`` and ``note``. ``arm`` is refused by design (arming stays an act at the
console, with the operator in the room), as is lifting an E-STOP; anything else is refused as
unknown. Refused, malformed or id-less requests do nothing but an acknowledgement saying why
(and, when they name a command, a journal line: an attempt to arm remotely is worth knowing).

Its own thread, its own asyncio loop and its own aiomqtt connection, separate from the
publisher's: a command must not wait behind telemetry that is queued for a slow broker (the
publisher drops its oldest messages then; a command and its acknowledgement must not be
dropped), and the session's E-STOP path must not depend on the publisher being healthy. The
hot path never sees it: the acts it calls are the same thread-safe ones the control channel
calls from its listener thread. An E-STOP is executed on the spot in the message loop; the
other commands go, in order, to one worker thread, so a slow one never delays an E-STOP behind it.

aiomqtt is imported in the thread that connects, so importing this module costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from controller import events as ev
from controller.clock import now
from controller.events import Event
from controller.telemetry.config import TelemetryConfig
from controller.telemetry.connection import client_options

log = logging.getLogger(__name__)

REMOTE_COMMANDS = ("pause", "resume", "stop", "estop", "note")
REFUSED_BY_DESIGN = {
    "arm": "refused by design: arming stays an act at the console",
    "clear_estop": "refused by design: lifting an E-STOP stays an act at the console",
}
NEEDS_ENGINE = ("pause", "resume", "stop")
MAX_PAYLOAD = 16 * 1024  # a request is a few hundred bytes; anything bigger is not one of ours
RECONNECT_S = (0.5, 10.0)  # first and longest wait between connection attempts


# ----------------------------------------------------------------------------- topics


def session_topic(cfg: TelemetryConfig, session: str, kind: str) -> str:
    """``<prefix>/<site>/<session>/<kind>``: the shape every telemetry topic has."""
    return f"{cfg.topic_prefix}/{cfg.site}/{session}/{kind}"


def cmd_topic(cfg: TelemetryConfig, session: str, user: str, site: str | None = None) -> str:
    """Where the broker user ``user`` sends a command to ``session`` (of ``site``, default the config's)."""
    return f"{cfg.topic_prefix}/{site or cfg.site}/{session}/cmd/{user}"


def ack_topic(cfg: TelemetryConfig, session: str, site: str | None = None) -> str:
    return f"{cfg.topic_prefix}/{site or cfg.site}/{session}/ack"


# ----------------------------------------------------------------------------- requests


class Refused(Exception):
    """A request that is not carried out: ``why`` is the acknowledgement's ``error``, ``rid`` the
    request id when it could be read."""

    def __init__(self, why: str, rid: str | None = None) -> None:
        super().__init__(why)
        self.why, self.rid = why, rid


@dataclass(frozen=True)
class Request:
    id: str
    cmd: str
    args: dict[str, Any] = field(default_factory=dict)
    by: str | None = None

    def to_json(self) -> bytes:
        return json.dumps({"id": self.id, "cmd": self.cmd, "args": self.args, "by": self.by}).encode()


def parse_request(payload: bytes) -> Request:
    """The request in ``payload``, or :class:`Refused` saying what is wrong with it."""
    if len(payload) > MAX_PAYLOAD:
        raise Refused(f"request too large ({len(payload)} bytes)")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Refused(f"malformed request: not JSON ({exc})", None) from None
    if not isinstance(data, dict):
        raise Refused("malformed request: expected a JSON object with id, cmd, args, by")
    rid = data.get("id")
    if not isinstance(rid, str) or not rid.strip():
        raise Refused("malformed request: no request id (\"id\": a non-empty string)")
    cmd, args, by = data.get("cmd"), data.get("args", {}), data.get("by")
    if not isinstance(cmd, str) or not cmd:
        raise Refused("malformed request: no command (\"cmd\")", rid)
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise Refused("malformed request: \"args\" must be a JSON object", rid)
    if by is not None and not isinstance(by, str):
        raise Refused("malformed request: \"by\" must be a string", rid)
    return Request(rid, cmd, args, by)


class Acts(Protocol):
    """What this module needs of controller.operator.acts.OperatorActs (a sibling layer it may not import)."""

    engine: Any
    bus: Any

    def pause(self, via: str, by: str | None = None, reason: str | None = None) -> bool: ...
    def resume(self, via: str, by: str | None = None, reason: str | None = None) -> bool: ...
    def stop(self, via: str, by: str | None = None, reason: str | None = None) -> None: ...
    def note(self, text: str, via: str, by: str | None = None) -> dict[str, Any]: ...
    def estop(self, reason: str, via: str = "signal", by: str | None = None) -> dict[str, Any]: ...


def via_text(request: Request | None, user: str | None) -> str:
    """How the journal's ``via`` names a remote request: the sender's claim and the broker's user."""
    return f"remote ({(request.by if request else None) or '?'}, mqtt user {user or 'unknown'})"


def check(request: Request) -> None:
    """:class:`Refused` unless ``request`` is a command a remote sender may give."""
    if request.cmd in REFUSED_BY_DESIGN:
        raise Refused(REFUSED_BY_DESIGN[request.cmd], request.id)
    if request.cmd not in REMOTE_COMMANDS:
        raise Refused(f"unknown command {request.cmd!r}: a remote sender may {', '.join(REMOTE_COMMANDS)}",
                      request.id)
    if request.cmd == "note" and not str(request.args.get("text") or "").strip():
        raise Refused("a note needs its text (args: {\"text\": ...})", request.id)


def execute(acts: Acts, request: Request, user: str | None) -> dict[str, Any]:
    """Carry out a checked request through the session's operator acts; its result for the acknowledgement."""
    via, by = via_text(request, user), user or request.by
    reason = request.args.get("reason")
    reason = str(reason) if reason is not None else None
    if request.cmd == "estop":
        return acts.estop(f"{reason or 'E-STOP'} (remote, {user or request.by or 'unknown'})", via=via, by=by)
    if request.cmd in NEEDS_ENGINE and acts.engine is None:
        raise Refused("the session has not started yet", request.id)
    if request.cmd == "pause":
        return {"done": acts.pause(via, by, reason)}
    if request.cmd == "resume":
        return {"done": acts.resume(via, by, reason)}
    if request.cmd == "stop":
        acts.stop(via, by, reason)
        return {"done": True}
    return acts.note(str(request.args["text"]), via, by)


def journal_refusal(acts: Acts, request: Request | None, user: str | None, why: str) -> None:
    """A refused request that named a command goes to the journal (who tried what, and why not)."""
    if request is None:
        return
    acts.bus.publish(Event(ev.OPERATOR, now(), None, {
        "act": request.cmd, "by": user or request.by, "via": via_text(request, user), "reason": None,
        "done": False, "refused": why, "request": request.id}))


def ack_payload(rid: str | None, cmd: str | None, ok: bool, *, result: Any = None, error: str | None = None,
                user: str | None = None, session: str = "") -> bytes:
    out: dict[str, Any] = {"id": rid, "cmd": cmd, "ok": ok, "session": session, "user": user,
                           "t": datetime.now(UTC).isoformat(timespec="milliseconds")}
    if ok:
        out["result"] = result
    else:
        out["error"] = error
    return json.dumps(out, default=str).encode()


# ----------------------------------------------------------------------------- the subscriber


class RemoteCommands:
    """A running session's command subscriber (see the module docstring).

        remote = RemoteCommands(site.telemetry, session_id, acts).start()
        ...
        remote.close()

    ``ready`` is set once the broker has granted the subscription; ``handled`` counts the
    requests acknowledged; ``on_error`` (default: the log) hears connection trouble once per
    change, the session goes on without it either way.
    """

    def __init__(self, cfg: TelemetryConfig, session_id: str, acts: Acts,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.session_id = session_id
        self.acts = acts
        self.on_error = on_error or (lambda text: log.warning("remote commands: %s", text))
        self.ready = threading.Event()
        self.handled = 0
        self.refused = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="remote-cmd")
        self._last_error: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # acknowledgements on their way (a task needs a reference)

    @property
    def topic(self) -> str:
        return session_topic(self.cfg, self.session_id, "cmd/+")

    def start(self) -> RemoteCommands:
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name="telemetry-remote", daemon=True)
        self._thread.start()
        started.wait(5)
        return self

    def close(self, timeout: float = 5.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
        self._worker.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ the thread
    def _run(self, started: threading.Event) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            started.set()
            stopper = asyncio.create_task(self._stop.wait())
            runner = asyncio.create_task(self._connect_forever())
            await asyncio.wait({stopper, runner}, return_when=asyncio.FIRST_COMPLETED)
            for task in (stopper, runner):
                task.cancel()
            await asyncio.gather(stopper, runner, return_exceptions=True)

        asyncio.run(main())

    def _error(self, text: str | None) -> None:
        if text != self._last_error and text is not None:
            self.on_error(text)
        self._last_error = text

    async def _connect_forever(self) -> None:
        import aiomqtt

        wait = RECONNECT_S[0]
        while True:
            try:
                options = client_options(self.cfg, client_id=f"neuroreflex-{self.cfg.site}-{self.session_id}-cmd")
                async with aiomqtt.Client(**options, protocol=aiomqtt.ProtocolVersion.V5) as client:
                    codes = await client.subscribe(self.topic, qos=1)
                    if any(getattr(c, "is_failure", False) for c in codes or []):
                        raise PermissionError(f"the broker refuses the subscription to {self.topic}: {codes[0]}")
                    self._error(None)
                    self.ready.set()
                    wait = RECONNECT_S[0]
                    async for message in client.messages:
                        await self._on_message(client, message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # aiomqtt.MqttError, TelemetryConnectionError, PermissionError, OSError
                self.ready.clear()
                self._error(f"{type(exc).__name__}: {exc} (retrying in {wait:g} s)")
            await asyncio.sleep(wait)
            wait = min(2 * wait, RECONNECT_S[1])

    async def _on_message(self, client: Any, message: Any) -> None:
        user = str(message.topic).rsplit("/", 1)[-1] or None
        try:
            request = parse_request(bytes(message.payload or b""))
        except Refused as exc:  # nothing to journal: no command could be read
            await self._refuse(client, None, exc.rid, user, exc.why)
            return
        try:
            if message.retain:
                raise Refused("a retained command is never carried out (commands are sent, not retained)", request.id)
            check(request)
        except Refused as exc:
            await self._refuse(client, request, request.id, user, exc.why)
            return
        if request.cmd == "estop":  # at once, on this thread: nothing queued may come first
            await self._answer(client, request, user, lambda: execute(self.acts, request, user))
            return
        future = asyncio.get_running_loop().run_in_executor(self._worker, execute, self.acts, request, user)
        task = asyncio.create_task(self._answer(client, request, user, lambda: future))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, client: Any, request: Request, user: str | None, run: Callable[[], Any]) -> None:
        try:
            result = run()
            if asyncio.isfuture(result):
                result = await result
        except Refused as exc:
            await self._refuse(client, request, request.id, user, exc.why)
            return
        except Exception as exc:  # the act itself failed (e.g. a note without text): say so, do not die
            await self._refuse(client, request, request.id, user, f"{type(exc).__name__}: {exc}", journal=False)
            return
        self.handled += 1
        await self._publish_ack(client, ack_payload(request.id, request.cmd, True, result=result, user=user,
                                                    session=self.session_id))

    async def _refuse(self, client: Any, request: Request | None, rid: str | None, user: str | None, why: str,
                      journal: bool = True) -> None:
        self.refused += 1
        if journal:
            journal_refusal(self.acts, request, user, why)
        await self._publish_ack(client, ack_payload(rid, request.cmd if request else None, False, error=why,
                                                    user=user, session=self.session_id))

    async def _publish_ack(self, client: Any, payload: bytes) -> None:
        try:
            await client.publish(session_topic(self.cfg, self.session_id, "ack"), payload, qos=1, timeout=5)
        except Exception as exc:  # the command was carried out; only its acknowledgement is lost
            self._error(f"acknowledgement not published: {type(exc).__name__}: {exc}")

