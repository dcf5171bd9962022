"""band_power: mean power in one frequency band (V^2), e.g. EMG in 45-70 Hz."""

from __future__ import annotations

from pydantic import Field

from controller.lang.compiled import Band, FeatureSpec
from controller.lang.fields import FreqBand

from ..registration import register
from ._power import PowerCommon, PowerKind


class BandPowerDecl(PowerCommon):
    """Mean power in a frequency band."""

    band: FreqBand = Field(description="The band, e.g. [13 Hz, 21 Hz].")


@register
class BandPower(PowerKind):
    name = "band_power"
    order = 10
    declaration = BandPowerDecl
    summary = "Mean power in a band, e.g. {input: eeg, band: [13 Hz, 21 Hz], window: 1 s, every: 100 ms}."

    def power_bands(self, spec: FeatureSpec) -> tuple[Band, ...]:
        if spec.band is None:
            raise ValueError(f"feature {spec.name!r} ({spec.kind}) needs a band")
        return (spec.band,)
