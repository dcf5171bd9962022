"""Rigid head motion: the six realignment parameters, their 4x4 matrix, and framewise displacement.

Convention (used everywhere in ``controller.fmri``):

* ``RigidMotion.matrix()`` maps a point in the *reference* volume's world space (mm, the RAS+ frame
  of the NIfTI affine) to where the same piece of tissue is in the *moving* volume's world space:
  ``y = R @ x + t``. So the parameters describe how the head moved: a head shifted 1 mm to the
  right (+x) gives ``tx = +1``.
* Rotations are about the world origin (0, 0, 0) (the scanner isocentre for scanner coordinates,
  as in SPM), right-handed, in radians, and compose as ``R = Rx(rx) @ Ry(ry) @ Rz(rz)`` (``rz`` is
  applied first). ``params6()`` reports ``[tx, ty, tz]`` in mm and ``[rx, ry, rz]`` in degrees.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def rotation_matrix(rx: float, ry: float, rz: float) -> np.ndarray:
    """``Rx(rx) @ Ry(ry) @ Rz(rz)`` for right-handed rotations in radians (3x3)."""
    cx, sx = np.cos(rx), np.sin(rx)
    cy, sy = np.cos(ry), np.sin(ry)
    cz, sz = np.cos(rz), np.sin(rz)
    return np.array(
        [
            [cy * cz, -cy * sz, sy],
            [cx * sz + sx * sy * cz, cx * cz - sx * sy * sz, -sx * cy],
            [sx * sz - cx * sy * cz, sx * cz + cx * sy * sz, cx * cy],
        ]
    )


def euler_from_rotation(r: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rotation_matrix` (angles in radians; ``|ry| < 90 deg`` assumed)."""
    ry = np.arcsin(np.clip(r[0, 2], -1.0, 1.0))
    rz = np.arctan2(-r[0, 1], r[0, 0])
    rx = np.arctan2(-r[1, 2], r[2, 2])
    return np.array([rx, ry, rz])


@dataclass(frozen=True, eq=False)
class RigidMotion:
    """Head position of one volume relative to the reference (see the module docstring for the convention).

    Immutable; compared by identity (``==`` on arrays is ambiguous): compare ``params6()`` instead.
    """

    translation_mm: np.ndarray = field(default_factory=lambda: np.zeros(3))
    rotation_rad: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def __post_init__(self) -> None:
        t = np.asarray(self.translation_mm, dtype=float).reshape(-1)
        r = np.asarray(self.rotation_rad, dtype=float).reshape(-1)
        if t.shape != (3,) or r.shape != (3,):
            raise ValueError(f"RigidMotion needs 3 translations and 3 rotations, got {t.shape} and {r.shape}")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(r))):
            raise ValueError(f"RigidMotion parameters must be finite, got t={t}, r={r}")
        object.__setattr__(self, "translation_mm", t)
        object.__setattr__(self, "rotation_rad", r)

    @classmethod
    def identity(cls) -> RigidMotion:
        return cls(np.zeros(3), np.zeros(3))

    @classmethod
    def from_params6(cls, params: np.ndarray) -> RigidMotion:
        """From ``[tx, ty, tz (mm), rx, ry, rz (deg)]`` as returned by :meth:`params6`."""
        p = np.asarray(params, dtype=float).reshape(-1)
        if p.shape != (6,):
            raise ValueError(f"params6 needs 6 numbers, got {p.shape}")
        return cls(p[:3], np.deg2rad(p[3:]))

    @classmethod
    def from_matrix(cls, m: np.ndarray) -> RigidMotion:
        """From a 4x4 (or 3x4) rigid world transform in this module's direction."""
        m = np.asarray(m, dtype=float)
        return cls(m[:3, 3].copy(), euler_from_rotation(m[:3, :3]))

    def rotation(self) -> np.ndarray:
        return rotation_matrix(*self.rotation_rad)

    def matrix(self) -> np.ndarray:
        """4x4 world transform: reference-space mm -> moving-space mm."""
        m = np.eye(4)
        m[:3, :3] = self.rotation()
        m[:3, 3] = self.translation_mm
        return m

    def params6(self) -> np.ndarray:
        """``[tx, ty, tz]`` in mm then ``[rx, ry, rz]`` in degrees (the usual motion-trace units)."""
        return np.concatenate([self.translation_mm, np.rad2deg(self.rotation_rad)])


def framewise_displacement(prev: RigidMotion, cur: RigidMotion, radius_mm: float = 50.0) -> float:
    """Power et al. (2012) FD: sum of absolute parameter changes, rotations as arc length on a sphere.

    ``radius_mm`` is the assumed head radius (50 mm in Power et al.).
    """
    dt = np.abs(cur.translation_mm - prev.translation_mm).sum()
    dr = np.abs(cur.rotation_rad - prev.rotation_rad).sum()
    return float(dt + radius_mm * dr)
