"""The compiled protocol: what the loader hands to the engine and the DSP.

Everything here is already validated and in SI units (seconds, hertz), so the hot path
never parses text or checks units. These frozen dataclasses are the contract between the
protocol loader (``controller.protocol.loader``), the feature pipeline
(``controller.dsp``) and the engine (``controller.engine``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union

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
class AverageOfType:
    """Reference: the common average of every stream channel of this type (``{average: all EEG}``)."""

    channel_type: str


@dataclass(frozen=True)
class InputSpec:
    """One signal input (an LSL stream) and how it is conditioned before features."""

    name: str
    stream: StreamSelector
    channels: tuple[str, ...]  # labels to pick; empty = every channel of the stream
    # None (as recorded), "average" (of the input's channels), labels to average, or AverageOfType
    reference: str | tuple[str, ...] | AverageOfType | None = None
    highpass_hz: float | None = None  # causal Butterworth, applied to picked channels
    notch_hz: float | None = None  # causal notch (line noise), applied to picked channels
    stall_timeout_s: float = 1.0  # no samples this long -> "input stalled"
    max_gap_s: float = 2.0  # a gap up to this long keeps long-term feature state (trends); longer: start over
    resolve_timeout_s: float = 10.0
    rate_hz: float | None = None  # expected nominal rate as written in the protocol (checked against the stream)
    unit: str | None = None  # the unit of channels whose stream description gives none (e.g. "uV")
    fnirs: NirsSpec | None = None  # a continuous-wave fNIRS stream: intensities/OD -> haemoglobin per pair
    ssp: SspSpec | None = None  # MEG: signal-space projection applied before everything else


@dataclass(frozen=True)
class NirsSpec:
    """How an fNIRS input turns light into haemoglobin (controller.dsp.nirs.front_end)."""

    ppf: float = 6.0  # partial pathlength factor of the modified Beer-Lambert law
    reference_s: float = 10.0  # OD's reference intensity: the mean over the first seconds of the stream
    short_regression: bool = True  # regress each long channel on its nearest short channel (RLS)
    short_max_m: float = 0.015  # source-detector distance below which a channel is a short channel
    short_memory_s: float = 60.0  # the regression's forgetting time
    lowpass_hz: float | None = 0.5  # causal low-pass of HbO/HbR (cardiac and faster removed)
    highpass_hz: float | None = None  # causal high-pass of HbO/HbR (slow drift)
    sci_window_s: float = 5.0  # scalp coupling index window (cardiac band correlation)
    jump_od: float = 0.1  # an OD change this large within 0.5 s is a motion artifact
    jump_hold_s: float = 2.0  # how long after the last jump a channel stays flagged


@dataclass(frozen=True)
class SspSpec:
    """MEG signal-space projectors: those the stream describes, and/or those of a -proj.fif file."""

    from_stream: bool = True
    file: str | None = None  # absolute, or resolved against the protocol file's folder


@dataclass(frozen=True)
class VolumeSourceSpec:
    """Where an fMRI input's volumes come from: a folder (files) or an LSL stream."""

    folder: str | None = None  # absolute, or resolved against the protocol file's folder
    pattern: str = "*"
    index_regex: str | None = None
    existing: Literal["skip", "process", "refuse"] = "skip"
    poll_s: float | None = None  # None: file events (inotify), polling only as a fallback
    stream: StreamSelector | None = None


@dataclass(frozen=True)
class DetrendSpec:
    drift_order: int = 2
    motion: bool = True
    spikes: bool = False


@dataclass(frozen=True)
class VolumeInputSpec:
    """An fMRI input: volumes, realigned to a reference and detrended per ROI (controller.fmri)."""

    name: str
    source: VolumeSourceSpec
    tr_s: float
    skip: int = 0  # dummy volumes not used
    reference: str = "first"  # or a NIfTI path (resolved)
    smoothing_fwhm_mm: float | None = None
    registration: str = "identity"  # or a path to a 4x4 functional-world -> MNI affine (text)
    detrend: DetrendSpec = DetrendSpec()
    stall_timeout_s: float = 0.0  # 0: 2 TR + 1 s
    resolve_timeout_s: float = 30.0

    @property
    def stall_s(self) -> float:
        return self.stall_timeout_s or 2 * self.tr_s + 1.0


@dataclass(frozen=True)
class RoiSpec:
    """A region of interest as written; controller.fmri.rois turns it into voxels on the functional grid."""

    name: str
    mask: str | None = None  # resolved path
    label: int | None = None
    sphere_center_mm: tuple[float, float, float] | None = None
    sphere_radius_mm: float | None = None
    space: Literal["native", "mni"] = "native"
    threshold: float = 0.5
    line: int = 0


@dataclass(frozen=True)
class RoiPscParams:
    roi: str
    baseline: str  # block label
    skip: int = 0  # volumes left out at the start of each baseline block (HRF)
    average: int = 1  # moving average over the last N volumes


@dataclass(frozen=True)
class RoiMeanParams:
    roi: str


@dataclass(frozen=True)
class RoiCorrelationParams:
    rois: tuple[str, str]
    window: int  # volumes
    fisher_z: bool = False


