"""From a :class:`TelemetryConfig` to the keyword arguments of ``aiomqtt.Client``.

The secrets are read here, at connect time, never at parse time: a password file can be
rotated without touching the site file, and no parsed object or journal holds a password.
A missing file or variable is a :class:`TelemetryConnectionError` that names it, so the
operator knows what to fix instead of seeing a broker's "not authorised".

Imports no MQTT client (the dictionary is what ``aiomqtt.Client(**options)`` takes), so the
publisher, the monitor and the remote command sender share it without this module caring
which of them connects.
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path
from typing import Any

from controller.telemetry.config import TelemetryConfig


class TelemetryConnectionError(Exception):
    """The configuration cannot be turned into a connection (a missing file, variable or key)."""


def read_password(cfg: TelemetryConfig) -> str | None:
    """The password from ``password_file`` (its first line) or ``password_env``; None if neither."""
    if cfg.password_file is not None:
        try:
            text = cfg.password_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TelemetryConnectionError(f"telemetry password_file {cfg.password_file} does not exist") from None
        except OSError as exc:
            raise TelemetryConnectionError(f"telemetry password_file {cfg.password_file} cannot be read: {exc.strerror or exc}") from None
        lines = text.splitlines()
        if not lines or not lines[0]:
            raise TelemetryConnectionError(f"telemetry password_file {cfg.password_file} is empty; the password is its first line")
        return lines[0]
    if cfg.password_env is not None:
        value = os.environ.get(cfg.password_env)
        if not value:
            raise TelemetryConnectionError(f"telemetry password_env: the environment variable {cfg.password_env} is not set (or empty)")
        return value
    return None


def _existing(path: Path, what: str) -> str:
    if not path.is_file():
        raise TelemetryConnectionError(f"telemetry tls {what} file {path} does not exist")
    return str(path)


def tls_context(cfg: TelemetryConfig) -> ssl.SSLContext | None:
    """A client TLS context for mqtts:// (the site's CA or the system's; the client certificate
    when given); None for plain mqtt://. The broker's host name is checked against its certificate."""
    if not cfg.broker.tls:
        return None
    cafile = _existing(cfg.ca_file, "ca") if cfg.ca_file is not None else None
    try:
        context = ssl.create_default_context(cafile=cafile)
    except ssl.SSLError as exc:
        raise TelemetryConnectionError(f"telemetry tls ca {cafile}: not a usable CA certificate ({exc.reason or exc})") from None
    if cfg.cert_file is not None:
        if cfg.key_file is None:
            raise TelemetryConnectionError("telemetry tls: cert is given without key")
        cert, key = _existing(cfg.cert_file, "cert"), _existing(cfg.key_file, "key")
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise TelemetryConnectionError(
                f"telemetry tls cert {cert} / key {key}: cannot be loaded as a pair ({exc.reason or exc})"
            ) from None
    return context


# Small packets (an E-STOP, its acknowledgement) go out at once: without it Nagle's algorithm held an ack back
# ~40 ms waiting for a delayed TCP ACK (bench/telemetry_estop.py --nagle shows it)
NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


def client_options(cfg: TelemetryConfig, *, client_id: str, will: Any = None) -> dict[str, Any]:
    """Keyword arguments for ``aiomqtt.Client``: hostname, port, identifier, username, password,
    tls_context, will (an ``aiomqtt.Will`` or None), TCP_NODELAY. Raises :class:`TelemetryConnectionError`."""
    return {
        "socket_options": NO_DELAY,
        "hostname": cfg.broker.host,
        "port": cfg.broker.port,
        "identifier": client_id,
        "username": cfg.username,
        "password": read_password(cfg),
        "tls_context": tls_context(cfg),
        "will": will,
    }
