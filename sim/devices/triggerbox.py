"""A virtual TTL trigger box on a pseudo-terminal: what the stimulator's trigger input would see.

The box has no replies: each byte received is the new state of the 8 output lines, held
until the next byte. The device logs every byte with its LSL arrival time and rebuilds the
pulses (rising edge time, code, width), so a test can check what the stimulator received.
Widths are arrival-time differences of the bytes that raised and lowered the line: they
include the pseudo-terminal's scheduling jitter, as a real USB link adds its own.

Failure modes:
- ``disconnect()``: the trigger cable is pulled; the port still accepts writes, nothing arrives.
- ``unplug()`` / ``faults.unplug_on_code``: the USB device vanishes (right after a code byte, to
  cut a pulse in the middle); from then on every write to the port fails with an I/O error.
- a line left high longer than ``stuck_limit_s`` is reported in ``stuck_high``.
``plug()`` (link.py) brings an unplugged box back on a new pseudo-terminal.

Journal (``note``, see link.py): every byte as a command: "pulse code N" (rising edge), "low" (falling
edge, with the width of the pulse it ended), "code N (was M)", "unchanged N"; a stuck line as an event.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.devices.link import PtyDevice


@dataclass(frozen=True)
class LineByte:
    t: float  # LSL arrival time
    value: int


@dataclass(frozen=True)
class Pulse:
    t_rise: float
    code: int
    width_s: float | None  # None while the line is still high
    ended_by: int | None = None  # the byte that ended it (0, or another code)


@dataclass(frozen=True)
class StuckHigh:
    t_rise: float
    code: int
    t_detected: float  # when the line had been high longer than the limit


@dataclass
class TriggerBoxFaults:
    unplug_on_code: bool = False  # vanish right after the next non-zero byte (mid-pulse)


class VirtualTriggerBox(PtyDevice):
    kind = "triggerbox"

    def __init__(self, stuck_limit_s: float = 0.25) -> None:
        super().__init__()
        self.stuck_limit_s = stuck_limit_s
        self.faults = TriggerBoxFaults()
        self.line = 0
        self.unplugged = False
        self._bytes: list[LineByte] = []
        self._pulses: list[Pulse] = []
        self._stuck: list[StuckHigh] = []
        self._rise: tuple[float, int] | None = None  # the open pulse
        self._stuck_reported = False

    # -------------------------------------------------------------- observations
    @property
    def bytes_received(self) -> list[LineByte]:
        with self._lock:
            return list(self._bytes)

    @property
    def pulses(self) -> list[Pulse]:
        """Completed pulses, then the open one (width None) if the line is high now."""
        with self._lock:
            out = list(self._pulses)
            if self._rise is not None:
                out.append(Pulse(self._rise[0], self._rise[1], None))
            return out

    @property
    def stuck_high(self) -> list[StuckHigh]:
        with self._lock:
            return list(self._stuck)

    # -------------------------------------------------------------- protocol
    def on_bytes(self, data: bytes, t: float) -> None:
        with self._lock:
            meanings = [self._apply(value, t) for value in data]
        for value, meaning in zip(data, meanings, strict=True):
            self.note(t, "command", meaning, bytes([value]))
        if self.faults.unplug_on_code and any(data):
            self.unplug()

    def _apply(self, value: int, t: float) -> str:
        """Apply one line byte; returns what it meant."""
        self._bytes.append(LineByte(t, value))
        if value == self.line:
            return f"unchanged {value}" if value else "low (unchanged)"
        ended = ""
        if self._rise is not None:  # the open pulse ends (back to 0, or straight to another code)
            t_rise, code = self._rise
            self._pulses.append(Pulse(t_rise, code, t - t_rise, ended_by=value))
            self._rise = None
            ended = f"code {code} lasted {(t - t_rise) * 1000:.1f} ms"
        if value != 0:
            self._rise = (t, value)
            self._stuck_reported = False
        previous, self.line = self.line, value
        if value == 0:
            return f"low ({ended})" if ended else "low"
        if previous == 0:
            return f"pulse code {value}"
        return f"code {value} (was {previous}; {ended})" if ended else f"code {value} (was {previous})"

    def tick(self, t: float) -> None:
        stuck = None
        with self._lock:
            if self._rise is not None and not self._stuck_reported and t - self._rise[0] > self.stuck_limit_s:
                stuck = StuckHigh(self._rise[0], self._rise[1], t)
                self._stuck.append(stuck)
                self._stuck_reported = True
        if stuck is not None:
            self.note(t, "event", f"line stuck high: code {stuck.code} for more than {self.stuck_limit_s:g} s")


def create(**options) -> VirtualTriggerBox:
    """A virtual trigger box (not yet started); options: stuck_limit_s."""
    return VirtualTriggerBox(**options)