@dataclass(frozen=True)
class RunSpec:
    """One run of a multi-run fMRI session: its fixed thresholds and whether feedback is shown."""

    name: str
    index: int
    thresholds: Mapping[str, float] = field(default_factory=dict)
    feedback: bool = True


# --------------------------------------------------------------------------- features

# A feature kind's name: a kind of controller.features.registry, of a signal (band_power, phase, ...)
# or of fMRI volumes (a VolumeFeatureKind).
FeatureKind = str
PowerMethod = Literal["welch", "iir"]


WELCH_DEFAULT_SEGMENT_S = 1.0  # Welch's segment when a feature gives none: the window, at most this


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
    # Welch's method: segment length (None: the window, at most 1 s) and overlap (fraction of a segment)
    segment_s: float | None = None
    overlap: float = 0.5
    # Kind-specific parameters of the newer kinds (None for the spectral kinds); each is a
    # frozen dataclass defined by the feature's owner, e.g. SeizureParams, PhaseParams.
    params: Any = None


@dataclass(frozen=True)
class ChannelsAbove:
    """Channel vote: the feature's value is how many channels are above ``level`` (a ratio for
    line_length/area, 2.0 = 200 % of trend; a count for halfwave)."""

    level: float


ChannelReduce = Literal["mean", "median", "max"] | ChannelsAbove
TrendKind = Literal["mean", "ema"]
PhaseMethodName = Literal["ar", "etp", "hilbert"]


@dataclass(frozen=True)
class SeizureParams:
    """line_length / area: the window's measure as a PERCENTAGE of its own long-term trend.

    The feature's value is ``100 * measure / trend`` per channel, reduced over channels
    (``ll > 175 %`` = 75 % above the usual level). The trend averages the values of the
    previous ``trend_s`` (``trend_kind`` mean) or is an exponential average with that time
    constant (ema); it is NaN until ``warmup_s`` (default ``trend_s``) of values exist.
    ``FeatureSpec.band`` is an optional causal band-pass applied first.
    With ``hold_above`` a channel's trend holds while its ratio is above it (for at most
    ``hold_max_s``): a detected episode does not become the baseline it is compared with.
    ``reduce`` ChannelsAbove(level) gives the number of channels above ``level`` (a vote).
    """

    trend_s: float
    trend_kind: TrendKind = "mean"
    warmup_s: float | None = None
    reduce: ChannelReduce = "mean"
    hold_above: float | None = None  # ratio (1.5 = 150 %) above which a channel's trend holds
    hold_max_s: float | None = None


@dataclass(frozen=True)
class HalfWaveParams:
    """halfwave: count of qualified half-waves of the band-passed signal (``FeatureSpec.band``) in the window.

    A half-wave qualifies when its height is within [min_amplitude, max_amplitude] (volts) and
    its duration within [min_duration_s, max_duration_s]; None durations default to half a
    period of band.hi .. band.lo. Counts per channel are reduced with ``reduce``.
    """

    min_amplitude: float
    max_amplitude: float = float("inf")
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    reduce: ChannelReduce = "mean"


@dataclass(frozen=True)
class SlopeParams:
    """slope: least-squares slope (signal units per second) over the window, mean over channels.

    The signal is low-passed (``lowpass_hz``, causal Butterworth) or band-passed
    (``FeatureSpec.band``) first, or used as conditioned when neither is given.
    """

    lowpass_hz: float | None = None


PHASE_TARGETS: Mapping[str, float] = {"peak": 0.0, "falling": math.pi / 2, "trough": math.pi, "rising": -math.pi / 2}


@dataclass(frozen=True)
class PhaseParams:
    """phase: a phase-locked trigger on one spatially filtered signal.

    Spatial filter: ``center`` minus the mean of ``neighbours`` (a small Laplacian), or
    ``center`` alone when ``neighbours`` is empty; ``FeatureSpec.channels`` is
    ``(center, *neighbours)``. ``FeatureSpec.band`` is the rhythm's band and
    ``FeatureSpec.window_s`` the window the method reads. ``target_rad``: cosine convention,
    0 = peak, pi = trough. ``delay_s``: latency from the newest sample to a pulse (transport +
    dispatcher + device); no pulse is planned sooner than that. Gates (both optional, both
    must pass): the method's amplitude >= ``amplitude_min`` (volts), and >= the
    ``amplitude_q`` percentile of its own previous estimates over ``amplitude_over_s``.
    ``train_s``: etp only, the model is fitted on the first ``train_s`` of signal.
    The feature's value is 1.0 at the evaluation that commits to a pulse (``FeatureValue.at``
    = the predicted target crossing, LSL time) and 0.0 otherwise.
    """

    center: str
    neighbours: tuple[str, ...] = ()
    method: PhaseMethodName = "ar"
    target_rad: float = math.pi
    delay_s: float = 0.0
    min_interval_s: float = 0.0
    amplitude_min: float | None = None
    amplitude_q: float | None = None
    amplitude_over_s: float = 30.0
    train_s: float | None = None

    @staticmethod
    def default_window_s(method: str, band: Band) -> float:
        """The window a method reads when the protocol gives none."""
        return {"ar": 1.0, "hilbert": 0.5}.get(method, 1.5 / band.lo_hz)


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
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


