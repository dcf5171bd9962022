"""Molar extinction coefficients of HbO2 and Hb, exactly as MNE's ``beer_lambert_law`` uses them.

The table is the one MNE ships (``mne/data/extinction_coef.mat``: Prahl's compilation from
omlc.org, cm^-1/M per nm in 2 nm steps). Reading MNE's own file, interpolating it linearly
between table rows and rounding the wavelength to whole nm as MNE does, keeps our
concentrations equal to an offline MNE analysis of the same recording. The file is located
without importing mne (``importlib.util.find_spec``), so this costs no MNE import on the hot path.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
from scipy.io import loadmat  # type: ignore[import-untyped]  # scipy: no type stubs installed

# MNE multiplies the table by this: ln(10) (the table is decadic, optical density natural) with
# the cm -> m and M -> mM conversions folded in; its 1e-3 after the inverse returns mol/L.
ABSORPTION_FACTOR = 0.2303


@functools.lru_cache(maxsize=1)
def _table() -> np.ndarray:
    spec = importlib.util.find_spec("mne")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the extinction coefficients come from MNE's data folder, but mne is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "extinction_coef.mat"
    table = np.asarray(loadmat(str(path))["extinct_coef"], dtype=np.float64)  # columns: nm, HbO2, Hb
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=16)
def _coefficients(wavelengths_nm: tuple[int, ...]) -> np.ndarray:
    table = _table()
    lo, hi = table[0, 0], table[-1, 0]
    out = np.empty((len(wavelengths_nm), 2))
    for i, wl in enumerate(wavelengths_nm):
        if not lo <= wl <= hi:
            raise ValueError(f"no extinction coefficient at {wl} nm: MNE's table covers {lo:g}-{hi:g} nm")
        out[i, 0] = np.interp(wl, table[:, 0], table[:, 1])  # HbO2
        out[i, 1] = np.interp(wl, table[:, 0], table[:, 2])  # Hb
    out.setflags(write=False)
    return out


def molar_extinction(wavelengths_nm: tuple[float, ...]) -> np.ndarray:
    """``(n_wavelengths, 2)`` [HbO2, Hb] in cm^-1/M at each wavelength (rounded to whole nm, as MNE).

    Read-only and cached per wavelength tuple.
    """
    return _coefficients(tuple(round(float(w)) for w in wavelengths_nm))


def absorption_coefficients(wavelengths_nm: tuple[float, ...]) -> np.ndarray:
    """MNE's ``abs_coef``: ``molar_extinction * 0.2303``, ``(n_wavelengths, 2)`` [HbO2, Hb]."""
    coef: np.ndarray = molar_extinction(wavelengths_nm) * ABSORPTION_FACTOR
    return coef
