"""Typed records of the event stream: one definition per event kind, used by its writer and its reader.

Why: the journal is read back long after it was written (the report, an audit). While emitters built
``data`` dicts by hand and readers walked ``dict.get`` chains, a renamed or mistyped field became a
silent "missing" in the report. Each record below is the one definition of what an event carries: the
emitter builds it and ``record.event(t, t_source)`` wraps ``record.to_data()`` in the bus's
:class:`~controller.events.Event` envelope (so the bus, the LSL markers and the journal's JSON lines
are unchanged); the reader turns the data back into the same record with ``from_data``, which names
the journal line, the kind and the field when a required field is missing or has the wrong type.

The rules of the format:

- ``to_data`` writes the keys in the order, and with the presence, the emitters have always written,
  so journals stay byte for byte what they were and older readers keep working;
- a field that older journals, hand-written test journals or partial sessions may lack is optional
  (a default); a field that is present with the wrong type is an error, never guessed at;
- unknown keys are ignored (a newer writer may add one); unknown kinds, and unknown ``what`` of the
  ``safety`` and ``info`` kinds, are skipped by :func:`read_records`, not errors;
- building a record validates nothing: emitters are on the hot path (one record per feature update),
  so records are plain slotted dataclasses and ``to_data`` is one dict literal.

:func:`read_records` turns a journal's events (``controller.recording.journal.read_journal``) into
records per kind, in journal order, each with its envelope's times and its line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Generic, NoReturn, Self, TypeVar

from controller import events as ev
from controller.events import Event

_MISSING: Any = object()
R = TypeVar("R", bound="Record")


class RecordError(ValueError):
    """An event's data does not fit its record (which line, which kind, which field, what was there)."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Fields:
    """Typed access to one event's ``data``; every failure names the line, the kind and the field."""

    __slots__ = ("data", "where", "kind", "prefix")

    def __init__(self, data: Mapping[str, Any], where: str, kind: str, prefix: str = "") -> None:
        if not isinstance(data, Mapping):
            what = f"field {prefix[:-1]!r}" if prefix else "'data'"
            raise RecordError(f"{where}: {kind} event: {what} should be an object, not {_shown(data)}")
        self.data, self.where, self.kind, self.prefix = data, where, kind, prefix

    def fail(self, key: str, expected: str, value: Any = _MISSING) -> NoReturn:
        name = self.prefix + key
        if value is _MISSING:
            raise RecordError(f"{self.where}: {self.kind} event: required field {name!r} is missing")
        raise RecordError(f"{self.where}: {self.kind} event: field {name!r} should be {expected}, not {_shown(value)}")

    def _get(self, key: str, required: bool, expected: str) -> Any:
        value = self.data.get(key, _MISSING)
        if value is _MISSING and required:
            self.fail(key, expected)
        return None if value is _MISSING else value

    def text(self, key: str) -> str:
        value = self._get(key, True, "text")
        if not isinstance(value, str):
            self.fail(key, "text", value)
        return value

    def opt_text(self, key: str) -> str | None:
        value = self._get(key, False, "text")
        if value is not None and not isinstance(value, str):
            self.fail(key, "text or null", value)
        return value

    def number(self, key: str) -> float:
        value = self._get(key, True, "a number")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, "a number", value)
        return float(value)

    def opt_number(self, key: str) -> float | None:
        value = self._get(key, False, "a number")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, "a number or null", value)
        return float(value)

    def integer(self, key: str) -> int:
        value = self._get(key, True, "an integer")
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, "an integer", value)
        return value

    def opt_integer(self, key: str) -> int | None:
        value = self._get(key, False, "an integer")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            self.fail(key, "an integer or null", value)
        return value

    def flag(self, key: str) -> bool:
        value = self._get(key, True, "true or false")
        if not isinstance(value, bool):
            self.fail(key, "true or false", value)
        return value

    def opt_flag(self, key: str, default: bool = False) -> bool:
        value = self._get(key, False, "true or false")
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(key, "true or false", value)
        return value

    def opt_object(self, key: str) -> dict[str, Any] | None:
        value = self._get(key, False, "an object")
        if value is not None and not isinstance(value, Mapping):
            self.fail(key, "an object or null", value)
        return None if value is None else dict(value)

    def opt_list(self, key: str) -> list[Any] | None:
        value = self._get(key, False, "a list")
        if value is not None and not isinstance(value, list):
            self.fail(key, "a list or null", value)
        return value

    def opt_text_map(self, key: str) -> dict[str, str] | None:
        """An object whose values are all text (e.g. threshold -> feature)."""
        value = self.opt_object(key)
        if value is not None and not all(isinstance(v, str) for v in value.values()):
            self.fail(key, "an object of texts", value)
        return value

    def opt_numbers(self, key: str) -> tuple[float, ...] | None:
        """A list of numbers; null entries (an unknown value) read as NaN."""
        value = self.opt_list(key)
        if value is None:
            return None
        out = []
        for x in value:
            if x is None:
                out.append(math.nan)
            elif isinstance(x, bool) or not isinstance(x, (int, float)):
                self.fail(key, "a list of numbers", value)
            else:
                out.append(float(x))
        return tuple(out)

    def nested(self, key: str, value: Any) -> _Fields:
        """The fields of an object inside this one (its failures name the path, e.g. ``timeline[2].label``)."""
        return _Fields(value, self.where, self.kind, f"{self.prefix}{key}.")


