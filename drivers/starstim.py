"""Neuroelectrics Starstim through NIC2's TCP remote-control server (tACS online changes).

Protocol (public facts, from Neuroelectrics' MatNIC toolkit v04.07 for NIC2: MatNICProtocolSet,
MatNICConnect, MatNICQueryStatus(Protocol), MatNICLoadProtocol, MatNICStartProtocol,
MatNICAbortProtocol, MatNICOnlineAtacsChange, MatNICOnlineFtacsChange; and the Neuroelectrics
wiki page "MatNIC Matlab Toolkit"):
- NIC listens on TCP port 1235. A command is ONE byte (128-159); commands that carry
  parameters follow it with ASCII text, values separated by ``;``, ended by NUL (NIC also
  accepts ``\\n`` or ``\\r``). Commands without parameters are the single byte, no terminator.
- Only queries are answered, each by ONE status byte (200-226, table below); READ_CHANNELS is
  answered by one byte holding the channel count. Load/start/abort/pause and the online
  changes are not acknowledged: the client polls QUERY_STATUS (as MatNIC does).
- Session: VERSION (131) + "04.07" + NUL, answered by the NIC status (SYNCHRONIZING until the
  device is ready, then IDLE); then QUERY_STATUS until REMOTE_CONTROL_ALLOWED (the NIC operator
  accepts a dialog) or REJECTED; READ_CHANNELS gives the channel count.
- Online tACS amplitude change (147): one amplitude per channel in uA (0-2000) for ALL channels,
  then the transition in ms (100-10000): ``a1;a2;...;aN;T``. Online frequency change (148): one
  frequency per channel in Hz (0-150): ``f1;...;fN``. Both are accepted only while the protocol
  status is STIMULATION_FULL (MatNIC refuses otherwise). Channels are numbered 1..N (N <= 32).
- Older NIC 1.x used another table (0xF0 start EEG, 0xFA abort, 0xFB start, 0xF4 frequency,
  0xF5 load template; wiki revision of Nov 2013). This driver speaks the NIC2 table only.
Uncertain (kept explicit here, not verified against a real NIC): whether a template can be
started again after ABORT without reloading (the driver reloads: disarm aborts, arm loads);
what NIC does with an out-of-range online change (no reply exists; the driver never sends one);
number formatting (MatNIC sends ``num2str`` text: we send integer uA and up to 3 decimals in Hz);
whether NIC keeps stimulating when the TCP client vanishes (assume it does: a lost link is
reported as "stimulation may still be running").

Units at this API are SI: ``current_a`` (peak amplitude, A) -> uA on the wire; ``frequency_hz``;
``transition_s`` -> ms. The driver refuses, naming the bound, anything outside the NIC ranges.
arm() loads the protocol (template) named at construction, disarm() aborts (E-STOP: one byte,
no wait), start() starts the loaded protocol, stop() aborts, close() always sends abort.
"""

from __future__ import annotations

import math
import select
import socket
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pylsl

from drivers.base import OutputError
from drivers.stimulator import DeviceError, DeviceStatus, NotReady, Stimulator

MATNIC_VERSION = "04.07"  # the client version the NIC2 server expects with VERSION

