"""The compiled protocol: what the loader hands to the engine and the DSP.

Everything here is already validated and in SI units (seconds, hertz), so the hot path
never parses text or checks units. These frozen dataclasses are the contract between the
protocol loader (``controller.protocol.loader``), the feature pipeline
(``controller.dsp``) and the engine (``controller.engine``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Band:
    """A frequency band in Hz, lo < hi."""

    lo_hz: float
    hi_hz: float


@dataclass(frozen=True)
class StreamSelector:
    """Which LSL stream to resolve; unset fields match anything."""

    name: str | None = None
    type: str | None = None
    source_id: str | None = None


@dataclass(frozen=True)
class InputSpec:
    """One signal input (an LSL stream) and how it is conditioned before features."""

    name: str
    stream: StreamSelector
    channels: tuple[str, ...]  # labels to pick; empty = every channel of the stream
    reference: str | tuple[str, ...] | None = None  # None (as recorded), "average", or labels to average
    highpass_hz: float | None = None  # causal Butterworth, applied to picked channels
    notch_hz: float | None = None  # causal notch (line noise), applied to picked channels
    stall_timeout_s: float = 1.0  # no samples this long -> "input stalled"
    resolve_timeout_s: float = 10.0
    rate_hz: float | None = None  # expected nominal rate as written in the protocol (checked against the stream)


# --------------------------------------------------------------------------- features

FeatureKind = Literal["band_power", "band_ratio", "relative_power", "peak_to_peak"]
PowerMethod = Literal["welch", "iir"]


@dataclass(frozen=True)
class FeatureSpec:
    """A scalar feature computed on a sliding window of one input, averaged over channels.

    The window is ``window_s`` long and is evaluated every ``every_s``; both are turned
    into whole sample counts at the stream's rate (round to nearest).
    """

    name: str
    kind: FeatureKind
    input: str
    channels: tuple[str, ...]  # subset of the input's channels (never empty once compiled)
    window_s: float
    every_s: float
    method: PowerMethod = "welch"
    band: Band | None = None  # band_power, relative_power; peak_to_peak: optional prefilter
    numerator: Band | None = None  # band_ratio
    denominator: Band | None = None  # band_ratio
    total: Band | None = None  # relative_power: the reference band (default 1-40 Hz)


# --------------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class PercentileSpec:
    feature: str
    during: str  # block label, e.g. "baseline"; computed when the first such block ends
    q: float  # 0..100


@dataclass(frozen=True)
class AdaptSpec:
    every_s: float
    target_reward_rate: float  # 0..1
    direction: Literal["below", "above"]  # reward when feature is below/above the threshold
    feature: str  # the feature the threshold is compared with


@dataclass(frozen=True)
class ThresholdSpec:
    name: str
    fixed: float | None = None
    percentile: PercentileSpec | None = None
    adapt: AdaptSpec | None = None


# --------------------------------------------------------------------------- timeline


@dataclass(frozen=True)
class Block:
    """One block of the flattened timeline."""

    index: int  # position in the flattened timeline, from 0
    label: str  # e.g. "baseline", "train", "rest"
    duration_s: float
    cycle: int | None = None  # which repetition of an enclosing `repeat`, from 0


# --------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class FeatureRef:
    name: str


@dataclass(frozen=True)
class ThresholdRef:
    name: str


@dataclass(frozen=True)
class Constant:
    value: float


Operand = Union[FeatureRef, ThresholdRef, Constant]


@dataclass(frozen=True)
class Compare:
    left: Operand
    op: Literal["<", ">", "<=", ">="]
    right: Operand


@dataclass(frozen=True)
class And:
    items: tuple["Condition", ...]


@dataclass(frozen=True)
class Or:
    items: tuple["Condition", ...]


@dataclass(frozen=True)
class Not:
    item: "Condition"


@dataclass(frozen=True)
class Sustained:
    """``cond for DURATION``: true once ``cond`` has held continuously for duration_s."""

    item: "Condition"
    duration_s: float


Condition = Union[Compare, And, Or, Not, Sustained]


# --------------------------------------------------------------------------- rules, feedback


@dataclass(frozen=True)
class Action:
    """What a rule does when its condition holds. v1: feedback markers."""

    feedback: str | None = None  # e.g. "reward": emitted as a marker with the source time
    marker: str | None = None  # a free marker string


@dataclass(frozen=True)
class Rule:
    index: int
    during: tuple[str, ...]  # block labels where the rule is live; empty = always
    when: Condition
    do: Action
    source: str = ""  # the condition text as written, for journals and reports
    line: int = 0  # YAML line of the rule, for messages


@dataclass(frozen=True)
class FeedbackSpec:
    """The continuous feedback value: a feature scaled linearly onto 0..1 (clipped).

    ``low`` maps to 0 and ``high`` to 1; ``low > high`` is allowed (e.g. theta/beta
    down-training, where a lower ratio fills the bar).
    """

    value: str  # feature name
    low: float
    high: float
    during: tuple[str, ...] = ()  # block labels where feedback is shown; empty = always


@dataclass(frozen=True)
class Protocol:
    name: str
    inputs: dict[str, InputSpec]
    features: dict[str, FeatureSpec]
    thresholds: dict[str, ThresholdSpec]
    timeline: tuple[Block, ...]
    rules: tuple[Rule, ...]
    feedback: FeedbackSpec | None = None
    description: str = ""
    path: str = ""  # file it was loaded from
    sha256: str = ""  # of the file's bytes
    extra: dict = field(default_factory=dict)  # reserved for later sections (stimulation)

    @property
    def duration_s(self) -> float:
        return sum(b.duration_s for b in self.timeline)