class Record:
    """What one event kind carries. Subclasses are frozen slotted dataclasses with ``KIND``."""

    __slots__ = ()
    KIND: ClassVar[str]

    def to_data(self) -> dict[str, Any]:
        """The event's ``data``, keys in the order the journal has always had them."""
        raise NotImplementedError

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> Self:
        """The record of an event's ``data``; ``where`` (e.g. ``journal.jsonl:17``) is named in errors."""
        raise NotImplementedError

    def event(self, t: float, t_source: float | None = None) -> Event:
        """This record in the bus's envelope, emitted at ``t`` (caused by the sample at ``t_source``)."""
        return Event(self.KIND, t, t_source, self.to_data())


# ---------------------------------------------------------------------------- session


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One block of the protocol's timeline as ``session_start`` lists it."""

    index: int
    label: str
    duration_s: float | None = None
    cycle: int | None = None

    def to_data(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "duration_s": self.duration_s, "cycle": self.cycle}


@dataclass(frozen=True, slots=True)
class FmriInputStart:
    """An fMRI input as ``session_start`` describes it: TR, dummies, its source, ROIs."""

    tr_s: float | None = None
    skip: int | None = None
    source: Mapping[str, Any] | None = None  # the source's own description (kind, where, tr_s, shape)
    rois: tuple[str, ...] | None = None
    shape: tuple[int, ...] | None = None  # the volume grid, when the writer knew it

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tr_s": self.tr_s, "skip": self.skip, "source": self.source}
        if self.rois is not None:
            out["rois"] = list(self.rois)
        if self.shape is not None:
            out["shape"] = list(self.shape)
        return out

    def grid(self) -> list[int] | None:
        """The volume grid: the input's own, else its source description's (None when neither says)."""
        if self.shape:
            return list(self.shape)
        shape = self.source.get("shape") if self.source is not None else None
        if isinstance(shape, list) and shape and all(isinstance(x, int) and not isinstance(x, bool) for x in shape):
            return list(shape)
        return None


@dataclass(frozen=True, slots=True)
class FmriStart:
    """The fMRI part of ``session_start``: the run and each volume input."""

    inputs: Mapping[str, FmriInputStart] = field(default_factory=dict)
    run: str | None = None

    def to_data(self) -> dict[str, Any]:
        return {"inputs": {k: v.to_data() for k, v in self.inputs.items()}, "run": self.run}

    @classmethod
    def parse_fields(cls, f: _Fields) -> FmriStart:
        inputs = {}
        for name, spec in (f.opt_object("inputs") or {}).items():
            s = f.nested(f"inputs.{name}", spec)
            shape = s.opt_list("shape")
            if shape is not None and not all(isinstance(x, int) and not isinstance(x, bool) for x in shape):
                s.fail("shape", "a list of integers", shape)
            rois = s.opt_list("rois")
            if rois is not None and not all(isinstance(x, str) for x in rois):
                s.fail("rois", "a list of texts", rois)
            inputs[str(name)] = FmriInputStart(s.opt_number("tr_s"), s.opt_integer("skip"), s.opt_object("source"),
                                               tuple(rois) if rois is not None else None,
                                               tuple(shape) if shape else None)
        return cls(inputs, f.opt_text("run"))


@dataclass(frozen=True, slots=True)
class SessionStart(Record):
    """The session began: the protocol (and its hash), its timeline, and what each input is."""

    KIND: ClassVar[str] = ev.SESSION_START
    session_id: str | None = None
    protocol: str | None = None
    protocol_sha256: str | None = None
    timeline: tuple[TimelineEntry, ...] = ()
    feedback_feature: str | None = None
    thresholds: Mapping[str, str] = field(default_factory=dict)  # name -> adaptive / percentile / fixed
    threshold_features: Mapping[str, str] | None = None  # threshold -> the feature it is compared with
    inputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # sample streams as found at start
    pid: int | None = None
    fmri: FmriStart | None = None

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "session_id": self.session_id, "protocol": self.protocol, "protocol_sha256": self.protocol_sha256,
            "timeline": [b.to_data() for b in self.timeline], "feedback_feature": self.feedback_feature,
            "thresholds": dict(self.thresholds), "threshold_features": self.threshold_features,
            "inputs": {k: dict(v) for k, v in self.inputs.items()}, "pid": self.pid,
        }
        if self.fmri is not None:
            out["fmri"] = self.fmri.to_data()
        return out

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> SessionStart:
        f = _Fields(data, where, cls.KIND)
        timeline = []
        for k, block in enumerate(f.opt_list("timeline") or []):
            b = f.nested(f"timeline[{k}]", block)
            timeline.append(TimelineEntry(b.integer("index"), b.text("label"), b.opt_number("duration_s"),
                                          b.opt_integer("cycle")))
        inputs = f.opt_object("inputs") or {}
        for name, spec in inputs.items():
            if not isinstance(spec, Mapping):
                f.fail(f"inputs.{name}", "an object", spec)
        fmri = f.opt_object("fmri")
        return cls(f.opt_text("session_id"), f.opt_text("protocol"), f.opt_text("protocol_sha256"), tuple(timeline),
                   f.opt_text("feedback_feature"), f.opt_text_map("thresholds") or {},
                   f.opt_text_map("threshold_features"), inputs, f.opt_integer("pid"),
                   FmriStart.parse_fields(f.nested("fmri", fmri)) if fmri is not None else None)


