"""Opening a session's stimulators: site devices, drivers (or virtual devices with --sim), governor, ledger.

With ``sim=True`` every device the protocol uses gets a virtual device speaking its real
protocol, started as its own process (``python -m sim device KIND --log FILE``), and the
driver is pointed at the port it prints: nothing else differs from a run on hardware,
where the port comes from the site config. What differs per device (how its driver is
built, what the virtual unit must be told) the driver class says; this module asks.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from controller.events import EventBus
from controller.lang.compiled import Protocol
from controller.safety.governor import LEDGER_SOURCE, Governor
from controller.safety.ledger import DoseLedger
from controller.safety.site import Site
from controller.session.child_processes import child_env
from controller.session.sim_commands import device_command
from controller.stimulation.dispatcher import Link, Stimulation
from controller.stimulation.watchdog import Watchdog
from drivers.registry import driver_class

READY_PREFIX = "READY "
START_TIMEOUT_S = 15.0


class StimulationSetupError(RuntimeError):
    """A device could not be opened; the message names the device and the cause."""


@dataclass
class VirtualDevice:
    name: str
    kind: str
    port: str
    log: Path
    proc: subprocess.Popen
    driver_options: dict[str, Any] = field(default_factory=dict)  # what the unit asks of its driver

    def send_control(self, line: str) -> None:
        """A fault-injection line for the virtual device (e.g. 'fault no_reply')."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class StimSetup:
    stimulation: Stimulation
    governor: Governor
    ledger: DoseLedger
    watchdog: Watchdog
    virtual: dict[str, VirtualDevice] = field(default_factory=dict)

    def close(self) -> None:
        self.watchdog.stop()
        try:
            self.stimulation.close()
        finally:
            self.ledger.close()
            for dev in self.virtual.values():
                dev.stop()


def start_virtual_device(name: str, kind: str, log: Path, options: dict[str, Any]) -> VirtualDevice:
    """Start ``python -m sim device KIND`` and wait for its READY line (port, driver options)."""
    cmd = device_command(kind, log, options)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            bufsize=1, env=child_env())
    found: dict[str, Any] = {}
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(READY_PREFIX) and not ready.is_set():
                try:
                    found.update(json.loads(line[len(READY_PREFIX):]))
                except json.JSONDecodeError:
                    pass
                ready.set()
        ready.set()

    threading.Thread(target=read, name=f"sim-{name}-stdout", daemon=True).start()
    if not ready.wait(START_TIMEOUT_S) or "port" not in found:
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise StimulationSetupError(f"virtual {kind} for device {name!r} did not start: {err.strip() or 'no port line'}")
    return VirtualDevice(name, kind, found["port"], log, proc, dict(found.get("driver_options") or {}))


def open_stimulation(protocol: Protocol, site: Site, bus: EventBus, session_id: str, device_dir: Path,
                     ledger_path: Path, *, sim: bool, arm: bool, operator: str,
                     progress: TextIO | None = None) -> StimSetup:
    """Everything disarmed except with ``arm`` (the operator's unattended-test switch)."""
    ledger_path.parent.mkdir(parents=True, exist_ok=True)
    holder: dict[str, Governor] = {}

    def ledger_failed(reason: str) -> None:
        if "g" in holder:
            holder["g"].inhibit(LEDGER_SOURCE, reason)

    ledger = DoseLedger(ledger_path, tz=site.tzinfo, deferred_sync=True, on_sync_error=ledger_failed)
    governor = Governor(site, ledger, session_id, publish=bus.publish)
    holder["g"] = governor
    virtual: dict[str, VirtualDevice] = {}
    links: dict[str, Link] = {}
    stimulation: Stimulation | None = None
    try:
        for name in protocol.devices:
            cfg = site.device(name)
            cls = driver_class(cfg.driver)
            port, options = cfg.port, dict(cfg.options)
            if sim:
                device_dir.mkdir(parents=True, exist_ok=True)
                unit = {k: v for k, v in cfg.options.items() if k in cls.unit_options}  # the same model
                dev = start_virtual_device(name, cfg.driver, device_dir / f"{name}.jsonl", unit)
                virtual[name] = dev
                port, options = dev.port, {**dev.driver_options, **options}
                _say(progress, f"virtual {cfg.driver} for {name!r} on {port} (log {dev.log})")

            def on_error(reason: str, n: str = name) -> None:
                if stimulation is not None:
                    stimulation.device_error(n, reason)

            try:
                driver = cls.from_site(name, port, options, on_error)
                driver.connect()
            except Exception as exc:
                raise StimulationSetupError(f"device {name!r} ({cfg.driver} on {port}): {exc}") from exc
            links[name] = Link(name, driver)
        stimulation = Stimulation(governor, links, bus, operator=operator)
        problems = stimulation.prepare(protocol.devices)
        if problems:
            raise StimulationSetupError("device settings refused: " + "; ".join(problems))
        if arm:
            problems = stimulation.arm(operator)
            if problems:
                raise StimulationSetupError("arming failed: " + "; ".join(problems))
    except BaseException:
        for link in links.values():
            try:
                link.driver.close()
            except Exception:
                pass
        for dev in virtual.values():
            dev.stop()
        ledger.close()
        raise
    watchdog = Watchdog(stimulation)  # started by the runner with its control loop, which kicks it
    return StimSetup(stimulation, governor, ledger, watchdog, virtual)


def read_device_log(path: Path) -> list[dict[str, Any]]:
    """The virtual device's log (one JSON object per line); a torn last line is skipped."""
    out = []
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _say(progress: TextIO | None, text: str) -> None:
    if progress is not None:
        progress.write(text + "\n")
        progress.flush()


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
