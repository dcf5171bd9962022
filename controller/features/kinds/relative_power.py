"""relative_power: the power in a band as a fraction of the power in a total band."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from controller.lang.compiled import Band, FeatureSpec
from controller.lang.fields import FreqBand

from ..kind import CheckContext
from ..registration import register
from ..wording import EPS, band_text
from ._power import PowerCommon, PowerKind, as_band

DEFAULT_TOTAL_BAND = Band(1.0, 40.0)  # the reference band of a spec built without one


class RelativePowerDecl(PowerCommon):
    """Power in a band as a fraction of the power in a total band."""

    band: FreqBand = Field(description="The band, e.g. [8 Hz, 12 Hz].")
    total: FreqBand = Field(("1 Hz", "40 Hz"), validate_default=True, description="The reference band; default [1 Hz, 40 Hz].")


@register
class RelativePower(PowerKind):
    name = "relative_power"
    order = 30
    declaration = RelativePowerDecl
    summary = "Power in a band as a fraction of the power in a total band."
    band_fields = ("band", "total")

    def compiled_bands(self, decl: Any) -> dict[str, Band | None]:
        return {"band": as_band(decl.band), "total": as_band(decl.total)}

    def check(self, decl: Any, ctx: CheckContext) -> None:
        super().check(decl, ctx)
        (lo, hi), (tlo, thi) = decl.band, decl.total
        if lo < tlo - EPS or hi > thi + EPS:
            ctx.fail("band", f"band: {band_text(decl.band)} must lie inside total {band_text(decl.total)}")

    def power_bands(self, spec: FeatureSpec) -> tuple[Band, ...]:
        if spec.band is None:
            raise ValueError(f"feature {spec.name!r} ({spec.kind}) needs a band")
        return (spec.band, spec.total or DEFAULT_TOTAL_BAND)
