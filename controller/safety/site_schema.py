"""The structure of a site configuration file as pydantic models (shape, types, units).

Like the protocol language (:mod:`controller.protocol.raw`), one source gives both the
validation of the YAML's shape and the JSON Schema editors use. Cross-field rules (a
charge limit needs a known current, Shannon k needs an electrode area, a device needs
an intensity cap ...) are checked afterwards in :mod:`controller.safety.site`.

Every quantity is written with its unit and comes out in SI (seconds, hertz, amperes,
coulombs, square metres); percentages stay as written (80 % -> 80.0).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from controller.lang import units
from controller.lang.fields import Duration, Frequency, Name, fail
from controller.safety import quantities as q
from controller.safety.train_table import RELATIVE_TO
from controller.telemetry.config import TelemetryDecl
from drivers.registry import DRIVERS as _REGISTRY

# The `driver:` names a site may use: those of the driver registry, in its order.
DRIVERS = tuple(_REGISTRY)

SITE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
_SITE_NAME = re.compile(SITE_NAME_PATTERN)


# ----------------------------------------------------------------------------- scalar types


def _quantity_schema(pattern_units: list[str], examples: list[str], description: str) -> dict[str, Any]:
    symbols = "|".join(re.escape(u) for u in sorted(pattern_units, key=len, reverse=True))
    pattern = r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*(" + symbols + r")\s*$"
    return {"type": "string", "pattern": pattern, "examples": examples, "description": description}


def _positive(parse: Callable[[Any], float], *, upper: float | None = None, what: str = "") -> Callable[[Any], float]:
    def check(value: Any) -> float:
        try:
            si = parse(value)
        except units.UnitError as exc:
            fail(str(exc))
        if si <= 0:
            fail(f"must be above 0, got {units.shown(value)}")
        if upper is not None and si > upper:
            fail(f"{what} cannot exceed {upper:g} %, got {units.shown(value)}")
        return si

    return check


def _units_of(family: str) -> list[str]:
    return [u for u, (f, _) in units.UNITS.items() if f == family]


def _site_units_of(family: str) -> list[str]:
    return [u for u, (f, _) in q.UNITS.items() if f == family]


Percent = Annotated[
    float,
    BeforeValidator(_positive(lambda v: units.parse_si(v, units.PERCENT))),
    WithJsonSchema(_quantity_schema(["%"], ["80 %"], "A percentage, e.g. 80 %.")),
]
OutputPercent = Annotated[
    float,
    BeforeValidator(_positive(lambda v: units.parse_si(v, units.PERCENT), upper=100.0, what="a stimulator output")),
    WithJsonSchema(_quantity_schema(["%"], ["80 %"], "A percentage of maximum stimulator output, 0-100 %.")),
]
Current = Annotated[
    float,
    BeforeValidator(_positive(lambda v: units.parse_si(v, units.CURRENT))),
    WithJsonSchema(_quantity_schema(_units_of(units.CURRENT), ["2 mA", "500 uA"], "A current: A, mA or uA.")),
]
Charge = Annotated[
    float,
    BeforeValidator(_positive(lambda v: q.parse(v, q.CHARGE))),
    WithJsonSchema(_quantity_schema(_site_units_of(q.CHARGE), ["20 uC", "0.5 mC"], "A charge: C, mC, uC or nC.")),
]
Area = Annotated[
    float,
    BeforeValidator(_positive(lambda v: q.parse(v, q.AREA))),
    WithJsonSchema(_quantity_schema(_site_units_of(q.AREA), ["1.0 cm2", "6 mm2"], "An electrode area: cm2, mm2 or m2.")),
]
ChargeDensity = Annotated[
    float,
    BeforeValidator(_positive(lambda v: q.parse(v, q.CHARGE_DENSITY))),
    WithJsonSchema(_quantity_schema(_site_units_of(q.CHARGE_DENSITY), ["30 uC/cm2"], "Charge density per phase: uC/cm2.")),
]
CurrentRate = Annotated[
    float,
    BeforeValidator(_positive(lambda v: q.parse(v, q.CURRENT_RATE))),
    WithJsonSchema(_quantity_schema(_site_units_of(q.CURRENT_RATE), ["0.1 mA/s"], "A current ramp rate: mA/s or uA/s.")),
]


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(f"expected a whole number like 1500, got {units.shown(value)}")
    if value < 1:
        fail(f"must be at least 1, got {units.shown(value)}")
    return value


Count = Annotated[int, BeforeValidator(_count), WithJsonSchema({"type": "integer", "minimum": 1})]


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(f"expected a plain number like 1.75, got {units.shown(value)}")
    if value != value or value in (float("inf"), float("-inf")):
        fail(f"expected a finite number, got {units.shown(value)}")
    return float(value)


Number = Annotated[float, BeforeValidator(_number), WithJsonSchema({"type": "number"})]


def _phases(value: Any) -> int:
    if value not in (1, 2) or isinstance(value, bool) or not isinstance(value, int):
        fail(f"expected 1 (monophasic) or 2 (biphasic), got {units.shown(value)}")
    return value


Phases = Annotated[int, BeforeValidator(_phases), WithJsonSchema({"enum": [1, 2]})]


def _site_name(value: Any) -> Any:
    if not isinstance(value, str) or not _SITE_NAME.match(value):
        fail(f"expected a site name of letters, digits, '_', '-' or '.', like example-lab, got {units.shown(value)}")
    return value


SiteName = Annotated[str, BeforeValidator(_site_name), WithJsonSchema({"type": "string", "pattern": SITE_NAME_PATTERN})]


def _driver(value: Any) -> Any:
    if value in DRIVERS:
        return value
    close = difflib.get_close_matches(str(value), DRIVERS, n=1) if isinstance(value, str) else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    fail(f"unknown driver {units.shown(value)}{hint}; known drivers: {', '.join(DRIVERS)}")


Driver = Annotated[str, BeforeValidator(_driver), WithJsonSchema({"enum": list(DRIVERS)})]


def _port(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        fail(
            "expected the port as text: a serial device like /dev/ttyUSB0 or COM3, a pseudo-terminal path, "
            f"a pyserial URL, or host:port for TCP like 127.0.0.1:1235, got {units.shown(value)}"
        )
    return value.strip()


Port = Annotated[str, BeforeValidator(_port), WithJsonSchema({"type": "string", "minLength": 1})]


def _option(value: Any) -> Any:
    if isinstance(value, (dict, list)) or value is None:
        fail(f"an option is a plain value (text, number, true/false), got {units.shown(value)}")
    return value


Option = Annotated[Any, BeforeValidator(_option), WithJsonSchema({"type": ["string", "number", "boolean"]})]


def _text(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        fail(f"expected text, got {units.shown(value)}")
    return value


Text = Annotated[str, BeforeValidator(_text), WithJsonSchema({"type": "string", "minLength": 1})]


def _relative_to(value: Any) -> Any:
    if value not in RELATIVE_TO:
        fail(
            f"expected motor_threshold (columns in % of the resting motor threshold) or output "
            f"(columns in % of maximum stimulator output), got {units.shown(value)}"
        )
    return value


RelativeTo = Annotated[str, BeforeValidator(_relative_to), WithJsonSchema({"enum": list(RELATIVE_TO)})]


def _duration_row(value: Any) -> Any:
    if not isinstance(value, list) or not value:
        fail(f"expected a list of durations, one per intensity column, like [10 s, 7.6 s], got {units.shown(value)}")
    return value


DurationRow = Annotated[list[Duration], BeforeValidator(_duration_row)]


# ----------------------------------------------------------------------------- models


class Decl(BaseModel):
    """Base of every mapping in a site file: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key_noun: ClassVar[str] = "key"


