"""The structure of a protocol file (language v1) as pydantic models.

One source for two things: validating the YAML's shape (keys, types, units per field)
and the JSON Schema that editors use for completion. Cross-references (does this
feature exist? is this window long enough for that band?) are checked afterwards in
:mod:`controller.protocol.semantics`, because they need the whole document.

Quantities are validated here, per field, by :mod:`controller.protocol.units`, and come
out in SI units (seconds, hertz, volts).
"""

from __future__ import annotations

import math
import re
import types
from typing import Annotated, Any, ClassVar, Literal, NoReturn, Union, get_args, get_origin
from collections.abc import Mapping

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from controller.protocol import units
from controller.protocol.compiled import PHASE_TARGETS, AverageOfType
from controller.protocol.condition import KEYWORDS

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
PROTOCOL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
_NAME = re.compile(NAME_PATTERN)
_PROTOCOL_NAME = re.compile(PROTOCOL_NAME_PATTERN)

# Tags of the timeline union; they appear in pydantic error locations but not in the data.
REPEAT_TAG = "{repeat}"
BLOCK_TAG = "{block}"
# Tags of the input union (a signal stream or fMRI volumes).
STREAM_INPUT_TAG = "{stream-input}"
VOLUME_INPUT_TAG = "{volume-input}"
TAGS = frozenset({REPEAT_TAG, BLOCK_TAG, STREAM_INPUT_TAG, VOLUME_INPUT_TAG})
RESERVED_LABELS = frozenset({"repeat", "blocks"})


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


def _check_protocol_name(value: Any) -> Any:
    if not isinstance(value, str) or not _PROTOCOL_NAME.match(value):
        fail(f"expected a protocol name of letters, digits, '_', '-' or '.', like tbr-adhd, got {units.shown(value)}")
    return value


ProtocolName = Annotated[
    str, BeforeValidator(_check_protocol_name), WithJsonSchema({"type": "string", "pattern": PROTOCOL_NAME_PATTERN})
]


def _unit_pattern(family: str) -> str:
    symbols = sorted((re.escape(u) for u, (f, _) in units.UNITS.items() if f == family), key=len, reverse=True)
    return r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*(" + "|".join(symbols) + r")\s*$"


def _positive(family: str):
    def check(value: Any) -> float:
        try:
            q = units.parse_quantity(value, family)
        except units.UnitError as exc:
            fail(str(exc))
        if q.value <= 0:
            fail(f"must be above 0, got {units.shown(value)}")
        return q.value

    return check


def _quantity_schema(family: str, examples: list[str], description: str) -> dict:
    return {"type": "string", "pattern": _unit_pattern(family), "examples": examples, "description": description}


Duration = Annotated[
    float,
    BeforeValidator(_positive(units.DURATION)),
    WithJsonSchema(_quantity_schema(units.DURATION, ["500 ms", "2 s", "3 min"], "A duration with its unit: us, ms, s or min.")),
]
Frequency = Annotated[
    float,
    BeforeValidator(_positive(units.FREQUENCY)),
    WithJsonSchema(_quantity_schema(units.FREQUENCY, ["0.5 Hz", "50 Hz", "1 kHz"], "A frequency with its unit: Hz or kHz.")),
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
            "items": _quantity_schema(units.FREQUENCY, ["4 Hz"], "A band edge with its unit."),
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


def _unique(what: str):
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
    AfterValidator(_unique("channel")),
    WithJsonSchema({"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True}),
]


_ALL_OF_TYPE = "all "


def _reference(value: Any) -> Any:
    if value == "average":
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        _unique("reference channel")(tuple(value))
        return tuple(value)
    if isinstance(value, dict) and list(value) == ["average"]:
        inner = value["average"]
        if isinstance(inner, list) and len(inner) == 1 and isinstance(inner[0], str):
            inner = inner[0]  # {average: [all EEG]} reads as {average: all EEG}
        if isinstance(inner, str) and inner.startswith(_ALL_OF_TYPE) and inner[len(_ALL_OF_TYPE):].strip():
            return AverageOfType(inner[len(_ALL_OF_TYPE):].strip())
        if isinstance(inner, list) and inner and all(isinstance(v, str) for v in inner):
            _unique("reference channel")(tuple(inner))
            return tuple(inner)
        fail(f"average: expected 'all TYPE' (e.g. all EEG: every EEG channel of the stream) or a list of channel "
             f"labels, got {units.shown(inner)}")
    fail("expected 'average' (of the input's channels), a list of channel labels like [A1, A2], or "
         f"{{average: all EEG}} (every EEG channel of the stream), got {units.shown(value)}")


def _signal_unit(value: Any) -> str:
    from controller.protocol.signal_units import KNOWN_UNITS, parse_unit

    if not isinstance(value, str) or parse_unit(value) is None:
        fail(f"expected the unit the amplifier sends, one of {KNOWN_UNITS}; got {units.shown(value)}")
    return value.strip()


SignalUnit = Annotated[
    str,
    BeforeValidator(_signal_unit),
    WithJsonSchema({"type": "string", "examples": ["uV", "V", "fT", "fT/cm", "umol/L"],
                    "description": "The unit of channels whose stream description gives none."}),
]


Reference = Annotated[
    Any,
    BeforeValidator(_reference),
    WithJsonSchema(
        {
            "anyOf": [
                {"const": "average", "description": "Common average of the input's channels (only those listed in channels)."},
                {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "Channels to average as the reference, e.g. [A1, A2]."},
                {"type": "object", "additionalProperties": False, "required": ["average"],
                 "properties": {"average": {"anyOf": [
                     {"type": "string", "pattern": "^all .+", "examples": ["all EEG"]},
                     {"type": "array", "items": {"type": "string"}, "minItems": 1}]}},
                 "description": "{average: all EEG}: every stream channel of that type (from the stream description)."},
            ]
        }
    ),
]


def _labels_shape(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if value is None:
        return []
    return value


Labels = Annotated[
    tuple[Name, ...],
    BeforeValidator(_labels_shape),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": NAME_PATTERN},
                {"type": "array", "items": {"type": "string", "pattern": NAME_PATTERN}},
            ],
            "description": "A block label of the timeline, or a list of them.",
        }
    ),
]


