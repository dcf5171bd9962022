"""Checking stimulation parameters against a device's site limits (no history, no clock).

Used twice with the same code: by the protocol loader on the worst-case request each rule
can produce (:func:`check_request`), and by the governor on every command at run time
(which adds history: intervals, ramps, doses so far). Every violation names the limit
(the key under ``limits:`` in the site file), the value asked for, and the limit's value.

Comparisons allow one part in 10^9 (float rounding only): 80 % is allowed at 80 %.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

from controller.lang import units
from controller.safety import dose as dosing
from controller.safety import quantities as q
from controller.safety.dose import Delivery, Totals
from controller.safety.site import DeviceConfig, Site
from controller.safety.train_table import MOTOR_THRESHOLD

REL_TOL = 1e-9  # relative tolerance of "at the limit"
TIME_TOL = 1e-9  # seconds, for intervals computed from clock readings

ABOVE = ">"  # the value is above a maximum
BELOW = "<"  # the value is below a minimum
STATE = ""  # not a number: a state (not armed, inhibited, unknown setting ...)

# Refusal reasons that are not a site limit.
DEVICE = "device"  # unknown device
KIND = "kind"  # unknown command kind
PARAMETER = "parameter"  # invalid or unknown parameter
FIXED = "fixed_settings"  # asks to change a setting fixed on the stimulator
OPERATOR = "operator"  # arming is an operator act
ARMED = "armed"  # the device is not armed
INHIBITED = "inhibited"  # an interlock is active
CLOCK = "clock"  # the clock went back / source time in the future
LATENCY = "max_loop_latency"  # the controller's delay (data arrival -> command) is over its budget
END_TO_END = "max_end_to_end_latency"  # detecting sample -> command (incl. the amplifier's block) is over the bound
BUSY = "busy"  # a train or continuous stimulation is in progress
LEDGER = "ledger"  # the dose could not be recorded
INTERNAL = "internal"  # the governor failed: it fails closed
STATE_REASONS = frozenset({DEVICE, KIND, PARAMETER, FIXED, OPERATOR, ARMED, INHIBITED, CLOCK, BUSY, LEDGER, INTERNAL})

LIMITS = (
    "intensity_max", "current_max", "frequency_max", "pulse_width_max", "pulses_per_train_max",
    "train_duration_max", "train_table", "motor_threshold_min", "min_inter_train", "min_pulse_interval",
    "pulses_per_session_max", "pulses_per_day_max", "charge_per_phase_max", "charge_per_session_max",
    "charge_per_day_max", "charge_density_max", "shannon_k_max", "ramp_rate_max", "blanking",
)
ALL_REASONS = frozenset(LIMITS) | STATE_REASONS | {LATENCY, END_TO_END}


@dataclass(frozen=True)
class Violation:
    """One reason to refuse: which limit, the value asked for, and the limit's value."""

    limit: str  # a key of LIMITS, or one of the state reasons above
    text: str  # "tms intensity 85 % > site limit 80 % (intensity_max)"
    device: str | None = None
    value: float | None = None
    limit_value: float | None = None
    relation: str = STATE  # ABOVE, BELOW or STATE
    family: str | None = None  # unit family of value/limit_value, for formatting
    needs: str | None = None  # for "setting not known" refusals: the missing setting

    def __str__(self) -> str:
        return self.text


def exceeds(value: float, limit: float) -> bool:
    """value > limit beyond float rounding."""
    return value > limit + REL_TOL * abs(limit)


def short_of(value: float, minimum: float) -> bool:
    """value < minimum beyond float rounding (and beyond TIME_TOL for times)."""
    return value < minimum - max(REL_TOL * abs(minimum), TIME_TOL)


def above(device: str, what: str, value: float, limit_name: str, limit: float, family: str | None) -> Violation:
    return Violation(
        limit_name,
        f"{device} {what} {q.fmt(value, family)} > site limit {q.fmt(limit, family)} ({limit_name})",
        device, value, limit, ABOVE, family,
    )


