"""Read one fMRI volume from DICOM: Siemens MOSAIC, enhanced multi-frame, or a single-slice series.

All readers return the NIfTI-convention layout and RAS+ affine of :mod:`controller.inputs.volumes.geometry`,
so a MOSAIC and the NIfTI converted from it hold the same array. Pixel data of uncompressed
files is taken straight from the bytes (no pydicom pixel handler on the hot path).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian

with warnings.catch_warnings():  # nibabel.nicom warns on import that its DICOM readers are experimental;
    warnings.simplefilter("ignore", UserWarning)  # only its CSA header reader is used here
    from nibabel.nicom import csareader

from controller.inputs.volumes.geometry import dicom_affine, slice_normal, slices_to_volume


def _csa_image_header(ds: Dataset) -> dict[str, list[Any]]:
    """The Siemens CSA image header (private group 0029, 'SIEMENS CSA HEADER'): tag name -> its items, read by
    nibabel's CSA reader; {} when there is none (an anonymised file)."""
    header = csareader.get_csa_header(ds, "image")  # type: ignore[no-untyped-call]  # nibabel: unannotated
    return {name: tag["items"] for name, tag in header["tags"].items()} if header else {}


def _csa_floats(csa: dict[str, list[Any]], name: str) -> list[float] | None:
    items = [v for v in csa.get(name) or [] if v != ""]
    return [float(v) for v in items] if items else None


class IncompleteFile(ValueError):
    """The file is not fully written yet (truncated header or pixel data)."""


@dataclass
class DicomVolume:
    data: np.ndarray          # (i, j, k), stored dtype (float32 when a rescale applies)
    affine: np.ndarray        # 4x4 RAS+ mm
    index: int | None         # AcquisitionNumber (else InstanceNumber)
    tr_s: float | None
    kind: str                 # "mosaic" | "enhanced" | "slice"
    info: dict[str, Any] = field(default_factory=dict)


def parse(raw: bytes | str | Path, where: str = "") -> Dataset:
    """Parse DICOM bytes; :class:`IncompleteFile` if the header or the pixel data is cut short."""
    where = where or (str(raw) if not isinstance(raw, bytes) else "<bytes>")
    if not isinstance(raw, bytes):
        raw = Path(raw).read_bytes()
    try:
        ds = pydicom.dcmread(io.BytesIO(raw), force=True)
    except Exception as exc:  # truncated files make pydicom fail in many ways
        raise IncompleteFile(f"{where}: not a complete DICOM file ({type(exc).__name__}: {exc})") from exc
    if "PixelData" not in ds:
        raise IncompleteFile(f"{where}: no pixel data (yet)")
    if ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2.1") in _UNCOMPRESSED:
        need = _pixel_bytes(ds)
        got = len(ds.PixelData)
        if got < need:
            raise IncompleteFile(f"{where}: pixel data {got} of {need} bytes")
    return ds


_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", ExplicitVRBigEndian}


def _pixel_bytes(ds: Dataset) -> int:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return int(ds.Rows) * int(ds.Columns) * frames * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated) // 8


def _pixels(ds: Dataset) -> np.ndarray:
    """(frames, rows, cols) pixel array; a zero-copy view of the bytes when uncompressed."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    syntax = ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2.1")
    if syntax in _UNCOMPRESSED and int(ds.get("SamplesPerPixel", 1)) == 1 and ds.BitsAllocated in (8, 16, 32):
        kind = "i" if int(ds.get("PixelRepresentation", 0)) else "u"
        order = ">" if syntax == ExplicitVRBigEndian else "<"
        dtype = np.dtype(f"{order}{kind}{ds.BitsAllocated // 8}")
        n = frames * int(ds.Rows) * int(ds.Columns)
        arr = np.frombuffer(ds.PixelData, dtype=dtype, count=n)
        return arr.reshape(frames, int(ds.Rows), int(ds.Columns))
    arr = ds.pixel_array  # compressed: pydicom's handlers
    return arr.reshape(frames, int(ds.Rows), int(ds.Columns))


def _floats(value: Any, what: str, where: str, n: int) -> np.ndarray:
    if value is None:
        raise ValueError(f"{where}: missing {what}")
    out = np.array([float(v) for v in value], dtype=float)
    if out.size != n:
        raise ValueError(f"{where}: {what} has {out.size} values, expected {n}")
    return out


def _index(ds: Dataset, prefer: str = "acquisition") -> int | None:
    """The volume's number: AcquisitionNumber (else InstanceNumber), or the reverse with prefer='instance'."""
    keys = ("InstanceNumber", "AcquisitionNumber") if prefer == "instance" else ("AcquisitionNumber", "InstanceNumber")
    for key in keys:
        value = ds.get(key)
        if value not in (None, ""):
            return int(value)
    return None


