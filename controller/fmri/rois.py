"""Regions of interest on the functional grid: voxel indices plus weights.

An ROI is computed once, before the run, from a mask on the same grid, a mask or atlas label in
MNI space (resampled through an affine registration, with partial-volume weights), or a sphere
around a coordinate. On the hot path it only gathers its voxels and takes a weighted mean, so a
few ROIs cost microseconds per volume whatever their origin.

Registration convention: ``func_to_mni`` is a 4x4 affine that maps functional *world* mm (the
functional image's affine applied to voxel indices) to MNI world mm. Use the identity when the
functional data are already in MNI space.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from controller.fmri.smoothing import GaussianSmoother

ImageLike = str | Path | nib.spatialimages.SpatialImage

# Sub-samples per functional voxel edge for partial-volume weights are chosen so the sub-sample
# spacing is at most a quarter of the source mask voxel (capped: a 1 mm mask on a 3 mm grid stays cheap).
_MAX_SUBSAMPLES = 12


class RoiError(ValueError):
    """An ROI could not be built as asked (grid mismatch, empty, outside the field of view)."""


@dataclass(frozen=True, eq=False)
class Roi:
    """Voxels of the functional grid with weights; ``mean`` is the weighted mean of a volume there.

    ``ijk`` are integer voxel indices (n, 3) into the (i, j, k) array; ``weights`` are >= 0 (1 for a
    binary ROI, the fraction of the source mask inside the voxel for a partial-volume one).
    ``norm`` divides the weighted sum: normally ``weights.sum()``, kept separately so an ROI whose
    weights were spread by a smoothing kernel still yields the mean of the smoothed volume.
    ``coverage`` is the fraction of the source region that landed inside the field of view.
    """

    name: str
    shape: tuple[int, int, int]
    affine: np.ndarray
    ijk: np.ndarray
    weights: np.ndarray
    norm: float
    coverage: float = 1.0
    _coef: np.ndarray = field(init=False, repr=False)
    _index: tuple[np.ndarray, np.ndarray, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ijk = np.ascontiguousarray(self.ijk, dtype=np.intp)
        w = np.ascontiguousarray(self.weights, dtype=np.float64)
        if ijk.ndim != 2 or ijk.shape[1] != 3 or w.shape != (ijk.shape[0],):
            raise RoiError(f"ROI {self.name!r}: ijk must be (n, 3) and weights (n,), got {ijk.shape} and {w.shape}")
        if ijk.shape[0] == 0 or not self.norm > 0:
            raise RoiError(f"ROI {self.name!r} is empty")
        object.__setattr__(self, "ijk", ijk)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "affine", np.asarray(self.affine, dtype=np.float64))
        object.__setattr__(self, "_coef", w / float(self.norm))
        object.__setattr__(self, "_index", (ijk[:, 0].copy(), ijk[:, 1].copy(), ijk[:, 2].copy()))

    @property
    def n_voxels(self) -> int:
        return int(self.ijk.shape[0])

    @property
    def points_vox(self) -> np.ndarray:
        """Voxel coordinates (n, 3) float, e.g. for ``realign.resample_points`` (sample without reslicing)."""
        return self.ijk.astype(np.float64)

    def mean(self, values: np.ndarray) -> float:
        """Weighted mean of ``values`` sampled at this ROI's voxels (same order as ``ijk``)."""
        return float(self._coef @ np.asarray(values, dtype=np.float64))

    def values(self, volume: np.ndarray) -> np.ndarray:
        """This ROI's voxels of a 3D volume (any memory order; no copy of the volume)."""
        out: NDArray[Any] = volume[self._index]
        return out

    def mean_of(self, volume: np.ndarray) -> float:
        """Weighted mean of a 3D volume on the functional grid over this ROI."""
        if volume.shape[:3] != self.shape:
            raise RoiError(f"ROI {self.name!r} is on a {self.shape} grid, volume is {volume.shape}")
        return float(self._coef @ volume[self._index])

    def centroid_mm(self) -> np.ndarray:
        """Weighted centroid in functional world mm."""
        xyz = _apply(self.affine, self.ijk.astype(np.float64))
        centroid: NDArray[np.float64] = (self.weights[:, None] * xyz).sum(axis=0) / self.weights.sum()
        return centroid

    def volume_mm3(self) -> float:
        """Sum of weights times the voxel volume (the ROI's size in mm^3)."""
        return float(self.weights.sum() * abs(np.linalg.det(self.affine[:3, :3])))

    def mask(self) -> np.ndarray:
        """The weights as a 3D float array on the functional grid (for display or saving)."""
        out = np.zeros(self.shape, dtype=np.float64)
        out[self._index] = self.weights
        return out

    def smoothed(self, smoother: GaussianSmoother) -> Roi:
        """An ROI whose plain mean equals this ROI's mean of the *smoothed* volume.

        Smoothing is linear and the Gaussian kernel symmetric, so mean(ROI, G*x) = <G*w, x>/norm
        (zero padding at the grid edge, as ``GaussianSmoother`` uses). Spreading the weights once
        lets the hot path skip smoothing the whole volume when only ROI means are needed.
        """
        spread = smoother(self.mask())
        ijk = np.argwhere(spread != 0.0)
        return Roi(
            name=self.name,
            shape=self.shape,
            affine=self.affine,
            ijk=ijk,
            weights=spread[tuple(ijk.T)],
            norm=self.norm,
            coverage=self.coverage,
        )