@dataclass(frozen=True, slots=True)
class SessionEnd(Record):
    """The session ended: how (completed / stopped / error) and the engine's and inputs' summary."""

    KIND: ClassVar[str] = ev.SESSION_END
    status: str | None = None
    summary: Mapping[str, Any] | None = None

    def to_data(self) -> dict[str, Any]:
        return {"status": self.status, "summary": self.summary}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> SessionEnd:
        f = _Fields(data, where, cls.KIND)
        return cls(f.opt_text("status"), f.opt_object("summary"))

    def missing_volumes(self, input_name: str) -> list[int] | None:
        """Acquisition numbers of an fMRI input's volumes that never came, as the session counted them at
        its end (``summary.volumes.<input>.missing``); None when the summary does not say."""
        volumes = (self.summary or {}).get("volumes")
        counted = volumes.get(input_name) if isinstance(volumes, Mapping) else None
        missing = counted.get("missing") if isinstance(counted, Mapping) else None
        if not isinstance(missing, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in missing):
            return None
        return sorted(missing)


# ---------------------------------------------------------------------------- engine


@dataclass(frozen=True, slots=True)
class State(Record):
    """The engine's state changed (running, paused, inhibited, stopped), and why."""

    KIND: ClassVar[str] = ev.STATE
    state: str
    reason: str | None = None

    def to_data(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> State:
        f = _Fields(data, where, cls.KIND)
        return cls(f.text("state"), f.opt_text("reason"))


@dataclass(frozen=True, slots=True)
class BlockStart(Record):
    """A block of the timeline began (``index``: its position in the timeline)."""

    KIND: ClassVar[str] = ev.BLOCK_START
    index: int
    label: str
    cycle: int | None = None
    duration_s: float | None = None

    def to_data(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "cycle": self.cycle, "duration_s": self.duration_s}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> BlockStart:
        f = _Fields(data, where, cls.KIND)
        return cls(f.integer("index"), f.text("label"), f.opt_integer("cycle"), f.opt_number("duration_s"))


@dataclass(frozen=True, slots=True)
class BlockEnd(Record):
    """A block ended: its frames, rewarded frames and reward rate, and whether the operator skipped it."""

    KIND: ClassVar[str] = ev.BLOCK_END
    index: int
    label: str
    cycle: int | None = None
    frames: int | None = None
    rewarded: int | None = None
    reward_rate: float | None = None
    skipped: bool = False
    skip_reason: str | None = None

    def to_data(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "cycle": self.cycle, "frames": self.frames,
                "rewarded": self.rewarded, "reward_rate": self.reward_rate, "skipped": self.skipped,
                "skip_reason": self.skip_reason}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> BlockEnd:
        f = _Fields(data, where, cls.KIND)
        return cls(f.integer("index"), f.text("label"), f.opt_integer("cycle"), f.opt_integer("frames"),
                   f.opt_integer("rewarded"), f.opt_number("reward_rate"), f.opt_flag("skipped"),
                   f.opt_text("skip_reason"))


@dataclass(frozen=True, slots=True)
class Threshold(Record):
    """A threshold was set or adapted; for an adaptation, how often its comparison held and how many frames
    were rewarded over the period."""

    KIND: ClassVar[str] = ev.THRESHOLD
    name: str
    value: float | None = None
    reason: str = ""
    comparison_rate: float | None = None
    reward_rate: float | None = None
    n_values: int | None = None

    def to_data(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "reason": self.reason,
                "comparison_rate": self.comparison_rate, "reward_rate": self.reward_rate, "n_values": self.n_values}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> Threshold:
        f = _Fields(data, where, cls.KIND)
        return cls(f.text("name"), f.opt_number("value"), f.opt_text("reason") or "", f.opt_number("comparison_rate"),
                   f.opt_number("reward_rate"), f.opt_integer("n_values"))


@dataclass(frozen=True, slots=True)
class Feature(Record):
    """A new feature value (NaN is a value: the feature has none yet). ``sample_index``: the newest sample
    (or the volume's acquisition number) it used; ``block_index``: the block that sample was acquired in."""

    KIND: ClassVar[str] = ev.FEATURE
    name: str
    value: float
    sample_index: int | None = None
    block_index: int | None = None

    def to_data(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "sample_index": self.sample_index,
                "block_index": self.block_index}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> Feature:
        f = _Fields(data, where, cls.KIND)
        return cls(f.text("name"), f.number("value"), f.opt_integer("sample_index"), f.opt_integer("block_index"))


@dataclass(frozen=True, slots=True)
class Decision(Record):
    """A rule fired. ``latency_s``: from the newest sample to the marker leaving; ``controller_latency_s``
    (stimulation rules): from the chunk's arrival. ``block_index``: the block the sample was acquired in."""

    KIND: ClassVar[str] = ev.DECISION
    action: str
    rule: int | None = None
    block: str | None = None
    block_index: int | None = None  # written only when known
    latency_s: float | None = None
    controller_latency_s: float | None = None  # written only when known
    condition: str | None = None

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "action": self.action, "block": self.block}
        if self.block_index is not None:
            out["block_index"] = self.block_index
        out["latency_s"] = self.latency_s
        if self.controller_latency_s is not None:
            out["controller_latency_s"] = self.controller_latency_s
        out["condition"] = self.condition
        return out

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> Decision:
        f = _Fields(data, where, cls.KIND)
        return cls(f.text("action"), f.opt_integer("rule"), f.opt_text("block"), f.opt_integer("block_index"),
                   f.opt_number("latency_s"), f.opt_number("controller_latency_s"), f.opt_text("condition"))


