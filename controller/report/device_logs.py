"""What the virtual devices received (``<session>/devices/<device>.jsonl``, written with --sim),
and which logged arrival belongs to which command the controller sent.

Why: ``t_sent`` is when the controller handed the bytes to the link; the device log says when
the "patient" got them, on the same LSL clock. The report shows source -> arrival latency from it.

Format (one JSON object per line, see ``sim.devices.journal``): ``t`` (LSL time), ``type``
(``command`` for a complete command the device parsed), ``meaning`` (decoded, e.g. "fire",
"set power 50", "start", "pulse code 1"). Lines that are not JSON (a torn last line of a killed
process) are skipped and counted.

Matching: a command kind maps to the decoded meanings that carry it on each device protocol
(:data:`MEANINGS`). Per device, commands are taken in order of ``t_sent``; each is given the
first not-yet-used ``command`` entry of a matching meaning logged at/after ``t_sent`` (minus
:data:`EARLY_S`, because some drivers read the clock just after the write returns, when the
device may already have the bytes) and at most :data:`LATE_S` after it. An entry is used once,
and a later command never takes an entry logged before one an earlier command took: a link
delivers in order.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DEVICES_DIR = "devices"
EARLY_S = 0.010  # an arrival may be logged this long before the driver's t_sent
LATE_S = 1.0  # no arrival within this long after t_sent: the command is unmatched

# command kind -> decoded meanings of the virtual devices (magstim, magventure, starstim, trigger box)
MEANINGS: dict[str, re.Pattern[str]] = {
    "fire": re.compile(r"^(fire\b|pulse code \d+|code \d+ \(was)"),
    "start": re.compile(r"^(start\b|pulse code \d+|code \d+ \(was)"),
    "stop": re.compile(r"^(abort\b|disable\b|pause\b|low\b)"),
    "arm": re.compile(r"^(arm\b|enable\b|load protocol\b)"),
    "disarm": re.compile(r"^(disarm\b|disable\b|abort\b|low\b)"),
    "set": re.compile(r"^(set |single-pulse mode|amplitude\b|train parameters\b|online )"),
}


@dataclass
class DeviceLog:
    """The ``command`` entries of one device log, in file order."""

    device: str
    path: Path
    kind: str | None  # the virtual device's kind, from its start line
    t: np.ndarray  # arrival times (LSL)
    meaning: list[str]
    counts: dict[str, int] = field(default_factory=dict)  # entries per type
    skipped_lines: int = 0


def read_device_log(path: Path) -> DeviceLog:
    """One device log; the device name is the file's stem."""
    times: list[float] = []
    meanings: list[str] = []
    counts: dict[str, int] = {}
    kind = None
    skipped = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1
            continue
        if not isinstance(entry, dict):
            skipped += 1
            continue
        type_ = str(entry.get("type", ""))
        counts[type_] = counts.get(type_, 0) + 1
        if type_ == "start" and isinstance(entry.get("info"), dict):
            kind = entry["info"].get("kind") or kind
        t = entry.get("t")
        if type_ == "command" and isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t):
            times.append(float(t))
            meanings.append(str(entry.get("meaning", "")))
    return DeviceLog(path.stem, path, kind, np.asarray(times, dtype=float), meanings, counts, skipped)


def read_device_logs(session_dir: Path) -> tuple[dict[str, DeviceLog], list[str]]:
    """Every ``devices/*.jsonl`` of a session (device name -> log) and the problems met."""
    folder = session_dir / DEVICES_DIR
    logs: dict[str, DeviceLog] = {}
    problems: list[str] = []
    if not folder.is_dir():
        return logs, problems
    for path in sorted(folder.glob("*.jsonl")):
        try:
            dl = read_device_log(path)
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc}")
            continue
        if dl.skipped_lines:
            problems.append(f"{path}: {dl.skipped_lines} line(s) are not JSON objects and were skipped")
        logs[dl.device] = dl
    return logs, problems


def match_arrivals(commands: list[dict[str, Any]], logs: dict[str, DeviceLog]) -> list[float | None]:
    """Arrival time at the device of each command (None: no log, not sent, or not found).

    ``commands``: dicts with ``device``, ``kind`` and ``t_sent`` (None when nothing was sent).
    """
    out: list[float | None] = [None] * len(commands)
    by_device: dict[str, list[int]] = {}
    for i, c in enumerate(commands):
        if c.get("t_sent") is not None and c.get("device") in logs and c.get("kind") in MEANINGS:
            by_device.setdefault(c["device"], []).append(i)
    for device, idx in by_device.items():
        dl = logs[device]
        used = np.zeros(dl.t.size, dtype=bool)
        kinds = {k: np.array([bool(p.match(m)) for m in dl.meaning], dtype=bool) for k, p in MEANINGS.items()}
        floor = 0  # entries before this index are behind an entry already taken
        for i in sorted(idx, key=lambda k: commands[k]["t_sent"]):
            t_sent = float(commands[i]["t_sent"])
            ok = kinds[commands[i]["kind"]] & ~used & (dl.t >= t_sent - EARLY_S) & (dl.t <= t_sent + LATE_S)
            ok[:floor] = False
            hits = np.flatnonzero(ok)
            if hits.size:
                j = int(hits[0])
                used[j] = True
                floor = j + 1
                out[i] = float(dl.t[j])
    return out
