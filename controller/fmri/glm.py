"""Incremental (cumulative) GLM detrending of ROI time series, one volume at a time.

As in OpenNFT and Turbo-BrainVoyager: at volume n the ROI series so far, y[1..n], is regressed on
a design of [constant, polynomial drift, the 6 motion parameters (optional), task regressors
(optional), a DCT high-pass set (optional)] and the value reported for volume n is y[n] minus the
fitted nuisance part at n (everything except the task regressors, which are fitted so drift and
motion cannot absorb the task signal, but not removed; OpenNFT does the same with its
"signal preprocessing" design). Each reported value is kept as it was when computed (causal), so
the series is what a participant actually saw.

Choices, and why:

* **Basis.** The fitted values (hence the residuals) depend only on the column *space*, not on the
  basis. The drift here is Legendre polynomials over the *planned* run length (``n_planned``):
  fixed per volume, so rows can be appended, yet well conditioned. Offline references may use the
  textbook Legendre-over-the-current-window basis; the results agree to rounding.
* **Incremental solve.** The upper-triangular factor R of the augmented matrix [X | Y] is updated
  per new row by re-triangularising [R; new row] (O(p^2 (p + m)) for m series sharing one design,
  a (p+1) x (p+m) QR: tens of microseconds), never forming
  X'X, so the condition number is not squared. beta then comes from the small p x p system R,
  solved by SVD with the same relative cut-off (``RCOND``) an offline ``lstsq`` on X uses (R and X
  have the same singular values), so degenerate regressors (a motion parameter that never moves)
  are dropped the same way online and offline.
* **Regressors join when the data can carry them.** A group (drift, motion, task, high-pass, in that
  order) enters once n >= (columns up to and including it) + ``min_dof``; until then the fit uses
  the groups before it. When a group joins, R is rebuilt from the stored rows once.
* **The constant kept.** ``cleaned`` has the constant removed too (zero-mean fit, plus any fitted
  task effect). ``detrended`` = cleaned + ``level``, where ``level`` is the mean raw value of the series' first
  ``level_volumes`` volumes (the running mean until then), a *fixed* number: a constant that moved
  with n (the cumulative mean, or the intercept of a refitted drift) would leak task signal into
  the baseline comparison. PSC of ``detrended`` is then 100 * (cleaned difference) / level.
* **Scaling of regressors** (OpenNFT z-scores the motion parameters) does not change the fit: any
  affine rescaling of a column stays in the same column space as long as the constant is in.
* **High-pass.** The DCT set is SPM's for the planned run (``n_planned`` volumes, cutoff
  ``highpass_s``), truncated to the rows so far, as OpenNFT does; it needs ``n_planned`` to be the
  real run length. Cosine k joins only once the data span half its cycle (n >= n_planned / k):
  over a shorter window it is indistinguishable from the polynomial drift and would make the fit
  ill-posed (condition numbers of 1e10 on the OpenNFT run).
* **Placed by acquisition.** Each row's time columns (drift, high-pass) are those of its acquisition
  position ``t`` (1-based counted volume), given with the row, never its arrival count: a volume lost
  or delivered late leaves every other row where the scanner put it. Rows may come in any order
  (least squares does not care); the groups join by the number of rows the fit holds.
* **Task regressors** are the caller's (e.g. ``hrf.task_regressor`` of the protocol's blocks, known
  before the run, so row n depends only on the timeline up to n). Before the first task block the
  column is zero and is dropped by the rank cut-off; a task column collinear with the drift would
  make the nuisance/task split ambiguous (nothing here can fix that design).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.polynomial import legendre
from numpy.typing import NDArray

RCOND = 1e-10  # relative singular-value cut-off shared by the online and offline solves


@dataclass(frozen=True)
class GlmConfig:
    """Design of the cumulative GLM. ``n_planned`` = run length in volumes (after skipped ones)."""

    drift_order: int = 2
    motion: bool = True
    n_task: int = 0
    highpass_s: float | None = None
    tr_s: float | None = None
    n_planned: int = 128
    min_dof: int = 3
    level_volumes: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.drift_order <= 6:
            raise ValueError(f"GLM drift_order must be 0..6, got {self.drift_order}")
        if self.n_planned < 2:
            raise ValueError(f"GLM n_planned must be >= 2 volumes, got {self.n_planned}")
        if self.min_dof < 1:
            raise ValueError(f"GLM min_dof must be >= 1, got {self.min_dof}")
        if self.n_task < 0:
            raise ValueError(f"GLM n_task must be >= 0, got {self.n_task}")
        if self.level_volumes < 1:
            raise ValueError(f"GLM level_volumes must be >= 1, got {self.level_volumes}")
        if self.highpass_s is not None:
            if not self.highpass_s > 0:
                raise ValueError(f"GLM highpass_s must be > 0 s, got {self.highpass_s}")
            if self.tr_s is None or not self.tr_s > 0:
                raise ValueError("GLM high-pass needs tr_s (the repetition time in s)")

    @property
    def n_highpass(self) -> int:
        """Non-constant DCT columns: SPM's fix(2 N TR / cutoff + 1) minus the constant."""
        if self.highpass_s is None:
            return 0
        assert self.tr_s is not None, "__post_init__: a high-pass needs tr_s"
        return max(int(np.floor(2.0 * self.n_planned * float(self.tr_s) / self.highpass_s + 1.0)) - 1, 0)

    @property
    def groups(self) -> list[tuple[str, int]]:
        """(name, number of columns) in design order."""
        return [
            ("constant", 1),
            ("drift", self.drift_order),
            ("motion", 6 if self.motion else 0),
            ("task", self.n_task),
            ("highpass", self.n_highpass),
        ]

    @property
    def task_slice(self) -> slice:
        """Columns of the task regressors (fitted, not removed)."""
        start = 1 + self.drift_order + (6 if self.motion else 0)
        return slice(start, start + self.n_task)

    @property
    def n_columns(self) -> int:
        return sum(k for _, k in self.groups)

    def active_columns(self, n: int) -> int:
        """Leading design columns in use once n volumes are in (see the module docstring)."""
        total = 0
        for name, k in self.groups:
            if k == 0:
                continue
            if name == "highpass":
                # Highest frequency first; cosine k (half-period n_planned / k volumes) joins once the
                # window holds half a cycle of it; before that it is just more polynomial drift and
                # makes the fit ill-posed (near-collinear with the drift columns).
                for kk in range(k, 0, -1):
                    if n < total + 1 + self.min_dof or n * kk < self.n_planned:
                        break
                    total += 1
                break
            if name != "constant" and n < total + k + self.min_dof:
                break
            total += k
        return total

    def drift_columns(self, t: np.ndarray, n_scale: int) -> np.ndarray:
        """Legendre drift P1..P_order at 1-based times ``t`` for a time axis of ``n_scale`` volumes."""
        t = np.asarray(t, dtype=np.float64)
        u = 2.0 * (t - 1.0) / max(n_scale - 1, 1) - 1.0
        return legendre.legvander(u, self.drift_order)[:, 1:]

    def highpass_columns(self, t: np.ndarray) -> np.ndarray:
        """DCT columns k = K..1 (highest frequency first) of the planned run at 1-based times ``t``."""
        t = np.asarray(t, dtype=np.float64)
        k = np.arange(self.n_highpass, 0, -1, dtype=np.float64)
        return np.cos(np.pi * (2.0 * t[:, None] - 1.0) * k[None, :] / (2.0 * self.n_planned))

    def design(
        self, t: np.ndarray, motion: np.ndarray | None, task: np.ndarray | None = None, n_scale: int | None = None
    ) -> np.ndarray:
        """Full design rows at 1-based times ``t``; drift scaled to ``n_scale`` (default ``n_planned``)."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        cols = [np.ones((t.size, 1)), self.drift_columns(t, n_scale or self.n_planned)]
        if self.motion:
            if motion is None:
                raise ValueError("GLM configured with motion regressors but no motion parameters were given")
            mot = np.asarray(motion, dtype=np.float64).reshape(t.size, 6)
            if not np.all(np.isfinite(mot)):
                raise ValueError(f"motion parameters must be finite, got {mot.tolist()}")
            cols.append(mot)
        if self.n_task:
            if task is None:
                raise ValueError(f"GLM configured with {self.n_task} task regressor(s) but no task values were given")
            tk = np.asarray(task, dtype=np.float64).reshape(t.size, self.n_task)
            if not np.all(np.isfinite(tk)):
                raise ValueError(f"task regressors must be finite, got {tk.tolist()}")
            cols.append(tk)
        cols.append(self.highpass_columns(t))
        return np.concatenate(cols, axis=1)


@dataclass(frozen=True)
class GlmStep:
    """One volume's GLM output per series: ``cleaned`` (nuisance and constant removed) and ``detrended`` (= cleaned + level)."""

    n: int
    cleaned: np.ndarray
    detrended: np.ndarray
    level: np.ndarray
    n_columns: int