@dataclass(frozen=True, slots=True)
class Feedback(Record):
    """A continuous feedback value was sent: scaled to 0..1, the raw feature value, the loop latency."""

    KIND: ClassVar[str] = ev.FEEDBACK
    value: float
    raw: float | None = None
    latency_s: float | None = None

    def to_data(self) -> dict[str, Any]:
        return {"value": self.value, "raw": self.raw, "latency_s": self.latency_s}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> Feedback:
        f = _Fields(data, where, cls.KIND)
        return cls(f.number("value"), f.opt_number("raw"), f.opt_number("latency_s"))


@dataclass(frozen=True, slots=True)
class InputStatus(Record):
    """An input's status: connected, stalled, resumed, gap, clock_jump, nan, clean, rewarming; for volumes
    also missing, out_of_order, duplicate, joined (``index``: the volume it joined at), existing."""

    KIND: ClassVar[str] = ev.INPUT
    input: str
    status: str
    detail: str = ""
    index: int | None = None  # written only when known

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"input": self.input, "status": self.status, "detail": self.detail}
        if self.index is not None:
            out["index"] = self.index
        return out

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> InputStatus:
        f = _Fields(data, where, cls.KIND)
        return cls(f.text("input"), f.text("status"), f.opt_text("detail") or "", f.opt_integer("index"))


@dataclass(frozen=True, slots=True)
class Fault(Record):
    """Something failed (an output, a device, the session, the recorder, the journal itself): where, why.
    ``dropped_events``: the journal's own fault, events lost because the disk could not keep up."""

    KIND: ClassVar[str] = ev.FAULT
    source: str
    reason: str | None = None  # written only when known
    dropped_events: int | None = None  # written only by the journal

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.dropped_events is not None:
            out["dropped_events"] = self.dropped_events
        return out

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> Fault:
        f = _Fields(data, where, cls.KIND)
        return cls(f.text("source"), f.opt_text("reason"), f.opt_integer("dropped_events"))


# ---------------------------------------------------------------------------- info (by 'what')


@dataclass(frozen=True, slots=True)
class RulePaced(Record):
    """A rule's condition held but its pacing (refractory, per-block or per-day cap) held it back."""

    KIND: ClassVar[str] = ev.INFO
    WHAT: ClassVar[str] = "rule paced"
    rule: int | None
    reason: str

    def to_data(self) -> dict[str, Any]:
        return {"rule": self.rule, "what": self.WHAT, "reason": self.reason}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> RulePaced:
        f = _Fields(data, where, f"{cls.KIND} ({cls.WHAT})")
        return cls(f.opt_integer("rule"), f.opt_text("reason") or "")


@dataclass(frozen=True, slots=True)
class TrMismatch(Record):
    """A volume source's own TR differs from the protocol's (the protocol's sets the design)."""

    KIND: ClassVar[str] = ev.INFO
    WHAT: ClassVar[str] = "TR mismatch"
    input: str
    reason: str

    def to_data(self) -> dict[str, Any]:
        return {"input": self.input, "what": self.WHAT, "reason": self.reason}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> TrMismatch:
        f = _Fields(data, where, f"{cls.KIND} ({cls.WHAT})")
        return cls(f.text("input"), f.opt_text("reason") or "")


@dataclass(frozen=True, slots=True)
class Annotation(Record):
    """An annotation of the data source (e.g. ``seizure_onset``) at LSL time ``t``."""

    KIND: ClassVar[str] = ev.INFO
    WHAT: ClassVar[str] = "annotation"
    text: str = ""
    t: float | None = None

    def to_data(self) -> dict[str, Any]:
        return {"what": self.WHAT, "text": self.text, "t": self.t}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> Annotation:
        f = _Fields(data, where, f"{cls.KIND} ({cls.WHAT})")
        return cls(f.opt_text("text") or f.opt_text("label") or "", f.opt_number("t"))


# ---------------------------------------------------------------------------- safety (by 'what')


