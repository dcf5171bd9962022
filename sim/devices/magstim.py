"""A virtual Magstim 200² / BiStim² / Rapid² on a pseudo-terminal, written from the protocol text.

Sources (facts only): Magstim's "200² / Bistim² Host Interface Communication Protocol" and "Rapid²
Host Interface Communication Protocol Rev 5.1" (the PDFs published in github.com/cboulay/magstim_python,
with that README's ``X@`` table), and MagPy (github.com/nicolasmcnair/magpy: ``magpy/magstim.py``, the
client, and its former ``magpy/_virtual.py``, removed in 2022 by its author as not working properly,
so used only for choices nothing else settles) for what the documents leave out (``F@``, charge
delay, reply lengths by software version, timings).

Wire format: 9600 8N1; a command is an ASCII command byte, data (``@`` padding when none) and CRC =
``~sum(bytes) & 0xFF``; the reply echoes the command byte, then the instrument-status byte, data and
CRC over the reply. A lone ``?`` = unknown command; ``?`` / ``S`` in byte 1 (then the CRC) = invalid
data / conflicts with the current state.

Commands answered (by model; reply without its command byte and CRC; ``s`` = instrument status,
``r`` = Rapid² status byte):
- all: ``Q@`` remote on and ``R@`` remote off (and disarm): ``s`` (after the change); ``EA`` disarm,
  ``EB`` arm, ``EH`` fire, ``@nnn`` power (A): ``s``; ``I@`` error code: ``s`` + 3 characters
  (``000`` when none); ``F@`` coil temperature: ``s`` + two 3-digit temperatures in 0.1 °C (MagPy).
- 200², BiStim²: ``J@`` parameters: ``s`` + power A, power B (``000`` on a 200²), interval (ms; 0.1 ms
  in high-resolution mode), 3 digits each; ``X@`` system mode: ``s`` + one character (``0`` single
  stimulator, ``1`` BiStim² simultaneous discharge, ``2`` BiStim² low resolution, ``4`` BiStim² high
  resolution: the master's codes of the cboulay README; the 200² answering ``0`` is our reading).
- BiStim²: ``Annn`` power B, ``Cnnn`` interpulse interval (0 = simultaneous discharge, in standby
  only), ``Y@`` / ``Z@`` high-resolution interval on / off (standby only; the interval becomes 1 ms /
  10 ms, as MagPy says): ``s``.
- Rapid²: ``\\@`` parameters: ``s`` ``r`` + power 3, frequency 4 (0.1 Hz), pulses 5, duration 4 (0.1 s),
  wait 4 (0.1 s) from software V9 (24 bytes); before V9 pulses 4 and duration 3 (22 bytes), before V7
  wait 3 (21 bytes). ``ND`` software version: ``V`` + the version text + NUL (``NV9.0\\0`` + CRC, the
  Rapid² document's example; no status byte). ``Bnnnn`` frequency, ``Dnnnnn`` pulses (4 digits before
  V9), ``[nnnn`` duration (3 digits before V9), ``^@`` / ``_@`` enhanced power mode on / off: ``s``
  ``r``. ``b@`` ignore the coil interlock switch: ``s``. From V9: ``x@`` system status: ``s`` ``r`` +
  extended status MSB, LSB (bit 0 Plus1 module, 1 special trigger mode, 2 charge delay set (V10+,
  MagPy)); ``o@`` charge delay: ``s`` + 4 digits (5 from V10); ``nnnnn`` charge delay (5 digits from
  V10, range 0-2000 / 0-10000): ``s`` ``r`` (V9) or ``s`` ``r`` + extended status (V10+; MagPy's
  client; its README says 11+). ``[0000`` returns to single-pulse mode and a non-zero ``[`` in
  single-pulse mode enters repetitive mode (both only in standby; the document allows it armed but
  advises against it). ``J@`` and ``X@`` are not Rapid² commands; ``x``, ``o`` and ``n`` are unknown
  before V9.
- Rapid² enable remote control: before V9, and by default here, ``Q@``; with ``unlock_code`` set (the
  V9+ structure), ``Q`` + the 16-character code (``xxxx-xxxxxxxx-cc``) + CRC; a wrong code answers
  ``Q?``, a bare ``Q@n`` is an incomplete frame and gets no answer (as MagPy's virtual Rapid²).

Model of the unit (documented choices where the public sources are silent):
- Status byte: bit 0 standby, 1 armed (charging), 2 ready, 3 coil present, 4 replace coil, 5 error
  present, 6 error type, 7 remote; armed and ready are exclusive (as MagPy's virtual unit). A reply
  carries the status *before* the command, except Q@/R@ which show the new remote state; the Rapid²
  status byte in a reply is also the one before the command.
- Not ready until ``arm_time_s`` (1.1 s) after EB arrived, until a power change while armed has
  completed (10 ms per % up, 100 ms per % down: MagPy's figures), and until the recharge after a
  pulse (default as MagPy's virtual unit: 200² 2/3/4 s for power <50/<80/higher, BiStim² 4 s,
  Rapid² 1 s, 2 s in enhanced power mode at 100-110 % (MagPy: 0.5 Hz)) plus the Rapid²'s charge
  delay (read as ms: MagPy's docstring says seconds, which its 0-10000 range belies), or the end of
  a Rapid² train plus ``train_wait_s`` (0.5 s, the documented minimum).
- Remote control: any valid command is contact. Without contact for ``keepalive_timeout_s`` while
  armed (default 1.0 s) or ``keepalive_timeout_disarmed_s`` while disarmed (default 10 s; both the
  documents' figures), the unit drops remote control and disarms. Armed and not fired for
  ``armed_idle_timeout_s`` (60 s) it disarms. A coil above ``coil_temperature_limit_c`` (40 °C,
  MagPy) disarms the unit and EB is refused (``S``); ``coil1_temperature_c`` / ``coil2_temperature_c``
  can be changed live.
- Queries work without remote control (Q, R, J, X, I, F, ``\\``, N (the document's terminal test
  sends ``NDm`` first), x, o) and so does EA; every other command needs it (else ``S``). EB when
  armed (or with the coil too hot), EH when not ready, Rapid² settings during a train or its wait,
  ``^@`` / ``_@`` outside standby (as MagPy's virtual unit), ``^@`` in repetitive mode (MagPy:
  enhanced power is a single-pulse mode) and entering repetitive mode in enhanced power mode answer
  ``S``. Out-of-range data (power over 100 %, 110 % in enhanced power mode), a data byte other than
  ``D`` after ``N``, and a bad command CRC answer ``?`` in byte 1.
- Pulses: ``pulses`` logs ``(t, power_pct)`` at EH arrival; BiStim² also logs channel B in
  ``pulses_b`` at ``t + interval``; a Rapid² train logs ``n_pulses`` pulses at ``1/frequency``.
- Not modelled: the Rapid²'s maximum frequency by power (the user manual's table), the energy-based
  minimum wait between trains (the host's duty, the document says), what ``b@`` and the special
  trigger mode change, BiStim² slave modes.
- Faults for tests (``faults``): ``no_reply`` (the command is ignored, no answer),
  ``corrupt_crc`` (executed, CRC of the reply wrong), ``reply_error`` = b"?" | b"S" (not executed,
  error reply), ``unknown_command`` (not executed, lone ``?``), ``error_code`` (sets the error bit,
  ``I@`` reports it), ``only`` = command bytes the faults apply to (None = all); and the link's
  ``disconnect()``.

Journal (``note``, see link.py): every complete frame is described ("remote on", "keep-alive" for a
Q@ while already in remote control, "arm", "fire", "set power 50", ... with " (bad CRC)" when the
CRC is wrong) with the reply sent (None when a fault swallowed it); refusals and the changes the
unit makes by itself ("remote control dropped ...; disarmed") as events; every pulse as a pulse.
"""

