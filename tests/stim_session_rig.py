"""A rig for end-to-end stimulation sessions: our own LSL input, our own virtual devices, a real session.

Why: the fault tests must drive a whole session (``run_session``) from the outside, as an
operator and a broken world would: the input is an LSL outlet this module owns (so a test
can stop it, kill it or fill it with NaN), the stimulators are virtual device *processes*
started here whose ports go into the site file (the "simulated signals, real hardware"
mode, ``virtual_devices=False``), and everything the test checks comes from the session
folder (journal, XDF, report), the devices' own logs and the control channel.

The session runs in a thread (signals are only handled in the main thread: fine here). It
ends normally when the test skips the remaining block through the engine (the operator's
'skip block' act): ``LiveSession.finish()``; the timeline's length is only a hang guard.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pylsl

from controller.operator.control_channel import request
from controller.session import runner
from controller.session import stimulation as stim_session
from controller.session.runner import RunOptions, SessionResult, run_session
from controller.session.stimulation import VirtualDevice, read_device_log, start_virtual_device

LABELS = ("Cz", "C3", "C4", "Fz", "Pz", "Fp1", "Fp2", "Oz")
RATE = 250.0
ON_AMPLITUDE_V = 100e-6  # 10 Hz at Cz, 200 uV peak to peak: far above the protocols' 50 uV threshold
NOISE_V = 2e-6


_SESSIONS: list[LiveSession] = []  # running sessions: a wait gives up at once when one of them failed


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it is truthy; a generous timeout only guards against a hang."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for live in _SESSIONS:
            if "error" in live.outcome:
                raise AssertionError(f"the session failed while waiting for {what}: "
                                     f"{live.outcome['error']!r}") from live.outcome["error"]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- the input


class SignalSource:
    """8 EEG channels at 250 Hz on LSL, pushed as they fall due, stamped with ``local_clock()``.

    ``mode``: "on" (a 10 Hz rhythm at Cz that crosses the threshold), "off" (low noise),
    "nan" (every value NaN), "pause" (nothing is pushed: the input stalls and those samples are
    lost), "hold" (samples are made and stamped but held back, then pushed at once with their own
    time stamps when the mode changes: data late, none lost, as after a network hiccup).
    ``kill()`` destroys the outlet (the stream is gone from the network); ``revive()`` creates it
    again with the same source id, as an amplifier that was restarted.
    """

    def __init__(self, name: str, mode: str = "off") -> None:
        self.name = name
        self.source_id = f"{name}-sid"
        self.mode = mode
        self.pushed = 0
        self.nan_pushed = 0
        self._rng = np.random.default_rng(7)
        self._outlet: pylsl.StreamOutlet | None = None
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._held: list[tuple[np.ndarray, float]] = []  # (chunk, stamp of its last sample) in "hold" mode

    def _info(self) -> pylsl.StreamInfo:
        info = pylsl.StreamInfo(self.name, "EEG", len(LABELS), RATE, pylsl.cf_float32, self.source_id)
        chans = info.desc().append_child("channels")
        for label in LABELS:
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", "volts")
            ch.append_child_value("type", "EEG")
        return info

    def start(self) -> SignalSource:
        self._outlet = pylsl.StreamOutlet(self._info(), chunk_size=1)
        self._halt.clear()
        self._thread = threading.Thread(target=self._run, name=f"source:{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def kill(self) -> float:
        """The stream vanishes (outlet destroyed); returns the LSL time it happened."""
        self.stop()
        with self._lock:
            self._outlet = None  # the only reference: liblsl destroys the outlet
        return pylsl.local_clock()

    def revive(self) -> float:
        """The same stream (same source id) comes back; returns the LSL time just before its first sample."""
        t = pylsl.local_clock()
        self.start()
        return t

    def _sample(self, t: np.ndarray, mode: str) -> np.ndarray:
        if mode == "nan":
            return np.full((len(t), len(LABELS)), np.nan, dtype=np.float32)
        x = self._rng.normal(0.0, NOISE_V, (len(t), len(LABELS)))
        if mode == "on":
            x[:, 0] += ON_AMPLITUDE_V * np.sin(2 * np.pi * 10.0 * t)
        return x.astype(np.float32)

    def _run(self) -> None:
        t0 = pylsl.local_clock()
        k = 0  # samples due so far since t0
        while not self._halt.is_set():
            now = pylsl.local_clock()
            due = int((now - t0) * RATE)
            if due <= k:
                time.sleep(max(0.0, (k + 1) / RATE - (now - t0)))
                continue
            n = due - k
            k = due
            mode = self.mode  # once per chunk, so that the counts below match what was pushed
            if mode == "pause":
                continue
            data = self._sample(t0 + (np.arange(k - n, k) + 1) / RATE, mode)
            if mode == "hold":
                self._held.append((data, pylsl.local_clock()))
                continue
            with self._lock:
                if self._outlet is None:
                    return
                for held, stamp in self._held:
                    self._outlet.push_chunk(held, stamp)
                    self.pushed += len(held)
                self._held.clear()
                self._outlet.push_chunk(data, pylsl.local_clock())
            self.pushed += n
            if mode == "nan":
                self.nan_pushed += n


# --------------------------------------------------------------------------- files


def write_files(tmp_path: Path, protocol: str, site: str) -> tuple[Path, Path]:
    p, s = tmp_path / "protocol.yaml", tmp_path / "site.yaml"
    p.write_text(protocol)
    s.write_text(site)
    return p, s


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def start_device(tmp_path: Path, name: str, kind: str, options: dict[str, Any] | None = None) -> VirtualDevice:
    """A virtual device process of our own (its log in tmp_path/device-logs/NAME.jsonl)."""
    return start_virtual_device(name, kind, tmp_path / "device-logs" / f"{name}.jsonl", options or {})


def device_log(dev: VirtualDevice) -> list[dict[str, Any]]:
    return read_device_log(dev.log)


def pulses_in(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trigger box: every rising edge ("pulse code N"); Magstim: every delivered pulse."""
    out = []
    for e in log:
        meaning = str(e.get("meaning", ""))
        if e.get("type") == "command" and meaning.startswith("pulse code"):
            out.append(e)
        elif e.get("type") == "pulse":
            out.append(e)
    return out