def numbers(ds: Dataset) -> dict[str, int | None]:
    return {"acquisition_number": _index(ds), "instance_number": _index(ds, "instance")}


def _tr_s(ds: Dataset) -> float | None:
    tr = ds.get("RepetitionTime")
    if tr in (None, ""):
        try:
            tr = ds.SharedFunctionalGroupsSequence[0].MRTimingAndRelatedParametersSequence[0].RepetitionTime
        except (AttributeError, IndexError, KeyError):
            return None
    return float(tr) / 1000.0 if tr not in (None, "") else None


def _rescale(data: np.ndarray, slope: Any, intercept: Any) -> np.ndarray:  # DICOM values: number, text or None
    slope = 1.0 if slope in (None, "") else float(slope)
    intercept = 0.0 if intercept in (None, "") else float(intercept)
    if slope == 1.0 and intercept == 0.0:
        return data
    return data.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def is_mosaic(ds: Dataset) -> bool:
    return "MOSAIC" in [str(v).upper() for v in (ds.get("ImageType") or [])]


def is_enhanced(ds: Dataset) -> bool:
    return "PerFrameFunctionalGroupsSequence" in ds


def read_dicom(source: bytes | str | Path | Dataset, where: str = "") -> DicomVolume:
    """One volume from one DICOM file (MOSAIC or enhanced multi-frame)."""
    ds = source if isinstance(source, Dataset) else parse(source, where)
    where = where or (str(source) if isinstance(source, (str, Path)) else "<dicom>")
    if is_enhanced(ds):
        return read_enhanced(ds, where)
    if is_mosaic(ds):
        return read_mosaic(ds, where)
    raise ValueError(f"{where}: a single-slice DICOM image (no MOSAIC, not multi-frame); a volume needs "
                     "read_slice_series() over all its slice files")


