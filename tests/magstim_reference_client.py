"""An independent Magstim client for tests, written from the protocol documents, not from drivers/ or sim/.

It shares no code with ``drivers/magstim.py`` or ``sim/devices/magstim.py``: its own CRC, its own
command table and reply lengths, its own decoding. Sources (facts only):
- Magstim, "200² / Bistim² Host Interface Communication Protocol" and "Rapid² Host Interface
  Communication Protocol" Rev 5.1 (the PDFs kept in github.com/cboulay/magstim_python): framing, CRC,
  the frames with their CRC letters, status bytes, reply layouts, ``ND`` -> ``NV9.0``.
- cboulay/magstim_python README: BiStim² ``X@g`` system mode (reply ``X`` + status + mode character).
- MagPy (github.com/nicolasmcnair/magpy, ``magpy/magstim.py``): ``F@`` coil temperature (9 bytes),
  charge delay ``n``/``o@`` and the reply lengths by Rapid² software version.

The client reads a reply as the documents describe it: a lone ``?`` is an unknown command; ``?`` or
``S`` in byte 1 is followed by the CRC only; the version reply runs to a NUL, then the CRC; every
other reply has the length of ``reply_length``.
"""

from __future__ import annotations

from dataclasses import dataclass

import serial


def crc(data: bytes) -> bytes:
    """Sum of the bytes, lower 8 bits, bit-inverted (both documents, section "Checksum (CRC) Calculation")."""
    return bytes([0xFF - (sum(data) % 256)])


def frame(body: bytes) -> bytes:
    return body + crc(body)


# Frames as the documents print them (command, padding or data, CRC character).
DOCUMENTED_FRAMES = {
    b"Q@": b"Q@n",  # enable remote control (200²/BiStim² 4.5; Rapid² before V9: 6.5.2)
    b"R@": b"R@m",  # disable remote control
    b"Y@": b"Y@f",  # BiStim² high-resolution interval on
    b"Z@": b"Z@e",  # BiStim² high-resolution interval off
    b"J@": b"J@u",  # get parameters (200²/BiStim²)
    b"\\@": b"\\@c",  # Rapid² get parameters
    b"^@": b"^@a",  # Rapid² enhanced power on
    b"_@": b"_@`",  # Rapid² enhanced power off
    b"b@": b"b@]",  # Rapid² ignore coil interlock switch
    b"ND": b"NDm",  # Rapid² software version ("type in 'NDm'")
    b"I@": b"I@v",  # Rapid² error code
    b"x@": b"x@G",  # Rapid² system status (V9+)
    b"@050": b"@050*",  # set power 50 % (the CRC example of both documents)
    b"X@": b"X@g",  # BiStim² system mode (cboulay README)
}

# Instrument status bits (both documents, "Instrument Status Byte Format").
STATUS_BITS = ("standby", "armed", "ready", "coil_present", "replace_coil", "error_present", "error_fatal", "remote")
# Rapid² status bits (Rapid² section 8).
RAPID_BITS = ("enhanced_power", "train", "wait", "single_pulse", "hv_psu", "coil_ready", "theta_psu",
              "modified_coil_algorithm")
# Extended instrument status, least significant byte (Rapid² section 10; bit 2 from MagPy).
EXTENDED_BITS = ("plus1_module", "special_trigger_mode", "charge_delay_set")

SYSTEM_MODES = {"0": "single stimulator", "1": "simultaneous discharge", "2": "BiStim low resolution",
                "3": "independent triggering", "4": "BiStim high resolution"}


def bits(byte: int, names: tuple[str, ...]) -> dict[str, bool]:
    return {name: bool(byte >> i & 1) for i, name in enumerate(names)}


def reply_length(command: bytes, model: str, version: tuple[int, ...]) -> int:
    """Length of a successful reply to ``command`` (its first byte) for ``model`` at software ``version``."""
    c = command[:1]
    if c == b"\\":
        return 24 if version >= (9,) else 22 if version >= (7,) else 21
    if c == b"n":
        return 6 if version >= (10,) else 4
    if c == b"o":
        return 8 if version >= (10,) else 7
    fixed = {b"J": 12, b"F": 9, b"I": 6, b"X": 4, b"x": 6, b"^": 4, b"_": 4}
    if c in fixed:
        return fixed[c]
    if model == "rapid" and c in (b"B", b"D", b"["):
        return 4
    return 3  # Q, R, E, @, A, C, Y, Z, b


@dataclass(frozen=True)
class Reply:
    command: bytes  # the frame sent
    raw: bytes  # every byte read

    @property
    def unknown_command(self) -> bool:
        return self.raw == b"?"

    @property
    def error(self) -> str | None:
        """``"invalid data"`` / ``"conflict"`` for ``?`` / ``S`` in byte 1, ``"unknown command"``, else None."""
        if self.unknown_command:
            return "unknown command"
        return {b"?": "invalid data", b"S": "conflict"}.get(self.raw[1:2])

    @property
    def crc_ok(self) -> bool:
        return len(self.raw) >= 2 and crc(self.raw[:-1]) == self.raw[-1:]

    @property
    def status(self) -> dict[str, bool]:
        return bits(self.raw[1], STATUS_BITS)

    @property
    def rapid(self) -> dict[str, bool]:
        return bits(self.raw[2], RAPID_BITS)


