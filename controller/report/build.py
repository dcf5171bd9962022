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
from pathlib import Path
from typing import Any

from controller.recording.journal import json_default
from controller.recording.session import REPORT_DIR, XDF_NAME
from controller.report import figures, html, metrics
from controller.report.data import SessionData, load_session
from controller.report.xdf_summary import summarize_xdf

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
        "latency_ms": metrics.latency_stats(data),
        "signal_quality": metrics.signal_quality(data),
        "engine_summary": data.engine_summary,
        "xdf": xdf,
        "journal": {"counts": data.counts, "problems": data.journal_problems},
        "software": manifest.get("software"),
        "host": (manifest.get("host") or {}).get("hostname"),
    }


def _xdf(session_dir: Path) -> list[dict[str, Any]] | dict[str, str]:
    path = session_dir / XDF_NAME
    if not path.is_file():
        return {"error": f"{XDF_NAME} is absent (recording not started or not saved)"}
    try:
        return summarize_xdf(path)
    except Exception as exc:  # noqa: BLE001 - a damaged XDF must not stop the report
        log.warning("report: cannot read %s: %s", path, exc)
        return {"error": f"{XDF_NAME} could not be read: {exc}"}


def build_report(session_dir: Path | str) -> Path:
    """(Re)build ``<session_dir>/report/`` and return the path of ``report.html``."""
    session_dir = Path(session_dir)
    data = load_session(session_dir)
    summary = summarize(data, _xdf(session_dir))
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
