"""Figures of the fMRI part of a report: motion and FD, time per stage (pipeline and delivery apart), ROI/feature
series, the pipeline's time histogram.

Same conventions as :mod:`controller.report.figures` (object API on Agg, footer stamp). The x axis
is the volume's acquisition number: the scanner's clock, by which blocks are assigned.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from controller.inputs.volumes.timing import ACQUISITION_TO_ARRIVAL, ARRIVAL_TO_FEEDBACK, TOTAL
from controller.report.data import SessionData
from controller.report.figures import _figure, label_colours
from controller.report.fmri import (
    FD_LIMIT_MM,
    MOTION_NAMES,
    FmriSession,
    block_runs,
    design_regressor,
    motion_accuracy,
    stacked_stages,
)

AXIS_COLOURS = ("#c44e52", "#55a868", "#4c72b0")
STAGE_COLOURS = {"read": "#8172b3", "realign": "#4c72b0", "roi": "#55a868", "glm": "#dd8452", "features": "#ccb974",
                 "other": "#9a9a9a"}
EXTRA_COLOURS = ("#da8bc3", "#64b5cd", "#937860")
MAX_SERIES_PANELS = 6
XLABEL = "volume (acquisition number)"


def gapped(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x, y with a NaN point inserted where volumes are skipped, so a line does not bridge a gap."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    cut = np.flatnonzero(np.diff(x) > 1) + 1
    if y.ndim == 1:
        return np.insert(x, cut, x[cut] - 0.5) if cut.size else x, np.insert(y, cut, np.nan) if cut.size else y
    return np.insert(x, cut, x[cut] - 0.5), np.insert(y, cut, np.nan, axis=0)


def _shade(ax: Any, fm: FmriSession, colours: dict[str, str]) -> None:
    first = fm.first_counted_index
    runs = block_runs(fm.design_labels, first + np.arange(len(fm.design_labels))) if fm.design_labels \
        and first is not None else block_runs(fm.block, fm.index)  # design labels fill missing volumes
    for a, b, lab in runs:
        ax.axvspan(a, b, color=colours[lab], alpha=0.14, lw=0)


def seconds_axis(ax: Any, fm: FmriSession) -> None:
    """A second x axis under the volumes: seconds of the run from its first counted volume's acquisition
    (number x TR), the scanner's time whichever volumes the session saw."""
    first = fm.first_counted_index
    if first is None or not fm.tr_s:
        return
    tr = float(fm.tr_s)
    sec = ax.secondary_xaxis("bottom", functions=(lambda v: (v - first) * tr, lambda s: s / tr + first))
    sec.spines["bottom"].set_position(("outward", 34))
    sec.set_xlabel(f"run time (s; volume {first} = 0 s, TR {tr:g} s)", fontsize=8)
    sec.tick_params(labelsize=7)


def _block_legend(colours: dict[str, str]) -> list[Patch]:
    return [Patch(color=c, alpha=0.3, label=lab) for lab, c in colours.items()]


