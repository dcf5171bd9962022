"""The report's figures, drawn with matplotlib's object API on the Agg canvas.

No pyplot: figures are plain ``Figure`` objects rendered off-screen, so the report can be
built in any thread, on a machine without a display, without touching global state.
Every figure carries a footer with the protocol, the session id and, when the manifest
cites one, the data source.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from controller.report import metrics
from controller.report.data import SessionData

LABEL_COLOURS = {"baseline": "#4c72b0", "train": "#55a868", "rest": "#9a9a9a"}
OTHER_COLOURS = ["#dd8452", "#8172b3", "#937860", "#da8bc3", "#ccb974", "#64b5cd"]
STATE_COLOURS = {
    "running": "#55a868", "inhibited": "#c44e52", "paused": "#ccb974", "idle": "#cccccc", "stopped": "#777777",
}
REWARD_COLOUR = "#e1a100"
MARKER_COLOUR = "#8172b3"
STALL_COLOUR = "#6a3d9a"
MAX_FEATURE_PANELS = 4
DPI = 110


def label_colours(labels: list[str]) -> dict[str, str]:
    out, k = {}, 0
    for label in labels:
        if label in out:
            continue
        if label in LABEL_COLOURS:
            out[label] = LABEL_COLOURS[label]
        else:
            out[label] = OTHER_COLOURS[k % len(OTHER_COLOURS)]
            k += 1
    return out


def stamp(data: SessionData) -> str:
    text = f"{data.protocol} · session {data.session_id}"
    if data.citation:
        text += f" · data: {data.citation}"
    return "\n".join(textwrap.wrap(text, 170))


def _figure(data: SessionData, width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    lines = stamp(data).count("\n") + 1
    footer = min(0.25, (0.17 * lines + 0.08) / height)
    fig.get_layout_engine().set(rect=(0, footer, 1, 1 - footer))
    fig.text(0.005, 0.005, stamp(data), fontsize=7, color="0.35", va="bottom", ha="left")
    return fig


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _shade_blocks(ax: Any, data: SessionData, colours: dict[str, str]) -> None:
    for b in data.blocks:
        ax.axvspan(b.t_start - data.t0, b.t_end - data.t0, color=colours[b.label], alpha=0.14, lw=0)


def _thresholds_for(data: SessionData, feature: str, n_features: int) -> list[str]:
    mapped = [t for t, f in data.threshold_features.items() if f == feature and t in data.thresholds]
    unmapped = [t for t in data.thresholds if t not in data.threshold_features]
    if n_features == 1:  # only one feature: any threshold can only be about it
        mapped += unmapped
    return mapped


def feature_figure(data: SessionData) -> Figure | None:
    """The feedback feature (and other features) over time, thresholds, blocks, rewards."""
    names = sorted(data.features, key=lambda n: (n != data.feedback_feature, n))[:MAX_FEATURE_PANELS]
    if not names:
        return None
    fig = _figure(data, 11, 1.2 + 2.5 * len(names))
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    colours = label_colours([b.label for b in data.blocks])
    rewards = data.decisions["reward"]
    x_reward = data.decisions["t"][rewards] - data.t0
    x_marker = data.decisions["t"][~rewards] - data.t0
    x_end = data.t_end - data.t0
    for ax, name in zip(axes, names, strict=True):
        _shade_blocks(ax, data, colours)
        s = data.features[name]
        ax.plot(s.t - data.t0, s.value, lw=0.8, color="#1f3b73", label=name)
        for k, tname in enumerate(_thresholds_for(data, name, len(data.features))):
            th = data.thresholds[tname]
            x = np.append(th.t - data.t0, x_end)
            y = np.append(th.value, th.value[-1])
            ax.step(x, y, where="post", lw=1.4, color=f"C{(k + 3) % 10}", label=f"threshold {tname}")
        if name == data.feedback_feature:
            if x_reward.size:
                ax.vlines(x_reward, 0.93, 1.0, transform=ax.get_xaxis_transform(), color=REWARD_COLOUR,
                          lw=0.8, label=f"reward ({x_reward.size})")
            if x_marker.size:
                ax.vlines(x_marker, 0.86, 0.92, transform=ax.get_xaxis_transform(), color=MARKER_COLOUR,
                          lw=0.8, label=f"other decisions ({x_marker.size})")
        title = "feedback feature" if name == data.feedback_feature else "feature"
        ax.set_ylabel(name)
        ax.set_title(f"{title} {name}", loc="left", fontsize=9)
        handles, _ = ax.get_legend_handles_labels()
        if ax is axes[0]:
            handles += [Patch(color=c, alpha=0.3, label=lab) for lab, c in colours.items()]
        ax.legend(handles=handles, fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0),
                  ncol=min(6, len(handles)), frameon=False, borderaxespad=0.2)
        ax.set_xlim(0, max(x_end, 1e-9))
    axes[-1].set_xlabel("time since session start (s)")
    fig.suptitle(f"{data.protocol}: features, thresholds and rewards", fontsize=11)
    return fig


def reward_rate_figure(data: SessionData, train: list[dict[str, Any]]) -> Figure | None:
    """One bar per feedback block: its reward rate."""
    if not train:
        return None
    fig = _figure(data, 9, 4.2)
    ax = fig.subplots()
    x = np.arange(1, len(train) + 1)
    rates = np.array([r["reward_rate"] if r["reward_rate"] is not None else np.nan for r in train])
    colours = label_colours([b.label for b in data.blocks])
    bars = ax.bar(x, np.nan_to_num(rates), color=[colours.get(r["label"], "C0") for r in train], edgecolor="0.3")
    for bar, r in zip(bars, train, strict=True):
        text = "n/a"
        if r["reward_rate"] is not None:
            text = f"{r['reward_rate']:.2f}\n{r['n_rewards']}/{r['n_feature_updates']}"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(x, [f"{i}\n(block {r['index']})" for i, r in zip(x, train, strict=True)], fontsize=7)
    top = np.nanmax(rates) if np.isfinite(rates).any() else 1.0
    ax.set_ylim(0, max(1.0, top) * 1.18)
    ax.set_xlabel("feedback block")
    ax.set_ylabel("reward rate")
    ax.set_title(metrics.REWARD_RATE_DEFINITION, fontsize=8)
    fig.suptitle("reward rate per feedback block", fontsize=11)
    return fig


def learning_curve_figure(data: SessionData, curve: dict[str, Any]) -> Figure | None:
    """Mean ± SEM of the feedback feature per feedback block, with its linear trend."""
    if not curve["mean"]:
        return None
    fig = _figure(data, 8, 4.2)
    ax = fig.subplots()
    x = np.array(curve["block_number"], float)
    y = np.array(curve["mean"], float)
    sem = np.array([s if s is not None else 0.0 for s in curve["sem"]])
    ax.errorbar(x, y, yerr=sem, fmt="o", color="#1f3b73", capsize=3, label="block mean ± SEM")
    if curve["slope_per_block"] is not None:
        xx = np.array([x.min(), x.max()])
        ax.plot(xx, curve["intercept"] + curve["slope_per_block"] * xx, "--", color="#c44e52",
                label=f"linear trend: slope = {curve['slope_per_block']:.4g} per block")
    else:
        ax.text(0.5, 0.9, "fewer than 2 blocks: no trend", transform=ax.transAxes, ha="center", fontsize=8)
    ax.set_xticks(x)
    ax.set_xlabel("feedback block")
    ax.set_ylabel(f"mean {data.feedback_feature}")
    ax.legend(fontsize=8)
    fig.suptitle(f"learning curve: {data.feedback_feature} across feedback blocks", fontsize=11)
    return fig


def latency_figure(data: SessionData, stats: dict[str, Any]) -> Figure | None:
    """Histogram of loop latency (ms) with median, p99 and max."""
    dec = data.decisions["latency_s"][np.isfinite(data.decisions["latency_s"])] * 1e3
    fb = data.feedback["latency_s"][np.isfinite(data.feedback["latency_s"])] * 1e3
    if not (dec.size or fb.size):
        return None
    fig = _figure(data, 8, 4.2)
    ax = fig.subplots()
    both = np.concatenate([dec, fb])
    edges = np.histogram_bin_edges(both, bins="auto")
    if edges.size > 81:
        edges = np.linspace(both.min(), both.max(), 81)
    series = [(v, lab, c) for v, lab, c in ((fb, "feedback", "#4c72b0"), (dec, "decision", "#dd8452")) if v.size]
    ax.hist([v for v, _, _ in series], bins=edges, stacked=True, label=[lab for _, lab, _ in series],
            color=[c for _, _, c in series])
    for key, style in (("median", "-"), ("p99", "--"), ("max", ":")):
        ax.axvline(stats[key], color="k", ls=style, lw=1, label=f"{key} {stats[key]:.2f} ms")
    ax.set_xlabel("loop latency (ms)")
    ax.set_ylabel("events")
    ax.set_title(metrics.LATENCY_DEFINITION, fontsize=8)
    ax.legend(fontsize=8)
    fig.suptitle(f"loop latency (n = {stats['n']})", fontsize=11)
    return fig


def signal_quality_figure(data: SessionData, quality: dict[str, Any]) -> Figure | None:
    """Engine states and input stalls over time."""
    if not quality["available"]:
        return None
    inputs = sorted(quality["inputs"])
    rows = ["engine state", *[f"input {n}" for n in inputs]]
    fig = _figure(data, 11, 1.6 + 0.45 * len(rows))
    ax = fig.subplots()
    seen: dict[str, str] = {}
    for a, b, state in metrics.state_intervals(data):
        colour = STATE_COLOURS.get(state, "#dddddd")
        ax.broken_barh([(a - data.t0, b - a)], (0.6, 0.8), color=colour)
        seen[state] = colour
    stalls = metrics.stall_intervals(data)
    for k, name in enumerate(inputs, start=1):
        spans = [(a - data.t0, b - a) for a, b, _ in stalls.get(name, [])]
        ax.broken_barh([(0, data.t_end - data.t0)], (k + 0.6, 0.8), color="#e8f0e8")
        if spans:
            ax.broken_barh(spans, (k + 0.6, 0.8), color=STALL_COLOUR)
        jumps = [t - data.t0 for t, n, status, _ in data.inputs if n == name and status == "clock_jump"]
        if jumps:
            ax.plot(jumps, [k + 1] * len(jumps), "kx", ms=6)
    ax.set_yticks(np.arange(len(rows)) + 1, rows, fontsize=8)
    ax.set_ylim(0.4, len(rows) + 0.6)
    ax.invert_yaxis()
    ax.set_xlim(0, max(data.t_end - data.t0, 1e-9))
    ax.set_xlabel("time since session start (s)")
    handles = [Patch(color=c, label=s) for s, c in seen.items()] + [Patch(color=STALL_COLOUR, label="input stalled")]
    fig.legend(handles=handles, fontsize=7, loc="outside lower center", ncol=len(handles), frameon=False)
    frac = quality["inhibited_fraction"]
    title = "inhibited fraction: " + ("n/a" if frac is None else f"{frac:.1%}")
    n_stalls = sum(v["stalls"] for v in quality["inputs"].values())
    ax.set_title(f"{title} ({metrics.INHIBITED_DEFINITION}); input stalls: {n_stalls}", fontsize=8)
    fig.suptitle("signal quality", fontsize=11)
    return fig
