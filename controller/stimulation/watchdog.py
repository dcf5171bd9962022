"""The session watchdog: polls the governor and the devices, and trips when the control loop stops.

The control loop calls ``kick()`` every cycle. If no kick comes for ``timeout_s`` the
session is not being supervised any more: stimulation is inhibited ('watchdog') and every
device is disarmed. If this thread itself freezes (the whole process is stuck), the
drivers' keep-alives stop too and devices that need one (Magstim) drop remote control.
"""

from __future__ import annotations

import threading
import time

from controller.safety.faults import FaultKind, source
from controller.stimulation.dispatcher import DEVICE_PREFIX, Link, Stimulation
from drivers.stimulator import DeviceError, DeviceStatus

WATCHDOG_SOURCE = source(FaultKind.WATCHDOG)


class Watchdog:
    def __init__(self, stimulation: Stimulation, period_s: float = 0.02, timeout_s: float = 0.5,
                 status_every_s: float = 1.0) -> None:
        self.stimulation = stimulation
        self.period_s = period_s
        self.timeout_s = timeout_s
        self.status_every_s = status_every_s
        self._last_kick = time.monotonic()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stim-watchdog", daemon=True)
        self.tripped = False
        self.errors = 0
        self.worst_silent_s = 0.0  # the loop's longest silence so far: the margin a loaded PC leaves
        self.last_status: dict[str, tuple[float, DeviceStatus]] = {}  # device -> (monotonic time, its status)

    def start(self) -> None:
        self._last_kick = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        if self._thread.ident is not None and self._thread.is_alive():
            self._thread.join(timeout=2)

    def margin(self) -> dict[str, float]:
        """How close the loop is to tripping: its silence now and at worst, against the timeout (ms)."""
        silent = time.monotonic() - self._last_kick
        return {"timeout_ms": self.timeout_s * 1e3, "silent_ms": silent * 1e3,
                "worst_silent_ms": self.worst_silent_s * 1e3,
                "margin_ms": (self.timeout_s - self.worst_silent_s) * 1e3}

    def kick(self) -> None:
        self._last_kick = time.monotonic()
        if self.tripped:
            self.tripped = False
            self.stimulation.governor.clear(WATCHDOG_SOURCE)

    def _run(self) -> None:
        next_status = time.monotonic() + self.status_every_s
        while not self._halt.wait(self.period_s):
            try:
                self.stimulation.poll()
                silent = time.monotonic() - self._last_kick
                self.worst_silent_s = max(self.worst_silent_s, silent)
                if silent > self.timeout_s and not self.tripped:
                    self.tripped = True
                    self.stimulation.governor.inhibit(
                        WATCHDOG_SOURCE, f"missed watchdog: the control loop was silent for {silent:.2f} s")
                    self.stimulation.disarm_all("missed watchdog")
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + self.status_every_s
                    self._check_devices()
            except Exception:  # the watchdog must outlive any one failure; count it
                self.errors += 1

    def _check_devices(self) -> None:
        """A device whose link failed is reported; one that is healthy again has its interlock lifted
        (it stays disarmed: arming again is the operator's act)."""
        gov = self.stimulation.governor
        active = gov.inhibitions
        for name, link in self.stimulation.links.items():
            source = DEVICE_PREFIX + name
            if source in active and not self._reconnect(link):
                continue
            try:
                status = link.driver.status()
                self.last_status[name] = (time.monotonic(), status)
            except DeviceError as exc:
                if source not in active:
                    self.stimulation.device_error(name, f"status: {exc}")
                continue
            if not status.connected or status.error:
                if source not in active:
                    self.stimulation.device_error(name, status.error or "not connected")
            elif source in active:
                gov.clear(source)  # the device is back; it stays disarmed until the operator arms it

    def _reconnect(self, link: Link) -> bool:
        """After a device fault: open the link again (the port may have come back)."""
        try:
            link.driver.close()
        except Exception:
            pass
        try:
            link.driver.connect()
        except Exception:
            return False
        return True
