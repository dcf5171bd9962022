"""DICOM patient geometry (LPS) -> the NIfTI-convention voxel layout and RAS+ affine.

Layout used by every DICOM reader here (the one dcm2niix writes, so a NIfTI converted from
the same series holds identical arrays): ``data[i, j, k] = slice_k[n_rows - 1 - j, i]``, i.e.
i runs along a DICOM row (increasing column), j runs up the rows (row order flipped), k
follows the slices in the order given.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def slice_normal(iop: np.ndarray) -> np.ndarray:
    """Unit normal of the image plane: row cosine x column cosine (LPS)."""
    n = np.cross(iop[:3], iop[3:])
    unit: NDArray[np.float64] = n / np.linalg.norm(n)
    return unit


def dicom_affine(iop: np.ndarray, pixel_spacing: np.ndarray, first_position: np.ndarray,
                 slice_step: np.ndarray, n_rows: int) -> np.ndarray:
    """RAS+ affine of ``data[i, j, k]`` (layout above).

    ``iop``: ImageOrientationPatient (row cosine, column cosine), ``pixel_spacing``: PixelSpacing
    (between rows, between columns), ``first_position``: LPS centre of pixel (0, 0) of slice 0,
    ``slice_step``: LPS vector from slice k to slice k+1, ``n_rows``: rows per slice.
    """
    row_cos = np.asarray(iop[:3], dtype=float)
    col_cos = np.asarray(iop[3:], dtype=float)
    d_row, d_col = float(pixel_spacing[0]), float(pixel_spacing[1])
    lps = np.eye(4)
    lps[:3, 0] = d_col * row_cos
    lps[:3, 1] = -d_row * col_cos
    lps[:3, 2] = slice_step
    lps[:3, 3] = np.asarray(first_position, dtype=float) + (n_rows - 1) * d_row * col_cos
    return LPS_TO_RAS @ lps


def slices_to_volume(slices: np.ndarray) -> np.ndarray:
    """(k, rows, cols) stack of DICOM slices -> (i, j, k) array in the layout above (a view)."""
    return slices.transpose(2, 1, 0)[:, ::-1, :]