def read_mosaic(ds: Dataset, where: str = "<dicom>") -> DicomVolume:
    """Un-mosaic a classic Siemens MOSAIC (tiles row by row, slice 0 top left)."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    pixels = _pixels(ds)[0]
    csa = _csa_image_header(ds)
    n_images = _csa_floats(csa, "NumberOfImagesInMosaic")
    if n_images:
        n = int(n_images[0])
        per_side = math.ceil(math.sqrt(n))
        if rows % per_side or cols % per_side:
            raise ValueError(f"{where}: {rows}x{cols} mosaic does not split into {per_side}x{per_side} tiles "
                             f"for NumberOfImagesInMosaic {n}")
        t_rows, t_cols = rows // per_side, cols // per_side
    else:  # no CSA header (anonymised): tile size from the acquisition matrix, count the non-empty tiles
        matrix = [int(v) for v in (ds.get("AcquisitionMatrix") or []) if int(v)]
        if not matrix or rows % max(matrix):
            raise ValueError(f"{where}: MOSAIC without a CSA header or a usable AcquisitionMatrix: "
                             "cannot tell the tile size")
        t_rows = t_cols = max(matrix)
        per_side = rows // t_rows
        tiles = pixels.reshape(per_side, t_rows, per_side, t_cols).transpose(0, 2, 1, 3).reshape(-1, t_rows, t_cols)
        filled = np.flatnonzero(tiles.reshape(len(tiles), -1).any(axis=1))
        n = int(filled[-1]) + 1 if filled.size else 0
        if n == 0:
            raise ValueError(f"{where}: MOSAIC is empty")
    tiles = pixels.reshape(rows // t_rows, t_rows, cols // t_cols, t_cols).transpose(0, 2, 1, 3)
    stack = tiles.reshape(-1, t_rows, t_cols)[:n]
    iop = _floats(ds.get("ImageOrientationPatient"), "ImageOrientationPatient", where, 6)
    ipp = _floats(ds.get("ImagePositionPatient"), "ImagePositionPatient", where, 3)
    spacing = _floats(ds.get("PixelSpacing"), "PixelSpacing", where, 2)
    # ImagePositionPatient of a MOSAIC is the corner of the whole mosaic: move it to the first tile's corner
    first = ipp + iop[:3] * spacing[1] * (cols - t_cols) / 2 + iop[3:] * spacing[0] * (rows - t_rows) / 2
    csa_normal = _csa_floats(csa, "SliceNormalVector")
    normal = np.array(csa_normal) / np.linalg.norm(csa_normal) if csa_normal else slice_normal(iop)
    gap = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
    if gap in (None, ""):
        raise ValueError(f"{where}: MOSAIC without SpacingBetweenSlices or SliceThickness")
    affine = dicom_affine(iop, spacing, first, normal * float(gap), t_rows)
    data = _rescale(np.asfortranarray(slices_to_volume(stack)),
                    ds.get("RescaleSlope"), ds.get("RescaleIntercept"))
    info: dict[str, Any] = {"slices": n, "tiles": per_side if n_images else rows // t_rows, **numbers(ds)}
    times = _csa_floats(csa, "MosaicRefAcqTimes")
    if times:
        info["slice_times_ms"] = times
    return DicomVolume(data, affine, _index(ds), _tr_s(ds), "mosaic", info)


def _frame_item(ds: Dataset, frame: Dataset, seq: str) -> Dataset | None:
    """A functional group item, per-frame first, shared otherwise."""
    item: Dataset
    if seq in frame:
        item = frame[seq][0]
        return item
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and seq in shared[0]:
        item = shared[0][seq][0]
        return item
    return None


def read_enhanced(ds: Dataset, where: str = "<dicom>") -> DicomVolume:
    """Enhanced (multi-frame) MR: frames sorted along the slice normal into one volume."""
    frames = ds.PerFrameFunctionalGroupsSequence
    n = len(frames)
    orient = _frame_item(ds, frames[0], "PlaneOrientationSequence")
    measures = _frame_item(ds, frames[0], "PixelMeasuresSequence")
    if orient is None or measures is None:
        raise ValueError(f"{where}: multi-frame DICOM without PlaneOrientationSequence/PixelMeasuresSequence")
    iop = _floats(orient.get("ImageOrientationPatient"), "ImageOrientationPatient", where, 6)
    spacing = _floats(measures.get("PixelSpacing"), "PixelSpacing", where, 2)
    positions = np.empty((n, 3))
    for f, frame in enumerate(frames):
        item = _frame_item(ds, frame, "PlanePositionSequence")
        if item is None:
            raise ValueError(f"{where}: frame {f + 1} has no PlanePositionSequence")
        positions[f] = _floats(item.get("ImagePositionPatient"), "ImagePositionPatient", f"{where} frame {f + 1}", 3)
    normal = slice_normal(iop)
    depth = positions @ normal
    order = np.argsort(depth, kind="stable")
    n_pos = len(np.unique(np.round(depth, 3)))
    if n_pos != n:
        raise ValueError(f"{where}: {n} frames at {n_pos} slice positions: the file holds "
                         f"{n // max(n_pos, 1)} volumes; one volume per file is supported")
    step = (positions[order[-1]] - positions[order[0]]) / (n - 1) if n > 1 else normal * float(
        measures.get("SpacingBetweenSlices") or measures.get("SliceThickness") or 1.0)
    if n > 2:
        gaps = np.diff(depth[order])
        if np.ptp(gaps) > 1e-3 * max(abs(gaps.mean()), 1e-6) + 1e-4:
            raise ValueError(f"{where}: slices are not evenly spaced (gaps {gaps.min():.4f}..{gaps.max():.4f} mm)")
    stack = _pixels(ds)[order]
    affine = dicom_affine(iop, spacing, positions[order[0]], step, int(ds.Rows))
    transform = _frame_item(ds, frames[0], "PixelValueTransformationSequence")
    slope = transform.get("RescaleSlope") if transform is not None else ds.get("RescaleSlope")
    intercept = transform.get("RescaleIntercept") if transform is not None else ds.get("RescaleIntercept")
    data = _rescale(np.asfortranarray(slices_to_volume(stack)), slope, intercept)
    return DicomVolume(data, affine, _index(ds), _tr_s(ds), "enhanced", {"slices": n, **numbers(ds)})


def read_slice_series(sources: list[bytes | str | Path]) -> DicomVolume:
    """One volume from a classic single-slice series (one file per slice), sorted along the normal."""
    sets = [parse(s) for s in sources]
    if not sets:
        raise ValueError("no slice files given")
    where = str(sources[0]) if not isinstance(sources[0], bytes) else "<dicom>"
    iop = _floats(sets[0].get("ImageOrientationPatient"), "ImageOrientationPatient", where, 6)
    spacing = _floats(sets[0].get("PixelSpacing"), "PixelSpacing", where, 2)
    positions = np.array([_floats(d.get("ImagePositionPatient"), "ImagePositionPatient", where, 3) for d in sets])
    normal = slice_normal(iop)
    order = np.argsort(positions @ normal, kind="stable")
    n = len(sets)
    step = (positions[order[-1]] - positions[order[0]]) / (n - 1) if n > 1 else normal * float(
        sets[0].get("SpacingBetweenSlices") or sets[0].get("SliceThickness") or 1.0)
    stack = np.stack([_pixels(sets[i])[0] for i in order])
    data = _rescale(np.asfortranarray(slices_to_volume(stack)), sets[0].get("RescaleSlope"),
                    sets[0].get("RescaleIntercept"))
    affine = dicom_affine(iop, spacing, positions[order[0]], step, int(sets[0].Rows))
    return DicomVolume(data, affine, _index(sets[0]), _tr_s(sets[0]), "slice", {"slices": n, **numbers(sets[0])})
