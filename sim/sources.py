"""Streaming signal sources for the EEG simulator, each with state kept across blocks.

Every source draws its random numbers one row per sample from its own generator and
filters them with ``sosfilt`` and a carried ``zi``, so the output does not depend on
how a stream is cut into blocks. Each source also knows its expected one-sided power
spectral density, which lets the generator calibrate band powers analytically instead
of by trial and error.
"""

from __future__ import annotations

import numpy as np
from scipy import signal


def _response_power(sos: np.ndarray, freqs: np.ndarray, fs: float) -> np.ndarray:
    """|H(f)|^2 of a digital ``sos`` filter at ``freqs`` (Hz)."""
    _, h = signal.sosfreqz(sos, worN=np.asarray(freqs, dtype=float), fs=fs)
    return np.abs(h) ** 2


def white_psd(var: float, fs: float) -> float:
    """One-sided PSD (per Hz) of white noise of variance ``var`` sampled at ``fs``."""
    return 2.0 * var / fs


def pink_sos(fs: float, f_lo: float = 0.5, f_knee: float = 40.0) -> np.ndarray:
    """A filter that turns unit white noise into background EEG: PSD ~ 1/f from f_lo to f_knee, ~1/f^2 above.

    Alternating real poles and zeros, two pairs per decade, give the -10 dB/decade
    slope; they sit at physical frequencies, so the spectrum is the same at any rate.
    Below ``f_lo`` the spectrum is flat (no drift); a first-order low-pass at
    ``f_knee`` steepens it above, as in real EEG. Normalised so PSD(10 Hz) = 1/10 per Hz.
    """
    f_knee = min(f_knee, 0.4 * fs)
    if f_knee <= f_lo * 2:
        raise ValueError(f"background noise needs a rate well above {f_lo} Hz, got {fs} Hz")
    n_pairs = int(np.ceil(2 * np.log10(f_knee / f_lo)))
    poles_hz = f_lo * 10.0 ** (np.arange(n_pairs) / 2.0)
    zeros_hz = poles_hz * 10.0**0.25
    poles_hz = np.r_[poles_hz, f_knee]
    z, p, k = signal.bilinear_zpk(-2 * np.pi * zeros_hz, -2 * np.pi * poles_hz, 1.0, fs)
    sos = signal.zpk2sos(z, p, k)
    ref = 10.0 if 10.0 < 0.2 * fs else f_lo * 4
    gain2 = (1.0 / ref) / (white_psd(1.0, fs) * _response_power(sos, [ref], fs)[0])
    sos = sos.copy()
    sos[0, :3] *= np.sqrt(gain2)
    return sos


def bandpass_sos(lo: float, hi: float, fs: float, order: int = 2) -> np.ndarray:
    """Butterworth band-pass scaled so unit white noise comes out with unit variance."""
    if not 0 < lo < hi < fs / 2:
        raise ValueError(f"band {lo}-{hi} Hz is not inside (0, {fs / 2}) Hz at rate {fs} Hz")
    sos = signal.butter(order, [lo, hi], btype="bandpass", fs=fs, output="sos")
    grid = np.linspace(0.0, fs / 2, 20001)
    var = np.trapezoid(white_psd(1.0, fs) * _response_power(sos, grid, fs), grid)
    sos = sos.copy()
    sos[0, :3] /= np.sqrt(var)
    return sos


def gamma_kernel_sos(tau_s: float, fs: float) -> np.ndarray:
    """IIR filter whose impulse response is (t/tau) exp(1 - t/tau): a smooth bump peaking at 1 at t = tau.

    Z-transform of k r^k is r z^-1 / (1 - r z^-1)^2, so it is one exact second-order
    section: a blink or an EMG envelope from a train of impulses at any rate.
    """
    r = np.exp(-1.0 / (tau_s * fs))
    scale = np.e / (tau_s * fs)  # k r^k * e/(tau fs) = (t/tau) e^{-t/tau} e
    return np.array([[0.0, r * scale, 0.0, 1.0, -2.0 * r, r * r]])