def motion_figure(data: SessionData, fm: FmriSession, fmri: dict[str, Any]) -> Figure | None:
    """Translations, rotations (truth dashed when known) and FD with the 0.5 mm line."""
    if not fm.index.size:
        return None
    colours = label_colours([x for x in fm.block if x])
    fig = _figure(data, 11, 8.0)
    axes = fig.subplots(3, 1, sharex=True)[:]
    acc = motion_accuracy(fm)
    truth = acc if acc is not None and "expected" in acc else None
    x = fm.index
    for ax, cols, unit, title in ((axes[0], slice(0, 3), "mm", "translation"),
                                  (axes[1], slice(3, 6), "deg", "rotation")):
        _shade(ax, fm, colours)
        for k, name in enumerate(MOTION_NAMES[cols]):
            col = cols.start + k
            ax.plot(*gapped(x, fm.motion[:, col]), lw=1.0, color=AXIS_COLOURS[k], label=name)
            if truth is not None:
                ax.plot(*gapped(truth["volume_index"], truth["expected"][:, col]), lw=0.9, ls="--",
                        color=AXIS_COLOURS[k], alpha=0.7, label=f"{name} truth")
        ax.set_ylabel(unit)
        ax.set_title(f"{title} ({unit}) relative to the reference volume {fm.reference_index}"
                     + ("; dashed: simulator truth" if truth is not None else ""), loc="left", fontsize=9)
        ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=6, frameon=False,
                  borderaxespad=0.2)
    ax = axes[2]
    _shade(ax, fm, colours)
    ax.plot(*gapped(x, fm.fd), lw=1.0, color="#1f3b73", label="FD")
    ax.axhline(FD_LIMIT_MM, color="#c44e52", ls="--", lw=1.0, label=f"{FD_LIMIT_MM:g} mm")
    over = fm.fd > FD_LIMIT_MM
    if over.any():
        ax.plot(x[over], fm.fd[over], "o", ms=4, color="#c44e52", label=f"over ({int(over.sum())})")
    fd = fmri["fd_mm"]
    ax.set_ylabel("FD (mm)")
    ax.set_title("framewise displacement: " + ("n/a" if fd["mean"] is None else
                 f"mean {fd['mean']:.3f}, median {fd['median']:.3f}, max {fd['max']:.3f} mm"), loc="left",
                 fontsize=9)
    ax.legend(handles=ax.get_legend_handles_labels()[0] + _block_legend(colours), fontsize=7, loc="lower right",
              bbox_to_anchor=(1.0, 1.0), ncol=8, frameon=False, borderaxespad=0.2)
    ax.set_xlabel(XLABEL)
    seconds_axis(ax, fm)
    ax.set_xlim(x.min() - 0.5, x.max() + 0.5)
    fig.suptitle(f"head motion ({fm.input}; {fm.index.size} volumes)", fontsize=11)
    return fig


def _budget_text(fm: FmriSession, fmri: dict[str, Any]) -> str:
    """The TR budget statement, about the pipeline (arrival -> feedback) only."""
    pipe = fmri["timing_ms"].get(ARRIVAL_TO_FEEDBACK) or {}
    if pipe.get("median") is None:
        return "no pipeline time (arrival -> feedback) recorded"
    text = (f"pipeline (arrival -> feedback): median {pipe['median']:.1f}, p99 {pipe['p99']:.1f}, "
            f"max {pipe['max']:.1f} ms")
    if fm.tr_s:
        text += (f"; TR budget {fm.tr_s * 1e3:.0f} ms: median uses {fmri['tr_fraction']:.1%} of it, "
                 f"{fmri['pipeline_over_tr']} volume(s) over")
    spacing = fmri.get("acquired_tr_s")
    if spacing and (not fm.tr_s or abs(spacing - fm.tr_s) > 0.01 * fm.tr_s):
        text += f" ({fmri['acquired_tr_fraction']:.1%} of the {spacing * 1e3:.0f} ms between acquisitions)"
    return text


def _delivery_text(fmri: dict[str, Any]) -> str:
    d = fmri["timing_ms"].get(ACQUISITION_TO_ARRIVAL) or {}
    t = fmri["timing_ms"].get(TOTAL) or {}
    if d.get("median") is None:
        return f"delivery (acquisition -> arrival): unknown; acquisition time {fmri['acquisition_time']}"
    return (f"delivery (acquisition -> arrival): median {d['median']:.1f}, max {d['max']:.1f} ms; total (their sum): "
            f"median {t['median']:.1f}, max {t['max']:.1f} ms; not part of the TR budget")


