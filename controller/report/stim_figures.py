"""Figures of the stimulation part of a report: commands over the features, latency, phase error.

Same conventions as :mod:`controller.report.figures` (object API on Agg, footer stamp).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from controller.report.data import SessionData
from controller.report.figures import _figure, _shade_blocks, label_colours
from controller.report.stimulation import SessionStimulation, latency_arrays

KIND_MARKERS = {"fire": "^", "start": ">", "stop": "s", "set": "o", "arm": "P", "disarm": "X", "not_ready": "x"}
DEVICE_COLOURS = ["#c44e52", "#4c72b0", "#55a868", "#8172b3", "#dd8452", "#937860"]
INTERLOCK_COLOUR = "#c44e52"
MAX_FEATURES = 3


def _device_colours(devices: list[str]) -> dict[str, str]:
    return {d: DEVICE_COLOURS[k % len(DEVICE_COLOURS)] for k, d in enumerate(devices)}


def commands_figure(data: SessionData, stim: SessionStimulation, features: list[str]) -> Figure | None:
    """Top: one row per device, a marker per command (shape = kind, hollow = refused); below: the
    features with the delivered stimuli as vertical lines; interlocks shaded, E-STOPs dashed."""
    if not stim.commands and not stim.refusals:
        return None
    names = [f for f in features if f in data.features][:MAX_FEATURES]
    devices = sorted({str(c["device"]) for c in stim.commands} | {str(r["device"]) for r in stim.refusals})
    colours = _device_colours(devices)
    fig = _figure(data, 11, 2.2 + 0.35 * len(devices) + 2.2 * len(names))
    ratios = [max(1.0, 0.35 * len(devices))] + [2.0] * len(names)
    axes = fig.subplots(1 + len(names), 1, sharex=True, squeeze=False, height_ratios=ratios)[:, 0]
    top = axes[0]
    x_end = max(data.t_end - data.t0, 1e-9)
    # commands before the session start (device setup, arming) are shown at negative times
    x_start = min([0.0] + [c["t_s"] for c in stim.commands] + [r["t_s"] for r in stim.refusals]
                  + [lk["from_s"] for lk in stim.interlocks])
    for ax in axes:
        for lock in stim.interlocks:
            b = lock["to_s"] if lock["to_s"] is not None else x_end
            ax.axvspan(lock["from_s"], b, color=INTERLOCK_COLOUR, alpha=0.10, lw=0)
        for e in stim.estops:
            ax.axvline(e["t_s"], color="k", ls="--", lw=1.2)
    seen_kinds: set[str] = set()
    for row, device in enumerate(devices):
        for kind, marker in KIND_MARKERS.items():
            for ok in (True, False):
                pts = [c["t_s"] for c in stim.commands if str(c["device"]) == device and c["kind"] == kind
                       and c["ok"] is ok]
                if not pts:
                    continue
                seen_kinds.add(kind)
                face = colours[device] if ok and kind != "not_ready" else "none"
                top.scatter(pts, [row] * len(pts), marker=marker, s=42, facecolors=face,
                            edgecolors=colours[device], linewidths=1.1, zorder=3)
        extra = [r["t_s"] for r in stim.refusals if str(r["device"]) == device and r["by"] == "governor"
                 and r["command"] not in ("fire", "start", "stop", "set")]  # refused arms etc. have no command event
        if extra:
            top.scatter(extra, [row] * len(extra), marker="P", s=42, facecolors="none",
                        edgecolors=colours[device], linewidths=1.1, zorder=3)
            seen_kinds.add("arm")
    top.set_yticks(range(len(devices)), devices, fontsize=8)
    top.set_ylim(-0.6, len(devices) - 0.4)
    top.invert_yaxis()
    top.set_title("commands per device", loc="left", fontsize=9)
    handles = [Line2D([], [], marker=KIND_MARKERS[k], ls="", color="0.3", label=k) for k in KIND_MARKERS
               if k in seen_kinds]
    handles.append(Line2D([], [], marker="^", ls="", markerfacecolor="none", color="0.3", label="refused"))
    if stim.interlocks:
        handles.append(Patch(color=INTERLOCK_COLOUR, alpha=0.25, label="interlock active"))
    top.legend(handles=handles, fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(handles),
               frameon=False, borderaxespad=0.2)

    delivered = [c for c in stim.commands if c["ok"] and c["kind"] in ("fire", "start")]
    block_colours = label_colours([b.label for b in data.blocks])
    for ax, name in zip(axes[1:], names, strict=True):
        _shade_blocks(ax, data, block_colours)
        s = data.features[name]
        ax.plot(s.t - data.t0, s.value, lw=0.8, color="#1f3b73")
        for device in devices:
            xs = [c["t_s"] for c in delivered if str(c["device"]) == device]
            if xs:
                ax.vlines(xs, 0.0, 1.0, transform=ax.get_xaxis_transform(), color=colours[device], lw=0.7,
                          alpha=0.6)
        ax.set_ylabel(name)
        ax.set_title(f"feature {name} (vertical lines: delivered stimuli)", loc="left", fontsize=9)
    axes[-1].set_xlim(x_start - 0.01 * (x_end - x_start), x_end)
    axes[-1].set_xlabel("time since session start (s)")
    fig.suptitle(f"{data.protocol}: stimulation commands", fontsize=11)
    return fig


def stim_latency_figure(data: SessionData, stim: SessionStimulation, stats: dict[str, Any]) -> Figure | None:
    """Histograms of the controller's delay (chunk arrival -> sent), and source -> sent and source -> arrival
    (end to end, from the detecting sample) of delivered stimuli (ms)."""
    lat = latency_arrays(stim)
    series = [(lat[k] * 1e3, k, c) for k, c in (("chunk_arrival_to_sent", "#55a868"), ("source_to_sent", "#4c72b0"),
                                                  ("source_to_arrival", "#dd8452"))
              if lat[k].size]
    if not series:
        return None
    fig = _figure(data, 8, 4.2)
    ax = fig.subplots()
    both = np.concatenate([v for v, _, _ in series])
    edges = np.histogram_bin_edges(both, bins="auto")
    if edges.size > 61:
        edges = np.linspace(both.min(), both.max(), 61)
    if edges.size < 2 or edges[0] == edges[-1]:
        edges = np.array([both.min() - 0.5, both.max() + 0.5])
    for values, key, colour in series:
        st = stats[key]
        ax.hist(values, bins=edges, alpha=0.55, color=colour,
                label=f"{key.replace('_', ' ').replace('to', '->')} (n={st['n']}): median {st['median']:.2f}, "
                      f"p99 {st['p99']:.2f}, max {st['max']:.2f} ms")
        ax.axvline(st["median"], color=colour, lw=1.2)
        ax.axvline(st["p99"], color=colour, lw=1.0, ls="--")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("delivered stimuli")
    ax.set_title("delivered fire/start commands; solid: median, dashed: p99", fontsize=8)
    ax.legend(fontsize=7)
    fig.suptitle("stimulation latency", fontsize=11)
    return fig


def phase_polar_figure(data: SessionData, phase: dict[str, Any]) -> Figure | None:
    """One polar histogram of phase error per phase feature, with the mean resultant vector."""
    scored = {k: v for k, v in phase.items() if v.get("errors_rad")}
    if not scored:
        return None
    n = len(scored)
    fig = _figure(data, max(6.5, 4.6 * n), 5.2)
    axes = [fig.add_subplot(1, n, i + 1, projection="polar") for i in range(n)]
    bins = np.linspace(-math.pi, math.pi, 25)
    for ax, (name, res) in zip(axes, scored.items(), strict=True):
        err = np.asarray(res["errors_rad"], dtype=float)
        counts, _ = np.histogram(err, bins=bins)
        width = bins[1] - bins[0]
        ax.bar(bins[:-1] + width / 2, counts, width=width * 0.95, color="#4c72b0", alpha=0.75, edgecolor="0.3")
        r = res["resultant_length"] or 0.0
        if res["circ_mean_rad"] is not None:
            ax.annotate("", xy=(res["circ_mean_rad"], r * max(counts.max(), 1)), xytext=(0, 0),
                        arrowprops={"arrowstyle": "->", "color": "#c44e52", "lw": 2})
        ax.set_theta_zero_location("N")
        ax.set_title(f"{name}: target {res['target_deg']:.0f}°; mean error {res['circ_mean_deg']:.1f}°, "
                     f"circ SD {res['circ_std_deg']:.1f}°, R = {r:.2f}, n = {res['n_scored']}", fontsize=8)
    fig.suptitle("phase error (0° = on target, + = later in the cycle)", fontsize=10)
    return fig


def seizure_figure(data: SessionData, seizure: dict[str, Any], stim: SessionStimulation | None) -> Figure | None:
    """The detector feature(s) with the onsets (and ends), detections and delivered stimuli."""
    names = [f for f in seizure["detector_features"] if f in data.features][:MAX_FEATURES]
    if not names or not seizure["onsets"]:
        return None
    fig = _figure(data, 11, 1.4 + 2.4 * len(names))
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    is_stim = np.array([a.startswith("stimulate:") for a in data.decision_actions], dtype=bool)
    det = data.decisions["t"][is_stim] - data.t0 if is_stim.size else np.array([])
    sent = [c["t_s"] for c in (stim.commands if stim else []) if c["ok"] and c["kind"] in ("fire", "start")]
    for ax, name in zip(axes, names, strict=True):
        s = data.features[name]
        ax.plot(s.t - data.t0, s.value, lw=0.8, color="#1f3b73", label=name)
        for k, o in enumerate(seizure["onsets"]):
            ax.axvline(o["onset_s"], color="#c44e52", lw=1.5, label="seizure onset" if k == 0 else None)
            if o["end_s"] is not None:
                ax.axvspan(o["onset_s"], o["end_s"], color="#c44e52", alpha=0.08, lw=0)
        if seizure["detector_live_s"] is not None:
            ax.axvline(seizure["detector_live_s"], color="0.4", ls=":", lw=1, label="detector live")
        if det.size:
            ax.vlines(det, 0.9, 1.0, transform=ax.get_xaxis_transform(), color="#e1a100", lw=1,
                      label=f"detections ({det.size})")
        if sent:
            ax.vlines(sent, 0.8, 0.89, transform=ax.get_xaxis_transform(), color="#55a868", lw=1,
                      label=f"delivered ({len(sent)})")
        ax.set_ylabel(name)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlim(0, max(data.t_end - data.t0, 1e-9))
    axes[-1].set_xlabel("time since session start (s)")
    speed = seizure.get("replay_speed") or 1.0
    if speed != 1.0:  # a faster replay: say it in the recording's own time, as the rules counted it
        lat, rate = seizure.get("detection_latency_recording_s"), seizure.get("false_detections_per_recording_hour")
        clock = f" (recording time; replayed at x{speed:g})"
    else:
        lat, rate, clock = seizure["detection_latency_s"]["decision"], seizure["false_detections_per_hour"], ""
    fig.suptitle("seizure detection: latency " + ("n/a" if lat is None else f"{lat:.2f} s")
                 + ", false detections " + ("n/a" if rate is None else f"{rate:.2f}/h") + clock, fontsize=11)
    return fig