def _number_or_amplitude(value: Any) -> units.Quantity:
    try:
        return units.parse_quantity(value, (units.VOLTAGE, units.PERCENT), allow_bare=True)
    except units.UnitError as exc:
        fail(str(exc))


_NUMBER_OR_AMPLITUDE_SCHEMA = {
    "anyOf": [
        {"type": "number"},
        _quantity_schema(units.VOLTAGE, ["150 uV"], "An amplitude with its unit: V, mV or uV."),
        _quantity_schema(units.PERCENT, ["175 %"], "A percentage (line_length, area: of the feature's trend)."),
    ]
}

# A Quantity: a plain number (ratios, powers), an amplitude with a unit (peak-to-peak) or a
# percentage (line_length, area).
Level = Annotated[Any, BeforeValidator(_number_or_amplitude), WithJsonSchema(_NUMBER_OR_AMPLITUDE_SCHEMA)]


def _range_shape(value: Any) -> Any:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        fail(f"expected [LOW, HIGH] like [3.0, 1.0] (LOW fills 0 % of the bar, HIGH 100 %), got {units.shown(value)}")
    return value


def _range_distinct(value: tuple[units.Quantity, units.Quantity]) -> Any:
    if value[0].value == value[1].value:
        fail(f"LOW and HIGH must differ, got {value[0]} twice")
    return value


FeedbackRange = Annotated[
    tuple[Level, Level],
    BeforeValidator(_range_shape),
    AfterValidator(_range_distinct),
    WithJsonSchema(
        {
            "type": "array",
            "items": _NUMBER_OR_AMPLITUDE_SCHEMA,
            "minItems": 2,
            "maxItems": 2,
            "description": "[LOW, HIGH]: LOW maps to 0 and HIGH to 1 (clipped); LOW > HIGH is allowed.",
        }
    ),
]


def _none_as(empty: Any):
    def check(value: Any) -> Any:
        return empty if value is None else value

    return check


# --------------------------------------------------------------------------- models


