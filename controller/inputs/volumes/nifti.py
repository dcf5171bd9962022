"""Read one volume from a NIfTI-1 file (.nii or .nii.gz) held in memory, and tell when it is complete.

Why our own header parser: the source must decide from the bytes alone whether a file that is
still being written is complete (``vox_offset`` + data bytes present, gzip stream ended) before
it decodes anything, and parsing 348 bytes with ``struct`` costs microseconds. NIfTI-2 files
fall back to nibabel.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controller.inputs.volumes.dicom import IncompleteFile

_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8"}
_TIME_UNITS = {8: 1.0, 16: 1e-3, 24: 1e-6}


@dataclass
class NiftiVolume:
    data: np.ndarray       # (i, j, k) Fortran-ordered, stored dtype (float32 if scaled)
    affine: np.ndarray     # 4x4 RAS+ mm (sform if set, else qform, else pixdim)
    tr_s: float | None
    n_volumes: int         # of the file (1 for a 3D file)


@dataclass(frozen=True)
class NiftiHeader:
    endian: str
    shape: tuple[int, ...]
    dtype: np.dtype
    vox_offset: int
    slope: float
    inter: float
    affine: np.ndarray
    tr_s: float | None

    @property
    def data_bytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    @property
    def n_volumes(self) -> int:
        return int(np.prod(self.shape[3:])) if len(self.shape) > 3 else 1


def is_gzip(raw: bytes) -> bool:
    return raw[:2] == b"\x1f\x8b"


def gunzip_complete(raw: bytes, where: str) -> bytes:
    """Decompress a whole gzip stream; :class:`IncompleteFile` if it has not ended yet."""
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(raw)
    except zlib.error as exc:
        raise IncompleteFile(f"{where}: gzip stream broken or still being written ({exc})") from exc
    if not d.eof:
        raise IncompleteFile(f"{where}: gzip stream not finished ({len(raw)} bytes so far)")
    return out


def parse_header(raw: bytes, where: str) -> NiftiHeader:
    if len(raw) < 348:
        raise IncompleteFile(f"{where}: {len(raw)} bytes, shorter than a NIfTI-1 header")
    for endian in "<>":
        if struct.unpack_from(endian + "i", raw, 0)[0] == 348:
            break
    else:
        raise ValueError(f"{where}: not a NIfTI-1 file (sizeof_hdr is not 348)")
    magic = raw[344:348]
    if magic not in (b"n+1\0", b"ni1\0"):
        raise ValueError(f"{where}: bad NIfTI-1 magic {magic!r}")
    dim = struct.unpack_from(endian + "8h", raw, 40)
    if not 1 <= dim[0] <= 7:
        raise ValueError(f"{where}: bad dim[0] = {dim[0]}")
    shape = tuple(int(n) for n in dim[1:1 + dim[0]])
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    code = struct.unpack_from(endian + "h", raw, 70)[0]
    if code not in _DTYPES:
        raise ValueError(f"{where}: NIfTI datatype {code} not supported")
    dtype = np.dtype(endian + _DTYPES[code])
    pixdim = struct.unpack_from(endian + "8f", raw, 76)
    vox_offset = int(struct.unpack_from(endian + "f", raw, 108)[0])
    if magic == b"ni1\0":
        raise ValueError(f"{where}: a two-file NIfTI (.hdr/.img); use a single .nii/.nii.gz")
    vox_offset = max(vox_offset, 352)
    slope, inter = struct.unpack_from(endian + "2f", raw, 112)
    units = raw[123] & 0x38
    # a 3D file carries a TR only when it states time units (nibabel leaves pixdim[4] = 1 otherwise)
    tr = pixdim[4] * _TIME_UNITS.get(units, 1.0) if pixdim[4] > 0 and (dim[0] >= 4 or units) else None
    qform_code, sform_code = struct.unpack_from(endian + "2h", raw, 252)
    if sform_code > 0:
        affine = np.eye(4)
        affine[:3] = np.array(struct.unpack_from(endian + "12f", raw, 280), dtype=float).reshape(3, 4)
    elif qform_code > 0:
        affine = _qform_affine(struct.unpack_from(endian + "6f", raw, 256), pixdim)
    else:
        affine = np.diag([pixdim[1], pixdim[2], pixdim[3], 1.0])
    return NiftiHeader(endian, shape, dtype, vox_offset, float(slope), float(inter), affine, tr)


def _qform_affine(q: tuple[float, ...], pixdim: tuple[float, ...]) -> np.ndarray:
    b, c, d, qx, qy, qz = (float(v) for v in q)
    a = np.sqrt(max(0.0, 1.0 - (b * b + c * c + d * d)))
    rot = np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                    [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
                    [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b]])
    qfac = -1.0 if pixdim[0] < 0 else 1.0
    affine = np.eye(4)
    affine[:3, :3] = rot * np.array([pixdim[1], pixdim[2], pixdim[3] * qfac])
    affine[:3, 3] = (qx, qy, qz)
    return affine


def decode_nifti(raw: bytes, where: str = "<nifti>", volume: int | None = None) -> NiftiVolume:
    """One 3D volume from the bytes of a .nii or .nii.gz file.

    A 4D file is refused with its volume count unless ``volume`` (0-based) picks one.
    :class:`IncompleteFile` if the bytes end before the data does.
    """
    if is_gzip(raw):
        raw = gunzip_complete(raw, where)
    if len(raw) >= 4 and struct.unpack_from("<i", raw, 0)[0] in (540, 0x1C020000):
        return _decode_nifti2(raw, where, volume)
    hdr = parse_header(raw, where)
    if len(hdr.shape) < 3:
        raise ValueError(f"{where}: a {len(hdr.shape)}D NIfTI, not a volume")
    end = hdr.vox_offset + hdr.data_bytes
    if len(raw) < end:
        raise IncompleteFile(f"{where}: {len(raw)} of {end} bytes written")
    n_vol = hdr.n_volumes
    vol_shape = hdr.shape[:3]
    if n_vol > 1 and volume is None:
        raise ValueError(f"{where}: a 4D NIfTI with {n_vol} volumes {hdr.shape}; a source expects one volume "
                         "per file (replay a 4D file with `neuroreflex sim fmri --replay`)")
    pick = 0 if volume is None else int(volume)
    if not 0 <= pick < n_vol:
        raise ValueError(f"{where}: volume {pick} out of range 0..{n_vol - 1}")
    count = int(np.prod(vol_shape))
    offset = hdr.vox_offset + pick * count * hdr.dtype.itemsize
    data = np.frombuffer(raw, dtype=hdr.dtype, count=count, offset=offset).reshape(vol_shape, order="F")
    if hdr.slope not in (0.0, 1.0) or hdr.inter != 0.0:
        slope = hdr.slope if hdr.slope != 0.0 else 1.0
        data = data.astype(np.float32) * np.float32(slope) + np.float32(hdr.inter)
    elif not hdr.dtype.isnative:
        data = data.astype(hdr.dtype.newbyteorder("="))
    return NiftiVolume(data, hdr.affine, hdr.tr_s, n_vol)


def _decode_nifti2(raw: bytes, where: str, volume: int | None) -> NiftiVolume:
    import nibabel as nib

    try:
        img = nib.Nifti2Image.from_bytes(raw)
    except Exception as exc:
        raise IncompleteFile(f"{where}: NIfTI-2 not complete or unreadable ({exc})") from exc
    shape = img.shape
    n_vol = int(np.prod(shape[3:])) if len(shape) > 3 else 1
    if n_vol > 1 and volume is None:
        raise ValueError(f"{where}: a 4D NIfTI with {n_vol} volumes {shape}")
    data = np.asarray(img.dataobj[..., volume or 0] if len(shape) > 3 else img.dataobj)
    zooms = img.header.get_zooms()  # type: ignore[no-untyped-call]  # nibabel's header API is unannotated
    return NiftiVolume(data, img.affine, float(zooms[3]) if len(zooms) > 3 else None, n_vol)


def read_nifti(path: str | Path, volume: int | None = None) -> NiftiVolume:
    """Read one volume from a .nii/.nii.gz file on disk (see :func:`decode_nifti`)."""
    return decode_nifti(Path(path).read_bytes(), str(path), volume)
