"""The signal's clock: how much recording time an LSL second carries.

Rules (``for`` durations, refractory periods, episode gaps, interlock clearing) and the
timeline measure the signal's time, so a protocol means the same thing however fast its
input arrives. A live amplifier carries one second of signal per second (speed 1: the signal
clock IS the LSL clock and nothing is converted). A recording replayed at speed X is stamped
on the LSL clock as it is sent, so X seconds of recording pass per LSL second: a rule that
waits ``for 1 s`` must wait 1/X LSL seconds. The replayer states its speed in the stream's
description (``desc/replay/speed``); ``controller.inputs.lsl.resolve.replay_speed`` reads it.

Times are anchored at the session start ``t0`` (LSL): ``signal(t) = t0 + (t - t0) * speed``,
so signal and LSL times agree at the start and journal times stay on the LSL clock.
"""

from __future__ import annotations

import math


class SignalClock:
    __slots__ = ("speed", "anchor")

    def __init__(self, speed: float = 1.0) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"signal speed must be a positive number, got {speed}")
        self.speed = float(speed)
        self.anchor: float | None = None

    @property
    def real_time(self) -> bool:
        return self.speed == 1.0

    def start(self, t: float) -> None:
        """Anchor at the session start (LSL time ``t``); the first call wins."""
        if self.anchor is None:
            self.anchor = t

    def signal(self, t: float) -> float:
        """Signal time of LSL time ``t``."""
        if self.speed == 1.0 or self.anchor is None:
            return t
        return self.anchor + (t - self.anchor) * self.speed

    def lsl(self, s: float) -> float:
        """LSL time of signal time ``s`` (inverse of ``signal``)."""
        if self.speed == 1.0 or self.anchor is None:
            return s
        return self.anchor + (s - self.anchor) / self.speed


def common_speed(speeds: dict[str, float]) -> float:
    """The one speed of a session's inputs; inputs replayed at different speeds cannot share rules."""
    distinct = sorted(set(speeds.values()))
    if len(distinct) > 1:
        listed = ", ".join(f"{name} x{s:g}" for name, s in speeds.items())
        raise ValueError(f"inputs arrive at different speeds ({listed}); replay them at one speed")
    return distinct[0] if distinct else 1.0
