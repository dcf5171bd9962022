"""Channel labels: match what a protocol names ('Cz') with what a stream or file calls it.

LSL streams and EDF/MNE files spell the same electrode differently: 'Cz', 'CZ', 'EEG Cz',
'Cz..' (BCI2000 / PhysioNet pads to four characters with dots), 'Cz-REF'. Protocols name
the electrode; resolution here is the one place that decides which stream column it means.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

# A leading signal-type word as written by EDF exporters and MNE ("EEG Fp1", "ECG ECG").
_TYPE_PREFIX = re.compile(r"^(?:eeg|eog|ecg|ekg|emg|meg|seeg|ecog|resp|misc)[\s:_]+", re.IGNORECASE)
# A trailing reference tag ("Cz-REF", "Cz-Ref").
_REF_SUFFIX = re.compile(r"-ref$", re.IGNORECASE)


def normalize_label(label: str) -> str:
    """Canonical, case-folded form of a channel label: 'EEG Cz', 'Cz..', 'CZ-REF' -> 'cz'."""
    text = label.strip()
    text = _TYPE_PREFIX.sub("", text)
    text = text.rstrip(". ")
    text = _REF_SUFFIX.sub("", text)
    return text.strip().casefold()


def resolve_channels(wanted: Sequence[str], available: Sequence[str], *, where: str = "stream") -> np.ndarray:
    """Column indices in ``available`` of each label in ``wanted``.

    An exact (case-insensitive) match wins; otherwise the normalized forms must match exactly
    one label. Raises ValueError naming the label and listing what is available.
    """
    exact: dict[str, list[int]] = {}
    normal: dict[str, list[int]] = {}
    for i, label in enumerate(available):
        exact.setdefault(label.strip().casefold(), []).append(i)
        normal.setdefault(normalize_label(label), []).append(i)
    indices = []
    for label in wanted:
        hits = exact.get(label.strip().casefold())
        if hits is None or len(hits) != 1:
            hits = normal.get(normalize_label(label), [])
        if len(hits) == 1:
            indices.append(hits[0])
            continue
        listing = ", ".join(repr(a) for a in available)
        if not hits:
            raise ValueError(f"unknown channel {label!r} in {where}; available channels: {listing}")
        clash = ", ".join(repr(available[i]) for i in hits)
        raise ValueError(f"channel {label!r} is ambiguous in {where}: it matches {clash}")
    return np.asarray(indices, dtype=np.intp)