class TrainTableDecl(Decl):
    """Maximum single-train duration by frequency (rows) and intensity (columns)."""

    source: Text = Field(description="Where the values come from (publication, table number), e.g. 'Rossi et al. 2009, Table 4'.")
    relative_to: RelativeTo = Field(
        description="motor_threshold: columns in % of the resting motor threshold; output: in % of maximum stimulator output."
    )
    intensities: list[Percent] = Field(min_length=1, description="Column headings, increasing, e.g. [100 %, 110 %, 120 %].")
    rows: dict[str, DurationRow] = Field(
        min_length=1,
        description="One row per frequency: 'FREQUENCY: [DURATION per column]', e.g. '10 Hz: [5 s, 5 s, 4.2 s]'.",
    )


class FixedSettingsDecl(Decl):
    """Settings fixed on the stimulator itself (front panel), which commands cannot change."""

    intensity: OutputPercent | None = Field(None, description="Output intensity, e.g. 60 %.")
    current: Current | None = Field(None, description="Pulse current (amplitude of each phase), e.g. 0.5 mA.")
    pulse_width: Duration | None = Field(None, description="Width of each phase, e.g. 250 us.")
    phases: Phases | None = Field(None, description="1 (monophasic) or 2 (biphasic, charge-balanced). Default 2 when charge is computed.")
    frequency: Frequency | None = Field(None, description="Train frequency, when each trigger starts a train.")
    pulses: Count | None = Field(None, description="Pulses delivered per trigger; default 1.")


