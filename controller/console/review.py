"""A finished session folder read back for review: signals, features, markers, feedback, events, blocks.

Why a model of its own: the console's review mode scrubs through a session the way the operator saw
it live, so everything is put on one clock - seconds since the session's ``session_start`` (the
journal's time 0, as the report counts it) - and cut into windows around a scrub position. This
module is Qt-free so the slicing and the reading can be tested with numpy alone.

What comes from where (the report's readers, not new ones):

- the journal (``controller.report.data.from_events`` on ``read_journal``): features, thresholds,
  feedback values, blocks, and the events the operator wants to find again (operator acts, faults,
  stimulation verdicts and commands, threshold changes, state and input changes, notes). Features come
  from the journal rather than the XDF's feature stream: the journal holds every value (NaN included,
  which the stream uses for "not computed now") and is there even when the recording is not;
- the XDF (``controller.report.recording.load_recording``): the input signal streams, found by the
  name and source id ``session_start`` recorded for each input, and the session's marker stream.
  A missing or damaged XDF is not an error: the review goes on with the journal and says why the
  signals are absent (``xdf_error``); markers are then rebuilt from the journal.

A journal whose last line was cut off (a crash mid-write) is reviewed up to that line and the loss is
named in ``problems``; any other damage, or a folder that is not a session, raises :class:`ReviewError`
naming the file and what is wrong.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller import event_records as rec
from controller.lang.compiled import StreamSelector
from controller.recording.journal import JOURNAL_NAME, JournalError, read_journal
from controller.recording.session import MANIFEST_NAME, XDF_NAME
from controller.report.data import SessionData, from_events
from controller.report.protocol_copy import load_session_protocol
from controller.report.recording import Recording, channel_labels, first, load_recording

# Journal kinds shown as events; the per-frame ones (feature, feedback, decision, volume) are plotted instead.
EVENT_KINDS = ("session_open", "session_start", "session_end", "state", "block_start", "block_end", "threshold",
               "input", "fault", "safety", "command", "delivery", "short_train", "info", "operator")
DEFAULT_CHANNELS = 8  # channels shown at first when the protocol does not name its inputs' channels


class ReviewError(ValueError):
    """The folder cannot be reviewed: not a session folder, or its journal is missing or damaged."""


# ---------------------------------------------------------------------------------------------- pieces


@dataclass(frozen=True)
class Identity:
    """Who, what and when (the manifest's identity, else the journal's first line)."""

    protocol: str
    session_id: str  # the session's id in its LSL stream names and journal
    folder: str  # the session folder's name
    participant: str | None = None
    operator: str | None = None
    site: str | None = None
    start: str | None = None  # ISO time with UTC offset
    status: str | None = None  # completed / stopped / error; None when the session did not end cleanly
    simulated: bool | None = None

    def text(self) -> str:
        """One line for the page's header ("—" for what is not known)."""
        def shown(v: object) -> str:
            return "—" if v in (None, "") else str(v)

        sim = " (simulated)" if self.simulated else ""
        return (f"{self.protocol}{sim} · session {self.session_id} · participant {shown(self.participant)} · "
                f"operator {shown(self.operator)} · started {shown(self.start)} · {shown(self.status)}")


def _span(t: np.ndarray, t0: float, t1: float) -> slice:
    """The index range of the sorted times ``t`` within [t0, t1]."""
    return slice(int(np.searchsorted(t, t0, "left")), int(np.searchsorted(t, t1, "right")))


