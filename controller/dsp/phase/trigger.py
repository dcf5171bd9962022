"""When to fire a phase-locked pulse, given a stream of phase estimates.

Each estimate predicts the next target-phase crossing. The trigger commits to a crossing only
when waiting for the next estimate would be too late to send the command in time, so every pulse
uses the freshest prediction available. A pulse is refused when the instantaneous amplitude is
below the gate (no clear rhythm, phase meaningless) or when it would come sooner than the minimum
inter-pulse interval after the previous one. This decides timing only; the safety governor still
checks every command against the site limits.
"""

from __future__ import annotations

import math

from controller.dsp.phase.tracker import PhaseEstimate


class PhaseTrigger:
    """Pulse scheduler: ``decide(estimate)`` returns the LSL time the pulse should land at, or None.

    ``min_interval_s`` between pulses; ``amplitude_threshold`` (signal units, e.g. the median
    amplitude of a baseline); ``device_delay_s`` from sending the command to the pulse;
    ``hop_s`` the time between estimates (the tracker's evaluation interval).
    """

    __slots__ = ("min_interval_s", "amplitude_threshold", "device_delay_s", "hop_s", "last_pulse_time")

    def __init__(
        self, *, min_interval_s: float, hop_s: float, amplitude_threshold: float = 0.0, device_delay_s: float = 0.0
    ) -> None:
        if min_interval_s < 0 or hop_s <= 0 or device_delay_s < 0:
            raise ValueError(
                f"phase trigger: need min_interval_s >= 0 ({min_interval_s}), hop_s > 0 ({hop_s}), "
                f"device_delay_s >= 0 ({device_delay_s})"
            )
        self.min_interval_s = float(min_interval_s)
        self.amplitude_threshold = float(amplitude_threshold)
        self.device_delay_s = float(device_delay_s)
        self.hop_s = float(hop_s)
        self.last_pulse_time = -math.inf

    def reset(self) -> None:
        self.last_pulse_time = -math.inf

    def decide(self, est: PhaseEstimate) -> float | None:
        """The pulse time to schedule now (send at ``pulse - device_delay_s``), or None to keep waiting."""
        t = est.next_target_time
        if not (est.amplitude >= self.amplitude_threshold and math.isfinite(t)):
            return None
        send = t - self.device_delay_s
        if send < est.source_time:  # the prediction is already too late to honour
            return None
        if send >= est.source_time + self.hop_s:  # the next estimate can still make it: wait for it
            return None
        if t - self.last_pulse_time < self.min_interval_s:
            return None
        self.last_pulse_time = t
        return t
