"""A session's journal turned into arrays the report can compute and plot from.

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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller import events as ev
from controller.recording.journal import JOURNAL_NAME, read_journal
from controller.recording.session import MANIFEST_NAME

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
    timeline: list[dict[str, Any]]
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
    faults: list[dict[str, Any]]
    adaptations: list[dict[str, Any]]  # adaptive threshold changes: the comparison rate and the reward rate
    input_streams: dict[str, dict[str, Any]]  # input -> its stream at start: name, rate, channels, units
    counts: dict[str, int]
    journal_problems: list[str]
    events: list[dict[str, Any]] = field(default_factory=list)  # the whole journal, in order (stimulation etc.)


def _num(x: Any) -> float:
    """A float from a journal value; NaN for anything missing or non-numeric."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return math.nan
    return float(x)


def _acquired_in(d: dict[str, Any], current: int) -> int | tuple[int, int]:
    """The journal position of the open block, or (timeline position the event says, that fallback)."""
    bi = d.get("block_index")
    return (int(bi), current) if isinstance(bi, int) and not isinstance(bi, bool) else current


def _when(e: dict[str, Any]) -> float:
    ts = e.get("t_source")
    return float(ts) if isinstance(ts, (int, float)) else float(e["t"])


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
    """Build SessionData from journal events (in journal order)."""
    problems = list(problems or [])
    if not events:
        raise ValueError(f"report: the journal of {session_dir} holds no events")
    start = next((e for e in events if e["kind"] == ev.SESSION_START), None)
    end = next((e for e in reversed(events) if e["kind"] == ev.SESSION_END), None)
    if start is None:
        problems.append("no session_start event: times are relative to the first event")
    if end is None:
        problems.append("no session_end event: the session did not end cleanly (stopped or crashed)")
    t0 = float(start["t"]) if start else float(events[0]["t"])
    t_last = max(float(e["t"]) for e in events)
    t_end = float(end["t"]) if end else t_last
    start_data = (start or {}).get("data", {})

    blocks: list[BlockSpan] = []
    current = -1  # position in ``blocks`` of the open block
    feat: dict[str, list[tuple[float, float, Any]]] = {}
    thr: dict[str, list[tuple[float, float, int, str]]] = {}
    dec: list[tuple[float, float, Any, float, str]] = []
    fb: list[tuple[float, float, float, float]] = []
    states: list[tuple[float, str, str | None]] = []
    inputs: list[tuple[float, str, str, str]] = []
    faults: list[dict[str, Any]] = []
    adaptations: list[dict[str, Any]] = []
    conditions: list[str] = []
    for e in events:
        kind, d = e["kind"], e.get("data") or {}
        if kind == ev.BLOCK_START:
            if current >= 0 and not blocks[current].ended:
                blocks[current].t_end = float(e["t"])  # started without the previous ending
            blocks.append(BlockSpan(int(d.get("index", len(blocks))), str(d.get("label", "?")), d.get("cycle"),
                                    float(e["t"]), t_end, False))
            current = len(blocks) - 1
        elif kind == ev.BLOCK_END:
            if current >= 0:
                blocks[current].t_end, blocks[current].ended = float(e["t"]), True
            current = -1
        elif kind == ev.FEATURE:
            feat.setdefault(str(d.get("name")), []).append((_when(e), _num(d.get("value")),
                                                            _acquired_in(d, current)))
        elif kind == ev.THRESHOLD:
            thr.setdefault(str(d.get("name")), []).append(
                (float(e["t"]), _num(d.get("value")), current, str(d.get("reason", "")))
            )
            if d.get("reason") == "adapt":
                adaptations.append({"t": float(e["t"]), "name": d.get("name"), "value": d.get("value"),
                                    "comparison_rate": d.get("comparison_rate"), "reward_rate": d.get("reward_rate"),
                                    "n_values": d.get("n_values")})
        elif kind == ev.DECISION:
            action = str(d.get("action", ""))
            dec.append((_when(e), _num(d.get("rule")), _acquired_in(d, current), _num(d.get("latency_s")), action))
            if d.get("condition"):
                conditions.append(str(d["condition"]))
        elif kind == ev.FEEDBACK:
            fb.append((_when(e), _num(d.get("value")), _num(d.get("raw")), _num(d.get("latency_s"))))
        elif kind == ev.STATE:
            states.append((float(e["t"]), str(d.get("state")), d.get("reason")))
        elif kind == ev.INPUT:
            inputs.append((float(e["t"]), str(d.get("input")), str(d.get("status")), str(d.get("detail", ""))))
        elif kind == ev.FAULT:
            faults.append({"t": float(e["t"]), **d})

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
    declared = start_data.get("threshold_features")
    mapping = dict(declared) if isinstance(declared, dict) else {}
    for k, v in threshold_features_from_conditions(conditions, set(features), set(thresholds)).items():
        mapping.setdefault(k, v)

    feedback_feature = start_data.get("feedback_feature") or (next(iter(features)) if features else None)
    protocol = start_data.get("protocol") or (manifest.get("protocol") or {}).get("name") or "unknown protocol"
    sha_journal = start_data.get("protocol_sha256")
    sha_copy = (manifest.get("protocol") or {}).get("sha256")
    if sha_journal and sha_copy and sha_journal != sha_copy:
        problems.append(
            f"the journal's protocol sha256 {sha_journal[:12]}... differs from the session's protocol copy "
            f"{sha_copy[:12]}...: the report may not describe the protocol that ran"
        )
    return SessionData(
        session_dir=session_dir,
        session_id=str(manifest.get("session_id") or session_dir.name),
        protocol=str(protocol),
        protocol_sha256=sha_copy or sha_journal,
        manifest=manifest,
        citation=_citation(manifest),
        t0=t0,
        t_end=t_end,
        status=(end or {}).get("data", {}).get("status") or manifest.get("status"),
        engine_summary=(end or {}).get("data", {}).get("summary") or {},
        timeline=list(start_data.get("timeline") or []),
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
        faults=faults,
        adaptations=adaptations,
        input_streams=dict(start_data.get("inputs") or {}),
        counts=dict(Counter(e["kind"] for e in events)),
        journal_problems=problems,
        events=events,
    )
