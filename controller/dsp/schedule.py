"""When a sliding-window feature is due, counted in samples (never in chunks or wall time).

With window W and hop S, values fall on sample indices k = W-1, W-1+S, W-1+2S, ... (0-based
from the first sample received), each computed on samples [k-W+1, k]. Counting samples makes
the output independent of how the stream happens to be chunked.
"""

from __future__ import annotations

from controller.lang.compiled import FeatureSpec


def to_samples(seconds: float, fs: float) -> int:
    """Duration in whole samples at ``fs`` (round to nearest), as the protocol contract says."""
    return int(round(seconds * fs))


def feature_window(spec: FeatureSpec, fs: float) -> tuple[int, int]:
    """(W, S) of a feature at ``fs``; ValueError naming the feature if either is below one sample."""
    window, every = to_samples(spec.window_s, fs), to_samples(spec.every_s, fs)
    if window < 1 or every < 1:
        raise ValueError(
            f"feature {spec.name!r}: window {spec.window_s} s and every {spec.every_s} s are "
            f"{window} and {every} samples at fs={fs} Hz; both must be at least 1 sample"
        )
    return window, every


class WindowSchedule:
    """Due sample indices of one sliding window, consumed chunk by chunk."""

    __slots__ = ("window", "every", "next_due")

    def __init__(self, window: int, every: int) -> None:
        if window < 1 or every < 1:
            raise ValueError(f"window ({window}) and hop ({every}) must be >= 1 sample")
        self.window = window
        self.every = every
        self.next_due = window - 1

    def reset(self) -> None:
        self.next_due = self.window - 1

    def restart(self, count: int) -> None:
        """After a gap at sample ``count``: the next window holds only samples from ``count`` on."""
        self.next_due = max(self.next_due, count + self.window - 1)

    def take_due(self, end: int) -> range:
        """Due indices k < ``end`` not yet taken; advances past them."""
        first = self.next_due
        if end <= first:
            return range(0)
        due = range(first, end, self.every)
        self.next_due = due[-1] + self.every
        return due
