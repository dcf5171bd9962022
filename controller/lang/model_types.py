"""The declared type at a pydantic error location: for "valid keys are ..." messages.

Used by the protocol parser and the site file alike, so it lives in the language's base.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel


def unwrap_type(tp: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> X."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin is Union or origin is types.UnionType:
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def model_type_at(root: Any, loc: tuple[Any, ...], *, tags: dict[str, Any] | None = None,
                  sequences: tuple[type, ...] = (list, tuple)) -> Any:
    """The declared type at a pydantic error location under model ``root`` (for "valid keys are
    ..." messages); ``tags`` are union tags that appear in locations but not in the data."""
    tp: Any = root
    for part in loc:
        if tags and part in tags:
            tp = tags[part]
            continue
        tp = unwrap_type(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            tp = field.annotation
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        elif get_origin(tp) in sequences:
            tp = get_args(tp)[0]
        else:
            return None
    return unwrap_type(tp)
