"""A session's journal turned into arrays the report can compute and plot from.

The journal is read as typed records (controller/event_records.py, the definitions its writers
used); a line that does not fit its record is left out and named in ``journal_problems``.

Events are assigned to blocks by their order in the journal (between a ``block_start``
and its ``block_end``), which is the order the engine published them in, so no
timestamp arithmetic can put a reward in the wrong block. Events outside any block
(e.g. between a block's end and the next start) belong to block ``-1``.

Time: features, decisions and feedback are placed at ``t_source`` (the newest sample
that produced them) when they have one, else at ``t``; blocks, thresholds, states and
input events at ``t``. Plots use seconds since ``session_start``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller.event_records import (
    BlockEnd,
    BlockStart,
    Decision,
    Fault,
    Feature,
    Feedback,
    InputStatus,
    JournalRecords,
    SessionEnd,
    SessionStart,
    Stamped,
    State,
    Threshold,
    TimelineEntry,
    read_records,
)
from controller.recording.journal import JOURNAL_NAME, read_journal
from controller.recording.session import MANIFEST_NAME
from controller.report.protocol_copy import ProtocolEntry

log = logging.getLogger(__name__)

_COMPARISON = re.compile(r"\b([A-Za-z_]\w*)\s*(?:<=|>=|<|>)\s*([A-Za-z_]\w*)\b")


@dataclass
class BlockSpan:
    index: int
    label: str
    cycle: int | None
    t_start: float
    t_end: float
    ended: bool  # False when the journal has no block_end for it (stopped or crashed)


@dataclass
class Series:
    """Times, values and block numbers of one feature (or one threshold)."""

    t: np.ndarray
    value: np.ndarray
    block: np.ndarray  # block index per point, -1 outside blocks
    reason: list[str] = field(default_factory=list)  # thresholds only


@dataclass
class SessionData:
    session_dir: Path
    session_id: str
    protocol: str
    protocol_sha256: str | None
    manifest: dict[str, Any]
    citation: str | None
    t0: float
    t_end: float
    status: str | None
    engine_summary: dict[str, Any]
    timeline: list[TimelineEntry]
    feedback_feature: str | None
    blocks: list[BlockSpan]
    features: dict[str, Series]
    thresholds: dict[str, Series]
    threshold_features: dict[str, str]  # threshold name -> feature it is compared with
    decisions: dict[str, np.ndarray]  # t, rule, block, latency_s, reward (bool); action list apart
    decision_actions: list[str]
    feedback: dict[str, np.ndarray]  # t, value, raw, latency_s
    states: list[tuple[float, str, str | None]]
    inputs: list[tuple[float, str, str, str]]
    faults: list[Stamped[Fault]]
    adaptations: list[dict[str, Any]]  # adaptive threshold changes: the comparison rate and the reward rate
    input_streams: dict[str, dict[str, Any]]  # input -> its stream at start: name, rate, channels, units
    counts: dict[str, int]
    journal_problems: list[str]
    # the whole journal as typed records, in order (stimulation, fMRI, seizure read their kinds from it)
    journal: JournalRecords = field(default_factory=JournalRecords)
    start: SessionStart = field(default_factory=SessionStart)  # an empty one when the journal has none
    end: SessionEnd | None = None


def _num(x: float | None) -> float:
    """A float from an optional journal number; NaN for one that is not there."""
    return math.nan if x is None else float(x)


def _acquired_in(block_index: int | None, current: int) -> int | tuple[int, int]:
    """The journal position of the open block, or (timeline position the event says, that fallback)."""
    return (block_index, current) if block_index is not None else current


def _citation(manifest: dict[str, Any]) -> str | None:
    source = manifest.get("source")
    if isinstance(source, str):
        return source or None
    if isinstance(source, dict):
        cite = source.get("citation")
        return str(cite) if cite else None
    return None


def threshold_features_from_conditions(
    conditions: list[str], features: set[str], thresholds: set[str]
) -> dict[str, str]:
    """Which feature each threshold is compared with, read from rule condition texts."""
    out: dict[str, str] = {}
    for text in conditions:
        for a, b in _COMPARISON.findall(text):
            if a in features and b in thresholds:
                out.setdefault(b, a)
            elif b in features and a in thresholds:
                out.setdefault(a, b)
    return out


def load_session(session_dir: Path | str) -> SessionData:
    """Read ``journal.jsonl`` (and ``manifest.json`` when present) of a session folder."""
    session_dir = Path(session_dir)
    journal_path = session_dir / JOURNAL_NAME
    if not journal_path.is_file():
        raise FileNotFoundError(f"report: {session_dir} has no {JOURNAL_NAME}")
    problems: list[str] = []
    events = read_journal(journal_path, on_truncated=problems.append)
    manifest: dict[str, Any] = {}
    manifest_path = session_dir / MANIFEST_NAME
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    else:
        problems.append(f"{manifest_path} is missing: software versions and hashes unknown")
    return from_events(events, session_dir, manifest, problems)


def from_events(
    events: list[dict[str, Any]],
    session_dir: Path,
    manifest: dict[str, Any],
    problems: list[str] | None = None,
) -> SessionData:
    """Build SessionData from journal events (in journal order, as ``read_journal`` returns them)."""
    problems = list(problems or [])
    if not events:
        raise ValueError(f"report: the journal of {session_dir} holds no events")
    journal = read_records(events, JOURNAL_NAME)
    problems += journal.problems
    if journal.t_first is None or journal.t_max is None:
        raise ValueError(f"report: no event of the journal of {session_dir} has a time")
    first, last = journal.first(SessionStart), journal.last(SessionEnd)
    if first is None:
        problems.append("no session_start event: times are relative to the first event")
    if last is None:
        problems.append("no session_end event: the session did not end cleanly (stopped or crashed)")
    start = first.record if first is not None else SessionStart()
    end = last.record if last is not None else None
    t0 = first.t if first is not None else journal.t_first
    t_end = last.t if last is not None else journal.t_max

    blocks: list[BlockSpan] = []
    current = -1  # position in ``blocks`` of the open block
    feat: dict[str, list[tuple[float, float, Any]]] = {}
    thr: dict[str, list[tuple[float, float, int, str]]] = {}
    dec: list[tuple[float, float, Any, float, str]] = []
    fb: list[tuple[float, float, float, float]] = []
    states: list[tuple[float, str, str | None]] = []
    inputs: list[tuple[float, str, str, str]] = []
    adaptations: list[dict[str, Any]] = []
    conditions: list[str] = []
    for e in journal.ordered:
        r = e.record
        if isinstance(r, BlockStart):
            if current >= 0 and not blocks[current].ended:
                blocks[current].t_end = e.t  # started without the previous ending
            blocks.append(BlockSpan(r.index, r.label, r.cycle, e.t, t_end, False))
            current = len(blocks) - 1
        elif isinstance(r, BlockEnd):
            if current >= 0:
                blocks[current].t_end, blocks[current].ended = e.t, True
            current = -1
        elif isinstance(r, Feature):
            feat.setdefault(r.name, []).append((e.at, r.value, _acquired_in(r.block_index, current)))
        elif isinstance(r, Threshold):
            thr.setdefault(r.name, []).append((e.t, _num(r.value), current, r.reason))
            if r.reason == "adapt":
                adaptations.append({"t": e.t, "name": r.name, "value": r.value, "comparison_rate": r.comparison_rate,
                                    "reward_rate": r.reward_rate, "n_values": r.n_values})
        elif isinstance(r, Decision):
            dec.append((e.at, _num(r.rule), _acquired_in(r.block_index, current), _num(r.latency_s), r.action))
            if r.condition:
                conditions.append(r.condition)
        elif isinstance(r, Feedback):
            fb.append((e.at, r.value, _num(r.raw), _num(r.latency_s)))
        elif isinstance(r, State):
            states.append((e.t, r.state, r.reason))
        elif isinstance(r, InputStatus):
            inputs.append((e.t, r.input, r.status, r.detail))

    # a value or decision counts in the block its sample was acquired in (``block_index``: the block's
    # position in the timeline), not the one whose block_start preceded it in the journal
    where = {b.index: pos for pos, b in enumerate(blocks)}

    def place(p: int | tuple[int, int]) -> int:
        return p if isinstance(p, int) else where.get(p[0], p[1])

    feat = {name: [(a, b, place(c)) for a, b, c in pts] for name, pts in feat.items()}
    dec = [(a, b, place(c), d, e) for a, b, c, d, e in dec]
    features = {
        name: Series(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]), np.array([p[2] for p in pts], int))
        for name, pts in feat.items()
    }
    thresholds = {
        name: Series(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]), np.array([p[2] for p in pts], int),
                     [p[3] for p in pts])
        for name, pts in thr.items()
    }
    mapping = dict(start.threshold_features or {})
    for k, v in threshold_features_from_conditions(conditions, set(features), set(thresholds)).items():
        mapping.setdefault(k, v)

    copy = ProtocolEntry.of(manifest)
    feedback_feature = start.feedback_feature or (next(iter(features)) if features else None)
    protocol = start.protocol or copy.name or "unknown protocol"
    sha_journal = start.protocol_sha256
    if sha_journal and copy.sha256 and sha_journal != copy.sha256:
        problems.append(
            f"the journal's protocol sha256 {sha_journal[:12]}... differs from the session's protocol copy "
            f"{copy.sha256[:12]}...: the report may not describe the protocol that ran"
        )
    manifest_status = manifest.get("status")
    return SessionData(
        session_dir=session_dir,
        session_id=str(manifest.get("session_id") or session_dir.name),
        protocol=str(protocol),
        protocol_sha256=copy.sha256 or sha_journal,
        manifest=manifest,
        citation=_citation(manifest),
        t0=t0,
        t_end=t_end,
        status=(end.status if end is not None else None) or (manifest_status if isinstance(manifest_status, str)
                                                             else None),
        engine_summary=dict(end.summary or {}) if end is not None else {},
        timeline=list(start.timeline),
        feedback_feature=feedback_feature,
        blocks=blocks,
        features=features,
        thresholds=thresholds,
        threshold_features=mapping,
        decisions={
            "t": np.array([p[0] for p in dec]),
            "rule": np.array([p[1] for p in dec]),
            "block": np.array([p[2] for p in dec], int),
            "latency_s": np.array([p[3] for p in dec]),
            "reward": np.array([p[4] == "reward" for p in dec], bool),
        },
        decision_actions=[p[4] for p in dec],
        feedback={
            "t": np.array([p[0] for p in fb]),
            "value": np.array([p[1] for p in fb]),
            "raw": np.array([p[2] for p in fb]),
            "latency_s": np.array([p[3] for p in fb]),
        },
        states=states,
        inputs=inputs,
        faults=journal.of(Fault),
        adaptations=adaptations,
        input_streams={k: dict(v) for k, v in start.inputs.items()},
        counts=dict(journal.counts),
        journal_problems=problems,
        journal=journal,
        start=start,
        end=end,
    )
