"""Offline reference of the online fNIRS chain: the same causal definitions, computed on a whole array.

``controller.dsp.nirs.NirsFrontEnd`` runs chunk by chunk with carried state; this module computes
what it should output for a whole recording, written independently: whole-array filters, a
plain per-sample loop for the recursive regression, a two-pass (mean-centred) correlation per
window and a per-sample loop for the motion hold. Only definitions are shared: the layout, the
extinction table and the filter designs. Tests compare the two; reports may plot it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal  # type: ignore[import-untyped]  # scipy: no type stubs installed

from controller.dsp.nirs.extinction import absorption_coefficients
from controller.dsp.nirs.front_end import haemoglobin_highpass_sos, haemoglobin_lowpass_sos
from controller.dsp.nirs.layout import NirsLayout
from controller.dsp.nirs.quality import cardiac_sos


def optical_density_offline(intensity: np.ndarray, fs: float, *, reference: np.ndarray | None = None,
                            reference_s: float = 10.0) -> np.ndarray:
    """``(n, c)`` intensities -> OD against ``reference`` (per column) or the causal learnt one:
    at sample t the mean of samples 0..min(t, N-1), N = round(reference_s * fs). Assumes clean data."""
    v = np.abs(np.asarray(intensity, dtype=np.float64))
    if reference is not None:
        ref = np.broadcast_to(np.asarray(reference, dtype=np.float64), v.shape)
    else:
        n_ref = max(1, round(reference_s * fs))
        running = np.cumsum(v[:n_ref], axis=0) / np.arange(1, min(n_ref, len(v)) + 1)[:, None]
        ref = np.concatenate([running, np.repeat(running[-1:], max(0, len(v) - n_ref), axis=0)], axis=0)
    od: np.ndarray = -np.log(v / ref)
    return od


def mbll_offline(od: np.ndarray, layout: NirsLayout, ppf: float | Sequence[float] = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """``od`` ``(n, 2, n_pairs)`` (sample, wavelength, pair) -> (HbO, HbR), each ``(n, n_pairs)`` in mol/L."""
    coef = absorption_coefficients(layout.wavelengths)
    ppf_col = np.broadcast_to(np.asarray(ppf, dtype=np.float64), (2,))[:, None]
    hbo = np.empty((od.shape[0], len(layout.pairs)))
    hbr = np.empty_like(hbo)
    for i, pair in enumerate(layout.pairs):
        if pair.distance_m is None:
            raise ValueError(f"pair {pair.name}: unknown distance")
        inv = np.linalg.inv(coef * pair.distance_m * ppf_col)
        conc = od[:, :, i] @ inv.T * 1e-3
        hbo[:, i], hbr[:, i] = conc[:, 0], conc[:, 1]
    return hbo, hbr


def sci_offline(od: np.ndarray, fs: float, window_s: float = 5.0) -> np.ndarray:
    """``od`` ``(n, 2, n_pairs)`` -> causal SCI ``(n, n_pairs)``: Pearson r of the cardiac band-passed
    wavelengths over the window ending at each sample (the first ones shorter; 0 when undefined)."""
    n, _, p = od.shape
    w = max(2, round(window_s * fs))
    filt = signal.sosfilt(cardiac_sos(fs), od, axis=0)
    out = np.zeros((n, p))
    for i in range(p):
        a, b = filt[:, 0, i], filt[:, 1, i]
        for t in range(1, min(w - 1, n)):  # growing windows
            out[t, i] = _pearson(a[: t + 1], b[: t + 1])
        if n >= w:
            wa = sliding_window_view(a, w)
            wb = sliding_window_view(b, w)
            ca = wa - wa.mean(axis=1, keepdims=True)
            cb = wb - wb.mean(axis=1, keepdims=True)
            den = np.sqrt((ca * ca).sum(axis=1) * (cb * cb).sum(axis=1))
            with np.errstate(invalid="ignore", divide="ignore"):
                out[w - 1:, i] = np.where(den > 0, (ca * cb).sum(axis=1) / den, 0.0)
    return np.clip(out, -1.0, 1.0)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    ca, cb = a - a.mean(), b - b.mean()
    den = float(np.sqrt(np.dot(ca, ca) * np.dot(cb, cb)))
    return float(np.dot(ca, cb)) / den if den > 0 else 0.0


def motion_offline(od: np.ndarray, fs: float, *, threshold_od: float = 0.1, lag_s: float = 0.5,
                   hold_s: float = 2.0) -> np.ndarray:
    """``od`` ``(n, 2, n_pairs)`` -> 0/1 ``(n, n_pairs)``: 1 from an OD change > threshold within the lag
    (either wavelength) until ``hold`` samples after the last one."""
    n, _, p = od.shape
    lag = max(1, round(lag_s * fs))
    hold = max(0, round(hold_s * fs))
    out = np.zeros((n, p))
    for i in range(p):
        last = None
        for t in range(n):
            if t >= lag and np.any(np.abs(od[t, :, i] - od[t - lag, :, i]) > threshold_od):
                last = t
            out[t, i] = 1.0 if last is not None and t - last <= hold else 0.0
    return out


def rls_offline(y: np.ndarray, x: np.ndarray, fs: float, memory_s: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``y``, regressors ``x`` ``(n, m)`` -> (residual y - beta x, beta used), beta a priori from
    exponentially weighted sums with intercept, 0 while the weighted variance of x is ~0."""
    lam = np.exp(-1.0 / (memory_s * fs))
    n, m = y.shape
    sw = 0.0
    sx, sy, sxy, sxx = (np.zeros(m) for _ in range(4))
    res = np.empty_like(y)
    betas = np.empty_like(y)
    for t in range(n):
        var = sw * sxx - sx * sx
        beta = np.zeros(m)
        ok = var > 1e-12 * sw * sxx
        beta[ok] = (sw * sxy[ok] - sx[ok] * sy[ok]) / var[ok]
        betas[t] = beta
        res[t] = y[t] - beta * x[t]
        sw = lam * sw + 1.0
        sx = lam * sx + x[t]
        sy = lam * sy + y[t]
        sxy = lam * sxy + x[t] * y[t]
        sxx = lam * sxx + x[t] * x[t]
    return res, betas


