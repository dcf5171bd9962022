"""Loading a site configuration: text in, a validated :class:`Site` out, or every problem
at once as FILE:LINE:COL messages (the protocol loader's machinery and format).

Pure: nothing is read except the file named, nothing is opened or started. Values are
in SI units (seconds, hertz, amperes, coulombs, square metres; percentages as written).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from controller.lang import units
from controller.lang.errors import Issue, ProtocolError, read_utf8
from controller.lang.model_types import model_type_at
from controller.lang.source import KEY, Loc, Source
from controller.safety import dose as dosing
from controller.safety import quantities as q
from controller.safety import site_schema as schema
from controller.safety.train_table import TrainTable
from controller.telemetry.config import TelemetryConfig, TelemetryDecl, compile_telemetry, telemetry_problems
from drivers import registry
from drivers.stimulator import Stimulator


class SiteError(ProtocolError):
    """A site configuration that cannot be used; ``issues`` lists every problem (FILE:LINE:COL)."""


# YAML key of fixed_settings -> the stimulator 'set' parameter it fixes
FIXED_KEYS = {
    "intensity": "intensity_pct",
    "current": "current_a",
    "pulse_width": "pulse_width_s",
    "phases": "phases",
    "frequency": "frequency_hz",
    "pulses": "n_pulses",
}
CHARGE_LIMITS = ("charge_per_phase_max", "charge_per_session_max", "charge_per_day_max", "charge_density_max", "shannon_k_max")
CURRENT_ONLY = ("current_max", "ramp_rate_max", "electrode_area") + CHARGE_LIMITS


@dataclass(frozen=True)
class DeviceLimits:
    """A device's limits in SI units; None = not limited by the site."""

    intensity_max: float | None = None  # % of maximum stimulator output
    current_max: float | None = None  # A
    frequency_max: float | None = None  # Hz
    pulse_width_max: float | None = None  # s
    pulses_per_train_max: int | None = None
    train_duration_max: float | None = None  # s
    train_table: TrainTable | None = None
    motor_threshold_min: float | None = None  # % of maximum stimulator output
    min_inter_train: float | None = None  # s
    min_pulse_interval: float | None = None  # s
    pulses_per_session_max: int | None = None
    pulses_per_day_max: int | None = None
    charge_per_phase_max: float | None = None  # C
    charge_per_session_max: float | None = None  # C
    charge_per_day_max: float | None = None  # C
    electrode_area: float | None = None  # m2
    charge_density_max: float | None = None  # C/m2 per phase
    shannon_k_max: float | None = None
    ramp_rate_max: float | None = None  # A/s
    blanking: float | None = None  # s


@dataclass(frozen=True)
class DeviceConfig:
    name: str
    driver: str
    port: str
    limits: DeviceLimits
    options: Mapping[str, Any] = field(default_factory=dict)
    fixed: Mapping[str, float] = field(default_factory=dict)  # 'set' parameter -> value (SI)
    description: str = ""

    @property
    def driver_class(self) -> type[Stimulator]:
        """The driver's class: what kind of output the device has (for the site's rules) is its to say."""
        return registry.driver_class(self.driver)


@dataclass(frozen=True)
class Site:
    name: str
    devices: Mapping[str, DeviceConfig]
    timezone: str | None = None  # IANA name; None = the host's local time zone
    max_loop_latency_s: float = 0.005  # controller delay: data arrival -> command
    max_end_to_end_latency_s: float | None = None  # detecting sample -> command (None: no such bound)
    input_stall_s: float = 1.0
    description: str = ""
    telemetry: TelemetryConfig | None = None  # None: no telemetry section, no broker
    path: str = ""
    sha256: str = ""

    @property
    def tzinfo(self) -> ZoneInfo | None:
        return ZoneInfo(self.timezone) if self.timezone else None

    def device(self, name: str) -> DeviceConfig:
        try:
            return self.devices[name]
        except KeyError:
            raise KeyError(f"no device {name!r} in site {self.name!r}; devices: {', '.join(self.devices)}") from None


# ----------------------------------------------------------------------------- loading


def loads_site(text: str, filename: str = "<string>") -> Site:
    """Parse and validate site configuration text; ``filename`` is used in messages only.

    Raises :class:`SiteError` listing every problem found.
    """
    site = _compile(text, filename)
    return dataclasses.replace(site, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())


