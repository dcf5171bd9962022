"""The modified Beer-Lambert law, forward (concentrations -> optical density) and back, with its own table.

    OD(lambda) = LN10 * (eps_HbO(lambda) * dHbO + eps_HbR(lambda) * dHbR) * d * ppf

with ``OD = -ln(I / I0)`` (natural log, as MNE's ``optical_density``), ``eps`` the molar extinction
coefficients in cm^-1 / (mol/L), concentrations in mol/L, ``d`` the source-detector distance in cm
and ``ppf`` the partial pathlength factor (6, MNE's default).

Extinction coefficients: S. Prahl, "Tabulated molar extinction coefficient for hemoglobin in
water", https://omlc.org/spectra/hemoglobin/summary.html (compiled from W. B. Gratzer and
N. Kollias), at the tabulated wavelengths themselves (no interpolation):

    760 nm: HbO2  586.0,  Hb 1548.52        850 nm: HbO2 1058.0,  Hb 691.32
    690 nm: HbO2  276.0,  Hb 2051.96        830 nm: HbO2  974.0,  Hb 693.04

MNE (``mne/data/extinction_coef.mat``, the same Prahl table) interpolates linearly between these
rows, so at these wavelengths the controller's numbers are identical to these. ``LN10`` is 2.303,
MNE's rounding of ln 10 (its 0.2303 x 1e3 / 100): with it, the controller's inversion returns the
simulator's concentrations exactly (ln 10 itself differs by 0.02 %).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LN10 = 2.303
# wavelength nm -> (HbO2, Hb) molar extinction, cm^-1 / (mol/L); Prahl (omlc.org), see above
EXTINCTION: dict[int, tuple[float, float]] = {
    690: (276.0, 2051.96),
    760: (586.0, 1548.52),
    830: (974.0, 693.04),
    850: (1058.0, 691.32),
}
DEFAULT_PPF = 6.0


def extinction(wavelengths: Sequence[float]) -> np.ndarray:
    """(n_wavelengths, 2) [eps_HbO, eps_HbR] in cm^-1 / (mol/L) for tabulated wavelengths."""
    rows = []
    for w in wavelengths:
        key = int(round(float(w)))
        if key not in EXTINCTION or abs(float(w) - key) > 1e-6:
            raise ValueError(f"no extinction coefficients for {w} nm; tabulated: {sorted(EXTINCTION)} nm")
        rows.append(EXTINCTION[key])
    return np.array(rows, dtype=float)


def od_coefficients(distance_mm: np.ndarray, wavelength: np.ndarray, ppf: float = DEFAULT_PPF) -> np.ndarray:
    """(n_columns, 2): OD per mol/L of [HbO, HbR] for each column's distance (mm) and wavelength (nm)."""
    eps = extinction(np.asarray(wavelength, dtype=float).tolist())
    return LN10 * eps * (np.asarray(distance_mm, dtype=float)[:, None] / 10.0) * ppf


def od_from_concentrations(hbo: np.ndarray, hbr: np.ndarray, distance_mm: np.ndarray, wavelength: np.ndarray,
                           ppf: float = DEFAULT_PPF) -> np.ndarray:
    """Optical density per column: ``hbo``/``hbr`` (n, n_columns) mol/L, distance (mm) and wavelength per column."""
    k = od_coefficients(distance_mm, wavelength, ppf)
    return hbo * k[:, 0] + hbr * k[:, 1]


def concentrations_from_od(od: np.ndarray, distance_mm: float, wavelengths: Sequence[float],
                           ppf: float = DEFAULT_PPF) -> np.ndarray:
    """One pair's OD (n, n_wavelengths) -> (n, 2) [dHbO, dHbR] in mol/L (least squares, like MNE's pinv)."""
    el = LN10 * extinction(wavelengths) * (distance_mm / 10.0) * ppf  # (n_wavelengths, 2)
    return np.asarray(od) @ np.linalg.pinv(el).T
