"""The protocol language: YAML files validated and compiled into :mod:`.compiled` objects.

    load_protocol(path) / loads_protocol(text)  -> compiled.Protocol, or ProtocolError
    json_schema()                               -> the JSON Schema editors use
    check_against_stream(protocol, input, fs, labels) -> problems once the stream is known

These are loaded on first use, so that importing a leaf of the language (``compiled``,
``fields``, ``units``) does not load the parser, which builds its feature declarations from
``controller.features`` (whose kinds are written in those leaves).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Issue": "errors",
    "ProtocolError": "errors",
    "load_protocol": "loader",
    "loads_protocol": "loader",
    "json_schema": "raw",
    "check_against_stream": "stream_check",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
