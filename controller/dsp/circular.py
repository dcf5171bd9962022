"""Circular statistics of phase angles (radians), as used to score phase-locked stimulation.

Angles wrap: the mean of 179 deg and -179 deg is 180 deg, not 0. Everything here goes through
unit vectors ``exp(i*angle)``. The spread is Mardia's circular standard deviation
``sqrt(-2 ln R)`` (R = mean resultant length), which equals the ordinary SD for small spreads
and grows without bound as the angles become uniform.
"""

from __future__ import annotations

import math

import numpy as np

TWO_PI = 2.0 * math.pi


def wrap_angle(a: np.ndarray | float) -> np.ndarray | float:
    """Angle(s) wrapped into [-pi, pi); a scalar in gives a float out."""
    w = (np.asarray(a, dtype=np.float64) + math.pi) % TWO_PI - math.pi
    return float(w) if w.ndim == 0 else w


def angle_diff(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray | float:
    """Signed difference ``a - b`` wrapped into [-pi, pi) (the phase error of ``a`` against ``b``)."""
    return wrap_angle(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))


def resultant_length(a: np.ndarray) -> float:
    """Mean resultant length R in [0, 1]: 1 = all angles equal, ~0 = spread uniformly. NaN if empty."""
    a = np.asarray(a, dtype=np.float64).ravel()
    if a.size == 0:
        return math.nan
    return float(abs(np.exp(1j * a).mean()))


def circ_mean(a: np.ndarray) -> float:
    """Circular mean direction in [-pi, pi]; NaN for no angles."""
    a = np.asarray(a, dtype=np.float64).ravel()
    if a.size == 0:
        return math.nan
    return float(np.angle(np.exp(1j * a).mean()))


def circ_std(a: np.ndarray) -> float:
    """Circular standard deviation ``sqrt(-2 ln R)`` in radians; inf when R == 0, NaN for no angles."""
    r = resultant_length(a)
    if math.isnan(r):
        return math.nan
    if r <= 0.0:
        return math.inf
    return math.sqrt(max(0.0, -2.0 * math.log(min(r, 1.0))))
