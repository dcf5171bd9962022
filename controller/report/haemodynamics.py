"""fNIRS in the report: HbO/HbR per region over the session with the blocks shaded, and the block-averaged
response (the haemodynamic response to each regulation block, mean +/- SEM over blocks).

A region is the set of pairs a ``haemoglobin`` feature averages; its HbO and HbR features (same pairs) are
drawn together, HbO red and HbR blue as the field draws them. The values are the features the loop computed
(what the participant was shown), not a re-analysis. Epochs run from ``PRE_S`` before each block of an
active label (the labels the rules reward in) to ``POST_S`` after it ends; each is made relative to its own
pre-onset mean, so a block average shows the rise and the 5-7 s lag of the response whatever the feature's
own baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from controller.lang.compiled import Protocol
from controller.report import figures
from controller.report.data import SessionData

PRE_S = 5.0
POST_S = 15.0
STEP_S = 0.5  # the block average's time grid
COLOURS = {"hbo": "#c0392b", "hbr": "#2e5fa8"}
DEFINITION = (f"block average: each active block's feature values from {PRE_S:g} s before its onset to {POST_S:g} s "
              f"after its end, minus their own pre-onset mean, resampled to {STEP_S:g} s steps, mean ± SEM over blocks; "
              "peak = largest mean HbO (smallest HbR) during the block and after it, with its latency from onset")


@dataclass
class Region:
    name: str  # the pairs, shortened
    pairs: tuple[str, ...]
    features: dict[str, str]  # chromophore -> feature name


def regions(protocol: Protocol | None, data: SessionData) -> list[Region]:
    """The protocol's haemoglobin features grouped by the pairs they average."""
    if protocol is None:
        return []
    out: dict[tuple[str, ...], Region] = {}
    for feat in protocol.features.values():
        if feat.kind != "haemoglobin" or feat.name not in data.features:
            continue
        pairs = tuple(sorted(c.rsplit(" ", 1)[0] for c in feat.channels))
        region = out.setdefault(pairs, Region(_short(pairs), pairs, {}))
        region.features.setdefault(feat.params.chromophore, feat.name)
    return list(out.values())


def _short(pairs: tuple[str, ...]) -> str:
    return ", ".join(pairs) if len(pairs) <= 3 else f"{pairs[0]} … {pairs[-1]} ({len(pairs)} pairs)"


def active_labels(protocol: Protocol | None, data: SessionData) -> tuple[str, ...]:
    labels = tuple(dict.fromkeys(lab for r in (protocol.rules if protocol else ()) for lab in r.during))
    return labels or tuple(dict.fromkeys(b.label for b in data.blocks if b.label not in ("rest", "baseline")))


def block_average(data: SessionData, feature: str, labels: tuple[str, ...]) -> dict[str, Any] | None:
    """Epochs of ``feature`` around each block of ``labels``: the grid, mean, SEM and peak."""
    s = data.features[feature]
    spans = [b for b in data.blocks if b.label in labels and b.t_end > b.t_start]
    if not spans or s.t.size < 2:
        return None
    length = float(np.median([b.t_end - b.t_start for b in spans]))
    grid = np.arange(-PRE_S, length + POST_S + STEP_S / 2, STEP_S)
    finite = np.isfinite(s.value)
    epochs = []
    for b in spans:
        t = s.t[finite] - b.t_start
        v = s.value[finite]
        inside = (t >= grid[0]) & (t <= grid[-1])
        if inside.sum() < 4 or t[inside][0] > grid[0] + 2 * STEP_S or t[inside][-1] < grid[-1] - 2 * STEP_S:
            continue  # a block cut short (session stopped) or without values around it
        epoch = np.interp(grid, t[inside], v[inside])
        epochs.append(epoch - epoch[grid < 0].mean())
    if not epochs:
        return None
    e = np.asarray(epochs)
    mean = e.mean(axis=0)
    sem = e.std(axis=0, ddof=1) / np.sqrt(len(e)) if len(e) > 1 else np.zeros_like(mean)
    return {"grid": grid, "mean": mean, "sem": sem, "n_blocks": len(e), "block_s": length}


def summary(protocol: Protocol | None, data: SessionData) -> dict[str, Any] | None:
    """Per region and chromophore: blocks averaged, peak change (umol/L) and its latency (s)."""
    found = regions(protocol, data)
    if not found:
        return None
    labels = active_labels(protocol, data)
    out: dict[str, Any] = {"active_labels": list(labels), "definition": DEFINITION, "regions": {}}
    for region in found:
        entry: dict[str, Any] = {"pairs": list(region.pairs)}
        for chromo, name in region.features.items():
            avg = block_average(data, name, labels)
            if avg is None:
                entry[chromo] = {"feature": name, "n_blocks": 0}
                continue
            after = avg["grid"] >= 0
            k = int(np.argmax(avg["mean"][after] if chromo == "hbo" else -avg["mean"][after]))
            entry[chromo] = {"feature": name, "n_blocks": avg["n_blocks"],
                             "peak_umol_per_l": float(avg["mean"][after][k] * 1e6),
                             "peak_latency_s": float(avg["grid"][after][k])}
        out["regions"][region.name] = entry
    return out


def figure(protocol: Protocol | None, data: SessionData) -> Figure | None:
    """Per region: HbO/HbR over the session (blocks shaded) and their block averages."""
    found = regions(protocol, data)
    if not found:
        return None
    labels = active_labels(protocol, data)
    colours = figures.label_colours([b.label for b in data.blocks])
    fig = figures._figure(data, 12, 1.4 + 2.6 * len(found))
    axes = fig.subplots(len(found), 2, squeeze=False, width_ratios=(3, 1))
    for (trace_ax, avg_ax), region in zip(axes, found, strict=True):
        figures._shade_blocks(trace_ax, data, colours)
        for chromo, name in sorted(region.features.items()):
            s = data.features[name]
            trace_ax.plot(s.t - data.t0, s.value * 1e6, lw=0.8, color=COLOURS[chromo], label=f"{chromo} ({name})")
            avg = block_average(data, name, labels)
            if avg is not None:
                g, m, e = avg["grid"], avg["mean"] * 1e6, avg["sem"] * 1e6
                avg_ax.fill_between(g, m - e, m + e, color=COLOURS[chromo], alpha=0.25, lw=0)
                avg_ax.plot(g, m, color=COLOURS[chromo], lw=1.2, label=f"{chromo} (n={avg['n_blocks']})")
                avg_ax.axvspan(0, avg["block_s"], color="0.85", alpha=0.5, lw=0)
        trace_ax.set_ylabel("µmol/L")
        trace_ax.set_title(f"region {region.name}", loc="left", fontsize=9)
        trace_ax.legend(fontsize=7, loc="upper left", frameon=False)
        trace_ax.set_xlim(0, max(data.t_end - data.t0, 1e-9))
        avg_ax.axhline(0, color="0.5", lw=0.6)
        avg_ax.set_title(f"block average ({', '.join(labels)})", loc="left", fontsize=9)
        if avg_ax.get_legend_handles_labels()[0]:
            avg_ax.legend(fontsize=7, loc="upper left", frameon=False)
        else:
            avg_ax.text(0.5, 0.5, "no complete block yet", ha="center", va="center", transform=avg_ax.transAxes,
                        fontsize=8, color="0.4")
    axes[-1, 0].set_xlabel("time since session start (s)")
    axes[-1, 1].set_xlabel("time from block onset (s)")
    fig.suptitle(f"{data.protocol}: haemoglobin per region", fontsize=11)
    return fig
