"""Per-volume rigid-body realignment to a reference volume, fast enough for the real-time hot path.

Method (chosen by measurement, see ``bench/realign_accuracy.py``): inverse-compositional
Gauss-Newton on the sum of squared differences, with a global intensity gain and offset fitted
alongside the six rigid parameters, run "in reverse": the *reference* is the image that gets
interpolated (its cubic B-spline coefficients are computed once, in ``__init__``), and the
incoming volume is only read at its own voxels. So no per-volume spline prefilter or reslice is
needed, and the interpolation is cubic B-spline, which measured an order of magnitude less biased
than trilinear or Keys cubic convolution on real EPI (see the bench). Per volume: the volume's
values and fourth-order central-difference gradients at a coarse grid of head voxels (the half
with the strongest edges) give the 8-column Jacobian and its 8x8 normal matrix; then each iteration is one gather of the reference at the
warped points (trilinear while far from the optimum, cubic B-spline for the last steps) and an
(8, N) x (N,) product. It starts from the previous volume's estimate (causal warm start).

Motion convention: :mod:`controller.fmri.motion`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage  # type: ignore[import-untyped]  # scipy: no type stubs installed

from controller.fmri.motion import RigidMotion, framewise_displacement, rotation_matrix
from controller.fmri.realign_sample import TrilinearSampler, resample_points, reslice, voxel_map

__all__ = [
    "Realigner",
    "RigidMotion",
    "brain_mask",
    "framewise_displacement",
    "resample_points",
    "reslice",
    "voxel_map",
]


def brain_mask(reference: np.ndarray, frac: float = 0.3, dilate: int = 1) -> np.ndarray:
    """Voxels bright enough to be head, dilated so the head's edge (where the gradients are) is in.

    The threshold is ``frac`` times the mean of the voxels above an eighth of the global mean
    (SPM's way of finding the head without knowing the scanner's intensity scale).
    """
    ref = np.asarray(reference, dtype=float)
    head = ref[ref > ref.mean() / 8.0]
    if head.size == 0:
        raise ValueError("reference volume is empty (all voxels <= 0)")
    mask = ref > frac * head.mean()
    if dilate > 0:
        mask = ndimage.binary_dilation(mask, iterations=dilate)
    head_mask: NDArray[np.bool_] = mask
    return head_mask


def _steps(step: int | tuple[int, int, int] | None, sample_mm: float, voxel_mm: np.ndarray) -> tuple[int, ...]:
    if step is None:
        return tuple(max(1, int(np.floor(sample_mm / v + 0.5))) for v in voxel_mm)
    if isinstance(step, (int, np.integer)):
        step = (int(step),) * 3
    if len(step) != 3 or min(step) < 1:
        raise ValueError(f"step must be a positive int or three positive ints, got {step}")
    return tuple(int(s) for s in step)


def _translation(c: np.ndarray) -> np.ndarray:
    t = np.eye(4)
    t[:3, 3] = c
    return t


class Realigner:
    """Estimates each incoming volume's :class:`RigidMotion` relative to ``reference``.

    Options (defaults are the measured hot-path choice):

    * ``step`` -- use every ``step``-th voxel per axis (int or 3-tuple); by default derived from
      ``sample_mm`` (about 6 mm apart: every 2nd voxel at 3 mm).
    * ``mask`` -- boolean volume of voxels to use; default :func:`brain_mask` of the reference.
    * ``keep_fraction`` -- of those, keep this fraction with the strongest reference gradient
      (edges carry the information; half the points measured as accurate at half the cost).
    * ``interp`` -- ``"cubic"`` (B-spline, the default) or ``"linear"`` for the final iterations;
      ``coarse_tol_mm`` -- trilinear iterations run first until the update is below this.
    * ``max_iter``, ``tol_mm`` -- per stage; stop when the update moves no point within 50 mm of
      the centre by more than ``tol_mm``.
    """

    def __init__(
        self,
        reference: np.ndarray,
        affine: np.ndarray,
        *,
        step: int | tuple[int, int, int] | None = None,
        sample_mm: float = 6.0,
        mask: np.ndarray | None = None,
        keep_fraction: float = 0.5,
        interp: str = "cubic",
        coarse_tol_mm: float = 0.02,
        max_iter: int = 20,
        tol_mm: float = 5e-3,
    ) -> None:
        ref = np.asarray(reference, dtype=np.float64)
        if ref.ndim != 3:
            raise ValueError(f"reference must be a 3D volume, got shape {ref.shape}")
        if min(ref.shape) < 5:
            raise ValueError(f"reference must be at least 5 voxels along each axis, got {ref.shape}")
        if not 0.0 < keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
        if not np.all(np.isfinite(ref)):
            raise ValueError("reference volume contains NaN or inf")
        self.affine = np.asarray(affine, dtype=float)
        if self.affine.shape != (4, 4) or not np.all(np.isfinite(self.affine)):
            raise ValueError(f"affine must be a finite 4x4 matrix, got shape {self.affine.shape}")
        if interp not in ("linear", "cubic"):
            raise ValueError(f"interp must be 'linear' or 'cubic', got {interp!r}")
        self.shape = ref.shape
        voxel_mm = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        self.steps = _steps(step, sample_mm, voxel_mm)
        self.interp = interp
        self.coarse_tol_mm = float(coarse_tol_mm)
        self.max_iter = int(max_iter)
        self.tol_mm = float(tol_mm)

        if mask is None:
            mask = brain_mask(ref)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != ref.shape:
            raise ValueError(f"mask shape {mask.shape} differs from reference shape {ref.shape}")
        sel = np.zeros_like(mask)
        # every step-th voxel, never within 2 of the border (central differences need 2 neighbours each side)
        sel[2:-2, 2:-2, 2:-2] = True
        sub = np.zeros_like(mask)
        sub[:: self.steps[0], :: self.steps[1], :: self.steps[2]] = True
        idx = np.nonzero(mask & sel & sub)
        if keep_fraction < 1.0:
            # keep the points where the reference has most edge: they carry most of the information
            grads = cast(list[NDArray[np.float64]], np.gradient(ref))  # one array per axis of the 3D reference
            gmag = cast(NDArray[np.float64], sum(g[idx] ** 2 for g in grads))  # never the empty sum's 0
            keep = np.sort(np.argsort(gmag)[-max(1, int(keep_fraction * gmag.size)) :])
            idx = tuple(i[keep] for i in idx)
        if idx[0].size < 100:
            raise ValueError(f"only {idx[0].size} sample points in the mask; the reference looks empty")
        self.points_vox = np.stack(idx).astype(float)  # (3, N), voxels of the incoming volume's grid
        self._flat_idx = np.ravel_multi_index(idx, self.shape)
        ny, nz = self.shape[1], self.shape[2]
        self._nb = (ny * nz, nz, 1)  # flat offsets of the +1 neighbour along i, j, k
        self._a3inv_t = np.linalg.inv(self.affine[:3, :3]).T  # voxel gradient -> world gradient
        xw = self.affine[:3, :3] @ self.points_vox + self.affine[:3, 3:4]
        self.centre = xw.mean(axis=1)
        self._xc = xw - self.centre[:, None]
        self._tc, self._tc_inv = _translation(self.centre), _translation(-self.centre)
        self._ainv = np.linalg.inv(self.affine)
        self._hi = np.array(self.shape, dtype=float)[:, None] - 1.0

        self._ref_flat = np.ascontiguousarray(ref).reshape(-1)
        self._coef = ndimage.spline_filter(ref, order=3, mode="mirror")
        self._linear = TrilinearSampler(self.shape)
        n = idx[0].size
        self._jac = np.empty((8, n))
        self._jac[7] = 1.0
        self._vals = np.empty(n)
        self._grad = np.empty((3, n))
        self._cubic_out = np.empty(n)
        self._n = np.eye(4)  # current estimate, inverted: moving world -> reference world
        self.iterations = 0  # iterations used by the last estimate (diagnostics)

    @property
    def n_points(self) -> int:
        return int(self._vals.size)

    def reset(self, motion: RigidMotion | None = None) -> None:
        """Forget the warm start (e.g. after a gap), optionally starting from ``motion``."""
        self._n = np.eye(4) if motion is None else np.linalg.inv(motion.matrix())

    def _sample_linear(self, q: np.ndarray) -> np.ndarray:
        return self._linear(self._ref_flat, q)

    def _sample_cubic(self, q: np.ndarray) -> np.ndarray:
        out: NDArray[np.float64] = ndimage.map_coordinates(self._coef, q, order=3, mode="mirror", prefilter=False, output=self._cubic_out)
        return out

    def _load(self, flat: np.ndarray) -> np.ndarray:
        """Fills the Jacobian (8, N) from the incoming volume at the sample points; returns H^-1 (8, 8)."""
        i = self._flat_idx
        self._vals[:] = flat[i]
        g = self._grad
        for axis, off in enumerate(self._nb):
            # fourth-order central difference: close to the cubic spline's own derivative, which
            # the iterations differentiate; the two-point one is ~25% low and slows convergence
            g[axis] = flat[i + off]
            g[axis] -= flat[i - off]
            g[axis] *= 8.0
            g[axis] -= flat[i + 2 * off]
            g[axis] += flat[i - 2 * off]
        g /= 12.0
        gw = self._a3inv_t @ g
        jac = self._jac
        jac[:3] = gw
        xc = self._xc
        jac[3] = xc[1] * gw[2] - xc[2] * gw[1]
        jac[4] = xc[2] * gw[0] - xc[0] * gw[2]
        jac[5] = xc[0] * gw[1] - xc[1] * gw[0]
        jac[6] = self._vals
        return np.linalg.inv(jac @ jac.T)

    def _iterate(self, sample: Callable[[np.ndarray], np.ndarray], hinv: np.ndarray, n: np.ndarray, tol: float, max_iter: int) -> tuple[np.ndarray, int]:
        """Inverse-compositional Gauss-Newton steps on ``n`` until the update is below ``tol`` mm."""
        for it in range(max_iter):
            b = self._ainv @ n @ self.affine
            q = b[:3, :3] @ self.points_vox + b[:3, 3:4]
            err = sample(q) - self._vals
            # points carried outside the reference's field of view are unobservable: no vote
            outside = np.any((q < 0.0) | (q > self._hi), axis=0)
            if outside.any():
                err[outside] = 0.0
            d = hinv @ (self._jac @ err)
            step = np.eye(4)
            step[:3, :3] = rotation_matrix(d[3], d[4], d[5])
            step[:3, 3] = d[:3]
            n = n @ np.linalg.inv(self._tc @ step @ self._tc_inv)
            if np.abs(d[:3]).sum() + 50.0 * np.abs(d[3:6]).sum() < tol:
                return n, it + 1
        return n, max_iter

    def estimate(self, volume: np.ndarray) -> RigidMotion:
        """Motion of ``volume`` relative to the reference, starting from the previous estimate."""
        v = np.asarray(volume)
        if v.shape != self.shape:
            raise ValueError(f"volume shape {v.shape} differs from the reference shape {self.shape}")
        flat = v.reshape(-1) if v.flags.c_contiguous else np.ascontiguousarray(v).reshape(-1)
        hinv = self._load(flat)
        if not np.all(np.isfinite(hinv)):
            raise ValueError("volume contains NaN/inf or is flat at every sample point")
        n, n1, n2 = self._n, 0, 0
        if self.interp == "linear":
            n, n1 = self._iterate(self._sample_linear, hinv, n, self.tol_mm, self.max_iter)
        else:
            if self.coarse_tol_mm > 0:
                n, n1 = self._iterate(self._sample_linear, hinv, n, self.coarse_tol_mm, self.max_iter)
            n, n2 = self._iterate(self._sample_cubic, hinv, n, self.tol_mm, self.max_iter)
        self.iterations = n1 + n2
        if not np.all(np.isfinite(n)):
            raise FloatingPointError("realignment diverged (non-finite transform)")
        self._n = n
        return RigidMotion.from_matrix(np.linalg.inv(n))
