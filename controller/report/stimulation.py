"""Stimulation in a session report: every command, every refusal, interlocks, E-STOPs, latency.

Read from the journal's ``command`` events (the dispatcher: what was sent to which device, or
refused before the wire), ``safety`` events (the governor: verdicts with the limit, the value and
the limit's value; interlocks raised and cleared; E-STOPs) and device ``fault`` events, plus the
virtual devices' logs when the session ran with --sim (:mod:`controller.report.device_logs`).

Definitions (printed in the report):

- source -> sent = ``t_sent - t_source``: from the newest sample behind the decision to the
  moment the driver handed the command to the link (the dispatcher's ``latency_s``): end to end,
  the amplifier's block included;
- chunk arrival -> sent: the controller's own delay (``controller_latency_s``), what the site's
  ``max_loop_latency`` bounds;
- source -> arrival = logged arrival at the device - ``t_source``; sent -> arrival the link's part;
- latency statistics count delivered 'fire' and 'start' commands (those that stimulate);
- a governor refusal appears twice in the journal (the verdict, then the dispatcher's refused
  command); they are paired by device, command and source time and counted once;
- planned vs delivered pulses per device and the short trains come from the governor's 'delivery'
  and 'short_train' events (:mod:`controller.report.delivered`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller import events as ev
from controller.event_records import (
    NOT_READY,
    Command,
    EStop,
    Fault,
    InterlockCleared,
    InterlockRaised,
    NotReady,
    Record,
    SafetyVerdict,
    Stamped,
)
from controller.report import delivered
from controller.report.data import SessionData
from controller.report.device_logs import DeviceLog, match_arrivals, read_device_logs
from controller.report.metrics import ms_stats

DELIVERING = ("fire", "start")
DEVICE_FAULT_PREFIX = "device:"
LATENCY_DEFINITION = (
    "source -> sent = t_sent - t_source (newest sample behind the decision to the command leaving the driver: "
    "end to end, the amplifier's block included); chunk arrival -> sent = the controller's own delay (what the "
    "site's max_loop_latency bounds); source -> arrival = logged arrival at the device - t_source; statistics "
    "over delivered fire/start commands"
)
_PULSES = re.compile(r"^\s*([\d.]+(?:e[+-]?\d+)?)\s+pulses?\b")


def _num(x: float | None) -> float | None:
    """A finite journal number, else None."""
    return x if x is not None and math.isfinite(x) else None


def pulses_of(note: str | None) -> float | None:
    """Pulses an allowed fire/start committed, from the governor's note ("20 pulses, 1 uC")."""
    m = _PULSES.match(note or "")
    return float(m.group(1)) if m else None


@dataclass
class SessionStimulation:
    """Everything the stimulation section shows; times in seconds since session start."""

    commands: list[dict[str, Any]]
    refusals: list[dict[str, Any]]
    interlocks: list[dict[str, Any]]
    estops: list[dict[str, Any]]
    device_faults: list[dict[str, Any]]
    logs: dict[str, DeviceLog] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    deliveries: delivered.Deliveries = field(default_factory=delivered.Deliveries)


def _verdict_text(ok: bool, kind: str, reason: str, note: str) -> str:
    if kind == NOT_READY:
        return f"not ready: {reason}" if reason else "not ready"
    if ok:
        return "allowed" + (f" ({note})" if note else "")
    return f"refused: {reason}" if reason else "refused"


