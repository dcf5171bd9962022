"""Seizure detection metrics: detection latency and false detections per hour.

The seizure onset comes from the data source, never from the detector: the replay of the
seizure recording publishes ``seizure_onset`` (the LSL time of the onset sample) on a marker
stream ``<name>-annotations`` that the recording keeps, its EEG stream description states the
timing rule of every pass (sim/replay_stream.py), and the runner may journal it as an ``info``
event ``{what: "annotation", text: "seizure_onset", t: ...}``. All are read; the same onset
seen twice (within :data:`SAME_ONSET_S`) counts once. ``seizure_end`` / ``seizure_offset``
annotations and, in a looping replay, the start of each new pass close an ictal period.

Definitions (printed in the report):

- a detection is a ``decision`` of a stimulation rule (action ``stimulate:DEVICE``), placed at
  its source time (the newest sample that made the condition true);
- detection latency = first detection at/after the onset - onset (s); also for the first
  delivered stimulus (an allowed ``fire``/``start`` command, at ``t_sent``; and at its arrival
  at the device when a device log exists);
- the detector is live from the first non-NaN value of every feature the stimulation rules
  compare (line_length/area are NaN until their trend has formed);
- false detections = detection episodes in the pre-ictal time while the detector was live:
  detections closer than the rule's gap (``episode_gap`` if set, else ``refractory``, else 0)
  plus 1.5 evaluation steps of the detector feature belong to one episode (a condition that
  stays true fires again as soon as the refractory time allows: one event, not many);
- false detections per hour = false detections / live pre-ictal hours.

Times are LSL (wall) seconds. A replay at ``speed`` x streams the recording faster; its
recording-time equivalents (latency x speed, rate / speed) are given too. The rule's gap is on
the signal clock (recording time, as the engine counts it), so in LSL time it is gap / speed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controller.event_records import Annotation, Decision
from controller.lang.compiled import And, Compare, FeatureRef, Not, Or, Protocol, Sustained
from controller.report.data import SessionData
from controller.report.recording import Recording, first, marker_label, marker_texts

ONSET = "seizure_onset"
ENDS = ("seizure_end", "seizure_offset")
ANNOTATION_SUFFIX = "-annotations"
SAME_ONSET_S = 0.5
STEP_TOLERANCE = 1.5  # evaluation steps added to the episode gap
SEIZURE_KINDS = ("line_length", "area", "halfwave")
STIM_ACTION = "stimulate:"
DEFINITION = (
    "detection = decision of a stimulation rule at its source time; latency = first detection at/after the onset "
    "- onset; false detections = detection episodes (closer than the rule's episode gap / refractory + 1.5 "
    "evaluation steps count once) before the onset while the detector was live (all its features non-NaN), "
    "per hour of that live pre-ictal time"
)


def condition_features(node: Any) -> set[str]:
    if isinstance(node, Compare):
        return {o.name for o in (node.left, node.right) if isinstance(o, FeatureRef)}
    if isinstance(node, (And, Or)):
        return set().union(*(condition_features(i) for i in node.items))
    if isinstance(node, (Not, Sustained)):
        return condition_features(node.item)
    return set()


def journal_annotations(data: SessionData) -> list[tuple[float, str]]:
    """(LSL time, label) of the journal's annotation info events."""
    out = []
    for e in data.journal.of(Annotation):
        t = next((x for x in (e.record.t, e.t_source, e.t) if x is not None and math.isfinite(x)), None)
        if t is not None:
            out.append((t, marker_label(e.record.text)))
    return out


def _node(tree: Any, *path: str) -> Any:
    """pyxdf's nested ``[{key: [...]}]`` description, followed along ``path`` (None if absent)."""
    for key in path:
        if isinstance(tree, list):
            tree = tree[0] if tree else None
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def _text(tree: Any, key: str) -> str | None:
    v = _node(tree, key)
    if isinstance(v, list):
        v = v[0] if v else None
    return None if v is None else str(v)


def _float(tree: Any, key: str) -> float | None:
    try:
        v = float(_text(tree, key) or "nan")
    except ValueError:
        return None
    return v if math.isfinite(v) else None


@dataclass
class ReplayTiming:
    """What a replayed stream's description says (sim/replay_stream.py), placed on the recorded span."""

    stream: str
    speed: float = 1.0
    onsets: list[float] = field(default_factory=list)  # LSL times of every pass's onset sample
    ends: list[float] = field(default_factory=list)  # seizure_end annotations, and every new pass's start