class RoiSet:
    """Several ROIs read together: one gather (or one ``resample_points`` call) for all their voxels.

    Per-call overhead dominates for ROIs of tens to hundreds of voxels, so the hot path samples
    the union once and reduces per ROI with ``np.add.reduceat``.
    """

    def __init__(self, rois: Sequence[Roi]) -> None:
        self.rois = list(rois)
        if not self.rois:
            raise RoiError("RoiSet needs at least one ROI")
        shapes = {r.shape for r in self.rois}
        if len(shapes) != 1:
            raise RoiError(f"ROIs are on different grids: {sorted(shapes)}")
        self.shape = self.rois[0].shape
        ijk = np.concatenate([r.ijk for r in self.rois])
        self.points_vox = ijk.astype(np.float64)
        self._index = (ijk[:, 0].copy(), ijk[:, 1].copy(), ijk[:, 2].copy())
        self._coef = np.concatenate([r._coef for r in self.rois])
        self._starts = np.cumsum([0] + [r.n_voxels for r in self.rois[:-1]])

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rois]

    def means(self, values: np.ndarray) -> np.ndarray:
        """Each ROI's weighted mean from values sampled at ``points_vox`` (in that order)."""
        return np.add.reduceat(self._coef * np.asarray(values, dtype=np.float64), self._starts)

    def means_of(self, volume: np.ndarray) -> np.ndarray:
        """Each ROI's weighted mean of a 3D volume on the functional grid."""
        if volume.shape[:3] != self.shape:
            raise RoiError(f"ROIs are on a {self.shape} grid, volume is {volume.shape}")
        return self.means(volume[self._index])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    out: NDArray[np.float64] = pts @ m[:3, :3].T + m[:3, 3]
    return out


def _load(image: ImageLike, what: str) -> tuple[np.ndarray, np.ndarray, str]:
    img: nib.spatialimages.SpatialImage
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.exists():
            raise RoiError(f"{what}: file not found: {path}")
        try:
            img = nib.load(str(path))  # type: ignore[assignment]  # typed FileBasedImage; a grid's image is spatial
        except Exception as exc:  # nibabel raises several types for unreadable files
            raise RoiError(f"{what}: cannot read {path}: {exc}") from exc
        name = path.name
    else:
        img, name = image, getattr(image, "get_filename", lambda: None)() or "image"
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise RoiError(f"{what} {name}: expected a 3D image, got shape {data.shape}")
    return np.asarray(data), np.asarray(img.affine, dtype=np.float64), str(name)


