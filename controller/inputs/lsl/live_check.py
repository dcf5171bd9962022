"""``validate --check-streams`` / ``--stream``: the run's input checks, without a session.

The same resolve and the same ``check_stream`` as ``run``, so a protocol that passes here meets
no stream problem at start (channels, rate, units, reference types), and a failure points at
the protocol's FILE:LINE:COL.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from controller.inputs.lsl.reader import OpenedInlet, open_inlet
from controller.inputs.lsl.resolve import resolve, stream_facts
from controller.lang.compiled import Protocol, StreamSelector
from controller.lang.errors import ProtocolError
from controller.protocol.stream_check import StreamCheck, StreamFacts, check_stream, located


def with_streams(protocol: Protocol, streams: dict[str, str]) -> Protocol:
    """``protocol`` with inputs selected by stream name (``{input: name}``; key '' = the only input)."""
    if not streams:
        return protocol
    inputs = dict(protocol.inputs)
    for key, name in streams.items():
        if key == "":
            if len(inputs) != 1:
                raise ValueError(f"--stream {name}: protocol {protocol.name!r} has {len(inputs)} inputs "
                                 f"({', '.join(inputs) or 'none'}); write --stream INPUT=NAME")
            key = next(iter(inputs))
        if key not in inputs:
            raise ValueError(f"--stream {key}={name}: protocol {protocol.name!r} has no input {key!r}; "
                             f"its inputs: {', '.join(inputs) or 'none'}")
        inputs[key] = replace(inputs[key], stream=StreamSelector(name=name))
    return replace(protocol, inputs=inputs)


def parse_stream_options(values: list[str]) -> dict[str, str]:
    """``['Amp']`` or ``['eeg=Amp', 'resp=Belt']`` -> ``{'': 'Amp'}`` / ``{'eeg': 'Amp', 'resp': 'Belt'}``."""
    out: dict[str, str] = {}
    for text in values:
        key, sep, name = text.partition("=")
        if not sep:
            key, name = "", text
        if not name.strip():
            raise ValueError(f"--stream {text!r}: expected NAME or INPUT=NAME")
        if key in out:
            raise ValueError(f"--stream: input {key or '(the only input)'!r} is given twice")
        out[key.strip()] = name.strip()
    return out


def open_and_check(protocol: Protocol, name: str, timeout_s: float) -> tuple[OpenedInlet, StreamFacts, StreamCheck]:
    """Resolve input ``name``'s stream, open its inlet and check the stream against the protocol:
    ``(opened, facts, check)``. The one path for ``run`` and ``validate --stream``; the caller closes
    the inlet when no reader will run it. Raises ``StreamNotFound`` (none or several streams match)."""
    info = resolve(protocol.inputs[name].stream, timeout_s)
    opened = open_inlet(name, info, timeout_s)
    try:
        facts = stream_facts(opened.full_info)
    except BaseException:
        opened.close()
        raise
    return opened, facts, check_stream(protocol, name, facts)


def check_live_streams(protocol: Protocol, path: str | Path, timeout_s: float | None = None) -> list[str]:
    """Resolve every signal input now and check it; returns one line per input on success.

    Raises ``ProtocolError`` (FILE:LINE:COL) for a stream that cannot serve its input, and
    ``RuntimeError`` (``StreamNotFound``) for an input with no (or several) matching streams.
    """
    lines, issues = [], []
    for name, spec in protocol.inputs.items():
        opened, facts, checked = open_and_check(protocol, name, timeout_s or spec.resolve_timeout_s)
        opened.close()
        if checked.problems:
            issues += located(path, checked.problems, facts.name).issues
            continue
        units = checked.units.summary if checked.units is not None else "none"
        lines.append(f"  input {name}: stream {facts.name!r} ({len(facts.labels)} ch, {facts.rate:g} Hz, "
                     f"source_id {opened.info.source_id()!r}); units {units}")
    if issues:
        raise ProtocolError(issues)
    return lines
