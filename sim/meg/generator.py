"""Vectorised streaming MEG signals for a real sensor layout, state kept across blocks, in SI units.

Per sensor (independent): a 1/f background (1/f^2 above 40 Hz, sim.sources.pink_sos) and white sensor
noise; one posterior alpha source (8-12 Hz band-limited noise) seen by every MEG sensor with a weight
falling off as a Gaussian of the sensor's distance (``loc[:3]``) from a point over the parieto-occipital
midline; optionally mains interference. EEG/EOG channels (``--all-channels``) get an EEG-like 1/f
background, stim channels zeros. Active projectors of the layout are applied to what is generated.

Amplitudes, and where they come from:

- the 1/f background and its size: the spectral density at 10 Hz of the shared sample recording
  (../shared/data/meg/sample_audvis_trunc_raw_sss.fif, median over sensors of a Welch estimate, this
  module's author's measurement) is 27 fT/sqrt(Hz) on magnetometers and 0.59 pT/(m sqrt(Hz)) on
  gradiometers, alpha included; the background here is 20 fT/sqrt(Hz) and 0.4 pT/(m sqrt(Hz)) at 10 Hz.
- sensor noise: 3 fT/sqrt(Hz) (magnetometers) and 0.15 pT/(m sqrt(Hz)) = 1.5 fT/(cm sqrt(Hz))
  (gradiometers), white: the order of a Vectorview's SQUID noise as usually quoted (a few fT/sqrt(Hz),
  a few fT/(cm sqrt(Hz))) and below what the sample file shows at 70 Hz (7.7 fT/sqrt(Hz),
  0.17 pT/(m sqrt(Hz)), brain included). At 1-5 kHz this white floor dominates the broadband RMS
  (~150 fT and ~7.5 pT/m at 5 kHz).
- alpha: 150 fT RMS at the magnetometer where it is strongest and 3 pT/m (30 fT/cm) at the strongest
  gradiometer (gain 1): resting posterior alpha is the largest spontaneous MEG signal, a few hundred fT
  peak-to-peak over the occipital magnetometers (Hämäläinen et al. 1993, Rev. Mod. Phys. 65:413, quote
  ~1 pT for the strongest alpha); with the background above, its 8-12 Hz power is ~14x the background's
  at the strongest sensor. Weights (1 at the strongest magnetometer), median/max over MNE's Vectorview
  selections: occipital 0.55/1, parietal 0.24/0.78, vertex 0.12/0.26, temporal 0.07/0.22, frontal 0.01/0.02.
- mains: 5-20 fT (magnetometers), 0.05-0.2 pT/m (gradiometers) per sensor, random phase: what is left
  inside a shielded room.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.meg.layout import SensorLayout, SimProjector
from sim.sources import FilteredNoise, LineNoise, bandpass_sos, pink_sos

FT = 1e-15  # tesla per femtotesla
FT_PER_CM = 1e-13  # T/m per fT/cm
UV = 1e-6
GAIN_RAMP_S = 0.05  # a new alpha gain is reached linearly over this long (no step in the waveform)


@dataclass(frozen=True)
class MegConfig:
    """Amplitudes in fT (magnetometers), fT/cm (gradiometers, 1 fT/cm = 0.1 pT/m) and uV (EEG); see the module."""

    background_mag_ft: float = 20.0  # 1/f background spectral density at 10 Hz, fT/sqrt(Hz)
    background_grad_ftcm: float = 4.0  # fT/(cm sqrt(Hz)) at 10 Hz
    noise_mag_ft: float = 3.0  # white sensor noise, fT/sqrt(Hz)
    noise_grad_ftcm: float = 1.5  # fT/(cm sqrt(Hz))
    alpha_mag_ft: float = 150.0  # alpha RMS at the strongest magnetometer (gain 1)
    alpha_grad_ftcm: float = 30.0  # alpha RMS at the strongest gradiometer (gain 1)
    alpha_band: tuple[float, float] = (8.0, 12.0)
    alpha_centre_m: tuple[float, float, float] = (0.0, -0.08, 0.02)  # device coordinates: back, midline, up a bit
    alpha_spread_m: float = 0.06  # Gaussian fall-off of the alpha weight with distance from the centre
    line_mag_ft: tuple[float, float] = (5.0, 20.0)
    line_grad_ftcm: tuple[float, float] = (0.5, 2.0)
    eeg_pink_uv2: float = 10.0  # EEG/EOG background: PSD = this / f (uV^2/Hz), as sim/eeg.py
    eeg_noise_uv2: float = 0.005  # EEG amplifier floor, uV^2/Hz


def active_projection(layout: SensorLayout, projectors: list[SimProjector]) -> np.ndarray | None:
    """``U`` (n_channels, r) with the active projectors' operator ``I - U U^T`` on the layout's channels
    (MNE's arithmetic: unit-norm vectors, orthonormalised, dependent directions below 1 % dropped)."""
    col = {label: i for i, label in enumerate(layout.labels)}
    vecs = []
    for proj in projectors:
        if not proj.active:
            continue
        v = np.zeros(layout.n_channels)
        for name, value in zip(proj.channels, proj.data, strict=True):
            if name in col:
                v[col[name]] = value
        if np.any(v):
            vecs.append(v / np.linalg.norm(v))
    if not vecs:
        return None
    u, s, _ = np.linalg.svd(np.column_stack(vecs), full_matrices=False)
    return u[:, : int(np.sum(s / s[0] > 1e-2))]


class MegGenerator:
    """Streaming MEG in SI units (T, T/m, V) for ``layout``; call :meth:`generate` with any block size."""

    def __init__(self, layout: SensorLayout, rate: float = 1000.0, seed: int = 0, line_freq: float = 50.0,
                 config: MegConfig | None = None, gain: float = 1.0) -> None:
        if rate < 100.0:
            raise ValueError(f"MEG rate must be >= 100 Hz, got {rate} Hz")
        self.layout = layout
        self.rate = fs = float(rate)
        self.config = cfg = config or MegConfig()
        rngs = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, 0x3E6]).spawn(5)]
        n = layout.n_channels
        mag, grad = layout.indices("mag"), layout.indices("grad")
        eeg = layout.indices("eeg", "eog")
        self._live = np.sort(np.concatenate([mag, grad, eeg]))  # every channel but stim

        # background: pink_sos gives PSD(10 Hz) = 1/10 per Hz for unit white noise
        bg = np.zeros(n)
        bg[mag] = cfg.background_mag_ft * FT * np.sqrt(10.0)
        bg[grad] = cfg.background_grad_ftcm * FT_PER_CM * np.sqrt(10.0)
        bg[eeg] = np.sqrt(cfg.eeg_pink_uv2) * UV
        self._bg_scale = bg[self._live]
        self._background = FilteredNoise(pink_sos(fs), self._live.size, fs, rngs[0])
        floor = np.zeros(n)  # white noise of one-sided density d has SD d * sqrt(fs / 2)
        floor[mag] = cfg.noise_mag_ft * FT
        floor[grad] = cfg.noise_grad_ftcm * FT_PER_CM
        floor[eeg] = np.sqrt(cfg.eeg_noise_uv2) * UV
        self._floor_sd = floor[self._live] * np.sqrt(fs / 2.0)
        self._rng = rngs[1]

        self.alpha_weights = self._alpha_weights(mag, grad)  # (n,), T or T/m per unit source at gain 1
        self._alpha = FilteredNoise(bandpass_sos(*cfg.alpha_band, fs), 1, fs, rngs[2])
        self._gain = float(gain)
        self._target = float(gain)

        self._line = LineNoise(line_freq, fs) if 0 < line_freq < fs / 2 else None
        amp = np.zeros(n)
        amp[mag] = rngs[3].uniform(*cfg.line_mag_ft, mag.size) * FT
        amp[grad] = rngs[3].uniform(*cfg.line_grad_ftcm, grad.size) * FT_PER_CM
        phase = rngs[3].uniform(0.0, 2 * np.pi, n)
        self._line_w = np.stack([amp * np.cos(phase), -amp * np.sin(phase)])
        self._proj = active_projection(layout, list(layout.projectors))
        self.samples = 0

    def _alpha_weights(self, mag: np.ndarray, grad: np.ndarray) -> np.ndarray:
        cfg = self.config
        pos = self.layout.loc[:, :3]
        d2 = ((pos - np.asarray(cfg.alpha_centre_m)) ** 2).sum(axis=1)
        w = np.exp(-d2 / (2.0 * cfg.alpha_spread_m**2))
        out = np.zeros(self.layout.n_channels)
        for idx, rms in ((mag, cfg.alpha_mag_ft * FT), (grad, cfg.alpha_grad_ftcm * FT_PER_CM)):
            if idx.size:
                out[idx] = rms * w[idx] / w[idx].max()
        return out

    @property
    def n_channels(self) -> int:
        return self.layout.n_channels

    @property
    def alpha_rms(self) -> float:
        """RMS (T) of the alpha field at the strongest magnetometer, at the current gain."""
        return self.config.alpha_mag_ft * FT * self._target

    def set_gain(self, gain: float) -> None:
        """Alpha amplitude relative to the configured one; reached linearly over ``GAIN_RAMP_S``."""
        if not gain >= 0:
            raise ValueError(f"alpha gain must be >= 0, got {gain}")
        self._target = float(gain)

    def generate(self, n: int) -> np.ndarray:
        """The next ``n`` samples, ``(n, n_channels)`` float64, SI units."""
        out = np.zeros((n, self.n_channels))
        if n == 0:
            return out
        live = self._background.draw(n) * self._bg_scale
        live += self._rng.standard_normal((n, self._live.size)) * self._floor_sd
        out[:, self._live] = live
        ramp_n = max(1, int(round(GAIN_RAMP_S * self.rate)))
        steps = np.minimum(np.arange(1, n + 1), ramp_n) * ((self._target - self._gain) / ramp_n)
        ramp = self._gain + steps
        self._gain = float(ramp[-1])
        out += np.outer(self._alpha.draw(n)[:, 0] * ramp, self.alpha_weights)
        if self._line is not None:
            out += self._line.draw(n) @ self._line_w
        if self._proj is not None:
            out -= (out @ self._proj) @ self._proj.T
        self.samples += n
        return out
