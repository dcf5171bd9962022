"""band_ratio: the power in one band over the power in another, e.g. theta/beta at Cz."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from controller.lang.compiled import Band, FeatureSpec
from controller.lang.fields import FreqBand

from ..registration import register
from ._power import PowerCommon, PowerKind, as_band


class BandRatioDecl(PowerCommon):
    """Power in the numerator band divided by power in the denominator band (e.g. theta/beta)."""

    numerator: FreqBand = Field(description="Band on top of the ratio, e.g. [4 Hz, 8 Hz].")
    denominator: FreqBand = Field(description="Band below the ratio, e.g. [13 Hz, 21 Hz].")


@register
class BandRatio(PowerKind):
    name = "band_ratio"
    order = 20
    declaration = BandRatioDecl
    summary = "Ratio of the powers in two bands, e.g. theta/beta."
    band_fields = ("numerator", "denominator")

    def compiled_bands(self, decl: Any) -> dict[str, Band | None]:
        return {"numerator": as_band(decl.numerator), "denominator": as_band(decl.denominator)}

    def power_bands(self, spec: FeatureSpec) -> tuple[Band, ...]:
        if spec.numerator is None or spec.denominator is None:
            raise ValueError(f"feature {spec.name!r} ({spec.kind}) needs a numerator and a denominator band")
        return (spec.numerator, spec.denominator)