class Decl(BaseModel):
    """Base of every mapping in a protocol file: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key_noun: ClassVar[str] = "key"  # how its keys are called in "unknown ..." messages


class StreamDecl(Decl):
    """Which LSL stream to use; give at least one of name, type, source_id."""

    name: str | None = Field(None, description="The stream's name, e.g. 'BrainAmp'.")
    type: str | None = Field(None, description="The stream's content type, e.g. 'EEG'.")
    source_id: str | None = Field(None, description="The stream's source id (unique per device).")

    @model_validator(mode="after")
    def _some_field(self) -> "StreamDecl":
        if self.name is None and self.type is None and self.source_id is None:
            fail("give at least one of name, type, source_id, e.g. {type: EEG}")
        return self


class InputDecl(Decl):
    """A signal input: one LSL stream and how it is conditioned before features."""

    stream: StreamDecl = Field(description="Which LSL stream to resolve, e.g. {type: EEG}.")
    channels: ChannelList = Field(description="Channel labels to take from the stream, e.g. [Cz, Fp1, Fp2].")
    reference: Reference | None = Field(
        None, description="Re-reference: 'average' (of the channels listed here), a list of channels to average, e.g. "
                          "[A1, A2], or {average: all EEG} (every EEG channel of the stream). Omit to keep the recorded reference."
    )
    unit: SignalUnit | None = Field(
        None, description="The unit the stream's values are in, for a stream whose description gives no channel units "
                          "(e.g. uV). A unit the stream does give must agree. Values are converted to SI (V) on the way in."
    )
    highpass: Frequency | None = Field(None, description="Causal high-pass cut-off, e.g. 0.5 Hz.")
    notch: Frequency | None = Field(None, description="Line-noise notch, e.g. 50 Hz.")
    stall: Duration = Field("1 s", validate_default=True, description="No samples for this long means the input stalled.")
    max_gap: DelayDuration = Field(
        "2 s", validate_default=True,
        description="A gap in the samples (lost data, a stall) up to this long keeps the features' long-term state "
                    "(line_length/area trends): only the windows refill. A longer gap, or time going backwards, starts "
                    "the features over (trends re-warm). 0 s: every gap starts over.",
    )
    resolve_timeout: Duration = Field("10 s", validate_default=True, description="How long to look for the stream at start.")
    rate: Frequency | None = Field(
        None, description="The stream's expected sampling rate, e.g. 500 Hz: bands are checked against its Nyquist frequency when loading."
    )


from controller.protocol.fmri_raw import (  # noqa: E402  (needs the basic types above)
    FMRI_FEATURE_KINDS,
    RoiCorrelationDecl,
    RoiDecl,
    RoiMeanDecl,
    RoiPscDecl,
    RunList,
    VolumeInputDecl,
)


def _input_kind(value: Any) -> str:
    if isinstance(value, dict) and "volumes" in value:
        return VOLUME_INPUT_TAG
    if isinstance(value, VolumeInputDecl):
        return VOLUME_INPUT_TAG
    return STREAM_INPUT_TAG


InputItem = Annotated[
    Union[Annotated[InputDecl, Tag(STREAM_INPUT_TAG)], Annotated[VolumeInputDecl, Tag(VOLUME_INPUT_TAG)]],
    Discriminator(_input_kind),
]

PowerMethod = Literal["welch", "iir"]


class _FeatureCommon(Decl):
    input: Name = Field(description="The input (a key of inputs) the feature is computed on.")
    channels: ChannelList | None = Field(
        None, description="Channels to average over; a subset of the input's channels. Default: all of them."
    )
    window: Duration = Field(description="Length of the sliding window, e.g. 2 s.")
    every: Duration = Field(description="How often the feature is computed, e.g. 100 ms; at most the window.")


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
    WithJsonSchema(_quantity_schema(units.PERCENT, ["50 %"], "Overlap of consecutive Welch segments, 0 % to under 100 %.")),
]


class _PowerCommon(_FeatureCommon):
    method: PowerMethod = Field("welch", description="welch (spectrum of the window) or iir (band-pass filter, mean square).")
    segment: Duration | None = Field(
        None, description="welch: length of each FFT segment inside the window. Default: the window, at most 1 s "
                          "(a 2 s window gives 3 segments of 1 s at 50 % overlap; frequency resolution 1/segment)."
    )
    overlap: Overlap = Field("50 %", validate_default=True, description="welch: overlap of consecutive segments; default 50 %.")


class BandPowerDecl(_PowerCommon):
    """Mean power in a frequency band."""

    band: FreqBand = Field(description="The band, e.g. [13 Hz, 21 Hz].")


class BandRatioDecl(_PowerCommon):
    """Power in the numerator band divided by power in the denominator band (e.g. theta/beta)."""

    numerator: FreqBand = Field(description="Band on top of the ratio, e.g. [4 Hz, 8 Hz].")
    denominator: FreqBand = Field(description="Band below the ratio, e.g. [13 Hz, 21 Hz].")


class RelativePowerDecl(_PowerCommon):
    """Power in a band as a fraction of the power in a total band."""

    band: FreqBand = Field(description="The band, e.g. [8 Hz, 12 Hz].")
    total: FreqBand = Field(("1 Hz", "40 Hz"), validate_default=True, description="The reference band; default [1 Hz, 40 Hz].")


class PeakToPeakDecl(_FeatureCommon):
    """Largest minus smallest value in the window (artifacts such as blinks), in volts."""

    band: FreqBand | None = Field(None, description="Optional causal band-pass applied first, e.g. [0.5 Hz, 4 Hz].")


class ChannelsAboveDecl(Decl):
    """A channel vote: the feature's value is how many of its channels are above a level."""

    channels_above: Level = Field(
        description="line_length/area: a percentage of trend, e.g. 200 %; halfwave: a count, e.g. 6."
    )


_STATISTICS = ("mean", "median", "max")


def _channel_reduce(value: Any) -> Any:
    """A statistic by name, or a vote ``{channels_above: LEVEL}``; one message names both forms."""
    if isinstance(value, str) and value in _STATISTICS:
        return value
    if isinstance(value, Mapping) and set(value) == {"channels_above"}:
        return ChannelsAboveDecl.model_construct(channels_above=_number_or_amplitude(value["channels_above"]))
    fail("expected mean, median, max or a channel vote like {channels_above: 200 %}, "
         f"got {units.shown(value)}")


ChannelReduce = Annotated[
    Any,
    BeforeValidator(_channel_reduce),
    WithJsonSchema({"anyOf": [{"enum": list(_STATISTICS)}, ChannelsAboveDecl.model_json_schema()],
                    "description": "mean, median, max, or a channel vote {channels_above: LEVEL}."}),
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
    WithJsonSchema(_quantity_schema(units.DURATION, ["0 ms", "5 ms"], "A duration of 0 or more with its unit.")),
]
Amplitude = Annotated[
    float,
    BeforeValidator(_positive(units.VOLTAGE)),
    WithJsonSchema(_quantity_schema(units.VOLTAGE, ["50 uV"], "An amplitude with its unit: V, mV or uV.")),
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
            "items": _quantity_schema(units.DURATION, ["20 ms"], "A duration with its unit."),
            "minItems": 2,
            "maxItems": 2,
            "description": "[SHORTEST, LONGEST], e.g. [20 ms, 150 ms].",
        }
    ),
]

