"""What the fNIRS kinds share: pairs named in a protocol ('S1_D1') become the front end's derived
channels ('S1_D1 hbo'), and baseline labels."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

from controller.dsp.nirs.pair_labels import pair_only, pairs_of
from controller.lang.compiled import FeatureSpec
from controller.lang.fields import NAME_PATTERN, fail

from ..kind import CheckContext


def _labels(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        fail(f"expected a block label like rest, or a list of them, got {value!r}")
    return tuple(value)


BaselineLabels = Annotated[
    tuple[str, ...] | None, BeforeValidator(_labels),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": NAME_PATTERN},
                              {"type": "array", "items": {"type": "string", "pattern": NAME_PATTERN}, "minItems": 1}]}),
]


def check_pairs(decl: Any, ctx: CheckContext) -> None:
    """Each channel a pair ('S1_D1') of the input's pairs."""
    listed = pairs_of(getattr(ctx.input, "channels", None) or ()) if ctx.input is not None else ()
    for i, ch in enumerate(decl.channels or ()):
        pair = pair_only(ch)
        if pair is None:
            ctx.fail(("channels", i), f"channels: {ch!r} is not a source-detector pair; name pairs like S1_D1 "
                                      "(the feature reads their haemoglobin, not one wavelength)")
        elif listed and pair not in listed:
            ctx.fail(("channels", i), f"channels: {ch!r} is not a pair of input {decl.input!r}; "
                                      f"its pairs: {', '.join(listed)}")


def pair_channels(spec: FeatureSpec, measure: str, channels: tuple[str, ...] | None,
                  input_channels: tuple[str, ...]) -> FeatureSpec:
    """The spec reading ``'<pair> <measure>'`` of the named pairs (default: every pair of the input;
    none listed there either: every pair of the stream, left to the pipeline as an empty tuple)."""
    pairs = [p for p in (pair_only(c) for c in channels or ()) if p] if channels else list(pairs_of(input_channels))
    return dataclasses.replace(spec, channels=tuple(f"{p} {measure}" for p in pairs))