class _Reader:
    """Walks the journal once, in order, turning events into the section's rows."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.commands: list[dict[str, Any]] = []
        self.refusals: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []  # governor refusals not yet paired with a refused command
        self.open_locks: dict[str, dict[str, Any]] = {}
        self.interlocks: list[dict[str, Any]] = []
        self.estops: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []

    def read(self, e: Stamped[Record]) -> None:
        """One journal record, in journal order (kinds the section does not show are passed over)."""
        r, t, t_s, t_source = e.record, e.t, e.t - self.t0, _num(e.t_source)
        if isinstance(r, SafetyVerdict) and not r.allowed:
            row = {"t": t, "t_s": t_s, "device": r.device, "command": r.command, "rule": r.rule, "limit": r.limit,
                   "value": r.value, "limit_value": r.limit_value, "reason": r.verdict, "t_source": t_source,
                   "by": "governor"}
            self.refusals.append(row)
            self.pending.append(row)
        elif isinstance(r, InterlockRaised):
            if r.source in self.open_locks:  # raised again while active: the same interval, newest reason
                self.open_locks[r.source]["reason"] = r.reason
            else:
                self.open_locks[r.source] = {"source": r.source, "reason": r.reason, "from_s": t_s,
                                             "to_s": None, "duration_s": None, "active_at_end": True}
                self.interlocks.append(self.open_locks[r.source])
        elif isinstance(r, InterlockCleared):
            lock = self.open_locks.pop(r.source, None)
            if lock is not None:
                lock.update(to_s=t_s, duration_s=t_s - lock["from_s"], active_at_end=False)
        elif isinstance(r, EStop):
            took = _num(r.took_s)
            self.estops.append({"t_s": t_s, "reason": r.reason, "took_ms": took * 1e3 if took is not None else None})
        elif isinstance(r, Fault) and r.source.startswith(DEVICE_FAULT_PREFIX):
            self.faults.append({"t_s": t_s, "device": r.source[len(DEVICE_FAULT_PREFIX):], "reason": r.reason})
        elif isinstance(r, (Command, NotReady)):
            self.commands.append(_command_row(r, t, t_source, self.t0, self.pending, self.refusals))

    def finish(self, t_end: float) -> None:
        for lock in self.open_locks.values():
            lock["duration_s"] = t_end - self.t0 - lock["from_s"]
        if not self.estops:  # an E-STOP through the governor alone shows as its interlock
            self.estops = [{"t_s": lk["from_s"], "reason": lk["reason"], "took_ms": None}
                           for lk in self.interlocks if lk["source"] == "estop"]


def collect(data: SessionData, session_dir: Path | None = None) -> SessionStimulation | None:
    """The session's stimulation, or None when the journal has no command or safety event."""
    if not data.journal.counts.get(ev.COMMAND) and not data.journal.counts.get(ev.SAFETY):
        return None
    r = _Reader(data.t0)
    for e in data.journal.ordered:
        r.read(e)
    r.finish(data.t_end)

    logs, problems = read_device_logs(session_dir) if session_dir is not None else ({}, [])
    for row, arrival in zip(r.commands, match_arrivals(r.commands, logs), strict=True):
        row["arrival_t"] = arrival
        row["source_to_arrival_ms"] = (arrival - row["t_source"]) * 1e3 \
            if arrival is not None and row["t_source"] is not None else None
        row["sent_to_arrival_ms"] = (arrival - row["t_sent"]) * 1e3 if arrival is not None else None
    return SessionStimulation(r.commands, r.refusals, r.interlocks, r.estops, r.faults, logs, problems,
                              delivered.collect(data.journal, data.t0))