@dataclass(frozen=True, slots=True)
class SafetyVerdict(Record):
    """The governor allowed or refused a command; a refusal names the limit, the value asked for and the
    limit's value. (``t_source`` of the envelope: the detecting sample.)"""

    KIND: ClassVar[str] = ev.SAFETY
    allowed: bool
    verdict: str = ""  # the sentence shown and logged
    device: str | None = None
    command: str | None = None
    limit: str | None = None
    value: float | None = None
    limit_value: float | None = None
    rule: str | None = None

    def to_data(self) -> dict[str, Any]:
        return {"what": "allowed" if self.allowed else "refused", "verdict": self.verdict, "device": self.device,
                "command": self.command, "limit": self.limit, "value": self.value, "limit_value": self.limit_value,
                "rule": self.rule}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> SafetyVerdict:
        f = _Fields(data, where, cls.KIND)
        return cls(f.text("what") == "allowed", f.opt_text("verdict") or "", f.opt_text("device"),
                   f.opt_text("command"), f.opt_text("limit"), f.opt_number("value"), f.opt_number("limit_value"),
                   f.opt_text("rule"))


@dataclass(frozen=True, slots=True)
class InterlockRaised(Record):
    """Stimulation is inhibited by ``source`` (an interlock, a fault, an E-STOP) until it is cleared."""

    KIND: ClassVar[str] = ev.SAFETY
    WHAT: ClassVar[str] = "inhibited"
    source: str
    reason: str = ""

    def to_data(self) -> dict[str, Any]:
        return {"what": self.WHAT, "source": self.source, "reason": self.reason}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> InterlockRaised:
        f = _Fields(data, where, f"{cls.KIND} ({cls.WHAT})")
        return cls(f.text("source"), f.opt_text("reason") or "")


@dataclass(frozen=True, slots=True)
class InterlockCleared(Record):
    """The inhibition by ``source`` was lifted."""

    KIND: ClassVar[str] = ev.SAFETY
    WHAT: ClassVar[str] = "cleared"
    source: str

    def to_data(self) -> dict[str, Any]:
        return {"what": self.WHAT, "source": self.source}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> InterlockCleared:
        return cls(_Fields(data, where, f"{cls.KIND} ({cls.WHAT})").text("source"))


@dataclass(frozen=True, slots=True)
class EStop(Record):
    """The stimulation's E-STOP: everything inhibited and disarmed; ``took_s``: how long that took."""

    KIND: ClassVar[str] = ev.SAFETY
    WHAT: ClassVar[str] = "estop"
    reason: str = ""
    took_s: float | None = None

    def to_data(self) -> dict[str, Any]:
        return {"what": self.WHAT, "reason": self.reason, "took_s": self.took_s}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> EStop:
        f = _Fields(data, where, f"{cls.KIND} ({cls.WHAT})")
        return cls(f.opt_text("reason") or "", f.opt_number("took_s"))


@dataclass(frozen=True, slots=True)
class EStopDone(Record):
    """An operator's E-STOP was carried out (stimulation and engine): ``disarm_s`` the devices' part."""

    KIND: ClassVar[str] = ev.SAFETY
    WHAT: ClassVar[str] = "estop_done"
    reason: str = ""
    disarm_s: float | None = None
    took_s: float | None = None

    def to_data(self) -> dict[str, Any]:
        return {"what": self.WHAT, "reason": self.reason, "disarm_s": self.disarm_s, "took_s": self.took_s}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> EStopDone:
        f = _Fields(data, where, f"{cls.KIND} ({cls.WHAT})")
        return cls(f.opt_text("reason") or "", f.opt_number("disarm_s"), f.opt_number("took_s"))


@dataclass(frozen=True, slots=True)
class EStopCleared(Record):
    """The operator lifted an E-STOP (devices stay disarmed until armed again)."""

    KIND: ClassVar[str] = ev.SAFETY
    WHAT: ClassVar[str] = "estop_cleared"
    operator: str | None = None

    def to_data(self) -> dict[str, Any]:
        return {"what": self.WHAT, "operator": self.operator}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> EStopCleared:
        return cls(_Fields(data, where, f"{cls.KIND} ({cls.WHAT})").opt_text("operator"))


@dataclass(frozen=True, slots=True)
class Refund(Record):
    """Continuous stimulation stopped early: the planned dose not delivered was given back."""

    KIND: ClassVar[str] = ev.SAFETY
    WHAT: ClassVar[str] = "refund"
    device: str
    pulses: float
    charge_c: float

    def to_data(self) -> dict[str, Any]:
        return {"what": self.WHAT, "device": self.device, "pulses": self.pulses, "charge_c": self.charge_c}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> Refund:
        f = _Fields(data, where, f"{cls.KIND} ({cls.WHAT})")
        return cls(f.text("device"), f.number("pulses"), f.number("charge_c"))


@dataclass(frozen=True, slots=True)
class DeliveryUnmatched(Record):
    """A device reported a train that no committed train matches (it stays as counted)."""

    KIND: ClassVar[str] = ev.SAFETY
    WHAT: ClassVar[str] = "delivery_unmatched"
    device: str
    t_start: float | None = None
    delivered: int | None = None

    def to_data(self) -> dict[str, Any]:
        return {"what": self.WHAT, "device": self.device, "t_start": self.t_start, "delivered": self.delivered}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> DeliveryUnmatched:
        f = _Fields(data, where, f"{cls.KIND} ({cls.WHAT})")
        return cls(f.text("device"), f.opt_number("t_start"), f.opt_integer("delivered"))