def _sorted(t: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """``t`` and its companions in time order (stable; the usual already-sorted case copies nothing)."""
    if t.size < 2 or bool(np.all(np.diff(t) >= 0)):
        return (t, *arrays)
    order = np.argsort(t, kind="stable")
    return (t[order], *(a[order] for a in arrays))


@dataclass(frozen=True)
class SignalStream:
    """One input's recorded stream: ``data`` is samples x channels, ``times`` seconds on the session clock."""

    input: str
    name: str  # the LSL stream's name
    labels: list[str]
    srate: float  # nominal rate (0: irregular)
    units: str | None
    times: np.ndarray
    data: np.ndarray
    default_channels: list[str] = field(default_factory=list)  # what the protocol used, shown at first

    def window(self, t0: float, t1: float) -> SignalStream:
        s = _span(self.times, t0, t1)
        return SignalStream(self.input, self.name, self.labels, self.srate, self.units, self.times[s], self.data[s],
                            self.default_channels)

    def channel(self, label: str) -> np.ndarray:
        return self.data[:, self.labels.index(label)]


@dataclass(frozen=True)
class Track:
    """Times (session seconds) and values of one series: a feature, a threshold, the feedback."""

    t: np.ndarray
    value: np.ndarray

    def window(self, t0: float, t1: float) -> Track:
        s = _span(self.t, t0, t1)
        return Track(self.t[s], self.value[s])

    def __len__(self) -> int:
        return int(self.t.size)


@dataclass(frozen=True)
class Markers:
    """The session's markers (block changes, rewards, thresholds) as sent; ``source``: xdf or journal."""

    t: np.ndarray
    texts: list[str]
    source: str

    def window(self, t0: float, t1: float) -> Markers:
        s = _span(self.t, t0, t1)
        return Markers(self.t[s], self.texts[s], self.source)


@dataclass(frozen=True)
class ReviewEvent:
    """One journal event worth finding again: when (session s), its kind, what it says, its journal line."""

    t: float
    kind: str
    text: str
    line: int


@dataclass(frozen=True)
class Block:
    """A block as it ran: from its ``block_start`` to its ``block_end`` (session s, source sample times)."""

    index: int
    label: str
    start: float
    end: float
    cycle: int | None = None
    ended: bool = True  # False: no block_end (the session stopped or crashed in it)

    def overlaps(self, t0: float, t1: float) -> bool:
        return self.start <= t1 and self.end >= t0


@dataclass(frozen=True)
class ReviewWindow:
    """Everything of a session between ``t0`` and ``t1`` (session seconds)."""

    t0: float
    t1: float
    signals: dict[str, SignalStream]
    features: dict[str, Track]
    thresholds: dict[str, Track]
    markers: Markers
    feedback: Track
    events: list[ReviewEvent]
    blocks: list[Block]


# ---------------------------------------------------------------------------------------------- record


@dataclass
class SessionRecord:
    """A finished session for review; make one with :meth:`load`. Times are seconds since session start."""

    folder: Path
    identity: Identity
    t0_lsl: float  # the LSL clock time of session time 0
    duration: float
    signals: dict[str, SignalStream]
    features: dict[str, Track]
    thresholds: dict[str, Track]
    threshold_features: dict[str, str]  # threshold -> the feature it is compared with
    feedback_feature: str | None
    markers: Markers
    feedback: Track  # the value sent, 0..1
    feedback_raw: Track  # the feature value it was scaled from
    events: list[ReviewEvent]
    blocks: list[Block]
    xdf_error: str | None  # why there are no signals (None: the XDF was read)
    problems: list[str]  # what could not be read (journal lines left out, a cut-off last line, no input stream)
    data: SessionData  # the report's reading of the journal, for anything not lifted here

    @property
    def has_signals(self) -> bool:
        return bool(self.signals)

    @classmethod
    def load(cls, folder: Path | str) -> SessionRecord:
        """Read a session folder; raises :class:`ReviewError` when it is not one or its journal is damaged."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ReviewError(f"{folder}: no such folder")
        manifest_path, journal_path = folder / MANIFEST_NAME, folder / JOURNAL_NAME
        if not manifest_path.is_file() and not journal_path.is_file():
            raise ReviewError(f"{folder} is not a session folder: it holds neither {MANIFEST_NAME} nor {JOURNAL_NAME}")
        if not journal_path.is_file():
            raise ReviewError(f"{journal_path} is missing: the session's events cannot be reviewed without it")
        problems: list[str] = []
        manifest = _manifest(manifest_path, problems)
        try:
            raw = read_journal(journal_path, on_truncated=problems.append)
        except JournalError as exc:
            raise ReviewError(f"{exc} (the journal is damaged before its last line)") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ReviewError(f"{journal_path}: cannot be read: {exc}") from exc
        try:
            data = from_events(raw, folder, manifest, problems)
        except ValueError as exc:
            raise ReviewError(f"{journal_path}: {exc}") from exc
        t0 = data.t0
        recording = load_recording(folder / XDF_NAME)
        problems = list(data.journal_problems)
        signals = _signals(recording, data, t0, problems)
        markers = _xdf_markers(recording, data, t0) or _journal_markers(data, t0)
        features = {k: Track(*_sorted(s.t - t0, s.value.astype(float))) for k, s in data.features.items()}
        thresholds = {k: Track(*_sorted(s.t - t0, s.value.astype(float))) for k, s in data.thresholds.items()}
        fb_t = data.feedback["t"] - t0
        feedback = Track(*_sorted(fb_t, data.feedback["value"].astype(float)))
        feedback_raw = Track(*_sorted(fb_t, data.feedback["raw"].astype(float)))
        events = _events(raw, data, t0)
        blocks = _blocks(data, t0)
        ends = [data.t_end - t0, *(s.times[-1] for s in signals.values() if s.times.size),
                *(b.end for b in blocks)]
        return cls(folder=folder, identity=_identity(folder, manifest, raw, data), t0_lsl=t0,
                   duration=float(max(ends)), signals=signals, features=features, thresholds=thresholds,
                   threshold_features=dict(data.threshold_features), feedback_feature=data.feedback_feature,
                   markers=markers, feedback=feedback, feedback_raw=feedback_raw, events=events, blocks=blocks,
                   xdf_error=_xdf_error(recording), problems=problems, data=data)

    # ------------------------------------------------------------------------------------ scrubbing

    def window(self, t0: float, t1: float) -> ReviewWindow:
        """The slices of every series between ``t0`` and ``t1`` (session s, both ends included)."""
        if t1 < t0:
            t0, t1 = t1, t0
        return ReviewWindow(
            t0, t1,
            signals={k: s.window(t0, t1) for k, s in self.signals.items()},
            features={k: s.window(t0, t1) for k, s in self.features.items()},
            thresholds={k: s.window(t0, t1) for k, s in self.thresholds.items()},
            markers=self.markers.window(t0, t1),
            feedback=self.feedback.window(t0, t1),
            events=[e for e in self.events if t0 <= e.t <= t1],
            blocks=[b for b in self.blocks if b.overlaps(t0, t1)],
        )

    def around(self, t: float, span: float) -> ReviewWindow:
        """The window of ``span`` seconds centred on scrub position ``t``."""
        return self.window(t - span / 2, t + span / 2)

    def block_at(self, t: float) -> Block | None:
        """The block running at ``t`` (None between blocks, before the first and after the last)."""
        for b in self.blocks:
            if b.start <= t < b.end:
                return b
        return None

    def to_session_time(self, lsl_t: float | np.ndarray) -> float | np.ndarray:
        """An LSL clock time on this session's clock."""
        return lsl_t - self.t0_lsl


# ---------------------------------------------------------------------------------------------- readers


def _manifest(path: Path, problems: list[str]) -> dict[str, Any]:
    if not path.is_file():
        problems.append(f"{path} is missing: the identity comes from the journal alone")
        return {}
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path}: cannot be read ({exc}); the identity comes from the journal alone")
        return {}
    if not isinstance(obj, dict):
        problems.append(f"{path}: not a JSON object; the identity comes from the journal alone")
        return {}
    return obj


