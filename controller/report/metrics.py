"""The numbers of a session report: per-block rewards, learning curve, latency, signal quality.

Definitions (also printed in the report's captions):

- reward rate of a block = reward decisions in the block / updates of the feedback feature
  in the block. Each feature update is one evaluation of the rules, so this is the fraction
  of evaluations on which a reward fired.
- feedback blocks = blocks labelled ``train``, plus any block in which a rule fired.
- loop latency = ``latency_s`` of decision and feedback events (emission time minus the
  time of the newest sample that produced it).
- inhibited fraction = time in state ``inhibited`` / time in ``running`` or ``inhibited``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from controller.report.data import SessionData

REWARD_RATE_DEFINITION = (
    "reward rate = reward decisions in the block / updates of the feedback feature in the block "
    "(each update is one rule evaluation)"
)
LATENCY_DEFINITION = (
    "loop latency = event time - time of the newest sample that produced it (decision and feedback events)"
)
INHIBITED_DEFINITION = "inhibited fraction = time inhibited / time running or inhibited"
ACTIVE_STATES = ("running", "inhibited")


def _finite(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x)]


def _stat(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def block_table(data: SessionData) -> list[dict[str, Any]]:
    """One row per block: timing, feature statistics, decisions, rewards, reward rate."""
    name = data.feedback_feature
    series = data.features.get(name) if name else None
    rows = []
    for pos, b in enumerate(data.blocks):
        in_block = data.decisions["block"] == pos
        values = series.value[series.block == pos] if series is not None else np.array([])
        finite = _finite(values)
        n_updates = int(values.size)
        n_rewards = int(np.count_nonzero(data.decisions["reward"] & in_block))
        rows.append({
            "index": b.index,
            "label": b.label,
            "cycle": b.cycle,
            "t_start_s": b.t_start - data.t0,
            "t_end_s": b.t_end - data.t0,
            "duration_s": b.t_end - b.t_start,
            "ended": b.ended,
            "n_feature_updates": n_updates,
            "n_decisions": int(np.count_nonzero(in_block)),
            "n_rewards": n_rewards,
            "reward_rate": n_rewards / n_updates if n_updates else None,
            "feature_mean": _stat(float(np.mean(finite))) if finite.size else None,
            "feature_sem": _stat(float(np.std(finite, ddof=1) / math.sqrt(finite.size))) if finite.size > 1 else None,
            "feature_n_nonfinite": int(values.size - finite.size),
        })
    return rows


def feedback_rows(data: SessionData, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of feedback ('train') blocks, in order."""
    fired = {data.blocks[p].label for p in data.decisions["block"] if p >= 0}
    labels = fired | {"train"}
    return [r for r in rows if r["label"] in labels]


def learning_curve(train: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean feedback feature per feedback block and its linear trend (per block)."""
    pts = [(i + 1, r["feature_mean"], r["feature_sem"]) for i, r in enumerate(train) if r["feature_mean"] is not None]
    out: dict[str, Any] = {
        "block_number": [p[0] for p in pts],
        "block_index": [r["index"] for r in train if r["feature_mean"] is not None],
        "mean": [p[1] for p in pts],
        "sem": [p[2] for p in pts],
        "slope_per_block": None,
        "intercept": None,
    }
    if len(pts) >= 2:
        slope, intercept = np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)
        out["slope_per_block"], out["intercept"] = float(slope), float(intercept)
    return out


def ms_stats(seconds: np.ndarray) -> dict[str, Any]:
    """n, median, p99, max and mean in milliseconds of the finite values of ``seconds``."""
    ms = _finite(np.asarray(seconds, dtype=float)) * 1e3
    if not ms.size:
        return {"n": 0, "median": None, "p99": None, "max": None, "mean": None}
    return {
        "n": int(ms.size),
        "median": float(np.median(ms)),
        "p99": float(np.percentile(ms, 99)),
        "max": float(ms.max()),
        "mean": float(ms.mean()),
    }


def latency_stats(data: SessionData) -> dict[str, Any]:
    """Median / p99 / max loop latency in ms, overall and per event kind."""
    stats = ms_stats
    dec, fb = data.decisions["latency_s"], data.feedback["latency_s"]
    return {**stats(np.concatenate([dec, fb])), "decision": stats(dec), "feedback": stats(fb)}


def state_intervals(data: SessionData) -> list[tuple[float, float, str]]:
    """(start, end, state) for every engine state, the last one lasting to session end."""
    states = sorted(data.states, key=lambda s: s[0])
    out = []
    for k, (t, state, _) in enumerate(states):
        t_next = states[k + 1][0] if k + 1 < len(states) else data.t_end
        if t_next > t:
            out.append((t, t_next, state))
    return out


def stall_intervals(data: SessionData) -> dict[str, list[tuple[float, float, bool]]]:
    """Per input: (start, end, resumed) of every stall; an unresumed stall lasts to session end."""
    out: dict[str, list[tuple[float, float, bool]]] = {}
    open_at: dict[str, float] = {}
    for t, name, status, _ in sorted(data.inputs, key=lambda r: r[0]):
        out.setdefault(name, [])
        if status == "stalled" and name not in open_at:
            open_at[name] = t
        elif status in ("resumed", "connected") and name in open_at:
            out[name].append((open_at.pop(name), t, True))
    for name, t in open_at.items():
        out[name].append((t, data.t_end, False))
    return out


def signal_quality(data: SessionData) -> dict[str, Any]:
    """Time inhibited, input stalls and clock jumps; ``available`` False when nothing was logged."""
    durations: dict[str, float] = {}
    for a, b, state in state_intervals(data):
        durations[state] = durations.get(state, 0.0) + (b - a)
    active = sum(durations.get(s, 0.0) for s in ACTIVE_STATES)
    inhibited = durations.get("inhibited", 0.0)
    stalls = stall_intervals(data)
    inputs: dict[str, Any] = {}
    for name in sorted({r[1] for r in data.inputs}):
        spans = stalls.get(name, [])
        inputs[name] = {
            "stalls": len(spans),
            "stalled_s": float(sum(b - a for a, b, _ in spans)),
            "clock_jumps": sum(1 for r in data.inputs if r[1] == name and r[2] == "clock_jump"),
            "gaps": sum(1 for r in data.inputs if r[1] == name and r[2] == "gap"),  # short: trends kept
            "rewarmed": sum(1 for r in data.inputs if r[1] == name and r[2] == "rewarming"),
            "unresumed": sum(1 for *_, resumed in spans if not resumed),
        }
    nonfinite = {name: int(np.count_nonzero(~np.isfinite(s.value))) for name, s in data.features.items()}
    inhibit_reasons: dict[str, int] = {}
    for _, state, reason in data.states:
        if state == "inhibited":
            key = str(reason or "unspecified")
            inhibit_reasons[key] = inhibit_reasons.get(key, 0) + 1
    return {
        "available": bool(data.states or data.inputs),
        "state_seconds": durations,
        "active_s": active,
        "inhibited_s": inhibited,
        "inhibited_fraction": inhibited / active if active > 0 else None,
        "inhibit_reasons": inhibit_reasons,
        "inputs": inputs,
        "faults": len(data.faults),
        "feature_nonfinite": nonfinite,
    }


def threshold_summary(data: SessionData) -> dict[str, Any]:
    out = {}
    for name, s in data.thresholds.items():
        out[name] = {
            "feature": data.threshold_features.get(name),
            "n_updates": int(s.value.size),
            "initial": _stat(float(s.value[0])) if s.value.size else None,
            "final": _stat(float(s.value[-1])) if s.value.size else None,
            "reasons": sorted(set(s.reason)),
        }
    return out
