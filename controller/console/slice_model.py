"""What the console's fMRI slice view shows, without Qt: three orthogonal slices (or a mosaic) of the newest
volume, intensity windowed, with each ROI of the protocol as a mask and an outline on the same slices.

Why Qt-free: the geometry (which voxels a slice holds, where the ROI lands, what a click selects) is
what an operator trusts when checking that the ROI sits on the amygdala and not in a ventricle, so it is
computed with numpy and tested voxel for voxel; the widget only paints these arrays.

Orientation. Volumes are shown in RAS order (participant's left on the screen's left, anterior up in
axial slices, superior up otherwise: the neurological convention), reached by flipping and permuting
the voxel axes only (``nibabel.orientations``), never by resampling: each displayed pixel is one voxel
of the file, and each mask pixel one voxel of the ROI. Every 2-D array here is indexed ``[u, v]`` with
``u`` to the screen's right and ``v`` upwards (pyqtgraph's default image order).

The ROIs are built on the volume's grid by the session's own loader (``controller.fmri.pipeline.build_roi``
with the input's registration), so the overlay is exactly the voxels the session averages (before the
smoothing it folds into the weights).

Reading the folder (:class:`NewestVolume`) is read-only and cheap: one directory listing, and a file is
decoded only when it is newer than the one shown; a file still being written is skipped (the volume
shown stays) and tried again at the next poll.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

from controller.fmri.pipeline import VolumePipelineError, build_roi, load_registration
from controller.fmri.tmap_view import mosaic as tile_mosaic
from controller.inputs.volumes.dicom import IncompleteFile, read_dicom
from controller.inputs.volumes.export_names import name_matches
from controller.inputs.volumes.nifti import decode_nifti
from controller.inputs.volumes.watch_folder import DEFAULT_PATTERN, file_format
from controller.lang.compiled import Protocol

PLANES = ("axial", "coronal", "sagittal")
# per plane: the display axis held fixed, the axes along u (screen right) and v (screen up), and the
# anatomical side at each screen edge (left, right, bottom, top)
PLANE_AXES = {"axial": (2, 0, 1), "coronal": (1, 0, 2), "sagittal": (0, 1, 2)}
PLANE_SIDES = {"axial": ("L", "R", "P", "A"), "coronal": ("L", "R", "I", "S"), "sagittal": ("P", "A", "I", "S")}
# ROI colours in declaration order (distinct from grey and from each other; #rrggbb, Qt-free)
ROI_COLORS = ("#ff3b30", "#30d158", "#0a84ff", "#ffd60a", "#bf5af2", "#64d2ff", "#ff9f0a", "#ff375f")
PERCENTILES = (2.0, 98.0)

MaskSource = Callable[[tuple[int, int, int], np.ndarray], Mapping[str, np.ndarray]]


# ---------------------------------------------------------------------------------------------- geometry
@dataclass(frozen=True, eq=False)
class DisplayGrid:
    """A volume grid and its RAS-ordered view (axis flips and permutations only).

    ``ornt`` is nibabel's orientation of the grid; ``affine`` maps display voxels to world mm.
    """

    shape: tuple[int, int, int]
    source_affine: np.ndarray
    ornt: np.ndarray
    affine: np.ndarray
    display_shape: tuple[int, int, int]

    @classmethod
    def of(cls, shape: Sequence[int], affine: np.ndarray) -> DisplayGrid:
        s = [int(n) for n in shape[:3]]
        aff = np.asarray(affine, dtype=np.float64)
        # nibabel.orientations is unannotated
        ornt: np.ndarray = io_orientation(aff)  # type: ignore[no-untyped-call]
        disp: np.ndarray = aff @ inv_ornt_aff(ornt, tuple(s))  # type: ignore[no-untyped-call]
        n = [s[int(np.flatnonzero(ornt[:, 0] == a)[0])] for a in range(3)]
        return cls((s[0], s[1], s[2]), aff, ornt, disp, (n[0], n[1], n[2]))

    def same_as(self, shape: Sequence[int], affine: np.ndarray, atol_mm: float = 1e-3) -> bool:
        return (tuple(int(n) for n in shape[:3]) == self.shape
                and np.allclose(affine, self.source_affine, atol=atol_mm, rtol=0))

    def orient(self, array: np.ndarray) -> np.ndarray:
        """The array (on this grid) in display order: a view, no copy."""
        out: np.ndarray = apply_orientation(np.asarray(array), self.ornt)  # type: ignore[no-untyped-call]
        return out

    def to_display(self, ijk: Sequence[float]) -> np.ndarray:
        """Source voxel coordinates -> display voxel coordinates."""
        m = np.linalg.solve(self.affine, self.source_affine)
        out: np.ndarray = m[:3, :3] @ np.asarray(ijk, dtype=np.float64) + m[:3, 3]
        return out

    def world_mm(self, abc: Sequence[float]) -> np.ndarray:
        """Display voxel coordinates -> world mm (the affine's space: scanner or MNI)."""
        out: np.ndarray = self.affine[:3, :3] @ np.asarray(abc, dtype=np.float64) + self.affine[:3, 3]
        return out

    @property
    def voxel_mm(self) -> np.ndarray:
        """Voxel edge lengths along the display axes."""
        size: np.ndarray = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return size


def window_levels(data: np.ndarray, percentiles: tuple[float, float] = PERCENTILES) -> tuple[float, float]:
    """(lo, hi): the given percentiles of the volume's finite voxels (hi > lo always).

    One window for the whole volume, so the three planes and the mosaic share one grey scale and a
    bright vessel or a dark background do not set the contrast.
    """
    v = np.asarray(data, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = (float(x) for x in np.percentile(v, percentiles))
    return lo, (hi if hi > lo else lo + 1.0)


def windowed(data: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """``(data - lo) / (hi - lo)`` clipped to 0..1, float32 (non-finite voxels: 0)."""
    lo, hi = window
    out: np.ndarray = (np.asarray(data, dtype=np.float32) - np.float32(lo)) / np.float32(hi - lo)
    out = np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of a 2-D mask with a 4-neighbour outside it (the slice's edge counts as outside)."""
    m = np.asarray(mask, dtype=bool)
    p = np.pad(m, 1, constant_values=False)
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    edge: np.ndarray = m & ~inner
    return edge


# ---------------------------------------------------------------------------------------------- ROI masks
class ProtocolMasks:
    """The protocol's ROIs as boolean masks on a volume's grid, built with the session's loader.

    Call it with a grid (shape, affine); it remembers the last grid's masks (the ROIs are built once
    per grid, as the session builds them once at its reference volume). ``errors`` names the ROIs
    that could not be built on that grid and why (outside the field of view, a native mask on
    another grid); the others are still returned.
    """

    def __init__(self, protocol: Protocol, input_name: str | None = None) -> None:
        if not protocol.volume_inputs:
            raise ValueError(f"protocol {protocol.name!r} has no fMRI (volumes) input")
        name = input_name or next(iter(protocol.volume_inputs))
        if name not in protocol.volume_inputs:
            raise ValueError(f"protocol {protocol.name!r} has no fMRI input {name!r} "
                             f"(it has {', '.join(protocol.volume_inputs)})")
        self.spec = protocol.volume_inputs[name]
        self.rois = dict(protocol.rois)
        self.errors: dict[str, str] = {}
        self._grid: tuple[tuple[int, int, int], np.ndarray] | None = None
        self._masks: dict[str, np.ndarray] = {}

    @property
    def names(self) -> list[str]:
        return list(self.rois)

    def __call__(self, shape: tuple[int, int, int], affine: np.ndarray) -> dict[str, np.ndarray]:
        shape3 = (int(shape[0]), int(shape[1]), int(shape[2]))
        if self._grid is not None and self._grid[0] == shape3 and np.array_equal(self._grid[1], affine):
            return dict(self._masks)
        self.errors = {}
        masks: dict[str, np.ndarray] = {}
        try:
            to_mni = load_registration(self.spec)
        except VolumePipelineError as exc:
            self.errors = {name: str(exc) for name in self.rois}
            to_mni = None
        else:
            for name, spec in self.rois.items():
                try:
                    masks[name] = build_roi(spec, shape3, affine, to_mni).mask() > 0
                except VolumePipelineError as exc:
                    self.errors[name] = str(exc)
        self._grid = (shape3, np.array(affine, dtype=np.float64))
        self._masks = masks
        return dict(masks)


# ---------------------------------------------------------------------------------------------- slices
@dataclass(frozen=True)
class Plane:
    """One slice as shown: ``image`` windowed 0..1 and each ROI's mask and outline, all ``[u, v]``."""

    name: str
    index: int                        # the slice's index along its fixed display axis
    image: np.ndarray                 # float32 (nu, nv)
    masks: dict[str, np.ndarray]      # bool (nu, nv) per ROI
    outlines: dict[str, np.ndarray]   # bool (nu, nv) per ROI
    pixel_mm: tuple[float, float]     # voxel size along u and v (the aspect ratio on screen)
    sides: tuple[str, str, str, str]  # anatomical side at the left, right, bottom and top edges
    cross: tuple[int, int]            # the crosshair (the other two planes' positions) in [u, v]


@dataclass(frozen=True)
class Mosaic:
    """N axial slices tiled (``slices``: their display k; the first at the top left, row by row)."""

    image: np.ndarray                 # float32 [u, v], windowed 0..1 (empty tiles 0)
    masks: dict[str, np.ndarray]      # bool [u, v] per ROI
    outlines: dict[str, np.ndarray]
    slices: tuple[int, ...]
    columns: int
    tile: tuple[int, int]             # (nu, nv) of one tile
    pixel_mm: tuple[float, float]


@dataclass
class Frame:
    """A volume to show: its data and grid, and what the label says about it."""

    data: np.ndarray
    affine: np.ndarray
    index: int | None = None
    written: float | None = None      # wall-clock (epoch s) the file was written (its mtime), if known
    source: str = ""


class SliceModel:
    """The newest volume in RAS order, the slice position, the window and the ROI masks.

    ``masks``: a mapping ROI name -> boolean mask on the volumes' grid, or a :data:`MaskSource`
    (e.g. :class:`ProtocolMasks`) called whenever a volume on a new grid arrives. The position is a
    display voxel (a, b, c) = (R-L, A-P, S-I axes in RAS order); until the operator moves it, it is
    the centre of mass of the first ROI (the volume's centre when there is none).
    """

    def __init__(self, masks: Mapping[str, np.ndarray] | MaskSource | None = None,
                 percentiles: tuple[float, float] = PERCENTILES) -> None:
        self.percentiles = percentiles
        self._mask_source: MaskSource | None = masks if callable(masks) else None
        self._given_masks = dict(masks) if isinstance(masks, Mapping) else {}
        self.frame: Frame | None = None
        self.grid: DisplayGrid | None = None
        self.volume: np.ndarray | None = None  # display order (a view of frame.data)
        self.window: tuple[float, float] = (0.0, 1.0)
        self.masks: dict[str, np.ndarray] = {}  # display order
        self.mask_error = ""
        self.position: tuple[int, int, int] = (0, 0, 0)
        self.moved = False  # the operator chose the position (new volumes keep it)

    # ------------------------------------------------------------------ feeding
    @property
    def roi_names(self) -> list[str]:
        return list(self.masks)

    def roi_color(self, name: str) -> str:
        names = self.roi_names
        return ROI_COLORS[(names.index(name) if name in names else 0) % len(ROI_COLORS)]

    def set_volume(self, frame: Frame) -> None:
        """Show this volume; the ROI masks are (re)built when its grid differs from the last one's."""
        data = np.asarray(frame.data)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise ValueError(f"a volume must be 3-D, got shape {data.shape}")
        new_grid = self.grid is None or not self.grid.same_as(data.shape, frame.affine)
        if new_grid:
            self.grid = DisplayGrid.of(data.shape, frame.affine)
        assert self.grid is not None
        self.frame = frame
        self.volume = self.grid.orient(data)
        self.window = window_levels(data, self.percentiles)
        if new_grid:
            self._load_masks()
            if not self.moved:
                self.position = self.default_position()
            self.position = self._clamp(self.position)

    def set_masks(self, masks: Mapping[str, np.ndarray] | MaskSource) -> None:
        """Other ROIs (a mapping on the volumes' grid, or a source called per grid); the position follows them."""
        self._mask_source = masks if callable(masks) else None
        self._given_masks = {} if callable(masks) else dict(masks)
        if self.grid is not None:
            self._load_masks()
            if not self.moved:
                self.position = self.default_position()

    def _load_masks(self) -> None:
        assert self.grid is not None
        self.mask_error = ""
        source = (self._mask_source(self.grid.shape, self.grid.source_affine) if self._mask_source is not None
                  else self._given_masks)
        masks: dict[str, np.ndarray] = {}
        wrong: list[str] = []
        for name, m in source.items():
            arr = np.asarray(m)
            if arr.shape != self.grid.shape:
                wrong.append(f"{name} {arr.shape}")
                continue
            masks[name] = self.grid.orient(arr != 0)
        errors = dict(getattr(self._mask_source, "errors", {}) or {})
        if wrong:
            errors["grid"] = f"ROI mask(s) not on the volume's grid {self.grid.shape}: {', '.join(wrong)}"
        self.mask_error = "; ".join(errors.values())
        self.masks = masks

    # ------------------------------------------------------------------ position
    def default_position(self) -> tuple[int, int, int]:
        """The first ROI's centre of mass (rounded to a voxel), else the volume's centre."""
        assert self.grid is not None
        for m in self.masks.values():
            ijk = np.argwhere(m)
            if len(ijk):
                return self._clamp(np.rint(ijk.mean(axis=0)))
        return self._clamp(np.asarray(self.grid.display_shape) // 2)

    def _clamp(self, abc: Sequence[float] | np.ndarray) -> tuple[int, int, int]:
        assert self.grid is not None
        hi = np.asarray(self.grid.display_shape) - 1
        a, b, c = (int(x) for x in np.clip(np.rint(np.asarray(abc, dtype=np.float64)), 0, hi))
        return a, b, c

    def set_position(self, abc: Sequence[float]) -> None:
        """Move the crosshair to a display voxel (clamped into the volume); new volumes keep it."""
        self.position = self._clamp(abc)
        self.moved = True

    def click(self, plane: str, u: float, v: float) -> None:
        """A click at pixel (u, v) of a plane moves the two positions that plane shows; its own slice stays."""
        fixed, au, av = PLANE_AXES[plane]
        abc = list(self.position)
        abc[au], abc[av] = int(np.floor(u)), int(np.floor(v))
        self.set_position(abc)

    def reset_position(self) -> None:
        """Back to the first ROI's centre of mass (and follow it again)."""
        self.moved = False
        if self.grid is not None:
            self.position = self.default_position()

    @property
    def position_mm(self) -> np.ndarray | None:
        return None if self.grid is None else self.grid.world_mm(self.position)

    # ------------------------------------------------------------------ what is drawn
    def plane(self, name: str) -> Plane:
        """One of :data:`PLANES` through the current position."""
        if self.volume is None or self.grid is None:
            raise ValueError("no volume yet")
        fixed, au, av = PLANE_AXES[name]
        k = self.position[fixed]
        take: list[slice | int] = [slice(None)] * 3
        take[fixed] = k
        sl = tuple(take)
        image = windowed(self.volume[sl], self.window)  # [u, v]: the remaining axes keep their order
        masks = {n: np.ascontiguousarray(m[sl]) for n, m in self.masks.items()}
        vox = self.grid.voxel_mm
        return Plane(name, int(k), image, masks, {n: outline(m) for n, m in masks.items()},
                     (float(vox[au]), float(vox[av])), PLANE_SIDES[name], (self.position[au], self.position[av]))

    def planes(self) -> dict[str, Plane]:
        return {name: self.plane(name) for name in PLANES}

    def mosaic_slices(self, n: int) -> tuple[int, ...]:
        """``n`` axial slices evenly spread over the volume (fewer if it has fewer)."""
        assert self.grid is not None
        nz = self.grid.display_shape[2]
        return tuple(int(k) for k in np.unique(np.rint(np.linspace(0, nz - 1, max(1, min(n, nz))))))

    def mosaic(self, n: int = 12, columns: int = 6) -> Mosaic:
        """``n`` axial slices tiled ``columns`` wide, with the ROI masks tiled the same way."""
        if self.volume is None or self.grid is None:
            raise ValueError("no volume yet")
        ks = self.mosaic_slices(n)
        cols = max(1, min(int(columns), len(ks)))

        def uv(tiled: np.ndarray) -> np.ndarray:  # tmap_view.mosaic is [row from the top, column]
            return np.ascontiguousarray(tiled[::-1, :].T)

        image = windowed(uv(tile_mosaic(self.volume, ks, cols, fill=np.nan)), self.window)
        masks = {name: uv(tile_mosaic(m.astype(np.float32), ks, cols, fill=0.0)) > 0.5
                 for name, m in self.masks.items()}
        outlines = {name: _tile_outlines(m, self.grid.display_shape[:2]) for name, m in masks.items()}
        vox = self.grid.voxel_mm
        return Mosaic(image, masks, outlines, ks, cols, self.grid.display_shape[:2], (float(vox[0]), float(vox[1])))

    def label(self) -> str:
        """'volume 12 | written 12:01:03 | vol_000012.nii | x -21.0 y -5.0 z -16.0 mm'."""
        if self.frame is None:
            return "no volume yet"
        f = self.frame
        parts = [f"volume {f.index}" if f.index is not None else "volume —"]
        parts.append("written " + time.strftime("%H:%M:%S", time.localtime(f.written)) if f.written else "written —")
        if f.source:
            parts.append(Path(f.source).name)
        mm = self.position_mm
        if mm is not None:
            parts.append(f"x {mm[0]:.1f} y {mm[1]:.1f} z {mm[2]:.1f} mm")
        if self.mask_error:
            parts.append(f"ROI: {self.mask_error}")
        return "  |  ".join(parts)


def _tile_outlines(mask: np.ndarray, tile: tuple[int, int]) -> np.ndarray:
    """Outlines per tile (a mask touching a tile's edge is closed there, not joined to the next tile)."""
    out = np.zeros_like(mask)
    nu, nv = tile
    for u0 in range(0, mask.shape[0], nu):
        for v0 in range(0, mask.shape[1], nv):
            out[u0:u0 + nu, v0:v0 + nv] = outline(mask[u0:u0 + nu, v0:v0 + nv])
    return out


# ---------------------------------------------------------------------------------------------- the folder
_NUMBER = re.compile(r"(\d+)")
_EXT = re.compile(r"\.(nii\.gz|nii|dcm|ima|dicom)$", re.IGNORECASE)


def natural_key(name: str) -> list[int | str]:
    """Name order with numbers compared as numbers (vol_10 after vol_9)."""
    return [int(p) if p.isdigit() else p for p in _NUMBER.split(name)]


def decode_volume_file(raw: bytes, path: str) -> Frame:
    """A DICOM (MOSAIC, enhanced) or NIfTI volume file's bytes -> Frame, with the session's readers.

    :class:`IncompleteFile` while the file is still being written; ValueError when it is not a volume.
    """
    name = Path(path).name
    index: int | None = None
    if file_format(name, raw[:4]) == "nifti":
        vol = decode_nifti(raw, path)
        data, affine = vol.data, vol.affine
    else:
        dvol = read_dicom(raw, path)
        data, affine, index = dvol.data, dvol.affine, dvol.index
    if index is None:
        numbers = _NUMBER.findall(_EXT.sub("", name))
        index = int(numbers[-1]) if numbers else None
    return Frame(np.asarray(data, dtype=np.float32), np.asarray(affine, dtype=np.float64), index, source=path)


@dataclass
class NewestVolume:
    """The newest volume file of a scanner export folder, read without disturbing the session.

    ``poll()`` lists the folder once and returns a :class:`Frame` only when the newest file (name
    order: the export names number volumes in acquisition order) is one not yet shown, or was
    rewritten. A file that is still being written is skipped (``skipped`` says which and why) and
    the frame shown stays; if nothing was shown yet the file before it is tried instead.
    """

    folder: Path
    pattern: str = DEFAULT_PATTERN
    last: Frame | None = None
    skipped: str = ""
    error: str = ""
    reads: int = 0  # files decoded (or tried)
    _shown: tuple[str, int, int] | None = field(default=None, repr=False)  # name, size, mtime_ns
    _incomplete: tuple[str, int, int] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)

    def _candidates(self) -> list[str]:
        try:
            with os.scandir(self.folder) as it:
                names = [e.name for e in it if name_matches(e.name, self.pattern) and e.is_file()]
        except OSError as exc:
            self.error = f"{self.folder}: {exc.strerror or exc}"
            return []
        self.error = ""
        return sorted(names, key=natural_key)

    def poll(self) -> Frame | None:
        """The newest complete volume if it is new, else None (the last one stays in ``last``)."""
        names = self._candidates()
        shown = self._shown[0] if self._shown else None
        newer = names[names.index(shown) + 1:] if shown in names else names
        # the newest, then (only when it is incomplete) the one before it, never older than the one shown
        for name in reversed(newer[-2:]):
            frame = self._read(name)
            if frame is not None:
                if name == names[-1]:
                    self.skipped = ""
                return frame
        if shown in names and newer == []:  # the file shown may have been rewritten in place
            return self._read(shown)
        return None

    def _read(self, name: str) -> Frame | None:
        path = self.folder / name
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (name, st.st_size, st.st_mtime_ns)
        if key == self._shown or key == self._incomplete:
            return None  # already shown, or still the same partial file
        self.reads += 1
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
            frame = decode_volume_file(raw, str(path))
        except IncompleteFile as exc:
            self._incomplete = key
            self.skipped = f"{name}: still being written ({exc})"
            return None
        except (OSError, ValueError) as exc:
            self._incomplete = key  # not retried until it changes
            self.skipped = f"{name}: not readable ({exc})"
            return None
        frame.written = st.st_mtime
        self._shown, self.last = key, frame
        return frame