_DEG = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*deg\s*$")


def _phase_target(value: Any) -> float:
    """Named phase or ``N deg`` -> radians in (-pi, pi], cosine convention (0 = peak, pi = trough)."""
    if isinstance(value, str):
        if value.strip() in PHASE_TARGETS:
            return PHASE_TARGETS[value.strip()]
        m = _DEG.match(value)
        if m and math.isfinite(float(m.group(1))):
            rad = math.radians(float(m.group(1)))
            return -((math.pi - rad) % (2 * math.pi) - math.pi)
    fail(
        f"expected {', '.join(PHASE_TARGETS)} or an angle like '180 deg' (cosine convention: 0 deg = peak, "
        f"180 deg = trough, -90 deg = rising), got {units.shown(value)}"
    )


PhaseTarget = Annotated[
    float,
    BeforeValidator(_phase_target),
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": list(PHASE_TARGETS)},
                {"type": "string", "pattern": _DEG.pattern, "examples": ["180 deg", "-90 deg"]},
            ],
            "description": "trough, peak, rising, falling or an angle like '180 deg' (cosine convention: 0 deg = peak).",
        }
    ),
]


class _TrendedDecl(_FeatureCommon):
    band: FreqBand | None = Field(None, description="Optional causal band-pass applied first, e.g. [1 Hz, 30 Hz].")
    trend: Duration = Field(
        description="Span of the long-term trend the window is compared with, e.g. 30 s; at least the window."
    )
    trend_kind: Literal["mean", "ema"] = Field(
        "mean", description="mean: the mean window value over the trend span; ema: exponential average with the trend span as time constant."
    )
    warmup: Duration | None = Field(
        None, description="History needed before the value is defined (NaN before: conditions on it are false). Default: the trend span."
    )
    reduce: ChannelReduce = Field(
        "mean", description="How per-channel values become one: mean, median, max, or a vote {channels_above: 200 %}."
    )
    hold_above: Level | None = Field(
        None, description="While a channel is above this percentage of its trend (a detected episode, e.g. 150 %), "
        "its trend holds instead of absorbing the episode. Default: never holds."
    )
    hold_max: Duration | None = Field(
        None, description="Longest hold, e.g. 120 s: afterwards the trend follows the signal again. Default: no limit."
    )


class LineLengthDecl(_TrendedDecl):
    """Line length (sum of |x[n] - x[n-1]|) of the window in percent of its own long-term trend:
    100 % = usual, 175 % = 75 % above (seizure onset). Compare it with percentages: 'll > 175 %'."""


class AreaDecl(_TrendedDecl):
    """Area (sum of |x|) of the window in percent of its own long-term trend. Compare it with
    percentages: 'area > 150 %'."""


class HalfWaveDecl(_FeatureCommon):
    """Number of qualified half-waves (monotonic runs between turning points) of the band-passed
    signal in the window: height and duration within the given ranges."""

    band: FreqBand = Field(description="Causal band-pass applied first, e.g. [3 Hz, 30 Hz].")
    min_amplitude: Amplitude = Field(description="Smallest qualifying half-wave height, e.g. 50 uV.")
    max_amplitude: Amplitude | None = Field(None, description="Largest qualifying height (e.g. against artifacts), e.g. 1 mV. Default: no limit.")
    duration: DurationRange | None = Field(
        None, description="[SHORTEST, LONGEST] qualifying duration, e.g. [20 ms, 150 ms]. Default: half a period of the band's high .. low edge."
    )
    reduce: ChannelReduce = Field(
        "mean", description="How per-channel counts become one: mean, median, max, or a vote {channels_above: 6}."
    )


class SlopeDecl(_FeatureCommon):
    """Least-squares slope of the (low-passed) signal over the window, in its units per second,
    averaged over channels; e.g. respiration: slope < 0 while exhaling."""

    lowpass: Frequency | None = Field(None, description="Causal low-pass applied first, e.g. 1 Hz.")
    band: FreqBand | None = Field(None, description="Or a causal band-pass applied first, e.g. [0.1 Hz, 1 Hz]; not with lowpass.")


class LaplacianDecl(Decl):
    """A small surface Laplacian: the centre electrode minus the mean of its neighbours."""

    center: str = Field(description="The centre electrode, e.g. C3.")
    neighbours: ChannelList = Field(
        description="Its nearest electrodes, e.g. [FC1, FC5, CP1, CP5] (10-10) or [F3, Cz, P3, T3] (10-20 caps)."
    )

    @model_validator(mode="after")
    def _center_not_a_neighbour(self) -> "LaplacianDecl":
        if self.center in self.neighbours:
            fail(f"the centre {self.center!r} is also listed as a neighbour")
        return self


