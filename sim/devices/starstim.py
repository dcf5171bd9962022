"""A virtual Neuroelectrics NIC2 remote-control server (Starstim tACS) on loopback TCP.

Written from the public MatNIC 04.07 protocol description (MatNICProtocolSet and the MatNIC
command functions), independently of the driver:
- a command is one byte 128-159; the commands that carry parameters (VERSION, LOAD_PROTOCOL,
  the online changes, ...) continue with ASCII text, values separated by ``;``, ended by NUL
  (``\\n`` and ``\\r`` also end it). Bytes arrive as TCP delivers them: a command may be split
  across segments, several may share one; the parser keeps a buffer.
- queries are answered with one status byte (READ_CHANNELS: the channel count); the other
  commands are silent, their effect is seen through QUERY_STATUS / QUERY_STATUS_PROTOCOL.
- online tACS changes need full stimulation and one value per channel; amplitudes 0-2000 uA,
  transition 100-10000 ms, frequencies 0-150 Hz. Anything else is rejected (logged in
  ``rejected`` with the reason) and changes nothing: the device checks on its own, whatever
  the client checked.

Timing: SYNCHRONIZING for ``sync_s`` after start, PROTOCOL_LOADING for ``load_s``, ramp-up for
``ramp_up_s`` before STIMULATION_FULL, ABORTING/ramp-down for ``abort_s``.
Failure switches (``faults``): ``no_reply`` (queries are not answered), ``disconnect`` (the
server drops the client and any new one while set), ``reject_remote`` (the operator says no).
Observations: ``stimulating``, ``amplitude_ua`` and ``frequency_hz`` (per channel), ``applied``
(every applied change with its LSL time: ``log`` is the byte log method of VirtualDevice),
``commands`` (every complete command), ``rejected``.
Journal (``note``, see link.py): each command described ("query status", "load protocol 'tacs'",
"start", "online current 1000 uA, transition 1000 ms", ...) with the status byte answered;
rejections as "ignored" with the reason; transitions the NIC completes by itself ("protocol
'tacs' loaded", "full stimulation", "aborted") as events; client connections as link notes.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import pylsl

from sim.devices.link import TcpDevice

# MatNIC 04.07 command codes (the subset this device models) and status codes.
QUERY_STATUS, QUERY_STATUS_PROTOCOL, VERSION, READ_CHANNELS = 128, 129, 131, 132
LOAD_PROTOCOL, UNLOAD_PROTOCOL, START_PROTOCOL, ABORT_PROTOCOL, PAUSE_PROTOCOL = 135, 136, 137, 138, 139
ONLINE_ATACS_CHANGE, ONLINE_FTACS_CHANGE = 147, 148
# Commands followed by text + terminator (from the MatNIC functions that write parameters).
WITH_TEXT = frozenset({131, 135, 143, 144, 145, 146, 147, 148, 149, 150, 151, 152, 153, 155, 158})
TERMINATORS = b"\0\n\r"
MAX_TEXT = 4096  # a command whose text never ends is garbage, not a long parameter

REMOTE_ALLOWED, REMOTE_REJECTED, SYNCHRONIZING, IDLE = 200, 201, 203, 204
NOT_LOADED, LOADING, LOADED, RUNNING, PAUSED, ABORTED, ABORTING = 205, 206, 207, 208, 211, 212, 213
RAMPUP, FULL, RAMPDOWN = 216, 217, 218

AMPLITUDE_UA = (0.0, 2000.0)
FREQUENCY_HZ = (0.0, 150.0)
TRANSITION_MS = (100.0, 10000.0)


@dataclass(frozen=True)
class Parsed:
    t: float  # LSL arrival time of the byte that completed the command
    code: int
    text: str | None
    raw: bytes = b""  # the command as received (with its terminator)


@dataclass(frozen=True)
class Applied:
    t: float
    parameter: str  # "amplitude_ua" | "frequency_hz"
    values: tuple[float, ...]  # one per channel
    transition_ms: float | None = None


@dataclass(frozen=True)
class Rejected:
    t: float
    code: int | None
    text: str | None
    reason: str


@dataclass
class NicFaults:
    no_reply: bool = False
    disconnect: bool = False
    reject_remote: bool = False


class VirtualStarstim(TcpDevice):
    kind = "starstim"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, n_channels: int = 8,
                 protocols: dict[str, tuple[float, float]] | None = None, sync_s: float = 0.0,
                 load_s: float = 0.05, ramp_up_s: float = 0.2, abort_s: float = 0.05) -> None:
        super().__init__(host, port)
        self.n_channels = n_channels
        # protocol name -> (amplitude uA, frequency Hz) every channel starts with
        self.protocols = dict(protocols or {"tacs": (1000.0, 10.0)})
        self.sync_s, self.load_s, self.ramp_up_s, self.abort_s = sync_s, load_s, ramp_up_s, abort_s
        self.faults = NicFaults()
        self.remote = False
        self.state = IDLE
        self.phase = IDLE  # QUERY_STATUS_PROTOCOL answer
        self.loaded: str | None = None
        self.amplitude_ua = [0.0] * n_channels
        self.frequency_hz = [0.0] * n_channels
        self._buffer = bytearray()
        self._due: float | None = None  # when the current transition (loading, ramp, abort) completes
        self._pending_load: str | None = None
        self._t_started: float | None = None
        self._applied: list[Applied] = []
        self._commands: list[Parsed] = []
        self._rejected: list[Rejected] = []
        self._pending: list[tuple[float, str, str, bytes | None]] | None = None  # notes after the command
        self._last_reply: bytes | None = None

    def driver_options(self) -> dict[str, Any]:
        """Nobody sits at this NIC to load a template: the driver loads the first one on arm()."""
        return {"protocol": next(iter(self.protocols))}

    # -------------------------------------------------------------- observations
    @property
    def stimulating(self) -> bool:
        return self.state == RUNNING or self.state == ABORTING

    @property
    def applied(self) -> list[Applied]:
        with self._lock:
            return list(self._applied)

    @property
    def commands(self) -> list[Parsed]:
        with self._lock:
            return list(self._commands)

    @property
    def rejected(self) -> list[Rejected]:
        with self._lock:
            return list(self._rejected)

    @property
    def client_connected(self) -> bool:
        return self._client is not None

    def disconnect(self) -> None:
        """Fault: drop the client (done by the device thread, which owns the socket)."""
        self.faults.disconnect = True

    # -------------------------------------------------------------- byte stream
    def on_bytes(self, data: bytes, t: float) -> None:
        if self.faults.disconnect:  # the cable is out: whatever a client manages to send is lost
            return
        self._buffer += data
        while self._buffer:
            code = self._buffer[0]
            if code in TERMINATORS:  # a stray terminator (e.g. the \n of a \r\n pair)
                del self._buffer[0]
                continue
            if not 128 <= code <= 159:
                del self._buffer[0]
                self._reject(t, None, None, f"byte {code} is not a command (commands are 128-159)")
                continue
            if code not in WITH_TEXT:
                del self._buffer[0]
                self._dispatch(Parsed(t, code, None, bytes([code])))
                continue
            end = next((i for i, b in enumerate(self._buffer) if i > 0 and b in TERMINATORS), None)
            if end is None:
                if len(self._buffer) > MAX_TEXT:
                    self._reject(t, code, None, f"parameter text longer than {MAX_TEXT} bytes without terminator")
                    self._buffer.clear()
                return  # the rest of this command is still on its way
            raw = bytes(self._buffer[1:end])
            whole = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            try:
                text = raw.decode("ascii")
            except UnicodeDecodeError:
                self._reject(t, code, None, "parameter text is not ASCII", whole)
                continue
            self._dispatch(Parsed(t, code, text, whole))

    def _reply(self, value: int) -> None:
        if not self.faults.no_reply:
            try:
                self.write(bytes((value,)))
                self._last_reply = bytes((value,))
            except OSError:  # the client left; the device keeps running (as NIC would)
                pass

    def _reject(self, t: float, code: int | None, text: str | None, reason: str, data: bytes | None = None) -> None:
        with self._lock:
            self._rejected.append(Rejected(t, code, text, reason))
        self._later(t, "ignored", f"rejected: {reason}", data)

    def _later(self, t: float, type_: str, text: str, data: bytes | None = None) -> None:
        """Journal after the command being dispatched, or at once (tick, byte-level rejections)."""
        if self._pending is not None:
            self._pending.append((t, type_, text, data))
        else:
            self.note(t, type_, text, data)

    # -------------------------------------------------------------- commands
    def _dispatch(self, cmd: Parsed) -> None:
        with self._lock:
            self._commands.append(cmd)
        self.tick(cmd.t)  # bring timed transitions up to date before answering
        self._last_reply = None
        self._pending = []
        try:
            self._execute(cmd)
        finally:
            pending, self._pending = self._pending, None
        self.note(cmd.t, "command", describe(cmd.code, cmd.text), cmd.raw or None, self._last_reply)
        for t, type_, text, data in pending:
            self.note(t, type_, text, data)

    def _execute(self, cmd: Parsed) -> None:
        t, code = cmd.t, cmd.code
        if code == VERSION:  # a client announces itself: a new remote session starts
            self.remote = False
            self._reply(SYNCHRONIZING if t < self._t_sync_end else IDLE)
        elif code == QUERY_STATUS:
            if not self.remote and t >= self._t_sync_end:
                self.remote = not self.faults.reject_remote
                self._reply(REMOTE_ALLOWED if self.remote else REMOTE_REJECTED)
            else:
                self._reply(SYNCHRONIZING if t < self._t_sync_end else self.state)
        elif code == QUERY_STATUS_PROTOCOL:
            self._reply(self.phase)
        elif code == READ_CHANNELS:
            self._reply(self.n_channels)
        elif not self.remote:
            self._reject(t, code, cmd.text, "remote control not granted (VERSION, then QUERY_STATUS)")
        elif code == LOAD_PROTOCOL:
            self._load(cmd)
        elif code == UNLOAD_PROTOCOL:
            if self.state in (RUNNING, PAUSED, ABORTING):
                self._reject(t, code, None, "cannot unload a running protocol")
            else:
                self.state, self.loaded = IDLE, None
        elif code == START_PROTOCOL:
            self._start(cmd)
        elif code == ABORT_PROTOCOL:
            if self.state in (RUNNING, PAUSED):
                self.state, self.phase, self._due = ABORTING, RAMPDOWN, t + self.abort_s
            # aborting when nothing runs is harmless: nothing to do
        elif code == PAUSE_PROTOCOL:
            if self.state == RUNNING:
                self.state, self.phase, self._due = PAUSED, IDLE, None
            else:
                self._reject(t, code, None, "nothing to pause")
        elif code == ONLINE_ATACS_CHANGE:
            self._online(cmd, "amplitude_ua", AMPLITUDE_UA, "uA", with_transition=True)
        elif code == ONLINE_FTACS_CHANGE:
            self._online(cmd, "frequency_hz", FREQUENCY_HZ, "Hz", with_transition=False)
        else:
            self._reject(t, code, cmd.text, f"command {code} is not modelled by this virtual NIC")

    @property
    def _t_sync_end(self) -> float:
        return (self._t_started or 0.0) + self.sync_s

    def start(self) -> str:
        self._t_started = pylsl.local_clock()
        return super().start()

    def _load(self, cmd: Parsed) -> None:
        if self.state in (RUNNING, PAUSED, ABORTING, LOADING):
            self._reject(cmd.t, cmd.code, cmd.text, f"cannot load while the NIC is in state {self.state}")
            return
        self.state, self._pending_load, self._due = LOADING, cmd.text, cmd.t + self.load_s

    def _start(self, cmd: Parsed) -> None:
        if self.state == PAUSED:
            self.state, self.phase = RUNNING, FULL
            return
        if self.state != LOADED or self.loaded is None:
            self._reject(cmd.t, cmd.code, None, f"no protocol loaded (state {self.state})")
            return
        amplitude, frequency = self.protocols[self.loaded]
        self.amplitude_ua = [float(amplitude)] * self.n_channels
        self.frequency_hz = [float(frequency)] * self.n_channels
        self.state, self.phase, self._due = RUNNING, RAMPUP, cmd.t + self.ramp_up_s

    def _online(self, cmd: Parsed, parameter: str, bounds: tuple[float, float], unit: str,
                with_transition: bool) -> None:
        def refuse(reason: str) -> None:
            self._reject(cmd.t, cmd.code, cmd.text, reason)

        if self.state != RUNNING or self.phase != FULL:
            return refuse(f"online change outside full stimulation (state {self.state}, phase {self.phase})")
        fields = (cmd.text or "").split(";")
        expected = self.n_channels + (1 if with_transition else 0)
        if len(fields) != expected:
            return refuse(f"{len(fields)} values, expected {expected} (one per channel"
                          f"{' + transition' if with_transition else ''})")
        try:
            numbers = [float(f) for f in fields]
        except ValueError:
            return refuse(f"not numbers: {cmd.text!r}")
        values, transition = (numbers[:-1], numbers[-1]) if with_transition else (numbers, None)
        lo, hi = bounds
        for k, v in enumerate(values):
            if not lo <= v <= hi:
                return refuse(f"channel {k + 1}: {v:g} {unit} outside {lo:g}-{hi:g} {unit}")
        if transition is not None and not TRANSITION_MS[0] <= transition <= TRANSITION_MS[1]:
            return refuse(f"transition {transition:g} ms outside {TRANSITION_MS[0]:g}-{TRANSITION_MS[1]:g} ms")
        setattr(self, parameter, values)
        with self._lock:
            self._applied.append(Applied(cmd.t, parameter, tuple(values), transition))

    # -------------------------------------------------------------- time and faults
    def tick(self, t: float) -> None:
        if self.faults.disconnect and self._client is not None:
            try:
                self._client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._client.close()
            self._client = None
            self._buffer.clear()
            self._later(t, "link", "client dropped (disconnect fault)")
        if self._due is None or t < self._due:
            return
        due, self._due = self._due, None
        if self.state == LOADING:
            name, self._pending_load = self._pending_load, None
            if name in self.protocols:
                self.state, self.loaded = LOADED, name
                self._later(due, "event", f"protocol {name!r} loaded")
            else:
                self.state, self.loaded = NOT_LOADED, None
                self._later(due, "event", f"protocol {name!r} unknown: not loaded")
        elif self.state == RUNNING and self.phase == RAMPUP:
            self.phase = FULL
            amps = "/".join(f"{a:g}" for a in sorted(set(self.amplitude_ua)))
            self._later(due, "event", f"ramp-up done: full stimulation ({amps} uA)")
        elif self.state == ABORTING:
            self.state, self.phase = ABORTED, IDLE
            self.loaded = None  # a new run needs LOAD_PROTOCOL again
            self._later(due, "event", "ramp-down done: aborted")


_NAMES = {QUERY_STATUS: "query status", QUERY_STATUS_PROTOCOL: "query protocol status", READ_CHANNELS: "read channels",
          UNLOAD_PROTOCOL: "unload protocol", START_PROTOCOL: "start", ABORT_PROTOCOL: "abort",
          PAUSE_PROTOCOL: "pause"}


def describe(code: int, text: str | None) -> str:
    """What a parsed MatNIC command asks for, in words."""
    if code in _NAMES:
        return _NAMES[code]
    if code == VERSION:
        return f"version {text}"
    if code == LOAD_PROTOCOL:
        return f"load protocol {text!r}"
    if code in (ONLINE_ATACS_CHANGE, ONLINE_FTACS_CHANGE):
        what, unit = ("current", "uA") if code == ONLINE_ATACS_CHANGE else ("frequency", "Hz")
        fields = (text or "").split(";")
        if code == ONLINE_ATACS_CHANGE and len(fields) > 1:
            values, extra = fields[:-1], f", transition {fields[-1]} ms"
        else:
            values, extra = fields, ""
        shown = values[0] if len(set(values)) == 1 else "/".join(values)
        return f"online {what} {shown} {unit}{extra}"
    return f"command {code}" + (f" {text!r}" if text is not None else "")


def create(**options) -> VirtualStarstim:
    """A virtual NIC2 server (not yet started); options: host, port, n_channels, protocols
    ({name: (amplitude_uA, frequency_Hz)}), sync_s, load_s, ramp_up_s, abort_s."""
    return VirtualStarstim(**options)
