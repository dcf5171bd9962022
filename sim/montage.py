"""Channel labels and approximate electrode positions for simulated EEG.

A simulated amplifier needs believable labels (so protocols can ask for ``Cz``) and
positions (so sources can be mixed into channels with a spatial topography and so a
topography can be drawn). Labels follow the 10-10 system for up to 64 channels;
above 64 the extra channels get generic labels ``EEG065``, ``EEG066`` ...
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# The 64-channel 10-10 set, in the canonical front-to-back, left-to-right order.
LABELS_64: tuple[str, ...] = (
    "Fp1", "Fpz", "Fp2",
    "AF7", "AF3", "AFz", "AF4", "AF8",
    "F7", "F5", "F3", "F1", "Fz", "F2", "F4", "F6", "F8",
    "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8",
    "T7", "C5", "C3", "C1", "Cz", "C2", "C4", "C6", "T8",
    "TP7", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8",
    "P9", "P7", "P5", "P3", "P1", "Pz", "P2", "P4", "P6", "P8", "P10",
    "PO7", "PO3", "POz", "PO4", "PO8",
    "O1", "Oz", "O2", "Iz",
)  # fmt: skip

# Which labels a montage of n < 64 channels keeps: the first n of this ranking
# (classic 10-20 sites first, Cz always first), then reported in canonical order.
_PRIORITY: tuple[str, ...] = (
    "Cz", "Fz", "Pz", "C3", "C4", "Fp1", "Fp2", "O1", "O2", "F3", "F4", "P3", "P4",
    "F7", "F8", "T7", "T8", "P7", "P8", "FCz", "Oz", "Fpz", "CPz", "POz",
    "FC1", "FC2", "CP1", "CP2", "FC5", "FC6", "CP5", "CP6",
    "AF3", "AF4", "PO3", "PO4", "C1", "C2", "F1", "F2", "P1", "P2",
    "AF7", "AF8", "FT7", "FT8", "TP7", "TP8", "PO7", "PO8",
    "C5", "C6", "F5", "F6", "P5", "P6", "FC3", "FC4", "CP3", "CP4",
    "AFz", "P9", "P10", "Iz",
)  # fmt: skip
assert sorted(_PRIORITY) == sorted(LABELS_64), "priority list must be a permutation of LABELS_64"


def channel_labels(n: int) -> list[str]:
    """Labels for an ``n``-channel simulated cap (10-10 names up to 64, then EEG065...)."""
    if n < 1:
        raise ValueError(f"channel count must be >= 1, got {n}")
    if n >= len(LABELS_64):
        return list(LABELS_64) + [f"EEG{i:03d}" for i in range(len(LABELS_64) + 1, n + 1)]
    keep = set(_PRIORITY[:n])
    return [label for label in LABELS_64 if label in keep]


@lru_cache(maxsize=1)
def _template_positions() -> dict[str, np.ndarray]:
    """3-D positions (metres, head coordinates) of the 10-05 template, keyed by label."""
    try:
        import mne
    except ImportError:  # pragma: no cover - mne is a declared dependency
        return {}
    builtin = set(mne.channels.get_builtin_montages())
    # MNE >= 1.13 renamed 'standard_1005' to 'colin27_1005' (same positions).
    kind = "colin27_1005" if "colin27_1005" in builtin else "standard_1005"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        montage = mne.channels.make_standard_montage(kind)
    return {k: np.asarray(v, dtype=float) for k, v in montage.get_positions()["ch_pos"].items()}


def _fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through ``points`` (n, 3): centre and radius."""
    a = np.column_stack([2.0 * points, np.ones(len(points))])
    b = (points**2).sum(axis=1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    centre = sol[:3]
    radius = float(np.sqrt(sol[3] + centre @ centre))
    return centre, radius


def _fibonacci_cap(n: int, z_min: float = -0.2) -> np.ndarray:
    """``n`` roughly evenly spread unit vectors on the sphere cap z >= z_min."""
    i = np.arange(n) + 0.5
    z = 1.0 - (1.0 - z_min) * i / n
    r = np.sqrt(1.0 - z**2)
    phi = i * np.pi * (3.0 - np.sqrt(5.0))
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


@dataclass(frozen=True)
class Montage:
    """Labels with 3-D positions (metres, head frame) and a 2-D projection for topographies."""

    labels: tuple[str, ...]
    pos3d: np.ndarray  # (n_channels, 3), metres
    pos2d: np.ndarray  # (n_channels, 2), unit head circle at the equator
    centre: np.ndarray  # (3,), sphere centre
    radius: float  # metres

    def index(self, label: str) -> int:
        """Position of ``label`` in the montage (case-insensitive)."""
        lowered = [lab.lower() for lab in self.labels]
        try:
            return lowered.index(label.lower())
        except ValueError:
            raise KeyError(f"channel {label!r} is not in this montage ({len(self.labels)} channels)") from None

    def position_of(self, label: str) -> np.ndarray:
        """3-D position of any 10-05 label, whether or not it is in this montage."""
        return template_position(label)


def template_position(label: str) -> np.ndarray:
    """3-D position (metres) of a 10-05 label from the template; KeyError if unknown."""
    table = _template_positions()
    for key, value in table.items():
        if key.lower() == label.lower():
            return value.copy()
    raise KeyError(f"no template position for channel {label!r}")


def _project(unit: np.ndarray) -> np.ndarray:
    """Azimuthal equidistant projection of unit vectors (vertex at the origin, equator at r=1)."""
    theta = np.arccos(np.clip(unit[:, 2], -1.0, 1.0))
    phi = np.arctan2(unit[:, 1], unit[:, 0])
    r = theta / (np.pi / 2.0)
    return np.column_stack([r * np.cos(phi), r * np.sin(phi)])


def make_montage(n: int | Sequence[str]) -> Montage:
    """Montage of ``n`` channels (labels from :func:`channel_labels`), or of the given labels.

    Given labels keep their spelling and order, so a simulated cap can carry what a protocol asks
    for (e.g. the 10-20 names T3/T4/T5/T6, at the template's T7/T8/P7/P8); each needs a template position.
    """
    if isinstance(n, str) or not isinstance(n, (int, np.integer)):
        return _montage_of_labels([str(label) for label in n])
    labels = channel_labels(int(n))
    table = _template_positions()
    known = np.array([table[k] for k in LABELS_64 if k in table]) if table else np.empty((0, 3))
    if len(known) >= 10:
        centre, radius = _fit_sphere(known)
    else:  # no template: a 9 cm sphere at the origin
        centre, radius = np.zeros(3), 0.09
    generic = [i for i, lab in enumerate(labels) if lab not in table]
    fill = _fibonacci_cap(len(generic)) * radius + centre if generic else np.empty((0, 3))
    pos3d = np.empty((len(labels), 3))
    g = 0
    for i, lab in enumerate(labels):
        if lab in table:
            pos3d[i] = table[lab]
        else:
            pos3d[i] = fill[g]
            g += 1
    unit = pos3d - centre
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    return Montage(tuple(labels), pos3d, _project(unit), centre, radius)


def _montage_of_labels(labels: list[str]) -> Montage:
    if not labels:
        raise ValueError("a montage needs at least one channel label")
    lowered = [label.lower() for label in labels]
    if len(set(lowered)) != len(lowered):
        raise ValueError(f"channel labels repeat: {', '.join(labels)}")
    positions = []
    for label in labels:
        try:
            positions.append(template_position(label))
        except KeyError:
            raise ValueError(f"channel {label!r} has no 10-05 template position (labels like Cz, T3, FC1)") from None
    full = make_montage(len(LABELS_64))  # the head sphere from the whole template
    pos3d = np.array(positions)
    unit = pos3d - full.centre
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    return Montage(tuple(labels), pos3d, _project(unit), full.centre, full.radius)
