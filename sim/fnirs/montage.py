"""The simulator's prefrontal fNIRS montage: optode positions (mm) and the channels they form.

Layout. 8 sources and 8 detectors alternate in a checkerboard of 2 rows x 8 columns across the
forehead (lower row just above the eyebrows, upper row 30 mm above it), so every source has its
horizontal and vertical neighbours as detectors: 22 long channels at 30 mm. Each source also has
a short-separation detector (D9-D16, like a NIRx short-channel bundle) 8 mm away, on the side away
from the other row: 8 short channels, and every long channel shares its source with one.

Positions. On a cylinder of radius 90 mm (the forehead curves around the head but little from brow to
hairline), its axis tilted back 20 degrees from vertical, in MNE's head frame (x right, y anterior,
z up, mm, origin between the ears): the lower row 20 mm above the ear-nasion plane at the midline.
Neighbours are placed 30 mm apart as chords, and a tilted cylinder is a rotated straight one, so every
long pair is 30.0 mm and every short pair 8.0 mm apart (Euclidean, as a controller computes them
from the positions). The band spans about +-67 degrees around the forehead (Fp1/Fp2 to beyond
F7/F8), like an 8-source prefrontal headband.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

HEAD_RADIUS_MM = 90.0
LONG_MM = 30.0
SHORT_MM = 8.0
WAVELENGTHS_NM = (760, 850)
TILT_DEG = 20.0
LOWER_ROW_Z_MM = 20.0  # height of the lower row on the midline
SHORT_MAX_MM = 15.0  # a channel this short or shorter is a short-separation channel


@dataclass(frozen=True)
class Pair:
    """One source-detector pair (a channel at every wavelength)."""

    source: str  # "S1"
    detector: str  # "D1"
    distance_mm: float

    @property
    def name(self) -> str:
        return f"{self.source}_{self.detector}"

    @property
    def short(self) -> bool:
        return self.distance_mm <= SHORT_MAX_MM


@dataclass(frozen=True)
class NirsMontage:
    """Optode positions (mm) and the pairs, in pair-major order: (source number, detector number)."""

    sources: dict[str, np.ndarray]  # label -> xyz mm
    detectors: dict[str, np.ndarray]
    pairs: tuple[Pair, ...]
    wavelengths: tuple[int, ...] = WAVELENGTHS_NM

    @property
    def n_columns(self) -> int:
        return len(self.pairs) * len(self.wavelengths)

    @cached_property
    def column_pairs(self) -> np.ndarray:
        """Index into ``pairs`` of every stream column (pair-major: each pair at every wavelength)."""
        return np.repeat(np.arange(len(self.pairs)), len(self.wavelengths))

    @cached_property
    def column_wavelengths(self) -> np.ndarray:
        return np.tile(np.asarray(self.wavelengths), len(self.pairs))

    @property
    def labels(self) -> tuple[str, ...]:
        """MNE's channel names: 'S1_D1 760', 'S1_D1 850', 'S1_D2 760', ..."""
        return tuple(f"{p.name} {w}" for p in self.pairs for w in self.wavelengths)

    @cached_property
    def short_mask(self) -> np.ndarray:
        """Per pair: True for short-separation pairs."""
        return np.array([p.short for p in self.pairs])

    @cached_property
    def distances_mm(self) -> np.ndarray:
        return np.array([p.distance_mm for p in self.pairs])

    @cached_property
    def midpoints(self) -> np.ndarray:
        """(n_pairs, 3) mm: where each channel samples."""
        return np.array([(self.sources[p.source] + self.detectors[p.detector]) / 2 for p in self.pairs])

    def nearest_short(self) -> np.ndarray:
        """For every pair, the index of the short pair whose midpoint is nearest (a short pair: itself)."""
        shorts = np.flatnonzero(self.short_mask)
        if not len(shorts):
            raise ValueError("the montage has no short-separation pairs")
        d = np.linalg.norm(self.midpoints[:, None, :] - self.midpoints[None, shorts, :], axis=2)
        return shorts[np.argmin(d, axis=1)]

    def pair_index(self, name: str) -> int:
        for i, p in enumerate(self.pairs):
            if p.name == name:
                return i
        raise ValueError(f"no pair {name!r} in the montage; pairs: {', '.join(p.name for p in self.pairs)}")


def _on_forehead(azimuth: float, height: float) -> np.ndarray:
    """A point of the tilted forehead cylinder: azimuth from the midline toward the right (radians), height
    along the cylinder's axis above the lower row (mm) -> xyz mm in the head frame."""
    r, tilt = HEAD_RADIUS_MM, math.radians(TILT_DEG)
    x, y, z = r * math.sin(azimuth), r * math.cos(azimuth), height
    # lean back (up the axis moves toward -y), then lift the lower row's midline point to LOWER_ROW_Z_MM
    z0 = LOWER_ROW_Z_MM - r * math.sin(tilt)
    return np.array([x, y * math.cos(tilt) - z * math.sin(tilt), y * math.sin(tilt) + z * math.cos(tilt) + z0])


def prefrontal_montage(columns: int = 8, wavelengths: tuple[int, ...] = WAVELENGTHS_NM) -> NirsMontage:
    """The default simulator montage (see the module docstring); ``columns`` even, 2..10."""
    if columns < 2 or columns % 2 or columns > 10:
        raise ValueError(f"columns must be even, 2..10, got {columns}")
    az_step = 2 * math.asin(LONG_MM / 2 / HEAD_RADIUS_MM)  # a 30 mm chord around the cylinder
    heights = (0.0, LONG_MM)
    sources: dict[str, np.ndarray] = {}
    detectors: dict[str, np.ndarray] = {}
    grid: dict[tuple[int, int], str] = {}  # (row, column) -> optode label
    shorts: dict[str, str] = {}  # source -> its short-separation detector
    for c in range(columns):
        az = (c - (columns - 1) / 2) * az_step
        for row, h in enumerate(heights):
            if (row + c) % 2 == 0:
                label = f"S{len(sources) + 1}"
                sources[label] = _on_forehead(az, h)
                shorts[label] = f"D{columns + len(sources)}"  # long detectors are D1..D<columns>
                away = -SHORT_MM if row == 0 else SHORT_MM  # off the side away from the other row
                detectors[shorts[label]] = _on_forehead(az, h + away)
            else:
                label = f"D{len(detectors) - len(shorts) + 1}"
                detectors[label] = _on_forehead(az, h)
            grid[(row, c)] = label
    pairs: list[Pair] = []
    for (row, c), label in grid.items():
        if not label.startswith("S"):
            continue
        for nb in ((row, c - 1), (row, c + 1), (1 - row, c)):
            other = grid.get(nb)
            if other is not None:
                pairs.append(Pair(label, other, float(np.linalg.norm(sources[label] - detectors[other]))))
        d = shorts[label]
        pairs.append(Pair(label, d, float(np.linalg.norm(sources[label] - detectors[d]))))
    pairs.sort(key=lambda p: (int(p.source[1:]), int(p.detector[1:])))
    ordered = {k: detectors[k] for k in sorted(detectors, key=lambda k: int(k[1:]))}
    return NirsMontage(sources=sources, detectors=ordered, pairs=tuple(pairs), wavelengths=tuple(wavelengths))
