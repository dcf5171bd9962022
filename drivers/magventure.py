"""MagVenture MagPro (R30, X100, ...) over the stimulator's COM2 serial remote-control port.

Protocol facts, from the public implementations (MAGIC toolbox ``magventure.m``,
github.com/nigelrogasch/MAGIC; ``pytms.py``, github.com/xiangruili/MagventurePyTMS):
- 38400 baud, 8N1. Frame: ``FE len payload CRC FF``, ``len`` = payload length, CRC-8 Dallas/Maxim
  (reflected polynomial 0x8C, init 0) over the payload. Fire is ``fe 02 03 01 0b ff``.
- Commands: ``00`` status request; ``01 aa`` amplitude A in %MSO (standard mode) or ``01 aa bb``
  (twin/dual: amplitudes A and B); ``02 01`` enable / ``02 00`` disable; ``03 01`` fire one pulse;
  ``04`` start the train sequence; ``06 rr rr pp pp nn nn ii ii`` train parameters, u16 big-endian:
  repetition rate x10 (pps), pulses in train, number of trains, inter-train interval x10 (s).
- Replies: status ``00 st s2 s1 s0 temp coil ampA ampB``; 4-byte status frames ``id x y st`` with id 01
  (amplitude A, B), 02 (realised di/dt A, B in A/us, sent after a pulse), 03 (temperature, coil), 06/07
  (original amplitude / amplitude factor), 08 (page, train running). ``st``: bits 0-1 mode, bits 2-3
  waveform, bit 4 enabled, bits 5-7 model. Serial number: 3 bytes big-endian.
- Settable ranges: repetition rate 0.1-1 pps in 0.1 steps and 1-100 pps in 1 steps; pulses in train
  1-1000 and 1100-2000 in 100 steps; trains 1-500; ITI 0.1-300 s in 0.1 s steps (pytms; MAGIC checks
  narrower ranges: pulses 1-100 and 1000-2000, ITI up to 120 s). The model (R30: 30 pps) may allow less.

Assumptions (not stated in the public sources; where the virtual device models the same):
- The reply to enable/disable is the id-01 frame (pytms reads the enabled bit there); to fire, the
  id-02 di/dt frame; to 04 and 06, a 4-byte status frame (any id).
- Recharge: a pulse needs the capacitor charged to the new level. Public clients wait between 0.1 and
  1 s after amplitude/enable commands; the R30 gives 30 pps at full output (33 ms between pulses). We
  model ``recharge_s`` (default 0.2 s) after enable or an amplitude change and ``pulse_recharge_s``
  (default 1/30 s) after a pulse, counted from the device's reply. A device that still reports
  di/dt 0 after a fire at non-zero amplitude did not fire: DeviceError.
- No keep-alive: the MagPro does not drop remote control when the host is silent; a frozen controller
  therefore cannot rely on the device disabling itself (the governor's watchdog must call disarm()).
- ``stop()`` disables the device (no documented "stop train" command); arm again to continue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import serial
from pylsl import local_clock

from drivers.serial_port import SerialPort, open_port
from drivers.stimulator import DeviceError, DeviceStatus, NotReady, Stimulator

try:  # termios calls (flush, drain) on a dead tty raise termios.error, which is not an OSError
    import termios

    LINK_ERRORS: tuple[type[Exception], ...] = (serial.SerialException, OSError, termios.error)
except ImportError:  # Windows
    LINK_ERRORS = (serial.SerialException, OSError)

BAUDRATE = 38400
START, END = 0xFE, 0xFF
MAX_PAYLOAD = 32

CMD_STATUS, CMD_AMPLITUDE, CMD_ENABLE, CMD_FIRE, CMD_TRAIN_START, CMD_TRAIN = 0x00, 0x01, 0x02, 0x03, 0x04, 0x06
REPLY_STATUS, REPLY_AMPLITUDE, REPLY_DIDT, REPLY_PAGE = 0x00, 0x01, 0x02, 0x08
STATUS4_IDS = frozenset({0x01, 0x02, 0x03, 0x06, 0x07, 0x08})  # replies with payload ``id x y st``
REPLY_LENGTHS = {REPLY_STATUS: 9, **{i: 4 for i in STATUS4_IDS}}

MODES = ("Standard", "Power", "Twin", "Dual")
WAVEFORMS = ("Monophasic", "Biphasic", "Halfsine", "Biphasic Burst")
MODELS = ("R30", "X100", "R30+Option", "X100+Option", "R30+Option+Mono", "MST")

AMPLITUDE_PARAMS = ("intensity_pct", "intensity_b_pct")
TRAIN_PARAMS = ("frequency_hz", "pulses_per_train", "n_trains", "iti_s")
PARAMS = AMPLITUDE_PARAMS + TRAIN_PARAMS


def _crc_table() -> bytes:
    table = bytearray(256)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x8C if c & 1 else c >> 1
        table[i] = c
    return bytes(table)


_CRC_TABLE = _crc_table()


def crc8_maxim(data: bytes) -> int:
    """CRC-8 Dallas/Maxim (reflected poly 0x8C, init 0) as the MagPro computes it over a payload."""
    crc = 0
    for byte in data:
        crc = _CRC_TABLE[crc ^ byte]
    return crc


def encode_frame(payload: bytes) -> bytes:
    """``FE len payload CRC FF``."""
    if not 1 <= len(payload) <= MAX_PAYLOAD:
        raise ValueError(f"magventure: payload of {len(payload)} bytes (1..{MAX_PAYLOAD})")
    return bytes([START, len(payload)]) + bytes(payload) + bytes([crc8_maxim(payload), END])


@dataclass(frozen=True)
class StatusByte:
    """The status byte every reply carries."""

    mode: str
    waveform: str
    enabled: bool
    model: str

    @classmethod
    def decode(cls, st: int) -> StatusByte:
        model = st >> 5
        return cls(MODES[st & 3], WAVEFORMS[st >> 2 & 3], bool(st >> 4 & 1),
                   MODELS[model] if model < len(MODELS) else f"model code {model}")


@dataclass(frozen=True)
class Frame:
    payload: bytes
    t: float  # LSL time the frame was complete on our side

    @property
    def id(self) -> int:
        return self.payload[0]


def _hex(data: bytes) -> str:
    return data.hex(" ") if data else "nothing"


def _percent(name: str, value: Any) -> int:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DeviceError(f"magventure: {name}={value!r} is not a number (percent of MSO)") from None
    if not 0 <= v <= 100 or v != round(v):
        raise DeviceError(f"magventure: {name}={value!r} is not settable; the MagPro takes whole percent 0-100")
    return int(round(v))


def _encode_rate(hz: Any) -> int:
    try:
        tenths = float(hz) * 10
    except (TypeError, ValueError):
        raise DeviceError(f"magventure: frequency_hz={hz!r} is not a number") from None
    t = round(tenths)
    ok = abs(tenths - t) < 1e-6 and 1 <= t <= 1000 and (t <= 10 or t % 10 == 0)
    if not ok:
        raise DeviceError(f"magventure: frequency_hz={hz!r} is not settable; the MagPro takes 0.1-1 Hz in "
                          "0.1 Hz steps and 1-100 Hz in 1 Hz steps")
    return t


def _encode_count(name: str, value: Any, valid: Callable[[int], bool], text: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or not valid(int(value)):
        raise DeviceError(f"magventure: {name}={value!r} is not settable; the MagPro takes {text}")
    return int(value)


def _encode_iti(seconds: Any) -> int:
    try:
        tenths = float(seconds) * 10
    except (TypeError, ValueError):
        raise DeviceError(f"magventure: iti_s={seconds!r} is not a number") from None
    t = round(tenths)
    if abs(tenths - t) > 1e-6 or not 1 <= t <= 3000:
        raise DeviceError(f"magventure: iti_s={seconds!r} is not settable; the MagPro takes 0.1-300 s in 0.1 s steps")
    return t


class MagVentureDriver(Stimulator):
    """One MagPro on a serial port (``serial.serial_for_url`` URL or device path).

    Every exchange waits at most ``reply_timeout_s`` for the reply; readiness (recharge) is modelled
    from the device's replies and a command the device cannot take yet raises NotReady with the reason.
    """

    def __init__(self, port: str, reply_timeout_s: float = 0.1, recharge_s: float = 0.2,
                 pulse_recharge_s: float = 1 / 30, name: str = "magventure", baudrate: int = BAUDRATE) -> None:
        self.name = name
        self.port = port
        self.reply_timeout_s = reply_timeout_s
        self.recharge_s = recharge_s
        self.pulse_recharge_s = pulse_recharge_s
        self.baudrate = baudrate
        self.last_error: str | None = None
        self.last_didt: tuple[int, int] | None = None  # realised di/dt (A/us) of the last pulse
        self.unsolicited: list[Frame] = []  # valid frames that were not the awaited reply
        self._ser: SerialPort | None = None
        self._dead: str | None = None  # why the link is unusable
        self._io = threading.Lock()
        self._enabled = False
        self._amplitude = (0, 0)
        self._ready_at: float | None = None
        self._train: dict[str, float] = {}  # as last accepted by the device
        self._train_until: float | None = None
        self._device: dict[str, Any] = {}

    # ================================================================ what the controller asks
    percent_output = True  # TMS: amplitude in % of maximum stimulator output

    @property
    def fire_wire_time_s(self) -> float:
        """The 6-byte fire frame, 10 bits a byte (8N1)."""
        return len(encode_frame(bytes([CMD_FIRE, 1]))) * 10 / self.baudrate

    def command_parameters(self, settings: Mapping[str, float],
                           changed: Collection[str] | None = None) -> dict[str, Any]:
        """Whole percent of amplitude; a train is one train of ``pulses_per_train`` (the MagPro's own
        sequence of trains is not used: the protocol's rules time every train)."""
        out: dict[str, Any] = {}
        if "intensity_pct" in settings:
            out["intensity_pct"] = int(round(settings["intensity_pct"]))
        n = int(round(settings["n_pulses"])) if "n_pulses" in settings else None
        f = settings.get("frequency_hz")
        if n is not None and n > 1 and f is not None:
            out.update(frequency_hz=f, pulses_per_train=n, n_trains=1, iti_s=1.0)
        return out

    # ================================================================ Stimulator API
    def connect(self) -> None:
        if self._ser is not None:
            return
        try:
            self._ser = open_port(self.port, baudrate=self.baudrate, bytesize=serial.EIGHTBITS,
                                  parity=serial.PARITY_NONE, stopbits=serial.STOPBITS_ONE,
                                  timeout=min(0.01, self.reply_timeout_s),
                                  write_timeout=max(0.5, self.reply_timeout_s))
        except (*LINK_ERRORS, ValueError) as e:  # type: ignore[misc]  # mypy cannot read a starred tuple here
            raise DeviceError(f"{self.name}: cannot open {self.port}: {e}") from e
        self._dead = None
        try:
            self.status()
            if self._enabled:  # everything starts disarmed, whatever the front panel left
                self.disarm()
        except DeviceError as e:
            self._close_port()
            raise DeviceError(f"{self.name}: no MagPro answering on {self.port}: {e}") from e

    def arm(self) -> float:
        was_enabled = self._enabled
        self._require_idle("enable")
        t_sent, reply = self._transact(bytes([CMD_ENABLE, 1]), {REPLY_AMPLITUDE}, "enabling")
        if not self._absorb(reply).enabled:
            raise DeviceError(f"{self.name}: the device did not enable (reply {_hex(reply.payload)}); "
                              "check the front panel and coil")
        if not was_enabled or self._ready_at is None:
            self._ready_at = reply.t + self.recharge_s
        return t_sent

    def disarm(self) -> float:
        """Send disable even if another exchange holds the port for longer than a reply timeout."""
        frame = encode_frame(bytes([CMD_ENABLE, 0]))
        self._enabled, self._ready_at, self._train_until = False, None, None
        locked = self._io.acquire(timeout=self.reply_timeout_s + 0.05)
        try:
            t_sent = self._write(frame, "disabling", force=True)
            if not locked:  # the other exchange reads our reply; the frame went out in one write
                return t_sent
            reply = self._await(t_sent, {REPLY_AMPLITUDE}, "disabling (sent, not confirmed)")
        finally:
            if locked:
                self._io.release()
        if self._absorb(reply).enabled:
            raise DeviceError(f"{self.name}: the device still reports enabled after disable "
                              f"(reply {_hex(reply.payload)})")
        return t_sent

    def set_parameters(self, **params: Any) -> float:
        """intensity_pct [, intensity_b_pct] and/or frequency_hz, pulses_per_train, n_trains, iti_s.

        Everything is validated before anything is sent; returns the send time of the last frame.
        """
        unknown = sorted(set(params) - set(PARAMS))
        if unknown or not params:
            raise DeviceError(f"{self.name}: cannot set {', '.join(unknown) or 'nothing'}; "
                              f"settable: {', '.join(PARAMS)}")
        self._require_idle("change parameters")
        amplitude = None
        if any(k in params for k in AMPLITUDE_PARAMS):
            a = _percent("intensity_pct", params.get("intensity_pct", self._amplitude[0]))
            b = _percent("intensity_b_pct", params["intensity_b_pct"]) if "intensity_b_pct" in params else None
            amplitude = (a, b)
        train = None
        if any(k in params for k in TRAIN_PARAMS):
            merged = {**self._train, **{k: params[k] for k in TRAIN_PARAMS if k in params}}
            missing = [k for k in TRAIN_PARAMS if k not in merged]
            if missing:
                raise DeviceError(f"{self.name}: the first train setting needs all of {', '.join(TRAIN_PARAMS)} "
                                  f"(missing {', '.join(missing)}); the device's current values are not readable")
            train = merged
            words = (_encode_rate(merged["frequency_hz"]),
                     _encode_count("pulses_per_train", merged["pulses_per_train"],
                                   lambda n: 1 <= n <= 1000 or (1100 <= n <= 2000 and n % 100 == 0),
                                   "1-1000, or 1100-2000 in steps of 100"),
                     _encode_count("n_trains", merged["n_trains"], lambda n: 1 <= n <= 500, "1-500"),
                     _encode_iti(merged["iti_s"]))
        t_sent = None
        if amplitude is not None:
            t_sent = self._set_amplitude(*amplitude)
        if train is not None:
            payload = bytes([CMD_TRAIN]) + b"".join(w.to_bytes(2, "big") for w in words)
            t_sent, reply = self._transact(payload, STATUS4_IDS, "setting train parameters")
            self._absorb(reply)
            self._train = {"frequency_hz": words[0] / 10, "pulses_per_train": words[1], "n_trains": words[2],
                           "iti_s": words[3] / 10}
        assert t_sent is not None
        return t_sent

    def fire(self) -> float:
        self._require_ready("fire")
        t_sent, reply = self._transact(bytes([CMD_FIRE, 1]), {REPLY_DIDT}, "firing")
        st = self._absorb(reply)
        didt = (reply.payload[1], reply.payload[2])
        if not st.enabled:
            raise DeviceError(f"{self.name}: no pulse: the device reports it is not enabled "
                              "(disabled at the front panel?)")
        if didt[0] == 0 and self._amplitude[0] > 0:
            self._ready_at = reply.t + self.pulse_recharge_s
            raise DeviceError(f"{self.name}: the device did not fire (reported di/dt 0 at "
                              f"{self._amplitude[0]} %MSO): still recharging or busy")
        self.last_didt = didt
        self._ready_at = reply.t + self.pulse_recharge_s
        return t_sent

    def start(self) -> float:
        """Start the train sequence set with set_parameters (needs the device on its Timing page)."""
        self._require_ready("start a train")
        if not self._train:
            raise NotReady(f"{self.name}: cannot start a train: no train parameters set in this session "
                           f"(set {', '.join(TRAIN_PARAMS)} first)")
        t_sent, reply = self._transact(bytes([CMD_TRAIN_START]), STATUS4_IDS, "starting the train")
        st = self._absorb(reply)
        if not st.enabled or (reply.id == REPLY_PAGE and not reply.payload[2]):
            raise DeviceError(f"{self.name}: the device did not start the train (reply {_hex(reply.payload)})")
        tr = self._train
        per_train = (tr["pulses_per_train"] - 1) / tr["frequency_hz"]
        duration = tr["n_trains"] * per_train + (tr["n_trains"] - 1) * tr["iti_s"]
        self._train_until = reply.t + duration
        self._ready_at = self._train_until + self.pulse_recharge_s
        return t_sent

    def stop(self) -> float:
        """Stop a train by disabling the device (the protocol documents no other way)."""
        return self.disarm()

    def status(self, query: bool = True) -> DeviceStatus:
        """Ask the device (``query``) or report the driver's model without any I/O (never raises)."""
        if query and self._ser is not None:
            _, reply = self._transact(bytes([CMD_STATUS]), {REPLY_STATUS}, "reading status")
            p = reply.payload
            self._absorb(reply)
            self._amplitude = (p[7], p[8])
            self._device.update(serial_no=int.from_bytes(p[2:5], "big"), temperature_c=p[5], coil_type=p[6])
            return self._status(reply.t)
        return self._status(local_clock())

    def close(self) -> None:
        if self._ser is None:
            return
        try:
            self.disarm()
        except DeviceError as e:
            self.last_error = str(e)
        finally:
            self._close_port()

    # ================================================================ model
    def _status(self, t: float) -> DeviceStatus:
        connected = self._ser is not None and self._dead is None
        training = self._train_until is not None and t < self._train_until
        ready = connected and self._enabled and not training and (self._ready_at is None or t >= self._ready_at)
        params: dict[str, Any] = {"intensity_pct": self._amplitude[0], "intensity_b_pct": self._amplitude[1],
                                  **self._train, **self._device, "train_running": training}
        if self.last_didt is not None:
            params["didt_a_per_us"] = self.last_didt
        return DeviceStatus(t=t, connected=connected, remote=self._enabled, armed=self._enabled, ready=ready,
                            ready_at=self._ready_at if self._enabled else None,
                            error=self._dead or self.last_error, parameters=params)

    def _absorb(self, reply: Frame) -> StatusByte:
        st = StatusByte.decode(reply.payload[1] if reply.id == REPLY_STATUS else reply.payload[3])
        if not st.enabled:
            self._ready_at, self._train_until = None, None
        self._enabled = st.enabled
        self._device.update(model=st.model, mode=st.mode, waveform=st.waveform)
        if reply.id == REPLY_AMPLITUDE:
            self._amplitude = (reply.payload[1], reply.payload[2])
        return st

    def _require_idle(self, what: str) -> None:
        if self._ser is None:
            raise DeviceError(f"{self.name}: cannot {what}: not connected (call connect())")
        now = local_clock()
        if self._train_until is not None and now < self._train_until:
            raise NotReady(f"{self.name}: cannot {what}: a train is running until t={self._train_until:.3f} "
                           f"({self._train_until - now:.3f} s from now)")

    def _require_ready(self, what: str) -> None:
        self._require_idle(what)
        if not self._enabled:
            raise NotReady(f"{self.name}: cannot {what}: the device is not enabled (call arm() first)")
        now = local_clock()
        if self._ready_at is not None and now < self._ready_at:
            raise NotReady(f"{self.name}: cannot {what}: recharging until t={self._ready_at:.3f} "
                           f"({(self._ready_at - now) * 1e3:.0f} ms from now)")

    def _set_amplitude(self, a: int, b: int | None) -> float:
        payload = bytes([CMD_AMPLITUDE, a]) if b is None else bytes([CMD_AMPLITUDE, a, b])
        before = self._amplitude
        t_sent, reply = self._transact(payload, {REPLY_AMPLITUDE}, "setting the amplitude")
        self._absorb(reply)
        got = (reply.payload[1], reply.payload[2])
        if got[0] != a or (b is not None and got[1] != b):
            raise DeviceError(f"{self.name}: asked for amplitude {a if b is None else (a, b)} %MSO, "
                              f"the device reports {got}")
        if got != before and self._enabled:
            self._ready_at = max(self._ready_at or 0.0, reply.t + self.recharge_s)
        return t_sent

    # ================================================================ wire
    def _transact(self, payload: bytes, reply_ids: set[int] | frozenset[int], what: str) -> tuple[float, Frame]:
        frame = encode_frame(payload)
        with self._io:
            self._discard_input(what)
            t_sent = self._write(frame, what)
            return t_sent, self._await(t_sent, reply_ids, what)

    def _port(self, what: str) -> SerialPort:
        if self._ser is None:
            raise DeviceError(f"{self.name}: cannot complete {what}: not connected")
        if self._dead is not None:
            raise DeviceError(f"{self.name}: cannot complete {what}: {self._dead}")
        return self._ser

    def _broke(self, what: str, e: Exception) -> DeviceError:
        self._dead = f"link to {self.port} broke while {what}: {e}"
        return DeviceError(f"{self.name}: {self._dead}")

    def _discard_input(self, what: str) -> None:
        try:
            self._port(what).reset_input_buffer()
        except LINK_ERRORS as e:
            raise self._broke(what, e) from e

    def _write(self, data: bytes, what: str, force: bool = False) -> float:
        """``force``: try even on a link already seen broken (the E-STOP path always attempts)."""
        ser = self._ser if force and self._ser is not None else self._port(what)
        try:
            ser.write(data)
            ser.flush()
        except LINK_ERRORS as e:
            raise self._broke(what, e) from e
        if force:
            self._dead = None  # the bytes went out: the link works again
        return local_clock()

    def _read(self, n: int, deadline: float, what: str) -> bytes:
        ser, got = self._port(what), bytearray()
        try:
            while len(got) < n and local_clock() < deadline:
                got += ser.read(n - len(got))
        except LINK_ERRORS as e:
            raise self._broke(what, e) from e
        return bytes(got)

    def _read_frame(self, deadline: float, what: str) -> Frame:
        noise = bytearray()
        while True:
            b = self._read(1, deadline, what)
            if not b:
                extra = f" (only noise: {_hex(bytes(noise[-16:]))})" if noise else ""
                raise DeviceError(f"{self.name}: no reply within {self.reply_timeout_s * 1e3:.0f} ms "
                                  f"while {what}{extra}")
            if b[0] == START:
                break
            noise += b
        head = self._read(1, deadline, what)
        if not head:
            raise DeviceError(f"{self.name}: incomplete reply frame while {what}: fe and then nothing")
        n = head[0]
        if not 1 <= n <= MAX_PAYLOAD:
            raise DeviceError(f"{self.name}: malformed reply frame while {what}: length byte {n}")
        rest = self._read(n + 2, deadline, what)
        raw = bytes([START, n]) + rest
        if len(rest) < n + 2:
            raise DeviceError(f"{self.name}: incomplete reply frame while {what}: {_hex(raw)}")
        payload, crc, end = rest[:n], rest[n], rest[n + 1]
        if end != END:
            raise DeviceError(f"{self.name}: malformed reply frame while {what}: end byte {end:#04x} "
                              f"instead of 0xff in {_hex(raw)}")
        if crc != crc8_maxim(payload):
            raise DeviceError(f"{self.name}: bad CRC in reply while {what}: {crc:#04x}, expected "
                              f"{crc8_maxim(payload):#04x} for payload {_hex(payload)}")
        return Frame(payload, local_clock())

    def _await(self, t_sent: float, reply_ids: set[int] | frozenset[int], what: str) -> Frame:
        deadline = t_sent + self.reply_timeout_s
        while True:
            frame = self._read_frame(deadline, what)
            expected = REPLY_LENGTHS.get(frame.id)
            if frame.id in reply_ids:
                if len(frame.payload) != expected:
                    raise DeviceError(f"{self.name}: malformed reply while {what}: id {frame.id:#04x} with "
                                      f"{len(frame.payload)} bytes (expected {expected}): {_hex(frame.payload)}")
                return frame
            self.unsolicited.append(frame)
            del self.unsolicited[:-32]

    def _close_port(self) -> None:
        ser, self._ser = self._ser, None
        self._enabled, self._ready_at, self._train_until = False, None, None
        if ser is not None:
            try:
                ser.close()
            except LINK_ERRORS:
                pass
