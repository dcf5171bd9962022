"""The topic layout and what each topic carries (one JSON Schema per topic).

Every session publishes under ``<prefix>/<site>/<session>/<kind>``; a monitor subscribes to
``<prefix>/+/+/+`` (every site, every session) and tells the kinds apart by the last level.
Retained topics (identity, state, devices, interlocks, status) are what a monitor that joins
late needs to draw a session at once; the others are a stream of events.

The payload models below are the published contract (``neuroreflex schema --telemetry``); the
publisher builds plain dicts for speed and the tests check every payload they receive against
these models. Fields follow the journal's records (controller/event_records.py) so one
vocabulary serves the journal, the console and telemetry. Extra fields are allowed (a newer
publisher may add one; a monitor ignores what it does not know). Times: ``t`` and
``t_source`` are the session host's LSL clock (seconds), ``wall`` is Unix time (seconds, UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# kinds (the last topic level)
IDENTITY = "identity"
STATE = "state"
FEATURES = "features"
FEEDBACK = "feedback"
DECISION = "decision"
THRESHOLD = "threshold"
FMRI_QC = "fmri_qc"
STIM = "stim"
DEVICES = "devices"
INTERLOCKS = "interlocks"
FAULT = "fault"
STATUS = "status"

RETAINED = frozenset({IDENTITY, STATE, DEVICES, INTERLOCKS, STATUS})
RATE_LIMITED = frozenset({FEATURES, FEEDBACK})  # QoS 0: the next value replaces a lost one

ONLINE, OFFLINE, ENDED = "online", "offline", "ended"
PROTOCOL_VERSION = 1  # of the payloads below; a monitor can tell an older publisher


@dataclass(frozen=True)
class TopicName:
    """A parsed topic: which site, session and kind it is about."""

    site: str
    session: str
    kind: str


def topic(prefix: str, site: str, session: str, kind: str) -> str:
    """``<prefix>/<site>/<session>/<kind>``."""
    return f"{prefix}/{site}/{session}/{kind}"


def all_sessions(prefix: str = "neuroreflex", kind: str = "+") -> str:
    """The subscription for every site's and session's ``kind`` (default: every kind)."""
    return f"{prefix}/+/+/{kind}"


def parse_topic(name: str, prefix: str = "neuroreflex") -> TopicName | None:
    """The site, session and kind of a topic under ``prefix``; None for any other topic."""
    head = prefix + "/"
    if not name.startswith(head):
        return None
    parts = name[len(head):].split("/")
    if len(parts) != 3 or not all(parts):
        return None
    return TopicName(*parts)


def qos(kind: str) -> int:
    """QoS 0 for the rate-limited streams (a lost value is replaced by the next), 1 for the rest."""
    return 0 if kind in RATE_LIMITED else 1


# ----------------------------------------------------------------------------- payloads


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Event(_Payload):
    session: str = Field(description="The session id (also the topic's third level).")
    seq: int = Field(description="Message number within this session's publisher, all topics; a gap is a lost message.")
    t: float | None = Field(description="When the event was emitted, session host's LSL clock (s).")
    t_source: float | None = Field(None, description="The newest sample that caused it, same clock (s); null if not caused by data.")


class TimelineBlock(_Payload):
    index: int
    label: str
    duration_s: float | None = None
    cycle: int | None = None


class IdentityPayload(_Payload):
    """Who, what and where: the session's protocol, participant, operator, site, start and software (retained)."""

    version: int = Field(PROTOCOL_VERSION, description="The telemetry payload version.")
    session: str
    site: str
    protocol: str | None
    protocol_sha256: str | None = None
    participant: str | None = None
    operator: str | None = None
    started: float = Field(description="Session start, Unix time (s).")
    software: str | None = None
    simulated: bool = False
    devices: list[str] = Field(default_factory=list, description="The stimulators the protocol drives.")
    feedback_feature: str | None = None
    timeline: list[TimelineBlock] = Field(default_factory=list)


class BlockInfo(_Payload):
    index: int
    label: str
    cycle: int | None = None
    duration_s: float | None = None


class StatePayload(_Event):
    """The engine's state and the current block (retained); ``time_left_s`` as of ``wall``."""

    state: str = Field(description="starting, running, paused, inhibited, stopped, ended.")
    reason: str | None = None
    block: BlockInfo | None = None
    block_started: float | None = Field(None, description="Unix time (s) the block began.")
    time_left_s: float | None = Field(None, description="Time left in the block when published; null for an open-ended block.")
    wall: float = Field(description="Unix time (s) of this message.")
    status: str | None = Field(None, description="At the end: completed, stopped or error.")


