"""Continuous-wave fNIRS light intensities, generated from haemoglobin physics.

Per pair, concentration changes (mol/L) are summed:

- neural: ``neural_hbo_max x (HRF * drive)`` on the target pairs (long pairs only; default all long
  pairs), HbR ``= hbr_ratio x HbO`` (-0.3). ``drive`` is the participant's activity times its gain
  (sim/fnirs/participant.py). The HRF is the canonical double gamma (SPM's: gamma pdfs of shape 6
  and 16, ratio 1/6; peak 5 s, undershoot 15 s, 32 s long) normalised to unit sum, so a sustained
  drive of 1 plateaus at ``neural_hbo_max``; it is applied causally as an FIR over the kept drive
  history (exact, and the same whatever the chunking);
- systemic (sim/fnirs/physiology.py): the shared cardiac/respiration/Mayer/drift time course times a
  per-pair scale. Short pairs see the scalp, where these changes live, at 1.6-2.4x; a long pair at
  0.4-0.6 of its nearest short pair (so its short neighbour is its best regressor), plus its own
  small local fluctuation;

then converted per column (wavelength) to optical density by the modified Beer-Lambert law
(sim/fnirs/beer_lambert.py: Prahl's coefficients, the pair's distance, ppf 6), motion artefacts
(sim/fnirs/motion.py, optional) and measurement noise (white, OD SD 0.002 long / 0.001 short) are
added, and ``I = I0 exp(-OD)`` with a baseline ``I0`` per column: long pairs 0.05-0.5, short pairs
1-5 (they lose less light), 850 nm 1.3x 760 nm, like a real device's arbitrary units.

Every random process has its own generator and is drawn per sample, so splitting the same samples
into other chunks gives the same output (to rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import gamma

from sim.fnirs.beer_lambert import DEFAULT_PPF, od_coefficients
from sim.fnirs.montage import NirsMontage, prefrontal_montage
from sim.fnirs.motion import Motion
from sim.fnirs.physiology import UM, Systemic, SystemicConfig


def canonical_hrf(rate: float, length_s: float = 32.0) -> np.ndarray:
    """SPM double-gamma HRF sampled at ``rate`` from t = 0, normalised to unit sum."""
    t = np.arange(0.0, length_s, 1.0 / rate)
    h = gamma.pdf(t, 6.0) - gamma.pdf(t, 16.0) / 6.0
    return h / h.sum()


@dataclass(frozen=True)
class FnirsConfig:
    ppf: float = DEFAULT_PPF
    neural_hbo_max: float = 1.0 * UM  # HbO plateau of a sustained block at gain 1
    hbr_ratio: float = -0.3
    short_systemic: tuple[float, float] = (1.6, 2.4)  # scale of the systemic changes in short pairs
    long_of_short: tuple[float, float] = (0.4, 0.6)  # a long pair's scale relative to its nearest short pair
    noise_od_long: float = 0.002
    noise_od_short: float = 0.001
    i0_long: tuple[float, float] = (0.05, 0.5)
    i0_short: tuple[float, float] = (1.0, 5.0)
    i0_per_nm: float = 1.3 / 90.0  # relative gain per nm above the shortest wavelength (850 nm: 1.3x 760 nm)
    systemic: SystemicConfig = field(default_factory=SystemicConfig)


class FnirsGenerator:
    """Streaming intensities ``(n, n_columns)`` in the montage's pair-major column order."""

    def __init__(self, montage: NirsMontage | None = None, rate: float = 10.0, seed: int = 0,
                 config: FnirsConfig | None = None, target: Sequence[str] | None = None,
                 motion_every_s: float | None = None) -> None:
        self.montage = m = montage or prefrontal_montage()
        self.config = cfg = config or FnirsConfig()
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.rate = float(rate)
        self.seed = seed
        n_pairs = len(m.pairs)
        if target is None:
            self.target = ~m.short_mask
        else:
            self.target = np.zeros(n_pairs, bool)
            for name in target:
                i = m.pair_index(name)
                if m.short_mask[i]:
                    raise ValueError(f"{name} is a short-separation pair: it carries no brain signal")
                self.target[i] = True
        init, noise = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, 0xF00D]).spawn(2))
        self._noise_rng = noise
        short = m.short_mask
        scale = np.empty(n_pairs)
        scale[short] = init.uniform(*cfg.short_systemic, short.sum())
        nearest = m.nearest_short()
        scale[~short] = scale[nearest[~short]] * init.uniform(*cfg.long_of_short, (~short).sum())
        self.systemic_scale = scale
        base = np.where(short, init.uniform(*cfg.i0_short, n_pairs), init.uniform(*cfg.i0_long, n_pairs))
        col_pairs, col_wl = m.column_pairs, m.column_wavelengths.astype(float)
        self.i0 = base[col_pairs] * (1.0 + cfg.i0_per_nm * (col_wl - col_wl.min()))
        self._col_pairs = col_pairs
        self._od_per_mol = od_coefficients(m.distances_mm[col_pairs], col_wl, cfg.ppf)  # (n_columns, 2)
        self._noise_sd = np.where(short, cfg.noise_od_short, cfg.noise_od_long)[col_pairs]
        self._col_target = self.target[col_pairs]
        self.systemic = Systemic(rate, n_pairs, seed, cfg.systemic)
        self.motion = (Motion(motion_every_s, rate, m.midpoints[:, 0], col_pairs, seed)
                       if motion_every_s is not None else None)
        self.hrf = canonical_hrf(rate)
        self._history = np.zeros(len(self.hrf) - 1)  # the drive's last samples, oldest first
        self.samples = 0
        self.neural_hbo = np.zeros(0)  # the last chunk's neural HbO (mol/L) on the target pairs

    @property
    def n_columns(self) -> int:
        return self.montage.n_columns

    @property
    def labels(self) -> tuple[str, ...]:
        return self.montage.labels

    def _neural(self, drive: np.ndarray) -> np.ndarray:
        """Causal FIR: HbO (mol/L) at each new sample from the drive history and the new drive."""
        full = np.concatenate([self._history, drive])
        self._history = full[len(drive):]
        windows = np.lib.stride_tricks.sliding_window_view(full, len(self.hrf))  # (n, len(hrf)), oldest first
        return self.config.neural_hbo_max * (windows @ self.hrf[::-1])

    def generate(self, n: int, drive: np.ndarray | None = None) -> np.ndarray:
        """The next ``n`` samples; ``drive`` (n,) the participant's activity x gain (default none)."""
        cfg = self.config
        drive = np.zeros(n) if drive is None else np.asarray(drive, dtype=float)
        if drive.shape != (n,):
            raise ValueError(f"drive must have shape ({n},), got {drive.shape}")
        neural = self._neural(drive)
        self.neural_hbo = neural
        shared, local = self.systemic.generate(n)  # (n, 2), (n, n_pairs, 2)
        conc = shared[:, None, :] * self.systemic_scale[None, :, None] + local  # (n, n_pairs, 2)
        conc = conc[:, self._col_pairs, :]  # per column
        target = self._col_target
        conc[:, target, 0] += neural[:, None]
        conc[:, target, 1] += cfg.hbr_ratio * neural[:, None]
        od = conc[..., 0] * self._od_per_mol[:, 0] + conc[..., 1] * self._od_per_mol[:, 1]
        if self.motion is not None:
            od += self.motion.generate(n, self.n_columns)
        od += self._noise_sd * self._noise_rng.standard_normal((n, self.n_columns))
        self.samples += n
        return self.i0 * np.exp(-od)