def replay_timing(stream: dict[str, Any]) -> ReplayTiming | None:
    """Onsets (and pass starts) of a replayed stream, from its description's timing rule:
    lsl_time(file sample i, pass p) = first_sample_lsl_time + (i - start_sample + p * pass_samples) * dt.
    None when the stream is not a replay with annotations."""
    desc = stream["info"].get("desc")
    notes = _node(desc, "annotations", "annotation")
    if not isinstance(notes, list) or not notes:
        return None
    ts = np.asarray(stream["time_stamps"], dtype=float)
    name = first(stream["info"], "name")
    replay = _node(desc, "replay")
    out = ReplayTiming(name, _float(replay, "speed") or 1.0)
    t_first, dt = _float(replay, "first_sample_lsl_time"), _float(replay, "sample_interval_s")
    n_pass, start = _float(replay, "pass_samples"), _float(replay, "start_sample") or 0.0
    looping = (_text(replay, "loop") or "").lower() == "true"
    if ts.size == 0 or t_first is None or not dt or not n_pass:  # no rule: the first pass's stated time only
        for note in notes:
            label, t = _text(note, "label"), _float(note, "onset_lsl_time")
            if t is not None and label == ONSET:
                out.onsets.append(t)
            elif t is not None and label in ENDS:
                out.ends.append(t)
        return out
    lo, hi = float(ts.min()) - dt / 2, float(ts.max()) + dt / 2
    period = n_pass * dt
    passes = range(max(0, math.floor((lo - t_first) / period)), math.floor((hi - t_first) / period) + 1) \
        if looping else range(1)
    for p in passes:
        if p > 0 and lo <= t_first + p * period <= hi:
            out.ends.append(t_first + p * period)  # the file starts again: the seizure of the last pass is over
        for note in notes:
            label, sample = _text(note, "label"), _float(note, "onset_sample")
            if sample is None or sample < start or label not in (ONSET, *ENDS):
                continue
            t = t_first + (sample - start + p * n_pass) * dt
            if lo <= t <= hi:
                (out.onsets if label == ONSET else out.ends).append(t)
    return out


def xdf_annotations(recording: Recording | None) -> tuple[list[tuple[float, str, str]], float]:
    """(LSL time, label, source) of onset/end annotations in the recording, and the replay speed."""
    if recording is None:
        return [], 1.0
    out = []
    speed = 1.0
    for s in recording.marker_streams():
        name = first(s["info"], "name")
        ts, texts = marker_texts(s)
        for t, text in zip(ts, texts, strict=True):
            label = marker_label(text)
            if label == ONSET or label in ENDS:
                out.append((float(t), label, name))
    for s in recording.streams:
        if first(s["info"], "channel_format") == "string":
            continue
        timing = replay_timing(s)
        if timing is None:
            continue
        speed = timing.speed
        source = f"{timing.stream} (description)"
        out += [(t, ONSET, source) for t in timing.onsets] + [(t, ENDS[0], source) for t in timing.ends]
    return out, speed


