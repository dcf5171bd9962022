"""fNIRS channel labels as MNE writes them: 'S1_D1 760' is source 1, detector 1, 760 nm; 'S1_D1' is the pair.

One definition for the protocol language (pairs an input lists), the feature kinds (the derived
channels 'S1_D1 hbo') and the stream layout.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

PAIR = re.compile(r"^\s*(S\d+_D\d+)(?:\s+(\d+(?:\.\d+)?))?\s*$", re.IGNORECASE)


def split_nirs_label(label: str) -> tuple[str, float | None] | None:
    """('S1_D1', 760.0) for 'S1_D1 760', ('S1_D1', None) for 'S1_D1', None for anything else."""
    m = PAIR.match(label)
    if m is None:
        return None
    return m.group(1).upper(), (float(m.group(2)) if m.group(2) else None)


def pairs_of(labels: Iterable[str]) -> tuple[str, ...]:
    """The distinct pairs among ``labels`` ('S1_D1 760' and 'S1_D1 850' name one pair), in order."""
    out: list[str] = []
    for label in labels:
        parsed = split_nirs_label(label)
        if parsed is not None and parsed[0] not in out:
            out.append(parsed[0])
    return tuple(out)


def pair_only(label: str) -> str | None:
    """'S1_D1' for 'S1_D1' (a pair named alone), None for a wavelength channel or anything else."""
    parsed = split_nirs_label(label)
    return None if parsed is None or parsed[1] is not None else parsed[0]
