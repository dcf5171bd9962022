"""Build (or rebuild) a session's report from its folder alone.

Inputs: ``journal.jsonl`` (required), ``manifest.json`` and ``recording.xdf`` (used when
present). Outputs in ``<session>/report/``: one PNG per figure, ``summary.json`` (every
number the report shows) and a self-contained ``report.html``. Rebuilding overwrites the
previous report: it is derived data.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.lang.compiled import Protocol
from controller.recording.journal import json_default
from controller.recording.session import REPORT_DIR, XDF_NAME
from controller.report import (
    figures,
    fmri,
    fmri_figures,
    haemodynamics,
    html,
    metrics,
    phase_error,
    seizure,
    stim_figures,
    stimulation,
)
from controller.report.data import SessionData, load_session
from controller.report.protocol_copy import load_session_protocol
from controller.report.recording import Recording, load_recording
from controller.report.seizure import condition_features
from controller.report.xdf_summary import summarize_streams

log = logging.getLogger(__name__)

REPORT_HTML = "report.html"
SUMMARY_JSON = "summary.json"


def _strict(obj: Any) -> Any:
    """Replace NaN/inf by None so summary.json is strict JSON any tool can read."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def summarize(data: SessionData, xdf: list[dict[str, Any]] | dict[str, str]) -> dict[str, Any]:
    """Every number of the report, as one JSON-ready dict."""
    rows = metrics.block_table(data)
    train = metrics.feedback_rows(data, rows)
    manifest = data.manifest
    fb = data.features.get(data.feedback_feature) if data.feedback_feature else None
    return {
        "session_id": data.session_id,
        "protocol": data.protocol,
        "protocol_sha256": data.protocol_sha256,
        "status": data.status,
        "start_iso": (manifest.get("start") or {}).get("iso"),
        "t0_lsl": data.t0,
        "duration_s": data.t_end - data.t0,
        "citation": data.citation,
        "feedback_feature": data.feedback_feature,
        "totals": {
            "rewards": int(data.decisions["reward"].sum()),
            "decisions": int(data.decisions["reward"].size),
            "feature_updates": int(fb.value.size) if fb is not None else 0,
        },
        "blocks": rows,
        "feedback_blocks": [r["index"] for r in train],
        "reward_rate_definition": metrics.REWARD_RATE_DEFINITION,
        "learning_curve": metrics.learning_curve(train),
        "thresholds": metrics.threshold_summary(data),
        "threshold_adaptations": [{**a, "t_s": a["t"] - data.t0} for a in data.adaptations],
        "identity": manifest.get("identity") or {},
        "inputs": {name: {k: v for k, v in spec.items() if k != "si_scale"}
                   for name, spec in data.input_streams.items()},
        "latency_ms": metrics.latency_stats(data),
        "signal_quality": metrics.signal_quality(data),
        "engine_summary": data.engine_summary,
        "xdf": xdf,
        "journal": {"counts": data.counts, "problems": data.journal_problems},
        "software": manifest.get("software"),
        "host": (manifest.get("host") or {}).get("hostname"),
    }


def _xdf(recording: Recording) -> list[dict[str, Any]] | dict[str, str]:
    if recording.error:
        return {"error": recording.error}
    try:
        return summarize_streams(recording.streams)
    except Exception as exc:  # noqa: BLE001 - a damaged XDF must not stop the report
        log.warning("report: cannot summarize %s: %s", recording.path, exc)
        return {"error": f"{XDF_NAME} could not be summarized: {exc}"}


def _stim_features(data: SessionData, protocol: Protocol | None) -> list[str]:
    """Features to draw under the commands: those the stimulation rules and interlocks compare."""
    names: list[str] = []
    if protocol is not None:
        for cond in [r.when for r in protocol.rules if r.do.stimulation is not None and r.at is None] + \
                [lk.when for lk in protocol.interlocks]:
            names += sorted(condition_features(cond) - set(names))
    names = [n for n in names if n in data.features]
    return names or sorted(data.features, key=lambda n: (n != data.feedback_feature, n))