def load_site(path: str | Path) -> Site:
    """Read, parse and validate a site file; the result carries its path and the sha256 of
    its bytes. Raises :class:`SiteError` (FILE:LINE:COL: message per problem) or OSError."""
    path = Path(path)
    text, data = read_utf8(path, SiteError)
    site = _compile(text, str(path))
    return dataclasses.replace(site, path=str(path), sha256=hashlib.sha256(data).hexdigest())


def _compile(text: str, filename: str) -> Site:
    source = Source(text, filename)
    if source.root is None:
        if not source.issues:
            keys = ", ".join(schema.SiteDecl.model_fields)
            source.issues.append(Issue(filename, 1, 1, f"empty site file; expected a mapping with keys {keys}"))
        raise SiteError(source.issues)
    issues = list(source.issues)
    decl: schema.SiteDecl | None = None
    try:
        decl = schema.SiteDecl.model_validate(source.data)
    except ValidationError as exc:
        issues += [_issue(err, source) for err in exc.errors(include_url=False)]
    checker = _Semantics(source, Path(filename).parent)
    if decl is None:
        checker.partial(source.data)  # cross-field rules of the parts whose shape is right
        raise SiteError(issues + checker.issues)
    site = checker.compile(decl)
    issues += checker.issues
    if issues:
        raise SiteError(issues)
    return site


# ----------------------------------------------------------------------------- structure errors


def _type_at(loc: Loc) -> Any:
    return model_type_at(schema.SiteDecl, loc, sequences=(list,))


def _path_text(loc: Loc) -> str:
    out = ""
    for part in loc:
        if part == KEY:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _label(loc: Loc) -> str:
    parts = list(loc)
    if parts and parts[-1] == KEY:
        parts = parts[:-2]
    tail = ""
    while parts and isinstance(parts[-1], int):
        tail = f"[{parts.pop()}]" + tail
    return (str(parts[-1]) if parts else "site file") + tail


def _model_keys(tp: Any) -> list[str]:
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _issue(err: ErrorDetails, source: Source) -> Issue:
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    at_key = False
    label = _label(loc)
    if kind == "extra_forbidden":
        model = _type_at(loc[:-1])
        noun = getattr(model, "key_noun", "key")
        valid = _model_keys(model)
        where = _path_text(loc[:-1])
        msg = f"unknown {noun} {loc[-1]!r}" + (f" in {where}" if where else "")
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        if close:
            msg += f" (did you mean {close[0]!r}?)"
        msg += f"; valid {noun}s: {', '.join(valid)}"
        at_key = True
    elif kind == "missing":
        model = _type_at(loc[:-1])
        where = _path_text(loc[:-1])
        msg = f"missing required key {loc[-1]!r}" + (f" in {where}" if where else "")
        f = model.model_fields.get(loc[-1]) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if f is not None and f.description:
            msg += f": {f.description[:1].lower()}{f.description[1:]}"
    elif kind == "protocol":
        msg = f"{label}: {err['msg']}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        keys = _model_keys(_type_at(loc))
        got = units.shown(err.get("input"))
        msg = f"{label}: expected a mapping" + (f" with keys {', '.join(keys)}" if keys else "") + f", got {got}"
    elif kind in ("list_type", "tuple_type"):
        msg = f"{label}: expected a list like [a, b], got {units.shown(err.get('input'))}"
    elif kind == "string_type":
        msg = f"{label}: expected text, got {units.shown(err.get('input'))} (quote it if YAML reads it as a number or true/false)"
    elif kind == "too_short":
        msg = f"{label}: expected at least one entry, got none"
    else:
        msg = f"{label}: {err['msg'][:1].lower()}{err['msg'][1:]}, got {units.shown(err.get('input'))}"
    line, col = source.position(loc, prefer_key=at_key)
    return Issue(source.filename, line, col, msg)


# ----------------------------------------------------------------------------- cross-field rules