# --------------------------------------------------------------------------- the session


@dataclass
class LiveSession:
    """A session running in a thread; see the module docstring."""

    root: Path
    thread: threading.Thread
    engines: list[Any]
    outcome: dict[str, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------- where things are
    def folder(self) -> Path:
        def find() -> Path | None:
            found = [p.parent for p in self.root.glob("*/manifest.json")]  # (the ledger has its own folder)
            return found[0] if found else None

        return wait_for(find, 30, "the session folder")

    def journal(self) -> list[dict[str, Any]]:
        """The journal as written so far (a line being written is skipped)."""
        path = self.folder() / "journal.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def events(self, kind: str, /, **match: Any) -> list[dict[str, Any]]:
        """Journal events of ``kind`` whose data has every ``key=value`` of ``match``."""
        return [e for e in self.journal() if e.get("kind") == kind
                and all((e.get("data") or {}).get(k) == v for k, v in match.items())]

    @property
    def engine(self) -> Any:
        return wait_for(lambda: self.engines[0] if self.engines else None, 60, "the session's engine")

    def wait_running(self, timeout: float = 60.0) -> None:
        """Until the engine runs and the control channel answers (the devices are open by then)."""
        _ = self.engine  # the property waits for it
        self.status(timeout)

    def wait_block(self, label: str, timeout: float = 60.0) -> None:
        wait_for(lambda: self.events("block_start", label=label), timeout, f"block {label!r}")

    # ---------------------------------------------------------------- operator acts
    def status(self, timeout: float = 20.0) -> dict[str, Any]:
        """The session's answer to `neuroreflex status` (asked again until it answers)."""
        def once() -> dict[str, Any] | None:
            replies = [r for r in request("status", {}, timeout=3.0) if r.ok]
            return replies[0].result if replies else None

        return wait_for(once, timeout, "a status reply on the control channel")

    def arm(self, device: str, operator: str = "tester", timeout: float = 20.0) -> dict[str, Any]:
        """Arm through the control channel, as `neuroreflex arm DEVICE --operator NAME` does. Retried
        while the governor refuses (an interlock that is clearing, e.g. a reconnect in progress)."""
        last: list[Any] = []

        def attempt() -> dict[str, Any] | None:
            replies = request("arm", {"device": device, "operator": operator}, timeout=5.0)
            last[:] = replies
            ok = [r for r in replies if r.ok]
            return ok[0].result if ok else None

        try:
            return wait_for(attempt, timeout, f"arming {device}")
        except AssertionError:
            raise AssertionError(f"arming {device} failed: {last}") from None

    def abort(self) -> None:
        """Teardown after a failed test: stop the session so that it does not run into the next test."""
        if self.engines:
            self.engines[0].stop("test teardown")
        self.thread.join(30)

    def finish(self, timeout: float = 90.0) -> SessionResult:
        """Skip to the end of the timeline (an operator act) and wait for the session to close."""
        engine = self.engine
        deadline = time.monotonic() + timeout
        while not engine.done.is_set() and time.monotonic() < deadline:
            engine.skip_block()
            engine.done.wait(0.2)
        self.thread.join(max(1.0, deadline - time.monotonic()))
        assert not self.thread.is_alive(), "the session did not end"
        if "error" in self.outcome:
            raise self.outcome["error"]
        return self.outcome["result"]


def steady_wall() -> Callable[[], datetime]:
    """Wall time that advances with the LSL (monotonic) clock from now on.

    Why: the host's wall clock can step under the tests (a CI machine once stepped it 1.27 s
    while the LSL clock advanced 20 ms); the governor rightly latches a clock fault then, and a
    test of input or device faults would fail on a fault it is not about. The clock-fault
    behaviour itself is tested with injected clocks (tests/controller/safety/test_safety_governor.py).
    """
    wall0, lsl0 = datetime.now(UTC), pylsl.local_clock()
    return lambda: wall0 + timedelta(seconds=pylsl.local_clock() - lsl0)


class _SteadyWallGovernor(stim_session.Governor):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("wall", steady_wall())
        super().__init__(*args, **kwargs)


def start_session(monkeypatch, root: Path, protocol: Path, site: Path, *,
                  arm: bool = True, record_xdf: bool = True, build_report: bool = False,
                  lsl_prefix: str | None = None) -> LiveSession:
    """``run_session`` in a thread with the site's ports (virtual_devices=False)."""
    engines: list[Any] = []

    class SeenEngine(runner.Engine):  # lets the test act as the operator at the keyboard ('skip block')
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            engines.append(self)

    monkeypatch.setattr(runner, "Engine", SeenEngine)
    monkeypatch.setattr(stim_session, "Governor", _SteadyWallGovernor)
    opts = RunOptions(protocol_path=protocol, session_root=root, site_config=site, virtual_devices=False, arm=arm,
                      operator="tester", participant="p01", keyboard=False, progress=None, record_xdf=record_xdf,
                      build_report=build_report, lsl_prefix=lsl_prefix or unique("h6"), resolve_timeout_s=15.0)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = run_session(opts)
        except BaseException as exc:  # surfaced by finish()
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="session", daemon=True)
    live = LiveSession(root, thread, engines, outcome)
    stop_sessions()
    _SESSIONS[:] = [live]
    thread.start()
    return live


def stop_sessions() -> None:
    """Stop any session a test left running (it failed before finish())."""
    for live in _SESSIONS:
        if live.thread.is_alive():
            live.abort()
    _SESSIONS.clear()


@dataclass
class ControlDir:
    """A short private directory for the control sockets (AF_UNIX paths are limited to 107 bytes)."""

    path: Path

    @classmethod
    def create(cls, monkeypatch) -> ControlDir:
        path = Path(tempfile.mkdtemp(prefix="nr-h6-"))
        monkeypatch.setenv("NEUROREFLEX_CONTROL_DIR", str(path))
        return cls(path)

    def remove(self) -> None:
        stop_sessions()  # before the sockets' directory goes
        shutil.rmtree(self.path, ignore_errors=True)


# --------------------------------------------------------------------------- reading results


def allowed_fires(live: LiveSession, device: str) -> list[dict[str, Any]]:
    return live.events("command", device=device, kind="fire", ok=True)