class LimitsDecl(Decl):
    """The device's safety limits; every limit given is enforced at load time and at run time."""

    key_noun: ClassVar[str] = "limit"
    intensity_max: OutputPercent | None = Field(None, description="Highest output intensity in % of maximum stimulator output, e.g. 80 %.")
    current_max: Current | None = Field(None, description="Highest current, e.g. 2 mA.")
    frequency_max: Frequency | None = Field(None, description="Highest pulse or train frequency, and highest rate of single pulses, e.g. 20 Hz.")
    pulse_width_max: Duration | None = Field(None, description="Widest phase, e.g. 500 us.")
    pulses_per_train_max: Count | None = Field(None, description="Most pulses in one train, e.g. 100.")
    train_duration_max: Duration | None = Field(None, description="Longest train or continuous stimulation, e.g. 10 s.")
    train_table: TrainTableDecl | None = Field(None, description="Maximum train duration by frequency and intensity (e.g. from TMS safety guidelines).")
    motor_threshold_min: OutputPercent | None = Field(
        None, description="Lowest resting motor threshold accepted (% output); used as the worst case before the threshold is measured."
    )
    min_inter_train: Duration | None = Field(None, description="Shortest pause between the end of a train and the next stimulation, e.g. 5 s.")
    min_pulse_interval: Duration | None = Field(None, description="Shortest time between any two pulses, e.g. 40 ms.")
    pulses_per_session_max: Count | None = Field(None, description="Most pulses in one session, e.g. 1500.")
    pulses_per_day_max: Count | None = Field(None, description="Most pulses per calendar day (site time zone), e.g. 3000.")
    charge_per_phase_max: Charge | None = Field(None, description="Largest charge in one phase, e.g. 1 uC.")
    charge_per_session_max: Charge | None = Field(None, description="Most charge (all phases, absolute) in one session, e.g. 3.6 C.")
    charge_per_day_max: Charge | None = Field(None, description="Most charge per calendar day, e.g. 7.2 C.")
    electrode_area: Area | None = Field(None, description="Area of the (smallest) stimulating electrode, e.g. 1.0 cm2.")
    charge_density_max: ChargeDensity | None = Field(None, description="Largest charge density per phase, e.g. 30 uC/cm2.")
    shannon_k_max: Number | None = Field(
        None, description="Largest Shannon k = log10(uC/cm2 per phase) + log10(uC per phase), e.g. 1.75."
    )
    ramp_rate_max: CurrentRate | None = Field(None, description="Fastest change of the output current while stimulating, e.g. 0.1 mA/s.")
    blanking: Duration | None = Field(None, description="No stimulation for this long after a parameter change, e.g. 500 ms.")


class DeviceDecl(Decl):
    """A stimulator: which driver speaks to it, on which port, and its safety limits."""

    driver: Driver = Field(description=f"The device protocol: {', '.join(DRIVERS)}.")
    port: Port = Field(description="Serial device, pseudo-terminal, pyserial URL, or host:port for TCP.")
    description: str = Field("", description="What the device is, in one line.")
    options: dict[str, Option] = Field(default_factory=dict, description="Driver options, e.g. {model: rapid2}.")
    fixed_settings: FixedSettingsDecl | None = Field(
        None, description="Settings fixed on the stimulator (trigger-driven stimulators), so charge can be computed."
    )
    limits: LimitsDecl = Field(description="The device's safety limits.")


class SiteDecl(Decl):
    """A neuroreflex site configuration: devices, ports and safety limits."""

    site: SiteName = Field(description="The site's name, e.g. example-lab.")
    description: str = Field("", description="What this configuration is for, in one line.")
    timezone: Text | None = Field(None, description="IANA time zone for day boundaries of daily limits, e.g. Europe/Berlin; default: the host's.")
    max_loop_latency: Duration = Field(
        "5 ms", validate_default=True, description="Largest accepted controller delay: from the arrival of the data that "
        "decided (the chunk holding the detecting sample) to the stimulation command."
    )
    max_end_to_end_latency: Duration | None = Field(
        None, description="Optional: largest accepted time from the detecting sample (its LSL time stamp: the amplifier's "
        "block and the transport included) to the stimulation command, e.g. 100 ms."
    )
    input_stall: Duration = Field("1 s", validate_default=True, description="An input silent this long inhibits stimulation.")
    devices: dict[Name, DeviceDecl] = Field(min_length=1, description="Stimulators by name; protocols refer to them by that name.")
    telemetry: TelemetryDecl | None = Field(
        None, description="Optional: publish every session's state and events to an MQTT broker; without it, no broker is needed."
    )


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a site file, for editors and validators."""
    schema = SiteDecl.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "neuroreflex site configuration"
    return schema