from __future__ import annotations

from dataclasses import dataclass

import pylsl

from sim.devices.link import PtyDevice

MODELS = ("200", "bistim", "rapid")

STANDBY, ARMED, READY, COIL_PRESENT, REPLACE_COIL, ERROR_PRESENT, ERROR_TYPE, REMOTE = (1 << i for i in range(8))
R_ENHANCED, R_TRAIN, R_WAIT, R_SINGLE_PULSE, R_HVPSU, R_COIL_READY = 1, 2, 4, 8, 16, 32
# Extended instrument status (Rapid² x@, V9+), least significant byte.
X_PLUS1_MODULE, X_SPECIAL_TRIGGER, X_CHARGE_DELAY_SET = 1, 2, 4

# Queries (and EA, handled apart) need no remote control; every other command does.
NO_REMOTE_NEEDED = frozenset(b"QRJXIF\\Nxo")


def parse_version(text: str) -> tuple[int, ...]:
    """``"9.0"`` -> ``(9, 0)``: the Rapid² software version as the unit spells it after ``NV``."""
    parts = str(text).split(".")
    if len(parts) < 2 or not all(part.isdigit() for part in parts):
        raise ValueError(f"Rapid² software version {text!r}: expected digits and dots, e.g. '9.0'")
    return tuple(int(part) for part in parts)