def _command_row(c: Command | NotReady, t: float, t_source: float | None, t0: float,
                 pending: list[dict[str, Any]], refusals: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's row of one command (a refusal is paired with the governor's verdict)."""
    if isinstance(c, NotReady):
        c = Command(c.device, NOT_READY, False, reason=c.reason)
    device, kind, ok, reason, note = c.device, c.command, c.ok, c.reason, c.note
    t_sent, controller = _num(c.t_sent), _num(c.controller_latency_s)
    latency = _num(c.latency_s)
    if latency is None and t_sent is not None and t_source is not None:
        latency = t_sent - t_source
    row: dict[str, Any] = {
        "t": t, "t_s": (t_sent if t_sent is not None else t) - t0, "t_sent": t_sent, "t_source": t_source,
        "device": device, "kind": kind, "ok": ok, "rule": c.rule,
        "verdict": _verdict_text(ok, kind, reason, note), "reason": reason or None, "note": note or None,
        "pulses": pulses_of(note) if ok and kind in DELIVERING else None,
        "params": dict(c.params) if c.params is not None else None,
        "latency_ms": latency * 1e3 if latency is not None else None,
        "controller_ms": controller * 1e3 if controller is not None else None,
        "limit": None, "value": None, "limit_value": None,
    }
    if not ok and kind != NOT_READY:
        match = next((r for r in reversed(pending) if r["device"] == device and r["command"] == kind
                      and r["t_source"] == t_source), None)
        if match is not None:
            pending.remove(match)
            row.update(limit=match["limit"], value=match["value"], limit_value=match["limit_value"])
        else:  # refused before the governor (e.g. the device is not open in this session)
            refusals.append({"t": t, "t_s": t - t0, "device": device, "command": kind, "rule": c.rule,
                             "limit": None, "value": None, "limit_value": None, "reason": reason or "refused",
                             "t_source": t_source, "by": "dispatcher"})
    return row


def device_totals(stim: SessionStimulation) -> dict[str, dict[str, Any]]:
    """Per device: deliveries (fires, single pulses, trains, starts), pulses planned and delivered, short
    trains, refusals, arrivals. ``pulses`` is the planned count (kept under that name for older readers)."""
    names = sorted({str(c["device"]) for c in stim.commands} | {str(r["device"]) for r in stim.refusals}
                   | set(stim.logs), key=str)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        cmds = [c for c in stim.commands if str(c["device"]) == name]
        sent = [c for c in cmds if c["ok"]]
        fires = [c for c in sent if c["kind"] == "fire"]
        starts = [c for c in sent if c["kind"] == "start"]
        pulses = [c["pulses"] for c in fires + starts if c["pulses"] is not None]
        trains = sum(1 for c in fires if c["pulses"] is not None and c["pulses"] > 1)
        logged = stim.logs.get(name)
        out[name] = {
            "commands": len(cmds),
            "sent": len(sent),
            "fires": len(fires),
            "single_pulses": len(fires) - trains,
            "trains": trains,
            "starts": len(starts),
            "stops": sum(1 for c in sent if c["kind"] == "stop"),
            "sets": sum(1 for c in sent if c["kind"] == "set"),
            "arms": sum(1 for c in sent if c["kind"] == "arm"),
            "disarms": sum(1 for c in sent if c["kind"] == "disarm"),
            "pulses": float(sum(pulses)) if pulses else None,
            "refused": sum(1 for r in stim.refusals if str(r["device"]) == name),
            "not_ready": sum(1 for c in cmds if c["kind"] == "not_ready"),
            "device_faults": sum(1 for f in stim.device_faults if f["device"] == name),
            "device_log": logged.path.name if logged is not None else None,
            "arrivals_matched": sum(1 for c in cmds if c.get("arrival_t") is not None) if logged is not None else None,
        }
        out[name].update(delivered.device_figures(stim.deliveries, name, out[name]["pulses"]))
    return out


def latency_arrays(stim: SessionStimulation) -> dict[str, np.ndarray]:
    """Seconds, over delivered fire/start commands: source_to_sent, source_to_arrival, sent_to_arrival."""
    rows = [c for c in stim.commands if c["ok"] and c["kind"] in DELIVERING]

    def col(key: str) -> np.ndarray:
        return np.array([c[key] / 1e3 for c in rows if c[key] is not None], dtype=float)

    return {"source_to_sent": col("latency_ms"), "chunk_arrival_to_sent": col("controller_ms"),
            "source_to_arrival": col("source_to_arrival_ms"), "sent_to_arrival": col("sent_to_arrival_ms")}


def summary(stim: SessionStimulation | None) -> dict[str, Any] | None:
    """The stimulation part of summary.json (None when the session drove no stimulator)."""
    if stim is None:
        return None
    lat = latency_arrays(stim)
    strip = ("t", "t_source")
    return {
        "devices": device_totals(stim),
        "totals": {
            "commands": len(stim.commands),
            "delivered": sum(1 for c in stim.commands if c["ok"] and c["kind"] in DELIVERING),
            "refused": len(stim.refusals),
            "interlocks": len(stim.interlocks),
            "estops": len(stim.estops),
            "device_faults": len(stim.device_faults),
            "short_trains": len(stim.deliveries.short),
        },
        "latency_ms": {k: ms_stats(v) for k, v in lat.items()},
        "latency_definition": LATENCY_DEFINITION,
        "commands": [{k: v for k, v in c.items() if k not in ("t",)} for c in stim.commands],
        "refusals": [{k: v for k, v in r.items() if k not in strip} for r in stim.refusals],
        "interlocks": stim.interlocks,
        "estops": stim.estops,
        "device_faults": stim.device_faults,
        "delivery_definition": delivered.DEFINITION,
        "deliveries": stim.deliveries.reports,
        "short_trains": stim.deliveries.short,
        "device_logs": {name: {"file": dl.path.name, "kind": dl.kind, "commands_logged": int(dl.t.size),
                               "entries": dl.counts} for name, dl in stim.logs.items()},
        "problems": stim.problems,
    }