@dataclass(frozen=True)
class Sustained:
    """``cond for DURATION``: true once ``cond`` has held continuously for duration_s."""

    item: Condition
    duration_s: float


Condition = Union[Compare, And, Or, Not, Sustained]


# --------------------------------------------------------------------------- rules, feedback


@dataclass(frozen=True)
class FeatureScale:
    """A stimulation setting driven by a feature: ``lo..hi`` of the feature maps linearly onto
    ``out_lo..out_hi`` (SI), clipped to that range, so its largest value is known at load time."""

    feature: str
    lo: float
    hi: float
    out_lo: float
    out_hi: float

    @property
    def largest(self) -> float:
        return max(self.out_lo, self.out_hi)

    def __call__(self, value: float) -> float:
        frac = (value - self.lo) / (self.hi - self.lo)
        frac = min(1.0, max(0.0, frac)) if frac == frac else 0.0  # NaN -> low end
        return self.out_lo + frac * (self.out_hi - self.out_lo)


SettingValue = Union[float, FeatureScale]
StimKind = Literal["stimulate", "set", "stop"]


@dataclass(frozen=True)
class StimAction:
    """A stimulation command a rule asks for; every one passes the safety governor.

    ``settings`` use the governor's SI keys (intensity_pct, current_a, frequency_hz,
    pulse_width_s, phases, n_pulses). 'stimulate' with ``n_pulses`` (or no duration) is a
    'fire' (one pulse or a train); 'stimulate' with ``duration_s`` and no ``n_pulses`` is a
    continuous 'start'. 'set' changes settings (``ramp_rate`` in SI/s steps a current change
    at that rate); 'stop' ends continuous stimulation. ``at``: a phase feature whose predicted
    target crossing the pulse is timed to.
    """

    kind: StimKind
    device: str
    settings: Mapping[str, SettingValue] = field(default_factory=dict)
    duration_s: float | None = None
    ramp_s: float | None = None  # start: the device's own ramp-in time
    ramp_rate: float | None = None  # set: current_a changes in steps at this rate (A/s)
    at: str | None = None
    line: int = 0

    @property
    def fires(self) -> bool:
        return self.kind == "stimulate" and (self.duration_s is None or "n_pulses" in self.settings)


@dataclass(frozen=True)
class Action:
    """What a rule does when its condition holds: feedback, a marker, or stimulation."""

    feedback: str | None = None  # e.g. "reward": emitted as a marker with the source time
    marker: str | None = None  # a free marker string
    stimulation: StimAction | None = None


@dataclass(frozen=True)
class Rule:
    index: int
    during: tuple[str, ...]  # block labels where the rule is live; empty = always
    when: Condition
    do: Action
    source: str = ""  # the condition text as written, for journals and reports
    line: int = 0  # YAML line of the rule, for messages
    at: Literal["block_start", "block_end"] | None = None  # fire once at block edges instead of `when`
    refractory_s: float | None = None  # after firing, the rule is quiet this long
    max_per_episode: int | None = None  # firings per episode (firings closer than episode_gap_s)
    episode_gap_s: float | None = None
    max_per_session: int | None = None
    max_per_day: int | None = None  # firings per calendar day (site timezone), counted in the dose ledger

    @property
    def label(self) -> str:
        return f"rule {self.index + 1} (line {self.line})" if self.line else f"rule {self.index + 1}"


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
class DeviceUse:
    """A site device the protocol drives and the settings applied before arming."""

    name: str  # the site config's device name
    settings: Mapping[str, float] = field(default_factory=dict)  # governor SI keys
    line: int = 0


@dataclass(frozen=True)
class Interlock:
    """While ``when`` holds, stimulation is inhibited (e.g. an artifact feature over its limit)."""

    name: str
    when: Condition
    source: str = ""
    clear_after_s: float = 0.0  # the condition must be false this long before stimulation resumes
    line: int = 0


@dataclass(frozen=True)
class Protocol:
    name: str
    inputs: dict[str, InputSpec]
    features: dict[str, FeatureSpec]
    thresholds: dict[str, ThresholdSpec]
    timeline: tuple[Block, ...]
    rules: tuple[Rule, ...]
    feedback: FeedbackSpec | None = None
    devices: dict[str, DeviceUse] = field(default_factory=dict)
    interlocks: tuple[Interlock, ...] = ()
    description: str = ""
    path: str = ""  # file it was loaded from
    sha256: str = ""  # of the file's bytes
    extra: dict[str, Any] = field(default_factory=dict)  # reserved for later sections
    volume_inputs: dict[str, VolumeInputSpec] = field(default_factory=dict)  # fMRI inputs (not LSL sample streams)
    rois: dict[str, RoiSpec] = field(default_factory=dict)
    runs: tuple[RunSpec, ...] = ()
    run: RunSpec | None = None  # the run this session is (see with_run)

    @property
    def duration_s(self) -> float:
        return sum(b.duration_s for b in self.timeline)
