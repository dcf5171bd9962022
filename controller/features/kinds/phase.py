"""phase: a phase-locked pulse trigger. 1 at the evaluation that commits to a pulse, else 0;
the pulse's time (the predicted target crossing) goes with the value, for
'stimulate: {at: FEATURE}'. The methods live in ``controller.dsp.phase.tracker*``."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator
from scipy import signal

from controller.dsp.features import ChannelSource
from controller.dsp.phase.etp import fit_etp
from controller.dsp.phase.feature import PhaseFeature, gate_length, make_method, spatial_weights
from controller.dsp.phase.tracker import PhaseEstimate
from controller.dsp.phase.trigger import PhaseTrigger
from controller.dsp.schedule import to_samples
from controller.dsp.seizure.features import halfwave_ring_capacity
from controller.lang import units
from controller.lang.compiled import PHASE_TARGETS, Band, FeatureSpec, PhaseParams
from controller.lang.fields import Amplitude, ChannelList, Decl, DelayDuration, Duration, FreqBand, Name, fail

from ..kind import CheckContext, Evaluator, FeatureKind, FilterKey, OfflineValues, window_ends
from ..registration import register
from ..wording import EPS, hz, sec

ETP_SETTLE_S = 1.0  # controller.dsp.phase.etp.SETTLE_S: training skips this much at each end
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


class LaplacianDecl(Decl):
    """A small surface Laplacian: the centre electrode minus the mean of its neighbours."""

    center: str = Field(description="The centre electrode, e.g. C3.")
    neighbours: ChannelList = Field(
        description="Its nearest electrodes, e.g. [FC1, FC5, CP1, CP5] (10-10) or [F3, Cz, P3, T3] (10-20 caps)."
    )

    @model_validator(mode="after")
    def _center_not_a_neighbour(self) -> LaplacianDecl:
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
    def _one_signal(self) -> PhaseDecl:
        if (self.channel is None) == (self.laplacian is None):
            fail("give exactly one of channel (e.g. C3) or laplacian (e.g. {center: C3, neighbours: [FC1, FC5, CP1, CP5]})")
        return self

    @property
    def channels(self) -> tuple[str, ...]:
        """The input channels it reads: the channel, or the Laplacian's centre then neighbours."""
        if self.laplacian is not None:
            return (self.laplacian.center, *self.laplacian.neighbours)
        return (self.channel,)  # type: ignore[return-value]


def etp_min_train_s(band_lo_hz: float) -> float:
    """Shortest ETP training segment: the settling time at both ends plus four cycles."""
    return 2 * ETP_SETTLE_S + 4.0 / band_lo_hz


