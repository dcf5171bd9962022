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


def _totals(totals: Any) -> dict[str, float]:
    return {"pulses": float(totals.pulses), "charge_uC": float(totals.charge_c) * 1e6}


def stimulation_status(stim: Any, commands: CommandTracker | None) -> dict[str, Any]:
    """Devices (armed, running, connected, last command, settings), dose against the site's caps,
    interlocks with their cause, and the watchdog's margin."""
    gov = stim.governor
    last = commands.drain() if commands is not None else {}
    interlocks = {s: i.reason for s, i in gov.inhibitions.items()}
    devices: dict[str, Any] = {}
    dose: dict[str, Any] = {}
    now_mono = time.monotonic()
    for name in stim.stimulation.links:
        seen = stim.watchdog.last_status.get(name)
        cfg = gov.site.devices[name]
        devices[name] = {
            "armed": gov.armed(name), "running": gov.running(name), "driver": cfg.driver, "port": cfg.port,
            "connected": None if seen is None else bool(seen[1].connected and not seen[1].error),
            "error": None if seen is None else seen[1].error,
            "status_age_s": None if seen is None else now_mono - seen[0],
            "settings": gov.settings(name), "last": last.get(name),
            "interlocked": any(s.endswith(":" + name) for s in interlocks),
        }
        totals = gov.totals(name)
        lim = cfg.limits
        dose[name] = {"session": _totals(totals["session"]), "day": _totals(totals["day"]),
                      "caps": {"pulses_per_session": lim.pulses_per_session_max, "pulses_per_day": lim.pulses_per_day_max,
                               "charge_per_session_uC": None if lim.charge_per_session_max is None
                               else lim.charge_per_session_max * 1e6,
                               "charge_per_day_uC": None if lim.charge_per_day_max is None
                               else lim.charge_per_day_max * 1e6}}
    return {"devices": devices, "dose": dose, "interlocks": interlocks, "watchdog": stim.watchdog.margin()}
