"""Write volumes into a folder the way a scanner's real-time export does.

Formats: NIfTI (.nii / .nii.gz), Siemens MOSAIC DICOM built from a template file of the same
series (pixel data replaced, numbers and UIDs renewed, Siemens file names
``001_<series>_<index>.dcm``; the template's grid read with nibabel, never with the controller's
reader these files test), or enhanced multi-frame MR DICOM built from scratch.

Writing modes: ``atomic`` (a hidden temporary file renamed into place: the reader sees one
IN_MOVED_TO) or ``steps`` (the file is created and appended in several opens/closes with pauses,
as a scanner writing to a network share does), so readers can be tested against partial files.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np

# FORMATS: dicom == mosaic (Siemens MOSAIC). File names come from export_names, which sessions check
# the protocol's pattern against before they start.
from controller.inputs.volumes.export_names import FORMATS, export_file_name

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


# ------------------------------------------------------------------ encoders (volume -> bytes)
def nifti_bytes(data: np.ndarray, affine: np.ndarray, tr_s: float | None = None, gz: bool = False) -> bytes:
    """A single-volume NIfTI-1 file; data keeps its dtype, TR (s) in pixdim[4] with time units."""
    import gzip

    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=float))
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    hdr = img.header
    hdr.set_xyzt_units("mm", "sec")
    if tr_s:
        hdr["pixdim"][4] = tr_s
    raw = img.to_bytes()
    return gzip.compress(raw, compresslevel=1, mtime=0) if gz else raw


def _integer_pixels(data: np.ndarray) -> tuple[np.ndarray, int]:
    """Rounded integers as a scanner stores them: uint16 when non-negative, else int16 (values clipped)."""
    arr = np.asarray(data)
    if arr.dtype.kind in "fc":
        arr = np.rint(arr)
    if arr.min(initial=0) >= 0:
        return np.clip(arr, 0, 65535).astype("<u2"), 0
    return np.clip(arr, -32768, 32767).astype("<i2"), 1


def volume_to_slices(data: np.ndarray) -> np.ndarray:
    """(i, j, k) NIfTI-layout volume -> (k, rows, cols) DICOM slices (inverse of the readers' layout)."""
    return np.asarray(data)[:, ::-1, :].transpose(2, 1, 0)


def csa_bytes(tags: dict[str, list[str]]) -> bytes:
    """A Siemens CSA2 ('SV10') header holding ``tags`` (name -> string items)."""
    import struct

    out = bytearray(b"SV10\x04\x03\x02\x01")
    out += struct.pack("<II", len(tags), 77)
    for name, items in tags.items():
        out += name.encode("latin-1")[:63].ljust(64, b"\0")
        out += struct.pack("<i4siii", len(items), b"DS\0\0", 3, len(items), 77)  # VM, VR, SyngoDT, items
        for item in items:
            text = item.encode("latin-1") + b"\0"
            out += struct.pack("<4i", len(text), len(text), 77, len(text))
            out += text.ljust((len(text) + 3) // 4 * 4, b"\0")
    return bytes(out)


def _lps_geometry(affine: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray, float, float,
                                                            np.ndarray, np.ndarray]:
    """(row_cos, col_cos, d_row, d_col, slice_step, first_position) in LPS from a NIfTI-layout RAS affine."""
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=float)
    d_col = float(np.linalg.norm(lps[:3, 0]))
    d_row = float(np.linalg.norm(lps[:3, 1]))
    row_cos = lps[:3, 0] / d_col
    col_cos = -lps[:3, 1] / d_row
    step = lps[:3, 2].copy()
    first = lps[:3, 3] - (n_rows - 1) * d_row * col_cos
    return row_cos, col_cos, d_row, d_col, step, first


def synth_mosaic_dataset(shape: tuple[int, int, int], affine: np.ndarray, tr_s: float | None = None,
                         series: int = 1):
    """A Siemens-like MOSAIC header (with a CSA image header) for volumes on this grid: used when
    no real template DICOM is at hand (e.g. the simulator)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    nx, ny, nz = (int(n) for n in shape)
    per_side = int(np.ceil(np.sqrt(nz)))
    row_cos, col_cos, d_row, d_col, step, first = _lps_geometry(affine, ny)
    rows, cols = ny * per_side, nx * per_side
    ipp = first - row_cos * d_col * (cols - nx) / 2 - col_cos * d_row * (rows - ny) / 2
    gap = float(np.linalg.norm(step))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
    ds.Modality = "MR"
    ds.Manufacturer = "SIEMENS"
    ds.ManufacturerModelName = "neuroreflex-sim"
    ds.SliceThickness = gap
    ds.SpacingBetweenSlices = gap
    if tr_s:
        ds.RepetitionTime = float(tr_s) * 1000.0
    ds.AcquisitionMatrix = [nx, 0, 0, ny]
    ds.SeriesNumber = series
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = [round(float(v), 6) for v in ipp]
    ds.ImageOrientationPatient = [round(float(v), 8) for v in np.r_[row_cos, col_cos]]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.PixelSpacing = [round(d_row, 8), round(d_col, 8)]
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.add_new((0x0029, 0x0010), "LO", "SIEMENS CSA HEADER")
    normal = step / gap
    ds.add_new((0x0029, 0x1010), "OB", csa_bytes({"NumberOfImagesInMosaic": [str(nz)],
                                                  "SliceNormalVector": [f"{v:.8f}" for v in normal]}))
    ds.PixelData = b"\0" * (rows * cols * 2)
    return ds


def read_template_grid(ds, where: str = "<dicom>") -> tuple[tuple[int, int, int], np.ndarray, int]:
    """(shape, affine, tiles per side) of a Siemens MOSAIC header, in the layout the writer uses
    (:func:`volume_to_slices` is its inverse; RAS+ affine).

    Read with nibabel's MOSAIC wrapper, not with the controller's reader: the simulator's files are
    what that reader is tested against, so it must not also tell the simulator where the grid is.
    """
    import warnings

    with warnings.catch_warnings():  # nibabel.nicom warns on import that its DICOM readers are experimental
        warnings.simplefilter("ignore", UserWarning)
        from nibabel.nicom import csareader
        from nibabel.nicom.dicomwrappers import MosaicWrapper, WrapperError

    csa = csareader.get_csa_header(ds, "image")
    try:
        if csa is not None and csareader.get_n_mosaic(csa):
            wrapper = MosaicWrapper(ds, csa)
        else:  # an anonymised file lost its CSA header: its slices are counted, and their normal is
            # DICOM's row x column (nibabel, told nothing, would take column x row)
            iop = [float(v) for v in ds.get("ImageOrientationPatient") or []]
            lost = {"tags": {"SliceNormalVector": {"items": list(np.cross(iop[:3], iop[3:]))}}} if iop else {}
            wrapper = MosaicWrapper(ds, lost, n_mosaic=_filled_tiles(ds, where))
        nib_affine = wrapper.affine  # voxel (row, column, slice) -> LPS mm
    except (WrapperError, AssertionError) as exc:
        raise ValueError(f"{where}: not a usable Siemens MOSAIC header ({exc})") from exc
    t_rows, t_cols, n = (int(v) for v in wrapper.image_shape)
    # the writer's voxel (i, j, k) is nibabel's (row t_rows - 1 - j, column i, slice k)
    to_rows_cols = np.array([[0.0, -1.0, 0.0, t_rows - 1], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0],
                             [0.0, 0.0, 0.0, 1.0]])
    return (t_cols, t_rows, n), LPS_TO_RAS @ nib_affine @ to_rows_cols, int(wrapper.mosaic_size)


def _filled_tiles(ds, where: str) -> int:
    """Slices of a MOSAIC without a CSA header: tiles of the acquisition matrix's size, up to the last non-empty one."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    matrix = [int(v) for v in (ds.get("AcquisitionMatrix") or []) if int(v)]
    if not matrix or rows % max(matrix) or cols % max(matrix):
        raise ValueError(f"{where}: MOSAIC without a CSA header or a usable AcquisitionMatrix: cannot tell the "
                         "tile size")
    tile = max(matrix)
    pixels = np.asarray(ds.pixel_array).reshape(rows // tile, tile, cols // tile, tile)
    filled = np.flatnonzero(pixels.any(axis=(1, 3)).ravel())
    n = int(filled[-1]) + 1 if filled.size else 0
    if not n or int(np.ceil(np.sqrt(n))) != rows // tile:  # Siemens tiles n slices ceil(sqrt(n)) to a side
        raise ValueError(f"{where}: MOSAIC without a CSA header: {n} non-empty tiles of {tile}x{tile} in "
                         f"{rows}x{cols} do not tell its slice count")
    return n


class MosaicTemplate:
    """A Siemens MOSAIC DICOM whose header is reused for every new volume of the same grid."""

    def __init__(self, path: str | Path | None = None, dataset=None,
                 grid: tuple[tuple[int, int, int], np.ndarray] | None = None) -> None:
        """A header from ``path`` or ``dataset``, its grid read with :func:`read_template_grid`; or, with
        ``grid`` (shape, affine), a ``dataset`` made for that grid (:func:`synth_mosaic_dataset`): what the
        simulator wrote itself it knows, and a grid nibabel would refuse (sheared) can still be written."""
        import pydicom

        self.path = Path(path) if path is not None else Path("<synthesized>")
        self.ds = dataset if dataset is not None else pydicom.dcmread(str(path))
        if grid is None:
            self.shape, self.affine, self.per_side = read_template_grid(self.ds, str(self.path))
        else:
            self.shape = tuple(int(n) for n in grid[0])
            self.affine = np.asarray(grid[1], dtype=float)
            self.per_side = int(self.ds.Rows) // self.shape[1]
        tr_ms = self.ds.get("RepetitionTime")
        self.tr_s = float(tr_ms) / 1000.0 if tr_ms not in (None, "") else None
        self.series = int(self.ds.get("SeriesNumber") or 1)
        self.rows, self.cols = int(self.ds.Rows), int(self.ds.Columns)

    def check_grid(self, shape: tuple[int, ...], affine: np.ndarray | None, tol_mm: float = 1e-3) -> None:
        """Refuse volumes that do not sit on the template's grid (its header would describe them wrongly)."""
        if tuple(shape[:3]) != tuple(self.shape):
            raise ValueError(f"volume shape {tuple(shape[:3])} differs from the DICOM template's "
                             f"{tuple(self.shape)} ({self.path})")
        if affine is not None:
            diff = float(np.abs(np.asarray(affine) - self.affine).max())
            if diff > tol_mm:
                raise ValueError(f"volume affine differs from the DICOM template's {self.path} by {diff:.4g} mm "
                                 f"(tolerance {tol_mm} mm)")

    def encode(self, data: np.ndarray, index: int, acquisition_time: str | None = None) -> bytes:
        """MOSAIC bytes of ``data`` (i, j, k) with InstanceNumber/AcquisitionNumber = ``index``."""
        import pydicom
        from pydicom.uid import generate_uid

        self.check_grid(data.shape, None)
        pixels, signed = _integer_pixels(data)
        slices = volume_to_slices(pixels)
        nz, t_rows, t_cols = slices.shape
        tiles = np.zeros((self.per_side * self.per_side, t_rows, t_cols), dtype=pixels.dtype)
        tiles[:nz] = slices
        mosaic = tiles.reshape(self.per_side, self.per_side, t_rows, t_cols).transpose(0, 2, 1, 3)
        mosaic = mosaic.reshape(self.rows, self.cols)
        ds = self.ds
        ds.PixelRepresentation = signed
        ds.InstanceNumber = int(index)
        ds.AcquisitionNumber = int(index)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if acquisition_time:
            ds.AcquisitionTime = acquisition_time
        for tag in ("SmallestImagePixelValue", "LargestImagePixelValue"):
            if tag in ds:
                del ds[tag]
        ds.PixelData = np.ascontiguousarray(mosaic).tobytes()
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        return buf.getvalue()

    def file_name(self, index: int) -> str:
        return export_file_name("dicom", index, self.series)


def enhanced_dicom_bytes(data: np.ndarray, affine: np.ndarray, index: int, tr_s: float | None = None,
                         frame_order: str = "ascending", series: int = 1) -> bytes:
    """An Enhanced MR Image (multi-frame) DICOM of one volume, geometry from the NIfTI-layout affine.

    ``frame_order``: "ascending", "descending" or "interleaved" (frames stored out of spatial order,
    as some scanners do; readers sort by position).
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    nx, ny, nz = data.shape[:3]
    row_cos, col_cos, d_row, d_col, step, first = _lps_geometry(affine, ny)
    pixels, signed = _integer_pixels(data)
    slices = volume_to_slices(pixels)
    if frame_order == "ascending":
        order = np.arange(nz)
    elif frame_order == "descending":
        order = np.arange(nz)[::-1]
    elif frame_order == "interleaved":
        order = np.r_[np.arange(0, nz, 2), np.arange(1, nz, 2)]
    else:
        raise ValueError(f"frame_order must be ascending|descending|interleaved, got {frame_order!r}")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"  # Enhanced MR Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Manufacturer = "neuroreflex-sim"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.SeriesNumber = series
    ds.InstanceNumber = int(index)
    ds.AcquisitionNumber = int(index)
    ds.Rows, ds.Columns = ny, nx
    ds.NumberOfFrames = nz
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = signed
    shared = Dataset()
    orient = Dataset()
    orient.ImageOrientationPatient = [float(v) for v in np.r_[row_cos, col_cos]]
    shared.PlaneOrientationSequence = Sequence([orient])
    measures = Dataset()
    measures.PixelSpacing = [d_row, d_col]
    measures.SliceThickness = float(np.linalg.norm(step))
    measures.SpacingBetweenSlices = float(np.linalg.norm(step))
    shared.PixelMeasuresSequence = Sequence([measures])
    if tr_s:
        timing = Dataset()
        timing.RepetitionTime = tr_s * 1000.0
        shared.MRTimingAndRelatedParametersSequence = Sequence([timing])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in order:
        frame = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [float(v) for v in first + k * step]
        frame.PlanePositionSequence = Sequence([pos])
        content = Dataset()
        content.InStackPositionNumber = int(k) + 1
        content.TemporalPositionIndex = 1
        frame.FrameContentSequence = Sequence([content])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.ascontiguousarray(slices[order]).tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


# ------------------------------------------------------------------ writing files
def write_file(path: str | Path, raw: bytes, mode: str = "atomic", steps: int = 3, pause_s: float = 0.05) -> Path:
    """Write ``raw`` to ``path``: ``atomic`` (tmp + rename) or ``steps`` (appends with pauses, a close each)."""
    path = Path(path)
    if mode == "atomic":
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(raw)
        os.replace(tmp, path)
    elif mode == "steps":
        steps = max(1, int(steps))
        cuts = np.linspace(0, len(raw), steps + 1).astype(int)
        for n, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
            with open(path, "wb" if n == 0 else "ab") as fh:
                fh.write(raw[a:b])
            if n < steps - 1 and pause_s > 0:
                time.sleep(pause_s)
    else:
        raise ValueError(f"write mode must be 'atomic' or 'steps', got {mode!r}")
    return path


class VolumeFolderWriter:
    """Writes numbered volumes of one grid into a folder in one format and one writing mode."""

    def __init__(self, folder: str | Path, fmt: str = "nifti", affine: np.ndarray | None = None,
                 shape: tuple[int, int, int] | None = None, tr_s: float | None = None,
                 template: str | Path | None = None, mode: str = "atomic", steps: int = 3,
                 step_pause_s: float = 0.05, name: str | None = None, frame_order: str = "ascending") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if mode not in ("atomic", "steps"):
            raise ValueError(f"write mode must be 'atomic' or 'steps', got {mode!r}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fmt = "dicom" if fmt == "mosaic" else fmt
        self.affine = None if affine is None else np.asarray(affine, dtype=float)
        self.tr_s = tr_s
        self.mode = mode
        self.steps = steps
        self.step_pause_s = step_pause_s
        self.frame_order = frame_order
        self.template: MosaicTemplate | None = None
        if self.fmt == "dicom":
            if template is not None:
                self.template = MosaicTemplate(template)
                if shape is not None:
                    self.template.check_grid(tuple(shape), self.affine)
            elif shape is not None and self.affine is not None:
                self.template = MosaicTemplate(dataset=synth_mosaic_dataset(tuple(shape), self.affine, tr_s),
                                               grid=(tuple(shape), self.affine))
            else:
                raise ValueError("MOSAIC output needs a template DICOM, or the grid (shape and affine)")
        self.name = name  # a format string with {index}; None: the export convention of the format
        self.written = 0

    def file_name(self, index: int) -> str:
        if self.name is not None:
            return self.name.format(index=int(index))
        if self.template is not None:
            return self.template.file_name(index)
        return export_file_name(self.fmt, index)

    def encode(self, data: np.ndarray, index: int, affine: np.ndarray | None = None,
               tr_s: float | None = None) -> bytes:
        affine = self.affine if affine is None else affine
        tr_s = self.tr_s if tr_s is None else tr_s
        if self.fmt == "dicom":
            assert self.template is not None
            return self.template.encode(data, index)
        if affine is None:
            raise ValueError(f"format {self.fmt} needs the volume's affine")
        if self.fmt in ("nifti", "nifti-gz"):
            return nifti_bytes(data, affine, tr_s, gz=self.fmt == "nifti-gz")
        return enhanced_dicom_bytes(data, affine, index, tr_s, frame_order=self.frame_order)

    def write(self, data: np.ndarray, index: int, affine: np.ndarray | None = None,
              tr_s: float | None = None) -> Path:
        """Encode and write one volume (affine/TR default to the writer's); returns the final path."""
        raw = self.encode(data, index, affine, tr_s)
        path = write_file(self.folder / self.file_name(index), raw, self.mode, self.steps, self.step_pause_s)
        self.written += 1
        return path

    def close(self) -> None:
        """Nothing held open (each file is closed after writing); here for symmetry with outlets."""


def make_writer(folder: str | Path, fmt: str = "nifti", mode: str = "atomic", affine: np.ndarray | None = None,
                shape: tuple[int, int, int] | None = None, tr_s: float | None = None,
                template: str | Path | None = None, **options) -> VolumeFolderWriter:
    """A :class:`VolumeFolderWriter` (fmt nifti | nifti-gz | mosaic/dicom | dicom-enhanced)."""
    return VolumeFolderWriter(folder, fmt, affine=affine, shape=shape, tr_s=tr_s, template=template, mode=mode,
                              **options)