def _text(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)


def _identity(folder: Path, manifest: dict[str, Any], raw: list[dict[str, Any]], data: SessionData) -> Identity:
    opened = next((e.get("data") for e in raw if e.get("kind") == "session_open"), None)
    who = {**(opened if isinstance(opened, dict) else {}), **(manifest.get("identity") or {})}
    start = manifest.get("start")
    simulated = who.get("simulated")
    return Identity(
        protocol=str(who.get("protocol") or data.protocol),
        session_id=str(who.get("session_id") or data.start.session_id or data.session_id),
        folder=folder.name,
        participant=_text(who.get("participant")),
        operator=_text(who.get("operator")),
        site=_text(who.get("site")),
        start=_text(start.get("iso")) if isinstance(start, dict) else None,
        status=data.status,
        simulated=simulated if isinstance(simulated, bool) else None,
    )


def _xdf_error(recording: Recording) -> str | None:
    """Why the recording gives no streams (pyxdf reads garbage as an empty file rather than failing)."""
    if recording.error is None and not recording.streams:
        return f"{recording.path.name} holds no stream (empty or damaged)"
    return recording.error


def _protocol_channels(data: SessionData) -> dict[str, list[str]]:
    """The channels each input of the protocol copy picks (empty when the copy cannot be read)."""
    protocol, _why = load_session_protocol(data.session_dir, data.manifest)
    if protocol is None:
        return {}
    return {name: list(spec.channels) for name, spec in protocol.inputs.items()}