class PhaseDecl(Decl):
    """Phase-locked trigger: 1 at the evaluation that commits to a pulse, else 0; the pulse's time
    (the predicted target crossing) goes with the value, for 'stimulate: {at: FEATURE}'."""

    input: Name = Field(description="The input (a key of inputs) the feature is computed on.")
    channel: str | None = Field(None, description="One channel as the signal, e.g. C3 (or give laplacian).")
    laplacian: LaplacianDecl | None = Field(
        None, description="A Laplacian as the signal, e.g. {center: C3, neighbours: [FC1, FC5, CP1, CP5]} (or give channel)."
    )
    band: FreqBand = Field(description="The rhythm's band, e.g. [8 Hz, 13 Hz].")
    method: Literal["ar", "etp", "hilbert"] = Field(
        "ar", description="ar: autoregressive forward prediction (default); etp: educated temporal prediction (needs train); hilbert: naive causal baseline."
    )
    target: PhaseTarget = Field(
        "trough", validate_default=True, description="Phase to hit: trough, peak, rising, falling or an angle like '180 deg' (0 deg = peak)."
    )
    delay: DelayDuration = Field(
        "0 ms", validate_default=True,
        description="Latency from the newest sample to the pulse (transport, dispatcher, device), e.g. 5 ms; at least the device delay.",
    )
    min_interval: Duration = Field(description="Least time between pulses, e.g. 2 s.")
    amplitude: Amplitude | None = Field(None, description="Pulse only when the rhythm's amplitude is at least this, e.g. 5 uV.")
    amplitude_q: float | None = Field(
        None, ge=0, le=100, strict=True,
        description="Pulse only when the amplitude is at least this percentile (0..100) of its own estimates over amplitude_over, e.g. 50.",
    )
    amplitude_over: Duration = Field(
        "30 s", validate_default=True, description="History of the amplitude_q gate (no pulse until it exists), e.g. 30 s."
    )
    window: Duration | None = Field(None, description="Window the method reads. Default: ar 1 s, hilbert 500 ms, etp 1.5 cycles of the band's low edge.")
    every: Duration = Field(description="How often the phase is estimated, e.g. 10 ms (a pulse is committed within one of these).")
    train: Duration | None = Field(None, description="etp only: the model is fitted on the first this-much of signal, e.g. 20 s (no pulses before).")

    @model_validator(mode="after")
    def _one_signal(self) -> "PhaseDecl":
        if (self.channel is None) == (self.laplacian is None):
            fail("give exactly one of channel (e.g. C3) or laplacian (e.g. {center: C3, neighbours: [FC1, FC5, CP1, CP5]})")
        return self

    @property
    def channels(self) -> tuple[str, ...]:
        """The input channels it reads: the channel, or the Laplacian's centre then neighbours."""
        if self.laplacian is not None:
            return (self.laplacian.center, *self.laplacian.neighbours)
        return (self.channel,)  # type: ignore[return-value]


FEATURE_KINDS = (
    "band_power", "band_ratio", "relative_power", "peak_to_peak", "line_length", "area", "halfwave", "slope", "phase",
) + FMRI_FEATURE_KINDS


class FeatureDecl(Decl):
    """A feature: exactly one kind, e.g. {band_ratio: {input: eeg, ...}}."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})
    key_noun: ClassVar[str] = "feature kind"
    band_power: BandPowerDecl | None = Field(None, description="Mean power in a band, e.g. {input: eeg, band: [13 Hz, 21 Hz], window: 1 s, every: 100 ms}.")
    band_ratio: BandRatioDecl | None = Field(None, description="Ratio of the powers in two bands, e.g. theta/beta.")
    relative_power: RelativePowerDecl | None = Field(None, description="Power in a band as a fraction of the power in a total band.")
    peak_to_peak: PeakToPeakDecl | None = Field(None, description="Peak-to-peak amplitude in the window (artifact detection), in volts.")
    line_length: LineLengthDecl | None = Field(
        None, description="Line length in percent of its long-term trend (seizure onset: 'll > 175 %'), e.g. {input: ieeg, window: 1 s, every: 100 ms, trend: 30 s}."
    )
    area: AreaDecl | None = Field(None, description="Area (sum of |x|) in percent of its long-term trend.")
    halfwave: HalfWaveDecl | None = Field(
        None, description="Count of qualified half-waves in the window, e.g. {input: ieeg, band: [3 Hz, 30 Hz], min_amplitude: 50 uV, window: 1 s, every: 100 ms}."
    )
    slope: SlopeDecl | None = Field(
        None, description="Slope (units per second) of the low-passed signal, e.g. respiration: {input: resp, lowpass: 1 Hz, window: 500 ms, every: 50 ms}."
    )
    phase: PhaseDecl | None = Field(
        None, description="Phase-locked pulse trigger: 1 when a pulse is committed (timed to the predicted target phase), else 0."
    )
    roi_psc: RoiPscDecl | None = Field(
        None, description="fMRI: percent signal change of an ROI against the preceding baseline block, e.g. {input: fmri, roi: amygdala_l, baseline: rest, skip: 2 TR, average: 3 TR}."
    )
    roi_mean: RoiMeanDecl | None = Field(None, description="fMRI: an ROI's detrended mean signal, e.g. {input: fmri, roi: acc}.")
    roi_correlation: RoiCorrelationDecl | None = Field(
        None, description="fMRI: sliding-window correlation of two ROIs, e.g. {input: fmri, rois: [pcc, dlpfc_l], window: 20 TR}."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> "FeatureDecl":
        given = [k for k in FEATURE_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            got = "none" if not given else ", ".join(given)
            fail(f"give exactly one feature kind ({', '.join(FEATURE_KINDS)}), got {got}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in FEATURE_KINDS if getattr(self, k) is not None)

    @property
    def params(self) -> Any:
        return getattr(self, self.kind)


class PercentileDecl(Decl):
    """Threshold = a percentile of a feature's values during a block (e.g. the baseline)."""

    feature: Name = Field(description="The feature whose values are collected.")
    during: Name = Field(description="Block label; the threshold is computed when the first such block ends.")
    q: float = Field(ge=0, le=100, strict=True, description="Percentile, 0..100, e.g. 40.")


