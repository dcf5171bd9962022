"""What line_length and area share: a per-channel window measure as a PERCENTAGE of its own
long-term trend (``ll > 175 %`` = 75 % above the usual level), reduced over channels or
counted as a channel vote."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from controller.dsp.features import ChannelSource
from controller.dsp.seizure.detectors import TrendedWindowParams
from controller.dsp.seizure.trend import Trend, hold_evaluations, trend_lengths
from controller.lang import units
from controller.lang.compiled import ChannelsAbove, FeatureSpec, SeizureParams
from controller.lang.fields import Duration, FreqBand, Level

from ..channel_reduce import ChannelReduce, compile_reduce, reduce_offline
from ..declaration import FeatureCommon
from ..kind import CheckContext, Evaluator, FeatureKind, OfflineValues
from ..wording import EPS, sec


class TrendedDecl(FeatureCommon):
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


class _Percent:
    """A ratio evaluator scaled to percent (the unit protocols write: ``ll > 175 %``)."""

    __slots__ = ("_inner",)

    def __init__(self, inner) -> None:
        self._inner = inner

    def reset(self) -> None:
        self._inner.reset()

    def __call__(self) -> float:
        return 100.0 * self._inner()


class TrendedKind(FeatureKind):
    unit = units.PERCENT
    measure: ClassVar[type]  # the online evaluator class (LineLengthFeature, AreaFeature)
    offline_measure: ClassVar[Any]  # its whole-recording reference (offline_line_length, offline_area)

    # ------------------------------------------------------------------ language

    def params(self, decl: Any) -> SeizureParams:
        hold = None if decl.hold_above is None else decl.hold_above.value / 100.0
        return SeizureParams(decl.trend, decl.trend_kind, decl.warmup, compile_reduce(decl.reduce, percent=True),
                             hold, decl.hold_max)

    def check(self, decl: Any, ctx: CheckContext) -> None:
        self._check_trend(decl, ctx)
        _check_percent(ctx, ("hold_above",), "hold_above", decl.hold_above, above=100.0)
        if not isinstance(decl.reduce, str):
            _check_percent(ctx, ("reduce", "channels_above"), "channels_above", decl.reduce.channels_above, above=0.0)

    @staticmethod
    def _check_trend(p: Any, ctx: CheckContext) -> None:
        if p.trend < p.window - EPS:
            ctx.fail("trend",
                     f"trend: {sec(p.trend)} is shorter than the window {sec(p.window)}; the trend is the usual "
                     f"level the window is compared with, so it must span at least the window (typically 30 to 60 windows)")
        elif p.warmup is not None and p.warmup > p.trend + EPS:
            ctx.fail("warmup", f"warmup: {sec(p.warmup)} is longer than the trend {sec(p.trend)}; use at most the trend")
        elif p.warmup is not None and p.warmup < p.every - EPS:
            ctx.fail("warmup", f"warmup: {sec(p.warmup)} is shorter than one evaluation (every {sec(p.every)}); "
                     f"use at least {sec(p.every)}")

    def rate_problems(self, spec: FeatureSpec, fs: float) -> list[tuple[str, str]]:
        out = []
        try:
            trend_lengths(spec.params.trend_s, spec.params.warmup_s, round(spec.every_s * fs), fs)
        except ValueError as exc:
            out.append(("warmup" if "warm-up" in str(exc) else "trend", f"{exc} at {fs:g} Hz"))
        return out

    # ------------------------------------------------------------------ online

    def check_spec(self, spec: FeatureSpec, fs: float) -> None:
        if not isinstance(spec.params, SeizureParams):
            raise ValueError(f"feature {spec.name!r} ({spec.kind}) needs params of type SeizureParams, got {spec.params!r}")

    def warmup_s(self, spec: FeatureSpec) -> float:
        p = spec.params
        return max(p.trend_s if p.warmup_s is None else p.warmup_s, spec.window_s)

    def evaluator(self, spec: FeatureSpec, sources: Sequence[ChannelSource], fs: float,
                  window: int, every: int) -> Evaluator:
        p = spec.params
        source = sources[0]
        n = source.ring.n_channels if source.rows is None else source.rows.size
        length, min_count = trend_lengths(p.trend_s, p.warmup_s, every, fs)
        trend = Trend(n, length, min_count, p.trend_kind, p.hold_above, hold_evaluations(p.hold_max_s, every, fs))
        feature = self.measure(source, window, trend, "ratio", p.reduce)
        return feature if isinstance(p.reduce, ChannelsAbove) else _Percent(feature)  # a vote is a channel count

    # ------------------------------------------------------------------ offline

    def offline(self, x: np.ndarray, fs: float, spec: FeatureSpec, stamps: np.ndarray) -> OfflineValues:
        """``seizure_offline``: sliding-window sums and cumulative-sum trends over the whole recording."""
        p = spec.params
        params = TrendedWindowParams(spec.window_s, spec.every_s, p.trend_s, p.trend_kind, p.warmup_s, spec.band,
                                     p.hold_above, p.hold_max_s)
        out = type(self).offline_measure(x, fs, params)
        return OfflineValues.untimed(out.sample_index, reduce_offline(out.ratio, p.reduce, percent=True))


def _check_percent(ctx: CheckContext, loc: tuple, key: str, q: Any, *, above: float) -> None:
    """A level of line_length/area is a percentage of its trend, above ``above`` %."""
    if q is None:
        return
    if q.family != units.PERCENT:
        ctx.fail(loc, f"{key}: line length and area are percentages of their trend; write e.g. "
                 f"{'150 %' if above >= 100 else '200 %'}, not {q}")
    elif not q.value > above:
        ctx.fail(loc, f"{key}: must be above {above:g} % (100 % is the trend itself), got {q}")