def haemoglobin_offline(
    x: np.ndarray,
    layout: NirsLayout,
    fs: float,
    *,
    measure: str = "intensity",
    ppf: float | Sequence[float] = 6.0,
    reference_s: float = 10.0,
    reference: np.ndarray | None = None,
    short_regression: bool = True,
    short_memory_s: float = 60.0,
    lowpass_hz: float | None = 0.5,
    highpass_hz: float | None = None,
    sci_window_s: float = 5.0,
    jump_od: float = 0.1,
    jump_lag_s: float = 0.5,
    jump_hold_s: float = 2.0,
) -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray]:
    """The NirsFrontEnd chain on a whole ``(n, n_stream_columns)`` array -> (labels, types, ``(n, out)``)."""
    cols = layout.columns()  # (2, p)
    data = np.asarray(x, dtype=np.float64)
    picked = data[:, cols.ravel()]  # (n, 2p)
    if measure == "od":
        od_flat = picked
    else:
        ref = None if reference is None else np.asarray(reference, dtype=np.float64)[cols.ravel()]
        od_flat = optical_density_offline(picked, fs, reference=ref, reference_s=reference_s)
    n, p = len(data), len(layout.pairs)
    od = od_flat.reshape(n, 2, p)
    sci = sci_offline(od, fs, sci_window_s)
    motion = motion_offline(od, fs, threshold_od=jump_od, lag_s=jump_lag_s, hold_s=jump_hold_s)
    hbo, hbr = mbll_offline(od, layout, ppf)
    if lowpass_hz is not None:
        sos = haemoglobin_lowpass_sos(fs, lowpass_hz)
        hbo = signal.sosfilt(sos, hbo, axis=0)
        hbr = signal.sosfilt(sos, hbr, axis=0)
    short_hbo, short_hbr = hbo.copy(), hbr.copy()
    if short_regression:
        pairs = [i for i, pr in enumerate(layout.pairs) if not pr.short and layout.nearest_short(pr) is not None]
        if pairs:
            partners = [layout.index(layout.nearest_short(layout.pairs[i]).name) for i in pairs]  # type: ignore[union-attr]
            y = np.concatenate([hbo[:, pairs], hbr[:, pairs]], axis=1)
            xr = np.concatenate([hbo[:, partners], hbr[:, partners]], axis=1)
            res, _ = rls_offline(y, xr, fs, short_memory_s)
            hbo[:, pairs], hbr[:, pairs] = res[:, : len(pairs)], res[:, len(pairs):]
    if highpass_hz is not None:
        sos = haemoglobin_highpass_sos(fs, highpass_hz)
        longs_ = [i for i, pr in enumerate(layout.pairs) if not pr.short]
        hbo[:, longs_] = signal.sosfilt(sos, hbo[:, longs_], axis=0)
        hbr[:, longs_] = signal.sosfilt(sos, hbr[:, longs_], axis=0)
    labels: list[str] = []
    types: list[str] = []
    columns: list[np.ndarray] = []
    longs = [i for i, pr in enumerate(layout.pairs) if not pr.short]
    for i in longs:
        labels += [f"{layout.pairs[i].name} hbo", f"{layout.pairs[i].name} hbr"]
        types += ["hbo", "hbr"]
        columns += [hbo[:, i], hbr[:, i]]
    for i in longs:
        labels += [f"{layout.pairs[i].name} sci", f"{layout.pairs[i].name} motion"]
        types += ["sci", "motion"]
        columns += [sci[:, i], motion[:, i]]
    for i, pr in enumerate(layout.pairs):
        if pr.short:
            labels += [f"{pr.name} hbo", f"{pr.name} hbr"]
            types += ["hbo_short", "hbr_short"]
            columns += [short_hbo[:, i], short_hbr[:, i]]
    return tuple(labels), tuple(types), np.column_stack(columns) if columns else np.empty((n, 0))