class AdaptDecl(Decl):
    """Move the threshold periodically so that the reward rate approaches a target."""

    every: Duration = Field(description="How often to adapt, e.g. 60 s.")
    target_reward_rate: float = Field(gt=0, lt=1, strict=True, description="Wanted fraction of time rewarded, strictly between 0 and 1, e.g. 0.7.")


class ThresholdDecl(Decl):
    """A threshold: exactly one of fixed or percentile, optionally adapt."""

    fixed: Level | None = Field(None, description="A constant: a plain number, or an amplitude like 150 uV.")
    percentile: PercentileDecl | None = Field(None, description="Computed from a feature during a block.")
    adapt: AdaptDecl | None = Field(None, description="Adapt toward a target reward rate during the session.")

    @model_validator(mode="after")
    def _one_base(self) -> "ThresholdDecl":
        if (self.fixed is None) == (self.percentile is None):
            got = "both" if self.fixed is not None else "neither"
            fail(f"give exactly one of fixed or percentile, got {got}")
        return self


class RepeatDecl(Decl):
    """Repeat a list of blocks N times."""

    repeat: int = Field(ge=1, strict=True, description="How many times, e.g. 6.")
    blocks: list["TimelineItem"] = Field(min_length=1, description="The blocks to repeat, e.g. [{train: 3 min}, {rest: 30 s}].")


def _block_shape(value: Any) -> Any:
    if not isinstance(value, dict) or not value:
        fail(
            "expected a timeline entry {LABEL: DURATION} like {train: 3 min}, or "
            f"{{repeat: N, blocks: [...]}}, got {units.shown(value)}"
        )
    if len(value) != 1:
        one = ", ".join(f"{{{k}: ...}}" for k in value)
        fail(f"one block per entry: write [{one}] rather than one mapping with {len(value)} labels")
    return value


BlockEntry = Annotated[
    dict[Name, Duration],
    BeforeValidator(_block_shape),
    WithJsonSchema(
        {
            "type": "object",
            "description": "One block {LABEL: DURATION}, e.g. {baseline: 2 min}.",
            "minProperties": 1,
            "maxProperties": 1,
            "propertyNames": {"pattern": NAME_PATTERN, "not": {"enum": sorted(RESERVED_LABELS)}},
            "additionalProperties": _quantity_schema(units.DURATION, ["3 min"], "The block's duration."),
        }
    ),
]


def _timeline_kind(value: Any) -> str:
    if isinstance(value, dict) and RESERVED_LABELS & set(value):
        return REPEAT_TAG
    return BLOCK_TAG


TimelineItem = Annotated[
    Union[Annotated[RepeatDecl, Tag(REPEAT_TAG)], Annotated[BlockEntry, Tag(BLOCK_TAG)]],
    Discriminator(_timeline_kind),
]
RepeatDecl.model_rebuild()


# --------------------------------------------------------------------------- stimulation


def _quantity(family: str, *, positive: bool = True):
    def check(value: Any) -> float:
        try:
            q = units.parse_quantity(value, family)
        except units.UnitError as exc:
            fail(str(exc))
        if positive and q.value <= 0:
            fail(f"must be above 0, got {units.shown(value)}")
        if not positive and q.value < 0:
            fail(f"must be 0 or more, got {units.shown(value)}")
        return q.value

    return check


def _current_rate(value: Any) -> float:
    from controller.safety import quantities  # the site's units: mA/s

    try:
        rate = quantities.parse(value, quantities.CURRENT_RATE)
    except ValueError as exc:
        fail(str(exc))
    if not rate > 0:
        fail(f"must be above 0, got {units.shown(value)}")
    return rate


Current = Annotated[
    float,
    BeforeValidator(_quantity(units.CURRENT, positive=False)),
    WithJsonSchema(_quantity_schema(units.CURRENT, ["1 mA", "500 uA"], "A current with its unit: A, mA or uA.")),
]
Percent = Annotated[
    float,
    BeforeValidator(_quantity(units.PERCENT)),
    WithJsonSchema(_quantity_schema(units.PERCENT, ["60 %"], "A percentage, e.g. of the maximum stimulator output.")),
]
CurrentRate = Annotated[
    float,
    BeforeValidator(_current_rate),
    WithJsonSchema({"type": "string", "examples": ["0.5 mA/s"], "description": "A current ramp rate: mA/s, uA/s or A/s."}),
]