@register
class Phase(FeatureKind):
    name = "phase"
    order = 90
    declaration = PhaseDecl
    summary = "Phase-locked pulse trigger: 1 when a pulse is committed (timed to the predicted target phase), else 0."
    timed = True

    # ------------------------------------------------------------------ language

    def params(self, decl: Any) -> PhaseParams:
        lap = decl.laplacian
        return PhaseParams(
            center=lap.center if lap is not None else decl.channel,
            neighbours=tuple(lap.neighbours) if lap is not None else (),
            method=decl.method,
            target_rad=decl.target,
            delay_s=decl.delay,
            min_interval_s=decl.min_interval,
            amplitude_min=decl.amplitude,
            amplitude_q=None if decl.amplitude_q is None else float(decl.amplitude_q),
            amplitude_over_s=decl.amplitude_over,
            train_s=decl.train,
        )

    def compile(self, name: str, decl: Any, input_channels: tuple[str, ...]) -> FeatureSpec:
        band = Band(float(decl.band[0]), float(decl.band[1]))
        window = decl.window if decl.window is not None else PhaseParams.default_window_s(decl.method, band)
        return FeatureSpec(name=name, kind=self.name, input=decl.input, channels=decl.channels, window_s=window,
                           every_s=decl.every, band=band, params=self.params(decl))

    def check(self, p: Any, ctx: CheckContext) -> None:
        inp = ctx.input
        if inp is not None:
            sites: list[tuple[tuple, str, str]] = []
            if p.laplacian is not None:
                sites.append((("laplacian", "center"), "laplacian center", p.laplacian.center))
                sites += [(("laplacian", "neighbours", i), "laplacian neighbour", ch)
                          for i, ch in enumerate(p.laplacian.neighbours)]
            else:
                sites.append((("channel",), "channel", p.channel))
            for loc, what, ch in sites:
                if ch not in inp.channels:
                    ctx.fail(loc, f"{what}: {ch!r} is not a channel of input {p.input!r}; add it to the input's channels "
                             f"(its channels: {', '.join(inp.channels)})")
        lo = p.band[0]
        cycle = 1.0 / lo
        if p.window is not None and p.window < cycle - EPS:
            ctx.fail("window", f"window: {sec(p.window)} is shorter than one cycle of {hz(lo)} ({sec(cycle)}), the "
                     f"band's low edge; use at least {sec(cycle)}")
        if p.method == "etp" and p.train is None:
            ctx.fail("method", f"method: etp learns the rhythm's period first; give 'train: DURATION' (at least "
                     f"{sec(etp_min_train_s(lo))}, e.g. 20 s), or use method: ar")
        elif p.method != "etp" and p.train is not None:
            ctx.fail("train", "train: only the etp method trains; remove it or use method: etp", key=True)
        elif p.train is not None and p.train < etp_min_train_s(lo) - EPS:
            ctx.fail("train", f"train: {sec(p.train)} is too short to learn a rhythm at {hz(lo)}: etp needs "
                     f"{sec(2 * ETP_SETTLE_S)} to settle plus 4 cycles, at least {sec(etp_min_train_s(lo))}")
        if p.amplitude_q is not None and p.amplitude_over < p.every - EPS:
            ctx.fail("amplitude_over",
                     f"amplitude_over: {sec(p.amplitude_over)} is shorter than one estimate (every {sec(p.every)})")

    def rate_problems(self, spec: FeatureSpec, fs: float) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if spec.band is None or spec.band.hi_hz >= fs / 2:
            return out
        try:
            make_method(spec, fs)
        except ValueError as exc:
            out.append(("window", str(exc)))
        p = spec.params
        if p.amplitude_q is not None and gate_length(spec, fs) < 1:
            out.append(("amplitude_over", f"amplitude_over {p.amplitude_over_s:g} s is shorter than one evaluation at {fs:g} Hz"))
        return out

    # ------------------------------------------------------------------ online

    def check_spec(self, spec: FeatureSpec, fs: float) -> None:
        if not isinstance(spec.params, PhaseParams):
            raise ValueError(f"feature {spec.name!r} ({spec.kind}) needs params of type PhaseParams, got {spec.params!r}")
        if spec.band is None:
            raise ValueError(f"feature {spec.name!r} ({spec.kind}) needs a band")

    def reads(self, spec: FeatureSpec) -> tuple[FilterKey, ...]:
        return (None,)  # the method filters the spatially filtered signal itself

    def ring_capacity(self, spec: FeatureSpec, window: int, every: int) -> int:
        return halfwave_ring_capacity(window, every)  # the method's causal filter consumes every sample once

    def evaluator(self, spec: FeatureSpec, sources: Sequence[ChannelSource], fs: float,
                  window: int, every: int) -> Evaluator:
        return PhaseFeature(sources[0], spec, fs, every)

    # ------------------------------------------------------------------ offline

    def offline(self, x: np.ndarray, fs: float, spec: FeatureSpec, stamps: np.ndarray) -> OfflineValues:
        """The spatial filter and the method's causal filter on the whole recording, the method on
        sliced windows, the amplitude gate from the list of previous estimates, and the same
        ``PhaseTrigger`` decisions."""
        p = spec.params
        s = x @ spatial_weights(p)
        window, every = to_samples(spec.window_s, fs), to_samples(spec.every_s, fs)
        ends = window_ends(s.size, window, every)
        start, ready = 0, 0  # filtering starts at `start`; estimates from sample `ready` on
        if p.method == "etp":
            n_train = to_samples(p.train_s, fs)
            model = None
            while model is None and start + n_train <= s.size:
                try:
                    model = fit_etp(s[start : start + n_train], fs, spec.band)
                except ValueError:
                    start += n_train
            if model is None:
                return OfflineValues(ends, np.zeros(ends.size), np.full(ends.size, math.nan))
            method = make_method(spec, fs, model)
            ready = start + n_train - 1
        else:
            method = make_method(spec, fs)
        y = s[start:] if method.causal_sos is None else signal.sosfilt(method.causal_sos, s[start:])
        trigger = PhaseTrigger(min_interval_s=p.min_interval_s, hop_s=every / fs, device_delay_s=p.delay_s)
        history: list[float] = []
        n_gate = gate_length(spec, fs) if p.amplitude_q is not None else 0
        values, at = np.zeros(ends.size), np.full(ends.size, math.nan)
        for i, k in enumerate(ends):
            if k < ready or k - start + 1 < window:
                continue
            phase, amp, freq, ahead = method(y[k - start - window + 1 : k - start + 1])
            ok = p.amplitude_min is None or amp >= p.amplitude_min
            if p.amplitude_q is not None:
                ok = ok and len(history) >= n_gate and amp >= np.percentile(history[-n_gate:], p.amplitude_q)
                history.append(amp if math.isfinite(amp) else 0.0)
            if not ok:
                continue
            t = float(stamps[k])
            pulse = trigger.decide(PhaseEstimate(phase, amp, freq, t + p.delay_s, t + ahead, t, int(k)))
            if pulse is not None:
                values[i], at[i] = 1.0, pulse
        return OfflineValues(ends, values, at)