def below(device: str, what: str, value: float, limit_name: str, minimum: float, family: str | None) -> Violation:
    return Violation(
        limit_name,
        f"{device} {what} {q.fmt(value, family)} < site minimum {q.fmt(minimum, family)} ({limit_name})",
        device, value, minimum, BELOW, family,
    )


def state(reason: str, device: str | None, text: str) -> Violation:
    return Violation(reason, text, device)


def missing(device: str, kind: str, param: str, limit_name: str) -> Violation:
    return Violation(
        limit_name,
        f"{device} {kind} without {param} set (needed to check {limit_name}); send a 'set' first",
        device, needs=param,
    )


def summary(violations: tuple[Violation, ...] | list[Violation]) -> str:
    """All reasons in one line; 'setting not known' refusals for one setting are merged."""
    parts: list[str] = []
    merged: dict[tuple[str | None, str], int] = {}
    groups: list[list[Violation]] = []
    for v in violations:
        if v.needs is None:
            parts.append(v.text)
            continue
        key = (v.device, v.needs)
        if key not in merged:
            merged[key] = len(groups)
            groups.append([v])
            parts.append(f"\0{merged[key]}")
        else:
            groups[merged[key]].append(v)
    out = []
    for part in parts:
        if part.startswith("\0"):
            group = groups[int(part[1:])]
            head = group[0].text.split(" (needed to check ")[0]
            out.append(f"{head} (needed to check {', '.join(v.limit for v in group)}); send a 'set' first")
        else:
            out.append(part)
    return "; ".join(out)


# ----------------------------------------------------------------------------- parameters


def validate_params(device: str, kind: str, params: Mapping[str, object]) -> tuple[dict[str, float], list[Violation]]:
    """Numbers in SI, known keys only: (clean params, problems)."""
    clean: dict[str, float] = {}
    problems: list[Violation] = []
    for key, raw in params.items():
        if key not in dosing.PARAMS:
            problems.append(state(PARAMETER, device, f"{device} {kind} has unknown parameter {key!r}; known: {', '.join(dosing.PARAMS)}"))
            continue
        try:
            if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
                raise TypeError
            value = float(raw)
        except (TypeError, ValueError):
            problems.append(state(PARAMETER, device, f"{device} {kind} parameter {key} must be a number, got {raw!r}"))
            continue
        if not math.isfinite(value) or value < 0:
            problems.append(state(PARAMETER, device, f"{device} {kind} parameter {key} must be a finite number >= 0, got {raw!r}"))
            continue
        if key == "n_pulses" and (value < 1 or not value.is_integer()):
            problems.append(state(PARAMETER, device, f"{device} {kind} parameter n_pulses must be a whole number >= 1, got {raw!r}"))
            continue
        if key == "phases" and value not in (1.0, 2.0):
            problems.append(state(PARAMETER, device, f"{device} {kind} parameter phases must be 1 or 2, got {raw!r}"))
            continue
        clean[key] = value
    return clean, problems


def fixed_conflicts(cfg: DeviceConfig, kind: str, params: Mapping[str, float]) -> list[Violation]:
    """A request may restate a fixed setting, never change it."""
    out = []
    for key, value in params.items():
        if key in cfg.fixed and not math.isclose(value, cfg.fixed[key], rel_tol=REL_TOL, abs_tol=0.0):
            out.append(Violation(
                FIXED,
                f"{cfg.name} {kind} asks {key} {value:g}, but the site fixes it at {cfg.fixed[key]:g} on the stimulator "
                f"(fixed_settings); a command cannot change it",
                cfg.name, value, cfg.fixed[key], STATE,
            ))
    return out


# ----------------------------------------------------------------------------- static limits


