"""Vectorised streaming EEG generator: sources mixed into channels, state kept across blocks.

Sources (columns of a source matrix, mixed into channels by one source x channel matrix):
- spatially smoothed 1/f background (1/f^2 above 40 Hz), one per channel, plus a white
  amplifier noise floor;
- posterior alpha (O1/O2), frontocentral theta (FCz) and beta (Cz), SMR at C3/C4;
- eye blinks in front of Fp1/Fp2, decaying with distance;
- EMG bursts over the temporal muscles (FT7/FT8), broadband 20-200 Hz;
- mains interference at 50 or 60 Hz;
- optionally, scheduled seizures (sim/seizure_source.py): spike-and-wave discharges added per
  channel, and the post-ictal suppression of the cerebral sources.

The theta and beta gains are set from the participant's theta/beta ratio so that the
*expected* Welch power ratio 4-8 Hz / 13-21 Hz at the reference channel (Cz) equals
it: every source knows its spectrum, so the band powers of everything else at Cz are
computed analytically and the two gains solved for (see :meth:`EegGenerator.set_tbr`).
Output is in volts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal

from sim.montage import Montage, make_montage
from sim.seizure_source import BACKGROUND_BAND, SeizureSchedule, SeizureSource
from sim.sources import (
    FilteredNoise,
    ImpulseBursts,
    LineNoise,
    bandpass_sos,
    gamma_kernel_sos,
    pink_sos,
)

THETA_BAND = (4.0, 8.0)
BETA_BAND = (13.0, 21.0)
UV = 1e-6  # volts per microvolt


@dataclass(frozen=True)
class EegConfig:
    """Amplitudes (microvolts) and rates of the simulated sources; defaults look like awake EEG."""

    pink_uv2: float = 10.0  # background PSD = pink_uv2 / f  (uV^2/Hz), at every channel
    background_spread_m: float = 0.02  # spatial smoothing of the background
    amplifier_uv2: float = 0.005  # white amplifier noise floor (uV^2/Hz), independent per channel
    alpha_uv: float = 8.0  # RMS of alpha at O1 / O2
    smr_uv: float = 2.5  # RMS of SMR at C3 / C4
    theta_beta_uv2: float = 20.0  # geometric mean of theta- and beta-band power at Cz (uV^2)
    blink_rate_hz: float = 0.3  # a few per 10 s
    blink_uv: tuple[float, float] = (100.0, 200.0)  # peak at Fp1
    blink_decay_m: float = 0.04  # e-folding distance of a blink from Fp1
    emg_rate_hz: float = 1.0 / 15.0  # bursts per second per side
    emg_uv: tuple[float, float] = (20.0, 60.0)  # RMS at the burst peak, FT7 / FT8
    emg_tau_s: float = 0.25  # burst envelope rise time (lasts ~4x this)
    line_uv: tuple[float, float] = (2.0, 8.0)  # per-channel mains amplitude
    gain_tau_s: float = 0.25  # smoothing of theta/beta gain changes
    tbr_limits: tuple[float, float] = (0.25, 12.0)  # clip requested ratios to this range


def _gauss_weights(pos: np.ndarray, centre: np.ndarray, anchor: np.ndarray, spread: float) -> np.ndarray:
    """Gaussian fall-off with distance from ``centre``, scaled to 1 at ``anchor``."""
    d2 = ((pos - centre) ** 2).sum(axis=1)
    d2_anchor = float(((anchor - centre) ** 2).sum())
    return np.exp(-(d2 - d2_anchor) / (2 * spread**2))


def _band_power(psd: np.ndarray, freqs: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Integral of ``psd`` (n_freqs, ...) over ``band``."""
    sel = (freqs >= band[0]) & (freqs <= band[1])
    return np.trapezoid(psd[sel], freqs[sel], axis=0)


