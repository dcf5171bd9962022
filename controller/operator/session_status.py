"""What a session says about itself when asked (the control channel's ``status``): for the console.

Built only on request (a few times a second at most), from state the loop keeps anyway: the
engine's snapshot, the governor's arming and dose totals, the watchdog's last device status and
margin, and the newest device commands drained from a small bus subscription that drops its
oldest events (so a session nobody watches holds at most a few hundred of them).
"""

from __future__ import annotations

import time
from typing import Any

from controller import events as ev
from controller.clock import now as lsl_now
from controller.events import Event, EventBus

_COMMAND_BACKLOG = 256


class CommandTracker:
    """The newest command each device was sent (or refused), for the console's device rows."""

    def __init__(self, bus: EventBus) -> None:
        self._sub = bus.subscribe({ev.COMMAND}, maxsize=_COMMAND_BACKLOG)
        self.last: dict[str, dict[str, Any]] = {}

    def drain(self) -> dict[str, dict[str, Any]]:
        while True:
            event: Event | None = self._sub.get(timeout=0)
            if event is None:
                return self.last
            data = event.data
            device = data.get("device")
            if device:
                self.last[str(device)] = {"command": data.get("kind") or data.get("command"), "ok": data.get("ok"),
                                          "t": event.t, "note": data.get("note") or data.get("reason") or ""}


def _last_text(last: dict[str, Any] | None, now_lsl: float) -> str | None:
    if not last:
        return None
    what = f"{last['command']} {'sent' if last.get('ok') else 'REFUSED'}"
    note = f": {last['note']}" if last.get("note") else ""
    return f"{what} {max(0.0, now_lsl - float(last['t'])):.1f} s ago{note}"


def _dose(totals: dict[str, Any], lim: Any) -> dict[str, float | None]:
    """Used and cap per measure, per day and per session (the console pairs ``X_today`` with ``X_cap`` and
    ``X_session`` with ``X_session_cap``)."""
    day, session = totals["day"], totals["session"]

    def uc(coulombs: float | None) -> float | None:
        return None if coulombs is None else coulombs * 1e6

    return {"pulses_today": float(day.pulses), "pulses_cap": lim.pulses_per_day_max,
            "charge_today_uC": uc(day.charge_c), "charge_cap_uC": uc(lim.charge_per_day_max),
            "pulses_session": float(session.pulses), "pulses_session_cap": lim.pulses_per_session_max,
            "charge_session_uC": uc(session.charge_c), "charge_session_cap_uC": uc(lim.charge_per_session_max)}


def stimulation_status(stim: Any, commands: CommandTracker | None) -> dict[str, Any]:
    """Devices (armed, running, connected, last command, settings), dose against the site's caps,
    interlocks with their cause, and the watchdog's margin."""
    gov = stim.governor
    last = commands.drain() if commands is not None else {}
    interlocks = {s: i.reason for s, i in gov.inhibitions.items()}
    devices: dict[str, Any] = {}
    dose: dict[str, Any] = {}
    now_mono, now_lsl = time.monotonic(), lsl_now()
    for name in stim.stimulation.links:
        seen = stim.watchdog.last_status.get(name)
        cfg = gov.site.devices[name]
        devices[name] = {
            "armed": gov.armed(name), "running": gov.running(name), "driver": cfg.driver, "port": cfg.port,
            "connected": None if seen is None else bool(seen[1].connected and not seen[1].error),
            "error": None if seen is None else seen[1].error,
            "keepalive_age_s": None if seen is None else now_mono - seen[0],  # the watchdog's last status read
            "settings": gov.settings(name), "last": _last_text(last.get(name), now_lsl),
            "last_command": last.get(name),
            "interlocked": any(s.endswith(":" + name) for s in interlocks),
        }
        dose[name] = _dose(gov.totals(name), cfg.limits)
    return {"devices": devices, "dose": dose, "interlocks": interlocks, "watchdog": stim.watchdog.margin()}
