"""Careful offline rigid registration: the yardstick the real-time :class:`Realigner` is held to.

Same cost as the real-time estimator (squared differences with a fitted intensity gain and
offset) with none of its shortcuts: every head voxel of the reference at full resolution, the
moving volume interpolated by a B-spline (cubic by default, each volume prefiltered), Gauss-Newton
in the forward direction (reference gradients, moving volume interpolated) iterated until the
update is below 1e-6 mm. About a second per volume; used by tests, bench and offline re-analysis.

The inverse-compositional form is used (Jacobian from the reference's central-difference
gradients) rather than the exact gradient of the interpolated moving volume: on volumes with
known simulated motion the latter's interpolation error correlates with its own gradient and
biases the optimum (measured 0.011 mm mean / 0.044 mm max error against 0.004 / 0.014).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from controller.fmri.motion import RigidMotion, rotation_matrix
from controller.fmri.realign import brain_mask
from controller.fmri.realign_sample import voxel_map


class OfflineRegistration:
    """Registers volumes to ``reference`` one at a time, each independently unless ``init`` is given."""

    def __init__(
        self,
        reference: np.ndarray,
        affine: np.ndarray,
        *,
        mask: np.ndarray | None = None,
        order: int = 3,
        max_iter: int = 100,
        tol_mm: float = 1e-6,
    ) -> None:
        ref = np.asarray(reference, dtype=np.float64)
        if ref.ndim != 3:
            raise ValueError(f"reference must be a 3D volume, got shape {ref.shape}")
        self.affine = np.asarray(affine, dtype=float)
        self.shape = ref.shape
        mask = brain_mask(ref) if mask is None else np.asarray(mask, dtype=bool)
        inner = np.zeros_like(mask)
        inner[1:-1, 1:-1, 1:-1] = True
        idx = np.nonzero(mask & inner)
        self.points_vox = np.stack(idx).astype(float)
        self._rvals = ref[idx]
        gvox = np.stack([g[idx] for g in np.gradient(ref)])
        gw = np.linalg.inv(self.affine[:3, :3]).T @ gvox
        xw = self.affine[:3, :3] @ self.points_vox + self.affine[:3, 3:4]
        self.centre = xw.mean(axis=1)
        xc = xw - self.centre[:, None]
        self._jac = np.vstack([gw, np.cross(xc.T, gw.T).T, self._rvals[None], np.ones((1, self._rvals.size))])
        self.order = int(order)
        self.max_iter = int(max_iter)
        self.tol_mm = float(tol_mm)
        self._ainv = np.linalg.inv(self.affine)
        self._hi = np.array(self.shape, dtype=float)[:, None] - 1.0
        self._tc = np.eye(4)
        self._tc[:3, 3] = self.centre
        self._tc_inv = np.eye(4)
        self._tc_inv[:3, 3] = -self.centre
        self.iterations = 0
        self.converged = False

    def register(self, volume: np.ndarray, init: RigidMotion | None = None) -> RigidMotion:
        v = np.asarray(volume, dtype=np.float64)
        if v.shape != self.shape:
            raise ValueError(f"volume shape {v.shape} differs from the reference shape {self.shape}")
        coef = ndimage.spline_filter(v, order=self.order, mode="mirror") if self.order > 1 else v
        m = np.eye(4) if init is None else init.matrix()
        jac = self._jac
        self.converged = False
        for it in range(self.max_iter):
            b = self._ainv @ m @ self.affine
            q = b[:3, :3] @ self.points_vox + b[:3, 3:4]
            val = ndimage.map_coordinates(coef, q, order=self.order, mode="mirror", prefilter=False)
            inside = np.all((q >= 0.0) & (q <= self._hi), axis=0)  # outside the field of view: unobservable
            j = jac[:, inside]
            d = np.linalg.solve(j @ j.T, j @ (val[inside] - self._rvals[inside]))
            step = np.eye(4)
            step[:3, :3] = rotation_matrix(d[3], d[4], d[5])
            step[:3, 3] = d[:3]
            m = m @ np.linalg.inv(self._tc @ step @ self._tc_inv)
            self.iterations = it + 1
            if np.abs(d[:3]).sum() + 50.0 * np.abs(d[3:6]).sum() < self.tol_mm:
                self.converged = True
                break
        return RigidMotion.from_matrix(m)


def simulate_motion(
    volume: np.ndarray,
    affine: np.ndarray,
    motion: RigidMotion,
    noise_sd: float = 0.0,
    rng: np.random.Generator | None = None,
    order: int = 5,
) -> np.ndarray:
    """``volume`` as the scanner would see it after the head moved by ``motion`` (for tests/bench).

    Quintic B-spline resampling (far more accurate than anything the estimators use, so their
    interpolation error is what gets measured), plus Gaussian noise of ``noise_sd``. A voxel
    whose tissue came from outside the field of view takes the nearest edge value.
    """
    b = np.linalg.inv(voxel_map(affine, motion))  # moving voxel -> reference voxel
    out = ndimage.affine_transform(
        np.asarray(volume, dtype=np.float64), b[:3, :3], offset=b[:3, 3], order=order, mode="nearest"
    )
    if noise_sd > 0:
        rng = np.random.default_rng() if rng is None else rng
        out += rng.normal(0.0, noise_sd, out.shape)
    return out.astype(np.float32)