def timing_figure(data: SessionData, fm: FmriSession, fmri: dict[str, Any]) -> Figure | None:
    """Top: the pipeline's time per volume (arrival -> feedback) stacked by stage, against the TR budget (a line
    when the bars reach half of it, else the budget in the title). Bottom: delivery (acquisition -> arrival) and
    the total apart, or 'unknown' when the source does not know the acquisition time."""
    stages = stacked_stages(fm)
    if not fm.index.size or not stages:
        return None
    fig = _figure(data, 11, 6.6)
    ax, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    bottom = np.zeros(fm.index.size)
    extra = iter(EXTRA_COLOURS * 3)
    for st in stages:
        v = np.nan_to_num(fm.timing[st], nan=0.0)
        ax.bar(fm.index, v, bottom=bottom, width=0.85, color=STAGE_COLOURS.get(st) or next(extra), label=st, lw=0)
        bottom += v
    pipe = fm.timing.get(ARRIVAL_TO_FEEDBACK)
    if pipe is not None and np.isfinite(pipe).any():
        ax.plot(fm.index, pipe, "_", color="k", ms=6, label="arrival -> feedback")
    top = float(np.nanmax(np.append(bottom, pipe if pipe is not None else []))) if bottom.size else 0.0
    if fm.tr_s and top >= 0.5 * fm.tr_s * 1e3:
        ax.axhline(fm.tr_s * 1e3, color="#c44e52", ls="--", lw=1.0, label=f"TR budget {fm.tr_s * 1e3:.0f} ms")
    ax.set_ylabel("pipeline (ms)")
    ax.set_title(_budget_text(fm, fmri), fontsize=8)
    ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(stages) + 2, frameon=False,
              borderaxespad=1.4)
    delivery, total = fm.timing.get(ACQUISITION_TO_ARRIVAL), fm.timing.get(TOTAL)
    if delivery is not None and np.isfinite(delivery).any():
        ax2.plot(fm.index, delivery, "o", ms=3, color="#8c8c8c", label="acquisition -> arrival (delivery)")
        if total is not None and np.isfinite(total).any():
            ax2.plot(fm.index, total, "_", ms=6, color="k", label="acquisition -> feedback (total)")
        ax2.legend(fontsize=7, loc="lower right", frameon=False)
    else:
        ax2.text(0.5, 0.5, "acquisition time unknown: delivery not measured (never guessed)", ha="center",
                 va="center", transform=ax2.transAxes, fontsize=9, color="0.35")
        ax2.set_yticks([])
    ax2.set_ylabel("delivery (ms)")
    ax2.set_title(_delivery_text(fmri), fontsize=8)
    ax2.set_xlabel(XLABEL)
    seconds_axis(ax2, fm)
    ax2.set_xlim(fm.index.min() - 0.5, fm.index.max() + 0.5)
    fig.suptitle("time per volume: the pipeline by stage (TR budget), and delivery apart", fontsize=11)
    return fig


def series_figure(data: SessionData, fm: FmriSession, fmri: dict[str, Any]) -> Figure | None:
    """Each fMRI feature and each ROI's mean (raw and detrended) per volume, blocks shaded."""
    panels: list[tuple[str, list[tuple[np.ndarray, np.ndarray, str]], str]] = []
    for name, (idx, val) in fm.features.items():
        r = (fmri["features"].get(name) or {}).get("r")
        fit = "" if r is None else f"; design fit r = {r:.2f}"
        panels.append((name, [(idx, val, name)], f"feature {name}{fit}"))
    for roi, s in fm.rois.items():
        r = fmri["rois"][roi]["detrended"]["r"]
        panels.append((roi, [(fm.index, s["raw"], "raw"), (fm.index, s["detrended"], "detrended")],
                       f"ROI {roi} mean" + ("" if r is None else f"; design fit r (detrended) = {r:.2f}")))
    panels = panels[:MAX_SERIES_PANELS]
    if not panels or not fm.index.size:
        return None
    colours = label_colours([x for x in fm.block if x])
    reg, first = design_regressor(fm), fm.first_counted_index
    fig = _figure(data, 11, 1.3 + 2.2 * len(panels))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (ylabel, lines, title) in zip(axes, panels, strict=True):
        _shade(ax, fm, colours)
        for k, (idx, val, lab) in enumerate(lines):
            ax.plot(*gapped(idx, val), lw=1.0, color=("#1f3b73", "#dd8452")[k % 2], marker=".", ms=3, label=lab)
        if reg is not None and first is not None:
            twin = ax.twinx()
            twin.plot(first + np.arange(reg.size), reg, color="0.35", lw=0.9, ls=":", label="design (HRF)")
            twin.set_yticks([])
            if ax is axes[0]:
                twin.legend(fontsize=7, loc="upper left", frameon=False)
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left", fontsize=9)
        handles = ax.get_legend_handles_labels()[0] + (_block_legend(colours) if ax is axes[0] else [])
        ax.legend(handles=handles, fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=8, frameon=False,
                  borderaxespad=0.2)
    axes[-1].set_xlabel(XLABEL)
    seconds_axis(axes[-1], fm)
    axes[-1].set_xlim(fm.index.min() - 0.5, fm.index.max() + 0.5)
    on = ", ".join(fm.on_labels) or "none"
    fig.suptitle(f"fMRI features and ROI means per volume ('on' blocks for the design fit: {on})", fontsize=11)
    return fig