class ScaleDecl(Decl):
    """A setting driven by a feature: FROM (the feature's range) maps linearly onto TO (clipped)."""

    feature: Name = Field(description="The feature that drives the setting.")
    from_: Annotated[tuple[Level, Level], WithJsonSchema(
        {"type": "array", "items": _NUMBER_OR_AMPLITUDE_SCHEMA, "minItems": 2, "maxItems": 2,
         "description": "[LOW, HIGH] of the feature."})] = Field(alias="from")
    to: Annotated[tuple[Any, Any], WithJsonSchema(
        {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2,
         "description": "[AT LOW, AT HIGH] of the setting, with units, e.g. [0.5 mA, 1.5 mA]."})] = Field()
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StimSettingsDecl(Decl):
    """Stimulator settings, in the units people use (the governor checks each against the site's limits)."""

    intensity: Percent | None = Field(None, description="TMS intensity in % of the maximum stimulator output, e.g. 60 %.")
    current: Current | ScaleDecl | None = Field(None, description="Current (peak), e.g. 1 mA; or {feature, from, to}.")
    frequency: Frequency | ScaleDecl | None = Field(None, description="Pulse or sine frequency, e.g. 25 Hz; or {feature, from, to}.")
    pulse_width: Duration | None = Field(None, description="Width of one phase of a pulse, e.g. 250 us.")
    phases: Literal[1, 2] | None = Field(None, description="1 = monophasic, 2 = biphasic (charge-balanced).")
    pulses: Annotated[int, Field(ge=1, strict=True)] | None = Field(None, description="Pulses in one train (1 = a single pulse).")


class StimulateDecl(StimSettingsDecl):
    """Deliver: a pulse or a train ('pulses'), or continuous stimulation for 'duration' (tACS/tDCS)."""

    device: Name = Field(description="A device of the protocol's devices section (a site config device).")
    duration: Duration | None = Field(None, description="Continuous stimulation this long (with no 'pulses').")
    ramp: Duration | None = Field(None, description="Continuous stimulation: the device's ramp-in time.")
    at: Name | None = Field(None, description="A phase feature: time the pulse to its predicted target phase.")


class SetDecl(StimSettingsDecl):
    """Change settings now (e.g. tACS amplitude from a feature, adaptive DBS amplitude)."""

    device: Name = Field(description="A device of the protocol's devices section.")
    ramp: CurrentRate | None = Field(None, description="Change the current in steps at this rate, e.g. 0.5 mA/s.")


class StopDecl(Decl):
    device: Name = Field(description="The device whose continuous stimulation ends.")


