"""Turning pydantic validation errors into protocol issues: a position in the file and a
message that says what is wrong and what would be valid."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from controller.lang.errors import Issue
from controller.lang.source import KEY, Loc, Source
from controller.lang.units import shown
from controller.protocol import raw


def path_text(loc: Loc) -> str:
    """``features.tbr.band_ratio`` / ``timeline[1].blocks[0]`` (union tags left out)."""
    out = ""
    for part in loc:
        if part in raw.TAGS or part == KEY:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def field_label(loc: Loc) -> str:
    """The name of the field an error is about: ``window``, ``band[0]``, ``features``."""
    parts = [p for p in loc if p not in raw.TAGS]
    if parts and parts[-1] == KEY:
        parts = parts[:-2]  # an invalid key: talk about the mapping that holds it
    tail = ""
    while parts and isinstance(parts[-1], int):
        tail = f"[{parts.pop()}]" + tail
    return (str(parts[-1]) if parts else "protocol file") + tail


def _model_keys(tp: Any) -> list[str] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return None


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def describe(err: dict[str, Any]) -> tuple[str, bool]:
    """(message, point at the key rather than the value) for one pydantic error."""
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    label = field_label(loc)
    if kind == "extra_forbidden":
        parent = loc[:-1]
        model = raw.type_at(parent)
        noun = getattr(model, "key_noun", "key")
        valid = _model_keys(model) or []
        key = loc[-1]
        where = path_text(parent)
        msg = f"unknown {noun} {key!r}" + (f" in {where}" if where else "")
        close = difflib.get_close_matches(str(key), valid, n=1)
        if close:
            msg += f" (did you mean {close[0]!r}?)"
        return msg + f"; valid {noun}s: {', '.join(valid)}", True
    if kind == "missing" and isinstance(loc[-1], int) and len(loc) >= 2:  # a fixed-length list, e.g. [x, y, z]
        owner = raw.type_at(loc[:-2])
        field = owner.model_fields.get(loc[-2]) if isinstance(owner, type) and issubclass(owner, BaseModel) else None
        msg = f"{path_text(loc[:-1])}: too few items, item {loc[-1] + 1} is missing"
        if field is not None and field.description:
            msg += f": {_lower_first(field.description)}"
        return msg, False
    if kind == "missing":
        parent = loc[:-1]
        model = raw.type_at(parent)
        where = path_text(parent)
        msg = f"missing required key {loc[-1]!r}" + (f" in {where}" if where else "")
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(loc[-1])
            if field is not None and field.description:
                msg += f": {_lower_first(field.description)}"
        return msg, False
    if kind == "protocol":  # our own validators: the message is complete
        return f"{label}: {err['msg']}", False
    got = shown(err.get("input"))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        keys = _model_keys(raw.type_at(loc))
        if keys:
            return f"{label}: expected a mapping with keys {', '.join(keys)}, got {got}", False
        return f"{label}: expected a mapping, got {got}", False
    if kind in ("list_type", "tuple_type"):
        return f"{label}: expected a list like [a, b], got {got}", False
    if kind == "string_type":
        return f"{label}: expected text, got {got} (quote it if YAML reads it as a number or true/false)", False
    if kind == "too_short":
        ctx = err.get("ctx") or {}
        return f"{label}: expected at least {ctx.get('min_length', 1)} entry, got none", False
    return f"{label}: {_lower_first(err['msg'])}, got {got}", False


def structure_issues(exc: ValidationError, source: Source) -> list[Issue]:
    """One issue per pydantic error, positioned in the source."""
    issues = []
    for err in exc.errors(include_url=False):
        message, at_key = describe(err)
        line, col = source.position(tuple(err["loc"]), prefer_key=at_key)
        issues.append(Issue(source.filename, line, col, message))
    return issues
