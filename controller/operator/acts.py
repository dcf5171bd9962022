"""What the operator can do to a running session, from any of its entry points.

The keyboard, SIGINT/SIGTERM and the control channel (``neuroreflex estop|status|arm|disarm``
from another terminal) all end here, so an E-STOP means the same thing whichever way it came:
stimulation inhibited (source 'estop'), every device disarmed in parallel, the engine
inhibited, and the cause journaled. Arming stays an explicit act with the operator's name.

Every act is journaled as an ``operator`` event: what (``act``), who (``by``), through what
(``via``: ``key p``, ``signal``, ``cli`` with the calling process, ``console``, ``remote``), why
(``reason``, when one was given) and whether it took effect.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from controller import event_records as rec
from controller import events as ev
from controller.clock import now
from controller.events import Event, EventBus
from controller.operator.session_status import CommandTracker, stimulation_status
from controller.safety.faults import FaultKind, source

ESTOP_SOURCE = source(FaultKind.ESTOP)


class OperatorActs:
    def __init__(self, engine: Any, bus: EventBus, session_id: str, protocol_name: str, stim: Any = None,
                 operator: str = "operator") -> None:
        self.engine = engine
        self.bus = bus
        self.session_id = session_id
        self.protocol_name = protocol_name
        self.stim = stim  # controller.session.stimulation.StimSetup or None
        self.operator = operator
        self._lock = threading.Lock()
        self.estops = 0
        self.info: dict[str, Any] = {}  # what the runner tells the console: protocol path, folder, inputs, outlets
        self._commands: CommandTracker | None = None

    def _journal(self, act: str, via: str, by: str | None, reason: str | None, **result: Any) -> None:
        self.bus.publish(Event(ev.OPERATOR, now(), None, {"act": act, "by": by or self.operator, "via": via,
                                                          "reason": reason or None, **result}))

    def pause(self, via: str, by: str | None = None, reason: str | None = None) -> bool:
        done = self.engine.pause(reason or f"paused ({via})")
        self._journal("pause", via, by, reason, done=done)
        return done

    def resume(self, via: str, by: str | None = None, reason: str | None = None) -> bool:
        done = self.engine.resume(reason or f"resumed ({via})")
        self._journal("resume", via, by, reason, done=done)
        return done

    def skip(self, via: str, by: str | None = None, reason: str | None = None) -> bool:
        block = self.engine.snapshot().get("block")
        done = self.engine.skip_block(reason or f"skipped by the operator ({via})")
        self._journal("skip", via, by, reason, done=done, block=block)
        return done

    def stop(self, via: str, by: str | None = None, reason: str | None = None) -> None:
        self._journal("stop", via, by, reason)
        self.engine.stop(f"operator stop ({via})" + (f": {reason}" if reason else ""))

    def set_threshold(self, name: str, value: float, reason: str, via: str, by: str | None = None) -> dict[str, Any]:
        """A threshold changed mid-session: who, why and the value it replaced go to the journal."""
        if self.engine is None:
            raise RuntimeError("the session has not started yet")
        if not (reason or "").strip():
            raise ValueError("a threshold change needs the operator's reason")
        before = self.engine.snapshot()["thresholds"].get(name)
        try:
            self.engine.set_threshold(name, value)
        except ValueError as exc:
            self._journal("threshold", via, by, reason, name=name, value=value, done=False, refused=str(exc))
            raise
        self._journal("threshold", via, by, reason, name=name, value=float(value), before=before, done=True)
        return {"name": name, "value": float(value), "before": before}

    def note(self, text: str, via: str, by: str | None = None) -> dict[str, Any]:
        """An operator's note: journaled, and a ``note:<text>`` marker in the XDF."""
        if not (text or "").strip():
            raise ValueError("an empty note")
        if self.engine is not None:
            self.engine.note(text)
        self._journal("note", via, by, None, text=text)
        return {"noted": text}

    def estop(self, reason: str, via: str = "signal", by: str | None = None) -> dict[str, Any]:
        """Inhibit and disarm everything now; safe from any thread, any number of times."""
        t0 = time.perf_counter()
        took = None
        if self.stim is not None:
            took = self.stim.stimulation.estop(reason)
        if self.engine is not None:
            self.engine.set_inhibit(ESTOP_SOURCE, f"E-STOP: {reason}")
        with self._lock:
            self.estops += 1
        total = time.perf_counter() - t0
        self.bus.publish(rec.EStopDone(reason, took, total).event(now()))
        self._journal("estop", via, by, reason, took_s=total)
        return {"estopped": True, "disarmed": sorted(self.stim.stimulation.links) if self.stim else [],
                "took_s": total}

    def clear_estop(self, operator: str, via: str = "cli") -> dict[str, Any]:
        """After an E-STOP: the operator lifts it (devices stay disarmed until armed again)."""
        if self.stim is not None:
            self.stim.governor.clear(ESTOP_SOURCE)
        if self.engine is not None:
            self.engine.clear_inhibit(ESTOP_SOURCE)
        self.bus.publish(rec.EStopCleared(operator).event(now()))
        self._journal("clear_estop", via, operator, None)
        return {"cleared": True}

    def arm(self, operator: str | None = None, device: str | None = None, via: str = "key a") -> dict[str, Any]:
        who = operator or self.operator
        if self.stim is None:
            self._journal("arm", via, who, None, device=device, done=False, refused="no stimulator")
            raise RuntimeError("this session drives no stimulator")
        problems = self.stim.stimulation.arm(who, [device] if device else None)
        self._journal("arm", via, who, None, device=device, done=not problems, refused="; ".join(problems) or None)
        if problems:
            raise RuntimeError("; ".join(problems))
        return {"armed": [device] if device else sorted(self.stim.stimulation.links), "by": who}

    def disarm(self, device: str | None = None, reason: str = "operator", via: str = "cli",
               by: str | None = None) -> dict[str, Any]:
        self._journal("disarm", via, by, reason, device=device)
        if self.stim is None:
            return {"disarmed": []}
        if device is None:
            self.stim.stimulation.disarm_all(reason)
            return {"disarmed": sorted(self.stim.stimulation.links)}
        link = self.stim.stimulation.links[device]
        self.stim.governor.disarm(device, reason)
        link.driver.disarm()
        return {"disarmed": [device]}

    def status(self) -> dict[str, Any]:
        """The session as the console shows it (controller/operator/session_status.py says what is in it)."""
        out: dict[str, Any] = {"session": self.session_id, "protocol": self.protocol_name, **self.info}
        if self.engine is None:
            return {**out, "state": "starting"}
        snap = self.engine.snapshot()
        out.update({k: snap[k] for k in ("state", "block", "block_index", "n_blocks", "time_left_s", "total_left_s",
                                         "features", "thresholds", "inhibitions", "reward_rates", "latency_ms")})
        if self.stim is not None:
            out.update(stimulation_status(self.stim, self._commands))
        return out

    def follow_commands(self) -> None:
        """Keep the newest command per device for ``status`` (sessions that drive stimulators)."""
        self._commands = CommandTracker(self.bus)

    def on_command(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """The control channel's handler (estop/disarm are called on its listener thread)."""
        origin = args.get("origin") or "another terminal"
        via = f"cli ({origin})"
        if name == "estop":
            return self.estop(f"{args.get('reason') or 'E-STOP'} (from {origin})", via=via)
        if name == "disarm":
            return self.disarm(args.get("device"), args.get("reason") or f"disarm from {origin}", via=via)
        if name == "status":
            return self.status()
        if name == "arm":
            return self.arm(args.get("operator"), args.get("device"), via=via)
        if name == "clear_estop":
            return self.clear_estop(args.get("operator") or origin, via=via)
        by = args.get("operator")
        if self.engine is None and name in ("pause", "resume", "skip", "stop"):
            raise RuntimeError("the session has not started yet")
        if name == "pause":
            return {"done": self.pause(via, by, args.get("reason"))}
        if name == "resume":
            return {"done": self.resume(via, by, args.get("reason"))}
        if name == "skip":
            return {"done": self.skip(via, by, args.get("reason"))}
        if name == "stop":
            self.stop(via, by, args.get("reason"))
            return {"done": True}
        if name == "threshold":
            return self.set_threshold(args["name"], args["value"], args.get("reason") or "", via, by)
        if name == "note":
            return self.note(args["text"], via, by)
        raise ValueError(f"unknown command {name!r}")
