"""``neuroreflex monitor``: every session on a broker, from every site, in one terminal table.

Why a terminal table: the supervising room needs it on whatever screen is there (an SSH session,
a wall display), with nothing to install beyond the controller; plain text redrawn in place, no
curses. It subscribes to ``<prefix>/+/+/+`` (every site, every session, every kind; commands sit
one level deeper, under ``cmd/<user>``, and are not shown) and keeps one row per session from the
retained topics (identity, state, devices, interlocks, status) and the live ones (feedback, fault,
fmri_qc, ack). A session that faults, goes offline (its last will) or is E-STOPped gets an
``ALERT`` line at once; ``--once SECONDS`` prints the table after that long and exits (scripts, tests).

``--send SESSION CMD`` sends one remote command (controller/telemetry/remote.py) on
``cmd/<username>`` with a fresh request id, shows the broker's verdict on the publish (MQTT v5
PUBACK: a monitor account is "not authorized") and waits for the session's acknowledgement; exit 1
when refused or when none comes.

Importing this module loads argparse only: the configuration and aiomqtt are imported when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.telemetry.config import TelemetryConfig

KINDS_SHOWN = ("status", "identity", "state", "feedback", "devices", "interlocks", "fault", "fmri_qc", "ack")
REDRAW_S = 0.5  # a terminal is redrawn at most this often
PIPE_TABLE_S = 10.0  # without a terminal, the table is printed this often (when something changed)
ALERTS_KEPT = 8  # alert lines kept under a redrawn table
NO_MATCHING_SUBSCRIBERS = 0x10  # MQTT v5 PUBACK: accepted, but nobody subscribes to the topic


# ----------------------------------------------------------------------------- the table


@dataclass
class Row:
    """One session as the monitor knows it (from the last message of each kind)."""

    site: str
    session: str
    status: str = "?"
    protocol: str = ""
    state: str = ""
    block: str = ""
    feedback: float | None = None
    signal: str = ""
    armed: list[str] = field(default_factory=list)
    interlocks: dict[str, str] = field(default_factory=dict)
    estop: bool = False
    fault: str = ""
    seen: float = 0.0  # Unix time of the last message


def _stamp() -> str:
    return datetime.now().strftime("%H:%M:%S")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass
class Board:
    """Every session seen under ``prefix``; ``update`` returns the alert and event lines a message causes."""

    prefix: str = "neuroreflex"
    rows: dict[tuple[str, str], Row] = field(default_factory=dict)
    changed: bool = False

    def update(self, topic: str, payload: bytes, retained: bool = False) -> list[str]:
        head = self.prefix + "/"
        parts = topic[len(head):].split("/") if topic.startswith(head) else []
        if len(parts) != 3 or not all(parts) or parts[2] not in KINDS_SHOWN:
            return []
        site, session, kind = parts
        try:
            data = json.loads(payload.decode("utf-8")) if payload else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            data = payload.decode("utf-8", "replace").strip()  # e.g. a bare "offline" status
        row = self.rows.get((site, session))
        if row is None:
            if kind == "ack":
                return []
            if payload == b"":  # a retained topic being cleared for a session never seen
                return []
            row = self.rows[(site, session)] = Row(site, session)
        row.seen = time.time()
        self.changed = True
        reader: Callable[[Row, Any, bool], list[str]] = getattr(self, f"_{kind}")
        return reader(row, data, retained)

    # one reader per kind; each tolerates fields it does not know and missing ones
    def _status(self, row: Row, data: Any, retained: bool) -> list[str]:
        status = data.get("status") if isinstance(data, dict) else data
        before, row.status = row.status, _text(status) or "?"
        if row.status == "offline" and before != "offline" and not retained:
            return [f"ALERT {_stamp()} {row.site}/{row.session} offline: its publisher vanished (last will)"]
        return []

    def _identity(self, row: Row, data: Any, retained: bool) -> list[str]:
        if isinstance(data, dict):
            row.protocol = _text(data.get("protocol"))
        return []

    def _state(self, row: Row, data: Any, retained: bool) -> list[str]:
        if not isinstance(data, dict):
            return []
        row.state = _text(data.get("status") if data.get("state") == "ended" and data.get("status") else
                          data.get("state"))
        block = data.get("block")
        row.block = _text(block.get("label") if isinstance(block, dict) else block)
        return []

    def _feedback(self, row: Row, data: Any, retained: bool) -> list[str]:
        value = data.get("value") if isinstance(data, dict) else data
        row.feedback = value if isinstance(value, (int, float)) else None
        return []

    def _devices(self, row: Row, data: Any, retained: bool) -> list[str]:
        if not isinstance(data, dict):
            return []
        stims = data.get("stimulators") or {}
        row.armed = sorted(n for n, s in stims.items() if isinstance(s, dict) and s.get("armed"))
        inputs = data.get("inputs") or {}
        row.signal = ", ".join(f"{n} {s.get('status')}" for n, s in sorted(inputs.items()) if isinstance(s, dict))
        return []

    def _fmri_qc(self, row: Row, data: Any, retained: bool) -> list[str]:
        if isinstance(data, dict) and isinstance(data.get("fd_mm"), (int, float)):
            row.signal = f"vol {data.get('index')} FD {data['fd_mm']:.2f} mm"
        return []

    def _interlocks(self, row: Row, data: Any, retained: bool) -> list[str]:
        if not isinstance(data, dict):
            return []
        was = row.estop
        row.interlocks = {str(k): _text(v) for k, v in (data.get("inhibited") or {}).items()}
        row.estop = bool(data.get("estop"))
        if row.estop and not was and not retained:
            return [f"ALERT {_stamp()} {row.site}/{row.session} E-STOP: {row.interlocks.get('estop', '')}".rstrip()]
        return []

    def _fault(self, row: Row, data: Any, retained: bool) -> list[str]:
        if isinstance(data, dict):
            row.fault = _text(data.get("source")) + (f": {data['reason']}" if data.get("reason") else "")
        else:
            row.fault = _text(data)
        return [] if retained else [f"ALERT {_stamp()} {row.site}/{row.session} fault: {row.fault}"]

    def _ack(self, row: Row, data: Any, retained: bool) -> list[str]:
        if not isinstance(data, dict):
            return []
        verdict = "ok" if data.get("ok") else f"refused: {data.get('error')}"
        return [f"{_stamp()} {row.site}/{row.session} command {data.get('cmd')} from {data.get('user')} "
                f"({data.get('id')}): {verdict}"]

    # ------------------------------------------------------------------ drawing
    COLUMNS = ("SITE", "SESSION", "STATUS", "PROTOCOL", "STATE", "BLOCK", "FEEDBACK", "SIGNAL", "ARMED",
               "INTERLOCKS", "LAST FAULT")
    WIDTHS = (12, 14, 7, 18, 9, 10, 8, 22, 10, 28, 30)

    def render(self) -> str:
        def cells(row: Row) -> tuple[str, ...]:
            interlocks = ("E-STOP; " if row.estop else "") + "; ".join(
                f"{k}: {v}" if v else k for k, v in row.interlocks.items() if k != "estop" or not row.estop)
            return (row.site, row.session, row.status, row.protocol, row.state, row.block,
                    "" if row.feedback is None else f"{row.feedback:.3f}", row.signal,
                    ",".join(row.armed) or "-", interlocks.strip("; ") or "-", row.fault or "-")

        def line(values: tuple[str, ...]) -> str:
            out = []
            for value, width in zip(values, self.WIDTHS, strict=True):
                value = value if len(value) <= width else value[:width - 1] + "~"
                out.append(value.ljust(width))
            return " ".join(out).rstrip()

        rows = [line(cells(r)) for _, r in sorted(self.rows.items())]
        return "\n".join([line(self.COLUMNS), *(rows or ["(no session seen yet)"])])


# ----------------------------------------------------------------------------- the command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", metavar="URL", help="mqtts://HOST:PORT (default: the --site file's telemetry broker)")
    p.add_argument("--tls-ca", metavar="FILE", help="CA certificate the broker's certificate is checked against")
    p.add_argument("--tls-cert", metavar="FILE", help="this client's certificate, when the broker requires one")
    p.add_argument("--tls-key", metavar="FILE", help="the key of --tls-cert")
    p.add_argument("--username", metavar="U", help="the broker account (a monitor or operator role in its ACL)")
    p.add_argument("--password-file", metavar="F", help="a file whose first line is the password")
    p.add_argument("--password-env", metavar="VAR", help="an environment variable holding the password")
    p.add_argument("--site", metavar="FILE", help="a site config whose telemetry: section gives the broker, CA, "
                                                  "topic prefix and site name (never its account)")
    p.add_argument("--prefix", metavar="P", help="topic prefix (default: the site's, or neuroreflex)")
    p.add_argument("--once", metavar="SECONDS", type=float, help="print the table after SECONDS and exit")
    p.add_argument("--send", nargs=2, metavar=("SESSION", "CMD"),
                   help="send CMD (pause, resume, stop, estop, note) to SESSION ([SITE/]SESSION) and wait for its ack")
    p.add_argument("--reason", help="with --send: why (journaled by the session)")
    p.add_argument("--text", help="with --send SESSION note: the note")
    p.add_argument("--by", help="with --send: your name as the session journals it beside your broker account")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="with --send: wait this long for the ack")


def run(argv: list[str]) -> int:
    """``neuroreflex monitor ARGS`` without the rest of the command line's parser (nor its imports)."""
    parser = argparse.ArgumentParser(prog="neuroreflex monitor", description=__doc__.split("\n")[0])
    add_arguments(parser)
    try:
        return main(parser.parse_args(argv))
    except KeyboardInterrupt:
        return 130