class FilteredNoise:
    """``n_cols`` independent white-noise columns through one IIR filter."""

    def __init__(self, sos: np.ndarray, n_cols: int, fs: float, rng: np.random.Generator) -> None:
        self.sos = np.asarray(sos, dtype=float)
        self.n_cols = n_cols
        self.fs = fs
        self._rng = rng
        self._zi = np.zeros((self.sos.shape[0], 2, n_cols))

    def draw(self, n: int) -> np.ndarray:
        """Next ``n`` samples, shape (n, n_cols)."""
        white = self._rng.standard_normal((n, self.n_cols))
        out, self._zi = signal.sosfilt(self.sos, white, axis=0, zi=self._zi)
        return out

    def psd(self, freqs: np.ndarray) -> np.ndarray:
        """Expected one-sided PSD of one column at ``freqs`` (per Hz, unit gain)."""
        return white_psd(1.0, self.fs) * _response_power(self.sos, freqs, self.fs)


class ImpulseBursts:
    """Random events (Bernoulli per sample, ``rate_hz`` on average) shaped by a kernel.

    Each event has an amplitude drawn uniformly in [amp_lo, amp_hi]; the kernel is a
    second-order section such as :func:`gamma_kernel_sos`. Used for blinks (the
    waveform itself) and for EMG (the envelope of a burst).
    """

    def __init__(
        self,
        kernel_sos: np.ndarray,
        rate_hz: float,
        amp_lo: float,
        amp_hi: float,
        n_cols: int,
        fs: float,
        rng: np.random.Generator,
        centre: bool = True,
    ) -> None:
        self.sos = np.asarray(kernel_sos, dtype=float)
        self.p = min(rate_hz / fs, 1.0)
        self.amp_lo, self.amp_hi = amp_lo, amp_hi
        self.n_cols = n_cols
        self.fs = fs
        self._rng = rng
        self._zi = np.zeros((self.sos.shape[0], 2, n_cols))
        h = signal.sosfilt(self.sos, np.r_[1.0, np.zeros(int(20 * fs))])  # impulse response, ample length
        self.kernel_sum = float(h.sum())
        self.kernel_energy = float((h**2).sum())
        self.mean_amp = 0.5 * (amp_lo + amp_hi)
        self.mean_sq_amp = (amp_lo**2 + amp_lo * amp_hi + amp_hi**2) / 3.0
        self.offset = self.mean() if centre else 0.0

    def draw(self, n: int) -> np.ndarray:
        """Next ``n`` samples, shape (n, n_cols), minus the long-run mean when centred."""
        u = self._rng.random((n, self.n_cols, 2))
        impulses = np.where(u[..., 0] < self.p, self.amp_lo + (self.amp_hi - self.amp_lo) * u[..., 1], 0.0)
        out, self._zi = signal.sosfilt(self.sos, impulses, axis=0, zi=self._zi)
        return out - self.offset

    def mean(self) -> float:
        """Long-run mean of the uncentred waveform."""
        return self.p * self.mean_amp * self.kernel_sum

    def mean_square(self) -> float:
        """Long-run mean of the squared uncentred waveform."""
        var_in = self.p * self.mean_sq_amp - (self.p * self.mean_amp) ** 2
        return var_in * self.kernel_energy + self.mean() ** 2

    def psd(self, freqs: np.ndarray) -> np.ndarray:
        """Expected one-sided PSD (excluding DC) of one column, per Hz."""
        var_in = self.p * self.mean_sq_amp - (self.p * self.mean_amp) ** 2
        return white_psd(var_in, self.fs) * _response_power(self.sos, freqs, self.fs)


class LineNoise:
    """Mains interference: cosine and sine columns at ``freq`` Hz, phase-locked to the sample count."""

    n_cols = 2

    def __init__(self, freq: float, fs: float) -> None:
        self.freq = freq
        self.fs = fs
        self._k = 0  # samples produced so far

    def draw(self, n: int) -> np.ndarray:
        """Next ``n`` samples, shape (n, 2): cos and sin of the mains phase."""
        k = self._k + np.arange(n, dtype=np.int64)
        self._k += n
        cycles = (k * (self.freq / self.fs)) % 1.0
        phase = 2.0 * np.pi * cycles
        return np.column_stack([np.cos(phase), np.sin(phase)])
