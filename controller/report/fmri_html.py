"""The fMRI section of ``report.html`` (see :mod:`controller.report.html` and :mod:`controller.report.fmri`)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from controller.report.page import figure, fmt, table

FMRI_FIGURES = ("fmri_motion", "fmri_timing", "fmri_series", "fmri_pipeline")
STAGE_NAMES = {"arrival_to_feedback": "arrival → feedback (pipeline)",
               "acquisition_to_arrival": "acquisition → arrival (delivery)",
               "total": "acquisition → feedback (total)"}


def _ms(v: float) -> str:
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _timing_text(fmri: dict[str, Any]) -> str:
    """The budget statement (about the pipeline only), then delivery and the total, or why they are unknown."""
    t = fmri["timing_ms"]
    pipe = t.get("arrival_to_feedback") or {}
    out = []
    if fmri["tr_fraction"] is not None:
        text = (f"The pipeline (arrival → feedback) took a median <b>{_ms(pipe['median'])} ms</b>, "
                f"<b>{fmri['tr_fraction']:.2%}</b> of the TR budget ({fmt(fmri['tr_s'])} s); "
                f"{fmri['pipeline_over_tr']} volume(s) over it")
        spacing = fmri.get("acquired_tr_s")
        if spacing and abs(spacing - fmri["tr_s"]) > 0.01 * fmri["tr_s"]:
            text += (f"; the volumes came every {fmt(spacing)} s (faster than real time), of which it uses "
                     f"<b>{fmri['acquired_tr_fraction']:.2%}</b>")
        out.append(f"<p>{text}.</p>")
    delivery, total = t.get("acquisition_to_arrival") or {}, t.get("total") or {}
    if delivery.get("median") is None:
        out.append(f"<p>Delivery (acquisition → arrival): <b>unknown</b>; the acquisition time is "
                   f"{escape(str(fmri.get('acquisition_time')))}, so the total is unknown too.</p>")
    else:
        out.append(f"<p>Delivery (acquisition → arrival; acquisition time {escape(str(fmri.get('acquisition_time')))})"
                   f": median {_ms(delivery['median'])} ms, the scanner's and the transport's, not part of the TR "
                   f"budget. Total (acquisition → feedback, their sum): median {_ms(total['median'])} ms.</p>")
    return "".join(out)


def fmri_section(fmri: dict[str, Any] | None, figures: dict[str, tuple[Path, str]]) -> str:
    """HTML for the ``fmri`` part of summary.json; empty for a session without volumes."""
    if not fmri:
        return ""
    if "error" in fmri and "volumes" not in fmri:
        return f"<h2>fMRI</h2><p class='warn'>⚠ {escape(str(fmri['error']))}</p>"
    v, fd = fmri["volumes"], fmri["fd_mm"]
    shape = "×".join(str(x) for x in fmri["shape"]) if fmri.get("shape") else None
    parts = ["<h2>fMRI</h2><p class='meta'>" + escape(fmri["definition"]) + "</p>"]
    parts += [f"<p class='warn'>⚠ {escape(p)}</p>" for p in fmri["problems"]]
    parts.append(table([{
        "input": fmri["input"], "run": fmri["run"], "tr": fmri["tr_s"], "grid": shape, "processed": v["processed"],
        "dummies": v["dummies"], "range": f"{v['first_index']}–{v['last_index']}" if v["processed"] else None,
        "reference": v["reference_index"], "missing": v["missing"], "ooo": v["out_of_order"],
        "dup": v["duplicate"], "gaps": v["index_gaps"],
    }], [("input", "input"), ("run", "run"), ("tr", "TR (s)"), ("grid", "grid"), ("processed", "volumes"),
         ("dummies", "dummies"), ("range", "indices"), ("reference", "reference"), ("missing", "missing"),
         ("ooo", "out of order"), ("dup", "duplicates"), ("gaps", "index gaps")],
        left={"input", "run", "grid", "range"}))

    parts.append("<h3>Head motion</h3>")
    parts.append(table([{
        "mean": fd["mean"], "median": fd["median"], "max": fd["max"], "over": fd["over_limit"],
        "t": fmri["max_abs_translation_mm"], "r": fmri["max_abs_rotation_deg"],
    }], [("mean", "FD mean (mm)"), ("median", "FD median (mm)"), ("max", "FD max (mm)"),
         ("over", f"volumes with FD > {fd['limit_mm']:g} mm"), ("t", "max |translation| (mm)"),
         ("r", "max |rotation| (deg)")]))
    acc = fmri.get("motion_accuracy")
    if acc:
        if "error" in acc:
            parts.append(f"<p class='warn'>⚠ motion accuracy: {escape(str(acc['error']))}</p>")
        else:
            parts.append(f"<p>Realignment vs the simulator's truth ({escape(str(acc['truth_file']))}, "
                         f"{acc['n']} volumes, reference volume {acc['reference_index']}):</p>")
            parts.append(table([
                {"what": "translation (mm)", **acc["translation_mm"]},
                {"what": "rotation (deg)", **acc["rotation_deg"]},
            ], [("what", "parameter"), ("mean_abs", "mean |error|"), ("max_abs", "max |error|")], left={"what"}))
    parts.append(figure("fmri_motion", figures))

    parts.append("<h3>Time per volume (ms): pipeline and delivery</h3>")
    parts.append(_timing_text(fmri))
    rows = [{"stage": STAGE_NAMES.get(k, k), **s} for k, s in fmri["timing_ms"].items()]
    parts.append(table(rows, [("stage", "stage"), ("n", "n"), ("median", "median"), ("p99", "p99"),
                               ("max", "max"), ("mean", "mean")], left={"stage"}))
    parts.append(figure("fmri_timing", figures))
    parts.append(figure("fmri_pipeline", figures))

    design = fmri["design"]
    parts.append("<h3>Features and ROIs against the design</h3><p class='meta'>'on' blocks: "
                 f"{escape(', '.join(design['on_labels']) or 'none')} ({escape(design['from'])}); "
                 f"HRF: {escape(design['hrf'])}.</p>")
    rows = [{"series": f"feature {k}", **r} for k, r in fmri["features"].items()]
    for roi, r in fmri["rois"].items():
        rows += [{"series": f"ROI {roi} ({kind})", **r[kind]} for kind in ("detrended", "raw")]
    parts.append(table(rows, [("series", "series"), ("n", "values"), ("mean", "mean"), ("r", "design fit r")],
                        left={"series"}))
    parts.append(figure("fmri_series", figures))

    issues = [{"status": k.replace("_", " "), **i} for k, rows_ in fmri["input_issues"].items() for i in rows_]
    if issues:
        parts.append("<h3>Missing and out-of-order volumes</h3>")
        parts.append(table([{**i, "t_s": f"{i['t_s']:.3f}"} for i in issues],
                            [("t_s", "time (s)"), ("status", "status"), ("detail", "detail")],
                            left={"status", "detail"}))
    return "\n".join(p for p in parts if p)