class ActionDecl(Decl):
    """What a rule does: exactly one of feedback, marker, stimulate, set or stop."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    feedback: Literal["reward"] | None = Field(None, description="'reward': emit a reward marker.")
    marker: str | None = Field(None, description="Emit this text as a marker.")
    stimulate: StimulateDecl | None = Field(None, description="Stimulate, e.g. {device: tms, at: mu} or {device: tavns, pulses: 750, frequency: 25 Hz}.")
    set: SetDecl | None = Field(None, description="Change stimulator settings, e.g. {device: tacs, current: {feature: alpha, from: [1, 3], to: [0.5 mA, 1.5 mA]}}.")
    stop: StopDecl | None = Field(None, description="End continuous stimulation, e.g. {device: tacs}.")

    @model_validator(mode="after")
    def _one_action(self) -> "ActionDecl":
        given = [k for k in ACTION_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            fail(f"give exactly one of {', '.join(ACTION_KINDS)}, e.g. {{feedback: reward}}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ACTION_KINDS if getattr(self, k) is not None)


ACTION_KINDS = ("feedback", "marker", "stimulate", "set", "stop")


class EpisodeDecl(Decl):
    """At most COUNT firings per episode; an episode ends after GAP without a firing."""

    count: Annotated[int, Field(ge=1, strict=True)] = Field(description="Firings per episode, e.g. 5.")
    gap: Duration = Field(description="Quiet time that ends an episode, e.g. 60 s.")


class RuleDecl(Decl):
    """When the condition holds (in the given blocks), do the action."""

    during: Labels = Field((), description="Block label(s) where the rule is live; omit for always.")
    when: str | None = Field(
        None,
        description=(
            "Condition: comparisons (<, >, <=, >=) of features, thresholds and numbers (with units where needed), "
            "combined with and, or, not, parentheses; 'for DURATION' after a comparison or group requires it "
            "to hold that long. E.g. 'tbr < goal for 500 ms and emg < emg_max'."
        ),
    )
    at: Literal["block_start", "block_end"] | None = Field(
        None, description="Instead of 'when': fire once when each 'during' block starts (or ends)."
    )
    do: ActionDecl = Field(description="The action, e.g. {feedback: reward} or {stimulate: {device: tms}}.")
    refractory: Duration | None = Field(None, description="After firing, the rule stays quiet this long, e.g. 5 s.")
    per_episode: EpisodeDecl | None = Field(None, description="At most this many firings per episode, e.g. {count: 3, gap: 60 s}.")
    per_session: Annotated[int, Field(ge=1, strict=True)] | None = Field(None, description="At most this many firings per session.")
    per_day: Annotated[int, Field(ge=1, strict=True)] | None = Field(
        None, description="At most this many firings per calendar day (stimulation rules; counted in the dose ledger)."
    )

    @model_validator(mode="after")
    def _when_or_at(self) -> "RuleDecl":
        if (self.when is None) == (self.at is None):
            fail("give exactly one of 'when' (a condition) or 'at' (block_start or block_end)")
        return self


class DeviceDecl(StimSettingsDecl):
    """A site device this protocol drives, with the settings applied before arming."""


class InterlockDecl(Decl):
    """While the condition holds, stimulation is inhibited (e.g. an artifact)."""

    when: str = Field(description="Condition, as in rules, e.g. 'emg > emg_max'.")
    clear_after: Duration | None = Field(None, description="It must be false this long before stimulation resumes.")


class FeedbackDecl(Decl):
    """The continuous feedback value shown to the participant."""

    value: Name = Field(description="The feature shown.")
    range: FeedbackRange = Field(description="[LOW, HIGH] mapped linearly onto 0..1; LOW > HIGH rewards low values.")
    during: Labels = Field((), description="Block label(s) where feedback is shown; omit for always.")


class ProtocolDecl(Decl):
    """A neuroreflex protocol (language v1)."""

    protocol: ProtocolName = Field(description="The protocol's name, e.g. tbr-adhd.")
    description: Annotated[str, BeforeValidator(_none_as(""))] = Field("", description="What the protocol is for, in one line.")
    inputs: dict[Name, InputItem] = Field(min_length=1, description="Signal inputs by name, e.g. eeg.")
    rois: Annotated[dict[Name, RoiDecl], BeforeValidator(_none_as({}))] = Field(
        default_factory=dict, description="fMRI regions of interest by name, e.g. {amygdala_l: {sphere: {center: [-24, -4, -18], radius: 7 mm}, space: mni}}."
    )
    runs: RunList | None = Field(None, description="fMRI: the runs of a multi-run session (target per run, transfer run); choose one with --run.")
    features: Annotated[dict[Name, FeatureDecl], BeforeValidator(_none_as({}))] = Field(
        default_factory=dict, description="Features by name; conditions refer to them by that name."
    )
    thresholds: Annotated[dict[Name, ThresholdDecl], BeforeValidator(_none_as({}))] = Field(
        default_factory=dict, description="Thresholds by name; conditions refer to them by that name."
    )
    timeline: list[TimelineItem] = Field(
        min_length=1, description="Blocks in order: {LABEL: DURATION} or {repeat: N, blocks: [...]}."
    )
    rules: Annotated[list[RuleDecl], BeforeValidator(_none_as([]))] = Field(default_factory=list, description="Rules, checked on every new feature value.")
    feedback: FeedbackDecl | None = Field(None, description="The continuous feedback value (optional).")
    devices: Annotated[dict[Name, DeviceDecl], BeforeValidator(_none_as({}))] = Field(
        default_factory=dict,
        description="Stimulators by their site-config name, with settings applied before arming, e.g. {tms: {intensity: 60 %}}.",
    )
    interlocks: Annotated[dict[Name, InterlockDecl], BeforeValidator(_none_as({}))] = Field(
        default_factory=dict, description="Named conditions that inhibit stimulation while they hold (artifacts)."
    )


# --------------------------------------------------------------------------- helpers for the loader

ITEM_ADAPTERS: dict[str, TypeAdapter] = {
    "inputs": TypeAdapter(InputItem),
    "rois": TypeAdapter(RoiDecl),
    "features": TypeAdapter(FeatureDecl),
    "thresholds": TypeAdapter(ThresholdDecl),
    "timeline": TypeAdapter(TimelineItem),
    "rules": TypeAdapter(RuleDecl),
    "feedback": TypeAdapter(FeedbackDecl),
    "devices": TypeAdapter(DeviceDecl),
    "interlocks": TypeAdapter(InterlockDecl),
}
NAME_ADAPTER: TypeAdapter = TypeAdapter(Name)
LABELS_ADAPTER: TypeAdapter = TypeAdapter(Labels)
_TAG_TYPES = {REPEAT_TAG: RepeatDecl, BLOCK_TAG: dict[str, Any], STREAM_INPUT_TAG: InputDecl,
              VOLUME_INPUT_TAG: VolumeInputDecl}


def unwrap_type(tp: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> X."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin is Union or origin is types.UnionType:
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def model_type_at(root: Any, loc: tuple[Any, ...], *, tags: dict[str, Any] | None = None,
                  sequences: tuple[type, ...] = (list, tuple)) -> Any:
    """The declared type at a pydantic error location under model ``root`` (for "valid keys are
    ..." messages); ``tags`` are union tags that appear in locations but not in the data."""
    tp: Any = root
    for part in loc:
        if tags and part in tags:
            tp = tags[part]
            continue
        tp = unwrap_type(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            tp = field.annotation
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        elif get_origin(tp) in sequences:
            tp = get_args(tp)[0]
        else:
            return None
    return unwrap_type(tp)


def type_at(loc: tuple[Any, ...]) -> Any:
    """The declared type at a protocol error location."""
    return model_type_at(ProtocolDecl, loc, tags=_TAG_TYPES)


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a protocol file, for editors and validators."""
    schema = ProtocolDecl.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "neuroreflex protocol (v1)"
    return schema
