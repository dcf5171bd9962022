"""The protocol language: YAML files validated and compiled into :mod:`controller.lang.compiled` objects.

    load_protocol(path) / loads_protocol(text)  -> compiled.Protocol, or ProtocolError
    json_schema()                               -> the JSON Schema editors use
    check_against_stream(protocol, input, fs, labels) -> problems once the stream is known

These are loaded on first use, so that importing one module of the parser (e.g. ``condition``)
does not load all of it. The language's leaves (units, fields, errors, the compiled types) are in
``controller.lang``, which the feature kinds and the site file use without the parser.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Issue": "controller.lang.errors",
    "ProtocolError": "controller.lang.errors",
    "load_protocol": "controller.protocol.loader",
    "loads_protocol": "controller.protocol.loader",
    "json_schema": "controller.protocol.raw",
    "check_against_stream": "controller.protocol.stream_check",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
