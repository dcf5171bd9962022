"""Sampling a volume at arbitrary voxel positions, and the voxel-to-voxel map a rigid motion implies.

Kept apart from the estimator because resampling ROI points, reslicing and realignment all need
exactly the same geometry: a point ``p`` of the reference grid is found in the moving volume at
``affine^-1 @ motion.matrix() @ affine @ p``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage  # type: ignore[import-untyped]  # scipy: no type stubs installed

from controller.fmri.motion import RigidMotion


def voxel_map(affine: np.ndarray, motion: RigidMotion) -> np.ndarray:
    """4x4 map from reference-grid voxel indices to moving-volume voxel indices (same grid)."""
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got {affine.shape}")
    return np.linalg.solve(affine, motion.matrix() @ affine)


class TrilinearSampler:
    """Trilinear interpolation at many points with edge clamping, as flat-index numpy gathers.

    For a few thousand points this is faster than ``scipy.ndimage.map_coordinates`` (no per-call
    setup) and needs no spline prefilter. Points outside the volume take the nearest edge value.
    """

    def __init__(self, shape: tuple[int, int, int]) -> None:
        if len(shape) != 3 or min(shape) < 2:
            raise ValueError(f"TrilinearSampler needs a 3D shape with every side >= 2, got {shape}")
        self.shape = tuple(int(s) for s in shape)
        nx, ny, nz = self.shape
        self._strides = np.array([ny * nz, nz, 1], dtype=np.intp)
        self._hi = np.array([[nx - 2], [ny - 2], [nz - 2]], dtype=float)
        self._offsets = [0, 1, nz, nz + 1, ny * nz, ny * nz + 1, ny * nz + nz, ny * nz + nz + 1]

    def __call__(self, flat: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Values of the C-contiguous volume ``flat`` (raveled) at voxel positions ``q`` (3, N)."""
        hi = self._hi
        qc = np.clip(q, 0.0, hi + 1.0)
        i0 = np.minimum(np.floor(qc), hi)
        f = qc - i0
        base = self._strides @ i0.astype(np.intp)
        o = self._offsets
        fx, fy, fz = f[0], f[1], f[2]
        gz = 1.0 - fz
        c00 = flat[base + o[0]] * gz + flat[base + o[1]] * fz
        c01 = flat[base + o[2]] * gz + flat[base + o[3]] * fz
        c10 = flat[base + o[4]] * gz + flat[base + o[5]] * fz
        c11 = flat[base + o[6]] * gz + flat[base + o[7]] * fz
        c0 = c00 + (c01 - c00) * fy
        c1 = c10 + (c11 - c10) * fy
        out: NDArray[np.float64] = c0 + (c1 - c0) * fx
        return out


def resample_points(
    volume: np.ndarray, affine: np.ndarray, motion: RigidMotion, points_vox: np.ndarray, order: int = 1
) -> np.ndarray:
    """The moving ``volume``'s values at reference-grid voxel positions ``points_vox`` (N, 3).

    Lets ROI means be taken in reference space without reslicing the whole volume. Same
    interpolation and edge handling (nearest edge value) as :func:`reslice`.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"resample_points needs a 3D volume, got shape {volume.shape}")
    pts = np.asarray(points_vox, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points_vox must be (N, 3), got {pts.shape}")
    b = voxel_map(affine, motion)
    q = b[:3, :3] @ pts.T + b[:3, 3:4]
    out_dtype = volume.dtype if np.issubdtype(volume.dtype, np.floating) else np.float32
    out: NDArray[np.floating[Any]] = ndimage.map_coordinates(volume, q, order=order, mode="nearest", prefilter=order > 1, output=out_dtype)
    return out


def reslice(volume: np.ndarray, affine: np.ndarray, motion: RigidMotion, order: int = 1) -> np.ndarray:
    """The moving ``volume`` resampled onto the reference grid (motion undone).

    Float input keeps its dtype, integer input becomes float32. Voxels whose tissue lies outside
    the moving volume's field of view take the nearest edge value.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"reslice needs a 3D volume, got shape {volume.shape}")
    b = voxel_map(affine, motion)
    out_dtype = volume.dtype if np.issubdtype(volume.dtype, np.floating) else np.float32
    out: NDArray[np.floating[Any]] = ndimage.affine_transform(
        volume, b[:3, :3], offset=b[:3, 3], order=order, mode="nearest", prefilter=order > 1, output=out_dtype
    )
    return out
