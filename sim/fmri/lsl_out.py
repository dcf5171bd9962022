"""The sending side of docs/lsl_volumes.md: one LSL sample per fMRI volume.

Why push_chunk with a 1-row float32 array: pylsl's ``push_sample`` converts the sample
through a ctypes array value by value (~60 ms for 74x74x36, ~280 ms for 800k voxels on the
2-core dev machine), while ``push_chunk`` of a C-contiguous float32 2D array hands liblsl the
buffer as is (~0.5 ms / ~1.6 ms). The row buffer is allocated once and refilled in place.
"""

from __future__ import annotations

import numpy as np
import pylsl

STREAM_TYPE = "fMRI"


def volume_stream_info(name: str, shape: tuple[int, int, int], affine: np.ndarray, tr_s: float, source_id: str,
                       first_index: int = 1, manufacturer: str = "", source: str = "") -> pylsl.StreamInfo:
    """The StreamInfo (with its ``desc``) the convention prescribes for a volume stream."""
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"volume shape must be 3 positive sizes, got {shape}")
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got shape {affine.shape}")
    if not tr_s > 0:
        raise ValueError(f"tr_s must be > 0, got {tr_s}")
    n_vox = shape[0] * shape[1] * shape[2]
    info = pylsl.StreamInfo(name, STREAM_TYPE, 1 + n_vox, 1.0 / tr_s, pylsl.cf_float32, source_id)
    desc = info.desc()
    vol = desc.append_child("volume")
    vol.append_child_value("shape", " ".join(str(n) for n in shape))
    vol.append_child_value("order", "F")
    vol.append_child_value("affine", " ".join(repr(float(v)) for v in affine.ravel()))
    vol.append_child_value("tr", repr(float(tr_s)))
    vol.append_child_value("first_index", str(int(first_index)))
    acq = desc.append_child("acquisition")
    acq.append_child_value("manufacturer", manufacturer)
    acq.append_child_value("source", source)
    channels = desc.append_child("channels")
    ch = channels.append_child("channel")
    ch.append_child_value("label", "index")
    ch.append_child_value("type", "index")
    return info


class VolumeOutlet:
    """An LSL outlet that sends whole volumes (index in channel 0, voxels in Fortran order)."""

    def __init__(self, name: str, shape: tuple[int, int, int], affine: np.ndarray, tr_s: float, source_id: str,
                 first_index: int = 1, manufacturer: str = "", source: str = "") -> None:
        self.name = name
        self.shape = tuple(int(n) for n in shape)
        self.tr_s = float(tr_s)
        self.info = volume_stream_info(name, self.shape, affine, tr_s, source_id, first_index, manufacturer, source)
        # a few volumes of buffer: a late receiver gets the recent ones, never minutes of stale data
        self._outlet: pylsl.StreamOutlet | None = pylsl.StreamOutlet(self.info, chunk_size=1, max_buffered=30)
        self._row = np.zeros((1, 1 + int(np.prod(self.shape))), dtype=np.float32)
        # a Fortran-ordered 3D view on the voxel part of the row: assigning to it fills the sample in place
        self._voxels = self._row[0, 1:].reshape(self.shape, order="F")
        self.pushed = 0

    def push(self, data: np.ndarray, index: int, timestamp: float | None = None) -> None:
        """Send one volume; ``timestamp`` = its acquisition time on the LSL clock (default: now)."""
        if self._outlet is None:
            raise RuntimeError(f"volume outlet {self.name!r} is closed")
        if data.shape[:3] != self.shape or data.ndim != 3:
            raise ValueError(f"volume {index}: shape {data.shape} does not match the stream's {self.shape}")
        self._row[0, 0] = index
        self._voxels[...] = data
        self._outlet.push_chunk(self._row, pylsl.local_clock() if timestamp is None else float(timestamp))
        self.pushed += 1

    def have_consumers(self) -> bool:
        return self._outlet is not None and self._outlet.have_consumers()

    def wait_for_consumers(self, timeout_s: float) -> bool:
        return self._outlet is not None and bool(self._outlet.wait_for_consumers(timeout_s))

    def close(self, linger_s: float = 0.5) -> None:
        """Destroy the outlet (receivers see the stream end).

        liblsl drops what its send thread has not yet written when the outlet is destroyed, so with
        receivers connected wait ``linger_s`` first: the last volume (~1 MB) still reaches them.
        """
        if self._outlet is not None and linger_s > 0 and self.pushed and self._outlet.have_consumers():
            import time

            time.sleep(linger_s)
        self._outlet = None

    def __enter__(self) -> VolumeOutlet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