def setting_violations(cfg: DeviceConfig, kind: str, settings: Mapping[str, float], delivery: Delivery | None,
                       *, motor_threshold: float | None, complete: bool) -> list[Violation]:
    """Limits on the settings themselves and on one delivery (no history).

    ``complete``: the command stimulates (fire/start), so every setting a configured limit
    needs must be known; for a 'set' only what is known is checked.
    """
    lim, name = cfg.limits, cfg.name
    out: list[Violation] = []

    def need(param: str, limit_name: str) -> float | None:
        value = settings.get(param)
        if value is None and complete:
            out.append(missing(name, kind, param, limit_name))
        return value

    for limit_name, param, what, family in (
        ("intensity_max", "intensity_pct", "intensity", units.PERCENT),
        ("current_max", "current_a", "current", units.CURRENT),
        ("pulse_width_max", "pulse_width_s", "pulse width", units.DURATION),
    ):
        cap = getattr(lim, limit_name)
        if cap is None:
            continue
        if param == "pulse_width_s" and kind == "start" and settings.get(param) is None:
            continue  # a continuous waveform has no pulse width
        value = need(param, limit_name)
        if value is not None and exceeds(value, cap):
            out.append(above(name, what, value, limit_name, cap, family))

    freq = settings.get("frequency_hz")
    if kind == "set":
        at_rate = (settings.get("n_pulses") or 1) > 1
    else:
        at_rate = delivery is not None and delivery.train
    if lim.frequency_max is not None:
        if freq is None and complete and at_rate:
            out.append(missing(name, kind, "frequency_hz", "frequency_max"))
        elif freq is not None and exceeds(freq, lim.frequency_max):
            out.append(above(name, "frequency", freq, "frequency_max", lim.frequency_max, units.FREQUENCY))
    pulsed = kind != "start" or settings.get("pulse_width_s") is not None  # tACS/tDCS waveforms have no pulses
    if lim.min_pulse_interval is not None and freq and at_rate and pulsed:
        if short_of(1.0 / freq, lim.min_pulse_interval):
            out.append(below(name, "pulse interval in the train", 1.0 / freq, "min_pulse_interval", lim.min_pulse_interval, units.DURATION))
    if freq is None and complete and at_rate and lim.frequency_max is None:
        out.append(missing(name, kind, "frequency_hz", "min_pulse_interval" if lim.min_pulse_interval is not None else "train_duration_max"))
    if freq is not None and freq <= 0 and at_rate and kind != "start":
        out.append(state(PARAMETER, name, f"{name} {kind}: a train of {settings.get('n_pulses', 1):g} pulses needs "
                                          f"frequency_hz > 0, got {freq:g}"))

    n = settings.get("n_pulses")
    if kind == "start":  # continuous pulsed stimulation is one long train; a waveform has no pulses
        n = delivery.pulses if pulsed and delivery is not None else None
    if lim.pulses_per_train_max is not None and n is not None and exceeds(n, lim.pulses_per_train_max):
        out.append(above(name, "pulses per train", n, "pulses_per_train_max", lim.pulses_per_train_max, q.COUNT))

    if delivery is not None:
        if delivery.train and math.isfinite(delivery.duration_s):
            out += _train_violations(cfg, kind, settings, delivery, motor_threshold, complete)
        out += _charge_violations(cfg, kind, settings, delivery, complete)
    return out


