"""One acquired fMRI volume as it travels the hot path (the fMRI counterpart of an EEG chunk)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Volume:
    """A 3D volume with where it sits in space and when it was acquired.

    ``index`` is the scanner's acquisition number (1-based, as Siemens numbers its files), so a
    missing or late volume is visible instead of silently shifting the design. ``data`` is float32
    in NIfTI array order (i, j, k); ``affine`` maps voxel (i, j, k) to scanner/world mm (RAS+).
    Both times are LSL ``local_clock()`` seconds: ``acquired`` is the scanner's time for the volume
    (or when its file appeared, if the source knows no better), ``arrived`` when it was fully read.
    """

    index: int
    data: np.ndarray
    affine: np.ndarray
    tr_s: float
    acquired: float
    arrived: float
    source: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape[:3])  # type: ignore[return-value]

    @property
    def voxel_size_mm(self) -> np.ndarray:
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
