"""One acquired fMRI volume as it travels the hot path (the fMRI counterpart of an EEG chunk)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Volume:
    """A 3D volume with where it sits in space and when it was acquired, received and read.

    ``index`` is the scanner's acquisition number (1-based, as Siemens numbers its files), so a
    missing or late volume is visible instead of silently shifting the design. ``data`` is float32
    in NIfTI array order (i, j, k); ``affine`` maps voxel (i, j, k) to scanner/world mm (RAS+).

    Times are LSL ``local_clock()`` seconds, kept apart because they measure different things:

    - ``acquired``: the volume's stamp on the run's timeline: the scanner's time for it when the
      source knows it (``acquisition_known``: an LSL stream's sample timestamp), else the moment
      the controller received it (a folder file: the scanner wrote it some unknown time after
      the acquisition, so that delay is *unknown*, never guessed);
    - ``received``: when the volume reached the controller (LSL: the pull that returned it; a
      folder: its file appeared), i.e. the end of delivery and the start of the controller's work;
    - ``arrived``: when it was fully read (decoded / copied) and handed to the pipeline.
    """

    index: int
    data: np.ndarray
    affine: np.ndarray
    tr_s: float
    acquired: float
    arrived: float
    source: str = ""
    received: float | None = None  # None: the same moment as ``acquired`` (sources that cannot tell them apart)
    acquisition_known: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape[:3])

    @property
    def voxel_size_mm(self) -> np.ndarray:
        size: NDArray[np.float64] = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return size

    @property
    def received_at(self) -> float:
        """When the volume reached the controller (``received``, else ``acquired``)."""
        return self.acquired if self.received is None else self.received

    @property
    def delivery_s(self) -> float | None:
        """Acquisition -> arrival at the controller in s; None when the source does not know the acquisition time."""
        return self.received_at - self.acquired if self.acquisition_known else None
