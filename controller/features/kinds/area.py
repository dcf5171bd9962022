"""area: sum of |x| over the window, in percent of its own long-term trend."""

from __future__ import annotations

from controller.dsp.seizure.features import AreaFeature
from controller.dsp.seizure.offline import offline_area

from ..registration import register
from ._trended import TrendedDecl, TrendedKind


class AreaDecl(TrendedDecl):
    """Area (sum of |x|) of the window in percent of its own long-term trend. Compare it with
    percentages: 'area > 150 %'."""


@register
class Area(TrendedKind):
    name = "area"
    order = 60
    declaration = AreaDecl
    summary = "Area (sum of |x|) in percent of its long-term trend."
    measure = AreaFeature
    offline_measure = staticmethod(offline_area)
