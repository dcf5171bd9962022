"""An LSL stream of volumes (docs/lsl_volumes.md) as a volume source.

The stream description is validated when the source opens; any deviation from the convention
is refused with a message naming the stream and what is wrong. Each pulled sample becomes a
:class:`Volume` whose ``acquired`` is the sample's timestamp (clock-synced to this host: the
sender's acquisition time, so ``acquisition_known``), ``received`` the moment the pull returned it
(acquisition -> received is the delivery delay: a scanner sends a volume once it is complete, about
a TR after its stamp) and whose data is a float32 Fortran-ordered copy of channels 1.. (one memcpy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pylsl

from controller.clock import now
from controller.inputs.source import Sink
from controller.inputs.volumes.source import VolumeSource
from controller.inputs.volumes.volume import Volume

STREAM_TYPE = "fMRI"


@dataclass(frozen=True)
class VolumeStreamGeometry:
    shape: tuple[int, int, int]
    order: str
    affine: np.ndarray
    tr_s: float
    first_index: int
    manufacturer: str = ""
    source: str = ""


def parse_stream_info(info: pylsl.StreamInfo) -> VolumeStreamGeometry:
    """Check a full StreamInfo (with desc) against the convention; ValueError naming the problem."""
    where = f"LSL stream {info.name()!r} (source_id {info.source_id()!r})"
    if info.type() != STREAM_TYPE:
        raise ValueError(f"{where}: type is {info.type()!r}, expected {STREAM_TYPE!r}")
    if info.channel_format() != pylsl.cf_float32:
        raise ValueError(f"{where}: channel_format is {info.channel_format()} (liblsl code), expected float32 "
                         f"({pylsl.cf_float32})")
    vol = info.desc().child("volume")
    if vol.empty():
        raise ValueError(f"{where}: desc has no <volume> element (shape, order, affine, tr)")

    def field(name: str) -> str:
        value = vol.child_value(name).strip()
        if not value:
            raise ValueError(f"{where}: desc/volume/{name} is missing or empty")
        return value

    try:
        shape = tuple(int(v) for v in field("shape").split())
    except ValueError as exc:
        raise ValueError(f"{where}: desc/volume/shape {field('shape')!r} is not 3 integers") from exc
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{where}: desc/volume/shape {field('shape')!r} must be 3 positive integers (nx ny nz)")
    order = vol.child_value("order").strip().upper() or "F"
    if order not in ("F", "C"):
        raise ValueError(f"{where}: desc/volume/order {order!r} must be F (or C)")
    try:
        numbers = np.array([float(v) for v in field("affine").split()])
    except ValueError as exc:
        raise ValueError(f"{where}: desc/volume/affine is not numeric") from exc
    if numbers.size != 16 or not np.isfinite(numbers).all():
        raise ValueError(f"{where}: desc/volume/affine must be 16 finite numbers (row-major 4x4), "
                         f"got {numbers.size}")
    affine = numbers.reshape(4, 4)
    if not np.allclose(affine[3], [0, 0, 0, 1]) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise ValueError(f"{where}: desc/volume/affine is not a valid voxel->mm affine (last row {affine[3]}, "
                         f"det {np.linalg.det(affine[:3, :3]):.3g})")
    try:
        tr = float(field("tr"))
    except ValueError as exc:
        raise ValueError(f"{where}: desc/volume/tr {field('tr')!r} is not a number") from exc
    if not tr > 0:
        raise ValueError(f"{where}: desc/volume/tr must be > 0 s, got {tr}")
    first_text = vol.child_value("first_index").strip() or "1"
    try:
        first = int(first_text)
    except ValueError as exc:
        raise ValueError(f"{where}: desc/volume/first_index {first_text!r} is not an integer") from exc
    n = 1 + shape[0] * shape[1] * shape[2]
    if info.channel_count() != n:
        raise ValueError(f"{where}: channel_count {info.channel_count()} != 1 + {shape[0]}*{shape[1]}*{shape[2]} "
                         f"= {n} (shape {' '.join(map(str, shape))})")
    acq = info.desc().child("acquisition")
    return VolumeStreamGeometry(shape, order, affine, tr, first,
                                acq.child_value("manufacturer"),
                                acq.child_value("source"))


class LslVolumeSource(VolumeSource):
    """Pulls one LSL volume stream; each sample is one volume."""

    kind = "lsl"

    def __init__(self, input_name: str, stream: str | pylsl.StreamInfo, sink: Sink[Volume],
                 stall_timeout_s: float = 10.0, first_index: int | None = None,
                 max_buffered_s: float = 120.0) -> None:
        super().__init__(input_name, sink, stall_timeout_s, first_index)
        self.stream = stream
        self.max_buffered_s = max_buffered_s
        self.geometry: VolumeStreamGeometry | None = None
        self._inlet: pylsl.StreamInlet | None = None
        self._first_index_option = first_index

    def _where(self) -> str:
        name = self.stream if isinstance(self.stream, str) else self.stream.name()
        return f"LSL {name}"

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if self.geometry is not None:
            info.update(first_index=self.geometry.first_index, source=self.geometry.source)
        return info

    def _open(self, timeout_s: float) -> None:
        info = self.stream
        if isinstance(info, str):
            found = pylsl.resolve_byprop("name", info, minimum=1, timeout=timeout_s)
            if not found:
                raise RuntimeError(f"input {self.input_name!r}: no LSL stream named {info!r} found within "
                                   f"{timeout_s:g} s")
            info = found[0]
        inlet = pylsl.StreamInlet(info, max_buflen=max(1, int(self.max_buffered_s)), recover=True,
                                  processing_flags=pylsl.proc_clocksync)
        try:
            full = inlet.info(timeout=timeout_s)
        except pylsl.util.TimeoutError as exc:
            raise RuntimeError(f"input {self.input_name!r}: LSL stream {info.name()!r} did not answer within "
                               f"{timeout_s:g} s") from exc
        self.geometry = geo = parse_stream_info(full)
        self.shape, self.tr_s = geo.shape, geo.tr_s
        if self._first_index_option is None:
            self.tracker.first_index = geo.first_index
        inlet.open_stream(timeout=timeout_s)
        try:  # the first clock-sync estimate takes ~0.6 s: pay it here, not on the first volume
            inlet.time_correction(timeout=timeout_s)
        except pylsl.util.TimeoutError as exc:
            raise RuntimeError(f"input {self.input_name!r}: LSL stream {info.name()!r}: no clock sync within "
                               f"{timeout_s:g} s") from exc
        self._inlet = inlet

    def _loop(self) -> None:
        assert self._inlet is not None and self.geometry is not None
        geo = self.geometry
        n_ch = 1 + int(np.prod(geo.shape))
        buffer = np.empty((4, n_ch), dtype=np.float32)
        wait = self._wait_s()
        inlet = self._inlet
        while not self._halt.is_set():
            data, stamps = inlet.pull_chunk(timeout=wait, max_samples=4, dest_obj=buffer, min_samples=1,
                                            as_numpy=True)
            received = now()
            if not len(stamps):
                self._tick()
                continue
            for row, stamp in zip(data, stamps):
                voxels = np.array(row[1:].reshape(geo.shape, order=geo.order), dtype=np.float32, order="F")
                self._deliver(Volume(index=int(round(float(row[0]))), data=voxels, affine=geo.affine,
                                     tr_s=geo.tr_s, acquired=float(stamp), arrived=now(), source=self._where(),
                                     received=received, acquisition_known=True))

    def _close(self) -> None:
        if self._inlet is not None:
            try:
                self._inlet.close_stream()
            except Exception:  # pragma: no cover - liblsl teardown
                pass