def _signals(recording: Recording, data: SessionData, t0: float, problems: list[str]) -> dict[str, SignalStream]:
    """Each input's stream in the XDF, found by the name and source id ``session_start`` recorded."""
    if recording.error is not None:
        return {}
    picked = _protocol_channels(data)
    out: dict[str, SignalStream] = {}
    for name, spec in data.input_streams.items():
        selector = StreamSelector(name=_text(spec.get("name")), source_id=_text(spec.get("source_id")))
        if selector.name is None and selector.source_id is None:
            problems.append(f"input {name}: session_start does not say which stream it was")
            continue
        found = recording.find(selector)
        if not found:
            problems.append(f"input {name}: stream {selector.name or selector.source_id} is not in "
                            f"{recording.path.name}")
            continue
        stream = found[0]
        info = stream["info"]
        series = np.asarray(stream["time_series"])
        if series.ndim != 2 or series.dtype.kind not in "fiu":
            problems.append(f"input {name}: stream {first(info, 'name')} does not hold numbers")
            continue
        labels = channel_labels(info) or [f"ch{k + 1}" for k in range(series.shape[1])]
        if len(labels) != series.shape[1]:
            labels = [f"ch{k + 1}" for k in range(series.shape[1])]
        times, values = _sorted(np.asarray(stream["time_stamps"], dtype=float) - t0, series)
        wanted = [c for c in picked.get(name, []) if c in labels] or labels[:DEFAULT_CHANNELS]
        units = spec.get("units")
        out[name] = SignalStream(name, first(info, "name"), labels, float(first(info, "nominal_srate", "0") or 0),
                                 str(units) if units else None, times, values, wanted)
    return out


def _xdf_markers(recording: Recording, data: SessionData, t0: float) -> Markers | None:
    """The session's own marker stream (``<prefix>-<session id>-markers``) from the XDF, if recorded."""
    sid = data.start.session_id
    for s in recording.streams:
        name = first(s["info"], "name")
        if first(s["info"], "channel_format") == "string" and (name.endswith(f"-{sid}-markers") if sid
                                                                else name.endswith("-markers")):
            texts = [str(x[0]) if isinstance(x, (list, tuple)) and x else str(x) for x in s["time_series"]]
            t = np.asarray(s["time_stamps"], dtype=float) - t0
            order = np.argsort(t, kind="stable")
            return Markers(t[order], [texts[i] for i in order], "xdf")
    return None


def _journal_markers(data: SessionData, t0: float) -> Markers:
    """The markers the session sent, rebuilt from the journal (as drivers/lsl_outputs.py words them)."""
    pts: list[tuple[float, str]] = []
    for e in data.journal.ordered:
        r = e.record
        if isinstance(r, rec.Decision):
            pts.append((e.at, r.action))
        elif isinstance(r, (rec.BlockStart, rec.BlockEnd)):
            pts.append((e.at, f"{r.KIND}:{r.label}"))
        elif isinstance(r, rec.Threshold) and r.value is not None:
            pts.append((e.at, f"threshold:{r.name}={r.value:.6g}"))
    pts.sort(key=lambda p: p[0])
    return Markers(np.array([p[0] - t0 for p in pts], float), [p[1] for p in pts], "journal")


def _blocks(data: SessionData, t0: float) -> list[Block]:
    """Blocks from ``block_start`` to ``block_end``, at their source sample times (the signals' clock)."""
    out: list[Block] = []
    open_: tuple[float, rec.BlockStart] | None = None
    end = data.t_end - t0

    def close(t: float, ended: bool) -> None:
        assert open_ is not None
        s, r = open_
        out.append(Block(r.index, r.label, s, t, r.cycle, ended))

    for e in data.journal.ordered:
        r = e.record
        if isinstance(r, rec.BlockStart):
            if open_ is not None:
                close(e.at - t0, False)
            open_ = (e.at - t0, r)
        elif isinstance(r, rec.BlockEnd) and open_ is not None:
            close(e.at - t0, True)
            open_ = None
    if open_ is not None:
        close(max(end, open_[0]), False)
    return out


# ---------------------------------------------------------------------------------------------- events


def _num(v: float | None, fmt: str = ".4g") -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.0%}"


def _with(text: str, reason: str | None) -> str:
    return f"{text}: {reason}" if reason else text