@dataclass(frozen=True, slots=True)
class NotApplied(Record):
    """A device did not take allowed settings; the governor keeps what the device has."""

    KIND: ClassVar[str] = ev.SAFETY
    WHAT: ClassVar[str] = "not_applied"
    device: str
    reason: str
    settings: Mapping[str, float]

    def to_data(self) -> dict[str, Any]:
        return {"what": self.WHAT, "device": self.device, "reason": self.reason, "settings": dict(self.settings)}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> NotApplied:
        f = _Fields(data, where, f"{cls.KIND} ({cls.WHAT})")
        return cls(f.text("device"), f.opt_text("reason") or "", f.opt_object("settings") or {})


# ---------------------------------------------------------------------------- stimulation


@dataclass(frozen=True, slots=True)
class Command(Record):
    """A command to a device: sent (``ok``; ``t_sent`` when it left the driver) or refused before the wire
    (``reason``). ``latency_s``: from the detecting sample to ``t_sent``; ``controller_latency_s``: from
    its chunk's arrival. ``note``: what an allowed fire/start committed ("20 pulses, 1 uC")."""

    KIND: ClassVar[str] = ev.COMMAND
    device: str
    command: str  # journaled as 'kind': fire, start, stop, set, arm, disarm
    ok: bool
    rule: str | None = None
    t_sent: float | None = None
    latency_s: float | None = None
    controller_latency_s: float | None = None
    reason: str = ""
    note: str = ""
    params: Mapping[str, float] | None = None

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"device": self.device, "kind": self.command, "ok": self.ok, "rule": self.rule}
        if self.t_sent is not None:
            out["t_sent"] = self.t_sent
        if self.latency_s is not None:
            out["latency_s"] = self.latency_s
        if self.controller_latency_s is not None:
            out["controller_latency_s"] = self.controller_latency_s
        if self.reason:
            out["reason"] = self.reason
        if self.note:
            out["note"] = self.note
        if self.params is not None:
            out["params"] = dict(self.params)
        return out

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> Command:
        f = _Fields(data, where, cls.KIND)
        params = f.opt_object("params")
        if params is not None and not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                          for v in params.values()):
            f.fail("params", "an object of numbers", params)
        return cls(f.text("device"), f.text("kind"), f.flag("ok"), f.opt_text("rule"), f.opt_number("t_sent"),
                   f.opt_number("latency_s"), f.opt_number("controller_latency_s"), f.opt_text("reason") or "",
                   f.opt_text("note") or "", params)


NOT_READY = "not_ready"


@dataclass(frozen=True, slots=True)
class NotReady(Record):
    """A device could not take a command yet (e.g. still charging): refused with its reason, no fault.
    Journaled as a ``command`` of kind ``not_ready``."""

    KIND: ClassVar[str] = ev.COMMAND
    device: str
    reason: str = ""

    def to_data(self) -> dict[str, Any]:
        return {"device": self.device, "kind": NOT_READY, "ok": False, "reason": self.reason}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> NotReady:
        f = _Fields(data, where, f"{cls.KIND} ({NOT_READY})")
        return cls(f.text("device"), f.opt_text("reason") or "")


@dataclass(frozen=True, slots=True)
class MissedPulse:
    """A slot of a train the driver's pulse thread was too late for (the pulse was skipped)."""

    pulse: int  # its position in the train, 1-based
    t_due: float
    late_s: float

    def to_data(self) -> dict[str, Any]:
        return {"pulse": self.pulse, "t_due": self.t_due, "late_s": self.late_s}


@dataclass(frozen=True, slots=True)
class TrainDelivered(Record):
    """A train ended and its driver said what it delivered; what the dose ledger now records for it."""

    KIND: ClassVar[str] = ev.DELIVERY
    device: str
    entry: int | None = None  # the train's ledger entry
    train: str | None = None  # fire | start
    rule: str | None = None
    planned: float | None = None
    delivered: int | None = None  # None: the device cannot count
    counted: float | None = None
    recorded: float | None = None
    charge_counted_c: float | None = None
    charge_recorded_c: float | None = None
    confirmed: bool = False
    ended_by: str | None = None
    short: bool = False
    reason: str | None = None
    t_start: float | None = None
    t_end: float | None = None
    missed: tuple[MissedPulse, ...] = ()

    def to_data(self) -> dict[str, Any]:
        return {"device": self.device, "entry": self.entry, "train": self.train, "rule": self.rule,
                "planned": self.planned, "delivered": self.delivered, "counted": self.counted,
                "recorded": self.recorded, "charge_counted_c": self.charge_counted_c,
                "charge_recorded_c": self.charge_recorded_c, "confirmed": self.confirmed, "ended_by": self.ended_by,
                "short": self.short, "reason": self.reason, "t_start": self.t_start, "t_end": self.t_end,
                "missed": [m.to_data() for m in self.missed]}

    def as_short_train(self, count: int | None) -> ShortTrain:
        """The same train as a 'short_train' event (``count``: the device's short trains so far)."""
        return ShortTrain(**{k.name: getattr(self, k.name) for k in fields(TrainDelivered)}, count=count)

    @classmethod
    def _fields(cls, f: _Fields) -> dict[str, Any]:
        missed = []
        for k, m in enumerate(f.opt_list("missed") or []):
            g = f.nested(f"missed[{k}]", m)
            missed.append(MissedPulse(g.integer("pulse"), g.number("t_due"), g.number("late_s")))
        return {"device": f.text("device"), "entry": f.opt_integer("entry"), "train": f.opt_text("train"),
                "rule": f.opt_text("rule"), "planned": f.opt_number("planned"),
                "delivered": f.opt_integer("delivered"), "counted": f.opt_number("counted"),
                "recorded": f.opt_number("recorded"), "charge_counted_c": f.opt_number("charge_counted_c"),
                "charge_recorded_c": f.opt_number("charge_recorded_c"), "confirmed": f.opt_flag("confirmed"),
                "ended_by": f.opt_text("ended_by"), "short": f.opt_flag("short"), "reason": f.opt_text("reason"),
                "t_start": f.opt_number("t_start"), "t_end": f.opt_number("t_end"), "missed": tuple(missed)}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> TrainDelivered:
        return cls(**cls._fields(_Fields(data, where, cls.KIND)))


