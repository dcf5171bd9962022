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
"""

from __future__ import annotations

import os
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
        self._keep_alive_fd: int | None = None

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
            for value in data:
                self._apply(value, t)
        if self.faults.unplug_on_code and any(data):
            self.unplug()

    def _apply(self, value: int, t: float) -> None:
        self._bytes.append(LineByte(t, value))
        if value == self.line:
            return
        if self._rise is not None:  # the open pulse ends (back to 0, or straight to another code)
            t_rise, code = self._rise
            self._pulses.append(Pulse(t_rise, code, t - t_rise, ended_by=value))
            self._rise = None
        if value != 0:
            self._rise = (t, value)
            self._stuck_reported = False
        self.line = value

    def tick(self, t: float) -> None:
        with self._lock:
            if self._rise is not None and not self._stuck_reported and t - self._rise[0] > self.stuck_limit_s:
                self._stuck.append(StuckHigh(self._rise[0], self._rise[1], t))
                self._stuck_reported = True

    # -------------------------------------------------------------- faults
    def unplug(self) -> None:
        """The USB device disappears: the pty master is closed, so writes to the port fail (EIO).

        The master's descriptor number is atomically re-pointed (dup2) at the read end of a pipe
        that never receives data, so the reader thread keeps polling a valid, silent descriptor.
        """
        if self.unplugged:
            return
        read_end, write_end = os.pipe()
        os.dup2(read_end, self._master)  # closes the pty master: the slave now gets EIO
        os.close(read_end)
        self._keep_alive_fd = write_end
        self.unplugged = True
        self.connected = False

    def stop(self) -> None:
        super().stop()
        if self._keep_alive_fd is not None:
            os.close(self._keep_alive_fd)
            self._keep_alive_fd = None


def create(**options) -> VirtualTriggerBox:
    """A virtual trigger box (not yet started); options: stuck_limit_s."""
    return VirtualTriggerBox(**options)
