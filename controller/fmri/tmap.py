"""Incremental whole-brain GLM t-map (the idea of OpenNFT's iGLM), one volume at a time, for the operator's view.

Why: the operator wants to see, during the run, where the brain follows the task (is the ROI where
the activation is? did the participant move the wrong region?). Refitting a GLM on every voxel of
every volume so far grows with the run; a cumulative factorisation does not. Per volume and per
voxel of a brain mask, this keeps the upper-triangular factor R of the design (p x p, shared: one
design for all voxels), Z = Q'y (p x V) and the residual sum of squares of the full design (V), and
folds the new design row and the new volume in with p Givens rotations (vectorised over voxels:
recursive least squares in its square-root form); then the t of a contrast of the task regressor(s)
follows from a p x p triangular solve and one (p x V) product, whatever the run length.

Choices, and why:

* **Design**: the cumulative GLM's (:class:`controller.fmri.glm.GlmConfig`: constant, Legendre drift
  over the planned run, the 6 motion parameters, the task regressor(s); high-pass if configured), so
  the operator's map and the ROI detrending model the same things. Its groups join when the data can
  carry them (``GlmConfig.active_columns``): with the factorisation of *all* columns kept
  from the first volume, a joining group is just a larger leading block, never a refit.
* **Numerics**: the factor R is updated by orthogonal rotations, never by forming ``X'X`` (that
  squares the condition number: the Legendre drift over a planned 155-volume run is nearly
  collinear with the constant early on, and the t-maps then differed from an offline fit by 1e-6).
  The residual sum of squares of the leading ``pa`` columns is the rotated-out part plus the
  ``Z`` rows of the columns not (yet) in use: sums of squares, no cancellation. Every voxel is
  centred on its first value (the constant absorbs it: t is unchanged). The tests hold the result to
  an offline least-squares fit (``offline.offline_tmap``, SVD on the whole design) to 1e-8 after
  every volume, on the real run.
* **Defined or not**: t exists once the task column is in the design, is not all zero (before the
  first task block the HRF-convolved regressor is exactly 0), the design has full rank (the
  equilibrated design's singular values above ``RANK_RTOL`` of the largest) and there is at least
  one residual degree of freedom; otherwise the map is ``None``, never a map of zeros.
* **Off the feedback path**: nothing here is needed to decide; a consumer thread (or the bench)
  calls ``update`` after the feedback is out. A skipped volume is simply a row not added (the design
  row is placed by the volume's counted position, not by how many came).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import solve_triangular  # type: ignore[import-untyped]  # scipy: no type stubs installed

from controller.fmri.glm import GlmConfig

RANK_RTOL = 1e-6  # smallest/largest singular value of the equilibrated design below this: rank-deficient


@dataclass(frozen=True)
class TmapStep:
    """The map after one volume: ``t`` (V,) over the mask voxels, or None while it is not defined (and why)."""

    n: int
    t: np.ndarray | None
    dof: int
    n_columns: int
    why_none: str = ""


def contrast_vector(config: GlmConfig, weights: np.ndarray | None = None) -> np.ndarray:
    """A contrast over all design columns with ``weights`` on the task columns (default: +1 on each)."""
    if config.n_task < 1:
        raise ValueError("a t-map needs at least one task regressor (GlmConfig.n_task >= 1)")
    w = np.ones(config.n_task) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (config.n_task,) or not np.all(np.isfinite(w)) or not np.any(w):
        raise ValueError(f"contrast weights must be {config.n_task} finite number(s), not all zero; got {w.tolist()}")
    c = np.zeros(config.n_columns)
    c[config.task_slice] = w
    return c


def t_from_factor(r: np.ndarray, z: np.ndarray, rss: np.ndarray, n: int, c: np.ndarray,
                  col_norms: np.ndarray) -> tuple[np.ndarray | None, str]:
    """t of contrast ``c`` for every column of ``z`` from a least-squares factorisation of n rows.

    ``r`` (p x p upper triangular) and ``z`` (p x V) with R'R = X'X and R'Z = X'Y; ``rss`` (V) the residual
    sum of squares of this design; ``col_norms`` the design's column norms (for the rank test).
    Returns (t, "") or (None, why it is not defined).
    """
    p = r.shape[0]
    if n - p < 1:
        return None, f"{n} volume(s) for {p} regressors: no residual degree of freedom"
    if np.any(col_norms[c != 0] == 0.0):
        return None, "the task regressor is all zero so far (no task block yet)"
    if np.any(col_norms == 0.0):
        return None, "a regressor is all zero so far"
    sv = np.linalg.svd(r / col_norms, compute_uv=False)  # the equilibrated design's singular values
    if sv[-1] <= RANK_RTOL * sv[0]:
        return None, "the design is rank-deficient so far"
    u = solve_triangular(r, c, trans="T")  # R'u = c: c'beta = u'Z, c'(X'X)^-1 c = u'u
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (u @ z) / np.sqrt(np.maximum(rss, 0.0) / (n - p) * float(u @ u))
    return t, ""


class IncrementalTmap:
    """t-map of a task contrast over the voxels of ``mask``, updated one volume at a time."""

    def __init__(self, mask: np.ndarray, config: GlmConfig, contrast: np.ndarray | None = None) -> None:
        m = np.asarray(mask, dtype=bool)
        if m.ndim != 3 or not m.any():
            raise ValueError(f"the t-map mask must be a non-empty 3D boolean volume, got shape {m.shape}")
        self.mask = m
        self.config = config
        self.contrast = contrast_vector(config, contrast)
        p, v = config.n_columns, int(m.sum())
        self._r = np.zeros((p, p))
        self._z = np.zeros((p, v))
        self._rss = np.zeros(v)  # residual sum of squares of all p columns (what the rotations leave over)
        self._y0: np.ndarray | None = None
        self._y = np.empty(v)
        self._buf = (np.empty(v), np.empty(v))
        self.n = 0
        self.last: TmapStep | None = None

    @property
    def n_voxels(self) -> int:
        return int(self._rss.size)

    def values(self, volume: np.ndarray) -> np.ndarray:
        """The mask voxels of a 3D volume (any memory order), in the map's order (C order of the grid), float64."""
        v = np.asarray(volume)
        if v.shape != self.mask.shape:
            raise ValueError(f"volume shape {v.shape} differs from the t-map mask's {self.mask.shape}")
        out: NDArray[np.float64] = v[self.mask].astype(np.float64)
        return out

    def design_row(self, counted: int, motion: np.ndarray | None, task: np.ndarray | None) -> np.ndarray:
        """The design row of counted volume ``counted`` (0-based): the GLM's columns at time counted + 1."""
        cfg = self.config
        mot = None if not cfg.motion else np.asarray(motion, dtype=np.float64).reshape(1, 6)
        tk = None if not cfg.n_task else np.asarray(task, dtype=np.float64).reshape(1, cfg.n_task)
        row: NDArray[np.float64] = cfg.design(np.array([counted + 1.0]), mot, tk)[0]
        return row

    def update(self, volume: np.ndarray, counted: int, motion: np.ndarray | None = None,
               task: np.ndarray | None = None) -> TmapStep:
        """Add counted volume ``counted`` (0-based; its motion parameters and task value(s)) and return the map."""
        return self.update_values(self.values(volume), self.design_row(counted, motion, task))

    def update_values(self, y: np.ndarray, x: np.ndarray) -> TmapStep:
        """Add one row: mask-voxel values ``y`` (V,) and design row ``x`` (p,)."""
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if y.shape != self._rss.shape or x.shape != (self.config.n_columns,):
            raise ValueError(f"t-map row: expected {self._rss.size} values and {self.config.n_columns} regressors, "
                             f"got {y.size} and {x.size}")
        if not (np.all(np.isfinite(y)) and np.all(np.isfinite(x))):
            raise ValueError(f"t-map volume {self.n + 1}: values or regressors are not finite")
        if self._y0 is None:
            self._y0 = y.copy()
        self._rotate_in(x.copy(), np.subtract(y, self._y0, out=self._y))
        self.n += 1
        pa = self.config.active_columns(self.n)
        c = self.contrast[:pa]
        if not np.any(c):
            step = TmapStep(self.n, None, self.n - pa, pa, "the task regressor is not in the design yet")
        else:
            rss = self._rss + np.einsum("pv,pv->v", self._z[pa:], self._z[pa:])  # the unused columns' part
            norms = np.linalg.norm(self._r[:pa, :pa], axis=0)  # = the design's column norms
            t, why = t_from_factor(self._r[:pa, :pa], self._z[:pa], rss, self.n, c, norms)
            step = TmapStep(self.n, t, self.n - pa, pa, why)
        self.last = step
        return step

    def _rotate_in(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fold the row (x, y) into (R, Z, rss) with one Givens rotation per column; ``y`` is overwritten."""
        r, z = self._r, self._z
        a, b = self._buf
        for j in range(x.size):
            if x[j] == 0.0:
                continue
            h = float(np.hypot(r[j, j], x[j]))
            cs, sn = r[j, j] / h, x[j] / h
            rj = r[j, j:].copy()
            r[j, j:] = cs * rj + sn * x[j:]
            x[j:] = cs * x[j:] - sn * rj
            zj = z[j]
            np.multiply(zj, cs, out=a)  # z_j <- c z_j + s y ; y <- c y - s z_j
            np.multiply(y, sn, out=b)
            a += b
            np.multiply(zj, sn, out=b)
            y *= cs
            y -= b
            zj[...] = a
        y *= y
        self._rss += y

    def volume(self, t: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """A map (V,) back on the 3D grid (``fill`` outside the mask), for display or saving."""
        out = np.full(self.mask.shape, fill, dtype=np.float64)
        out[self.mask] = t
        return out
