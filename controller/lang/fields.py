"""The value types a protocol file is written in: names, durations, frequencies, bands, channel
lists, levels, with their validators and JSON Schema.

Shared by the language's sections (:mod:`controller.protocol.raw`) and by the feature kinds'
declarations (:mod:`controller.features.kinds`), which is why it imports nothing from either.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, NoReturn

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from controller.lang import units

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_NAME = re.compile(NAME_PATTERN)

KEYWORDS = frozenset({"and", "or", "not", "for"})  # the condition language's words: not names



def fail(message: str) -> NoReturn:
    """Raise a validation error whose message is exactly ``message`` (no pydantic prefix)."""
    raise PydanticCustomError("protocol", "{message}", {"message": message})


# --------------------------------------------------------------------------- scalar types


def _check_name(value: Any) -> Any:
    if not isinstance(value, str):
        fail(f"expected a name (letters, digits and _), got {units.shown(value)}")
    if not _NAME.match(value):
        fail(f"{value!r} is not a valid name: use letters, digits and _, not starting with a digit (e.g. theta_beta)")
    if value in KEYWORDS:
        fail(f"{value!r} is a condition keyword ({', '.join(sorted(KEYWORDS))}); pick another name")
    return value


Name = Annotated[
    str,
    BeforeValidator(_check_name),
    WithJsonSchema({"type": "string", "pattern": NAME_PATTERN, "not": {"enum": sorted(KEYWORDS)}}),
]


def _unit_pattern(family: str) -> str:
    symbols = sorted((re.escape(u) for u, (f, _) in units.UNITS.items() if f == family), key=len, reverse=True)
    return r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*(" + "|".join(symbols) + r")\s*$"


def _positive(family: str) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        try:
            q = units.parse_quantity(value, family)
        except units.UnitError as exc:
            fail(str(exc))
        if q.value <= 0:
            fail(f"must be above 0, got {units.shown(value)}")
        return q.value

    return check


def quantity_schema(family: str, examples: list[str], description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": _unit_pattern(family), "examples": examples, "description": description}


Duration = Annotated[
    float,
    BeforeValidator(_positive(units.DURATION)),
    WithJsonSchema(quantity_schema(units.DURATION, ["500 ms", "2 s", "3 min"], "A duration with its unit: us, ms, s or min.")),
]
Frequency = Annotated[
    float,
    BeforeValidator(_positive(units.FREQUENCY)),
    WithJsonSchema(quantity_schema(units.FREQUENCY, ["0.5 Hz", "50 Hz", "1 kHz"], "A frequency with its unit: Hz or kHz.")),
]


def _band_shape(value: Any) -> Any:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        fail(f"expected a band [LOW, HIGH] like [4 Hz, 8 Hz], got {units.shown(value)}")
    return value


def _band_order(value: tuple[float, float]) -> tuple[float, float]:
    lo, hi = value
    if lo >= hi:
        f = units.FREQUENCY
        fail(
            f"the low edge {units.format_quantity(lo, f)} must be below the high edge "
            f"{units.format_quantity(hi, f)}; write [LOW, HIGH], e.g. [4 Hz, 8 Hz]"
        )
    return value


FreqBand = Annotated[
    tuple[Frequency, Frequency],
    BeforeValidator(_band_shape),
    AfterValidator(_band_order),
    WithJsonSchema(
        {
            "type": "array",
            "items": quantity_schema(units.FREQUENCY, ["4 Hz"], "A band edge with its unit."),
            "minItems": 2,
            "maxItems": 2,
            "description": "A frequency band [LOW, HIGH], e.g. [4 Hz, 8 Hz]; LOW must be below HIGH.",
        }
    ),
]


def _channels_shape(value: Any) -> Any:
    if isinstance(value, str):
        fail(f"expected a list of channel labels like [{value}], got {units.shown(value)}")
    if not isinstance(value, (list, tuple)):
        fail(f"expected a list of channel labels like [Cz, Pz], got {units.shown(value)}")
    if not value:
        fail("expected at least one channel label, like [Cz], got an empty list")
    return value


def unique(what: str) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
    def check(value: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        for item in value:
            if item in seen:
                fail(f"{what} {item!r} is listed twice; list each once")
            seen.add(item)
        return value

    return check


ChannelList = Annotated[
    tuple[str, ...],
    BeforeValidator(_channels_shape),
    AfterValidator(unique("channel")),
    WithJsonSchema({"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True}),
]



# What a level (a threshold, a feedback range, a constant in a condition) may be written in.
LEVEL_FAMILIES = (units.VOLTAGE, units.PERCENT, units.CONCENTRATION)


def number_or_amplitude(value: Any) -> units.Quantity:
    try:
        return units.parse_quantity(value, LEVEL_FAMILIES, allow_bare=True)
    except units.UnitError as exc:
        fail(str(exc))


NUMBER_OR_AMPLITUDE_SCHEMA = {
    "anyOf": [
        {"type": "number"},
        quantity_schema(units.VOLTAGE, ["150 uV"], "An amplitude with its unit: V, mV or uV."),
        quantity_schema(units.PERCENT, ["175 %"], "A percentage (line_length, area: of the feature's trend)."),
        quantity_schema(units.CONCENTRATION, ["0.5 umol/L"], "A concentration change (fNIRS haemoglobin): mol/L, "
                        "mmol/L, umol/L, nmol/L (or mM, uM, nM)."),
    ]
}

# A Quantity: a plain number (ratios, powers), an amplitude with a unit (peak-to-peak) or a
# percentage (line_length, area).
Level = Annotated[Any, BeforeValidator(number_or_amplitude), WithJsonSchema(NUMBER_OR_AMPLITUDE_SCHEMA)]


class Decl(BaseModel):
    """Base of every mapping in a protocol file: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key_noun: ClassVar[str] = "key"  # how its keys are called in "unknown ..." messages



