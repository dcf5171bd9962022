"""Optional Gaussian spatial smoothing of a volume, FWHM in mm on an anisotropic grid.

Separable (one 1D Gaussian per voxel axis, sigma = FWHM / (2 sqrt(2 ln 2)) / voxel size), zero
padding at the grid edge. Zero padding makes the operator self-adjoint, which is what lets
``Roi.smoothed`` fold the smoothing into the ROI weights so the hot path never smooths a whole
volume just to read a few ROI means.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def voxel_size_mm(affine: np.ndarray) -> np.ndarray:
    """Edge lengths (mm) of a voxel along the i, j, k axes."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


class GaussianSmoother:
    """Gaussian smoothing with a per-axis sigma fixed at construction (kernel truncated at ``truncate`` sigma)."""

    def __init__(self, fwhm_mm: float | tuple[float, float, float], voxel_mm: np.ndarray | tuple[float, ...], truncate: float = 4.0) -> None:
        fwhm = np.broadcast_to(np.asarray(fwhm_mm, dtype=np.float64), (3,))
        vox = np.asarray(voxel_mm, dtype=np.float64).reshape(3)
        if np.any(fwhm < 0) or not np.all(np.isfinite(fwhm)):
            raise ValueError(f"smoothing FWHM must be finite and >= 0 mm, got {fwhm_mm}")
        if np.any(vox <= 0):
            raise ValueError(f"voxel size must be > 0 mm, got {vox.tolist()}")
        self.fwhm_mm = fwhm.copy()
        self.sigma_vox = fwhm / FWHM_PER_SIGMA / vox
        self.truncate = float(truncate)

    @classmethod
    def for_affine(cls, fwhm_mm: float | tuple[float, float, float], affine: np.ndarray, truncate: float = 4.0) -> GaussianSmoother:
        return cls(fwhm_mm, voxel_size_mm(affine), truncate)

    def __call__(self, volume: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The smoothed volume (float32 in -> float32 out; float64 stays float64)."""
        vol = np.asarray(volume)
        if not np.issubdtype(vol.dtype, np.floating):
            vol = vol.astype(np.float32)
        if not np.any(self.sigma_vox > 0):
            if out is None:
                return vol.copy()
            out[...] = vol
            return out
        return ndimage.gaussian_filter(vol, self.sigma_vox, mode="constant", cval=0.0, truncate=self.truncate, output=out)
