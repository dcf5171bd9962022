"""Which columns of a MEG stream are magnetometers, which are planar gradiometers, and which two make a pair.

Why pairs matter: a Neuromag planar gradiometer measures the field's gradient along one direction only,
so its power depends on how the source happens to be oriented; the two orthogonal gradiometers at one
location ('MEG 0112' and 'MEG 0113') together do not (their summed power is what MNE's topographies show).
Neuromag names say it: the two gradiometers and the magnetometer of one sensor unit share all but the
last digit, 2 and 3 for the gradiometers, 1 for the magnetometer. This module pairs gradiometers by that
shared prefix and refuses a gradiometer without exactly one partner (a dropped channel would otherwise
silently change what a "pair" feature measures).

Names are compared with spaces removed and in upper case ('MEG 0113' and 'MEG0113' are one channel): old
and new Neuromag systems, and MNE's selection files, spell them both ways.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from controller.dsp.meg.sensors import canonical_label, read_selection

__all__ = ["GRAD", "MAG", "MegLayout", "canonical_label"]

GRAD = "grad"
MAG = "mag"


def _sensor_kind(label: str, type_: str, unit: str) -> str | None:
    """'grad', 'mag' or None (not a MEG sensor): from MNE's type, or a generic 'MEG' type and its unit."""
    kind = type_.strip().lower()
    if kind in (GRAD, MAG):
        return kind
    if kind != "meg":
        return None
    u = unit.strip()
    if u.endswith("T/m") or u.endswith("T/cm"):
        return GRAD
    if u.endswith("T"):
        return MAG
    raise ValueError(f"channel {label!r} is of type {type_!r} but its unit {unit!r} says neither magnetometer "
                     "(T, fT) nor gradiometer (T/m, fT/cm); give its type as 'mag' or 'grad'")


@functools.cache
def _vectorview_selection(name: str) -> frozenset[str]:
    """MNE's Vectorview selection ``name`` (as MNE matches it: a substring of the selection's name), canonical labels."""
    return frozenset(canonical_label(s) for s in read_selection(name))


@dataclass(frozen=True, eq=False)
class MegLayout:
    """Column indices of a stream's magnetometers and gradiometers, and the gradiometer pairs."""

    labels: tuple[str, ...]  # every stream column, as the stream spells it
    mags: np.ndarray  # (n_mags,) column indices, stream order
    grads: np.ndarray  # (n_grads,) column indices, stream order
    pairs: np.ndarray  # (n_pairs, 2) column indices; in stream order of the first; the '...2' then '...3' one

    @classmethod
    def from_stream(cls, labels: Sequence[str], types: Sequence[str],
                    units: Sequence[str] | None = None) -> MegLayout:
        """The layout of a stream from its desc/channels fields. ``types`` are MNE's ('grad', 'mag', 'eeg', ...);
        a generic 'MEG' type is resolved by ``units`` (T/m or fT/cm: gradiometer; T or fT: magnetometer)."""
        labels = tuple(labels)
        if len(types) != len(labels) or (units is not None and len(units) != len(labels)):
            raise ValueError(f"{len(labels)} labels but {len(types)} types"
                             + ("" if units is None else f" and {len(units)} units"))
        kinds = [_sensor_kind(lab, t, "" if units is None else units[i])
                 for i, (lab, t) in enumerate(zip(labels, types, strict=True))]
        mags = np.array([i for i, k in enumerate(kinds) if k == MAG], dtype=np.intp)
        grads = np.array([i for i, k in enumerate(kinds) if k == GRAD], dtype=np.intp)
        groups: dict[str, list[int]] = {}
        for i in grads:
            groups.setdefault(canonical_label(labels[i])[:-1], []).append(int(i))
        pairs: list[tuple[int, int]] = []
        for members in groups.values():
            if len(members) != 2:
                names = ", ".join(repr(labels[i]) for i in members)
                if len(members) == 1:
                    raise ValueError(f"gradiometer {names} has no partner: Neuromag planar gradiometers come in pairs "
                                     "named alike but for the last digit ('MEG 0112'/'MEG 0113'); is its partner "
                                     "missing from the stream?")
                raise ValueError(f"gradiometers {names} share one sensor location: a pair is two gradiometers")
            first, second = sorted(members, key=lambda i: canonical_label(labels[i]))
            pairs.append((first, second))
        pairs.sort(key=lambda p: min(p))
        pair_array = np.array(pairs, dtype=np.intp).reshape(len(pairs), 2)
        return cls(labels, mags, grads, pair_array)

    @property
    def meg(self) -> np.ndarray:
        """Every MEG column (magnetometers and gradiometers), stream order."""
        return np.sort(np.concatenate([self.mags, self.grads]))

    def selection_indices(self, name: str) -> np.ndarray:
        """Stream columns in MNE's Vectorview selection ``name`` ('Left-occipital', 'Right-parietal', 'Vertex',
        ...; a substring such as 'occipital' combines selections, as MNE does), stream order."""
        try:
            wanted = _vectorview_selection(name)
        except ValueError as exc:
            raise ValueError(f"{exc}; Vectorview selections: Vertex, Left-/Right-temporal, Left-/Right-parietal, "
                             "Left-/Right-occipital, Left-/Right-frontal") from None
        return np.array([i for i, lab in enumerate(self.labels) if canonical_label(lab) in wanted], dtype=np.intp)

    def selection(self, name: str) -> tuple[str, ...]:
        """Labels (as the stream spells them) of the stream's channels in MNE's Vectorview selection ``name``."""
        return tuple(self.labels[i] for i in self.selection_indices(name))
