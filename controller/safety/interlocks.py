"""Interlock sources: the names under which faults inhibit stimulation, and small helpers
that turn a detected fault into ``Governor.inhibit(source, reason)``.

A source name says what raised the inhibition, so that clearing one fault does not clear
another: ``input_stall:eeg``, ``nonfinite:eeg``, ``artifact:emg``, ``device:tms`` (names from controller/safety/faults.py).
The governor raises ``clock``, ``latency``, ``input_stall:<input>`` and ``ledger`` itself;
``estop`` comes from :meth:`Governor.estop`. Every inhibition stays until ``clear``.
"""

from __future__ import annotations

import numpy as np

from controller.safety.faults import FaultKind
from controller.safety.governor import (
    CLOCK_SOURCE,
    ESTOP_SOURCE,
    LATENCY_SOURCE,
    LEDGER_SOURCE,
    STALL_PREFIX,
    Governor,
)

NONFINITE_PREFIX = FaultKind.NONFINITE.value + ":"
ARTIFACT_PREFIX = FaultKind.ARTIFACT.value + ":"
DEVICE_ERROR_PREFIX = FaultKind.DEVICE.value + ":"  # the same source the dispatcher raises on a driver error
WATCHDOG_PREFIX = FaultKind.WATCHDOG.value + ":"

__all__ = [
    "ARTIFACT_PREFIX", "CLOCK_SOURCE", "DEVICE_ERROR_PREFIX", "ESTOP_SOURCE", "LATENCY_SOURCE", "LEDGER_SOURCE",
    "NONFINITE_PREFIX", "STALL_PREFIX", "WATCHDOG_PREFIX", "artifact", "device_error", "nonfinite_input",
    "watchdog_missed",
]


def nonfinite_input(governor: Governor, input_name: str, chunk: np.ndarray) -> bool:
    """Inhibit when ``chunk`` holds NaN or inf (checked vectorised); True if it did."""
    values = np.asarray(chunk)
    finite = np.isfinite(values)
    if finite.all():
        return False
    bad = int(values.size - np.count_nonzero(finite))
    governor.inhibit(NONFINITE_PREFIX + input_name, f"input {input_name}: {bad} of {values.size} values are NaN or inf")
    return True


def artifact(governor: Governor, feature: str, value: float, limit: float) -> bool:
    """Inhibit while an artifact feature is over its limit; True if it did."""
    if value <= limit:
        return False
    governor.inhibit(ARTIFACT_PREFIX + feature, f"artifact feature {feature} = {value:.6g} > limit {limit:.6g}")
    return True


def device_error(governor: Governor, device: str, error: BaseException | str) -> None:
    """A driver raised (no reply, bad CRC, error reply, link lost)."""
    governor.inhibit(DEVICE_ERROR_PREFIX + device, f"device {device}: {error}")


def watchdog_missed(governor: Governor, what: str, late_s: float) -> None:
    """A keep-alive or loop watchdog was not served in time."""
    governor.inhibit(WATCHDOG_PREFIX + what, f"watchdog {what} missed by {late_s * 1e3:.1f} ms")
