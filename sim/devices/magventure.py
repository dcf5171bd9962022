"""A virtual MagVenture MagPro on a pseudo-terminal, speaking the COM2 remote-control protocol byte for byte.

Written from the public protocol descriptions (the MagVenture part of the MAGIC toolbox,
github.com/nigelrogasch/MAGIC ``magventure.m``; xiangruili/MagventurePyTMS ``pytms.py``), not from
our driver, so a driver test against this device is a real check.

Wire format (38400 8N1): ``FE len payload CRC FF``; ``len`` = payload length; CRC-8 Dallas/Maxim
(reflected polynomial 0x8C, init 0) over the payload only.

Commands modelled (first payload byte):
  00            status request           -> status frame ``00 st s2 s1 s0 temp coil ampA ampB`` (9 bytes)
  01 aa [bb]    amplitude A [and B], %MSO 0..100 (2-byte form = standard mode, 3-byte = twin/dual)
                                         -> ``01 ampA ampB st``
  02 01 / 02 00 enable / disable         -> ``01 ampA ampB st`` (enabled bit in ``st``)
  03 01         fire one pulse           -> ``02 didtA didtB st`` (realised di/dt, A/us)
  04            start the train sequence -> ``08 page running st``   (MAGIC ``sendTrain``; pytms ``fireTrain``)
  06 rr rr pp pp nn nn ii ii  train parameters, u16 big-endian: rep rate x10 (pps), pulses in train,
                number of trains, inter-train interval x10 (s)  (MAGIC ``setTrain``) -> ``08 page running st``
``st`` (status byte): bits 0-1 mode (0 Standard, 1 Power, 2 Twin, 3 Dual), bits 2-3 waveform
(0 Monophasic, 1 Biphasic, 2 Halfsine, 3 Biphasic Burst), bit 4 enabled, bits 5-7 model
(0 R30, 1 X100, 2 R30+Option, 3 X100+Option, 4 R30+Option+Mono, 5 MST). Serial number: 3 bytes big-endian.

Assumptions (not in the public sources; documented so tests and readers know what is modelled):
- A frame with a bad CRC, a bad end byte, an unknown command or out-of-range data is ignored: no
  reply, no state change (no NAK is documented).
- Recharge: after enable or an amplitude change the capacitor needs ``recharge_s`` (default 0.2 s)
  before a trigger is taken; after a pulse, ``pulse_recharge_s`` (default 1/30 s: the R30's 30 pps at
  full output). A fire during recharge, while disabled, or while a train runs delivers no pulse and is
  answered with di/dt 0.
- The reply to 06 and 04 is the page/train frame (id 08, page 2 = Timing); the driver should only rely
  on it being a 4-byte status frame.
- di/dt = amplitude x ``didt_per_pct`` (illustrative coil figure), at least 1 A/us for a non-zero pulse.
- No keep-alive: the MagPro does not drop remote control when the host is silent.

Fault switches (``device.faults``): ``no_reply`` (commands applied, nothing answered: a broken TX line),
``corrupt_crc`` (replies carry a wrong CRC), ``garble`` (replies are preceded by noise and end with a
wrong end byte). ``disconnect()`` (from link.py) pulls the cable; ``stop()`` closes the port.

Journal (``note``, see link.py): each valid frame is described ("status request", "amplitude 40",
"enable", "fire", "start train", "train parameters ...") with the reply sent; dropped bytes and
frames as "ignored" with the reason; every delivered pulse (train pulses at their due time) as a
pulse, and a fire that delivers none as an event saying why.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from sim.devices.link import PtyDevice

START, END = 0xFE, 0xFF
MAX_PAYLOAD = 32  # longest command payload in the public protocol is 11 bytes; larger lengths are noise
MODELS = ("R30", "X100", "R30+Option", "X100+Option", "R30+Option+Mono", "MST")
PAGE_TIMING = 2


def crc8_maxim(data: bytes) -> int:
    """CRC-8 Dallas/Maxim, bit by bit: reflected polynomial 0x8C, init 0, no final xor."""
    crc = 0
    for byte in data:
        for bit in range(8):
            mix = (crc ^ (byte >> bit)) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
    return crc


def frame(payload: bytes) -> bytes:
    return bytes([START, len(payload)]) + payload + bytes([crc8_maxim(payload), END])


@dataclass
class Faults:
    no_reply: bool = False
    corrupt_crc: bool = False
    garble: bool = False


@dataclass
class Train:
    rate_pps: float = 1.0
    pulses: int = 5
    trains: int = 3
    iti_s: float = 1.0


@dataclass(frozen=True)
class Logged:
    t: float  # arrival time (LSL clock) of the frame's end byte chunk
    payload: bytes


@dataclass(frozen=True)
class Ignored:
    t: float
    data: bytes
    reason: str


class MagVentureDevice(PtyDevice):
    kind = "magventure"

    def __init__(self, recharge_s: float = 0.2, pulse_recharge_s: float = 1 / 30, model: str = "X100",
                 serial_no: int = 0x01E240, coil_type: int = 60, temperature_c: int = 24,
                 amplitude: int = 0, enabled: bool = False, didt_per_pct: float = 1.5,
                 frame_timeout_s: float = 0.05) -> None:
        super().__init__()
        if model not in MODELS:
            raise ValueError(f"magventure: unknown model {model!r}; models: {', '.join(MODELS)}")
        self.recharge_s = recharge_s
        self.pulse_recharge_s = pulse_recharge_s
        self.model = model
        self.serial_no = serial_no
        self.coil_type = coil_type
        self.temperature_c = temperature_c
        self.didt_per_pct = didt_per_pct
        self.frame_timeout_s = frame_timeout_s
        self.faults = Faults()
        self.mode = 0  # Standard
        self.waveform = 1  # Biphasic
        self.amplitude = amplitude
        self.amplitude_b = 0
        self.enabled = enabled
        self.train = Train()
        self.ready_at = 0.0
        self.pulses: list[tuple[float, int]] = []  # (LSL time, amplitude %MSO) of every delivered pulse
        self.commands: list[Logged] = []  # every valid frame, in order
        self.ignored: list[Ignored] = []  # bytes/frames dropped, with the reason
        self.replies: list[tuple[float, bytes]] = []  # every frame sent (as put on the wire)
        self._buf = bytearray()
        self._buf_t = 0.0  # arrival time of the oldest byte in _buf
        self._schedule: deque[float] = deque()  # due times of the running train's pulses
        self._pending: list[tuple[float, str, str, bytes | None]] | None = None  # notes after the command

    # ------------------------------------------------------------ state
    @property
    def train_running(self) -> bool:
        return bool(self._schedule)

    def status_byte(self) -> int:
        return (self.mode & 3) | (self.waveform & 3) << 2 | int(self.enabled) << 4 | MODELS.index(self.model) << 5

    # ------------------------------------------------------------ transport callbacks
    def on_bytes(self, data: bytes, t: float) -> None:
        if not self._buf:
            self._buf_t = t
        self._buf += data
        self._parse(t)

    def tick(self, t: float) -> None:
        while self._schedule and self._schedule[0] <= t:
            due = self._schedule.popleft()
            self._pulse(due)
        if self._buf and t - self._buf_t > self.frame_timeout_s:
            # an incomplete frame went stale: drop its start byte and look for the next FE
            self._drop(1, t, "incomplete frame timed out")
            self._parse(t)

    # ------------------------------------------------------------ framing
    def _ignore(self, t: float, data: bytes, reason: str) -> None:
        self.ignored.append(Ignored(t, data, reason))
        self.note(t, "ignored", reason, data)

    def _drop(self, n: int, t: float, reason: str) -> None:
        self._ignore(t, bytes(self._buf[:n]), reason)
        del self._buf[:n]
        self._buf_t = t

    def _parse(self, t: float) -> None:
        buf = self._buf
        while buf:
            start = buf.find(START)
            if start < 0:
                self._drop(len(buf), t, "noise (no start byte)")
                return
            if start > 0:
                self._drop(start, t, "noise before start byte")
            if len(buf) < 2:
                return
            n = buf[1]
            if n == 0 or n > MAX_PAYLOAD:
                self._drop(1, t, f"implausible length {n}")
                continue
            if len(buf) < n + 4:
                return  # wait for the rest (tick drops it if it never comes)
            payload, crc, end = bytes(buf[2:2 + n]), buf[2 + n], buf[3 + n]
            if end != END:
                self._drop(1, t, f"end byte {end:#04x} is not FF")  # resynchronise on the next FE
                continue
            if crc != crc8_maxim(payload):
                self._drop(n + 4, t, f"{describe(payload)}: bad CRC {crc:#04x} (expected {crc8_maxim(payload):#04x})")
                continue
            del buf[:n + 4]
            self._buf_t = t
            self.commands.append(Logged(t, payload))
            n_replies = len(self.replies)
            self._pending = []
            try:
                self._apply(payload, t)
            finally:
                pending, self._pending = self._pending, None
            reply = self.replies[-1][1] if len(self.replies) > n_replies else None
            self.note(t, "command", describe(payload), frame(payload), reply)
            for t_note, type_, text, data in pending:
                self.note(t_note, type_, text, data)

    def _reply(self, payload: bytes, t: float) -> None:
        if self.faults.no_reply:
            return
        out = bytearray(frame(payload))
        if self.faults.corrupt_crc:
            out[-2] ^= 0x5A
        if self.faults.garble:
            out = bytearray(b"\x13\x37") + out
            out[-1] = 0xEF
        self.replies.append((t, bytes(out)))
        self.write(bytes(out))

    # ------------------------------------------------------------ commands
    def _apply(self, p: bytes, t: float) -> None:
        cmd = p[0]
        if cmd == 0x00 and len(p) == 1:
            self._reply(self._status_payload(), t)
        elif cmd == 0x01 and len(p) in (2, 3):
            self._set_amplitude(p, t)
        elif cmd == 0x02 and len(p) == 2 and p[1] in (0, 1):
            self._set_enabled(bool(p[1]), t)
        elif cmd == 0x03 and len(p) == 2 and p[1] == 1:
            self._fire(t)
        elif cmd == 0x04 and len(p) == 1:
            self._start_train(t)
        elif cmd == 0x06 and len(p) == 9:
            self._set_train(p, t)
        else:
            self._later(t, "ignored", f"unknown command or wrong length: {p.hex(' ')}", p)

    def _status_payload(self) -> bytes:
        return bytes([0x00, self.status_byte()]) + self.serial_no.to_bytes(3, "big") + bytes(
            [self.temperature_c & 0xFF, self.coil_type & 0xFF, self.amplitude, self.amplitude_b])

    def _amplitude_payload(self) -> bytes:
        return bytes([0x01, self.amplitude, self.amplitude_b, self.status_byte()])

    def _page_payload(self) -> bytes:
        return bytes([0x08, PAGE_TIMING, int(self.train_running), self.status_byte()])

    def _set_amplitude(self, p: bytes, t: float) -> None:
        a = p[1]
        b = p[2] if len(p) == 3 else self.amplitude_b
        if a > 100 or b > 100:
            self._later(t, "ignored", "amplitude above 100 %", p)
            return
        if (a, b) != (self.amplitude, self.amplitude_b):
            self.amplitude, self.amplitude_b = a, b
            self.ready_at = max(self.ready_at, t + self.recharge_s)
        self._reply(self._amplitude_payload(), t)

    def _set_enabled(self, on: bool, t: float) -> None:
        if on and not self.enabled:
            self.ready_at = t + self.recharge_s
        if not on:
            self._schedule.clear()  # disabling stops a running train
        self.enabled = on
        self._reply(self._amplitude_payload(), t)

    def _can_fire(self, t: float) -> bool:
        return self.enabled and t >= self.ready_at and not self.train_running

    def _didt(self) -> int:
        return 0 if self.amplitude == 0 else min(255, max(1, round(self.amplitude * self.didt_per_pct)))

    def _later(self, t: float, type_: str, text: str, data: bytes | None = None) -> None:
        """Journal after the command being applied (``_pending``), or at once from ``tick``."""
        if type_ == "ignored":
            self.ignored.append(Ignored(t, data or b"", text))
        if self._pending is not None:
            self._pending.append((t, type_, text, data))
        else:
            self.note(t, type_, text, data)

    def _pulse(self, t: float) -> None:
        self.pulses.append((t, self.amplitude))
        self.ready_at = t + self.pulse_recharge_s
        self._later(t, "pulse", f"pulse {self.amplitude} %")

    def _fire(self, t: float) -> None:
        if self._can_fire(t):
            self._pulse(t)
            didt = self._didt()
        else:
            why = ("disabled" if not self.enabled else "train running" if self.train_running
                   else f"recharging for {self.ready_at - t:.3f} s more")
            self._later(t, "event", f"fire: no pulse ({why})")
            didt = 0
        self._reply(bytes([0x02, didt, 0, self.status_byte()]), t)

    def _set_train(self, p: bytes, t: float) -> None:
        rate10, pulses, trains, iti10 = (int.from_bytes(p[i:i + 2], "big") for i in (1, 3, 5, 7))
        valid = (1 <= rate10 <= 1000 and (rate10 <= 10 or rate10 % 10 == 0)
                 and 1 <= pulses <= 2000 and 1 <= trains <= 500 and 1 <= iti10 <= 3000)
        if not valid or self.train_running:
            self._later(t, "ignored", "train parameters out of range" if not valid else "train running", p)
            return
        self.train = Train(rate10 / 10, pulses, trains, iti10 / 10)
        self._reply(self._page_payload(), t)

    def _start_train(self, t: float) -> None:
        if self._can_fire(t):
            tr, t0 = self.train, t
            for _ in range(tr.trains):
                self._schedule.extend(t0 + i / tr.rate_pps for i in range(tr.pulses))
                t0 += (tr.pulses - 1) / tr.rate_pps + tr.iti_s
        self._reply(self._page_payload(), t)


def describe(payload: bytes) -> str:
    """What a valid command payload asks for, in words."""
    cmd, args = payload[0], payload[1:]
    if cmd == 0x00 and not args:
        return "status request"
    if cmd == 0x01 and len(args) == 1:
        return f"amplitude {args[0]}"
    if cmd == 0x01 and len(args) == 2:
        return f"amplitude A {args[0]}, B {args[1]}"
    if cmd == 0x02 and args in (b"\x00", b"\x01"):
        return "enable" if args[0] else "disable"
    if cmd == 0x03 and args == b"\x01":
        return "fire"
    if cmd == 0x04 and not args:
        return "start train"
    if cmd == 0x06 and len(args) == 8:
        rate10, pulses, trains, iti10 = (int.from_bytes(args[i:i + 2], "big") for i in (0, 2, 4, 6))
        return f"train parameters: {rate10 / 10:g} pps, {pulses} pulses, {trains} trains, ITI {iti10 / 10:g} s"
    return f"command {payload.hex(' ')}"


def create(**options) -> MagVentureDevice:
    """A virtual MagPro (not started); options as in :class:`MagVentureDevice`."""
    return MagVentureDevice(**options)