# NIC2 remote-control codes (MatNICProtocolSet.m, MatNIC 04.07). The modelled subset is used by
# this driver; the others are listed so that a reader sees the whole table in one place.
COMMANDS: dict[str, int] = {
    "QUERY_STATUS": 128, "QUERY_STATUS_PROTOCOL": 129, "READ_MATNIC_VERSION": 130, "VERSION": 131,
    "READ_CHANNELS": 132, "ENABLE_TRNS_FILTER": 133, "DISABLE_TRNS_FILTER": 134, "LOAD_PROTOCOL": 135,
    "UNLOAD_PROTOCOL": 136, "START_PROTOCOL": 137, "ABORT_PROTOCOL": 138, "PAUSE_PROTOCOL": 139,
    "CHECK_IMPEDANCE": 140, "CHECK_IMPEDANCE_ABORT": 141, "GET_IMPEDANCE": 142, "CONFIGURE_FILE": 143,
    "CONFIGURE_MARKERS": 144, "CONFIGURE_PATH_FILE": 145, "ONLINE_ATDCS_CHANGE": 146,
    "ONLINE_ATACS_CHANGE": 147, "ONLINE_FTACS_CHANGE": 148, "ONLINE_PTACS_CHANGE": 149,
    "ONLINE_TACS_CHANGE": 150, "ONLINE_ATRNS_CHANGE": 151, "ONLINE_ATDCS_PEAK": 152,
    "ONLINE_ATACS_PEAK": 153, "PULSE_ENABLE": 154, "PULSE_CONFIGURATION": 155, "PULSE_START": 156,
    "PULSE_QUERY_STATUS": 157, "IMPORT_PROTOCOL": 158, "READ_DEVICE_SETTINGS": 159,
}
STATUS: dict[int, str] = {
    200: "REMOTE_CONTROL_ALLOWED", 201: "REMOTE_CONTROL_REJECTED", 202: "VERSION_RECEIVED",
    203: "SYNCHRONIZING", 204: "IDLE", 205: "PROTOCOL_NOT_LOADED", 206: "PROTOCOL_LOADING",
    207: "PROTOCOL_LOADED", 208: "PROTOCOL_RUNNING", 209: "PROTOCOL_ERROR", 210: "PROTOCOL_FINISHED",
    211: "PROTOCOL_PAUSED", 212: "PROTOCOL_ABORTED", 213: "PROTOCOL_ABORTING", 214: "EEG_ON",
    215: "EEG_OFF", 216: "STIMULATION_RAMPUP", 217: "STIMULATION_FULL", 218: "STIMULATION_RAMPDOWN",
    219: "STIMULATION_FINISHED", 220: "WAITING_FOR_SECOND_SHAM", 221: "CHECK_IMPEDANCE",
    222: "CHECK_IMPEDANCE_FINISHED", 223: "CHECK_IMPEDANCE_ABORTING", 224: "CHECK_IMPEDANCE_ABORTED",
    225: "PULSE_DISABLE", 226: "PULSE_ENABLE",
}
_CODE = {name: code for code, name in STATUS.items()}

MAX_AMPLITUDE_UA = 2000.0  # online tACS amplitude range 0-2000 uA
MAX_FREQUENCY_HZ = 150.0  # online tACS frequency range 0-150 Hz
TRANSITION_MS = (100, 10000)  # online amplitude change transition range
MAX_CHANNELS = 32
PARAMETERS = ("current_a", "frequency_hz", "channel", "transition_s")


def _name(status: int) -> str:
    return STATUS.get(status, f"unknown status {status}")


def frame(command: str, text: str | None = None) -> bytes:
    """The bytes of one command: its code, then ``text`` + NUL when it carries parameters."""
    code = bytes((COMMANDS[command],))
    return code if text is None else code + text.encode("ascii") + b"\0"


def _ua_text(value_ua: float) -> str:
    return str(int(round(value_ua)))  # 1 uA resolution


def _hz_text(value_hz: float) -> str:
    return f"{value_hz:.3f}".rstrip("0").rstrip(".")


