"""The self-contained ``report.html``: figures embedded as base64 PNG, tables, provenance."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from controller.report import fmri_html, metrics, stim_html
from controller.report.page import CSS, figure, fmt, table


def render(summary: dict[str, Any], figures: dict[str, tuple[Path, str]]) -> str:
    """HTML text for ``summary`` (see build.py) and ``figures`` (key -> (png, caption))."""
    s = summary
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(s['protocol'])} – "
             f"{escape(s['session_id'])}</title><style>{CSS}</style></head><body>"]
    parts.append(f"<h1>{escape(s['protocol'])}</h1><p class='meta'>session <b>{escape(s['session_id'])}</b> · "
                 f"status <b>{fmt(s['status'])}</b> · started {fmt(s['start_iso'])} · "
                 f"duration {fmt(s['duration_s'])} s · feedback feature <b>{fmt(s['feedback_feature'])}</b></p>")
    who = s.get("identity") or {}
    if who:
        parts.append(f"<p class='meta'>participant <b>{fmt(who.get('participant'))}</b> · operator "
                     f"<b>{fmt(who.get('operator'))}</b> · site {fmt(who.get('site'))} · "
                     f"{fmt(who.get('software'))}" + (" · simulated" if who.get("simulated") else "") + "</p>")
    if s.get("citation"):
        parts.append(f"<p class='meta'>Data source: {escape(s['citation'])}</p>")
    for problem in s["journal"]["problems"]:
        parts.append(f"<p class='warn'>⚠ {escape(problem)}</p>")

    totals = s["totals"]
    parts.append("<h2>Summary</h2>" + table([{
        "blocks": len(s["blocks"]), "feedback blocks": len(s["feedback_blocks"]), "rewards": totals["rewards"],
        "decisions": totals["decisions"], "feature updates": totals["feature_updates"],
        "median latency (ms)": s["latency_ms"]["median"], "p99 latency (ms)": s["latency_ms"]["p99"],
        "inhibited": s["signal_quality"]["inhibited_fraction"],
    }], [(k, k) for k in ("blocks", "feedback blocks", "rewards", "decisions", "feature updates",
                          "median latency (ms)", "p99 latency (ms)", "inhibited")]))

    for key in figures:
        if key not in stim_html.SECTION_FIGURES and key not in fmri_html.FMRI_FIGURES:
            parts.append(figure(key, figures))
    parts.append(stim_html.stimulation_section(s.get("stimulation"), figures))
    parts.append(stim_html.seizure_section(s.get("seizure"), figures))
    parts.append(stim_html.phase_section(s.get("phase_error"), figures, s.get("phase_error_definition") or ""))
    parts.append(fmri_html.fmri_section(s.get("fmri"), figures))

    parts.append("<h2>Blocks</h2><p class='meta'>" + escape(metrics.REWARD_RATE_DEFINITION) + "</p>")
    parts.append(table(s["blocks"], [
        ("index", "block"), ("label", "label"), ("cycle", "cycle"), ("t_start_s", "start (s)"),
        ("duration_s", "duration (s)"), ("n_feature_updates", "updates"), ("n_decisions", "decisions"),
        ("n_rewards", "rewards"), ("reward_rate", "reward rate"), ("feature_mean", "feature mean"),
        ("feature_sem", "SEM"), ("ended", "ended"),
    ], left={"label"}))
    curve = s["learning_curve"]
    parts.append(f"<p>Learning-curve slope: <b>{fmt(curve['slope_per_block'], 4)}</b> "
                 f"{escape(str(s['feedback_feature']))} per feedback block.</p>")

    parts.append("<h2>Thresholds</h2>" + table(
        [{"name": k, **v, "reasons": ", ".join(v["reasons"])} for k, v in s["thresholds"].items()],
        [("name", "threshold"), ("feature", "feature"), ("n_updates", "updates"), ("initial", "initial"),
         ("final", "final"), ("reasons", "set by")], left={"name", "feature", "reasons"}))
    if s.get("threshold_adaptations"):
        parts.append("<p class='meta'>Adaptations: the comparison rate is how often the threshold's comparison "
                     "held over the period; the reward rate is how many frames were rewarded (all the rule's "
                     "conditions and its pacing).</p>" + table(
            s["threshold_adaptations"],
            [("t_s", "time (s)"), ("name", "threshold"), ("value", "new value"), ("comparison_rate", "comparison rate"),
             ("reward_rate", "reward rate"), ("n_values", "values")], left={"name"}))

    lat = s["latency_ms"]
    parts.append("<h2>Loop latency (ms)</h2><p class='meta'>" + escape(metrics.LATENCY_DEFINITION) + "</p>")
    parts.append(table([{"events": k, **lat[k]} for k in ("decision", "feedback")] + [{"events": "all", **lat}],
                        [("events", "events"), ("n", "n"), ("median", "median"), ("p99", "p99"), ("max", "max"),
                         ("mean", "mean")], left={"events"}))

    q = s["signal_quality"]
    parts.append("<h2>Signal quality</h2>")
    if q["available"]:
        parts.append(f"<p>Inhibited {fmt(q['inhibited_s'])} s of {fmt(q['active_s'])} s active "
                     f"({escape(metrics.INHIBITED_DEFINITION)}); faults logged: {q['faults']}.</p>")
        parts.append(table([{"input": k, **v} for k, v in q["inputs"].items()],
                            [("input", "input"), ("stalls", "stalls"), ("stalled_s", "stalled (s)"),
                             ("unresumed", "never resumed"), ("gaps", "short gaps (trends kept)"),
                             ("clock_jumps", "clock jumps"), ("rewarmed", "features restarted")], left={"input"}))
    else:
        parts.append("<p>No engine-state or input events in the journal.</p>")

    if s.get("inputs"):
        parts.append("<h2>Inputs</h2><p class='meta'>Each stream as found at start; values were converted to SI "
                     "units by the stream's own channel units (or the protocol's unit:).</p>" + table(
            [{"input": k, **v} for k, v in s["inputs"].items()],
            [("input", "input"), ("name", "stream"), ("rate", "Hz"), ("channels", "channels"), ("units", "units")],
            left={"input", "name", "units"}))

    parts.append("<h2>Recording (XDF)</h2>")
    if isinstance(s["xdf"], list):
        parts.append(table(s["xdf"], [
            ("name", "stream"), ("type", "type"), ("channel_count", "channels"), ("nominal_srate", "nominal Hz"),
            ("effective_srate", "effective Hz"), ("n_samples", "samples"), ("duration_s", "duration (s)"),
            ("gaps", "gaps"), ("max_gap_s", "longest gap (s)"),
        ], left={"name", "type"}))
    else:
        parts.append(f"<p class='warn'>{escape(str(s['xdf'].get('error')))}</p>")

    software = s.get("software") or {}
    packages = software.get("packages") or {}
    parts.append("<h2>Provenance</h2><p class='meta'>"
                 f"neuroreflex {fmt(software.get('neuroreflex'))} (commit {fmt(software.get('git_commit'))}); "
                 + ", ".join(f"{escape(k)} {fmt(v)}" for k, v in packages.items())
                 + f"<br>protocol sha256 {fmt(s['protocol_sha256'])}; host {fmt(s.get('host'))}; "
                 "journal events: " + ", ".join(f"{escape(k)} {v}" for k, v in s["journal"]["counts"].items())
                 + "</p></body></html>")
    return "\n".join(parts)
