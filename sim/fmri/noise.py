"""Scanner and physiological noise: slow drift, aliased cardiac/respiratory oscillations, AR(1) thermal noise.

Why these parts and sizes. At TR 2 s the heartbeat (~1.1 Hz) and breathing (~0.27 Hz) are
far above Nyquist and alias into the band of the BOLD signal; each slice samples them at a
different moment (ascending slices spread over the TR), so their phase varies along z. They
are strongest in CSF and grey matter (pulsatility): amplitude maps 0.6 % CSF, 0.2 % grey,
0.07 % white. Drift is a per-run linear + quadratic trend (random slope, ~1 % over 10 min)
with a front-to-back gradient. Thermal noise is AR(1) in time (rho 0.3) and white in space,
with SD ``scale / tsnr_thermal``. The defaults give a grey-matter tSNR of ~65-75, like the real
OpenNFT run (median 67 in its brightest quarter of voxels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.fmri.phantom import SCALE, Phantom


@dataclass(frozen=True)
class NoiseConfig:
    tsnr_thermal: float = 85.0  # grey-matter intensity / thermal noise SD
    thermal_rho: float = 0.3  # AR(1) coefficient of thermal noise between volumes
    cardiac_hz: float = 1.1
    resp_hz: float = 0.27
    physio_pct: tuple[float, float, float] = (0.2, 0.07, 0.6)  # cardiac+resp amplitude in grey, white, csf
    drift_pct_per_10min: float = 1.0  # SD of the linear drift slope
    quad_pct_per_10min2: float = 0.3  # SD of the quadratic term

    def scaled(self, factor: float) -> NoiseConfig:
        """All noise amplitudes times ``factor`` (0 = noise-free, for tests)."""
        if factor <= 0:
            return NoiseConfig(tsnr_thermal=float("inf"), physio_pct=(0.0, 0.0, 0.0), drift_pct_per_10min=0.0,
                               quad_pct_per_10min2=0.0)
        return NoiseConfig(self.tsnr_thermal / factor, self.thermal_rho, self.cardiac_hz, self.resp_hz,
                           tuple(a * factor for a in self.physio_pct), self.drift_pct_per_10min * factor,
                           self.quad_pct_per_10min2 * factor)


class NoiseModel:
    """Per-volume noise: :meth:`head_percent` on the head grid before motion, :meth:`thermal` on the slab after."""

    def __init__(self, phantom: Phantom, tr_s: float, config: NoiseConfig | None = None, seed: int = 0,
                 out_shape: tuple[int, int, int] | None = None) -> None:
        self.config = cfg = config or NoiseConfig()
        self.tr_s = float(tr_s)
        rngs = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, 0x4015E]).spawn(3)]
        self._rng = rngs[0]
        g, w, c = cfg.physio_pct
        self._physio_map = (g * phantom.grey + w * phantom.white + c * phantom.csf).astype(np.float32)
        nz = phantom.shape[2]
        self._slice_offset = (np.arange(nz) / nz * self.tr_s).astype(np.float64)  # ascending slice times
        self._phases = rngs[1].uniform(0, 2 * np.pi, 2)
        self._hz = np.array([cfg.cardiac_hz, cfg.resp_hz]) * (1.0 + 0.03 * rngs[1].standard_normal(2))
        ys = np.indices(phantom.shape)[1].astype(np.float32)
        self._drift_map = (1.0 + 0.5 * (ys / max(1, phantom.shape[1] - 1) - 0.5)).astype(np.float32)
        self._slope = cfg.drift_pct_per_10min * rngs[2].standard_normal() / 600.0  # percent per second
        self._quad = cfg.quad_pct_per_10min2 * rngs[2].standard_normal() / 600.0**2
        self._sigma = 0.0 if not np.isfinite(cfg.tsnr_thermal) else SCALE / cfg.tsnr_thermal
        self._state: np.ndarray | None = None
        self.shape = tuple(out_shape) if out_shape is not None else phantom.shape  # thermal noise grid

    def drift_pct(self, t_s: float) -> float:
        return self._slope * t_s + self._quad * t_s * t_s

    def physio(self, t_s: float) -> np.ndarray:
        """Cardiac + respiratory signal per slice (unit amplitude, shape (nz,)) for the volume starting at ``t_s``."""
        ts = t_s + self._slice_offset
        c = np.sin(2 * np.pi * self._hz[0] * ts + self._phases[0])
        r = np.sin(2 * np.pi * self._hz[1] * ts + self._phases[1])
        return (0.6 * c + 0.8 * r).astype(np.float32)

    def head_percent(self, t_s: float) -> np.ndarray:
        """Percent change moving with the head (drift + physiology) for the volume starting at ``t_s``."""
        out = self._drift_map * np.float32(self.drift_pct(t_s))
        out += self._physio_map * self.physio(t_s)[None, None, :]
        return out

    def thermal(self) -> np.ndarray:
        """Next AR(1) thermal-noise image (absolute intensity units, float32)."""
        if self._sigma == 0.0:
            return np.zeros(self.shape, np.float32)
        z = self._rng.standard_normal(self.shape, dtype=np.float32)
        rho = self.config.thermal_rho
        if self._state is None:
            self._state = z * np.float32(self._sigma)
        else:
            self._state *= np.float32(rho)
            self._state += z * np.float32(self._sigma * np.sqrt(1 - rho * rho))
        return self._state