@dataclass(frozen=True, slots=True)
class ShortTrain(TrainDelivered):
    """A train delivered fewer pulses than planned (skipped slots, a stop, a disarm, a fault), and why;
    ``count``: the device's short trains so far this session."""

    KIND: ClassVar[str] = ev.SHORT_TRAIN
    count: int | None = None

    def to_data(self) -> dict[str, Any]:
        return {**TrainDelivered.to_data(self), "count": self.count}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> ShortTrain:
        f = _Fields(data, where, cls.KIND)
        return cls(**cls._fields(f), count=f.opt_integer("count"))


# ---------------------------------------------------------------------------- fMRI


@dataclass(frozen=True, slots=True)
class RoiValues:
    """One ROI's mean in a volume: as measured, and after the GLM's detrending."""

    raw: float
    detrended: float

    def to_data(self) -> dict[str, Any]:
        return {"raw": self.raw, "detrended": self.detrended}


@dataclass(frozen=True, slots=True)
class VolumeQC(Record):
    """An fMRI volume was processed (or counted as a dummy): where it sits in the run, head motion, ROI
    means, time per stage (ms; None where unknown, e.g. delivery from a folder)."""

    KIND: ClassVar[str] = ev.VOLUME
    index: int  # acquisition number
    counted: int | None = None  # position after the dummies (negative: a dummy)
    block: str | None = None
    block_index: int | None = None
    acquired: float | None = None
    received: float | None = None
    arrived: float | None = None
    source: str | None = None
    dummy: bool = False  # written only when true
    motion: tuple[float, ...] | None = None  # tx ty tz (mm) rx ry rz (deg); written with fd, rois, timing
    fd_mm: float | None = None
    rois: Mapping[str, RoiValues] | None = None
    timing_ms: Mapping[str, float | None] | None = None
    input: str | None = None
    acquisition_time: str | None = None  # written only when known: known (from where) / unknown

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "counted": self.counted, "block": self.block,
                               "block_index": self.block_index, "acquired": self.acquired,
                               "received": self.received, "arrived": self.arrived, "source": self.source}
        if self.dummy:
            out["dummy"] = True
        if self.motion is not None:
            out["motion"] = list(self.motion)
            out["fd_mm"] = self.fd_mm
            out["rois"] = {k: v.to_data() for k, v in (self.rois or {}).items()}
            out["timing_ms"] = dict(self.timing_ms or {})
        out["input"] = self.input
        if self.acquisition_time is not None:
            out["acquisition_time"] = self.acquisition_time
        return out

    @property
    def processed(self) -> bool:
        """Realigned and measured (not a dummy, and the journal has its motion)."""
        return not self.dummy and self.motion is not None

    def stage_ms(self, stage: str) -> float | None:
        """A stage's time in ms (None: the journal does not have it, or it is unknown)."""
        return (self.timing_ms or {}).get(stage)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "event") -> VolumeQC:
        f = _Fields(data, where, cls.KIND)
        rois = None
        if (raw_rois := f.opt_object("rois")) is not None:
            rois = {}
            for name, r in raw_rois.items():
                g = f.nested(f"rois.{name}", r)
                rois[str(name)] = RoiValues(g.number("raw"), g.number("detrended"))
        timing = f.opt_object("timing_ms")
        if timing is not None:
            g = f.nested("timing_ms", timing)
            timing = {str(k): g.opt_number(k) for k in timing}
        return cls(f.integer("index"), f.opt_integer("counted"), f.opt_text("block"), f.opt_integer("block_index"),
                   f.opt_number("acquired"), f.opt_number("received"), f.opt_number("arrived"), f.opt_text("source"),
                   f.opt_flag("dummy"), f.opt_numbers("motion"), f.opt_number("fd_mm"), rois, timing,
                   f.opt_text("input"), f.opt_text("acquisition_time"))


# ---------------------------------------------------------------------------- reading a journal