def _train_violations(cfg: DeviceConfig, kind: str, settings: Mapping[str, float], delivery: Delivery,
                      motor_threshold: float | None, complete: bool) -> list[Violation]:
    lim, name, out = cfg.limits, cfg.name, []
    d = delivery.duration_s
    what = "train duration" if kind != "start" else "continuous stimulation"
    if lim.train_duration_max is not None and exceeds(d, lim.train_duration_max):
        out.append(above(name, what, d, "train_duration_max", lim.train_duration_max, units.DURATION))
    table = lim.train_table
    if table is None:
        return out
    freq, intensity = delivery.frequency_hz, settings.get("intensity_pct")
    if intensity is None or freq is None:
        if complete:
            out.append(missing(name, kind, "intensity_pct" if intensity is None else "frequency_hz", "train_table"))
        return out
    level, unit = intensity, "% MSO"
    if table.relative_to == MOTOR_THRESHOLD:
        mt = motor_threshold if motor_threshold is not None else lim.motor_threshold_min
        if mt is None:
            out.append(Violation(
                "train_table",
                f"{name} train at {intensity:g} % output: the train table is in % of the motor threshold, which is not "
                f"set (and the site gives no motor_threshold_min) (train_table)",
                name,
            ))
            return out
        level, unit = intensity / mt * 100.0, "% MT"
    cell = table.lookup(freq, level)
    if cell is None:
        out.append(Violation(
            "train_table",
            f"{name} train at {freq:g} Hz and {level:.4g} {unit} is beyond the train table (rows up to "
            f"{table.frequencies[-1]:g} Hz, columns up to {table.intensities[-1]:g} {table.unit_label}): no train is allowed there (train_table)",
            name, d, 0.0, ABOVE, units.DURATION,
        ))
    elif exceeds(d, cell.max_duration_s):
        out.append(Violation(
            "train_table",
            f"{name} {what} {q.fmt(d, units.DURATION)} at {freq:g} Hz and {level:.4g} {unit} > site limit "
            f"{q.fmt(cell.max_duration_s, units.DURATION)} (train_table row {cell.frequency_hz:g} Hz, column "
            f"{cell.intensity_pct:g} {table.unit_label})",
            name, d, cell.max_duration_s, ABOVE, units.DURATION,
        ))
    return out


def _charge_violations(cfg: DeviceConfig, kind: str, settings: Mapping[str, float], delivery: Delivery,
                       complete: bool) -> list[Violation]:
    lim, name, out = cfg.limits, cfg.name, []
    qp = delivery.charge_per_phase_c
    if qp is None:
        if complete:
            param = "current_a" if settings.get("current_a") is None else (
                "frequency_hz" if kind == "start" else "pulse_width_s")
            for k in ("charge_per_phase_max", "charge_density_max", "shannon_k_max"):
                if getattr(lim, k) is not None:
                    out.append(missing(name, kind, param, k))
        return out
    if lim.charge_per_phase_max is not None and exceeds(qp, lim.charge_per_phase_max):
        out.append(above(name, "charge per phase", qp, "charge_per_phase_max", lim.charge_per_phase_max, q.CHARGE))
    if lim.electrode_area is not None:
        density = dosing.charge_density(qp, lim.electrode_area)
        if lim.charge_density_max is not None and exceeds(density, lim.charge_density_max):
            out.append(above(name, "charge density per phase", density, "charge_density_max", lim.charge_density_max, q.CHARGE_DENSITY))
        if lim.shannon_k_max is not None:
            shannon = dosing.shannon_k(qp, lim.electrode_area)
            if exceeds(shannon, lim.shannon_k_max):
                out.append(above(name, "Shannon k", shannon, "shannon_k_max", lim.shannon_k_max, q.NUMBER))
    return out


def charge_missing(kind: str, settings: Mapping[str, float]) -> str:
    """Which setting is missing when a delivery's charge cannot be computed."""
    if settings.get("current_a") is None:
        return "current_a"
    if kind == "start":
        return "frequency_hz"
    return "pulse_width_s"


def dose_violations(cfg: DeviceConfig, kind: str, add: Totals, charge_known: bool,
                    session: Totals, day: Totals, settings: Mapping[str, float] | None = None) -> list[Violation]:
    """Would ``add`` on top of the session's and the day's totals pass a cap?"""
    lim, name, out = cfg.limits, cfg.name, []
    for limit_name, prior, what in (
        ("pulses_per_session_max", session.pulses, "pulses this session"),
        ("pulses_per_day_max", day.pulses, "pulses today"),
    ):
        cap = getattr(lim, limit_name)
        if cap is not None and add.pulses > 0 and exceeds(prior + add.pulses, cap):
            out.append(Violation(
                limit_name,
                f"{name} {what} {q.fmt(prior, q.COUNT)} + {q.fmt(add.pulses, q.COUNT)} = "
                f"{q.fmt(prior + add.pulses, q.COUNT)} > site limit {q.fmt(cap, q.COUNT)} ({limit_name})",
                name, prior + add.pulses, cap, ABOVE, q.COUNT,
            ))
    for limit_name, prior, what in (
        ("charge_per_session_max", session.charge_c, "charge this session"),
        ("charge_per_day_max", day.charge_c, "charge today"),
    ):
        cap = getattr(lim, limit_name)
        if cap is None:
            continue
        if not charge_known:
            if add.pulses > 0 or kind == "start":
                out.append(missing(name, kind, charge_missing(kind, settings or {}), limit_name))
            continue
        if add.charge_c > 0 and exceeds(prior + add.charge_c, cap):
            out.append(Violation(
                limit_name,
                f"{name} {what} {q.fmt(prior, q.CHARGE)} + {q.fmt(add.charge_c, q.CHARGE)} = "
                f"{q.fmt(prior + add.charge_c, q.CHARGE)} > site limit {q.fmt(cap, q.CHARGE)} ({limit_name})",
                name, prior + add.charge_c, cap, ABOVE, q.CHARGE,
            ))
    return out