def pipeline_histogram(data: SessionData, fm: FmriSession, fmri: dict[str, Any]) -> Figure | None:
    """Histogram of the pipeline's time per volume (arrival -> feedback) with median / p99 / max."""
    pipe = fm.timing.get(ARRIVAL_TO_FEEDBACK)
    if pipe is None or not np.isfinite(pipe).any():
        return None
    v = pipe[np.isfinite(pipe)]
    fig = _figure(data, 8, 4.2)
    ax = fig.subplots()
    edges = np.histogram_bin_edges(v, bins="auto")
    if edges.size > 61:
        edges = np.linspace(v.min(), v.max(), 61)
    if edges.size < 2 or edges[0] == edges[-1]:
        edges = np.array([v.min() - 0.5, v.max() + 0.5])
    ax.hist(v, bins=edges, color="#4c72b0", alpha=0.8)
    st = fmri["timing_ms"][ARRIVAL_TO_FEEDBACK]
    for key, style in (("median", "-"), ("p99", "--"), ("max", ":")):
        ax.axvline(st[key], color="k", ls=style, lw=1, label=f"{key} {st[key]:.1f} ms")
    ax.set_xlabel("pipeline time per volume, arrival -> feedback (ms)")
    ax.set_ylabel("volumes")
    ax.set_title(_budget_text(fm, fmri), fontsize=8)
    ax.legend(fontsize=8)
    fig.suptitle(f"time from a volume's arrival to its feature values (n = {st['n']})", fontsize=11)
    return fig


def make(data: SessionData, fm: FmriSession, fmri: dict[str, Any]) -> dict[str, tuple[Figure | None, str]]:
    """Key -> (figure or None, caption) of every fMRI figure."""
    return {
        "fmri_motion": (motion_figure(data, fm, fmri),
                        "Head motion per volume as estimated by realignment (translations mm, rotations deg, relative "
                        f"to the reference volume) and framewise displacement with the {FD_LIMIT_MM:g} mm line; "
                        "shaded: blocks by acquisition number."),
        "fmri_timing": (timing_figure(data, fm, fmri),
                        "Time per volume. Top: the pipeline (arrival -> feedback), stacked by stage (read = arrival to "
                        "fully read; other = arrival -> feedback minus the named stages), against the TR budget. "
                        "Bottom: delivery (acquisition -> arrival, the scanner's and transport's; unknown for a "
                        "folder source) and the total, apart from the budget."),
        "fmri_series": (series_figure(data, fm, fmri),
                        "fMRI feature values and ROI means (raw and GLM-detrended) per volume, blocks shaded; r = "
                        "correlation with the 'on' blocks convolved with the canonical HRF."),
        "fmri_pipeline": (pipeline_histogram(data, fm, fmri),
                          "Histogram of the pipeline's time per volume (arrival -> feedback), with median, p99 and "
                          "max."),
    }