def summary(kind: str, data: dict[str, Any], record: rec.Record | None) -> str:
    """One line saying what an event says (the record's fields when it parsed, else the raw data)."""
    r = record
    if kind == "session_open":
        return (f"opened: {data.get('protocol', '—')} for {data.get('participant') or '—'} "
                f"by {data.get('operator') or '—'}")
    if kind == "operator":
        act = str(data.get("act", "?"))
        if act == "note":
            return f"note by {data.get('by') or '—'}: {data.get('text') or data.get('reason') or ''}".rstrip(": ")
        parts = [f"{act} by {data.get('by') or '—'} via {data.get('via') or '—'}"]
        if data.get("device"):
            parts.append(f"device {data['device']}")
        if data.get("reason"):
            parts.append(f"reason: {data['reason']}")
        if data.get("done") is False:
            parts.append("not done" + (f" ({data['refused']})" if data.get("refused") else ""))
        return ", ".join(parts)
    if isinstance(r, rec.SessionStart):
        return f"started: {r.protocol or '—'}, {len(r.timeline)} blocks"
    if isinstance(r, rec.SessionEnd):
        return f"ended: {r.status or '—'}"
    if isinstance(r, rec.State):
        return _with(r.state, r.reason)
    if isinstance(r, rec.BlockStart):
        return f"{r.label} started" + (f" (cycle {r.cycle})" if r.cycle is not None else "")
    if isinstance(r, rec.BlockEnd):
        text = f"{r.label} ended: {r.rewarded if r.rewarded is not None else '—'}/" \
               f"{r.frames if r.frames is not None else '—'} frames rewarded ({_pct(r.reward_rate)})"
        return text + (f", skipped: {r.skip_reason or 'by the operator'}" if r.skipped else "")
    if isinstance(r, rec.Threshold):
        text = f"{r.name} = {_num(r.value)} ({r.reason or 'set'})"
        if r.reason == "adapt":
            text += f": comparison held {_pct(r.comparison_rate)}, {_pct(r.reward_rate)} rewarded"
        return text
    if isinstance(r, rec.InputStatus):
        return _with(f"{r.input} {r.status}", r.detail)
    if isinstance(r, rec.Fault):
        text = _with(f"fault in {r.source}", r.reason)
        return text + (f" ({r.dropped_events} events lost)" if r.dropped_events else "")
    if isinstance(r, rec.SafetyVerdict):
        return r.verdict or f"{'allowed' if r.allowed else 'refused'} {r.command or '—'} on {r.device or '—'}"
    if isinstance(r, rec.InterlockRaised):
        return _with(f"inhibited by {r.source}", r.reason)
    if isinstance(r, rec.InterlockCleared):
        return f"{r.source} cleared"
    if isinstance(r, (rec.EStop, rec.EStopDone)):
        return _with("E-STOP" + (" carried out" if isinstance(r, rec.EStopDone) else ""), r.reason)
    if isinstance(r, rec.EStopCleared):
        return f"E-STOP cleared by {r.operator or '—'}"
    if isinstance(r, rec.Refund):
        return f"{r.device}: {r.pulses:g} pulses refunded"
    if isinstance(r, rec.DeliveryUnmatched):
        return f"{r.device}: a train no command matches ({r.delivered if r.delivered is not None else '—'} pulses)"
    if isinstance(r, rec.NotApplied):
        return _with(f"{r.device}: settings not applied", r.reason)
    if isinstance(r, rec.NotReady):
        return _with(f"{r.device} not ready", r.reason)
    if isinstance(r, rec.Command):
        text = f"{r.device} {r.command} " + ("sent" if r.ok else _with("refused", r.reason))
        return text + (f" ({r.note})" if r.note else "")
    if isinstance(r, rec.TrainDelivered):
        short = " short" if isinstance(r, rec.ShortTrain) else ""
        text = f"{r.device}:{short} train delivered {r.delivered if r.delivered is not None else '—'}" \
               f" of {_num(r.planned, 'g')} pulses"
        return _with(text, r.reason if r.short or short else None)
    if isinstance(r, rec.Annotation):
        return f"annotation: {r.text}"
    if isinstance(r, (rec.RulePaced, rec.TrMismatch)):
        return _with(r.WHAT, r.reason)
    compact = json.dumps(data, separators=(",", ":"), default=str)
    return compact if len(compact) <= 160 else compact[:157] + "..."


def _events(raw: list[dict[str, Any]], data: SessionData, t0: float) -> list[ReviewEvent]:
    """The journal's events worth finding again, in journal order, each with its one-line summary."""
    by_line = {e.line: e for e in data.journal.ordered}
    out: list[ReviewEvent] = []
    for i, e in enumerate(raw):
        kind = e.get("kind")
        if kind not in EVENT_KINDS:
            continue
        stamped = by_line.get(i + 1)
        t_src, t_env = e.get("t_source"), e.get("t")
        at = stamped.at if stamped is not None else t_src if isinstance(t_src, (int, float)) else t_env
        if not isinstance(at, (int, float)):
            continue  # an event without a time: named in problems by read_records
        raw_data = e.get("data")
        payload: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
        out.append(ReviewEvent(float(at) - t0, str(kind), summary(str(kind), payload,
                                                                  stamped.record if stamped else None), i + 1))
    return out