# ----------------------------------------------------------------------------- load-time check


def check_request(site: Site, device: str, params: Mapping[str, object], *, kind: str = "fire",
                  motor_threshold_pct: float | None = None) -> list[Violation]:
    """Every site limit that a request with these (worst-case) parameters would break.

    For the protocol loader: ``params`` are the largest values a rule can ask for, in SI
    (intensity_pct, current_a, frequency_hz, pulse_width_s, phases, n_pulses, and for a
    'start' duration_s and ramp_s). The device's fixed settings are filled in. Dose caps
    are checked for this one request alone (a request that by itself exceeds the session
    or daily cap can never run); intervals and daily totals need history and are the
    governor's job at run time. With a train table in % of the motor threshold and no
    ``motor_threshold_pct``, the site's ``motor_threshold_min`` is the worst case.
    Returns [] when the request is within every limit.
    """
    if device not in site.devices:
        return [state(DEVICE, device, f"no device {device!r} in site {site.name!r}; devices: {', '.join(site.devices)}")]
    if kind not in ("fire", "start", "set"):
        return [state(KIND, device, f"{device}: cannot check a {kind!r} request (fire, start or set)")]
    cfg = site.devices[device]
    clean, out = validate_params(device, kind, params)
    out += fixed_conflicts(cfg, kind, clean)
    settings = {**cfg.fixed, **{k: v for k, v in clean.items() if k in dosing.SETTINGS}}
    delivery = None
    if kind == "fire":
        delivery = dosing.delivery("fire", settings)
    elif kind == "start":
        d = clean.get("duration_s")
        if d is None or d <= 0:
            out.append(state(PARAMETER, device, f"{device} start needs duration_s > 0 (how long, so that its dose can be checked)"))
        else:
            delivery = dosing.delivery("start", settings, d)
            out += ramp_violations(cfg, settings.get("current_a"), clean.get("ramp_s"))
    out += setting_violations(cfg, kind, settings, delivery, motor_threshold=motor_threshold_pct, complete=kind != "set")
    if delivery is not None:
        out += dose_violations(cfg, kind, delivery.totals, delivery.charge_c is not None, Totals(), Totals(), settings)
    return out


def ramp_violations(cfg: DeviceConfig, current: float | None, ramp_s: float | None) -> list[Violation]:
    """A start jumps the output from 0 to ``current`` over the device's own ramp ``ramp_s``."""
    cap = cfg.limits.ramp_rate_max
    if cap is None:
        return []
    if current is None:
        return [missing(cfg.name, "start", "current_a", "ramp_rate_max")]
    if current == 0:
        return []
    rate = math.inf if not ramp_s else current / ramp_s
    if exceeds(rate, cap):
        v = above(cfg.name, "ramp up", rate, "ramp_rate_max", cap, q.CURRENT_RATE)
        need = current / cap
        return [Violation(v.limit, v.text + f"; start with ramp_s >= {q.fmt(need, units.DURATION)} or ramp up with 'set'",
                          v.device, v.value, v.limit_value, v.relation, v.family)]
    return []
