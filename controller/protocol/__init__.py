"""The protocol language: YAML files validated and compiled into :mod:`.compiled` objects.

    load_protocol(path) / loads_protocol(text)  -> compiled.Protocol, or ProtocolError
    json_schema()                               -> the JSON Schema editors use
    check_against_stream(protocol, input, fs, labels) -> problems once the stream is known
"""

from controller.protocol.errors import Issue, ProtocolError
from controller.protocol.loader import load_protocol, loads_protocol
from controller.protocol.raw import json_schema
from controller.protocol.stream_check import check_against_stream

__all__ = [
    "Issue",
    "ProtocolError",
    "check_against_stream",
    "json_schema",
    "load_protocol",
    "loads_protocol",
]
