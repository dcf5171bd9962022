"""Which stream columns form which source-detector pair at which wavelength, and how far apart.

A continuous-wave fNIRS stream sends one column per (source, detector, wavelength); everything
downstream works per pair with its two wavelengths side by side. Devices and readers order the
columns differently (MNE's SNIRF reader is wavelength-major: every 690 nm column, then every
830 nm one), so the layout groups columns by pair name instead of trusting their order. The
pair order is the order in which a pair is first seen in the stream.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# 'S1_D1 760' (MNE's convention); the wavelength may come separately (``wavelengths=``).
_LABEL_RE = re.compile(r"^S(\d+)_D(\d+)(?:\s+(\d+(?:\.\d*)?))?$")


@dataclass(frozen=True)
class NirsPair:
    """One source-detector pair: its two stream columns (shorter wavelength first) and geometry."""

    source: str  # 'S1'
    detector: str  # 'D1'
    columns: tuple[int, int]  # stream columns at (wavelengths[0], wavelengths[1]) of the layout
    distance_m: float | None  # source-detector distance; None: unknown
    midpoint_m: tuple[float, float, float] | None  # between source and detector; None: positions unknown
    short: bool

    @property
    def name(self) -> str:
        """'S1_D1', the prefix of every label derived from this pair."""
        return f"{self.source}_{self.detector}"


class NirsLayout:
    """Pairs of a stream, grouped from its column labels; build with ``from_labels`` or ``from_mne``."""

    def __init__(self, pairs: Sequence[NirsPair], wavelengths: tuple[float, float], n_columns: int,
                 short_max_m: float, unused_columns: Sequence[int] = ()) -> None:
        if not pairs:
            raise ValueError("an fNIRS layout needs at least one source-detector pair")
        self.pairs: tuple[NirsPair, ...] = tuple(pairs)
        self.wavelengths = wavelengths
        self.n_columns = int(n_columns)
        self.short_max_m = float(short_max_m)
        self.unused_columns: tuple[int, ...] = tuple(unused_columns)  # stream columns that are no fNIRS channel
        self._index = {p.name: i for i, p in enumerate(self.pairs)}
        self._nearest = self._match_shorts()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_labels(
        cls,
        labels: Sequence[str],
        wavelengths: Sequence[float | None] | None = None,
        positions: Mapping[str, Sequence[float]] | None = None,
        short_max_m: float = 0.015,
        distance_m: float | Mapping[str, float] | None = None,
    ) -> NirsLayout:
        """Group stream columns labelled like 'S1_D1 760' into pairs.

        ``wavelengths``: one per column (nm) for streams whose labels carry none ('S1_D1'); it wins
        over a label's. ``positions``: optode label ('S1', 'D1') -> xyz in metres; a pair's distance
        is the Euclidean one (as MNE's ``source_detector_distances``). ``distance_m``: a distance for
        every pair, or pair name -> distance; it wins over positions (as MNE's ``sd_distances``).
        A pair is short when its distance is below ``short_max_m``. Columns whose labels are no
        fNIRS channel (a trigger, an accelerometer) are left out and listed in ``unused_columns``.
        """
        if wavelengths is not None and len(wavelengths) != len(labels):
            raise ValueError(f"wavelengths: one per column ({len(labels)}) expected, got {len(wavelengths)}")
        found: dict[str, dict[float, int]] = {}
        unused: list[int] = []
        for col, label in enumerate(labels):
            m = _LABEL_RE.match(str(label).strip())
            wl: float | None = None
            if m is not None:
                wl = float(m.group(3)) if m.group(3) is not None else None
                if wavelengths is not None and wavelengths[col] is not None:
                    wl = float(wavelengths[col])  # type: ignore[arg-type]  # checked not None just above
            if m is None or wl is None:
                unused.append(col)
                continue
            name = f"S{m.group(1)}_D{m.group(2)}"
            per_wl = found.setdefault(name, {})
            if wl in per_wl:
                raise ValueError(f"pair {name}: wavelength {wl:g} nm appears twice (columns {per_wl[wl]} and {col})")
            per_wl[wl] = col
        if not found:
            raise ValueError(f"no column label is an fNIRS channel like 'S1_D1 760': {list(labels)[:5]}")
        all_wl = sorted({wl for per_wl in found.values() for wl in per_wl})
        if len(all_wl) != 2:
            raise ValueError(f"exactly 2 wavelengths are supported, the stream has {len(all_wl)}: "
                             f"{', '.join(f'{w:g}' for w in all_wl)} nm")
        pairs = []
        for name, per_wl in found.items():
            missing = [wl for wl in all_wl if wl not in per_wl]
            if missing:
                raise ValueError(f"pair {name} has no column at {missing[0]:g} nm (it has {next(iter(per_wl)):g} nm)")
            source, detector = name.split("_")
            dist, mid = _geometry(name, source, detector, positions, distance_m)
            pairs.append(NirsPair(source, detector, (per_wl[all_wl[0]], per_wl[all_wl[1]]), dist, mid,
                                  short=dist is not None and dist < short_max_m))
        return cls(pairs, (all_wl[0], all_wl[1]), len(labels), short_max_m, unused)

    @classmethod
    def from_mne(cls, info: Any, short_max_m: float = 0.015) -> NirsLayout:
        """The layout of an MNE ``Info`` with fnirs_cw_amplitude or fnirs_od channels (tests, replay).

        Columns are indices into ``info['chs']``; the optodes' positions are where MNE keeps them
        (``loc[3:6]`` source, ``loc[6:9]`` detector); other channels are ``unused_columns``.
        """
        from mne import pick_types  # type: ignore[import-untyped]  # noqa: PLC0415  # MNE (no stubs) only for offline tools, never on import

        picks = set(pick_types(info, fnirs=["fnirs_cw_amplitude", "fnirs_od"], exclude=[]).tolist())
        if not picks:
            raise ValueError("the Info has no fnirs_cw_amplitude or fnirs_od channel")
        labels = [name if i in picks else "" for i, name in enumerate(info["ch_names"])]
        positions: dict[str, list[float]] = {}
        for i in sorted(picks):
            m = _LABEL_RE.match(info["ch_names"][i])
            if m is None:
                raise ValueError(f"fNIRS channel {info['ch_names'][i]!r} is not named like 'S1_D1 760'")
            loc = np.asarray(info["chs"][i]["loc"], dtype=np.float64)
            for optode, xyz in ((f"S{m.group(1)}", loc[3:6]), (f"D{m.group(2)}", loc[6:9])):
                if np.all(np.isfinite(xyz)):
                    positions.setdefault(optode, xyz.tolist())
        return cls.from_labels(labels, positions=positions, short_max_m=short_max_m)

    # ------------------------------------------------------------------ queries

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.pairs)

    @property
    def long_pairs(self) -> tuple[NirsPair, ...]:
        return tuple(p for p in self.pairs if not p.short)

    @property
    def short_pairs(self) -> tuple[NirsPair, ...]:
        return tuple(p for p in self.pairs if p.short)

    def index(self, name: str) -> int:
        """Position of pair ``name`` ('S1_D1') in ``pairs``."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"no pair {name!r} in the layout ({', '.join(self.names)})") from None

    def columns(self) -> np.ndarray:
        """Stream columns ``(2, n_pairs)``: row 0 the shorter wavelength, row 1 the longer."""
        return np.array([[p.columns[0] for p in self.pairs], [p.columns[1] for p in self.pairs]], dtype=np.intp)

    def distances(self) -> list[float | None]:
        return [p.distance_m for p in self.pairs]

    def nearest_short(self, pair: str | NirsPair) -> NirsPair | None:
        """The short pair whose midpoint is closest to this long pair's (MNE-NIRS's choice).

        Without positions: a short pair sharing the source, else one sharing the detector
        (the same patch of scalp), else None. A short pair has no partner itself.
        """
        name = pair if isinstance(pair, str) else pair.name
        j = self._nearest[self.index(name)]
        return None if j < 0 else self.pairs[j]

    def nearest_short_indices(self) -> np.ndarray:
        """For every pair, the index of its short partner in ``pairs``, -1 when it has none."""
        return np.asarray(self._nearest, dtype=np.intp)

    def _match_shorts(self) -> list[int]:
        shorts = [j for j, p in enumerate(self.pairs) if p.short]
        out = []
        for p in self.pairs:
            if p.short or not shorts:
                out.append(-1)
                continue
            mid = p.midpoint_m
            located = [j for j in shorts if self.pairs[j].midpoint_m is not None]
            if mid is not None and located:
                d = [math.dist(mid, self.pairs[j].midpoint_m) for j in located]  # type: ignore[arg-type]  # filtered
                out.append(located[int(np.argmin(d))])
                continue
            same = [j for j in shorts if self.pairs[j].source == p.source]
            same = same or [j for j in shorts if self.pairs[j].detector == p.detector]
            out.append(same[0] if same else -1)
        return out


def _geometry(name: str, source: str, detector: str, positions: Mapping[str, Sequence[float]] | None,
              distance_m: float | Mapping[str, float] | None) -> tuple[float | None, tuple[float, float, float] | None]:
    """(distance, midpoint) of one pair from what the caller knows; either may be None."""
    mid = None
    dist: float | None = None
    if positions is not None and source in positions and detector in positions:
        s = np.asarray(positions[source], dtype=np.float64)
        d = np.asarray(positions[detector], dtype=np.float64)
        if s.shape != (3,) or d.shape != (3,):
            raise ValueError(f"pair {name}: optode positions must be xyz (3 values), got {s.shape} and {d.shape}")
        dist = float(np.linalg.norm(d - s))
        m = (s + d) / 2.0
        mid = (float(m[0]), float(m[1]), float(m[2]))
    if isinstance(distance_m, Mapping):
        if name in distance_m:
            dist = float(distance_m[name])
    elif distance_m is not None:
        dist = float(distance_m)
    if dist is not None and not (math.isfinite(dist) and dist >= 0.0):
        raise ValueError(f"pair {name}: source-detector distance must be a finite distance >= 0 m, got {dist}")
    return dist, mid
