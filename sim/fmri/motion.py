"""Simulated head motion: slow drifts and sudden jerks, applied as true rigid transforms.

Convention (the same as ``controller.fmri.motion``, so truth and realignment estimates compare
directly): the six parameters ``[tx, ty, tz] mm, [rx, ry, rz] deg`` describe how the head moved
relative to its position at volume 1: a point ``x`` of the head at rest (world mm, RAS+) is at
``y = R @ x + t`` in the moved volume, ``R = Rx(rx) @ Ry(ry) @ Rz(rz)`` (right-handed, about the
world origin, which in the phantom's MNI space is near the middle of the brain). Volume 1 has
zero motion, so the truth equals what realignment to volume 1 should estimate.

The moved volume is the head image resampled at ``T^-1`` of every voxel's world position
(scipy.ndimage.affine_transform - map_coordinates on the affine grid, 2x
faster - order 1 or 3), i.e. a real rigid transform of the image,
not a shifted copy. Framewise displacement (Power et al. 2012) uses a 50 mm sphere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


def rotation_matrix(rx: float, ry: float, rz: float) -> np.ndarray:
    """``Rx(rx) @ Ry(ry) @ Rz(rz)`` in radians (3x3)."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    rot_x = np.array([[1.0, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1.0, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1.0]])
    return rot_x @ rot_y @ rot_z


def rigid_matrix(params6: np.ndarray) -> np.ndarray:
    """4x4 world transform (rest -> moved) of ``[tx, ty, tz (mm), rx, ry, rz (deg)]``."""
    p = np.asarray(params6, dtype=float).reshape(6)
    m = np.eye(4)
    m[:3, :3] = rotation_matrix(*np.deg2rad(p[3:]))
    m[:3, 3] = p[:3]
    return m


def framewise_displacement(params: np.ndarray, radius_mm: float = 50.0) -> np.ndarray:
    """FD per row of (n, 6) params: sum of |d translation| + arc length of |d rotation| on a sphere."""
    p = np.asarray(params, dtype=float).reshape(-1, 6)
    d = np.abs(np.diff(p, axis=0, prepend=p[:1]))
    return d[:, :3].sum(axis=1) + np.deg2rad(d[:, 3:]).sum(axis=1) * radius_mm


@dataclass(frozen=True)
class MotionConfig:
    """How the head moves; amplitudes are typical of a cooperative adult in a long run."""

    drift_mm_per_min: float = 0.15  # SD of the slow random-walk drift, translation, per minute
    drift_deg_per_min: float = 0.1  # same for rotations
    jerks_per_min: float = 0.5  # sudden movements (coughs, swallows, adjustments)
    jerk_mm: float = 1.0  # typical size of a jerk (translation; rotations get jerk_mm / 2 deg)
    jerk_return: float = 0.7  # fraction of a jerk undone by the next volume (the head settles back)

    @property
    def still(self) -> bool:
        return self.drift_mm_per_min == 0 and self.drift_deg_per_min == 0 and (
            self.jerks_per_min == 0 or self.jerk_mm == 0)


class MotionModel:
    """Per-volume 6 parameters: a random-walk drift plus Poisson jerks that partly settle back."""

    def __init__(self, tr_s: float, config: MotionConfig | None = None, seed: int = 0) -> None:
        self.config = config or MotionConfig()
        self.tr_s = float(tr_s)
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 0x30710]))
        self._drift = np.zeros(6)
        self._pending = np.zeros(6)  # part of the last jerk that settles back at the next volume
        self._last = np.zeros(6)
        self.volumes = 0
        self.jerks = 0

    def next(self) -> np.ndarray:
        """Parameters of the next volume (the first one is exactly zero)."""
        cfg = self.config
        self.volumes += 1
        if self.volumes == 1:
            return self._last.copy()
        scale = np.sqrt(self.tr_s / 60.0) * np.array([cfg.drift_mm_per_min] * 3 + [cfg.drift_deg_per_min] * 3)
        self._drift += scale * self._rng.standard_normal(6)
        self._drift -= self._pending
        self._pending = np.zeros(6)
        if cfg.jerk_mm > 0 and self._rng.random() < 1.0 - np.exp(-cfg.jerks_per_min * self.tr_s / 60.0):
            size = np.r_[np.full(3, cfg.jerk_mm), np.full(3, cfg.jerk_mm / 2.0)]
            jerk = size * self._rng.standard_normal(6) / np.sqrt(3.0)
            self._drift += jerk
            self._pending = cfg.jerk_return * jerk
            self.jerks += 1
        self._last = self._drift.copy()
        return self._last.copy()


class RigidResampler:
    """Samples the moved head onto the acquisition grid (the grid stays; the head moves).

    ``head_affine`` is the voxel->world map of the head image (default: the output grid's); the
    simulator's head is a few slices taller than the slab so motion brings tissue, not zeros, in.
    """

    def __init__(self, shape: tuple[int, int, int], affine: np.ndarray, order: int = 3,
                 head_affine: np.ndarray | None = None) -> None:
        if order not in (0, 1, 3):
            raise ValueError(f"interpolation order must be 0, 1 or 3, got {order}")
        self.shape = tuple(int(n) for n in shape)
        self.affine = np.asarray(affine, dtype=float)
        self.head_affine = self.affine if head_affine is None else np.asarray(head_affine, dtype=float)
        self.order = order
        self._inv_head = np.linalg.inv(self.head_affine)
        offset = self._inv_head @ self.affine  # output voxel -> head voxel without motion
        self._slab = None
        if np.allclose(offset[:3, :3], np.eye(3)) and np.allclose(offset[:3, 3], np.round(offset[:3, 3])):
            self._slab = tuple(slice(int(round(o)), int(round(o)) + n) for o, n in zip(offset[:3, 3], self.shape))

    def voxel_map(self, params6: np.ndarray) -> np.ndarray:
        """4x4 map from an output voxel to the head-image voxel it samples: ``H^-1 T^-1 A``."""
        return self._inv_head @ np.linalg.inv(rigid_matrix(params6)) @ self.affine

    def apply(self, head: np.ndarray, params6: np.ndarray) -> np.ndarray:
        """The head image as seen after the motion ``params6`` (float32; outside the head image -> 0)."""
        p = np.asarray(params6, dtype=float)
        if not np.any(p) and self._slab is not None:
            return np.array(head[self._slab], dtype=np.float32)
        m = self.voxel_map(p)
        return ndimage.affine_transform(np.asarray(head, dtype=np.float32), m[:3, :3], m[:3, 3],
                                        output_shape=self.shape, order=self.order, mode="constant", cval=0.0,
                                        output=np.float32, prefilter=self.order > 1)
