"""The fNIRS and MEG parts of a signal input's declaration: ``fnirs:`` (light -> haemoglobin) and ``ssp:``
(MEG signal-space projection).

Both are optional keys of an input; an input with ``fnirs:`` names source-detector pairs in its
``channels`` ('S1_D1', or 'S1_D1 760' per wavelength) and its features read haemoglobin per pair.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

from controller.lang import units
from controller.lang.fields import Decl, Duration, fail
from controller.lang.fields import quantity_schema as _quantity_schema


def _distance_m(value: Any) -> float:
    try:
        q = units.parse_quantity(value, units.LENGTH)
    except units.UnitError as exc:
        fail(str(exc))
    if not 0 < q.value < 0.1:
        fail(f"expected a source-detector distance between 0 and 10 cm, got {units.shown(value)}")
    return q.value


Distance = Annotated[float, BeforeValidator(_distance_m),
                     WithJsonSchema(_quantity_schema(units.LENGTH, ["15 mm"], "A distance: mm, cm or m."))]


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        fail(f"expected a positive number, got {units.shown(value)}")
    return float(value)


PositiveNumber = Annotated[float, BeforeValidator(_positive_number), WithJsonSchema({"type": "number", "exclusiveMinimum": 0})]


def _frequency_or_off(value: Any) -> float | None:
    if value is False or value is None:
        return None
    try:
        q = units.parse_quantity(value, units.FREQUENCY)
    except units.UnitError as exc:
        fail(f"{exc}, or false for none")
    if not q.value > 0:
        fail(f"expected a frequency above 0 Hz, got {units.shown(value)}")
    return q.value


OptionalFrequency = Annotated[
    float | None, BeforeValidator(_frequency_or_off),
    WithJsonSchema({"anyOf": [_quantity_schema(units.FREQUENCY, ["0.5 Hz"], "A frequency: Hz."), {"const": False}]})]


class ShortChannelsDecl(Decl):
    """Short-separation regression: systemic (scalp) signal removed from every long channel."""

    max_distance: Distance = Field(0.015, description="Pairs closer than this are short channels, e.g. 15 mm.")
    memory: Duration = Field("60 s", validate_default=True,
                             description="How far back the recursive least-squares fit remembers, e.g. 60 s.")


class NirsQualityDecl(Decl):
    """Optode contact and motion, per pair (the optode_quality feature reads them)."""

    sci_window: Duration = Field("5 s", validate_default=True,
                                 description="Window of the scalp coupling index (cardiac-band correlation of the two wavelengths).")
    jump: PositiveNumber = Field(0.1, description="An optical-density change this large within 0.5 s is a motion artifact.")
    hold: Duration = Field("2 s", validate_default=True, description="A pair stays flagged this long after its last jump.")


def _short_channels(value: Any) -> Any:
    if value is False or value is None:
        return None
    if value is True:
        return {}
    return value


class FnirsDecl(Decl):
    """A continuous-wave fNIRS stream: optical density, modified Beer-Lambert law, short-separation regression."""

    ppf: PositiveNumber = Field(6.0, description="Partial pathlength factor (MNE's default 6).")
    reference: Duration = Field(
        "10 s", validate_default=True,
        description="Optical density is relative to each channel's mean intensity over the first seconds of the stream.")
    short_channels: Annotated[ShortChannelsDecl | None, BeforeValidator(_short_channels), WithJsonSchema(
        {"anyOf": [{"type": "object", "additionalProperties": False,
                    "properties": {"max_distance": _quantity_schema(units.LENGTH, ["15 mm"], "A distance: mm, cm or m."),
                                   "memory": _quantity_schema(units.DURATION, ["60 s"], "A duration.")}},
                   {"type": "boolean"}]})] = Field(
        default_factory=ShortChannelsDecl,
        description="Short-separation regression ({max_distance: 15 mm, memory: 60 s}); false turns it off.")
    lowpass: OptionalFrequency = Field(
        "0.5 Hz", validate_default=True, description="Causal low-pass of HbO/HbR, e.g. 0.5 Hz; false for none.")
    highpass: OptionalFrequency = Field(
        None, description="Causal high-pass of HbO/HbR against slow drift, e.g. 0.005 Hz; keep it well below "
                          "1 / (2 x the block cycle) or it removes the response. Omit (the default) when the feedback is "
                          "a change from the preceding rest, which removes drift already.")
    quality: NirsQualityDecl = Field(default_factory=NirsQualityDecl, description="Contact and motion detection.")



class SspDecl(Decl):
    """MEG signal-space projection (empty-room or artifact projectors), applied to the stream first."""

    stream: bool = Field(True, description="Apply the projectors the stream's description carries.")
    file: str | None = Field(None, description="A -proj.fif file with projectors (relative to the protocol file).")


