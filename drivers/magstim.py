"""Magstim 200², BiStim² and Rapid² over the unit's serial remote-control port.

Protocol facts, from the public implementation MagPy (github.com/nicolasmcnair/magpy:
``magpy/magstim.py``, ``magpy/_virtual.py``), cboulay/magstim_python's README and the Magstim host
interface documents kept there (200²/BiStim², Rapid² Rev 5.1):
- 9600 baud, 8N1. A command is ASCII: command byte, data bytes (``@`` as filler when there is no
  data), then CRC = ``~sum(command + data) & 0xFF``. So ``Q@n`` (enable remote control), ``R@m``
  (disable), ``EBx`` (arm), ``EAy`` (disarm), ``EHr`` (fire): the last letter *is* the CRC.
  ``@050*`` sets power A to 50 % (three ASCII digits).
- The reply echoes the command byte, then the instrument-status byte, then data, then the CRC over
  everything before it. A lone ``?`` means the command was not recognised; ``?`` in byte 1 means
  invalid data, ``S`` in byte 1 means the command conflicts with the unit's current state (both are
  followed by the CRC only).
- Instrument status bits: 0 standby, 1 armed, 2 ready, 3 coil present, 4 replace coil, 5 error
  present, 6 error type, 7 remote control. Rapid² replies to B/D/[ and ``\\@`` add a second status
  byte: 0 enhanced power, 1 train running, 2 wait (between trains), 3 single-pulse mode, 4 HV PSU
  connected, 5 coil ready, 6 theta PSU detected, 7 modified coil algorithm.
- Reply lengths: 3 bytes for Q@/R@/E*/@/A/C; ``J@`` 12 (power A, power B or 000, interval, 3 digits
  each); Rapid² ``\\@`` 24 (power 3, frequency 4 in 0.1 Hz, pulses 5, duration 4 in 0.1 s, wait 4 in
  0.1 s; software version 9+); Rapid² B/D/[ 4; ``I@`` 6 (three-character error code); ``F@`` 9;
  Rapid² ``ND`` up to its NUL, then the CRC.
- BiStim²: ``A`` + 3 digits sets power B, ``C`` + 3 digits the interpulse interval in ms (0 =
  simultaneous discharge). Rapid²: ``B`` + 4 digits frequency (0.1 Hz), ``D`` + 5 digits number of
  pulses, ``[`` + 4 digits train duration (0.1 s); ``[`` with 0 / non-zero switches between
  single-pulse and repetitive mode (only disarmed). Rapid² reads parameters with ``\\@``, not ``J@``.
- Keep-alive: MagPy re-sends ``Q@n`` every 0.5 s while armed and every 5 s while disarmed; any
  command restarts that period. Without it the unit drops remote control and disarms.
- Timing: about 1.1 s from arming to ready; power changes take 10 ms per % upwards and (MagPy's
  docstrings) 100 ms per % downwards; the unit disarms when armed and idle for 60 s. Max rate
  (MagPy): BiStim² 0.25 Hz, Rapid² single-pulse 1 Hz; after a Rapid² train at least 0.5 s wait.

The driver's model (documented choices, not in the public sources):
- Readiness is ``max(armed + arm_time_s, power change end, recharge/train end)``, counted from the
  moment the unit's *reply* arrived (the unit started earlier, so this errs on the late side), and
  status bits newer than that time can only make it *less* ready, never earlier. The default recharge
  after a single pulse follows MagPy's virtual unit: 200² 2/3/4 s below 50/80/above %, BiStim² 4 s,
  Rapid² 1 s; a Rapid² train: ``n_pulses / frequency + train_wait_s``. A power change while disarmed
  takes no time (arming charges the capacitor).
- The status byte in a reply is the state *before* the command (MagPy's virtual unit says "this is
  Magstim behaviour"), except after Q@/R@, which show the new remote state. ``armed or ready`` is
  "armed" (whether the armed bit stays set once ready is not documented).
- Rapid² is driven as software version 9+ without an unlock code (units that need
  ``Q<unlock code>`` are not supported here): ``connect()`` reads the version (``ND``, answered
  ``NV9.0`` + NUL + CRC) and refuses an older unit, whose replies have other lengths.
  ``read_coil_temperature()`` reads ``F@`` (two 3-digit values in 0.1 °C, MagPy). Enhanced power
  (110 %), BiStim² high-resolution interval and charge delay are not implemented.
- Asynchronous faults (keep-alive unanswered, unit disarmed itself, remote control lost) are sticky:
  the driver tries to disarm, stops the keep-alive (so the unit drops remote control), and refuses
  arm/fire/set with the recorded reason until ``connect()`` takes remote control again. ``disarm()``
  is always attempted. Errors of one command are raised at once and are not sticky.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import serial
from pylsl import local_clock

from drivers.serial_port import SerialPort, open_port
from drivers.stimulator import DeviceError, DeviceStatus, NotReady, Stimulator

PORT_ERRORS: tuple[type[Exception], ...] = (serial.SerialException, OSError)
try:  # pyserial lets termios errors through on POSIX (e.g. tcflush on a pty whose other end closed)
    from termios import error as _TermiosError

    PORT_ERRORS += (_TermiosError,)
except ImportError:  # pragma: no cover - Windows
    pass

BAUDRATE = 9600
MODELS = ("200", "bistim", "rapid")
MODEL_NAMES = {"200": "Magstim 200²", "bistim": "Magstim BiStim²", "rapid": "Magstim Rapid²"}

# Instrument-status bits (byte 1 of most replies).
STANDBY, ARMED, READY, COIL_PRESENT, REPLACE_COIL, ERROR_PRESENT, ERROR_TYPE, REMOTE = (1 << i for i in range(8))
# Rapid² status bits (byte 2 of Rapid² parameter replies).
R_ENHANCED, R_TRAIN, R_WAIT, R_SINGLE_PULSE = 1, 2, 4, 8

PARAMS = {
    "200": ("intensity_pct",),
    "bistim": ("intensity_pct", "intensity_b_pct", "interval_s"),
    "rapid": ("intensity_pct", "frequency_hz", "n_pulses", "train_duration_s", "mode"),
}
RAPID_MODES = ("single", "repetitive")

RECHARGE_S = {"bistim": 4.0, "rapid": 1.0}  # 200²: by power, see _default_recharge
VERSION_REPLY_MAX = 24  # ND reply: N, version text, NUL, CRC; longer is taken as garbage
RAPID_MIN_VERSION = (9,)  # the reply and data formats this driver speaks (\\@ 24 bytes, 5-digit pulses)


def crc(data: bytes) -> int:
    """The Magstim checksum: the inverted low byte of the sum of all bytes."""
    return ~sum(data) & 0xFF


def frame(body: bytes) -> bytes:
    """``body`` (command byte + data) followed by its CRC, as it goes on the wire."""
    return body + bytes([crc(body)])


def _default_recharge(model: str, power: int) -> float:
    if model == "200":
        return 2.0 if power < 50 else 3.0 if power < 80 else 4.0
    return RECHARGE_S[model]


@dataclass(frozen=True)
class InstrumentStatus:
    """The instrument-status byte of a reply, decoded."""

    byte: int

    standby = property(lambda self: bool(self.byte & STANDBY))
    armed = property(lambda self: bool(self.byte & (ARMED | READY)))  # armed, charging or ready
    ready = property(lambda self: bool(self.byte & READY))
    coil_present = property(lambda self: bool(self.byte & COIL_PRESENT))
    error_present = property(lambda self: bool(self.byte & ERROR_PRESENT))
    remote = property(lambda self: bool(self.byte & REMOTE))

    def describe(self) -> str:
        state = "ready" if self.ready else "armed (charging)" if self.armed else "standby"
        parts = [state, "remote control" if self.remote else "NOT under remote control"]
        if not self.coil_present:
            parts.append("no coil")
        if self.byte & REPLACE_COIL:
            parts.append("replace coil")
        if self.error_present:
            parts.append("error present")
        return f"{', '.join(parts)} (status 0x{self.byte:02x})"


@dataclass(frozen=True)
class Reply:
    raw: bytes
    t: float  # LSL time the reply was complete
    t_sent: float  # LSL time the command left

    @property
    def status(self) -> InstrumentStatus:
        return InstrumentStatus(self.raw[1])

    @property
    def data(self) -> bytes:
        return self.raw[2:-1]


class _WrongState(DeviceError):
    """Internal: the unit answered ``S``; the caller diagnoses why before raising."""


def _show(data: bytes) -> str:
    return repr(data)[2:-1]


class MagstimDriver(Stimulator):
    """A Magstim unit in remote control, with its keep-alive in a thread of its own.

    ``keepalive_armed_s`` / ``keepalive_disarmed_s`` are the keep-alive periods (0.5 s / 5 s, the
    MagPy figures); the timing parameters must match the unit (defaults: the public figures).
    """

    def __init__(
        self,
        port: str,
        model: str = "200",
        reply_timeout_s: float = 0.1,
        *,
        keepalive_armed_s: float = 0.5,
        keepalive_disarmed_s: float = 5.0,
        arm_time_s: float = 1.1,
        power_up_s_per_pct: float = 0.010,
        power_down_s_per_pct: float = 0.100,
        recharge_s: float | None = None,
        train_wait_s: float = 0.5,
        baudrate: int = BAUDRATE,
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"Magstim model {model!r} unknown; models: {', '.join(MODELS)}")
        if reply_timeout_s <= 0 or keepalive_armed_s <= 0 or keepalive_disarmed_s <= 0:
            raise ValueError("reply_timeout_s and keep-alive periods must be > 0 s")
        self.port = port
        self.model = model
        self.name = f"magstim-{model}:{port}"
        self.reply_timeout_s = reply_timeout_s
        self.keepalive_armed_s = keepalive_armed_s
        self.keepalive_disarmed_s = keepalive_disarmed_s
        self.arm_time_s = arm_time_s
        self.power_up_s_per_pct = power_up_s_per_pct
        self.power_down_s_per_pct = power_down_s_per_pct
        self.recharge_s = recharge_s
        self.train_wait_s = train_wait_s
        self.baudrate = baudrate

        self._lock = threading.RLock()  # one transaction at a time; guards the state below
        self._serial: SerialPort | None = None
        self._port_error: str | None = None  # the port broke: nothing more can be sent
        self._fault: str | None = None  # sticky asynchronous fault (see module docstring)
        self._remote = False
        self._armed = False
        self._armed_t: float | None = None
        self._not_before: dict[str, tuple[float, str]] = {}  # cause -> (ready_at, description)
        self._last_status: InstrumentStatus | None = None
        self._last_status_t = -math.inf
        self._rapid_status = 0
        self._last_contact = -math.inf
        self._last_keepalive_t: float | None = None
        self.params: dict[str, Any] = {}
        self.version: tuple[int, ...] | None = None  # Rapid²: read at connect (ND)

        self._keepalive_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._keepalive_paused = False

    # ------------------------------------------------------------------ what the controller asks
    percent_output = True  # TMS: power in % of maximum stimulator output
    unit_options = ("model",)  # the model selects the commands and reply formats spoken

    @classmethod
    def from_site(cls, name: str, port: str, options: Mapping[str, Any],
                  on_error: Callable[[str], None]) -> MagstimDriver:
        """Named by model and port (its messages say which unit), not by the site's device name;
        its asynchronous faults are reported by refusing the next command."""
        return cls(port, **options)

    @property
    def fire_wire_time_s(self) -> float:
        """``EH`` + CRC, 10 bits a byte (8N1)."""
        return len(frame(b"EH")) * 10 / self.baudrate

    def command_parameters(self, settings: Mapping[str, float],
                           changed: Collection[str] | None = None) -> dict[str, Any]:
        """Whole percent of power; a Rapid² also takes a train (frequency and pulse count). The other
        models fire single pulses, so a train's settings are the governor's to count, not theirs."""
        out: dict[str, Any] = {}
        if "intensity_pct" in settings:
            out["intensity_pct"] = int(round(settings["intensity_pct"]))
        n = int(round(settings["n_pulses"])) if "n_pulses" in settings else None
        f = settings.get("frequency_hz")
        if self.model == "rapid" and n is not None and n > 1 and f is not None:
            out.update(frequency_hz=f, n_pulses=n)
        return out

    # ------------------------------------------------------------------ framing
    def _reply_length(self, body: bytes) -> int:
        c = body[:1]
        if c == b"J":
            return 12
        if c == b"\\":
            return 24
        if c == b"I":
            return 6
        if c == b"F":
            return 9
        if self.model == "rapid" and c in (b"B", b"D", b"["):
            return 4
        return 3

    def _read(self, port: SerialPort, n: int, deadline: float) -> bytes:
        buf = b""
        while len(buf) < n:
            remaining = deadline - local_clock()
            if remaining <= 0:
                break
            port.timeout = remaining
            chunk = port.read(n - len(buf))
            if not chunk:
                break
            buf += chunk
        return buf

    def _read_reply(self, port: SerialPort, body: bytes, what: str) -> bytes:
        n = self._reply_length(body)
        deadline = local_clock() + self.reply_timeout_s
        raw = self._read(port, 1, deadline)
        if raw == b"?":
            raise DeviceError(f"{self.name}: {what}: the unit did not recognise command {_show(body)!r} (reply '?')")
        if raw:
            raw += self._read(port, 1, deadline)
        if len(raw) == 2 and raw[1:] in (b"?", b"S"):
            raw += self._read(port, 1, deadline)
        elif len(raw) == 2 and body[:1] == b"N":  # the version: text up to a NUL, then the CRC
            while raw[-1] != 0 and len(raw) < VERSION_REPLY_MAX:
                chunk = self._read(port, 1, deadline)
                if not chunk:
                    break
                raw += chunk
            n = len(raw) + 1 if raw[-1] == 0 else VERSION_REPLY_MAX
            raw += self._read(port, n - len(raw), deadline)
        elif len(raw) == 2:
            raw += self._read(port, n - 2, deadline)
        ms = self.reply_timeout_s * 1000
        if not raw:
            raise DeviceError(f"{self.name}: {what}: no reply from the unit within {ms:.0f} ms")
        if raw[:1] != body[:1]:
            raise DeviceError(f"{self.name}: {what}: reply {_show(raw)!r} does not echo command byte "
                              f"{_show(body[:1])!r}")
        error_reply = len(raw) >= 2 and raw[1:2] in (b"?", b"S")
        expected = 3 if error_reply else n
        if len(raw) < expected:
            raise DeviceError(f"{self.name}: {what}: incomplete reply within {ms:.0f} ms: got {len(raw)} of "
                              f"{expected} bytes ({_show(raw)!r})")
        if raw[-1] != crc(raw[:-1]):
            raise DeviceError(f"{self.name}: {what}: CRC mismatch in reply {_show(raw)!r}: got 0x{raw[-1]:02x}, "
                              f"expected 0x{crc(raw[:-1]):02x}")
        if raw[1:2] == b"?":
            raise DeviceError(f"{self.name}: {what}: the unit rejected the data of {_show(body)!r} as invalid "
                              f"(reply '?' in byte 1)")
        if raw[1:2] == b"S":
            raise _WrongState(f"{self.name}: {what}: the unit refused {_show(body)!r}: it conflicts with the unit's "
                              f"current state (reply 'S' in byte 1)")
        return raw

    def _transact(self, body: bytes, what: str, *, force: bool = False) -> tuple[Reply, float]:
        """Send one framed command and read its reply; returns (reply, t_sent).

        ``force`` tries even after the port failed (disarm is always attempted)."""
        with self._lock:
            if self._serial is None:
                raise DeviceError(f"{self.name}: {what}: not connected (call connect())")
            if self._port_error is not None and not force:
                raise DeviceError(f"{self.name}: {what}: the serial port failed earlier: {self._port_error}")
            port = self._serial
            try:
                port.reset_input_buffer()  # a late reply to an earlier command must not be taken for this one
                port.write(frame(body))
                port.flush()
                t_sent = local_clock()
                raw = self._read_reply(port, body, what)
            except PORT_ERRORS as e:
                self._port_error = f"{self.port}: {e}"  # kept: a later success does not prove the link sound
                self._remote = self._armed = False
                raise DeviceError(f"{self.name}: {what}: serial port {self.port} failed: {e}") from e
            reply = Reply(raw, local_clock(), t_sent)
            self._last_contact = reply.t
            return reply, t_sent

    def _command(self, body: bytes, what: str) -> tuple[Reply, float]:
        """A transaction whose ``S`` reply is diagnosed (remote control lost, or which state conflicts)."""
        with self._lock:
            try:
                return self._transact(body, what)
            except _WrongState as refused:
                raise self._diagnose(refused) from None

    def _diagnose(self, refused: _WrongState) -> DeviceError:
        try:
            status = self._query_parameters("status query after an 'S' reply")
        except DeviceError as e:
            return DeviceError(f"{refused} (and the status query failed: {e})")
        if not status.remote:
            return DeviceError(f"{refused}; remote control was lost: {self._remote_lost(status)}")
        return DeviceError(f"{refused}; the unit reports {status.describe()}")

    def _remote_lost(self, status: InstrumentStatus) -> str:
        ago = local_clock() - self._last_contact
        keepalive = self._last_keepalive_t
        last = f"last keep-alive answered {local_clock() - keepalive:.2f} s ago, " if keepalive is not None else ""
        reason = (f"the unit reports it is not under remote control and has disarmed ({status.describe()}); "
                  f"{last}last answered command {ago:.2f} s ago — was the keep-alive starved?")
        self._set_fault(f"remote control was lost: {reason}")
        self._remote = self._armed = False
        return reason

    # ------------------------------------------------------------------ state from replies
    def _note_status(self, reply: Reply, current: bool) -> InstrumentStatus:
        """Record a reply's status byte; ``current`` when it shows the state after the command, else
        it is the state before it (dated when the command left)."""
        status = reply.status
        self._last_status, self._last_status_t = status, reply.t if current else reply.t_sent
        if self.model == "rapid" and len(reply.raw) >= 4 and reply.raw[:1] in (b"B", b"D", b"[", b"\\"):
            self._rapid_status = reply.raw[2]
        return status

    def _query_parameters(self, what: str) -> InstrumentStatus:
        body = b"\\@" if self.model == "rapid" else b"J@"
        reply, _ = self._transact(body, what)
        status = self._note_status(reply, current=True)
        self._parse_parameters(reply)
        if self._remote and not status.remote:
            self._remote_lost(status)
        if self._armed and not status.armed and reply.t > (self._armed_t or -math.inf):
            self._set_fault(f"the unit disarmed itself ({status.describe()} at t={reply.t:.3f})")
            self._armed = False
        return status

    def _parse_parameters(self, reply: Reply) -> None:
        d = reply.raw[2:-1]
        try:
            if self.model == "rapid":
                d = reply.raw[3:-1]
                self.params.update(intensity_pct=int(d[0:3]), frequency_hz=int(d[3:7]) / 10, n_pulses=int(d[7:12]),
                                   train_duration_s=int(d[12:16]) / 10, train_wait_s=int(d[16:20]) / 10,
                                   mode="single" if self._rapid_status & R_SINGLE_PULSE else "repetitive")
            elif self.model == "bistim":
                self.params.update(intensity_pct=int(d[0:3]), intensity_b_pct=int(d[3:6]),
                                   interval_s=int(d[6:9]) / 1000)
            else:
                self.params.update(intensity_pct=int(d[0:3]))
        except ValueError as e:
            raise DeviceError(f"{self.name}: parameter reply {_show(reply.raw)!r} is not ASCII digits: {e}") from None

    def _set_fault(self, reason: str) -> None:
        with self._lock:
            if self._fault is None:
                self._fault = reason

    def _check_usable(self, what: str) -> None:
        if self._serial is None:
            raise DeviceError(f"{self.name}: cannot {what}: not connected (call connect())")
        if self._port_error is not None:
            raise DeviceError(f"{self.name}: cannot {what}: the serial port failed: {self._port_error}")
        if self._fault is not None:
            raise DeviceError(f"{self.name}: cannot {what}: {self._fault} (connect() again to take remote control)")

    # ------------------------------------------------------------------ timing model
    def _ready_at(self) -> float | None:
        if not self._armed:
            return None
        return max([t for t, _ in self._not_before.values()], default=-math.inf)

    def _not_ready_reason(self, t: float) -> tuple[str | None, bool]:
        """(why the unit cannot fire at ``t`` or None, whether the reason comes from the status bits)."""
        if not self._armed:
            return "not armed (call arm() first)", False
        pending = [(ready_at, text) for ready_at, text in self._not_before.values() if ready_at > t]
        if pending:
            ready_at, text = max(pending)
            return f"{text}, ready in {ready_at - t:.1f} s", False
        status, ready_t = self._last_status, self._ready_at()
        if status is not None and ready_t is not None and self._last_status_t >= ready_t and not status.ready:
            return f"the unit reports it is not ready: {status.describe()} at t={self._last_status_t:.3f}", True
        return None, False

    def _power_change(self, key: str, old: int | None, new: int, t: float, label: str) -> None:
        if not self._armed or old is None or old == new:
            return
        rate = self.power_up_s_per_pct if new > old else self.power_down_s_per_pct
        self._not_before[key] = (t + abs(new - old) * rate, f"{label} changing {old} -> {new} % since t={t:.3f}")

    # ------------------------------------------------------------------ keep-alive
    def _keepalive_period(self) -> float:
        return self.keepalive_armed_s if self._armed else self.keepalive_disarmed_s

    def _keepalive_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                due = self._last_contact + self._keepalive_period()
                idle = self._keepalive_paused or self._fault is not None or self._port_error is not None
            wait = due - local_clock()
            if idle or wait > 0:
                self._wake.wait(self._keepalive_period() if idle else wait)
                self._wake.clear()
                continue
            self._keepalive()

    def _keepalive(self) -> None:
        with self._lock:
            if self._stop.is_set() or self._keepalive_paused or self._fault is not None:
                return
            try:
                reply, _ = self._transact(b"Q@", "keep-alive (Q@)")
            except DeviceError as e:
                self._set_fault(f"keep-alive failed at t={local_clock():.3f}: {e}")
                self._try_disarm()
                return
            self._last_keepalive_t = reply.t
            status = self._note_status(reply, current=True)
            if self._armed and not status.armed:
                self._set_fault(f"the unit disarmed itself: keep-alive at t={reply.t:.3f} found {status.describe()}")
                self._armed = False

    def _try_disarm(self) -> None:
        try:
            self._transact(b"EA", "disarm after a fault (EA)")
        except DeviceError:
            pass
        self._armed = False

    def pause_keepalive(self) -> None:
        """Fault injection: stop sending keep-alives, as a frozen controller would."""
        self._keepalive_paused = True

    def resume_keepalive(self) -> None:
        self._keepalive_paused = False
        self._wake.set()

    # ------------------------------------------------------------------ Stimulator
    def connect(self) -> None:
        """Open the port (if needed), take remote control, make sure the unit is disarmed, read its settings."""
        with self._lock:
            if self._serial is not None and self._port_error is not None:
                self._close_port()
            if self._serial is None:
                try:
                    self._serial = open_port(
                        self.port, baudrate=self.baudrate, bytesize=serial.EIGHTBITS, parity=serial.PARITY_NONE,
                        stopbits=serial.STOPBITS_ONE, timeout=self.reply_timeout_s, write_timeout=1.0)
                except (serial.SerialException, OSError, ValueError) as e:
                    raise DeviceError(f"{self.name}: cannot open serial port {self.port}: {e}") from e
                self._port_error = None
            self._fault = None
            reply, _ = self._command(b"Q@", "enable remote control (Q@)")
            status = self._note_status(reply, current=True)
            if not status.remote:
                raise DeviceError(f"{self.name}: remote control was not granted: {status.describe()}")
            self._remote = True
            self._last_keepalive_t = reply.t
            self._transact(b"EA", "disarm at connect (EA)")
            self._armed, self._armed_t, self._not_before = False, None, {}
            if self.model == "rapid":
                self._check_rapid_version()
            self._query_parameters("read parameters at connect")
        if self._keepalive_thread is None or not self._keepalive_thread.is_alive():
            self._stop.clear()
            self._keepalive_thread = threading.Thread(target=self._keepalive_loop, name=f"keepalive:{self.name}",
                                                      daemon=True)
            self._keepalive_thread.start()

    def arm(self) -> float:
        with self._lock:
            self._check_usable("arm")
            reply, t_sent = self._command(b"EB", "arm (EB)")
            self._note_status(reply, current=False)
            self._armed, self._armed_t = True, reply.t
            self._not_before = {"arm": (reply.t + self.arm_time_s, f"armed at t={reply.t:.3f}")}
        self._wake.set()  # the keep-alive period is shorter now
        return t_sent

    def disarm(self) -> float:
        """Send EA whatever the driver's state (E-STOP path): at most one reply timeout behind a keep-alive."""
        with self._lock:
            self._armed, self._armed_t, self._not_before = False, None, {}
            reply, t_sent = self._transact(b"EA", "disarm (EA)", force=True)
            self._note_status(reply, current=False)
        self._wake.set()
        return t_sent

    def fire(self) -> float:
        with self._lock:
            self._check_usable("fire")
            reason, from_bits = self._not_ready_reason(local_clock())
            if from_bits:
                self._keepalive()  # the bits say not ready: refresh them once before refusing
                self._check_usable("fire")
                reason, _ = self._not_ready_reason(local_clock())
            if reason is not None:
                raise NotReady(f"{self.name}: cannot fire: {reason}")
            reply, t_sent = self._command(b"EH", "fire (EH)")
            self._note_status(reply, current=False)
            power = int(self.params.get("intensity_pct", 0))
            if self.model == "rapid" and self.params.get("mode") == "repetitive":
                f = self.params.get("frequency_hz") or 0.0
                busy = (self.params.get("n_pulses", 1) / f if f > 0 else 0.0) + self.train_wait_s
                text = f"train fired at t={reply.t:.3f}"
            else:
                busy = self.recharge_s if self.recharge_s is not None else _default_recharge(self.model, power)
                text = f"recharging after the pulse at t={reply.t:.3f}"
            self._not_before["fire"] = (reply.t + busy, text)
        return t_sent

    def set_parameters(self, **params: Any) -> float:
        """Validate all settings, then send them in order; returns the t_sent of the last command.

        Values are refused (ValueError), never rounded or clipped. Power changes while armed make
        the unit not ready for 10 ms per % up (``power_down_s_per_pct`` down).
        """
        allowed = PARAMS[self.model]
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {unknown}; the {MODEL_NAMES[self.model]} takes "
                             f"{', '.join(allowed)}")
        if not params:
            raise ValueError(f"{self.name}: set_parameters() needs at least one of {', '.join(allowed)}")
        with self._lock:
            self._check_usable("set parameters")
            commands = self._parameter_commands(params)
            busy = self._not_before.get("fire")
            if self.model == "rapid" and busy and busy[0] > local_clock() and self.params.get("mode") == "repetitive":
                raise NotReady(f"{self.name}: cannot change parameters: {busy[1]}, settings locked for "
                               f"{busy[0] - local_clock():.1f} s")
            t_sent = math.nan
            for body, what, apply in commands:
                reply, t_sent = self._command(body, what)
                self._note_status(reply, current=False)
                apply(reply.t)
            if self.model == "rapid" and any(body in (b"[0010", b"[0000") for body, _, _ in commands):
                self._query_parameters("read parameters after a mode change")  # the toggle also sets the duration
            return t_sent

    # ------------------------------------------------------------------ parameter encoding
    def _parameter_commands(self, params: dict[str, Any]) -> list[tuple[bytes, str, Any]]:
        """Validate everything first, then list (body, description, apply(t_reply)) in sending order."""
        commands: list[tuple[bytes, str, Any]] = []

        def power(key: str, byte: bytes, label: str) -> None:
            value = _integer(self.name, key, params[key], 0, 100)
            body = byte + b"%03d" % value

            def apply(t: float, key: str = key, value: int = value, label: str = label) -> None:
                self._power_change(key, self.params.get(key), value, t, label)
                self.params[key] = value

            commands.append((body, f"set {label} {value} % ({_show(body)})", apply))

        if "intensity_pct" in params:
            power("intensity_pct", b"@", "power" if self.model != "bistim" else "power A")
        if "intensity_b_pct" in params:
            power("intensity_b_pct", b"A", "power B")
        if "interval_s" in params:
            ms = _stepped(self.name, "interval_s", params["interval_s"], 0.001, 0, 999)
            body = b"C%03d" % ms
            commands.append((body, f"set interval {ms} ms ({_show(body)})",
                             lambda t, ms=ms: self.params.__setitem__("interval_s", ms / 1000)))
        if self.model == "rapid":
            commands += self._train_commands(params)
        return commands

    def _train_commands(self, params: dict[str, Any]) -> list[tuple[bytes, str, Any]]:
        keys = [k for k in ("frequency_hz", "n_pulses", "train_duration_s") if k in params]
        mode = params.get("mode", "repetitive" if keys else None)
        if mode is not None and mode not in RAPID_MODES:
            raise ValueError(f"{self.name}: mode {mode!r} unknown; modes: {', '.join(RAPID_MODES)}")
        if mode == "single" and keys:
            raise ValueError(f"{self.name}: train parameters {keys} need mode='repetitive'")
        commands: list[tuple[bytes, str, Any]] = []
        current = self.params.get("mode")
        if mode is not None and mode != current:
            if self._armed:
                raise DeviceError(f"{self.name}: switching the Rapid² to {mode} mode needs the unit disarmed")
            body = b"[0010" if mode == "repetitive" else b"[0000"
            commands.append((body, f"{mode} mode ({_show(body)})",
                             lambda t, mode=mode: self.params.update(mode=mode)))
        if not keys:
            return commands
        f = params.get("frequency_hz")
        n = params.get("n_pulses")
        d = params.get("train_duration_s")
        f = None if f is None else _stepped(self.name, "frequency_hz", f, 0.1, 1, 1000) / 10
        n = None if n is None else _integer(self.name, "n_pulses", n, 1, 6000)
        d = None if d is None else _stepped(self.name, "train_duration_s", d, 0.1, 1, 9999) / 10
        # The unit keeps n_pulses = frequency x duration; complete the triple as MagPy does.
        if f is not None and n is not None and d is not None:
            if abs(n - f * d) > 0.5 + 1e-9:
                raise ValueError(f"{self.name}: n_pulses={n} does not match frequency_hz x train_duration_s = "
                                 f"{f * d:g}")
        elif f is not None and n is not None:
            d = round(n / f, 1)
        elif n is not None and d is not None:
            f = round(n / d, 1)
        elif n is not None:
            f = self.params.get("frequency_hz") or 1.0
            d = round(n / f, 1)
        else:
            f = f if f is not None else (self.params.get("frequency_hz") or 1.0)
            d = d if d is not None else (self.params.get("train_duration_s") or 1.0)
            n = max(1, round(f * d))
        f_t = _stepped(self.name, "frequency_hz", f, 0.1, 1, 1000)
        d_t = _stepped(self.name, "train_duration_s", max(d, 0.1), 0.1, 1, 9999)
        _integer(self.name, "n_pulses", n, 1, 6000)
        for body, what, key, value in ((b"B%04d" % f_t, "frequency", "frequency_hz", f_t / 10),
                                       (b"D%05d" % n, "pulses", "n_pulses", n),
                                       (b"[%04d" % d_t, "train duration", "train_duration_s", d_t / 10)):
            commands.append((body, f"set {what} ({_show(body)})",
                             lambda t, key=key, value=value: self.params.__setitem__(key, value)))
        return commands

    # ------------------------------------------------------------------ status and extras
    def read_version(self) -> tuple[int, ...]:
        """The Rapid²'s software version (``ND``; the reply is ``NV9.0``, a NUL and the CRC): ``(9, 0)``."""
        with self._lock:
            reply, _ = self._command(b"ND", "read software version (ND)")
            text = reply.raw[1:-2].decode("ascii", "replace")
            numbers = re.findall(r"\d+", text)
            if not numbers:
                raise DeviceError(f"{self.name}: version reply {_show(reply.raw)!r} holds no version number")
            self.version = tuple(int(x) for x in numbers)
            return self.version

    def _check_rapid_version(self) -> None:
        version = self.read_version()
        if version < RAPID_MIN_VERSION:
            try:
                self._transact(b"R@", "release remote control (R@)")
            except DeviceError:
                pass
            self._remote = False
            shown = ".".join(map(str, version))
            raise DeviceError(f"{self.name}: the Rapid² reports software V{shown}; this driver speaks the formats of "
                              f"V9.0 and later (5-digit pulse counts, 24-byte parameter reply): not connected")

    def read_coil_temperature(self) -> tuple[float, float]:
        """The coil's two temperatures in °C (``F@``: two 3-digit values in 0.1 °C)."""
        with self._lock:
            reply, _ = self._command(b"F@", "read coil temperature (F@)")
            self._note_status(reply, current=True)
            d = reply.data
            try:
                return int(d[0:3]) / 10, int(d[3:6]) / 10
            except ValueError:
                raise DeviceError(f"{self.name}: coil temperature reply {_show(reply.raw)!r} is not ASCII digits") \
                    from None

    def read_error_code(self) -> str:
        """The unit's current error code (``I@``), three ASCII characters."""
        with self._lock:
            reply, _ = self._command(b"I@", "read error code (I@)")
            self._note_status(reply, current=True)
            return reply.data.decode("ascii", "replace")

    def status(self) -> DeviceStatus:
        """Queries the unit (``J@`` / ``\\@``); a failed query is reported in ``error``, not raised."""
        with self._lock:
            t = local_clock()
            connected = self._serial is not None and self._port_error is None
            error = self._fault or self._port_error
            if connected:
                try:
                    status = self._query_parameters("status query")
                    if status.error_present:
                        code = self.read_error_code()
                        error = error or f"the unit reports error code {code!r}"
                except DeviceError as e:
                    error = error or str(e)
                connected = self._port_error is None
            t = local_clock()
            ready = self._not_ready_reason(t)[0] is None and self._fault is None and connected
            return DeviceStatus(t=t, connected=connected, remote=self._remote,
                                armed=self._armed, ready=ready, ready_at=self._ready_at(), error=error,
                                parameters=dict(self.params))

    def close(self) -> None:
        """Disarm, give up remote control, stop the keep-alive and close the port; safe twice.

        Raises DeviceError after cleaning up if the disarm could not be confirmed (the unit may
        still be armed: its own keep-alive timeout will disarm it).
        """
        self._stop.set()
        self._wake.set()
        if self._keepalive_thread is not None:
            self._keepalive_thread.join(timeout=2)
            self._keepalive_thread = None
        failure = None
        with self._lock:
            if self._serial is None:
                return
            try:
                self._transact(b"EA", "disarm at close (EA)", force=True)
            except DeviceError as e:
                failure = e
            try:
                self._transact(b"R@", "release remote control (R@)")
            except DeviceError:
                pass
            self._armed, self._remote = False, False
            self._close_port()
        if failure is not None:
            raise DeviceError(f"{self.name}: closed, but the disarm was not confirmed: {failure}") from failure

    def _close_port(self) -> None:
        port, self._serial = self._serial, None
        if port is None:
            return
        try:
            port.close()
        except PORT_ERRORS:
            pass


def _integer(name: str, key: str, value: Any, lo: int, hi: int) -> int:
    """An integer setting in [lo, hi]; refuses fractions and out-of-range values, never rounds or clips."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {key}={value!r} is not a number") from None
    if not f.is_integer() or not lo <= f <= hi:
        raise ValueError(f"{name}: {key}={value!r} must be a whole number in {lo}..{hi}")
    return int(f)


def _stepped(name: str, key: str, value: Any, step: float, lo: int, hi: int) -> int:
    """``value`` in units of ``step`` (e.g. 0.1 Hz), refusing values between steps or out of range."""
    try:
        units = float(value) / step
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {key}={value!r} is not a number") from None
    k = round(units)
    if abs(units - k) > 1e-6 or not lo <= k <= hi:
        raise ValueError(f"{name}: {key}={value!r} must be a multiple of {step:g} in {lo * step:g}..{hi * step:g}")
    return k
