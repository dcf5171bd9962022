"""How a multi-channel kind turns per-channel values into one: a statistic, or a channel vote.

The declaration (``reduce: max`` or ``reduce: {channels_above: 200 %}``), its compiled form
(``controller.lang.compiled.ChannelReduce``) and the offline reduction live together so
the kinds that reduce (line_length, area, halfwave) agree on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
from pydantic import BeforeValidator, Field, WithJsonSchema

from controller.lang import compiled as c
from controller.lang import units
from controller.lang.fields import Decl, Level, fail, number_or_amplitude


class ChannelsAboveDecl(Decl):
    """A channel vote: the feature's value is how many of its channels are above a level."""

    channels_above: Level = Field(
        description="line_length/area: a percentage of trend, e.g. 200 %; halfwave: a count, e.g. 6."
    )


_STATISTICS = ("mean", "median", "max")


def _channel_reduce(value: Any) -> Any:
    """A statistic by name, or a vote ``{channels_above: LEVEL}``; one message names both forms."""
    if isinstance(value, str) and value in _STATISTICS:
        return value
    if isinstance(value, Mapping) and set(value) == {"channels_above"}:
        return ChannelsAboveDecl.model_construct(channels_above=number_or_amplitude(value["channels_above"]))
    fail("expected mean, median, max or a channel vote like {channels_above: 200 %}, "
         f"got {units.shown(value)}")


ChannelReduce = Annotated[
    Any,
    BeforeValidator(_channel_reduce),
    WithJsonSchema({"anyOf": [{"enum": list(_STATISTICS)}, ChannelsAboveDecl.model_json_schema()],
                    "description": "mean, median, max, or a channel vote {channels_above: LEVEL}."}),
]


def compile_reduce(reduce: Any, *, percent: bool) -> c.ChannelReduce:
    """A statistic as is; a vote's level in the feature's internal unit (a ratio for percentages)."""
    if isinstance(reduce, str):
        return reduce  # type: ignore[return-value]
    q = reduce.channels_above
    return c.ChannelsAbove(q.value / 100.0 if percent else q.value)


_REDUCE = {"mean": np.mean, "median": np.median, "max": np.max}


def reduce_offline(per_channel: np.ndarray, reduce: c.ChannelReduce, *, percent: bool) -> np.ndarray:
    """(n, n_channels) -> (n,): a statistic (in percent for trend ratios), or a channel vote's count."""
    if isinstance(reduce, c.ChannelsAbove):
        with np.errstate(invalid="ignore"):
            return (per_channel > reduce.level).sum(axis=1).astype(np.float64)
    values = _REDUCE[reduce](per_channel, axis=1)
    return 100.0 * values if percent else values
