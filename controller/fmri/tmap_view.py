"""The t-map as an operator sees it: axial slices side by side, the EPI in grey, |t| over a threshold in colour.

Why a plain RGB array: any view can show it (a Qt ``ImageItem``, a PNG in the report or the bench, a
web page) without knowing NIfTI orientation or colour maps, and building it costs a few milliseconds, so
it can follow the map every TR. Positive t is red to yellow, negative blue to cyan, from ``threshold``
(transparent below) to ``t_max`` (saturated above). Slices are the grid's k (axial for a transverse
acquisition), shown with i to the right and j upwards; the caller states the orientation it needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mosaic(volume: np.ndarray, slices: Sequence[int] | None = None, columns: int = 6, fill: float = np.nan
           ) -> np.ndarray:
    """Slices ``volume[:, :, k]`` (default: all) tiled row by row into one 2D image (j upwards, i to the right)."""
    v = np.asarray(volume)
    if v.ndim != 3:
        raise ValueError(f"mosaic needs a 3D volume, got shape {v.shape}")
    ks = list(range(v.shape[2])) if slices is None else [int(k) for k in slices]
    if not ks or min(ks) < 0 or max(ks) >= v.shape[2]:
        raise ValueError(f"slices must be within 0..{v.shape[2] - 1}, got {ks}")
    columns = max(1, min(int(columns), len(ks)))
    rows = -(-len(ks) // columns)
    ni, nj = v.shape[:2]
    out = np.full((rows * nj, columns * ni), fill, dtype=np.float64)
    for n, k in enumerate(ks):
        r, c = divmod(n, columns)
        out[r * nj:(r + 1) * nj, c * ni:(c + 1) * ni] = v[:, ::-1, k].T  # j upwards
    return out


def overlay(background: np.ndarray, t: np.ndarray, threshold: float = 3.0, t_max: float = 8.0) -> np.ndarray:
    """RGB (H, W, 3) uint8 of a background mosaic (grey, 1st-99th percentile) with the t mosaic over it."""
    bg = np.asarray(background, dtype=np.float64)
    tt = np.asarray(t, dtype=np.float64)
    if bg.shape != tt.shape:
        raise ValueError(f"background {bg.shape} and t {tt.shape} mosaics differ in shape")
    if not 0 < threshold < t_max:
        raise ValueError(f"need 0 < threshold < t_max, got {threshold} and {t_max}")
    finite = bg[np.isfinite(bg)]
    lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    grey = np.clip((np.nan_to_num(bg, nan=lo) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    a = np.nan_to_num(np.abs(tt), nan=0.0)
    level = np.clip((a - threshold) / (t_max - threshold), 0.0, 1.0)
    show = a >= threshold
    pos, neg = show & (tt > 0), show & (tt < 0)
    rgb[pos] = np.stack([np.ones(pos.sum()), level[pos], np.zeros(pos.sum())], axis=1)  # red -> yellow
    rgb[neg] = np.stack([np.zeros(neg.sum()), level[neg], np.ones(neg.sum())], axis=1)  # blue -> cyan
    return np.round(255.0 * rgb).astype(np.uint8)
