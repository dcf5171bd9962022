"""Finding LSL streams, with errors that tell the operator what *is* on the network."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pylsl

from controller.lang.compiled import StreamSelector
from controller.protocol.stream_check import StreamFacts


class StreamNotFound(RuntimeError):
    """No stream matched; the message lists the streams that were visible."""


@dataclass(frozen=True)
class StreamDescription:
    name: str
    type: str
    source_id: str
    channel_count: int
    nominal_srate: float
    hostname: str

    def __str__(self) -> str:
        rate = f"{self.nominal_srate:g} Hz" if self.nominal_srate else "irregular"
        return (
            f"name={self.name!r} type={self.type!r} source_id={self.source_id!r} "
            f"channels={self.channel_count} rate={rate} host={self.hostname}"
        )


def describe(info: pylsl.StreamInfo) -> StreamDescription:
    return StreamDescription(
        info.name(), info.type(), info.source_id(), info.channel_count(),
        info.nominal_srate(), info.hostname(),
    )


def predicate(selector: StreamSelector) -> str:
    """The XPath predicate liblsl (and LabRecorder) match streams with."""
    parts = [
        f"{key}='{value}'"
        for key, value in (("name", selector.name), ("type", selector.type), ("source_id", selector.source_id))
        if value
    ]
    if not parts:
        raise ValueError("a stream selector needs at least one of name, type, source_id")
    return " and ".join(parts)


def visible_streams(wait_s: float = 1.0) -> list[StreamDescription]:
    return [describe(i) for i in pylsl.resolve_streams(wait_time=wait_s)]


def resolve(selector: StreamSelector, timeout_s: float) -> pylsl.StreamInfo:
    """The one stream matching ``selector`` within ``timeout_s``.

    Several matches are an error too: silently picking one could mean recording or
    stimulating from the wrong amplifier.
    """
    pred = predicate(selector)
    found = pylsl.resolve_bypred(pred, minimum=1, timeout=timeout_s)
    if found:
        # give late answers a moment so duplicates are seen
        found = pylsl.resolve_bypred(pred, minimum=len(found) + 1, timeout=0.3) or found
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        listing = "\n  ".join(str(describe(i)) for i in found)
        raise StreamNotFound(
            f"{len(found)} LSL streams match [{pred}]; name the one to use with name or source_id:\n  {listing}"
        )
    seen = visible_streams()
    listing = "\n  ".join(str(s) for s in seen) if seen else "(none: is the amplifier/simulator running, on this network?)"
    raise StreamNotFound(f"no LSL stream matches [{pred}] after {timeout_s:g} s. Visible streams:\n  {listing}")


def channel_field(info: pylsl.StreamInfo, field: str) -> list[str] | None:
    """``desc/channels/channel/<field>`` of every channel, or None when the description does not
    give one entry per channel. ``info`` must be the full description (``StreamInlet.info()``):
    a resolver's answer carries only the header, without desc."""
    values: list[str] = []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty():
        values.append(ch.child_value(field))
        ch = ch.next_sibling()
    return values if len(values) == info.channel_count() else None


def channel_labels(info: pylsl.StreamInfo) -> list[str]:
    """Labels from desc/channels/channel/label (the XDF meta-data convention), else ch1..chN."""
    labels = channel_field(info, "label")
    if labels is None or any(not lab for lab in labels):
        return [f"ch{i + 1}" for i in range(info.channel_count())]
    return labels


def replay_speed(info: pylsl.StreamInfo) -> float:
    """Signal seconds per LSL second: ``desc/replay/speed`` of a replayed recording, else 1 (a live device).

    A stated speed that is not a positive number is an error: guessing would stretch every rule."""
    text = info.desc().child("replay").child_value("speed")
    if not text:
        return 1.0
    try:
        speed = float(text)
    except ValueError:
        speed = float("nan")
    if not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"stream {info.name()!r}: desc/replay/speed {text!r} is not a positive number")
    return speed


def optode_positions(info: pylsl.StreamInfo) -> tuple[tuple[str, float, float, float], ...]:
    """fNIRS optodes from desc/montage/optodes/{sources,detectors}: (label, x, y, z in metres; written in mm)."""
    out: list[tuple[str, float, float, float]] = []
    optodes = info.desc().child("montage").child("optodes")
    for group, item in (("sources", "source"), ("detectors", "detector")):
        node = optodes.child(group).child(item)
        while not node.empty():
            loc = node.child("location")
            try:
                xyz = [float(loc.child_value(axis)) / 1000.0 for axis in ("X", "Y", "Z")]
            except ValueError:
                xyz = [math.nan] * 3
            out.append((node.child_value("label"), xyz[0], xyz[1], xyz[2]))
            node = node.next_sibling()
    return tuple(out)


def stream_projectors(info: pylsl.StreamInfo) -> tuple[tuple[str, bool, tuple[str, ...], tuple[float, ...]], ...]:
    """MEG signal-space projectors from desc/projectors/projector: (name, active, channels, vector)."""
    out = []
    node = info.desc().child("projectors").child("projector")
    while not node.empty():
        channels = tuple(c.strip() for c in node.child_value("channels").split(",") if c.strip())
        vector = tuple(float(v) for v in node.child_value("data").split())
        if len(vector) != len(channels):
            raise ValueError(f"stream {info.name()!r}: projector {node.child_value('name')!r} has {len(vector)} "
                             f"values for {len(channels)} channels")
        out.append((node.child_value("name"), node.child_value("active").strip() in ("1", "true", "True"),
                    channels, vector))
        node = node.next_sibling()
    return tuple(out)


def stream_facts(info: pylsl.StreamInfo) -> StreamFacts:
    """Rate, labels, channel types, units and replay speed of a stream, from its full description (and
    what fNIRS and MEG streams describe besides: wavelengths, optodes, projectors)."""
    return StreamFacts(info.name(), info.nominal_srate(), tuple(channel_labels(info)),
                       tuple(channel_field(info, "type") or ()), tuple(channel_field(info, "unit") or ()),
                       replay_speed(info), measures=tuple(channel_field(info, "measure") or ()),
                       wavelengths=tuple(channel_field(info, "wavelength") or ()),
                       optodes=optode_positions(info), projectors=stream_projectors(info))
