"""line_length: sum of |x[n] - x[n-1]| over the window, in percent of its own long-term trend
(seizure onset: 'll > 175 %')."""

from __future__ import annotations

from controller.dsp.seizure.features import LineLengthFeature
from controller.dsp.seizure.offline import offline_line_length
from controller.lang.compiled import FeatureSpec

from ..registration import register
from ._trended import TrendedDecl, TrendedKind


class LineLengthDecl(TrendedDecl):
    """Line length (sum of |x[n] - x[n-1]|) of the window in percent of its own long-term trend:
    100 % = usual, 175 % = 75 % above (seizure onset). Compare it with percentages: 'll > 175 %'."""


@register
class LineLength(TrendedKind):
    name = "line_length"
    order = 50
    declaration = LineLengthDecl
    summary = ("Line length in percent of its long-term trend (seizure onset: 'll > 175 %'), "
               "e.g. {input: ieeg, window: 1 s, every: 100 ms, trend: 30 s}.")
    measure = LineLengthFeature
    offline_measure = staticmethod(offline_line_length)

    def rate_problems(self, spec: FeatureSpec, fs: float) -> list[tuple[str, str]]:
        window = round(spec.window_s * fs)
        out = []
        if window < 2:
            out.append(("window", f"window {spec.window_s:g} s is {window} sample at {fs:g} Hz; {spec.kind} needs at least 2"))
        return out + super().rate_problems(spec, fs)
