"""Causal short-separation regression: a long channel minus beta times its nearest short channel.

A short channel (source and detector ~1 cm apart) sees the scalp and not the cortex, so what a
long channel shares with it is systemic (blood pressure, Mayer waves, breathing, scalp flow).
Online, that share is removed by a recursive least-squares fit with a forgetting factor: the
coupling drifts over a session (optode pressure, posture), so old samples are forgotten with
``lam = exp(-1 / (memory_s * fs))`` (a time constant of ``memory_s``).

The fit has an intercept: beta is the exponentially weighted covariance of short and long over
the weighted variance of short (means removed), so an offset between the two does not bias it.
The output is ``y - beta * x``, not ``y - alpha - beta * x``: subtracting the intercept too
would remove each channel's running mean, a high-pass with a ``memory_s`` time constant hidden
inside the regression; drift is left to the front end's optional high-pass, or to a change from rest.

Beta at sample t is the A PRIORI estimate, from samples <= t-1 (the convention of adaptive noise
cancellers: the output is the innovation). The current long sample then never takes part in
its own correction, so a fast cortical response cannot partly cancel itself through beta; with
a memory of 60 s the difference to the a posteriori beta is ~1/1200 at 20 Hz, the principle is
what decides.

The five exponentially weighted sums (weight, x, y, xy, xx) obey ``S_t = lam * S_{t-1} + v_t``,
one first-order IIR filter, run over the chunk for every channel at once with
``scipy.signal.lfilter`` and its carried state (a one-sample chunk does the same two
operations directly, which lfilter's argument handling would dominate).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal  # type: ignore[import-untyped]  # scipy: no type stubs installed

# Beta is 0 while the short channel's weighted variance is below this fraction of its weighted
# mean square (no data yet, or a flat channel): no fit is better than a fit to rounding error.
_MIN_RELATIVE_VARIANCE = 1e-12


def forgetting_factor(memory_s: float, fs: float) -> float:
    """``lam = exp(-1 / (memory_s * fs))``: a sample ``memory_s`` old weighs 1/e of the newest one."""
    if not (math.isfinite(memory_s) and memory_s > 0):
        raise ValueError(f"short-channel memory must be > 0 s, got {memory_s}")
    return math.exp(-1.0 / (memory_s * fs))


class ShortRegression:
    """Rows ``y`` ``(m, n)`` each regressed on its own regressor row ``x`` ``(m, n)``, state kept."""

    __slots__ = ("_m", "_lam", "_a", "_sums", "_zi")

    def __init__(self, n_rows: int, fs: float, memory_s: float = 60.0) -> None:
        self._m = int(n_rows)
        self._lam = forgetting_factor(memory_s, fs)
        self._a = np.array([1.0, -self._lam])
        # Stacked sums, rows [x (m), y (m), xy (m), xx (m), weight (1)], newest value of each.
        self._sums = np.zeros(4 * self._m + 1)
        self._zi = np.zeros((4 * self._m + 1, 1))  # lfilter's state: lam * the newest sums

    @property
    def forgetting(self) -> float:
        return self._lam

    @property
    def beta(self) -> np.ndarray:
        """Beta per row as it will be used at the next sample (from every sample so far)."""
        return self._betas(self._sums[:, None])[:, 0]

    def reset(self) -> None:
        self._sums.fill(0.0)
        self._zi.fill(0.0)

    def process(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Residuals ``y - beta * x`` ``(m, n)``, beta a priori (from the samples before each one)."""
        n = y.shape[1]
        if n == 0 or self._m == 0:
            return np.array(y, dtype=np.float64)
        v = np.concatenate([x, y, x * y, x * x, np.ones((1, n))], axis=0)
        if n == 1:  # the recursion once, as lfilter computes it (y = x + z; z = lam * y)
            new = v[:, 0] + self._zi[:, 0]
            self._zi[:, 0] = self._lam * new
            sums = new[:, None]
        else:
            sums, self._zi = signal.lfilter([1.0], self._a, v, axis=1, zi=self._zi)
        prior = np.concatenate([self._sums[:, None], sums[:, :-1]], axis=1)  # sums up to t-1, per t
        self._sums[:] = sums[:, -1]
        beta = self._betas(prior)
        out: np.ndarray = y - beta * x
        return out

    def _betas(self, s: np.ndarray) -> np.ndarray:
        m = self._m
        sx, sy, sxy, sxx, sw = s[:m], s[m:2 * m], s[2 * m:3 * m], s[3 * m:4 * m], s[4 * m:]
        cov = sw * sxy - sx * sy  # (weight^2) * weighted covariance
        var = sw * sxx - sx * sx  # (weight^2) * weighted variance of x
        ok = var > _MIN_RELATIVE_VARIANCE * sw * sxx
        with np.errstate(invalid="ignore", divide="ignore"):
            beta: np.ndarray = np.where(ok, cov / np.where(ok, var, 1.0), 0.0)
        return beta
