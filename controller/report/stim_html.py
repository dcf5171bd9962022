"""HTML sections for stimulation, seizure detection and phase error (see :mod:`controller.report.html`)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from controller.report.page import figure, table

STIM_FIGURES = ("stim_commands", "stim_latency")
SEIZURE_FIGURES = ("seizure",)
PHASE_FIGURES = ("phase_error",)
SECTION_FIGURES = STIM_FIGURES + SEIZURE_FIGURES + PHASE_FIGURES


def _times(rows: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """Rows with the given time columns as text with ms resolution (3 significant digits hide it)."""
    return [{**r, **{k: f"{r[k]:.3f}" for k in keys if isinstance(r.get(k), (int, float))
                     and not isinstance(r.get(k), bool)}} for r in rows]


def _figures(keys: tuple[str, ...], figures: dict[str, tuple[Path, str]]) -> list[str]:
    return [figure(k, figures) for k in keys if k in figures]


def stimulation_section(stim: dict[str, Any] | None, figures: dict[str, tuple[Path, str]]) -> str:
    if not stim:
        return ""
    if "error" in stim:
        return f"<h2>Stimulation</h2><p class='warn'>⚠ {escape(str(stim['error']))}</p>"
    parts = ["<h2>Stimulation</h2>"]
    parts += [f"<p class='warn'>⚠ {escape(p)}</p>" for p in stim["problems"]]
    parts.append(table([{"device": k, **v} for k, v in stim["devices"].items()], [
        ("device", "device"), ("fires", "fires"), ("single_pulses", "single pulses"), ("trains", "trains"),
        ("starts", "starts"), ("stops", "stops"), ("sets", "sets"), ("pulses_planned", "pulses planned"),
        ("pulses_delivered", "pulses delivered"), ("short_trains", "short trains"),
        ("trains_not_confirmed", "trains not confirmed"), ("refused", "refused"),
        ("not_ready", "not ready"), ("device_faults", "device faults"), ("device_log", "device log"),
        ("arrivals_matched", "arrivals matched"),
    ], left={"device", "device_log"}))
    if "delivery_definition" in stim:
        parts.append("<p class='meta'>" + escape(stim["delivery_definition"]) + "</p>")
    if stim.get("short_trains"):
        parts.append("<h3>Short trains</h3>")
        parts.append(table(_times(stim["short_trains"], "t_s"), [
            ("t_s", "time (s)"), ("device", "device"), ("rule", "rule"), ("planned", "planned"),
            ("delivered", "delivered"), ("ended_by", "ended by"), ("missed_slots", "skipped slots"),
            ("reason", "reason"),
        ], left={"device", "rule", "ended_by", "reason"}))
    parts += _figures(STIM_FIGURES, figures)
    lat = stim["latency_ms"]
    parts.append("<h3>Latency of delivered stimuli (ms)</h3><p class='meta'>"
                 + escape(stim["latency_definition"]) + "</p>")
    parts.append(table([{"path": k.replace("_to_", " → ").replace("_", " "), **v} for k, v in lat.items()],
                        [("path", "path"), ("n", "n"), ("median", "median"), ("p99", "p99"), ("max", "max"),
                         ("mean", "mean")], left={"path"}))
    parts.append("<h3>Refusals</h3>")
    parts.append(table(_times(stim["refusals"], "t_s"), [
        ("t_s", "time (s)"), ("device", "device"), ("command", "command"), ("rule", "rule"), ("limit", "limit"),
        ("value", "value"), ("limit_value", "limit's value"), ("by", "by"), ("reason", "reason"),
    ], left={"device", "command", "rule", "limit", "by", "reason"}))
    parts.append("<h3>Interlocks</h3>")
    parts.append(table(_times([{**lk, "to": lk["to_s"] if lk["to_s"] is not None else "still active"}
                                for lk in stim["interlocks"]], "from_s", "to", "duration_s"),
                        [("source", "source"), ("reason", "reason"), ("from_s", "from (s)"), ("to", "to (s)"),
                         ("duration_s", "duration (s)")], left={"source", "reason", "to"}))
    parts.append("<h3>E-STOPs</h3>")
    parts.append(table(_times(stim["estops"], "t_s"),
                        [("t_s", "time (s)"), ("reason", "reason"), ("took_ms", "took (ms)")], left={"reason"}))
    if stim["device_faults"]:
        parts.append("<h3>Device faults</h3>")
        parts.append(table(_times(stim["device_faults"], "t_s"), [("t_s", "time (s)"), ("device", "device"),
                                                    ("reason", "reason")], left={"device", "reason"}))
    parts.append("<h3>Every command</h3>")
    parts.append(table(_times(stim["commands"], "t_s"), [
        ("t_s", "time (s)"), ("device", "device"), ("kind", "kind"), ("rule", "rule"), ("verdict", "verdict"),
        ("latency_ms", "source → sent (ms)"), ("source_to_arrival_ms", "source → arrival (ms)"),
        ("sent_to_arrival_ms", "sent → arrival (ms)"),
    ], left={"device", "kind", "rule", "verdict"}))
    return "\n".join(parts)


def seizure_section(seizure: dict[str, Any] | None, figures: dict[str, tuple[Path, str]]) -> str:
    if not seizure:
        return ""
    if "error" in seizure:
        return f"<h2>Seizure detection</h2><p class='warn'>⚠ {escape(str(seizure['error']))}</p>"
    parts = ["<h2>Seizure detection</h2><p class='meta'>" + escape(seizure["definition"]) + "</p>"]
    parts += [f"<p class='warn'>⚠ {escape(p)}</p>" for p in seizure["problems"]]
    lat = seizure["detection_latency_s"]
    parts.append(table(_times([{
        "onset": seizure["first_onset_s"], "decision": lat["decision"], "delivered": lat["delivered"],
        "arrival": lat["arrival"], "false": seizure["false_detections"],
        "live": seizure["preictal_live_s"], "rate": seizure["false_detections_per_hour"],
        "features": ", ".join(seizure["detector_features"]), "gap": seizure["episode_gap_s"],
    }], "onset", "decision", "delivered", "arrival", "live"), [
        ("onset", "first onset (s)"), ("decision", "detection latency (s)"),
        ("delivered", "latency to delivered stimulus (s)"), ("arrival", "latency to arrival (s)"),
        ("false", "false detections"), ("live", "live pre-ictal time (s)"), ("rate", "false detections / h"),
        ("features", "detector"), ("gap", "episode gap (s)"),
    ], left={"features"}))
    speed = seizure.get("replay_speed") or 1.0
    if speed != 1.0:
        rec_lat, rec_rate = seizure["detection_latency_recording_s"], seizure["false_detections_per_recording_hour"]
        parts.append(f"<p>The recording was replayed at {speed:g}x: in recording time the detection latency is "
                     f"{'–' if rec_lat is None else f'{rec_lat:.3f}'} s and the false detection rate "
                     f"{'–' if rec_rate is None else f'{rec_rate:.3g}'} per hour.</p>")
    if len(seizure["onsets"]) > 1:
        parts.append(table(_times(seizure["onsets"], "onset_s", "end_s", "decision_latency_s",
                                   "delivered_latency_s"), [
            ("onset_s", "onset (s)"), ("source", "from"), ("end_s", "end (s)"), ("detector_live", "detector live"),
            ("decision_latency_s", "detection latency (s)"), ("delivered_latency_s", "delivered latency (s)"),
        ], left={"source"}))
    parts += _figures(SEIZURE_FIGURES, figures)
    return "\n".join(parts)


def phase_section(phase: dict[str, Any] | None, figures: dict[str, tuple[Path, str]], definition: str) -> str:
    if not phase:
        return ""
    if isinstance(phase.get("error"), str):
        return f"<h2>Phase error</h2><p class='warn'>⚠ {escape(phase['error'])}</p>"
    parts = ["<h2>Phase error</h2><p class='meta'>" + escape(definition) + "</p>"]
    rows = []
    for name, r in phase.items():
        if "error" in r:
            parts.append(f"<p class='warn'>⚠ {escape(name)}: {escape(str(r['error']))}</p>")
            continue
        rows.append({**r, "band": f"{r['band_hz'][0]:g}-{r['band_hz'][1]:g} Hz",
                     "timed": f"{r['timed_by']['arrival']} arrival, {r['timed_by']['t_sent']} t_sent"})
    parts.append(table(rows, [
        ("feature", "feature"), ("signal", "signal"), ("band", "band"), ("target_deg", "target (°)"),
        ("n_pulses", "pulses"), ("n_scored", "scored"), ("circ_mean_deg", "mean error (°)"),
        ("circ_std_deg", "circular SD (°)"), ("resultant_length", "R"), ("timed", "pulse time from"),
    ], left={"feature", "signal", "band", "timed"}))
    parts += _figures(PHASE_FIGURES, figures)
    return "\n".join(parts)