def _check_grid(shape: tuple[int, ...], affine: np.ndarray) -> tuple[tuple[int, int, int], np.ndarray]:
    shape3 = tuple(int(s) for s in shape[:3])
    aff = np.asarray(affine, dtype=np.float64)
    if len(shape3) != 3 or aff.shape != (4, 4):
        raise RoiError(f"functional grid needs a 3D shape and a 4x4 affine, got {shape} and {aff.shape}")
    return shape3, aff


def roi_from_mask(
    image: ImageLike,
    shape: tuple[int, ...],
    affine: np.ndarray,
    *,
    name: str | None = None,
    label: float | None = None,
    weighted: bool = False,
    atol_mm: float = 1e-3,
) -> Roi:
    """ROI from a mask already on the functional grid (e.g. OpenNFT's lROI_1.nii).

    Voxels where the mask is non-zero (or equals ``label``) belong to the ROI; with ``weighted``
    the mask values themselves are the weights. The mask's shape and affine must match the
    functional grid (to ``atol_mm``); otherwise use :func:`roi_from_mni` with a registration.
    """
    shape3, aff = _check_grid(shape, affine)
    data, m_aff, mname = _load(image, "ROI mask")
    if data.shape != shape3 or not np.allclose(m_aff, aff, atol=atol_mm, rtol=0):
        raise RoiError(
            f"ROI mask {mname}: grid {data.shape} with affine {np.round(m_aff, 3).tolist()} does not match the "
            f"functional grid {shape3} with affine {np.round(aff, 3).tolist()}; resample it with roi_from_mni "
            "(pass the registration, or the identity if both are in the same world space)"
        )
    sel = (data == label) if label is not None else (data != 0)
    sel &= np.isfinite(data)
    ijk = np.argwhere(sel)
    if ijk.shape[0] == 0:
        what = f"label {label}" if label is not None else "non-zero voxels"
        raise RoiError(f"ROI mask {mname}: no {what}")
    w = np.abs(data[sel]).astype(np.float64) if weighted and label is None else np.ones(ijk.shape[0])
    return Roi(name or Path(mname).name.split(".")[0], shape3, aff, ijk, w, float(w.sum()))


def _subsample_offsets(s: int) -> np.ndarray:
    g = (np.arange(s) + 0.5) / s - 0.5
    return np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)