def config_from_args(args: argparse.Namespace) -> TelemetryConfig:
    """The connection the command line asks for; ValueError saying what is missing or wrong."""
    from dataclasses import replace

    from controller.telemetry.config import TelemetryConfig, parse_broker_url

    base: TelemetryConfig | None = None
    if args.site:
        from controller.safety.site import load_site

        base = load_site(args.site).telemetry
        if base is None:
            raise ValueError(f"{args.site}: no telemetry: section (give --broker)")
    if not args.broker and base is None:
        raise ValueError("give --broker mqtts://HOST:PORT (or --site with a telemetry: section)")
    if args.password_file and args.password_env:
        raise ValueError("give --password-file or --password-env, not both")
    if (args.password_file or args.password_env) and not args.username:
        raise ValueError("a password needs --username")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    broker = parse_broker_url(args.broker) if args.broker else base.broker  # type: ignore[union-attr]

    def path(value: str | None) -> Path | None:
        return Path(value).expanduser() if value else None

    cfg = base or TelemetryConfig(broker=broker)
    return replace(cfg, broker=broker, username=args.username, password_file=path(args.password_file),
                   password_env=args.password_env, ca_file=path(args.tls_ca) or (base.ca_file if base else None),
                   cert_file=path(args.tls_cert), key_file=path(args.tls_key),
                   topic_prefix=args.prefix or cfg.topic_prefix)


