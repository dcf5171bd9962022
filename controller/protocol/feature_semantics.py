"""Whole-protocol checks and compilation of the newer feature kinds (line_length, area,
halfwave, slope, phase), kept apart from ``semantics`` so each kind's rules sit together.

``FeatureKindChecks.check`` reports, with positions, what a kind's declaration gets wrong
beyond its shape: a trend shorter than the window, a Laplacian electrode that is not a channel
of the input, ETP without training, and, when the input states its rate, whatever would stop
the kind from running at that rate (the same test the runner applies to the real stream).
``compile_feature`` turns any feature declaration into its ``FeatureSpec``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.protocol import compiled as c
from controller.protocol import raw, units
from controller.protocol.source import Loc

if TYPE_CHECKING:  # pragma: no cover
    from controller.protocol.semantics import Semantics

NEW_KINDS = frozenset({"line_length", "area", "halfwave", "slope", "phase"})
ETP_SETTLE_S = 1.0  # controller.dsp.phase_etp.SETTLE_S: training skips this much at each end
_EPS = 1e-9


def _sec(value: float) -> str:
    return units.format_quantity(value, units.DURATION)


def _hz(value: float) -> str:
    return units.format_quantity(value, units.FREQUENCY)


def _band(value: tuple[float, float] | None) -> c.Band | None:
    return None if value is None else c.Band(float(value[0]), float(value[1]))


def etp_min_train_s(band_lo_hz: float) -> float:
    """Shortest ETP training segment: the settling time at both ends plus four cycles."""
    return 2 * ETP_SETTLE_S + 4.0 / band_lo_hz


def _reduce(reduce: Any, *, percent: bool) -> c.ChannelReduce:
    """A statistic as is; a vote's level as the feature's internal unit (a ratio for percentages)."""
    if isinstance(reduce, str):
        return reduce  # type: ignore[return-value]
    q = reduce.channels_above
    return c.ChannelsAbove(q.value / 100.0 if percent else q.value)


def kind_params(kind: str, p: Any) -> Any:
    """The compiled params dataclass of a declaration of one of the newer kinds (None otherwise)."""
    if kind in ("line_length", "area"):
        hold = None if p.hold_above is None else p.hold_above.value / 100.0
        return c.SeizureParams(p.trend, p.trend_kind, p.warmup, _reduce(p.reduce, percent=True), hold, p.hold_max)
    if kind == "halfwave":
        lo, hi = p.duration if p.duration is not None else (None, None)
        top = p.max_amplitude if p.max_amplitude is not None else float("inf")
        return c.HalfWaveParams(p.min_amplitude, top, lo, hi, _reduce(p.reduce, percent=False))
    if kind == "slope":
        return c.SlopeParams(p.lowpass)
    if kind == "phase":
        lap = p.laplacian
        return c.PhaseParams(
            center=lap.center if lap is not None else p.channel,
            neighbours=tuple(lap.neighbours) if lap is not None else (),
            method=p.method,
            target_rad=p.target,
            delay_s=p.delay,
            min_interval_s=p.min_interval,
            amplitude_min=p.amplitude,
            amplitude_q=None if p.amplitude_q is None else float(p.amplitude_q),
            amplitude_over_s=p.amplitude_over,
            train_s=p.train,
        )
    return None


def compile_feature(name: str, feat: raw.FeatureDecl, input_channels: tuple[str, ...]) -> c.FeatureSpec:
    """The ``FeatureSpec`` of a validated declaration; ``input_channels`` are its input's channels."""
    kind, p = feat.kind, feat.params
    if kind == "phase":
        band = _band(p.band)
        window = p.window if p.window is not None else c.PhaseParams.default_window_s(p.method, band)  # type: ignore[arg-type]
        return c.FeatureSpec(
            name=name, kind="phase", input=p.input, channels=p.channels, window_s=window, every_s=p.every,
            band=band, params=kind_params(kind, p),
        )
    return c.FeatureSpec(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        input=p.input,
        channels=tuple(p.channels) if p.channels is not None else input_channels,
        window_s=p.window,
        every_s=p.every,
        method=getattr(p, "method", "welch"),
        band=_band(getattr(p, "band", None)),
        numerator=_band(getattr(p, "numerator", None)),
        denominator=_band(getattr(p, "denominator", None)),
        total=_band(getattr(p, "total", None)),
        segment_s=getattr(p, "segment", None),
        overlap=getattr(p, "overlap", 50.0) / 100.0,
        params=kind_params(kind, p),
    )


