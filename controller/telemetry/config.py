"""The site file's ``telemetry:`` section: where a session publishes, as whom, and how often.

Parsed with the rest of the site file (:mod:`controller.safety.site`), so a mistake here is
one more FILE:LINE:COL message in the same list. Pure like the rest of the site parsing:
nothing is opened, no password is read (that happens at connect time, in
:mod:`controller.telemetry.connection`, so a secret never sits in a parsed object or a
journal). Imports pydantic and the language's value types only, never an MQTT client: the
safety package loads this module, and the hot path must not pull a network client in.

    telemetry:
      broker: mqtts://broker.lab.example:8883
      tls: {ca: certs/ca.crt, cert: certs/room1.crt, key: certs/room1.key}   # relative to the site file
      username: room1
      password_file: secrets/room1.pw        # or password_env: NEUROREFLEX_MQTT_PASSWORD
      topic_prefix: neuroreflex
      site: example-lab                      # default: the site's name
      rates: {features: 2 Hz, feedback: 10 Hz}   # `all`: every update
      queue: 1000                            # messages held while the broker is slow or away
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from controller.lang import units
from controller.lang.fields import fail

SCHEMES = {"mqtt": 1883, "mqtts": 8883}  # scheme -> default port
ALL = "all"  # a rate written as `all`: publish every update (benches, low-rate protocols)
TOPIC_SEGMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
TOPIC_PREFIX_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_SEGMENT = re.compile(TOPIC_SEGMENT_PATTERN)
_PREFIX = re.compile(TOPIC_PREFIX_PATTERN)
_ENV = re.compile(ENV_NAME_PATTERN)

Loc = tuple[str | int, ...]


# ----------------------------------------------------------------------------- broker URL


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker listens; ``tls`` for mqtts://."""

    host: str
    port: int
    tls: bool

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` -> its address; ValueError saying what
    is wrong otherwise. Shared by the site file and the command line (``--broker URL``)."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"expected a broker URL like mqtts://broker.example:8883, got {units.shown(url)}")
    parts = urlsplit(url.strip())
    if parts.scheme not in SCHEMES:
        raise ValueError(f"expected a broker URL starting mqtt:// or mqtts://, like mqtts://broker.example:8883, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("write the user as `username:` and the password in `password_file:` or `password_env:`, not in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"a broker URL is scheme://host:port with nothing after, got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"the port of {url!r} must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}; write mqtt://HOST:PORT")
    return BrokerAddress(parts.hostname, port if port else SCHEMES[parts.scheme], parts.scheme == "mqtts")


# ----------------------------------------------------------------------------- value types


def _broker(value: Any) -> Any:
    try:
        parse_broker_url(value)
    except ValueError as exc:
        fail(str(exc))
    return value.strip()


Broker = Annotated[
    str,
    BeforeValidator(_broker),
    WithJsonSchema({"type": "string", "pattern": r"^mqtts?://[^/@]+$", "examples": ["mqtts://broker.lab.example:8883"]}),
]


def _file(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        fail(f"expected a file path (relative to the site file or absolute), got {units.shown(value)}")
    return value.strip()


FileName = Annotated[str, BeforeValidator(_file), WithJsonSchema({"type": "string", "minLength": 1})]


def _env(value: Any) -> Any:
    if not isinstance(value, str) or not _ENV.match(value):
        fail(f"expected an environment variable name like NEUROREFLEX_MQTT_PASSWORD, got {units.shown(value)}")
    return value


EnvName = Annotated[str, BeforeValidator(_env), WithJsonSchema({"type": "string", "pattern": ENV_NAME_PATTERN})]


def _no_password(value: Any) -> Any:
    fail("a password is never written in the site file: put it in a file (password_file:) or an environment variable (password_env:)")


NoPassword = Annotated[None, BeforeValidator(_no_password), WithJsonSchema({"not": {}})]


def _user(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        fail(f"expected a user name, got {units.shown(value)} (quote it if YAML reads it as a number)")
    return value


UserName = Annotated[str, BeforeValidator(_user), WithJsonSchema({"type": "string", "minLength": 1})]


def _prefix(value: Any) -> Any:
    if not isinstance(value, str) or not _PREFIX.match(value):
        fail(
            "expected a topic prefix of letters, digits, '_', '-' or '.', levels separated by '/', "
            f"like neuroreflex or lab/neuroreflex (no '+', '#', spaces or leading '/'), got {units.shown(value)}"
        )
    return value


TopicPrefix = Annotated[str, BeforeValidator(_prefix), WithJsonSchema({"type": "string", "pattern": TOPIC_PREFIX_PATTERN})]


def _segment(value: Any) -> Any:
    if not isinstance(value, str) or not _SEGMENT.match(value):
        fail(f"expected a name of letters, digits, '_', '-' or '.', like example-lab, got {units.shown(value)}")
    return value


TopicName = Annotated[str, BeforeValidator(_segment), WithJsonSchema({"type": "string", "pattern": TOPIC_SEGMENT_PATTERN})]


def _rate(value: Any) -> float | None:
    if value == ALL:
        return None
    try:
        q = units.parse_quantity(value, units.FREQUENCY)
    except units.UnitError as exc:
        fail(f"{exc}; or `{ALL}` for every update")
    if q.value <= 0:
        fail(f"must be above 0 Hz (or `{ALL}` for every update), got {units.shown(value)}")
    return q.value


Rate = Annotated[
    float | None,
    BeforeValidator(_rate),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*(k?Hz)\s*$"},
                {"const": ALL},
            ],
            "examples": ["2 Hz", "10 Hz", ALL],
            "description": f"Most messages per second on the topic, e.g. 2 Hz; `{ALL}`: every update.",
        }
    ),
]


def _queue(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(f"expected a whole number of messages like 1000, got {units.shown(value)}")
    if value < 1:
        fail(f"must be at least 1, got {units.shown(value)}")
    return value


QueueSize = Annotated[int, BeforeValidator(_queue), WithJsonSchema({"type": "integer", "minimum": 1})]


# ----------------------------------------------------------------------------- the section's shape


class _Decl(BaseModel):
    """Like every mapping in a site file: unknown keys are errors (site_schema.Decl's rule)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key_noun: ClassVar[str] = "key"


class TlsDecl(_Decl):
    """The TLS files, relative to the site file: the CA that signed the broker's certificate, and
    this client's certificate and key when the broker asks for one."""

    ca: FileName | None = Field(None, description="CA certificate (PEM) the broker's certificate is checked against; default: the system's CAs.")
    cert: FileName | None = Field(None, description="This client's certificate (PEM), when the broker requires client certificates.")
    key: FileName | None = Field(None, description="The private key (PEM) of `cert`.")


class RatesDecl(_Decl):
    """How often the high-rate topics publish (the rest publish every event)."""

    key_noun: ClassVar[str] = "rate"
    features: Rate = Field("2 Hz", validate_default=True, description="Feature values, at most this often; `all`: every update.")
    feedback: Rate = Field("10 Hz", validate_default=True, description="Feedback values, at most this often; `all`: every update.")


class TelemetryDecl(_Decl):
    """Telemetry over MQTT: without this section a session publishes nothing and needs no broker."""

    broker: Broker = Field(description="The broker: mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS (default ports 1883, 8883).")
    tls: TlsDecl | None = Field(None, description="TLS files (mqtts:// only), relative to the site file.")
    username: UserName | None = Field(None, description="The user the broker knows this session publisher as.")
    password_file: FileName | None = Field(None, description="A file holding the password (first line), relative to the site file.")
    password_env: EnvName | None = Field(None, description="An environment variable holding the password.")
    password: NoPassword = Field(None, description="Not allowed: use password_file or password_env.")
    topic_prefix: TopicPrefix = Field("neuroreflex", description="First topic level(s): PREFIX/SITE/SESSION/KIND.")
    site: TopicName | None = Field(None, description="The site's name in topics; default: the site file's `site:`.")
    rates: RatesDecl = Field(default_factory=lambda: RatesDecl.model_validate({}), description="Rates of the high-rate topics (features, feedback).")
    queue: QueueSize = Field(1000, description="Messages held while the broker is slow or away; beyond, the oldest are dropped (counted).")


# ----------------------------------------------------------------------------- the compiled section


@dataclass(frozen=True)
class TelemetryConfig:
    """A validated telemetry section, paths resolved against the site file's folder.

    No password in here: ``password_file`` / ``password_env`` say where to read it when
    connecting (:func:`controller.telemetry.connection.client_options`).
    """

    broker: BrokerAddress
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    topic_prefix: str = "neuroreflex"
    site: str = "site"
    features_hz: float | None = 2.0  # None: every update
    feedback_hz: float | None = 10.0
    queue: int = 1000

    @classmethod
    def for_broker(cls, url: str, **fields: Any) -> TelemetryConfig:
        """A configuration from a URL and keyword fields (the command line's ``--broker``, tests)."""
        return cls(broker=parse_broker_url(url), **fields)


def telemetry_problems(decl: TelemetryDecl) -> list[tuple[Loc, str]]:
    """The section's cross-field rules: (location under ``telemetry``, message) per problem."""
    out: list[tuple[Loc, str]] = []
    address = parse_broker_url(decl.broker)
    if decl.tls is not None and not address.tls:
        out.append((("tls",), f"tls: TLS files are given but the broker URL {decl.broker!r} is plain mqtt://; write mqtts://"))
    if decl.tls is not None and (decl.tls.cert is None) != (decl.tls.key is None):
        given, missing = ("cert", "key") if decl.tls.cert is not None else ("key", "cert")
        out.append((("tls", given), f"tls: {given} is given without {missing}; a client certificate needs both"))
    if decl.password_file is not None and decl.password_env is not None:
        out.append((("password_env",), "password_env: give the password in password_file or in password_env, not both"))
    if (decl.password_file is not None or decl.password_env is not None) and decl.username is None:
        where = "password_file" if decl.password_file is not None else "password_env"
        out.append(((where,), f"{where}: a password needs a username; add username:"))
    return out


def compile_telemetry(decl: TelemetryDecl, *, site_name: str, base_dir: Path) -> TelemetryConfig:
    """The section as a :class:`TelemetryConfig`; relative paths are resolved against
    ``base_dir`` (the site file's folder), since the session may run from anywhere."""

    def path(name: str | None) -> Path | None:
        if name is None:
            return None
        p = Path(name).expanduser()
        return p if p.is_absolute() else base_dir / p

    tls = decl.tls or TlsDecl.model_validate({})
    return TelemetryConfig(
        broker=parse_broker_url(decl.broker),
        username=decl.username,
        password_file=path(decl.password_file),
        password_env=decl.password_env,
        ca_file=path(tls.ca),
        cert_file=path(tls.cert),
        key_file=path(tls.key),
        topic_prefix=decl.topic_prefix,
        site=decl.site or site_name,
        features_hz=decl.rates.features,
        feedback_hz=decl.rates.feedback,
        queue=decl.queue,
    )
