"""sensor_power: band power over a group of MEG sensors of ONE type: planar gradiometer pairs combined,
or magnetometers.

A Neuromag/MEGIN position has two planar gradiometers measuring the field's gradient in orthogonal
directions; their root-sum-square is the gradient's magnitude whatever its direction, so a pair's power is
the sum of its two gradiometers' powers (RSS squared), and the value is that, averaged over pairs (T^2/m^2).
Magnetometers measure the field itself (T^2): a different unit and a different depth sensitivity, so one
feature never mixes the two (use two features). Sensors come from ``channels`` or from named regions
(``selection``: MNE's Vectorview selections, e.g. Left-occipital), narrowed to the chosen type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field, WithJsonSchema

from controller.dsp.features import ChannelSource
from controller.dsp.meg.sensors import SELECTIONS, canonical_label, grad_pairs, selection, sensor_kind, sensors_of
from controller.lang.compiled import Band, FeatureSpec
from controller.lang.fields import FreqBand, fail

from ..kind import CheckContext, Evaluator, OfflineValues
from ..registration import register
from ._power import PowerCommon, PowerKind

Sensors = Literal["grad", "mag"]
_NOUN = {"grad": "planar gradiometer", "mag": "magnetometer"}


def _selections(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        fail(f"expected a Vectorview selection like Left-occipital, or a list of them, got {value!r}")
    for v in value:
        if v not in SELECTIONS:
            fail(f"unknown selection {v!r}; the Vectorview selections are {', '.join(SELECTIONS)}")
    return tuple(value)


Selections = Annotated[tuple[str, ...] | None, BeforeValidator(_selections), WithJsonSchema(
    {"anyOf": [{"enum": list(SELECTIONS)}, {"type": "array", "items": {"enum": list(SELECTIONS)}, "minItems": 1}]})]


class SensorPowerDecl(PowerCommon):
    """Band power over MEG sensors of one type: gradiometer pairs (root-sum-square) or magnetometers."""

    band: FreqBand = Field(description="The band, e.g. [8 Hz, 12 Hz].")
    sensors: Sensors = Field(description="grad: planar gradiometer pairs, combined per pair (T^2/m^2); "
                                         "mag: magnetometers (T^2).")
    selection: Selections = Field(None, description="Sensor regions (MNE's Vectorview selections), e.g. "
                                                    "[Left-occipital, Right-occipital]; or list channels.")


@dataclasses.dataclass(frozen=True)
class SensorParams:
    sensors: str
    factor: float  # 2 for gradiometer pairs: a pair's power is the sum of its two channels'


class _Scaled:
    """The channel-mean power, times the number of channels per sensor (a pair's power is a sum)."""

    __slots__ = ("_inner", "_factor")

    def __init__(self, inner: Evaluator, factor: float) -> None:
        self._inner = inner
        self._factor = factor

    def __call__(self) -> float:
        return float(self._inner()) * self._factor

    def reset(self) -> None:
        reset = getattr(self._inner, "reset", None)
        if reset is not None:
            reset()


@register
class SensorPower(PowerKind):
    name = "sensor_power"
    order = 15
    declaration = SensorPowerDecl
    summary = ("MEG: band power over gradiometer pairs (RSS) or magnetometers, e.g. "
               "{input: meg, sensors: grad, selection: [Left-occipital, Right-occipital], band: [8 Hz, 12 Hz], "
               "window: 1 s, every: 50 ms}.")

    def power_bands(self, spec: FeatureSpec) -> tuple[Band, ...]:
        if spec.band is None:
            raise ValueError(f"feature {spec.name!r} ({spec.kind}) needs a band")
        return (spec.band,)

    def params(self, decl: Any) -> SensorParams:
        return SensorParams(decl.sensors, 2.0 if decl.sensors == "grad" else 1.0)

    def check(self, decl: Any, ctx: CheckContext) -> None:
        super().check(decl, ctx)
        if decl.selection is None and decl.channels is None:
            ctx.fail("sensors", "give the sensors' region (selection: [Left-occipital, ...]) or list channels",
                     key=True)
            return
        for i, ch in enumerate(decl.channels or ()):
            found = sensor_kind(ch)
            if found is not None and found != decl.sensors:
                ctx.fail(("channels", i),
                         f"channels: {ch!r} is a {_NOUN[found]} (Neuromag names ending in {1 if found == 'mag' else '2 or 3'}), "
                         f"but sensors: {decl.sensors} reads {_NOUN[decl.sensors]}s; their units differ (T vs T/m): "
                         f"put it in a feature with sensors: {found}")
        if decl.sensors == "grad" and decl.channels:
            try:
                grad_pairs(tuple(decl.channels))
            except ValueError as exc:
                ctx.fail("channels", f"channels: {exc}")

    def compile(self, name: str, decl: Any, input_channels: tuple[str, ...]) -> FeatureSpec:
        spec = super().compile(name, decl, input_channels)
        if decl.selection is not None:
            names = tuple(n for sel in decl.selection for n in selection(sel))
            channels = sensors_of(names, decl.sensors)
        else:
            channels = tuple(c for c in decl.channels if sensor_kind(c) in (None, decl.sensors))
        return dataclasses.replace(spec, channels=channels)

    def stream_problems(self, spec: FeatureSpec, labels: Sequence[str], types: Sequence[str]) -> list[tuple[str, str]]:
        """Each sensor of the stream's declared type (the stream's description overrules the names)."""
        if not types:
            return []
        by_label = {canonical_label(lab): t.strip().casefold() for lab, t in zip(labels, types)}
        want = spec.params.sensors
        wrong = [c for c in spec.channels if by_label.get(canonical_label(c), want) != want]
        if not wrong:
            return []
        kinds = sorted({by_label[canonical_label(c)] for c in wrong})
        return [("sensors", f"sensors: {want} reads {_NOUN[want]}s, but the stream says {len(wrong)} of its channels "
                            f"are {', '.join(kinds)} (e.g. {wrong[0]!r}); their units differ (T vs T/m): "
                            "one feature per sensor type")]

    def evaluator(self, spec: FeatureSpec, sources: Sequence[ChannelSource], fs: float,
                  window: int, every: int) -> Evaluator:
        inner = super().evaluator(spec, sources, fs, window, every)
        return inner if spec.params.factor == 1.0 else _Scaled(inner, spec.params.factor)

    def offline(self, x: np.ndarray, fs: float, spec: FeatureSpec, stamps: np.ndarray) -> OfflineValues:
        index, value, at = super().offline(x, fs, spec, stamps)
        return OfflineValues(index, value * spec.params.factor, at)
