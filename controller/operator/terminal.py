"""The headless display: progress in the terminal, fed from the engine's snapshot and events.

Runs in its own thread and reads the event bus; a slow terminal can never slow the loop.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from controller import events as ev
from controller.events import EventBus
from controller.lang.units import CONCENTRATION, VOLTAGE, format_quantity

_ANNOUNCE = {ev.BLOCK_START, ev.THRESHOLD, ev.STATE, ev.INPUT, ev.FAULT, ev.VOLUME}
FD_WARN_MM = 0.5  # framewise displacement worth a line of its own (the usual censoring threshold)


def _mmss(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def volume_text(qc: dict[str, Any]) -> str:
    """The newest fMRI volume for the status line: its number, head motion (FD), the pipeline's time
    (arrival -> feedback) and, when the source knows the acquisition time, the delivery before it."""
    if qc.get("dummy") or "timing_ms" not in qc:
        return f"vol {qc['index']} (dummy)"
    t = qc["timing_ms"]
    delivery = t.get("acquisition_to_arrival")
    after = "delivery unknown" if delivery is None else f"after {delivery:.0f} ms delivery"
    return f"vol {qc['index']} FD {qc['fd_mm']:.2f} mm pipeline {t['arrival_to_feedback']:.0f} ms ({after})"


def status_line(snap: dict[str, Any], feature: str | None, threshold: str | None,
                volume: dict[str, Any] | None = None, family: str | None = None) -> str:
    """One line: block, time left, the newest volume (fMRI), feature vs threshold, reward rate, state;
    ``family``: the feature's unit family, to show 0.25 umol/L rather than 2.5e-07."""
    def shown(v: float) -> str:
        return format_quantity(v, family) if family in (VOLTAGE, CONCENTRATION) else f"{v:.3g}"

    parts = []
    if snap["block"] is not None:
        parts.append(f"[{snap['block']} {snap['block_index'] + 1}/{snap['n_blocks']}] "
                     f"{_mmss(snap['time_left_s'])} left (session {_mmss(snap['total_left_s'])})")
    if volume is not None:
        parts.append(volume_text(volume))
    if feature:
        value = snap["features"].get(feature)
        text = f"{feature} {shown(value)}" if value is not None else f"{feature} --"
        th = snap["thresholds"].get(threshold) if threshold else None
        if th is not None:
            text += f" (goal {shown(th)})"
        parts.append(text)
    stim = snap.get("stim")
    if stim is not None:  # a stimulation protocol: what matters is whether it can stimulate now
        parts.append("armed: " + (", ".join(stim["armed"]) or "NONE"))
        if stim["interlocks"]:
            parts.append("INTERLOCK " + ", ".join(stim["interlocks"]))
    elif snap["frames"]:
        parts.append(f"reward {100.0 * snap['rewarded'] / snap['frames']:.0f}%")
    state = snap["state"]
    if snap["inhibitions"]:
        state += ": " + "; ".join(snap["inhibitions"].values())
    parts.append(state)
    return " | ".join(parts)


def describe_event(e: ev.Event) -> str | None:
    d = e.data
    if e.kind == ev.BLOCK_START:
        cycle = f" (cycle {d['cycle'] + 1})" if d.get("cycle") is not None else ""
        return f"block {d['index'] + 1}: {d['label']}{cycle}, {d['duration_s']:g} s"
    if e.kind == ev.THRESHOLD:
        why = d["reason"]
        if d.get("comparison_rate") is not None:
            why += f": the comparison held {100 * d['comparison_rate']:.0f}% of the time"
            if d.get("reward_rate") is not None:
                why += f", {100 * d['reward_rate']:.0f}% of frames rewarded"
        return f"threshold {d['name']} = {d['value']:.4g} ({why})"
    if e.kind == ev.STATE:
        return f"state: {d['state']}" + (f" ({d['reason']})" if d.get("reason") else "")
    if e.kind == ev.INPUT:
        return f"input {d['input']}: {d['status']} {d.get('detail', '')}".rstrip()
    if e.kind == ev.FAULT:
        return f"FAULT {d.get('source', '')}: {d.get('reason', '')}"
    if e.kind == ev.VOLUME and d.get("fd_mm") is not None and d["fd_mm"] > FD_WARN_MM:
        return f"volume {d['index']}: head moved, FD {d['fd_mm']:.2f} mm (> {FD_WARN_MM:g} mm)"
    return None


class TextDisplay(threading.Thread):
    def __init__(
        self,
        bus: EventBus,
        snapshot: Callable[[], dict[str, Any]],
        feature: str | None,
        threshold: str | None,
        stream: TextIO = sys.stdout,
        period_s: float = 1.0,
        family: str | None = None,
    ) -> None:
        super().__init__(name="display:text", daemon=True)
        self._sub = bus.subscribe(_ANNOUNCE, maxsize=1000)
        self._bus = bus
        self._snapshot = snapshot
        self._feature, self._threshold = feature, threshold
        self._family = family
        self._out = stream
        self._tty = hasattr(stream, "isatty") and stream.isatty()
        self._period = period_s if self._tty else max(period_s, 5.0)
        self._halt = threading.Event()
        self._last_line = ""
        self._volume: dict[str, Any] | None = None  # the newest fMRI volume's QC

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=2)
        self._bus.unsubscribe(self._sub)

    def run(self) -> None:
        while not self._halt.wait(self._period):
            self._emit()
        self._emit()

    def _emit(self) -> None:
        events = self._sub.drain()
        for e in events:
            if e.kind == ev.VOLUME:
                self._volume = e.data
        lines = [t for t in (describe_event(e) for e in events) if t]
        line = status_line(self._snapshot(), self._feature, self._threshold, self._volume, self._family)
        if self._tty:
            for text in lines:
                self._out.write("\r\x1b[K" + text + "\n")
            self._out.write("\r\x1b[K" + line)
        else:
            for text in lines:
                self._out.write(text + "\n")
            if line != self._last_line:  # a log, not a screen: no repeated lines
                self._out.write(line + "\n")
        self._last_line = line
        self._out.flush()
