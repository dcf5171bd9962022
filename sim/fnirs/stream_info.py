"""The fNIRS LSL stream format: what ``sim fnirs`` publishes and the controller reads.

StreamInfo
    type ``NIRS``, channel format ``cf_float32``, nominal rate the device's (the simulator's
    ``--rate``, default 10 Hz; a replay: the file's rate), one column per source-detector pair and
    wavelength.

desc/manufacturer
    who made the device ("neuroreflex simulator", "neuroreflex replay of <file>").

desc/channels/channel, one per column, in column order, each with the children
    ``label``       MNE's naming: ``S1_D1 760`` (source, detector, wavelength in nm)
    ``type``        ``NIRS``
    ``measure``     ``intensity`` (continuous-wave amplitude) or ``od`` (optical density)
    ``wavelength``  ``760`` (nm, as text; decimals only when not whole)
    ``source``      ``S1``
    ``detector``    ``D1``
    ``unit``        ``a.u.`` for intensity, ``OD`` for od

desc/montage/optodes/sources/source and desc/montage/optodes/detectors/detector
    each with ``label`` (``S1``, ``D1``) and ``location`` with children ``X``, ``Y``, ``Z`` in
    millimetres (the XDF meta-data convention for locations; the simulator's head frame: x right,
    y anterior, z up).

Column order: the simulator streams pair-major (``S1_D1 760, S1_D1 850, S1_D2 760, ...``); a
replay keeps the file's order (MNE's SNIRF reader gives wavelength-major). A reader must group the
columns by ``source``/``detector`` (or by label), never by position. Source-detector distances are
not published: they follow from the positions.

:func:`read_layout` parses a description back (the simulator's tests use it; the controller has its
own reader, since sim/ and controller/ do not import each other).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pylsl

NIRS_TYPE = "NIRS"
MEASURES = {"intensity": "a.u.", "od": "OD"}  # measure -> unit
_LABEL = re.compile(r"^(S\d+)_(D\d+) (\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class NirsColumn:
    source: str
    detector: str
    wavelength: float  # nm
    measure: str  # "intensity" or "od"

    @property
    def label(self) -> str:
        return f"{self.source}_{self.detector} {self.wavelength:g}"

    @property
    def unit(self) -> str:
        return MEASURES[self.measure]


@dataclass(frozen=True)
class NirsLayout:
    """Columns in stream order and optode positions in mm."""

    columns: tuple[NirsColumn, ...]
    sources: dict[str, tuple[float, float, float]]
    detectors: dict[str, tuple[float, float, float]]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(c.label for c in self.columns)

    def distance_mm(self, column: int) -> float:
        c = self.columns[column]
        return float(np.linalg.norm(np.subtract(self.sources[c.source], self.detectors[c.detector])))


def parse_label(label: str) -> tuple[str, str, float]:
    """'S1_D1 760' -> ('S1', 'D1', 760.0)."""
    found = _LABEL.match(label.strip())
    if found is None:
        raise ValueError(f"not an fNIRS channel label like 'S1_D1 760': {label!r}")
    return found.group(1), found.group(2), float(found.group(3))


def layout_of_montage(montage, measure: str = "intensity") -> NirsLayout:  # montage: sim.fnirs.montage.NirsMontage
    """The simulator montage's columns (pair-major) and positions."""
    columns = tuple(NirsColumn(p.source, p.detector, float(w), measure) for p in montage.pairs
                    for w in montage.wavelengths)
    return NirsLayout(columns, {k: tuple(map(float, v)) for k, v in montage.sources.items()},
                      {k: tuple(map(float, v)) for k, v in montage.detectors.items()})


def _optode(parent: pylsl.XMLElement, tag: str, label: str, xyz: tuple[float, float, float]) -> None:
    node = parent.append_child(tag)
    node.append_child_value("label", label)
    loc = node.append_child("location")
    for axis, value in zip("XYZ", xyz, strict=True):
        loc.append_child_value(axis, repr(float(value)))  # shortest text that parses back to the same double


def nirs_stream_info(name: str, source_id: str, rate: float, layout: NirsLayout,
                     manufacturer: str = "neuroreflex simulator") -> pylsl.StreamInfo:
    """A StreamInfo described as in the module docstring."""
    if layout.columns and layout.columns[0].measure not in MEASURES:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)}")
    info = pylsl.StreamInfo(name, NIRS_TYPE, len(layout.columns), rate, pylsl.cf_float32, source_id)
    desc = info.desc()
    desc.append_child_value("manufacturer", manufacturer)
    channels = desc.append_child("channels")
    for c in layout.columns:
        ch = channels.append_child("channel")
        for key, value in (("label", c.label), ("type", NIRS_TYPE), ("measure", c.measure),
                           ("wavelength", f"{c.wavelength:g}"), ("source", c.source), ("detector", c.detector),
                           ("unit", c.unit)):
            ch.append_child_value(key, value)
    optodes = desc.append_child("montage").append_child("optodes")
    sources, detectors = optodes.append_child("sources"), optodes.append_child("detectors")
    for label, xyz in layout.sources.items():
        _optode(sources, "source", label, xyz)
    for label, xyz in layout.detectors.items():
        _optode(detectors, "detector", label, xyz)
    return info


def _children(parent: pylsl.XMLElement, tag: str) -> list[pylsl.XMLElement]:
    out, node = [], parent.child(tag)
    while not node.empty():
        out.append(node)
        node = node.next_sibling(tag)
    return out


def _positions(parent: pylsl.XMLElement, tag: str) -> dict[str, tuple[float, float, float]]:
    out: dict[str, tuple[float, float, float]] = {}
    for node in _children(parent, tag):
        loc = node.child("location")
        out[node.child_value("label")] = (float(loc.child_value("X")), float(loc.child_value("Y")),
                                          float(loc.child_value("Z")))
    return out


def read_layout(info: pylsl.StreamInfo) -> NirsLayout:
    """Parse a NIRS stream's description (as published by :func:`nirs_stream_info`) back."""
    desc = info.desc()
    columns = []
    for ch in _children(desc.child("channels"), "channel"):
        columns.append(NirsColumn(ch.child_value("source"), ch.child_value("detector"),
                                  float(ch.child_value("wavelength")), ch.child_value("measure")))
    optodes = desc.child("montage").child("optodes")
    return NirsLayout(tuple(columns), _positions(optodes.child("sources"), "source"),
                      _positions(optodes.child("detectors"), "detector"))