def frame_lengths(model: str, version: tuple[int, ...] = (9, 0),
                  unlock_code: bytes | None = None) -> dict[bytes, int]:
    """Frame length (command byte + data + CRC) by command byte for one model (and Rapid² version)."""
    common = {b"Q": 3, b"R": 3, b"E": 3, b"I": 3, b"@": 5, b"F": 3}
    if model == "200":
        return {**common, b"J": 3, b"X": 3}
    if model == "bistim":
        return {**common, b"J": 3, b"X": 3, b"A": 5, b"C": 5, b"Y": 3, b"Z": 3}
    v9 = version >= (9,)
    lengths = {**common, b"\\": 3, b"N": 3, b"B": 6, b"D": 7 if v9 else 6, b"[": 6 if v9 else 5,
               b"^": 3, b"_": 3, b"b": 3}
    if v9:
        lengths.update({b"x": 3, b"o": 3, b"n": 7 if version >= (10,) else 6})
    if unlock_code is not None:
        lengths[b"Q"] = 2 + len(unlock_code)
    return lengths


FRAME_LENGTHS = {model: frame_lengths(model) for model in MODELS}  # default versions, no unlock code


def checksum(data: bytes) -> int:
    """``~sum(bytes) & 0xFF``: the Magstim CRC (written here independently of the driver)."""
    return (~sum(data)) & 0xFF


def with_crc(data: bytes) -> bytes:
    return data + bytes([checksum(data)])


@dataclass
class Faults:
    no_reply: bool = False
    corrupt_crc: bool = False
    reply_error: bytes | None = None  # b"?" or b"S" in byte 1
    unknown_command: bool = False
    error_code: str | None = None  # e.g. "021"
    only: bytes | None = None  # command bytes the faults apply to, e.g. b"EH"; None = every command

    def applies(self, command_byte: int) -> bool:
        return self.only is None or command_byte in self.only