def main(args: argparse.Namespace) -> int:
    import asyncio

    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"neuroreflex monitor: {exc}", file=sys.stderr)
        return 2
    try:
        if args.send:
            return asyncio.run(send(cfg, args.send[0], args.send[1], reason=args.reason, text=args.text,
                                    by=args.by, timeout=args.timeout, site=cfg.site if args.site else None))
        return asyncio.run(watch(cfg, once=args.once))
    except _Failed as exc:
        print(f"neuroreflex monitor: {exc}", file=sys.stderr)
        return 1


class _Failed(Exception):
    """Ends the command with exit 1 and this message."""


def _explain(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "135" in text or "not authori" in text.lower():
        return f"the broker refused the connection: {text} (check --username and the password)"
    return f"cannot connect to the broker: {text}"


def client_for(cfg: TelemetryConfig, purpose: str) -> Any:
    """An aiomqtt client (MQTT v5) that also keeps each PUBACK's reason code (aiomqtt drops it): a
    publish the ACL refuses is answered "not authorized", and a sender must be able to say so."""
    import os

    import aiomqtt

    from controller.telemetry.connection import TelemetryConnectionError, client_options

    class Client(aiomqtt.Client):
        puback: Any = None

        def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
            self.puback = reason_code
            super()._on_publish(client, userdata, mid, reason_code, properties)

    try:
        options = client_options(cfg, client_id=f"neuroreflex-{purpose}-{os.getpid()}-{time.monotonic_ns() % 10**6}")
    except TelemetryConnectionError as exc:
        raise _Failed(str(exc)) from None
    return Client(**options, protocol=aiomqtt.ProtocolVersion.V5, timeout=10)


async def watch(cfg: TelemetryConfig, *, once: float | None = None, out: IO[str] | None = None) -> int:
    """Follow every session until interrupted (or for ``once`` seconds, then print the table)."""
    import asyncio

    import aiomqtt
    from aiomqtt.exceptions import MqttConnectError

    from controller.telemetry.topics import all_sessions

    out = out or sys.stdout
    board = Board(cfg.topic_prefix)
    tty = out.isatty() and once is None
    alerts: list[str] = []
    deadline = None if once is None else time.monotonic() + once
    wait = 0.5

    def draw() -> None:
        if tty:
            out.write("\x1b[H\x1b[2J" + board.render() + "\n\n" + "\n".join(alerts[-ALERTS_KEPT:]) + "\n")
        else:
            out.write(board.render() + "\n")
        out.flush()
        board.changed = False

    async def follow(client: Any) -> None:
        last_draw = 0.0
        await client.subscribe(all_sessions(cfg.topic_prefix), qos=1)
        async for message in client.messages:
            lines = board.update(str(message.topic), bytes(message.payload or b""), bool(message.retain))
            for line in lines:
                alerts.append(line)
                if not tty:
                    out.write(line + "\n")
                    out.flush()
            period = REDRAW_S if tty else PIPE_TABLE_S
            urgent = tty and bool(lines)  # an alert is on the screen at once, whatever the redraw rate
            if once is None and board.changed and (urgent or time.monotonic() - last_draw > period):
                draw()
                last_draw = time.monotonic()

    while True:
        try:
            async with client_for(cfg, "monitor") as client:
                wait = 0.5
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    await asyncio.wait_for(follow(client), remaining)
                except TimeoutError:
                    draw()
                    return 0
        except MqttConnectError as exc:  # refused (password, ACL): retrying will not help
            raise _Failed(_explain(exc)) from None
        except aiomqtt.MqttError as exc:
            if deadline is not None and time.monotonic() >= deadline:
                raise _Failed(_explain(exc)) from None
            out.write(f"{_stamp()} broker connection lost ({exc}); retrying in {wait:g} s\n")
            out.flush()
        await asyncio.sleep(wait)
        wait = min(2 * wait, 10.0)


async def send(cfg: TelemetryConfig, session: str, cmd: str, *, reason: str | None = None,
               text: str | None = None, by: str | None = None, timeout: float = 10.0, site: str | None = None,
               out: IO[str] | None = None) -> int:
    """Send one command and print its acknowledgement; 0 when the session carried it out. The session's
    site: ``site``, else ``SITE/SESSION``, else found from the retained status topics."""
    import asyncio
    import uuid

    import aiomqtt

    from controller.telemetry.remote import Request, ack_topic, cmd_topic

    out = out or sys.stdout
    if not cfg.username:
        raise _Failed("a command is sent from a broker account: give --username (an operator role in the ACL)")
    args: dict[str, Any] = {k: v for k, v in (("reason", reason), ("text", text)) if v}
    request = Request(uuid.uuid4().hex[:12], cmd, args, by)
    try:
        async with client_for(cfg, "send") as client:
            if site is None or "/" in session:
                site, session = await _find_site(client, cfg, session)
            await client.subscribe(ack_topic(cfg, session, site), qos=1)
            topic = cmd_topic(cfg, session, cfg.username, site)
            await client.publish(topic, request.to_json(), qos=1, timeout=timeout)
            if client.puback is not None and client.puback.is_failure:
                raise _Failed(f"the broker refused the command on {topic}: {client.puback} "
                              f"(account {cfg.username!r} may not command; the ACL decides)")
            if client.puback is not None and client.puback.value == NO_MATCHING_SUBSCRIBERS:
                raise _Failed(f"no session listens for commands on {topic} (is {site}/{session} running, "
                              "with telemetry?)")
            out.write(f"sent {cmd} to {site}/{session} (request {request.id}); waiting for its acknowledgement\n")
            out.flush()
            try:
                ack = await asyncio.wait_for(_ack(client, request.id), timeout)
            except TimeoutError:
                raise _Failed(f"no acknowledgement from {site}/{session} within {timeout:g} s") from None
    except aiomqtt.MqttError as exc:
        raise _Failed(_explain(exc)) from None
    out.write(json.dumps(ack, indent=2) + "\n")
    return 0 if ack.get("ok") else 1


async def _ack(client: Any, rid: str) -> dict[str, Any]:
    async for message in client.messages:
        try:
            data = json.loads(bytes(message.payload))
        except (ValueError, TypeError):
            continue
        if isinstance(data, dict) and data.get("id") == rid:
            return data
    raise _Failed("the broker connection ended before the acknowledgement")


async def _find_site(client: Any, cfg: TelemetryConfig, session: str, wait_s: float = 1.5) -> tuple[str, str]:
    """``SITE/SESSION`` as given, or the site(s) whose retained status names ``session`` (online first)."""
    import asyncio

    if "/" in session:
        site, _, name = session.partition("/")
        return site, name
    seen: dict[str, str] = {}
    await client.subscribe(f"{cfg.topic_prefix}/+/{session}/status", qos=1)

    async def collect() -> None:
        async for message in client.messages:
            parts = str(message.topic).split("/")
            try:
                data = json.loads(bytes(message.payload))
            except (ValueError, TypeError):
                data = bytes(message.payload).decode("utf-8", "replace")
            seen[parts[-3]] = _text(data.get("status") if isinstance(data, dict) else data)
            if seen[parts[-3]] == "online":
                return

    try:
        await asyncio.wait_for(collect(), wait_s)
    except TimeoutError:
        pass
    await client.unsubscribe(f"{cfg.topic_prefix}/+/{session}/status")
    online = [s for s, status in seen.items() if status == "online"]
    if len(online) == 1:
        return online[0], session
    if len(online) > 1:
        raise _Failed(f"session {session!r} runs at several sites ({', '.join(online)}): give SITE/{session}")
    if seen:
        raise _Failed(f"session {session!r} is not online ({', '.join(f'{s}: {v}' for s, v in seen.items())})")
    raise _Failed(f"no session {session!r} on the broker (no retained status under {cfg.topic_prefix}/+/{session}/)")