class IncrementalGlm:
    """Cumulative GLM for ``n_series`` ROI series that share one design (same motion, same drift)."""

    def __init__(self, config: GlmConfig, n_series: int = 1) -> None:
        if n_series < 1:
            raise ValueError(f"IncrementalGlm needs n_series >= 1, got {n_series}")
        self.config = config
        self.m = int(n_series)
        cap = max(int(config.n_planned), 16)
        self._x = np.empty((cap, config.n_columns))
        self._y = np.empty((cap, self.m))
        self._times = np.empty((0, config.n_columns))  # time columns by acquisition position t = 1, 2, ...
        self._time_rows(cap)
        p = 1 + config.drift_order
        self._motion_cols = slice(p, p + 6) if config.motion else None
        self._n = 0
        self._pa = 0
        self._rt = np.empty((0, self.m))
        self._level_sum = np.zeros(self.m)
        self._level = np.zeros(self.m)

    @property
    def n(self) -> int:
        """Volumes taken so far."""
        return self._n

    def _time_rows(self, t_max: int) -> None:
        """Constant, drift and high-pass depend on the acquisition position only: computed ahead up to ``t_max``."""
        have = self._times.shape[0]
        if t_max <= have:
            return
        cfg = self.config
        stop = max(t_max, 2 * have)
        k = stop - have
        new = cfg.design(np.arange(have + 1, stop + 1), np.zeros((k, 6)) if cfg.motion else None,
                         np.zeros((k, cfg.n_task)))
        self._times = np.concatenate([self._times, new]) if have else new

    def _grow(self) -> None:
        old = self._x.shape[0]
        x, y = np.empty((2 * old, self._x.shape[1])), np.empty((2 * old, self.m))
        x[: self._n], y[: self._n] = self._x[: self._n], self._y[: self._n]
        self._x, self._y = x, y

    def _set_row(self, n: int, t: int, motion: np.ndarray | None, task: np.ndarray | None) -> np.ndarray:
        cfg = self.config
        self._time_rows(t)
        row: NDArray[np.float64] = self._x[n - 1]
        row[:] = self._times[t - 1]
        if self._motion_cols is not None:
            if motion is None:
                raise ValueError("GLM configured with motion regressors but no motion parameters were given")
            mot = np.asarray(motion, dtype=np.float64).reshape(-1)
            if mot.shape != (6,) or not np.all(np.isfinite(mot)):
                raise ValueError(f"motion parameters at volume {n} must be 6 finite numbers, got {mot.tolist()}")
            row[self._motion_cols] = mot
        if cfg.n_task:
            if task is None:
                raise ValueError(f"GLM configured with {cfg.n_task} task regressor(s) but no task values were given")
            tk = np.asarray(task, dtype=np.float64).reshape(-1)
            if tk.shape != (cfg.n_task,) or not np.all(np.isfinite(tk)):
                raise ValueError(f"task regressors at volume {n} must be {cfg.n_task} finite number(s), got {tk.tolist()}")
            row[cfg.task_slice] = tk
        return row

    def _rebuild(self, pa: int) -> None:
        a = np.concatenate([self._x[: self._n, :pa], self._y[: self._n]], axis=1)
        r = np.linalg.qr(a, mode="r")
        self._rt = np.array(r[:pa], copy=True)
        self._pa = pa

    def _append(self, row: np.ndarray) -> None:
        """R of [R; row]: one small Householder QR (same result as Givens rotations, one LAPACK call)."""
        # numpy's stubs type qr() as (Q, R) for every mode; mode="r" returns R alone
        self._rt = np.linalg.qr(np.vstack([self._rt, row]), mode="r")[: self._pa]  # type: ignore[assignment]

    def update(self, values: np.ndarray | float, motion: np.ndarray | None = None, task: np.ndarray | None = None,
               t: int | None = None) -> GlmStep:
        """Take one volume's ROI values (one per series), its 6 motion parameters and task regressor values
        (as configured) at acquisition position ``t`` (1-based counted volume; default: the next row);
        return its detrended values."""
        y = np.asarray(values, dtype=np.float64).reshape(self.m)
        if not np.all(np.isfinite(y)):
            raise ValueError(f"GLM input at volume {self._n + 1} is not finite: {y.tolist()}")
        t = self._n + 1 if t is None else int(t)
        if t < 1:
            raise ValueError(f"GLM acquisition position must be >= 1, got {t}")
        if self._n == self._x.shape[0]:
            self._grow()
        n = self._n + 1
        x = self._set_row(n, t, motion, task)
        self._y[n - 1] = y
        self._n = n
        if n <= self.config.level_volumes:
            self._level_sum += y
            self._level = self._level_sum / n

        pa = self.config.active_columns(n)
        if pa != self._pa:
            self._rebuild(pa)
        else:
            self._append(np.concatenate([x[:pa], y]))
        beta = np.linalg.lstsq(self._rt[:, :pa], self._rt[:, pa:], rcond=RCOND)[0]
        cleaned = y - _nuisance(x[:pa], self.config.task_slice) @ beta
        return GlmStep(n, cleaned, cleaned + self._level, self._level.copy(), pa)


