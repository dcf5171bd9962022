"""Filter coefficients for the feature pipeline, designed once per input (never per chunk).

Both the streaming path and the offline reference take their coefficients from here, so the
two compute the same filter; what they differ in is how they run it (chunk by chunk with
carried state vs one whole-array call).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import signal  # type: ignore[import-untyped]  # scipy: no type stubs installed

from controller.lang.compiled import Band, InputSpec

HIGHPASS_ORDER = 4  # Butterworth order of the input high-pass
BANDPASS_ORDER = 4  # Butterworth order (per band edge) of iir-power and peak-to-peak prefilters
NOTCH_Q = 30.0  # quality factor of the line-noise notch (bandwidth = f0 / Q)


def highpass_sos(fs: float, cutoff_hz: float) -> np.ndarray:
    """Causal Butterworth high-pass as second-order sections."""
    if not 0.0 < cutoff_hz < fs / 2:
        raise ValueError(f"highpass {cutoff_hz} Hz must lie in (0, {fs / 2}) Hz (Nyquist at fs={fs} Hz)")
    sos: NDArray[np.float64] = signal.butter(HIGHPASS_ORDER, cutoff_hz, btype="highpass", fs=fs, output="sos")
    return sos


def notch_sos(fs: float, f0_hz: float) -> np.ndarray:
    """Causal IIR notch (scipy iirnotch) as second-order sections."""
    if not 0.0 < f0_hz < fs / 2:
        raise ValueError(f"notch {f0_hz} Hz must lie in (0, {fs / 2}) Hz (Nyquist at fs={fs} Hz)")
    b, a = signal.iirnotch(f0_hz, NOTCH_Q, fs=fs)
    sos: NDArray[np.float64] = signal.tf2sos(b, a)
    return sos


def bandpass_sos(fs: float, band: Band, *, what: str = "band") -> np.ndarray:
    """Causal Butterworth band-pass for ``band``; ``what`` names the band in errors."""
    check_band(band, fs, what=what, open_interval=True)
    sos: NDArray[np.float64] = signal.butter(BANDPASS_ORDER, [band.lo_hz, band.hi_hz], btype="bandpass", fs=fs,
                                             output="sos")
    return sos


def conditioning_sos(fs: float, spec: InputSpec) -> np.ndarray | None:
    """High-pass then notch of ``spec`` as one cascade, or None when the input asks for neither."""
    parts = []
    if spec.highpass_hz is not None:
        parts.append(highpass_sos(fs, spec.highpass_hz))
    if spec.notch_hz is not None:
        parts.append(notch_sos(fs, spec.notch_hz))
    return np.vstack(parts) if parts else None


def check_band(band: Band, fs: float, *, what: str, open_interval: bool = False) -> None:
    """Reject bands that are reversed or outside 0..Nyquist (strictly inside for IIR designs)."""
    nyq = fs / 2
    lo, hi = band.lo_hz, band.hi_hz
    ok = (0.0 < lo < hi < nyq) if open_interval else (0.0 <= lo < hi <= nyq)
    if not ok:
        bounds = f"0 < lo < hi < {nyq}" if open_interval else f"0 <= lo < hi <= {nyq}"
        raise ValueError(f"{what} [{lo}, {hi}] Hz is not valid at fs={fs} Hz: need {bounds} Hz")
