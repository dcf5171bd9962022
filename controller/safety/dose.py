"""What one stimulation command delivers: pulses, charge, and when its pulses happen.

Pure arithmetic on a device's settings (SI units, the keys of a stimulator 'set'
command), shared by the load-time check, the governor and the ledger, so that the
number that is checked is the number that is recorded.

* fire: ``n_pulses`` pulses (default 1) at ``frequency_hz``; a train (n > 1) lasts n / f
  (counted to one period after the last pulse, the longer of the two conventions).
* start: continuous stimulation for ``duration_s``. With a pulse width and a frequency
  it is a pulse train (``ceil(f * d)`` pulses); without a pulse width it is a waveform
  (tACS: each cycle counts as one pulse of two phases of ``I / (2 f)`` each, the
  rectangular bound of a sine); at frequency 0 it is direct current (one phase of
  ``I * d``). The whole planned dose is counted when it starts.
* charge = pulses x phases x current x pulse width; phases default to 2 (biphasic)
  when unknown, which never undercounts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

FIRE = "fire"
START = "start"

# Device settings a 'set' command may change (SI units), per-request parameters, and
# parameters with no bearing on safety that are passed through unchecked.
SETTINGS = ("intensity_pct", "current_a", "frequency_hz", "pulse_width_s", "phases", "n_pulses")
PER_REQUEST = ("duration_s", "ramp_s")
NEUTRAL = ("phase_deg",)
PARAMS = SETTINGS + PER_REQUEST + NEUTRAL
DEFAULT_PHASES = 2

UP, DOWN, EXACT = "up", "down", "exact"


@dataclass(frozen=True)
class Totals:
    """Pulses and charge (C, absolute, all phases) accumulated somewhere."""

    pulses: float = 0
    charge_c: float = 0.0

    def __add__(self, other: Totals) -> Totals:
        return Totals(self.pulses + other.pulses, self.charge_c + other.charge_c)


@dataclass(frozen=True)
class Delivery:
    """What a fire or start will deliver, times relative to its start (seconds)."""

    kind: str
    pulses: float  # whole pulses, except with rounding=EXACT
    charge_c: float | None  # None when the current or pulse width is unknown
    charge_per_phase_c: float | None
    duration_s: float  # train duration n/f, continuous duration, 0 for one pulse
    last_pulse_s: float  # offset of the last pulse
    end_s: float  # offset of the end of delivery
    train: bool  # more than one pulse, or continuous
    frequency_hz: float | None
    missing: tuple[str, ...] = ()  # settings required to know the timing that are not set

    @property
    def totals(self) -> Totals:
        return Totals(self.pulses, self.charge_c or 0.0)


def _count(x: float, rounding: str) -> float:
    if rounding == EXACT:
        return x
    r = round(x, 9)  # f*d = 49.99999999999 is 50 pulses, not 51
    return float(math.ceil(r) if rounding == UP else math.floor(r))


def delivery(kind: str, settings: Mapping[str, float], duration_s: float | None = None, *, rounding: str = UP) -> Delivery:
    """The delivery of a 'fire' (settings only) or a 'start' lasting ``duration_s``."""
    current = settings.get("current_a")
    width = settings.get("pulse_width_s")
    phases = settings.get("phases") or DEFAULT_PHASES
    freq = settings.get("frequency_hz")
    per_phase = current * width if current is not None and width is not None else None
    if kind == FIRE:
        n: float = int(settings.get("n_pulses") or 1)
        if n == 1:
            charge = None if per_phase is None else phases * per_phase
            return Delivery(FIRE, 1, charge, per_phase, 0.0, 0.0, 0.0, False, freq)
        if freq is None or freq <= 0:
            charge = None if per_phase is None else n * phases * per_phase
            return Delivery(FIRE, n, charge, per_phase, math.inf, math.inf, math.inf, True, freq, ("frequency_hz",))
        charge = None if per_phase is None else n * phases * per_phase
        return Delivery(FIRE, n, charge, per_phase, n / freq, (n - 1) / freq, n / freq, True, freq)
    if kind != START:
        raise ValueError(f"no delivery for a {kind!r} command")
    if duration_s is None or not duration_s > 0:
        raise ValueError("a start needs a positive duration_s")
    d = duration_s
    if freq is None:
        return Delivery(START, 0, None, None, d, d, d, True, None, ("frequency_hz",))
    if freq <= 0:  # direct current: one phase lasting the whole duration
        q = None if current is None else current * d
        return Delivery(START, 0, q, q, d, d, d, True, 0.0)
    n = _count(freq * d, rounding)
    if width is not None:  # pulse train
        charge = None if per_phase is None else n * phases * per_phase
        last = max(0.0, (math.ceil(round(freq * d, 9)) - 1) / freq)
        return Delivery(START, n, charge, per_phase, d, min(last, d), d, True, freq)
    # waveform (tACS): two phases of I/(2f) per cycle
    q_phase = None if current is None else current / (2 * freq)
    charge = None if q_phase is None else n * 2 * q_phase
    return Delivery(START, n, charge, q_phase, d, d, d, True, freq)


def shannon_k(charge_per_phase_c: float, area_m2: float) -> float:
    """Shannon (1992) k = log10(D) + log10(Q), D in uC/cm2 per phase, Q in uC per phase."""
    q_uc = charge_per_phase_c * 1e6
    if q_uc <= 0:
        return -math.inf
    d_uc_cm2 = q_uc / (area_m2 * 1e4)
    return math.log10(d_uc_cm2) + math.log10(q_uc)


def charge_density(charge_per_phase_c: float, area_m2: float) -> float:
    """Charge per phase over the electrode area, C/m2 (1 uC/cm2 = 0.01 C/m2)."""
    return charge_per_phase_c / area_m2