def _nuisance(x: np.ndarray, task: slice) -> np.ndarray:
    """The design row(s) with the task columns zeroed (their fit is kept in the output)."""
    if task.stop == task.start or task.start >= x.shape[-1]:
        return x
    x = x.copy()
    x[..., task] = 0.0
    return x


def offline_glm(
    series: np.ndarray, motion: np.ndarray | None, config: GlmConfig, task: np.ndarray | None = None,
    times: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference: (cleaned, detrended), each (n, m), by a fresh ``lstsq`` at every n.

    Rows are in arrival order; ``times`` (default 1..n) are their 1-based acquisition positions,
    which place the drift. Uses the Legendre drift over the window the rows so far span, not the
    planned run, so agreement with :class:`IncrementalGlm` also checks that the basis does not matter.
    """
    y = np.asarray(series, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    n_tot, m = y.shape
    tt = np.arange(1, n_tot + 1, dtype=np.float64) if times is None else np.asarray(times, dtype=np.float64)
    if tt.shape != (n_tot,):
        raise ValueError(f"offline_glm: {tt.size} times for {n_tot} volumes")
    mot = None if motion is None else np.asarray(motion, dtype=np.float64).reshape(n_tot, 6)
    tk = None if task is None else np.asarray(task, dtype=np.float64).reshape(n_tot, -1)
    resid = np.empty((n_tot, m))
    level = np.empty((n_tot, m))
    for n in range(1, n_tot + 1):
        pa = config.active_columns(n)
        window = tt[:n]
        lo, hi = float(window.min()), float(window.max())
        x = config.design(window - lo + 1.0, None if mot is None else mot[:n], None if tk is None else tk[:n],
                          n_scale=max(int(round(hi - lo)) + 1, 2))[:, :pa]
        if config.n_highpass:  # the DCT set is the planned run's, at the rows' own acquisition times
            x[:, config.n_columns - config.n_highpass:pa] = config.highpass_columns(window)[
                :, : max(0, pa - (config.n_columns - config.n_highpass))]
        beta = np.linalg.lstsq(x, y[:n], rcond=RCOND)[0]
        resid[n - 1] = y[n - 1] - _nuisance(x[-1], config.task_slice) @ beta
        level[n - 1] = y[: min(n, config.level_volumes)].mean(axis=0)
    return resid, resid + level