def _partial_volume(
    shape: tuple[int, int, int],
    affine: np.ndarray,
    to_target: np.ndarray,
    inside: Callable[[np.ndarray], np.ndarray],
    corners_target: np.ndarray,
    subsamples: int,
    chunk: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """(ijk, fraction) of functional voxels whose sub-samples fall ``inside`` the target-space region.

    ``to_target`` maps functional voxel coordinates to target world mm; ``corners_target`` bound
    the region in target mm so only functional voxels near it are sampled.
    """
    to_vox = np.linalg.inv(to_target)
    cv = _apply(to_vox, corners_target)
    lo = np.maximum(np.floor(cv.min(axis=0)).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(cv.max(axis=0)).astype(int) + 1, np.asarray(shape) - 1)
    if np.any(hi < lo):
        return np.empty((0, 3), dtype=np.intp), np.empty(0)
    axes = [np.arange(a, b + 1) for a, b in zip(lo, hi)]
    cand = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    offs = _subsample_offsets(subsamples)
    frac = np.empty(cand.shape[0])
    for start in range(0, cand.shape[0], chunk):
        c = cand[start : start + chunk].astype(np.float64)
        pts = (c[:, None, :] + offs[None, :, :]).reshape(-1, 3)
        hit = inside(_apply(to_target, pts)).reshape(c.shape[0], -1)
        frac[start : start + chunk] = hit.mean(axis=1)
    keep = frac > 0
    return cand[keep].astype(np.intp), frac[keep]


def _finish(
    name: str,
    shape: tuple[int, int, int],
    affine: np.ndarray,
    ijk: np.ndarray,
    frac: np.ndarray,
    expected_vox: float,
    weighted: bool,
    threshold: float,
    min_coverage: float,
    where: str,
) -> Roi:
    if ijk.shape[0] == 0:
        raise RoiError(f"ROI {name!r} ({where}) lies outside the functional field of view: no voxel overlaps it")
    coverage = float(frac.sum() / expected_vox) if expected_vox > 0 else 0.0
    if coverage < min_coverage:
        raise RoiError(
            f"ROI {name!r} ({where}): only {coverage:.0%} of the region is inside the functional field of view "
            f"(min_coverage {min_coverage:.0%}); check the registration or the field of view"
        )
    keep = frac > threshold
    if not np.any(keep):
        raise RoiError(
            f"ROI {name!r} ({where}) is empty after thresholding the partial-volume fraction at {threshold} "
            f"(largest fraction {frac.max():.3f})"
        )
    w = frac[keep] if weighted else np.ones(int(keep.sum()))
    return Roi(name, shape, affine, ijk[keep], w, float(w.sum()), coverage=min(coverage, 1.0))


def roi_from_mni(
    image: ImageLike,
    shape: tuple[int, ...],
    affine: np.ndarray,
    func_to_mni: np.ndarray | None = None,
    *,
    label: float | None = None,
    name: str | None = None,
    weighted: bool = True,
    threshold: float = 0.0,
    min_coverage: float = 0.5,
    subsamples: int | None = None,
) -> Roi:
    """ROI from a mask or atlas label in MNI space, resampled onto the functional grid.

    Each functional voxel's weight is the fraction of it covered by the MNI region (estimated by
    sub-sampling the voxel, nearest-neighbour into the mask). Voxels with a fraction above
    ``threshold`` are kept; ``weighted=False`` gives them weight 1 (a binary ROI), e.g.
    ``threshold=0.5`` for "mostly inside". ``label`` picks an atlas value (AAL Amygdala_L = 4201);
    without it every non-zero voxel counts. Errors when the region misses the field of view or
    less than ``min_coverage`` of it lies inside.
    """
    shape3, aff = _check_grid(shape, affine)
    reg = np.eye(4) if func_to_mni is None else np.asarray(func_to_mni, dtype=np.float64)
    if reg.shape != (4, 4):
        raise RoiError(f"func_to_mni must be a 4x4 affine, got shape {reg.shape}")
    data, m_aff, mname = _load(image, "MNI mask")
    sel = (data == label) if label is not None else ((data != 0) & np.isfinite(data))
    n_src = int(sel.sum())
    where = f"{mname}" + (f" label {label:g}" if label is not None else "")
    if n_src == 0:
        raise RoiError(f"MNI mask {where}: no voxels (is the label right?)")
    src_ijk = np.argwhere(sel).astype(np.float64)
    m_vox = np.sqrt((m_aff[:3, :3] ** 2).sum(axis=0))
    f_vox = np.sqrt(((reg[:3, :3] @ aff[:3, :3]) ** 2).sum(axis=0))  # functional voxel edges in MNI mm
    if subsamples is None:
        # Even counts put sub-samples at odd multiples of 1/(2s) voxel, off the mask's voxel
        # boundaries for the usual integer-mm grids (ties there would shift the ROI by half a step).
        subsamples = int(np.clip(2 * np.ceil(2.0 * f_vox.max() / m_vox.min()), 2, _MAX_SUBSAMPLES))
    mni_to_src = np.linalg.inv(m_aff)
    sel_u8 = sel.astype(np.uint8)
    dims = np.asarray(sel.shape)

    def inside(xyz: np.ndarray) -> np.ndarray:
        v = np.floor(_apply(mni_to_src, xyz) + 0.5).astype(np.intp)  # ties one way: no even/odd bias
        ok = np.all((v >= 0) & (v < dims), axis=1)
        hit = np.zeros(xyz.shape[0], dtype=bool)
        vv = v[ok]
        hit[ok] = sel_u8[vv[:, 0], vv[:, 1], vv[:, 2]] != 0
        return hit

    lo, hi = src_ijk.min(axis=0) - 0.5, src_ijk.max(axis=0) + 0.5
    box = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    corners = _apply(m_aff, box)
    ijk, frac = _partial_volume(shape3, aff, reg @ aff, inside, corners, subsamples)
    # Region volume in functional voxels (a non-rigid registration scales volumes by its determinant).
    expected = n_src * abs(np.linalg.det(m_aff[:3, :3])) / abs(np.linalg.det(reg[:3, :3] @ aff[:3, :3]))
    rname = name or (f"{Path(mname).name.split('.')[0]}_{label:g}" if label is not None else Path(mname).name.split(".")[0])
    return _finish(rname, shape3, aff, ijk, frac, expected, weighted, threshold, min_coverage, where)


def sphere_roi(
    centre_mm: tuple[float, float, float] | np.ndarray,
    radius_mm: float,
    shape: tuple[int, ...],
    affine: np.ndarray,
    *,
    func_to_mni: np.ndarray | None = None,
    name: str | None = None,
    weighted: bool = False,
    threshold: float = 0.0,
    min_coverage: float = 0.5,
    subsamples: int = 5,
) -> Roi:
    """A sphere of ``radius_mm`` around ``centre_mm``.

    The centre is in functional world mm, or in MNI mm when ``func_to_mni`` is given (the sphere is
    then round in MNI space). Binary by default: voxels whose centre lies within the radius; with
    ``weighted`` the weight is the fraction of the voxel inside the sphere (kept above ``threshold``).
    """
    shape3, aff = _check_grid(shape, affine)
    reg = np.eye(4) if func_to_mni is None else np.asarray(func_to_mni, dtype=np.float64)
    c = np.asarray(centre_mm, dtype=np.float64).reshape(3)
    r = float(radius_mm)
    space = "MNI" if func_to_mni is not None else "native"
    where = f"sphere r={r:g} mm at {space} ({c[0]:g}, {c[1]:g}, {c[2]:g})"
    if not r > 0:
        raise RoiError(f"{where}: radius must be > 0")
    to_target = reg @ aff
    centre_vox = _apply(np.linalg.inv(to_target), c[None, :])[0]
    if np.any(centre_vox < -0.5) or np.any(centre_vox > np.asarray(shape3) - 0.5):
        raise RoiError(
            f"{where}: centre falls at voxel {np.round(centre_vox, 1).tolist()}, outside the functional field of "
            f"view {shape3}"
        )

    def inside(xyz: np.ndarray) -> np.ndarray:
        within: NDArray[np.bool_] = ((xyz - c) ** 2).sum(axis=1) <= r * r
        return within

    corners = np.array([c + [sx * r, sy * r, sz * r] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    ijk, frac = _partial_volume(shape3, aff, to_target, inside, corners, subsamples if weighted else 1)
    expected = (4.0 / 3.0) * np.pi * r**3 / abs(np.linalg.det(to_target[:3, :3]))
    if not weighted:
        # Voxel-centre membership: coverage compares the centres inside the FOV with those of the
        # unbounded grid, so a small sphere is not reported as "outside".
        expected = max(_unbounded_centres(to_target, inside, corners), 1)
    return _finish(name or "sphere", shape3, aff, ijk, frac, expected, weighted, threshold, min_coverage, where)


def _unbounded_centres(to_target: np.ndarray, inside: Callable[[np.ndarray], np.ndarray], corners: np.ndarray) -> int:
    cv = _apply(np.linalg.inv(to_target), corners)
    axes = [np.arange(np.floor(a) - 1, np.ceil(b) + 2) for a, b in zip(cv.min(axis=0), cv.max(axis=0))]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return int(inside(_apply(to_target, grid)).sum())
