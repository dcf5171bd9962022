"""The keys most feature declarations share: the input, its channels, the window and its hop."""

from __future__ import annotations

from pydantic import Field

from controller.lang.fields import ChannelList, Decl, Duration, Name


class FeatureCommon(Decl):
    input: Name = Field(description="The input (a key of inputs) the feature is computed on.")
    channels: ChannelList | None = Field(
        None, description="Channels to average over; a subset of the input's channels. Default: all of them."
    )
    window: Duration = Field(description="Length of the sliding window, e.g. 2 s.")
    every: Duration = Field(description="How often the feature is computed, e.g. 100 ms; at most the window.")