class ReferenceClient:
    """Sends documented frames over a serial port and reads each reply by the documented rules."""

    def __init__(self, port: str, model: str, version: tuple[int, ...] = (9, 0), timeout: float = 1.0):
        self.model, self.version = model, version
        self.port = serial.serial_for_url(port, baudrate=9600, bytesize=8, parity="N", stopbits=1, timeout=timeout)

    def close(self) -> None:
        self.port.close()

    def send(self, body: bytes, *, raw_frame: bytes | None = None) -> Reply:
        """Frame ``body`` (or send ``raw_frame`` as it is) and read the reply."""
        sent = raw_frame if raw_frame is not None else frame(body)
        self.port.reset_input_buffer()
        self.port.write(sent)
        self.port.flush()
        return Reply(sent, self._read(sent))

    def _read(self, sent: bytes) -> bytes:
        raw = self.port.read(1)
        if raw in (b"", b"?"):
            return raw
        raw += self.port.read(1)
        if raw[1:2] in (b"?", b"S"):
            return raw + self.port.read(1)
        if sent[:1] == b"N":
            while raw[-1:] not in (b"\x00", b"") and len(raw) < 32:
                raw += self.port.read(1)
            return raw + self.port.read(1)
        return raw + self.port.read(reply_length(sent, self.model, self.version) - 2)

    def silent(self, sent: bytes, wait_s: float = 0.3) -> bytes:
        """Send bytes that should get no answer; returns whatever arrived within ``wait_s``."""
        self.port.reset_input_buffer()
        self.port.write(sent)
        timeout, self.port.timeout = self.port.timeout, wait_s
        try:
            return self.port.read(64)
        finally:
            self.port.timeout = timeout

    # ------------------------------------------------------------------ commands (both documents)
    def remote_control(self, enable: bool = True, unlock_code: str | None = None) -> Reply:
        if not enable:
            return self.send(b"R@")
        return self.send(b"Q" + (unlock_code.encode("latin-1") if unlock_code else b"@"))

    def arm(self) -> Reply:
        return self.send(b"EB")  # mode byte 0x42: bit 1 "Set stimulator in Armed mode"

    def disarm(self) -> Reply:
        return self.send(b"EA")  # mode byte 0x41: bit 0 "Set stimulator in Stopped mode"

    def fire(self) -> Reply:
        return self.send(b"EH")  # mode byte 0x48: bit 3 "Trigger stimulator"

    def set_power(self, percent: int) -> Reply:
        return self.send(b"@" + str(percent).zfill(3).encode())

    def set_power_b(self, percent: int) -> Reply:
        return self.send(b"A" + str(percent).zfill(3).encode())

    def set_interval(self, units: int) -> Reply:
        """ms in low resolution, 0.1 ms in high resolution."""
        return self.send(b"C" + str(units).zfill(3).encode())

    def high_resolution(self, enable: bool) -> Reply:
        return self.send(b"Y@" if enable else b"Z@")

    def get_parameters(self) -> tuple[Reply, dict]:
        if self.model != "rapid":
            r = self.send(b"J@")
            d = r.raw[2:-1].decode("ascii")
            return r, {"power_a": int(d[0:3]), "power_b": int(d[3:6]), "interval": int(d[6:9])}
        r = self.send(b"\\@")
        d = r.raw[3:-1].decode("ascii")
        if self.version >= (9,):
            widths = (3, 4, 5, 4, 4)
        else:
            widths = (3, 4, 4, 3, 4 if self.version >= (7,) else 3)
        values, i = [], 0
        for w in widths:
            values.append(int(d[i:i + w]))
            i += w
        power, f, n, duration, wait = values
        return r, {"power": power, "frequency_hz": f / 10, "n_pulses": n, "duration_s": duration / 10,
                   "wait_s": wait / 10}

    def get_temperature(self) -> tuple[Reply, tuple[float, float]]:
        r = self.send(b"F@")
        d = r.raw[2:-1].decode("ascii")
        return r, (int(d[0:3]) / 10, int(d[3:6]) / 10)

    def get_error_code(self) -> tuple[Reply, str]:
        r = self.send(b"I@")
        return r, r.raw[2:5].decode("ascii")

    def get_system_mode(self) -> tuple[Reply, str]:
        r = self.send(b"X@")
        return r, SYSTEM_MODES.get(chr(r.raw[2]), f"code {r.raw[2]:#x}")

    # ------------------------------------------------------------------ Rapid²
    def get_version(self) -> tuple[Reply, tuple[int, ...]]:
        r = self.send(b"ND")
        text = r.raw[1:-2].decode("ascii")  # "V9.0": the reply up to the NUL
        return r, tuple(int(x) for x in text.lstrip("V").split("."))

    def get_system_status(self) -> tuple[Reply, dict[str, bool]]:
        r = self.send(b"x@")
        word = r.raw[3] << 8 | r.raw[4]  # most significant byte first (Rapid² 6.14)
        return r, bits(word & 0xFF, EXTENDED_BITS)

    def set_frequency(self, hz: float) -> Reply:
        return self.send(b"B" + str(round(hz * 10)).zfill(4).encode())

    def set_npulses(self, n: int) -> Reply:
        return self.send(b"D" + str(n).zfill(5 if self.version >= (9,) else 4).encode())

    def set_duration(self, seconds: float) -> Reply:
        return self.send(b"[" + str(round(seconds * 10)).zfill(4 if self.version >= (9,) else 3).encode())

    def rtms_mode(self, enable: bool) -> Reply:
        """A duration of 1 s enters train mode, 0 s returns to single-pulse mode (Rapid² 5.6 b, g)."""
        return self.set_duration(1 if enable else 0)

    def enhanced_power(self, enable: bool) -> Reply:
        return self.send(b"^@" if enable else b"_@")

    def ignore_coil_interlock(self) -> Reply:
        return self.send(b"b@")

    def set_charge_delay(self, ms: int) -> Reply:
        return self.send(b"n" + str(ms).zfill(5 if self.version >= (10,) else 4).encode())

    def get_charge_delay(self) -> tuple[Reply, int]:
        r = self.send(b"o@")
        return r, int(r.raw[2:-1].decode("ascii"))