def _merge(times: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """Sorted, with times within SAME_ONSET_S of a kept one dropped (same annotation, two sources)."""
    kept: list[tuple[float, str]] = []
    for t, src in sorted(times):
        if kept and t - kept[-1][0] <= SAME_ONSET_S:
            continue
        kept.append((t, src))
    return kept


def _episodes(times: np.ndarray, gap: float) -> int:
    if times.size == 0:
        return 0
    return int(1 + np.count_nonzero(np.diff(np.sort(times)) > gap))


@dataclass
class Detector:
    """The stimulation rules as a seizure detector: their decisions and what they watch."""

    times: np.ndarray  # source times of the rules' decisions
    rules: list[int]
    labels: set[str]  # rule labels as the dispatcher journals them
    features: list[str]
    live_t: float  # first time every feature had a value (inf: never)
    episode_gap_s: float
    problems: list[str]


def detector(data: SessionData, protocol: Protocol | None) -> Detector:
    """Which decisions are detections, which features the detector compares, when it became live."""
    problems: list[str] = []
    is_stim = np.array([a.startswith(STIM_ACTION) for a in data.decision_actions], dtype=bool)
    rules = data.decisions["rule"]
    features: set[str] = set()
    gap = 0.0
    labels: set[str] = set()
    if protocol is not None:
        stim_rules = [r for r in protocol.rules if r.at is None and r.do.stimulation is not None
                      and r.do.stimulation.kind == "stimulate"]
        if is_stim.size:
            is_stim &= np.isin(rules, [r.index for r in stim_rules])
        labels = {f"{protocol.name} {r.label}" for r in stim_rules}
        for r in stim_rules:
            features |= condition_features(r.when)
            gap = max(gap, r.episode_gap_s if r.episode_gap_s is not None else (r.refractory_s or 0.0))
    else:
        for e in data.journal.of(Decision):
            if e.record.action.startswith(STIM_ACTION):
                features |= set(re.findall(r"[A-Za-z_]\w*", e.record.condition or "")) & set(data.features)
        problems.append("no protocol copy: episode gap 0 s (refractory unknown)")
    times = data.decisions["t"][is_stim] if is_stim.size else np.array([])
    rule_ids = sorted({int(r) for r in rules[is_stim] if np.isfinite(r)}) if is_stim.size else []
    names = sorted(f for f in features if f in data.features)
    live_t, steps = -math.inf, []
    for name in names:
        series = data.features[name]
        ok = np.flatnonzero(np.isfinite(series.value))
        if ok.size == 0:
            problems.append(f"detector feature {name} never had a value")
        live_t = max(live_t, float(series.t[ok[0]]) if ok.size else math.inf)
        if series.t.size > 1:
            steps.append(float(np.median(np.diff(series.t))))
    if not names:
        live_t = data.t0
        problems.append("no detector feature found: the detector counts as live from the session start")
    gap += STEP_TOLERANCE * (max(steps) if steps else 0.0)
    return Detector(times, rule_ids, labels, names, live_t, gap, problems)


def preictal_windows(onsets: list[float], ends: list[float], live_t: float, t0: float) -> list[tuple[float, float]]:
    """Live pre-ictal spans: up to each onset, from the later of the detector going live, the session
    start and the last known end before it; after an onset whose end is unknown, nothing more."""
    windows = []
    previous = -math.inf
    for onset in onsets:
        ended = [e for e in ends if previous < e <= onset]
        if previous > -math.inf and not ended:
            break  # the previous seizure may still be going on
        lo = max([live_t, t0, *ended])
        if onset > lo:
            windows.append((lo, onset))
        previous = onset
    return windows


def _delivered(commands: list[dict[str, Any]] | None, labels: set[str], problems: list[str]) -> list[dict[str, Any]]:
    delivered = [c for c in (commands or []) if c["ok"] and c["kind"] in ("fire", "start") and c["t_sent"] is not None]
    if not labels:
        return delivered
    ours = [c for c in delivered if c["rule"] in labels]
    if delivered and not ours:
        problems.append("no delivered command names a detection rule: every fire/start counts as delivered")
        return delivered
    return ours


def _first_after(times: np.ndarray, a: float, b: float) -> float | None:
    hit = times[(times >= a) & (times < b) & np.isfinite(times)]
    return float(hit.min() - a) if hit.size else None


def seizure_metrics(data: SessionData, protocol: Protocol | None, recording: Recording | None,
                    commands: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The seizure part of summary.json; None when the session has no onset and no seizure detector."""
    from_xdf, speed = xdf_annotations(recording)
    annotations = [(t, lab, "journal") for t, lab in journal_annotations(data)] + from_xdf
    onsets = _merge([(t, src) for t, lab, src in annotations if lab == ONSET])
    ends = [t for t, _ in _merge([(t, src) for t, lab, src in annotations if lab in ENDS])]
    has_detector = protocol is not None and any(f.kind in SEIZURE_KINDS for f in protocol.features.values())
    if not onsets and not has_detector:
        return None
    t0 = data.t0
    det = detector(data, protocol)
    problems = list(det.problems)
    delivered = _delivered(commands, det.labels, problems)
    sent_t = np.array([c["t_sent"] for c in delivered], dtype=float)
    arrival_t = np.array([c["arrival_t"] if c["arrival_t"] is not None else np.nan for c in delivered])

    per_onset = []
    for k, (onset, src) in enumerate(onsets):
        end = next((t for t in ends if t > onset), math.inf)
        stop = min(onsets[k + 1][0] if k + 1 < len(onsets) else math.inf, end)
        per_onset.append({
            "onset_s": onset - t0, "onset_lsl": onset, "source": src,
            "end_s": end - t0 if math.isfinite(end) else None,
            "detector_live": bool(onset >= det.live_t),
            "decision_latency_s": _first_after(det.times, onset, stop),
            "delivered_latency_s": _first_after(sent_t, onset, stop),
            "arrival_latency_s": _first_after(arrival_t, onset, stop),
        })

    windows = preictal_windows([t for t, _ in onsets], ends, det.live_t, t0)
    live_s = float(sum(b - a for a, b in windows))
    in_window = [det.times[(det.times >= a) & (det.times < b)] for a, b in windows]
    gap_lsl = det.episode_gap_s / speed  # the rule's gap counts the recording's time (the signal clock)
    false_eps = sum(_episodes(x, gap_lsl) for x in in_window)
    headline = next((p for p in per_onset if p["detector_live"]), None)
    if onsets and headline is None:
        problems.append("every seizure onset came before the detector was live")
    if not onsets:
        problems.append("no seizure_onset annotation in the journal or the recording: no detection latency")
    latency = {key: headline[f"{key}_latency_s"] if headline else None for key in ("decision", "delivered", "arrival")}
    rate = false_eps / live_s * 3600.0 if live_s > 0 else None
    return {
        "definition": DEFINITION,
        "onsets": per_onset,
        "first_onset_s": headline["onset_s"] if headline else None,
        "detection_latency_s": latency,
        "replay_speed": speed,
        "detection_latency_recording_s": latency["decision"] * speed if latency["decision"] is not None else None,
        "stimulation_rules": det.rules,
        "detector_features": det.features,
        "detector_live_s": (det.live_t - t0) if math.isfinite(det.live_t) else None,
        "episode_gap_s": det.episode_gap_s,
        "detections": int(det.times.size),
        "preictal_live_s": live_s,
        "false_detection_decisions": int(sum(x.size for x in in_window)),
        "false_detections": int(false_eps),
        "false_detections_per_hour": rate,
        "false_detections_per_recording_hour": rate / speed if rate is not None else None,
        "problems": problems,
    }
