"""Modified Beer-Lambert law: optical density at two wavelengths -> HbO and HbR (mol/L) per pair.

Per pair, ``OD = (abs_coef * distance * ppf) @ [HbO, HbR]`` with ``abs_coef`` the 2x2 table of
``extinction.absorption_coefficients`` (rows: wavelengths, columns: HbO2, Hb) and ``ppf`` the
partial pathlength factor per wavelength (row). It is inverted as MNE 1.13's
``beer_lambert_law`` does: the pseudo-inverse of that matrix, applied to the OD, times 1e-3
(mol/L). MNE's default ppf is 6.0 for both wavelengths. The inverse is computed once per
pair at construction; per chunk it is one stacked (n_pairs, 2, 2) @ (n_pairs, 2, n) product.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .extinction import absorption_coefficients

DEFAULT_PPF = 6.0  # MNE's beer_lambert_law default (the same for every wavelength)


def mbll_matrices(wavelengths_nm: tuple[float, float], distances_m: Sequence[float | None],
                  ppf: float | Sequence[float] = DEFAULT_PPF, *, names: Sequence[str] | None = None) -> np.ndarray:
    """``(n_pairs, 2, 2)``: per pair, the matrix taking [OD_wl0, OD_wl1] to [HbO, HbR] in mol/L.

    A pair of unknown (None) or non-positive distance cannot be converted: ValueError naming it
    (MNE would output zeros with a warning; online a silent zero is worse than a refusal).
    """
    ppf_arr = np.asarray(ppf, dtype=np.float64)
    if ppf_arr.ndim == 0:
        ppf_col = np.full((2, 1), float(ppf_arr))
    elif ppf_arr.shape == (2,):
        ppf_col = ppf_arr[:, None]
    else:
        raise ValueError(f"ppf must be one number or one per wavelength (2), got shape {ppf_arr.shape}")
    if not np.all(np.isfinite(ppf_col) & (ppf_col > 0)):
        raise ValueError(f"ppf must be > 0, got {ppf_arr.tolist()}")
    abs_coef = absorption_coefficients(wavelengths_nm)
    labels = list(names) if names is not None else [f"pair {i}" for i in range(len(distances_m))]
    bad = [f"{name} ({d})" for name, d in zip(labels, distances_m) if d is None or not d > 0]
    if bad:
        raise ValueError(
            "Beer-Lambert needs each pair's source-detector distance; unknown or zero for "
            f"{', '.join(bad)}: give optode positions or distance_m= to NirsLayout.from_labels")
    dist = np.asarray(distances_m, dtype=np.float64)
    el = abs_coef[None, :, :] * dist[:, None, None] * ppf_col[None, :, :]  # MNE: abs_coef * distance * ppf
    inv: np.ndarray = np.linalg.pinv(el)  # stacked over pairs
    return inv


class BeerLambert:
    """OD of every pair at both wavelengths -> [HbO, HbR] per pair, stateless."""

    __slots__ = ("_m",)

    def __init__(self, matrices: np.ndarray) -> None:
        self._m = np.ascontiguousarray(matrices, dtype=np.float64)
        if self._m.ndim != 3 or self._m.shape[1:] != (2, 2):
            raise ValueError(f"matrices must have shape (n_pairs, 2, 2), got {self._m.shape}")

    @property
    def n_pairs(self) -> int:
        return int(self._m.shape[0])

    def process(self, od: np.ndarray) -> np.ndarray:
        """``od`` ``(2, n_pairs, n)`` (wavelength, pair, sample) -> ``(2, n_pairs, n)`` ([HbO, HbR], pair,
        sample) in mol/L."""
        hb: np.ndarray = np.matmul(self._m, od.transpose(1, 0, 2)) * 1e-3  # (n_pairs, 2, n), as MNE: iEL @ od * 1e-3
        return hb.transpose(1, 0, 2)