BY_KIND: dict[str, type[Record]] = {cls.KIND: cls for cls in (
    SessionStart, SessionEnd, State, BlockStart, BlockEnd, Threshold, Feature, Decision, Feedback, InputStatus,
    Fault, TrainDelivered, ShortTrain, VolumeQC,
)}
SAFETY_BY_WHAT: dict[str, type[Record]] = {
    "allowed": SafetyVerdict, "refused": SafetyVerdict, InterlockRaised.WHAT: InterlockRaised,
    "inhibit": InterlockRaised,  # an older spelling
    InterlockCleared.WHAT: InterlockCleared, EStop.WHAT: EStop, EStopDone.WHAT: EStopDone,
    EStopCleared.WHAT: EStopCleared, Refund.WHAT: Refund, DeliveryUnmatched.WHAT: DeliveryUnmatched,
    NotApplied.WHAT: NotApplied,
}
INFO_BY_WHAT: dict[str, type[Record]] = {
    RulePaced.WHAT: RulePaced, TrMismatch.WHAT: TrMismatch, Annotation.WHAT: Annotation,
}


def record_class(kind: str, data: Mapping[str, Any]) -> type[Record] | None:
    """The record an event of ``kind`` with ``data`` is (None: a kind or 'what' this version does not read)."""
    if kind == ev.SAFETY:
        return SAFETY_BY_WHAT.get(str(data.get("what")))
    if kind == ev.INFO:
        return INFO_BY_WHAT.get(str(data.get("what")))
    if kind == ev.COMMAND:
        return NotReady if data.get("kind") == NOT_READY else Command
    return BY_KIND.get(kind)


def parse(kind: str, data: Mapping[str, Any], where: str = "event") -> Record | None:
    """The record of one event (None for a kind this version does not read); raises RecordError."""
    if not isinstance(data, Mapping):
        raise RecordError(f"{where}: {kind} event: 'data' should be an object, not {_shown(data)}")
    cls = record_class(kind, data)
    return None if cls is None else cls.from_data(data, where)


@dataclass(frozen=True, slots=True)
class Stamped(Generic[R]):
    """A record with its envelope: emitted at ``t``, caused by the sample at ``t_source``, from ``line``."""

    t: float
    t_source: float | None
    line: int
    record: R

    @property
    def at(self) -> float:
        """Where it belongs on the signal's time line: the sample that caused it, else its emission."""
        return self.t if self.t_source is None else self.t_source


class JournalRecords:
    """A journal's events as typed records: in journal order (``ordered``) and per record class (``of``).

    Lines that do not fit their record are left out and said in ``problems`` (with the line and field),
    so one damaged line does not hide the rest of a session."""

    def __init__(self) -> None:
        self.ordered: list[Stamped[Record]] = []
        self.problems: list[str] = []
        self.counts: dict[str, int] = {}  # events per kind, every line (records, unread kinds, left out)
        self.t_first: float | None = None  # the first event's envelope time (journal order), any kind
        self.t_max: float | None = None  # the latest envelope time of any event
        self._by_class: dict[type[Record], list[Stamped[Any]]] = {}

    def add(self, stamped: Stamped[Record]) -> None:
        self.ordered.append(stamped)
        self._by_class.setdefault(type(stamped.record), []).append(stamped)

    def of(self, cls: type[R]) -> list[Stamped[R]]:
        """Every record of exactly class ``cls``, in journal order."""
        return list(self._by_class.get(cls, ()))

    def first(self, cls: type[R]) -> Stamped[R] | None:
        found = self._by_class.get(cls)
        return found[0] if found else None

    def last(self, cls: type[R]) -> Stamped[R] | None:
        found = self._by_class.get(cls)
        return found[-1] if found else None


def _envelope_time(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_records(events: Iterable[Mapping[str, Any]], source: str = "journal") -> JournalRecords:
    """The records of a journal's events (as ``read_journal`` returns them: event ``i`` is line ``i + 1``).

    ``source`` names the journal in problems (``journal.jsonl:17: feature event: ...``)."""
    out = JournalRecords()
    for i, e in enumerate(events):
        where = f"{source}:{i + 1}"
        kind, t = e.get("kind"), _envelope_time(e.get("t"))
        t_source = e.get("t_source")
        if isinstance(kind, str):
            out.counts[kind] = out.counts.get(kind, 0) + 1
        if t is not None:
            out.t_first = t if out.t_first is None else out.t_first
            out.t_max = t if out.t_max is None else max(out.t_max, t)
        try:
            if not isinstance(kind, str) or t is None:
                raise RecordError(f"{where}: an event needs a text 'kind' and a number 't', not "
                                  f"{_shown(kind)} and {_shown(e.get('t'))}")
            if t_source is not None and _envelope_time(t_source) is None:
                raise RecordError(f"{where}: {kind} event: 't_source' should be a number or null, not "
                                  f"{_shown(t_source)}")
            record = parse(kind, e.get("data") or {}, where)
        except RecordError as exc:
            out.problems.append(f"{exc} (event left out)")
            continue
        if record is not None:
            out.add(Stamped(t, _envelope_time(t_source), i + 1, record))
    return out