class VirtualMagstim(PtyDevice):
    kind = "magstim"

    def __init__(
        self,
        model: str = "200",
        keepalive_timeout_s: float | None = None,
        keepalive_timeout_disarmed_s: float | None = None,
        arm_time_s: float = 1.1,
        power_up_s_per_pct: float = 0.010,
        power_down_s_per_pct: float = 0.100,
        recharge_s: float | None = None,
        train_wait_s: float = 0.5,
        armed_idle_timeout_s: float = 60.0,
        power: int = 30,
        frame_timeout_s: float = 0.05,
        version: str = "9.0",
        unlock_code: str | None = None,
        coil1_temperature_c: float = 24.0,
        coil2_temperature_c: float = 24.0,
        coil_temperature_limit_c: float = 40.0,
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"virtual Magstim model {model!r} unknown; models: {', '.join(MODELS)}")
        self.version_text = str(version)
        self.version = parse_version(self.version_text)
        self.unlock_code = None if unlock_code is None else str(unlock_code).encode("latin-1")
        if self.unlock_code is not None and (model != "rapid" or self.version < (9,)):
            raise ValueError("an unlock code is the enable-remote-control structure of a Rapid² from software V9.0")
        super().__init__()
        self.model = model
        self._lengths = frame_lengths(model, self.version, self.unlock_code)
        self.keepalive_timeout_s = 1.0 if keepalive_timeout_s is None else keepalive_timeout_s
        self.keepalive_timeout_disarmed_s = (10.0 if keepalive_timeout_disarmed_s is None
                                             else keepalive_timeout_disarmed_s)
        self.arm_time_s = arm_time_s
        self.power_up_s_per_pct = power_up_s_per_pct
        self.power_down_s_per_pct = power_down_s_per_pct
        self.recharge_s = recharge_s
        self.train_wait_s = train_wait_s
        self.armed_idle_timeout_s = armed_idle_timeout_s
        self.frame_timeout_s = frame_timeout_s
        self.faults = Faults()

        self.remote = False
        self.power = power
        self.power_b = power if model == "bistim" else 0
        self.interval_ms = 10 if model == "bistim" else 0
        self.high_resolution = False
        self.repetitive = False  # Rapid²: False = single-pulse mode
        self.frequency_tenths = 10
        self.n_pulses = 1
        self.duration_tenths = 10
        self.enhanced_power = False  # Rapid²: power up to 110 %
        self.charge_delay_ms = 0  # Rapid² (V9+)
        self.coil_interlock_ignored = False  # Rapid² b@
        self.coil1_temperature_c = coil1_temperature_c
        self.coil2_temperature_c = coil2_temperature_c
        self.coil_temperature_limit_c = coil_temperature_limit_c

        self.armed_at: float | None = None
        self._charged_at = 0.0  # power change completes
        self._recharged_at = 0.0  # pulse/train recharge completes
        self._train_end = 0.0
        self._last_contact = pylsl.local_clock()
        self._last_active = 0.0  # arming or last pulse (idle disarm)

        self.pulses: list[tuple[float, int]] = []
        self.pulses_b: list[tuple[float, int]] = []
        self.frames: list[tuple[float, bytes]] = []  # every complete command frame, with its arrival time
        self.events: list[tuple[float, str]] = []  # state changes the unit made by itself, and refusals
        self._deferred: list[tuple[float, str, str]] | None = None  # (t, type, text) noted after the command
        self._buffer = b""
        self._buffer_t = 0.0

    # ------------------------------------------------------------------ state
    @property
    def armed(self) -> bool:
        return self.armed_at is not None

    @property
    def ready(self) -> bool:
        return self._ready(pylsl.local_clock())

    @property
    def frequency_hz(self) -> float:
        return self.frequency_tenths / 10

    @property
    def train_duration_s(self) -> float:
        return self.duration_tenths / 10

    @property
    def interval_s(self) -> float:
        """BiStim² interpulse interval: the setting is in ms, or 0.1 ms in high-resolution mode."""
        return self.interval_ms / (10000 if self.high_resolution else 1000)

    def _ready(self, t: float) -> bool:
        return (self.armed_at is not None and t >= self.armed_at + self.arm_time_s and t >= self._charged_at
                and t >= self._recharged_at)

    def status_byte(self, t: float) -> int:
        byte = COIL_PRESENT
        if self.armed_at is None:
            byte |= STANDBY
        else:
            byte |= READY if self._ready(t) else ARMED
        if self.faults.error_code is not None:
            byte |= ERROR_PRESENT
        if self.remote:
            byte |= REMOTE
        return byte

    def rapid_status_byte(self, t: float) -> int:
        byte = R_HVPSU | R_COIL_READY
        if self.enhanced_power:
            byte |= R_ENHANCED
        if not self.repetitive:
            byte |= R_SINGLE_PULSE
        if t < self._train_end:
            byte |= R_TRAIN
        elif t < self._recharged_at and self.repetitive:
            byte |= R_WAIT
        return byte

    def extended_status(self) -> bytes:
        """Rapid² extended instrument status word, most significant byte first (as ``x@`` sends it)."""
        lsb = X_CHARGE_DELAY_SET if self.version >= (10,) and self.charge_delay_ms > 0 else 0
        return bytes([0, lsb])

    @property
    def coil_too_hot(self) -> bool:
        return max(self.coil1_temperature_c, self.coil2_temperature_c) > self.coil_temperature_limit_c

    def _event(self, t: float, text: str, type_: str = "event") -> None:
        """Record a refusal or a state change; journalled after the command that caused it, if any."""
        self.events.append((t, text))
        self._note_after_command(t, type_, text)

    def _note_after_command(self, t: float, type_: str, text: str) -> None:
        if self._deferred is not None:
            self._deferred.append((t, type_, text))
        else:
            self.note(t, type_, text)

    def _disarm(self, t: float, why: str | None = None) -> None:
        if self.armed_at is not None and why:
            self._event(t, why)
        self.armed_at = None
        self._charged_at = 0.0

    def _recharge_time(self) -> float:
        delay = self.charge_delay_ms / 1000
        if self.recharge_s is not None:
            return self.recharge_s + delay
        if self.model == "200":
            return 2.0 if self.power < 50 else 3.0 if self.power < 80 else 4.0
        if self.model == "bistim":
            return 4.0
        return (2.0 if self.enhanced_power and self.power >= 100 else 1.0) + delay

    # ------------------------------------------------------------------ transport hooks
    def tick(self, t: float) -> None:
        if self._buffer and t - self._buffer_t > self.frame_timeout_s:
            self.note(t, "ignored", f"incomplete frame dropped after {self.frame_timeout_s:g} s", self._buffer)
            self.events.append((t, f"incomplete frame {self._buffer!r} dropped"))
            self._buffer = b""
        if self.remote:
            timeout = self.keepalive_timeout_s if self.armed else self.keepalive_timeout_disarmed_s
            if t - self._last_contact > timeout:
                state = "armed" if self.armed else "disarmed"
                self.remote = False
                self._disarm(t)
                self._event(t, f"remote control dropped: keep-alive missed, no command for "
                               f"{t - self._last_contact:.2f} s ({state} timeout {timeout:g} s); disarmed")
        if self.armed and t - self._last_active > self.armed_idle_timeout_s:
            self._disarm(t, f"disarmed: armed and idle for {self.armed_idle_timeout_s:g} s")
        if self.armed and self.coil_too_hot:
            self._disarm(t, f"disarmed: coil above {self.coil_temperature_limit_c:g} °C")

    def on_bytes(self, data: bytes, t: float) -> None:
        if not self._buffer:
            self._buffer_t = t
        self._buffer += data
        lengths = self._lengths
        while self._buffer:
            n = lengths.get(self._buffer[:1])
            if n is None:
                self.events.append((t, f"unknown command byte {self._buffer[:1]!r}; buffer {self._buffer!r} dropped"))
                self.note(t, "ignored", f"unknown command byte {self._buffer[:1]!r}: buffer dropped, answered '?'",
                          self._buffer, b"?" if self.connected else None)
                self._buffer = b""
                self.write(b"?")
                return
            if len(self._buffer) < n:
                return
            command, self._buffer = self._buffer[:n], self._buffer[n:]
            self._buffer_t = t
            self.frames.append((t, command))
            meaning = self.describe(command)
            self._deferred = []
            try:
                reply = self._handle(command, t)
            finally:
                deferred, self._deferred = self._deferred, None
            if reply:
                self.write(reply)
            self.note(t, "command", meaning, command, reply or None)
            for t_event, type_, text in deferred:
                self.note(t_event, type_, text)

    # ------------------------------------------------------------------ protocol
    def _handle(self, command: bytes, t: float) -> bytes | None:
        c = command[:1]
        faults = self.faults
        if faults.applies(command[0]):
            if faults.no_reply:
                return None
            if faults.unknown_command:
                return b"?"
            if faults.reply_error is not None:
                return with_crc(c + faults.reply_error)
        if command[-1] != checksum(command[:-1]):
            self._event(t, f"command {command!r}: bad CRC")
            return with_crc(c + b"?")
        body = self._execute(command[:-1], t)
        if body[1:2] not in (b"?", b"S"):
            self._last_contact = t  # only a valid command counts as contact
        reply = with_crc(body)
        if faults.corrupt_crc and faults.applies(command[0]):
            reply = reply[:-1] + bytes([reply[-1] ^ 0x5A])
        return reply

    def _execute(self, body: bytes, t: float) -> bytes:
        """The reply without its CRC; state changes happen here."""
        c, data = body[:1], body[1:]
        prior = bytes([self.status_byte(t)])
        if c == b"Q":
            if self.unlock_code is not None and data != self.unlock_code:
                self._event(t, "Q: remote control refused (wrong unlock code)")
                return c + b"?"
            self.remote = True
            return c + bytes([self.status_byte(t)])
        if c == b"R":
            self.remote = False
            self._disarm(t)
            return c + bytes([self.status_byte(t)])
        query = self._query(c, data, prior, t)
        if query is not None:
            return query
        if c == b"E" and data == b"A":
            self._disarm(t)
            return c + prior
        if c[0] not in NO_REMOTE_NEEDED and not self.remote:
            return self._refuse(c, t, "not under remote control")
        if c == b"E":
            return self._arm_or_fire(c, data, prior, t)
        if c in (b"Y", b"Z"):
            if self.armed:
                return self._refuse(c, t, "resolution change only in standby")
            self.high_resolution = c == b"Y"
            self.interval_ms = 10  # 1 ms in high resolution (0.1 ms units), 10 ms in low resolution (MagPy)
            return c + prior
        if c in (b"^", b"_"):
            return self._enhanced_power(c, prior, t)
        if c == b"b":
            self.coil_interlock_ignored = True
            return c + prior
        if not data.isdigit():
            return c + b"?"
        if c == b"n":
            return self._charge_delay(c, int(data), prior, t)
        return self._setting(c, int(data), prior, t)

    def _query(self, c: bytes, data: bytes, prior: bytes, t: float) -> bytes | None:
        """Replies to the queries (they change nothing); None for every other command."""
        if c == b"J":
            return c + prior + b"%03d%03d%03d" % (self.power, self.power_b, self.interval_ms)
        if c == b"X":
            if self.model == "200":
                mode = b"0"
            else:
                mode = b"1" if self.interval_ms == 0 else b"4" if self.high_resolution else b"2"
            return c + prior + mode
        if c == b"\\":
            return c + prior + bytes([self.rapid_status_byte(t)]) + self._rapid_parameters()
        if c == b"I":
            return c + prior + (self.faults.error_code or "000").encode("ascii")[:3].ljust(3, b"0")
        if c == b"F":
            return c + prior + b"".join(b"%03d" % min(999, max(0, round(temperature * 10)))
                                        for temperature in (self.coil1_temperature_c, self.coil2_temperature_c))
        if c == b"N":
            if data != b"D":
                return c + b"?"
            return c + b"V" + self.version_text.encode("ascii") + b"\x00"
        if c == b"x":
            return c + prior + bytes([self.rapid_status_byte(t)]) + self.extended_status()
        if c == b"o":
            return c + prior + b"%0*d" % (5 if self.version >= (10,) else 4, self.charge_delay_ms)
        return None

    def _rapid_parameters(self) -> bytes:
        """The data of the ``\\@`` reply after the two status bytes, in the format of the software version."""
        power, frequency = b"%03d" % self.power, b"%04d" % self.frequency_tenths
        wait = round(self.train_wait_s * 10)
        if self.version >= (9,):
            return power + frequency + b"%05d%04d%04d" % (self.n_pulses, self.duration_tenths, wait)
        wait_digits = 4 if self.version >= (7,) else 3
        return power + frequency + b"%04d%03d%0*d" % (self.n_pulses, self.duration_tenths, wait_digits, wait)

    def _enhanced_power(self, c: bytes, prior: bytes, t: float) -> bytes:
        rapid = bytes([self.rapid_status_byte(t)])
        if self.armed:
            return self._refuse(c, t, "enhanced power mode changes only in standby")
        if c == b"^":
            if self.repetitive:
                return self._refuse(c, t, "enhanced power mode only in single-pulse mode")
            self.enhanced_power = True
        else:
            self.enhanced_power = False
            self.power = min(self.power, 100)
        return c + prior + rapid

    def _charge_delay(self, c: bytes, value: int, prior: bytes, t: float) -> bytes:
        if value > (10000 if self.version >= (10,) else 2000):
            return c + b"?"
        reply = c + prior + bytes([self.rapid_status_byte(t)])
        if self.version >= (10,):
            reply += self.extended_status()  # like the other status bytes: as before the command
        self.charge_delay_ms = value
        return reply

    def _refuse(self, c: bytes, t: float, why: str) -> bytes:
        self._event(t, f"{c.decode('ascii', 'replace')}: refused ({why})")
        return c + b"S"

    def _arm_or_fire(self, c: bytes, data: bytes, prior: bytes, t: float) -> bytes:
        if data == b"B":
            if self.armed:
                return self._refuse(c, t, "already armed")
            if self.coil_too_hot:
                return self._refuse(c, t, f"coil above {self.coil_temperature_limit_c:g} °C")
            self.armed_at = self._last_active = t
            self._charged_at = 0.0
            return c + prior
        if data == b"H":
            if not self._ready(t):
                return self._refuse(c, t, "not ready" if self.armed else "not armed")
            self._last_active = t
            self._fire(t)
            return c + prior
        return c + b"?"

    def _fire(self, t: float) -> None:
        if self.model == "rapid" and self.repetitive:
            period = 10 / self.frequency_tenths
            self.pulses.extend((t + k * period, self.power) for k in range(self.n_pulses))
            self._train_end = t + self.n_pulses * period
            self._recharged_at = self._train_end + self.train_wait_s
            self._note_after_command(t, "pulse", f"train of {self.n_pulses} pulses at {self.frequency_hz:g} Hz, "
                                                 f"{self.power} %")
            return
        self.pulses.append((t, self.power))
        if self.model == "bistim":
            self.pulses_b.append((t + self.interval_s, self.power_b))
            self._note_after_command(t, "pulse", f"pulse A {self.power} %, B {self.power_b} % "
                                                 f"after {self.interval_s * 1000:g} ms")
        else:
            self._note_after_command(t, "pulse", f"pulse {self.power} %")
        self._recharged_at = t + self._recharge_time()

    def _setting(self, c: bytes, value: int, prior: bytes, t: float) -> bytes:
        if c in (b"@", b"A"):
            if not 0 <= value <= (110 if self.enhanced_power else 100):
                return c + b"?"
            old = self.power if c == b"@" else self.power_b
            if self.armed and value != old:
                rate = self.power_up_s_per_pct if value > old else self.power_down_s_per_pct
                self._charged_at = max(self._charged_at, t + abs(value - old) * rate)
            if c == b"@":
                self.power = value
            else:
                self.power_b = value
            return c + prior
        if c == b"C":
            if value == 0 and self.armed:
                return self._refuse(c, t, "simultaneous discharge only in standby")
            self.interval_ms = value
            return c + prior
        # Rapid² train settings
        if t < self._recharged_at and self.repetitive:
            return self._refuse(c, t, "train running or waiting after a train")
        rapid = bytes([self.rapid_status_byte(t)])
        if c == b"[" and (value == 0 or not self.repetitive):
            if self.armed:
                return self._refuse(c, t, "mode change only in standby")
            if value and self.enhanced_power:
                return self._refuse(c, t, "repetitive mode not in enhanced power mode")
            self.repetitive = value != 0
            if value:
                self.duration_tenths = value
            return c + prior + rapid
        if not self.repetitive:
            return self._refuse(c, t, "single-pulse mode")
        limits = {b"B": (1, 1000), b"D": (1, 6000), b"[": (1, 9999 if self.version >= (9,) else 999)}[c]
        if not limits[0] <= value <= limits[1]:
            return c + b"?"
        if c == b"B":
            self.frequency_tenths = value
        elif c == b"D":
            self.n_pulses = value
        else:
            self.duration_tenths = value
        return c + prior + rapid

    # ------------------------------------------------------------------ journal
    def describe(self, command: bytes) -> str:
        """What a complete frame asks for, in words (the state before it decides remote on / keep-alive)."""
        c, data = command[:1], command[1:-1]
        text = _describe(c, data, self.remote)
        if command[-1] != checksum(command[:-1]):
            text += " (bad CRC)"
        return text