class EegGenerator:
    """Streaming multichannel EEG in volts; call :meth:`generate` with any block size."""

    def __init__(
        self,
        channels: int | Sequence[str] | Montage = 64,
        rate: float = 500.0,
        seed: int = 0,
        line_freq: float = 50.0,
        tbr: float = 3.0,
        config: EegConfig | None = None,
        reference: str = "Cz",
        seizures: SeizureSchedule | None = None,
    ) -> None:
        if rate < 60.0:
            raise ValueError(f"EEG rate must be >= 60 Hz to hold the beta band and EMG, got {rate} Hz")
        self.montage = channels if isinstance(channels, Montage) else make_montage(channels)
        self.rate = float(rate)
        self.config = cfg = config or EegConfig()
        pos = self.montage.pos3d
        fs = self.rate
        n_ch = len(self.montage.labels)
        rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(10)]
        at = self.montage.position_of
        self._blocks: list[tuple[str, object, np.ndarray]] = []  # (name, source, mixing rows)

        # background: independent pink noise per channel, smoothed over space
        d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(axis=2)
        smooth = np.exp(-d2 / (2 * cfg.background_spread_m**2))
        smooth /= np.sqrt((smooth**2).sum(axis=0, keepdims=True))  # unit power per channel
        pink = FilteredNoise(pink_sos(fs), n_ch, fs, rngs[0])
        self._add("background", pink, np.sqrt(cfg.pink_uv2) * smooth)
        floor = FilteredNoise(np.array([[1.0, 0, 0, 1.0, 0, 0]]), n_ch, fs, rngs[9])
        self._add("amplifier", floor, np.sqrt(cfg.amplifier_uv2 * fs / 2.0) * np.eye(n_ch))

        alpha = FilteredNoise(bandpass_sos(8.5, 11.5, fs), 2, fs, rngs[1])
        alpha_w = np.stack([_gauss_weights(pos, at(s), at(s), 0.045) for s in ("O1", "O2")])
        self._add("alpha", alpha, cfg.alpha_uv * alpha_w)

        smr = FilteredNoise(bandpass_sos(12.5, 14.5, fs), 2, fs, rngs[2])
        smr_w = np.stack([_gauss_weights(pos, at(s), at(s), 0.03) for s in ("C3", "C4")])
        self._add("smr", smr, cfg.smr_uv * smr_w)

        # blinks: a source in front of and below Fpz, scaled to 1 at Fp1
        eye = at("Fpz") + np.array([0.0, 0.02, -0.02])
        dist = np.linalg.norm(pos - eye, axis=1)
        blink_w = np.exp(-(dist - np.linalg.norm(at("Fp1") - eye)) / cfg.blink_decay_m)
        blink = ImpulseBursts(gamma_kernel_sos(0.08, fs), cfg.blink_rate_hz, *cfg.blink_uv, 1, fs, rngs[3])
        self._add("blink", blink, blink_w[None, :])

        # EMG: broadband noise modulated by burst envelopes over each temporal muscle
        self._emg_noise = FilteredNoise(bandpass_sos(20.0, min(200.0, 0.45 * fs), fs, order=4), 2, fs, rngs[4])
        self._emg_env = ImpulseBursts(
            gamma_kernel_sos(cfg.emg_tau_s, fs), cfg.emg_rate_hz, *cfg.emg_uv, 2, fs, rngs[5], centre=False
        )
        self._emg_w = np.stack([_gauss_weights(pos, at(s), at(s), 0.04) for s in ("FT7", "FT8")])

        # mains: per-channel amplitude and phase, as cos/sin columns
        self._line = LineNoise(line_freq, fs) if 0 < line_freq < fs / 2 else None
        amp = rngs[6].uniform(*cfg.line_uv, n_ch)
        ph = rngs[6].uniform(0, 2 * np.pi, n_ch)
        self._line_w = np.stack([amp * np.cos(ph), -amp * np.sin(ph)])

        # theta and beta: unit-gain mixing rows; gains set from the ratio
        self._theta = FilteredNoise(bandpass_sos(4.5, 7.5, fs), 1, fs, rngs[7])
        self._beta = FilteredNoise(bandpass_sos(14.0, 20.0, fs), 1, fs, rngs[8])
        self._theta_w = _gauss_weights(pos, at("FCz"), at("FCz"), 0.05)
        self._beta_w = _gauss_weights(pos, at("Cz"), at("Cz"), 0.05)

        rows = [m for _, _, m in self._blocks] + [self._emg_w, self._line_w, self._theta_w, self._beta_w]
        self._mix = np.vstack(rows)  # (n_sources, n_channels), microvolts per unit source
        names = [name for name, _, _ in self._blocks] + ["emg", "line", "theta", "beta"]
        widths = [len(m) for _, _, m in self._blocks] + [2, 2, 1, 1]
        brain = {"background", "alpha", "smr", "theta", "beta"}  # what post-ictal suppression reduces
        self._cerebral = np.concatenate([np.full(w, name in brain) for name, w in zip(names, widths, strict=True)])
        self.reference = self._reference_index(reference)
        self._calibrate()
        self._gain: np.ndarray | None = None  # smoothed (theta, beta) gains, set on the first block
        self._a = float(np.exp(-1.0 / (cfg.gain_tau_s * fs)))
        self.set_tbr(tbr)
        self.samples = 0
        self.seizures: SeizureSource | None = None
        if seizures is not None:  # amplitudes relative to the background the detectors see
            background_uv = np.sqrt(self.expected_band_power(BACKGROUND_BAND))
            self.seizures = seizures.source(self.montage, self.rate, background_uv)

    # ---- construction helpers -------------------------------------------------
    def _add(self, name: str, source: object, mixing: np.ndarray) -> None:
        self._blocks.append((name, source, np.atleast_2d(mixing)))

    def _reference_index(self, label: str) -> int:
        try:
            return self.montage.index(label)
        except KeyError:  # nearest channel to where the label would be
            target = self.montage.position_of(label)
            return int(np.argmin(np.linalg.norm(self.montage.pos3d - target, axis=1)))

    def _calibrate(self) -> None:
        """Band powers at the reference channel of everything but theta/beta, and of unit theta/beta."""
        freqs = np.linspace(0.5, 30.0, 5901)
        ref = self.reference
        psd = self.background_psd(freqs)[:, ref]
        unit = {
            "theta": self._theta.psd(freqs) * self._theta_w[ref] ** 2,
            "beta": self._beta.psd(freqs) * self._beta_w[ref] ** 2,
        }
        # a[i, j] = power of unit source j in band i
        self._a_matrix = np.array(
            [[_band_power(unit[s], freqs, band) for s in ("theta", "beta")] for band in (THETA_BAND, BETA_BAND)]
        )
        self._bg_power = np.array([_band_power(psd, freqs, band) for band in (THETA_BAND, BETA_BAND)])

    def background_psd(self, freqs: np.ndarray) -> np.ndarray:
        """Expected one-sided PSD (uV^2/Hz) of everything except theta, beta and mains, shape (n_freqs, n_ch)."""
        freqs = np.asarray(freqs, dtype=float)
        total = np.zeros((len(freqs), len(self.montage.labels)))
        for _, source, mixing in self._blocks:
            total += source.psd(freqs)[:, None] * (mixing**2).sum(axis=0)[None, :]
        emg = self._emg_noise.psd(freqs) * self._emg_env.mean_square()
        total += emg[:, None] * (self._emg_w**2).sum(axis=0)[None, :]
        return total

    # ---- the ratio ---------------------------------------------------------------
    def gains_for(self, tbr: float) -> np.ndarray:
        """(theta, beta) gains that make the expected Welch ratio at the reference equal ``tbr``."""
        lo, hi = self.config.tbr_limits
        r = float(np.clip(tbr, lo, hi))
        k = self.config.theta_beta_uv2
        target = np.array([k * np.sqrt(r), k / np.sqrt(r)])
        g2 = np.linalg.solve(self._a_matrix, target - self._bg_power)
        return np.sqrt(np.clip(g2, 0.0, None))

    def set_tbr(self, tbr: float) -> None:
        """Set the theta/beta power ratio the next samples should have at the reference channel."""
        if not np.isfinite(tbr) or tbr <= 0:
            raise ValueError(f"theta/beta ratio must be a positive number, got {tbr!r}")
        self.tbr = float(tbr)
        self._gain_target = self.gains_for(tbr)

    def expected_band_power(self, band: tuple[float, float], tbr: float | None = None) -> np.ndarray:
        """Expected power (uV^2) in ``band`` at every channel for a given ratio (default: current)."""
        freqs = np.linspace(max(band[0] - 1, 0.1), band[1] + 1, 2001)
        g = self.gains_for(self.tbr if tbr is None else tbr)
        psd = self.background_psd(freqs)
        psd += (g[0] ** 2 * self._theta.psd(freqs))[:, None] * self._theta_w[None, :] ** 2
        psd += (g[1] ** 2 * self._beta.psd(freqs))[:, None] * self._beta_w[None, :] ** 2
        return _band_power(psd, freqs, band)

    # ---- streaming ---------------------------------------------------------------
    @property
    def labels(self) -> tuple[str, ...]:
        return self.montage.labels

    @property
    def n_channels(self) -> int:
        return len(self.montage.labels)

    def _smoothed_gains(self, n: int) -> np.ndarray:
        if self._gain is None:
            self._gain = self._gain_target.copy()
        a = self._a
        target = np.broadcast_to(self._gain_target, (n, 2))
        out, zi = signal.lfilter([1 - a], [1.0, -a], target, axis=0, zi=(a * self._gain)[None, :])
        self._gain = out[-1].copy()
        return out

    def generate(self, n: int) -> np.ndarray:
        """Next ``n`` samples, shape (n, n_channels), in volts."""
        if n < 0:
            raise ValueError(f"block size must be >= 0, got {n}")
        cols = [source.draw(n) for _, source, _ in self._blocks]
        cols.append(self._emg_noise.draw(n) * self._emg_env.draw(n))
        cols.append(self._line.draw(n) if self._line is not None else np.zeros((n, 2)))
        gains = self._smoothed_gains(n)
        cols.append(self._theta.draw(n) * gains[:, :1])
        cols.append(self._beta.draw(n) * gains[:, 1:])
        src = np.hstack(cols)
        self.samples += n
        out = src @ self._mix
        if self.seizures is not None:
            ictal, gain = self.seizures.draw(n)
            if gain is not None:  # post-ictal: the cerebral sources scaled down per channel
                out += (src[:, self._cerebral] @ self._mix[self._cerebral]) * (gain - 1.0)
            if ictal is not None:
                out += ictal
        return out * UV
