"""The structure of a protocol file (language v1) as pydantic models.

One source for two things: validating the YAML's shape (keys, types, units per field)
and the JSON Schema that editors use for completion. Cross-references (does this
feature exist? is this window long enough for that band?) are checked afterwards in
:mod:`controller.protocol.semantics`, because they need the whole document. Each feature
kind declares its own model (``controller.features.kinds``); ``FeatureDecl`` is assembled
from the registry, one optional key per kind.

Quantities are validated here, per field, by :mod:`controller.lang.units`, and come
out in SI units (seconds, hertz, volts).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    WithJsonSchema,
    create_model,
    model_validator,
)

from controller.lang import units
from controller.lang.compiled import AverageOfType
from controller.lang.fields import (  # noqa: F401  (safety.site_schema imports some from here)
    NAME_PATTERN,
    ChannelList,
    Decl,
    DelayDuration,
    Duration,
    Frequency,
    Level,
    Name,
    StreamDecl,
    fail,
)
from controller.lang.fields import (
    NUMBER_OR_AMPLITUDE_SCHEMA as _NUMBER_OR_AMPLITUDE_SCHEMA,
)
from controller.lang.fields import (
    quantity_schema as _quantity_schema,
)
from controller.lang.fields import (
    unique as _unique,
)
from controller.lang.model_types import model_type_at
from controller.protocol.fmri_raw import (  # the fMRI declarations join the unions  # the fMRI declarations join the unions
    RoiDecl,
    RunList,
    VolumeInputDecl,
)
from controller.protocol.nirs_raw import FnirsDecl, SspDecl

PROTOCOL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
_PROTOCOL_NAME = re.compile(PROTOCOL_NAME_PATTERN)

# Tags of the timeline union; they appear in pydantic error locations but not in the data.
REPEAT_TAG = "{repeat}"
BLOCK_TAG = "{block}"
# Tags of the input union (a signal stream or fMRI volumes).
STREAM_INPUT_TAG = "{stream-input}"
VOLUME_INPUT_TAG = "{volume-input}"
TAGS = frozenset({REPEAT_TAG, BLOCK_TAG, STREAM_INPUT_TAG, VOLUME_INPUT_TAG})
RESERVED_LABELS = frozenset({"repeat", "blocks"})



def _check_protocol_name(value: Any) -> Any:
    if not isinstance(value, str) or not _PROTOCOL_NAME.match(value):
        fail(f"expected a protocol name of letters, digits, '_', '-' or '.', like tbr-adhd, got {units.shown(value)}")
    return value


ProtocolName = Annotated[
    str, BeforeValidator(_check_protocol_name), WithJsonSchema({"type": "string", "pattern": PROTOCOL_NAME_PATTERN})
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



class InputDecl(Decl):
    """A signal input: one LSL stream and how it is conditioned before features."""

    stream: StreamDecl = Field(description="Which LSL stream to resolve, e.g. {type: EEG}.")
    channels: ChannelList | None = Field(
        None, description="Channel labels to take from the stream, e.g. [Cz, Fp1, Fp2]; for fNIRS the source-detector "
                          "pairs, e.g. [S1_D1, S2_D1]. Omit to allow every channel of the stream (e.g. a 306-channel MEG).")
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
    fnirs: FnirsDecl | None = Field(
        None, description="A continuous-wave fNIRS stream: light intensities (or optical density) per source-detector pair "
                          "and wavelength become HbO/HbR per pair (modified Beer-Lambert law), with short-separation "
                          "regression and motion detection. {} takes the defaults.")
    ssp: SspDecl | None = Field(
        None, description="MEG: signal-space projection before everything else: {stream: true} applies the stream's "
                          "projectors, {file: empty_room-proj.fif} those of a file.")




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


# --------------------------------------------------------------------------- features

from controller.features.registry import kinds as _feature_kinds  # noqa: E402  (the kinds' declarations)


class _FeatureChoice(Decl):
    """A feature: exactly one kind, e.g. {band_ratio: {input: eeg, ...}}."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})
    key_noun: ClassVar[str] = "feature kind"

    @model_validator(mode="after")
    def _one_kind(self) -> _FeatureChoice:
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


# One optional key per kind (signal and fMRI kinds alike), in the order the language lists them.
_FEATURE_FIELDS = {k.name: (k.declaration, k.summary) for k in _feature_kinds()}
FEATURE_KINDS = tuple(_FEATURE_FIELDS)
FeatureDecl = create_model(
    "FeatureDecl",
    __base__=_FeatureChoice,
    __doc__=_FeatureChoice.__doc__,
    __module__=__name__,
    **{name: (decl | None, Field(None, description=summary)) for name, (decl, summary) in _FEATURE_FIELDS.items()},
)


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
    def _one_base(self) -> ThresholdDecl:
        if (self.fixed is None) == (self.percentile is None):
            got = "both" if self.fixed is not None else "neither"
            fail(f"give exactly one of fixed or percentile, got {got}")
        return self


class RepeatDecl(Decl):
    """Repeat a list of blocks N times."""

    repeat: int = Field(ge=1, strict=True, description="How many times, e.g. 6.")
    blocks: list[TimelineItem] = Field(min_length=1, description="The blocks to repeat, e.g. [{train: 3 min}, {rest: 30 s}].")


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
    def _one_action(self) -> ActionDecl:
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
    def _when_or_at(self) -> RuleDecl:
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


def type_at(loc: tuple[Any, ...]) -> Any:
    """The declared type at a protocol error location."""
    return model_type_at(ProtocolDecl, loc, tags=_TAG_TYPES)


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a protocol file, for editors and validators."""
    schema = ProtocolDecl.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "neuroreflex protocol (v1)"
    return schema