def _guarded(what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """One part of the report; if it fails, the rest is still built and the part says why."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - a report part must not take the whole report down
        log.exception("report: the %s part failed", what)
        return {"error": f"the {what} part of the report failed: {exc!r}"}


def closed_loop(data: SessionData, recording: Recording, protocol: Protocol | None, protocol_error: str | None,
                session_dir: Path) -> tuple[stimulation.SessionStimulation | None, dict[str, Any]]:
    """The stimulation, seizure and phase-error parts of summary.json."""
    stim = _guarded("stimulation", stimulation.collect, data, session_dir)
    if isinstance(stim, dict):  # it failed: say so in place of the section
        stim_summary, stim = {**stim, "problems": [stim["error"]]}, None
    else:
        stim_summary = _guarded("stimulation", stimulation.summary, stim)
    commands = stim.commands if stim is not None else None
    seiz = _guarded("seizure detection", seizure.seizure_metrics, data, protocol, recording, commands)
    phase = _guarded("phase error", phase_error.phase_errors, protocol, recording, commands)
    if stim_summary is not None and protocol_error and "problems" in stim_summary:
        stim_summary["problems"].append(f"protocol copy: {protocol_error} (no seizure or phase metrics)")
    out: dict[str, Any] = {"stimulation": stim_summary, "seizure": seiz, "phase_error": phase}
    if phase is not None:
        out["phase_error_definition"] = phase_error.DEFINITION
    return stim, out


def fmri_part(data: SessionData, protocol: Protocol | None) -> tuple[fmri.FmriSession | None, dict[str, Any] | None]:
    """The fMRI part of summary.json (None without volume events) and what its figures need."""
    fm = _guarded("fMRI", fmri.collect, data, protocol)
    if isinstance(fm, dict):  # it failed: say so in place of the section
        return None, fm
    return (fm, _guarded("fMRI", fmri.summary, fm)) if fm is not None else (None, None)


def build_report(session_dir: Path | str) -> Path:
    """(Re)build ``<session_dir>/report/`` and return the path of ``report.html``."""
    session_dir = Path(session_dir)
    data = load_session(session_dir)
    recording = load_recording(session_dir / XDF_NAME)
    summary = summarize(data, _xdf(recording))
    protocol, protocol_error = load_session_protocol(session_dir, data.manifest)
    stim, extra = closed_loop(data, recording, protocol, protocol_error, session_dir)
    summary.update(extra)
    fm, summary["fmri"] = fmri_part(data, protocol)
    summary["haemodynamics"] = _guarded("fNIRS", haemodynamics.summary, protocol, data)
    out = session_dir / REPORT_DIR
    out.mkdir(exist_ok=True)

    train = [r for r in summary["blocks"] if r["index"] in set(summary["feedback_blocks"])]
    fb = data.feedback_feature
    made = {
        "features": (figures.feature_figure(data),
                     "Feature values over time (x = time of the newest sample used). Shaded: blocks by label; "
                     "steps: thresholds as set and adapted; ticks at the top: rewards (and other rule decisions)."),
        "reward_rate": (figures.reward_rate_figure(data, train),
                        f"Reward rate per feedback block; {metrics.REWARD_RATE_DEFINITION}. "
                        "Labels give rate and rewards/updates."),
        "learning_curve": (figures.learning_curve_figure(data, summary["learning_curve"]),
                           f"Mean ± SEM of {fb} in each feedback block, with a least-squares linear trend "
                           "(slope per block)."),
        "latency": (figures.latency_figure(data, summary["latency_ms"]),
                    f"Histogram of loop latency; {metrics.LATENCY_DEFINITION}."),
        "signal_quality": (figures.signal_quality_figure(data, summary["signal_quality"]),
                           "Engine state over time and input stalls (purple) / clock jumps (x); "
                           f"{metrics.INHIBITED_DEFINITION}."),
    }
    if stim is not None and "error" not in summary["stimulation"]:
        made["stim_commands"] = (
            stim_figures.commands_figure(data, stim, _stim_features(data, protocol)),
            "Every command per device over time (shape = kind; filled = sent, hollow = refused or not ready), "
            "interlocks shaded, E-STOPs dashed; below, the features the stimulation rules compare, with the "
            "delivered stimuli.")
        made["stim_latency"] = (
            stim_figures.stim_latency_figure(data, stim, summary["stimulation"]["latency_ms"]),
            f"Latency of delivered stimuli; {stimulation.LATENCY_DEFINITION}.")
    if summary["seizure"] is not None and "error" not in summary["seizure"]:
        made["seizure"] = (stim_figures.seizure_figure(data, summary["seizure"], stim),
                           "Detector feature(s) with the seizure onset (red), when the detector became live "
                           "(dotted), detections and delivered stimuli.")
    if summary["phase_error"] is not None and "error" not in summary["phase_error"]:
        made["phase_error"] = (stim_figures.phase_polar_figure(data, summary["phase_error"]),
                               f"Polar histogram of phase error (15° bins); {phase_error.DEFINITION}.")
    if summary["haemodynamics"] is not None and "error" not in summary["haemodynamics"]:
        made["haemodynamics"] = (_guarded("fNIRS figure", haemodynamics.figure, protocol, data),
                                 "fNIRS: HbO (red) and HbR (blue) per region as fed back, blocks shaded; right: "
                                 f"block average; {haemodynamics.DEFINITION}.")
        if isinstance(made["haemodynamics"][0], dict):
            made.pop("haemodynamics")
    if fm is not None and "error" not in summary["fmri"]:
        fmri_made = _guarded("fMRI figures", fmri_figures.make, data, fm, summary["fmri"])
        if "error" in fmri_made:
            summary["fmri"]["problems"].append(fmri_made["error"])
        else:
            made.update(fmri_made)
    pngs: dict[str, tuple[Path, str]] = {}
    for key, (fig, caption) in made.items():
        if fig is not None:
            pngs[key] = (figures.save(fig, out / f"{key}.png"), caption)
    summary["figures"] = {k: p.name for k, (p, _) in pngs.items()}

    with open(out / SUMMARY_JSON, "w", encoding="utf-8") as f:
        json.dump(_strict(json.loads(json.dumps(summary, default=json_default))), f, indent=2, allow_nan=False)
        f.write("\n")
    report = out / REPORT_HTML
    report.write_text(html.render(summary, pngs), encoding="utf-8")
    log.info("report for %s written to %s", data.session_id, report)
    return report