def _overlap(value: Any) -> float:
    try:
        q = units.parse_quantity(value, units.PERCENT)
    except units.UnitError as exc:
        fail(str(exc))
    if not 0 <= q.value < 100:
        fail(f"must be at least 0 % and under 100 %, got {units.shown(value)}")
    return q.value


Overlap = Annotated[
    float,
    BeforeValidator(_overlap),
    WithJsonSchema(quantity_schema(units.PERCENT, ["50 %"], "Overlap of consecutive Welch segments, 0 % to under 100 %.")),
]



def _non_negative_duration(value: Any) -> float:
    try:
        q = units.parse_quantity(value, units.DURATION)
    except units.UnitError as exc:
        fail(str(exc))
    if q.value < 0:
        fail(f"must be 0 or more, got {units.shown(value)}")
    return q.value


DelayDuration = Annotated[
    float,
    BeforeValidator(_non_negative_duration),
    WithJsonSchema(quantity_schema(units.DURATION, ["0 ms", "5 ms"], "A duration of 0 or more with its unit.")),
]
Amplitude = Annotated[
    float,
    BeforeValidator(_positive(units.VOLTAGE)),
    WithJsonSchema(quantity_schema(units.VOLTAGE, ["50 uV"], "An amplitude with its unit: V, mV or uV.")),
]


def _duration_range_order(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        d = units.DURATION
        fail(f"the shortest {units.format_quantity(value[0], d)} is longer than the longest "
             f"{units.format_quantity(value[1], d)}; write [SHORTEST, LONGEST], e.g. [20 ms, 150 ms]")
    return value


def _range_pair(value: Any) -> Any:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        fail(f"expected [SHORTEST, LONGEST] like [20 ms, 150 ms], got {units.shown(value)}")
    return value


DurationRange = Annotated[
    tuple[Duration, Duration],
    BeforeValidator(_range_pair),
    AfterValidator(_duration_range_order),
    WithJsonSchema(
        {
            "type": "array",
            "items": quantity_schema(units.DURATION, ["20 ms"], "A duration with its unit."),
            "minItems": 2,
            "maxItems": 2,
            "description": "[SHORTEST, LONGEST], e.g. [20 ms, 150 ms].",
        }
    ),
]


class StreamDecl(Decl):
    """Which LSL stream to use; give at least one of name, type, source_id."""

    name: str | None = Field(None, description="The stream's name, e.g. 'BrainAmp'.")
    type: str | None = Field(None, description="The stream's content type, e.g. 'EEG'.")
    source_id: str | None = Field(None, description="The stream's source id (unique per device).")

    @model_validator(mode="after")
    def _some_field(self) -> StreamDecl:
        if self.name is None and self.type is None and self.source_id is None:
            fail("give at least one of name, type, source_id, e.g. {type: EEG}")
        return self


_VOLUME_COUNT = re.compile(r"^\s*(\d+)\s*(TR|TRs|volumes?|vols?)?\s*$")


def _volume_count(value: Any) -> int:
    if isinstance(value, bool):
        fail(f"expected a number of volumes like 3 TR, got {units.shown(value)}")
    if isinstance(value, int):
        if value < 0:
            fail(f"must be 0 or more volumes, got {value}")
        return value
    m = _VOLUME_COUNT.match(value) if isinstance(value, str) else None
    if m is None:
        fail(f"expected a whole number of volumes like '3 TR' or '3 volumes', got {units.shown(value)}")
    return int(m.group(1))


VolumeCount = Annotated[
    int,
    BeforeValidator(_volume_count),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0},
                              {"type": "string", "pattern": r"^\s*\d+\s*(TR|TRs|volumes?|vols?)?\s*$"}],
                    "examples": ["3 TR", "5 volumes"], "description": "A number of volumes (TRs)."}),
]