class FeaturesPayload(_Event):
    """The newest value of each feature updated since the last message (at most ``rates.features`` per second)."""

    values: dict[str, float | None] = Field(description="Feature name -> value (null: no value yet).")
    block_index: int | None = None


class FeedbackPayload(_Event):
    """The newest continuous feedback value (at most ``rates.feedback`` per second)."""

    value: float | None = Field(description="Scaled to 0..1.")
    raw: float | None = None
    latency_s: float | None = Field(None, description="Loop latency: newest sample -> feedback sent (s).")


class DecisionPayload(_Event):
    """A rule fired."""

    action: str
    rule: int | None = None
    block: str | None = None
    block_index: int | None = None
    latency_s: float | None = None
    controller_latency_s: float | None = None
    condition: str | None = None


class ThresholdPayload(_Event):
    """A threshold was set or adapted."""

    name: str
    value: float | None = None
    reason: str = ""
    comparison_rate: float | None = None
    reward_rate: float | None = None
    n_values: int | None = None


class FmriQcPayload(_Event):
    """One fMRI volume: where it sits in the run, head motion (FD), ROI means, time per stage."""

    index: int = Field(description="Acquisition number.")
    counted: int | None = None
    block: str | None = None
    dummy: bool = False
    fd_mm: float | None = None
    motion: list[float | None] | None = Field(None, description="tx ty tz (mm), rx ry rz (deg).")
    rois: dict[str, dict[str, float | None]] | None = None
    timing_ms: dict[str, float | None] | None = None
    input: str | None = None


class StimPayload(_Event):
    """A stimulation command sent or refused, or a governor's verdict with its reason, or a delivered train."""

    event: Literal["command", "verdict", "delivery", "short_train", "refund", "not_applied", "delivery_unmatched"]
    device: str | None = None
    allowed: bool | None = Field(None, description="command: sent; verdict: allowed by the governor.")
    command: str | None = Field(None, description="fire, start, stop, set, arm, disarm, not_ready.")
    reason: str | None = Field(None, description="Why it was refused (the governor's sentence), when it was.")
    limit: str | None = None
    rule: str | None = None


class StimulatorState(_Payload):
    armed: bool
    last_command: str | None = None
    ok: bool | None = None
    reason: str | None = None


class InputState(_Payload):
    status: str = Field(description="connected, stalled, resumed, gap, clock_jump, nan, clean, ...")
    detail: str = ""


class DevicesPayload(_Event):
    """Each stimulator's arming and last command, each input's status (retained)."""

    stimulators: dict[str, StimulatorState]
    inputs: dict[str, InputState]


class InterlocksPayload(_Event):
    """What inhibits stimulation now (retained): each source with its reason, and the E-STOP."""

    inhibited: dict[str, str] = Field(description="Source -> reason; empty: nothing inhibits.")
    estop: bool = False
    last: dict[str, Any] | None = Field(None, description="The last change, as the safety event said it.")


class FaultPayload(_Event):
    """Something failed (an output, a device, the session, the recorder, the journal)."""

    source: str
    reason: str | None = None
    dropped_events: int | None = None


class StatusPayload(_Payload):
    """online while connected, ended after a clean end, offline (the last will) when the publisher vanished."""

    status: Literal["online", "offline", "ended"]
    session: str
    site: str


PAYLOADS: dict[str, type[BaseModel]] = {
    IDENTITY: IdentityPayload, STATE: StatePayload, FEATURES: FeaturesPayload, FEEDBACK: FeedbackPayload,
    DECISION: DecisionPayload, THRESHOLD: ThresholdPayload, FMRI_QC: FmriQcPayload, STIM: StimPayload,
    DEVICES: DevicesPayload, INTERLOCKS: InterlocksPayload, FAULT: FaultPayload, STATUS: StatusPayload,
}


def json_schemas() -> dict[str, Any]:
    """One JSON Schema (draft 2020-12) per topic kind, with the layout, retention and QoS of each."""
    out: dict[str, Any] = {}
    for kind, model in PAYLOADS.items():
        schema = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = f"neuroreflex telemetry: {kind}"
        schema["x-topic"] = topic("<prefix>", "<site>", "<session>", kind)
        schema["x-retained"] = kind in RETAINED
        schema["x-qos"] = qos(kind)
        out[kind] = schema
    return out