def _describe(c: bytes, data: bytes, remote: bool) -> str:
    fixed = {b"Q": "keep-alive" if remote else "remote on", b"R": "remote off", b"J": "query parameters",
             b"I": "query error code", b"\\": "query parameters", b"Y": "high-resolution interval on",
             b"Z": "high-resolution interval off", b"X": "query system mode", b"F": "query coil temperature",
             b"N": "query software version", b"x": "query system status", b"o": "query charge delay",
             b"^": "enhanced power mode on", b"_": "enhanced power mode off", b"b": "ignore coil interlock switch"}
    if c in fixed:
        return fixed[c]
    if c == b"E":
        return {b"A": "disarm", b"B": "arm", b"H": "fire"}.get(data, f"E{data.decode('ascii', 'replace')}")
    if not data.isdigit():
        return f"{c.decode('ascii', 'replace')} with bad data {data!r}"
    value = int(data)
    if c == b"@":
        return f"set power {value}"
    if c == b"A":
        return f"set power B {value}"
    if c == b"C":
        return f"set interval {value} ms"
    if c == b"B":
        return f"set frequency {value / 10:g} Hz"
    if c == b"D":
        return f"set pulses {value}"
    if c == b"[":
        return "single-pulse mode" if value == 0 else f"set train duration {value / 10:g} s"
    if c == b"n":
        return f"set charge delay {value} ms"
    return f"command {c!r} {data!r}"


def create(**options) -> VirtualMagstim:
    """A virtual Magstim (not yet started): ``create(model="200"|"bistim"|"rapid", ...)``."""
    return VirtualMagstim(**options)