class StarstimDriver(Stimulator):
    """Starstim tACS through NIC2's remote-control TCP server (one client at a time)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1235, timeout_s: float = 2.0,
                 protocol: str | None = None, connect_timeout_s: float = 10.0, transition_s: float = 0.1,
                 name: str | None = None) -> None:
        self.name = name or f"starstim:{host}:{port}"
        self.host, self.port = host, port
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.protocol = protocol  # template to load on arm(); None: the operator loads it in NIC
        self._check_transition(transition_s)
        self.transition_s = transition_s
        self.n_channels = 0
        self._sock: socket.socket | None = None
        self._link_error: str | None = None
        self._armed = False
        self._amps_ua: list[float | None] = []
        self._freqs_hz: list[float | None] = []
        self._send_lock = threading.Lock()  # one frame at a time on the socket (held for microseconds)
        self._exchange_lock = threading.RLock()  # a query and its reply byte

    # ------------------------------------------------------------------ what the controller asks
    sets_current = True  # the tACS amplitude is a command parameter
    waveform_output = True  # a sine: its charge comes from current and frequency, there is no pulse width
    sends_settings_while_idle = False  # NIC takes online changes only at full stimulation

    @classmethod
    def for_port(cls, port: str, **options: Any) -> StarstimDriver:
        """``port`` is NIC's ``host:port`` (host defaults to 127.0.0.1)."""
        host, _, tcp_port = port.rpartition(":")
        return cls(host=host or "127.0.0.1", port=int(tcp_port), **options)

    def command_parameters(self, settings: Mapping[str, float],
                           changed: Collection[str] | None = None) -> dict[str, Any]:
        """Only what changed: every online change is a transition on the running sine."""
        out: dict[str, Any] = {}
        if "current_a" in settings:
            out["current_a"] = settings["current_a"]
        if settings.get("frequency_hz") is not None:
            out["frequency_hz"] = settings["frequency_hz"]
        return out if changed is None else {k: v for k, v in out.items() if k in changed}

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> None:
        """TCP connect, announce the MatNIC version, obtain remote control, read the channel count."""
        if self._sock is not None:
            return
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except OSError as exc:
            raise DeviceError(f"{self.name}: cannot connect to NIC at {self.host}:{self.port}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # single-byte commands must not wait
        sock.settimeout(self.timeout_s)
        self._sock, self._link_error, self._armed = sock, None, False
        try:
            self._handshake()
        except DeviceError:
            self._drop_socket()
            raise

    def _handshake(self) -> None:
        deadline = time.monotonic() + self.connect_timeout_s
        while True:  # the NIC answers SYNCHRONIZING until its device is ready
            status = self._query(frame("VERSION", MATNIC_VERSION), "VERSION")
            if status in (_CODE["IDLE"], _CODE["VERSION_RECEIVED"]):
                break
            if status != _CODE["SYNCHRONIZING"]:
                raise DeviceError(f"{self.name}: NIC answered VERSION with {_name(status)}")
            self._wait_or_fail(deadline, "the NIC is still synchronizing with the device")
        while True:  # the NIC operator has to accept remote control
            status = self._query(frame("QUERY_STATUS"), "QUERY_STATUS")
            if status == _CODE["REMOTE_CONTROL_ALLOWED"]:
                break
            if status == _CODE["REMOTE_CONTROL_REJECTED"]:
                raise DeviceError(f"{self.name}: remote control rejected by the NIC operator")
            self._wait_or_fail(deadline, f"remote control not granted (NIC status {_name(status)})")
        n = self._query(frame("READ_CHANNELS"), "READ_CHANNELS")
        if not 1 <= n <= MAX_CHANNELS:
            raise DeviceError(f"{self.name}: NIC reports {n} channels (expected 1-{MAX_CHANNELS})")
        self.n_channels = n
        self._amps_ua = [None] * n
        self._freqs_hz = [None] * n

    def _wait_or_fail(self, deadline: float, why: str) -> None:
        if time.monotonic() + 0.1 > deadline:
            raise DeviceError(f"{self.name}: {why} after {self.connect_timeout_s} s")
        time.sleep(0.1)

    def close(self) -> None:
        """Always sends ABORT (whatever the driver believes the state is), then closes the socket.
        Raises DeviceError after closing if the abort could not be sent."""
        if self._sock is None:
            return
        error: DeviceError | None = None
        try:
            self.disarm()
        except DeviceError as exc:
            error = exc
        self._drop_socket()
        if error is not None:
            raise error

    def _drop_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    # ------------------------------------------------------------------ commands
    def arm(self) -> float:
        """Load the protocol (if one was named); readiness follows (start() refuses until LOADED)."""
        with self._exchange_lock:
            status = self._query(frame("QUERY_STATUS"), "QUERY_STATUS")
            if status in (_CODE["PROTOCOL_RUNNING"], _CODE["PROTOCOL_PAUSED"]):
                raise NotReady(f"{self.name}: a protocol is running on the NIC ({_name(status)}); stop() it first")
            if status == _CODE["SYNCHRONIZING"]:
                raise NotReady(f"{self.name}: the NIC is synchronizing with the device")
            t = self._send(frame("LOAD_PROTOCOL", self.protocol)) if self.protocol else pylsl.local_clock()
            self._armed = True
            return t

    def disarm(self) -> float:
        """E-STOP path: ABORT goes out at once (one byte, no reply awaited), in any state."""
        self._armed = False
        if self._sock is None:
            return pylsl.local_clock()  # never connected / closed: nothing to abort from here
        return self._send(frame("ABORT_PROTOCOL"))

    def start(self) -> float:
        """Start the loaded protocol (ramp-up, then full stimulation: see status().ready)."""
        with self._exchange_lock:
            if not self._armed:
                raise NotReady(f"{self.name}: disarmed; arm() first")
            status = self._query(frame("QUERY_STATUS"), "QUERY_STATUS")
            if status in (_CODE["PROTOCOL_LOADED"], _CODE["PROTOCOL_PAUSED"]):
                return self._send(frame("START_PROTOCOL"))
            what = f"protocol {self.protocol!r}" if self.protocol else "the protocol"
            if status == _CODE["PROTOCOL_LOADING"]:
                raise NotReady(f"{self.name}: {what} is still loading")
            if status == _CODE["PROTOCOL_NOT_LOADED"]:
                raise DeviceError(f"{self.name}: NIC could not load {what} (PROTOCOL_NOT_LOADED)")
            if status == _CODE["PROTOCOL_ERROR"]:
                raise DeviceError(f"{self.name}: NIC reports PROTOCOL_ERROR for {what}")
            if status == _CODE["PROTOCOL_RUNNING"]:
                raise NotReady(f"{self.name}: {what} is already running")
            if status in (_CODE["PROTOCOL_ABORTED"], _CODE["PROTOCOL_ABORTING"], _CODE["PROTOCOL_FINISHED"]):
                raise NotReady(f"{self.name}: {what} ended ({_name(status)}); arm() again to reload it")
            raise NotReady(f"{self.name}: no protocol loaded (NIC status {_name(status)})")

    def stop(self) -> float:
        """Abort stimulation (NIC ramps down); arm() again to reload the protocol."""
        return self.disarm()

    def pause(self) -> float:
        """Pause the running protocol (start() resumes it)."""
        return self._send(frame("PAUSE_PROTOCOL"))

    def fire(self) -> float:
        raise OutputError(f"{self.name}: tACS has no single pulse; use start/stop and set_parameters")

    def set_parameters(self, **params: Any) -> float:
        """Online tACS change. ``current_a`` (A, peak) and/or ``frequency_hz``: a number for
        ``channel`` (1-based; None = every channel) or one value per channel; ``transition_s`` for
        the amplitude ramp (0.1-10 s). Out-of-range values raise ValueError naming the bound;
        a change outside full stimulation raises NotReady."""
        unknown = sorted(set(params) - set(PARAMETERS))
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {unknown}; accepted: {list(PARAMETERS)}")
        current, frequency = params.get("current_a"), params.get("frequency_hz")
        if current is None and frequency is None:
            raise ValueError(f"{self.name}: nothing to change (give current_a and/or frequency_hz)")
        transition = params.get("transition_s", self.transition_s)
        self._check_transition(transition)
        if current is not None:  # bounds first: refused whatever the state of the link
            self._check_range("current_a", current, 1e6, MAX_AMPLITUDE_UA, "uA")
        if frequency is not None:
            self._check_range("frequency_hz", frequency, 1.0, MAX_FREQUENCY_HZ, "Hz")
        self._require_link()
        channel = params.get("channel")
        amps = freqs = None
        if current is not None:
            amps = self._spread("current_a", current, channel, self._amps_ua, 1e6, MAX_AMPLITUDE_UA, "uA")
        if frequency is not None:
            freqs = self._spread("frequency_hz", frequency, channel, self._freqs_hz, 1.0, MAX_FREQUENCY_HZ, "Hz")
        with self._exchange_lock:
            if not self._armed:
                raise NotReady(f"{self.name}: disarmed; arm() and start() first")
            phase = self._query(frame("QUERY_STATUS_PROTOCOL"), "QUERY_STATUS_PROTOCOL")
            if phase != _CODE["STIMULATION_FULL"]:
                raise NotReady(f"{self.name}: online changes are taken only at full stimulation "
                               f"(NIC reports {_name(phase)})")
            data = b""
            if amps is not None:
                text = ";".join(_ua_text(a) for a in amps) + f";{int(round(transition * 1000))}"
                data += frame("ONLINE_ATACS_CHANGE", text)
            if freqs is not None:
                data += frame("ONLINE_FTACS_CHANGE", ";".join(_hz_text(f) for f in freqs))
            t = self._send(data)
            if amps is not None:
                self._amps_ua = list(amps)
            if freqs is not None:
                self._freqs_hz = list(freqs)
            return t

    def status(self) -> DeviceStatus:
        """Queries the NIC; device/link errors are reported in ``error`` (not raised)."""
        parameters: dict[str, Any] = {
            "n_channels": self.n_channels, "protocol": self.protocol,
            "current_a": [None if a is None else a / 1e6 for a in self._amps_ua],
            "frequency_hz": list(self._freqs_hz),
        }
        if self._sock is None or self._link_error is not None:
            return DeviceStatus(t=pylsl.local_clock(), connected=False, armed=self._armed,
                                error=self._link_error, parameters=parameters)
        try:
            with self._exchange_lock:
                status = self._query(frame("QUERY_STATUS"), "QUERY_STATUS")
                phase = None
                if status == _CODE["PROTOCOL_RUNNING"]:
                    phase = self._query(frame("QUERY_STATUS_PROTOCOL"), "QUERY_STATUS_PROTOCOL")
        except DeviceError as exc:
            return DeviceStatus(t=pylsl.local_clock(), connected=self._link_error is None, remote=True,
                                armed=self._armed, error=str(exc), parameters=parameters)
        parameters["nic_status"] = _name(status)
        parameters["stimulation"] = None if phase is None else _name(phase)
        error = _name(status) if status == _CODE["PROTOCOL_ERROR"] else None
        return DeviceStatus(t=pylsl.local_clock(), connected=True, remote=True, armed=self._armed,
                            ready=self._armed and phase == _CODE["STIMULATION_FULL"], error=error,
                            parameters=parameters)

    # ------------------------------------------------------------------ helpers
    def _check_transition(self, transition_s: Any) -> None:
        lo, hi = TRANSITION_MS
        if not isinstance(transition_s, (int, float)) or not lo <= round(transition_s * 1000) <= hi:
            raise ValueError(f"transition_s must be {lo / 1000}-{hi / 1000} s (NIC range {lo}-{hi} ms), "
                             f"got {transition_s!r}")

    def _check_range(self, key: str, value: Any, scale: float, bound: float, unit: str) -> None:
        values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        for v in values:
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{self.name}: {key} must be a finite number, got {v!r}")
            wire = v * scale
            if not 0.0 <= wire <= bound + 1e-6:
                si = f"{v} A ({wire:g} uA)" if unit == "uA" else f"{v} Hz"
                raise ValueError(f"{self.name}: {key}={si} is outside the NIC online tACS range 0-{bound:g} {unit}")

    def _spread(self, key: str, value: Any, channel: Any, known: list[float | None], scale: float,
                bound: float, unit: str) -> list[float]:
        """Per-channel values on the wire scale, bound-checked; NIC takes every channel at once."""
        if isinstance(value, Sequence) and not isinstance(value, str):
            if channel is not None:
                raise ValueError(f"{self.name}: give either one {key} per channel or a channel, not both")
            if len(value) != self.n_channels:
                raise ValueError(f"{self.name}: {key} has {len(value)} values for {self.n_channels} channels")
            values = list(value)
        elif channel is None:
            values = [value] * self.n_channels
        else:
            if isinstance(channel, bool) or not isinstance(channel, int) or not 1 <= channel <= self.n_channels:
                raise ValueError(f"{self.name}: channel must be 1-{self.n_channels}, got {channel!r}")
            values = [None if k + 1 != channel else value for k in range(self.n_channels)]
        out: list[float] = []
        unknown: list[int] = []
        for k, v in enumerate(values):
            if v is None:
                previous = known[k]
                if previous is None:
                    unknown.append(k + 1)
                    out.append(0.0)
                else:
                    out.append(previous)
                continue
            out.append(min(v * scale, bound))  # range already checked; min() only absorbs float rounding
        if unknown:
            raise ValueError(f"{self.name}: {key} of channel(s) {unknown} unknown to the driver; NIC changes every "
                             f"channel at once, so set them all first (channel=None or one value per channel)")
        return out

    def _require_link(self) -> socket.socket:
        if self._sock is None:
            raise DeviceError(f"{self.name}: not connected (call connect())")
        if self._link_error is not None:
            raise DeviceError(f"{self.name}: {self._link_error}")
        return self._sock

    def _broken(self, why: str) -> DeviceError:
        self._link_error = f"link to NIC at {self.host}:{self.port} lost ({why}); stimulation may still be running"
        return DeviceError(f"{self.name}: {self._link_error}")

    def _send(self, data: bytes) -> float:
        """Send whole frames; returns the LSL time they left. Detects a peer that closed first."""
        with self._send_lock:
            sock = self._require_link()
            try:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable and sock.recv(1, socket.MSG_PEEK) == b"":
                    raise self._broken("NIC closed the connection")
                t = pylsl.local_clock()  # before the syscall: re-taking the GIL after it can take ms
                sock.sendall(data)
            except (OSError, ValueError) as exc:  # reset, broken pipe, send timeout, closed socket
                raise self._broken(str(exc) or type(exc).__name__) from exc
            return t

    def _query(self, data: bytes, what: str) -> int:
        """Send a query and read its one-byte answer within timeout_s (stale bytes are dropped first)."""
        with self._exchange_lock:
            sock = self._require_link()
            try:
                while select.select([sock], [], [], 0)[0]:  # late answers to earlier timed-out queries
                    if sock.recv(4096) == b"":
                        raise self._broken("NIC closed the connection")
            except OSError as exc:
                raise self._broken(str(exc)) from exc
            self._send(data)
            try:
                reply = sock.recv(1)
            except TimeoutError as exc:
                raise DeviceError(f"{self.name}: no reply from NIC to {what} ({data[0]}) within "
                                  f"{self.timeout_s} s") from exc
            except OSError as exc:
                raise self._broken(str(exc)) from exc
            if reply == b"":
                raise self._broken(f"NIC closed the connection instead of answering {what}")
            return reply[0]