class FeatureKindChecks:
    """The newer kinds' checks, reported through the protocol's ``Semantics``."""

    def __init__(self, sem: "Semantics") -> None:
        self.sem = sem

    def check(self, name: str, feat: raw.FeatureDecl, inp: raw.InputDecl | None) -> None:
        kind, p = feat.kind, feat.params
        base: Loc = ("features", name, kind)
        before = len(self.sem.issues)
        if kind in ("line_length", "area"):
            self._trend(base, p)
            self._percent(base + ("hold_above",), "hold_above", p.hold_above, above=100.0)
            if not isinstance(p.reduce, str):
                self._percent(base + ("reduce", "channels_above"), "channels_above", p.reduce.channels_above, above=0.0)
        elif kind == "halfwave":
            if not isinstance(p.reduce, str) and p.reduce.channels_above.family is not None:
                self.sem.error(base + ("reduce", "channels_above"), "channels_above: a half-wave count is a plain "
                               f"number, e.g. 6, not {p.reduce.channels_above}")
            if p.max_amplitude is not None and p.max_amplitude <= p.min_amplitude:
                f = units.VOLTAGE
                self.sem.error(
                    base + ("max_amplitude",),
                    f"max_amplitude: {units.format_quantity(p.max_amplitude, f)} is not above min_amplitude "
                    f"{units.format_quantity(p.min_amplitude, f)}",
                )
        elif kind == "slope":
            if p.lowpass is not None and p.band is not None:
                self.sem.error(base + ("band",), "band: give a lowpass or a band, not both", key=True)
        elif kind == "phase":
            self._phase(base, p, inp)
        if inp is not None and inp.rate is not None and len(self.sem.issues) == before:
            self._at_rate(base, name, feat, inp)  # (it would repeat what was just reported)

    def _percent(self, loc: Loc, key: str, q: Any, *, above: float) -> None:
        """A level of line_length/area is a percentage of its trend, above ``above`` %."""
        if q is None:
            return
        if q.family != units.PERCENT:
            self.sem.error(loc, f"{key}: line length and area are percentages of their trend; write e.g. "
                           f"{'150 %' if above >= 100 else '200 %'}, not {q}")
        elif not q.value > above:
            self.sem.error(loc, f"{key}: must be above {above:g} % (100 % is the trend itself), got {q}")

    def _trend(self, base: Loc, p: Any) -> None:
        if p.trend < p.window - _EPS:
            self.sem.error(
                base + ("trend",),
                f"trend: {_sec(p.trend)} is shorter than the window {_sec(p.window)}; the trend is the usual "
                f"level the window is compared with, so it must span at least the window (typically 30 to 60 windows)",
            )
        elif p.warmup is not None and p.warmup > p.trend + _EPS:
            self.sem.error(
                base + ("warmup",),
                f"warmup: {_sec(p.warmup)} is longer than the trend {_sec(p.trend)}; use at most the trend",
            )
        elif p.warmup is not None and p.warmup < p.every - _EPS:
            self.sem.error(
                base + ("warmup",),
                f"warmup: {_sec(p.warmup)} is shorter than one evaluation (every {_sec(p.every)}); use at least {_sec(p.every)}",
            )

    def _phase(self, base: Loc, p: Any, inp: raw.InputDecl | None) -> None:
        if inp is not None:
            sites: list[tuple[Loc, str, str]] = []
            if p.laplacian is not None:
                sites.append((base + ("laplacian", "center"), "laplacian center", p.laplacian.center))
                sites += [
                    (base + ("laplacian", "neighbours", i), "laplacian neighbour", ch)
                    for i, ch in enumerate(p.laplacian.neighbours)
                ]
            else:
                sites.append((base + ("channel",), "channel", p.channel))
            for loc, what, ch in sites:
                if ch not in inp.channels:
                    self.sem.error(
                        loc,
                        f"{what}: {ch!r} is not a channel of input {p.input!r}; add it to the input's channels "
                        f"(its channels: {', '.join(inp.channels)})",
                    )
        lo = p.band[0]
        cycle = 1.0 / lo
        if p.window is not None and p.window < cycle - _EPS:
            self.sem.error(
                base + ("window",),
                f"window: {_sec(p.window)} is shorter than one cycle of {_hz(lo)} ({_sec(cycle)}), the band's low "
                f"edge; use at least {_sec(cycle)}",
            )
        if p.method == "etp" and p.train is None:
            self.sem.error(
                base + ("method",),
                f"method: etp learns the rhythm's period first; give 'train: DURATION' (at least "
                f"{_sec(etp_min_train_s(lo))}, e.g. 20 s), or use method: ar",
            )
        elif p.method != "etp" and p.train is not None:
            self.sem.error(base + ("train",), "train: only the etp method trains; remove it or use method: etp", key=True)
        elif p.train is not None and p.train < etp_min_train_s(lo) - _EPS:
            self.sem.error(
                base + ("train",),
                f"train: {_sec(p.train)} is too short to learn a rhythm at {_hz(lo)}: etp needs "
                f"{_sec(2 * ETP_SETTLE_S)} to settle plus 4 cycles, at least {_sec(etp_min_train_s(lo))}",
            )
        if p.amplitude_q is not None and p.amplitude_over < p.every - _EPS:
            self.sem.error(
                base + ("amplitude_over",),
                f"amplitude_over: {_sec(p.amplitude_over)} is shorter than one estimate (every {_sec(p.every)})",
            )

    def _at_rate(self, base: Loc, name: str, feat: raw.FeatureDecl, inp: raw.InputDecl) -> None:
        from controller.dsp.feature_kinds import rate_problems  # numpy/scipy only when a rate is stated

        spec = compile_feature(name, feat, tuple(inp.channels))
        nyquist = inp.rate / 2
        if spec.band is not None and spec.band.hi_hz >= nyquist:
            return  # reported as a band over Nyquist
        for field, message in rate_problems(spec, inp.rate):
            loc = base + (field,) if field in feat.params.model_fields_set else base  # a default: the feature
            self.sem.error(loc, f"{field}: {message} (input {feat.params.input!r}, stated rate {_hz(inp.rate)})")