class _Semantics:
    """Rules that need more than one field, each error pinned to the key it is about."""

    def __init__(self, source: Source, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir  # telemetry's files are relative to the site file
        self.issues: list[Issue] = []

    def _add(self, loc: Loc, message: str, *, key: bool = True) -> None:
        line, col = self.source.position(loc, prefer_key=key)
        self.issues.append(Issue(self.source.filename, line, col, message))

    def compile(self, decl: schema.SiteDecl) -> Site:
        tz = decl.timezone
        self._timezone(tz)
        devices = self._devices(decl.devices)
        return Site(
            name=decl.site,
            description=decl.description,
            timezone=tz,
            max_loop_latency_s=decl.max_loop_latency,
            max_end_to_end_latency_s=decl.max_end_to_end_latency,
            input_stall_s=decl.input_stall,
            devices=MappingProxyType(devices),
            telemetry=self._telemetry(decl),
        )

    def _telemetry(self, decl: schema.SiteDecl) -> TelemetryConfig | None:
        if decl.telemetry is None:
            return None
        for loc, message in telemetry_problems(decl.telemetry):
            self._add(("telemetry", *loc), message)
        return compile_telemetry(decl.telemetry, site_name=decl.site, base_dir=self.base_dir)

    def partial(self, data: Any) -> None:
        """The rules that can still be checked when the file's shape is wrong somewhere:
        the time zone, and every device whose own shape is right."""
        if not isinstance(data, dict):
            return
        if isinstance(data.get("timezone"), str):
            self._timezone(data["timezone"])
        try:
            section = TelemetryDecl.model_validate(data["telemetry"]) if isinstance(data.get("telemetry"), dict) else None
        except ValidationError:
            section = None
        for loc, message in telemetry_problems(section) if section is not None else ():
            self._add(("telemetry", *loc), message)
        raw = data.get("devices")
        if not isinstance(raw, dict):
            return
        good: dict[str, schema.DeviceDecl] = {}
        for name, dev in raw.items():
            if not isinstance(name, str):
                continue
            try:
                good[name] = schema.DeviceDecl.model_validate(dev)
            except ValidationError:
                continue
        self._devices(good)

    def _timezone(self, tz: str | None) -> None:
        if tz is None:
            return
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            close = difflib.get_close_matches(tz, sorted(available_timezones()), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self._add(("timezone",), f"timezone: unknown time zone {tz!r}{hint}; use an IANA name like Europe/Berlin", key=False)

    def _devices(self, decls: Mapping[str, schema.DeviceDecl]) -> dict[str, DeviceConfig]:
        ports: dict[str, str] = {}
        devices: dict[str, DeviceConfig] = {}
        for name, dev in decls.items():
            where = ("devices", name)
            if dev.port in ports:
                self._add((*where, "port"), f"port: {dev.port!r} is already used by device {ports[dev.port]!r}; one device per port", key=False)
            else:
                ports[dev.port] = name
            devices[name] = self._device(name, dev, where)
        return devices

    def _device(self, name: str, dev: schema.DeviceDecl, where: Loc) -> DeviceConfig:
        lim = dev.limits
        lwhere = (*where, "limits")
        table = self._table(lim.train_table, (*lwhere, "train_table")) if lim.train_table is not None else None
        limits = DeviceLimits(**{k: getattr(lim, k) for k in DeviceLimits.__dataclass_fields__ if k != "train_table"}, train_table=table)
        fixed: dict[str, float] = {}
        if dev.fixed_settings is not None:
            for key, param in FIXED_KEYS.items():
                value = getattr(dev.fixed_settings, key)
                if value is not None:
                    fixed[param] = float(value)
        cfg = DeviceConfig(name, dev.driver, dev.port, limits, MappingProxyType(dict(dev.options)), MappingProxyType(fixed), dev.description)
        self._device_rules(cfg, lwhere, (*where, "fixed_settings"))
        return cfg

    def _device_rules(self, cfg: DeviceConfig, lwhere: Loc, fwhere: Loc) -> None:
        lim, fixed, name, device = cfg.limits, cfg.fixed, cfg.name, cfg.driver_class
        if lim.intensity_max is None and lim.current_max is None and not {"intensity_pct", "current_a"} & set(fixed):
            self._add(lwhere, f"device {name!r} has no amplitude limit: give intensity_max (% output) or current_max")
        if lim.frequency_max is None and lim.min_pulse_interval is None:
            self._add(lwhere, f"device {name!r} has no rate limit: give frequency_max or min_pulse_interval")
        if lim.pulses_per_session_max is None and lim.charge_per_session_max is None:
            self._add(lwhere, f"device {name!r} has no session limit: give pulses_per_session_max or charge_per_session_max")
        if device.percent_output:
            for key in CURRENT_ONLY:
                if getattr(lim, key) is not None:
                    self._add((*lwhere, key), f"{key} does not apply to a {cfg.driver} device: TMS output is set in % of maximum output, not as a current; remove it")
            for key in ("current", "pulse_width"):
                if FIXED_KEYS[key] in fixed:
                    self._add((*fwhere, key), f"{key} does not apply to a {cfg.driver} device (TMS output is set in %); remove it")
        else:
            current_known = "current_a" in fixed or device.sets_current
            for key in CHARGE_LIMITS:
                if getattr(lim, key) is None:
                    continue
                if not current_known:
                    self._add((*lwhere, key), f"{key} needs the stimulator's current: a {cfg.driver} cannot set it, so give fixed_settings.current (and pulse_width)")
                elif not device.waveform_output and "pulse_width_s" not in fixed:
                    self._add((*lwhere, key), f"{key} needs the pulse width: give fixed_settings.pulse_width")
            for key in ("charge_density_max", "shannon_k_max"):
                if getattr(lim, key) is not None and lim.electrode_area is None:
                    self._add((*lwhere, key), f"{key} needs the electrode area: give electrode_area, e.g. 1.0 cm2")
        self._fixed_within_limits(cfg, fwhere)

    def _fixed_within_limits(self, cfg: DeviceConfig, fwhere: Loc) -> None:
        lim, fixed = cfg.limits, cfg.fixed
        pairs = (
            ("intensity", "intensity_pct", "intensity_max", units.PERCENT),
            ("current", "current_a", "current_max", units.CURRENT),
            ("pulse_width", "pulse_width_s", "pulse_width_max", units.DURATION),
            ("frequency", "frequency_hz", "frequency_max", units.FREQUENCY),
            ("pulses", "n_pulses", "pulses_per_train_max", q.COUNT),
        )
        for key, param, limit, family in pairs:
            value, cap = fixed.get(param), getattr(lim, limit)
            if value is not None and cap is not None and value > cap:
                self._add((*fwhere, key), f"{key}: the fixed {q.fmt(value, family)} exceeds this device's {limit} {q.fmt(cap, family)}", key=False)
        per_phase = fixed.get("current_a", math.nan) * fixed.get("pulse_width_s", math.nan)
        if not math.isfinite(per_phase):
            return
        if lim.charge_per_phase_max is not None and per_phase > lim.charge_per_phase_max:
            self._add(fwhere, f"the fixed current and pulse width give {q.fmt(per_phase, q.CHARGE)} per phase > charge_per_phase_max {q.fmt(lim.charge_per_phase_max, q.CHARGE)}")
        if lim.electrode_area is not None:
            density = dosing.charge_density(per_phase, lim.electrode_area)
            if lim.charge_density_max is not None and density > lim.charge_density_max:
                self._add(fwhere, f"the fixed current and pulse width give {q.fmt(density, q.CHARGE_DENSITY)} > charge_density_max {q.fmt(lim.charge_density_max, q.CHARGE_DENSITY)}")
            k = dosing.shannon_k(per_phase, lim.electrode_area)
            if lim.shannon_k_max is not None and k > lim.shannon_k_max:
                self._add(fwhere, f"the fixed current and pulse width give Shannon k {k:.3g} > shannon_k_max {lim.shannon_k_max:g}")

    def _table(self, decl: schema.TrainTableDecl, where: Loc) -> TrainTable | None:
        ok = True
        cols = list(decl.intensities)
        for i in range(1, len(cols)):
            if cols[i] <= cols[i - 1]:
                self._add((*where, "intensities", i), f"intensities[{i}]: {cols[i]:g} % must be above the previous column {cols[i - 1]:g} %; list columns in increasing order", key=False)
                ok = False
        rows: list[tuple[float, tuple[float, ...]]] = []
        seen: dict[float, str] = {}
        for key, durations in decl.rows.items():
            kloc = (*where, "rows", key)
            try:
                f = units.parse_si(key, units.FREQUENCY)
            except units.UnitError as exc:
                self._add((*kloc, KEY), f"rows: a row is named by its frequency; {exc}", key=False)
                ok = False
                continue
            if f <= 0:
                self._add((*kloc, KEY), f"rows: the frequency must be above 0 Hz, got {key!r}", key=False)
                ok = False
                continue
            if f in seen:
                self._add((*kloc, KEY), f"rows: {key!r} is the same frequency as row {seen[f]!r}; give each frequency once", key=False)
                ok = False
                continue
            seen[f] = key
            if len(durations) != len(cols):
                self._add(kloc, f"rows.{key}: {len(durations)} durations for {len(cols)} intensity columns; give one per column", key=False)
                ok = False
                continue
            rows.append((f, tuple(durations)))
        if not ok or not rows:
            return None
        rows.sort()
        return TrainTable(
            source=" ".join(decl.source.split()),
            relative_to=decl.relative_to,
            intensities=tuple(cols),
            frequencies=tuple(f for f, _ in rows),
            durations=tuple(d for _, d in rows),
        )
