"""Neuromag/MEGIN sensor names: which are magnetometers, which gradiometers, and the named regions
('Left-occipital', ...) of MNE's Vectorview selections.

A Vectorview/TRIUX sensor position holds one magnetometer ('MEG 1641', name ending in 1, tesla) and two
orthogonal planar gradiometers ('MEG 1642', 'MEG 1643', ending in 2 and 3, tesla per metre). The stream's
channel types say the same when it describes them (checked when the stream is found); the names are what a
protocol can be checked against when it is loaded.
"""

from __future__ import annotations

import re
from functools import cache

SELECTIONS = ("Vertex", "Left-temporal", "Right-temporal", "Left-parietal", "Right-parietal", "Left-occipital",
              "Right-occipital", "Left-frontal", "Right-frontal")
_NEUROMAG = re.compile(r"^MEG\s*(\d{3})([123])$", re.IGNORECASE)


def canonical_label(label: str) -> str:
    """'MEG 0113', 'MEG0113' and 'meg 0113' -> 'MEG0113' (how two spellings of one channel compare)."""
    return "".join(label.split()).upper()


def sensor_kind(label: str) -> str | None:
    """'mag' or 'grad' for a Neuromag sensor name ('MEG 1641' / 'MEG1642'), None for anything else."""
    m = _NEUROMAG.match(label.strip())
    if m is None:
        return None
    return "mag" if m.group(2) == "1" else "grad"


def position_of(label: str) -> str | None:
    """The sensor position a Neuromag name belongs to ('MEG 1642' -> '164'), None for anything else."""
    m = _NEUROMAG.match(label.strip())
    return None if m is None else m.group(1)


@cache
def read_selection(name: str) -> tuple[str, ...]:
    """MNE's Vectorview selection(s) matching ``name`` (as MNE matches: a substring of a selection's name), in
    its order; the one place the selection file is read."""
    import mne  # type: ignore[import-untyped]  # no type information; read only when a protocol names a selection

    return tuple(str(n) for n in mne.read_vectorview_selection(name, verbose=False))


def selection(name: str) -> tuple[str, ...]:
    """The Neuromag channel names of one of MNE's Vectorview selections ('Left-occipital'), in its order."""
    if name not in SELECTIONS:
        raise ValueError(f"unknown sensor selection {name!r}; the Vectorview selections are {', '.join(SELECTIONS)}")
    return read_selection(name)


def sensors_of(names: tuple[str, ...], kind: str) -> tuple[str, ...]:
    """The names among ``names`` of sensors of ``kind`` ('mag' or 'grad'), in order, without repeats."""
    out: list[str] = []
    for n in names:
        if sensor_kind(n) == kind and n not in out:
            out.append(n)
    return tuple(out)


def grad_pairs(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Gradiometer names grouped in their positions' pairs ('MEG 1642', 'MEG 1643'); a gradiometer whose
    partner is not among ``names`` is a ValueError naming it (a pair's power needs both directions)."""
    by_position: dict[str, list[str]] = {}
    for n in names:
        if sensor_kind(n) == "grad":
            by_position.setdefault(position_of(n) or n, []).append(n)
    pairs = []
    for position, members in by_position.items():
        if len(members) != 2:
            raise ValueError(f"gradiometer {members[0]!r} has no partner among the channels (position {position} "
                             "needs both its planar gradiometers, names ending in 2 and 3)")
        pairs.append((members[0], members[1]))
    return tuple(pairs)
