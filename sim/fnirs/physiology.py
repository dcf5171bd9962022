"""Systemic physiology in fNIRS: the haemoglobin changes that are not brain activity.

Four shared processes (one time course each, the same in every channel up to a per-channel scale, so
short-separation regression can remove them), in HbO mol/L, each with an HbR companion of the same
sign (blood volume moves both) scaled by ``hbr_ratio``:

==============  ======================================================  ===========  =========
process         model                                                   HbO size     HbR ratio
==============  ======================================================  ===========  =========
cardiac         pulse at ~1.1 Hz (three harmonics, pulse-like shape);   0.25 uM      0.1
                rate wanders by an AR(1) of SD 0.05 Hz, tau 5 s         amplitude
respiration     AR(2) resonance at 0.25 Hz, bandwidth 0.03 Hz           0.12 uM SD   0.3
Mayer waves     AR(2) resonance at 0.10 Hz, bandwidth 0.02 Hz           0.40 uM SD   0.4
slow drift      AR(1), tau 60 s                                         1.0 uM SD    0.5
==============  ======================================================  ===========  =========

plus a small local fluctuation per pair (AR(1), tau 10 s, 0.05 uM SD, HbR 0.4 x), which no other
channel shares (the part short-separation regression cannot remove).

Every process is filtered white noise (``scipy.signal.lfilter`` with its state kept) or a phase
accumulated sample by sample from a fixed starting value, each with its own random generator, so
the output does not depend on how the samples are split into chunks. Processes start in their
stationary state (the filters are run for ``warmup_s`` before the first sample).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

UM = 1e-6  # mol/L per micromolar


@dataclass(frozen=True)
class SystemicConfig:
    cardiac_hz: float = 1.1
    cardiac_amplitude: float = 0.25 * UM  # HbO, amplitude of the fundamental
    cardiac_rate_sd_hz: float = 0.05
    cardiac_rate_tau_s: float = 5.0
    cardiac_hbr_ratio: float = 0.1
    resp_hz: float = 0.25
    resp_bandwidth_hz: float = 0.03
    resp_sd: float = 0.12 * UM
    resp_hbr_ratio: float = 0.3
    mayer_hz: float = 0.10
    mayer_bandwidth_hz: float = 0.02
    mayer_sd: float = 0.40 * UM
    mayer_hbr_ratio: float = 0.4
    drift_tau_s: float = 60.0
    drift_sd: float = 1.0 * UM
    drift_hbr_ratio: float = 0.5
    local_tau_s: float = 10.0
    local_sd: float = 0.05 * UM
    local_hbr_ratio: float = 0.4
    warmup_s: float = 180.0  # three drift time constants


class _Filtered:
    """White noise (own generator) through a fixed IIR filter, state kept: ``width`` independent series."""

    def __init__(self, b: np.ndarray, a: np.ndarray, gain: float, rng: np.random.Generator, width: int) -> None:
        self.b, self.a, self.gain, self.rng = b, a, gain, rng
        self.zi = np.zeros((max(len(a), len(b)) - 1, width))

    def __call__(self, n: int) -> np.ndarray:
        e = self.rng.standard_normal((n, self.zi.shape[1]))
        y, self.zi = lfilter(self.b, self.a, e, axis=0, zi=self.zi)
        return self.gain * y


def ar1(tau_s: float, sd: float, rate: float, rng: np.random.Generator, width: int = 1) -> _Filtered:
    """Stationary SD ``sd``, correlation time ``tau_s``."""
    phi = math.exp(-1.0 / (tau_s * rate))
    return _Filtered(np.array([1.0]), np.array([1.0, -phi]), sd * math.sqrt(1 - phi * phi), rng, width)


def resonance(hz: float, bandwidth_hz: float, sd: float, rate: float, rng: np.random.Generator,
              width: int = 1) -> _Filtered:
    """AR(2) with poles at ``hz`` and radius giving ``bandwidth_hz``; stationary SD ``sd``."""
    r = math.exp(-math.pi * bandwidth_hz / rate)
    a1, a2 = -2 * r * math.cos(2 * math.pi * hz / rate), r * r
    var = (1 + a2) / ((1 - a2) * ((1 + a2) ** 2 - a1 * a1))  # AR(2) variance per unit innovation
    return _Filtered(np.array([1.0]), np.array([1.0, a1, a2]), sd / math.sqrt(var), rng, width)


class Systemic:
    """Streaming systemic HbO/HbR: :meth:`generate` -> (shared (n, 2) [HbO, HbR], local (n, n_pairs, 2))."""

    def __init__(self, rate: float, n_pairs: int, seed: int, config: SystemicConfig | None = None) -> None:
        self.config = cfg = config or SystemicConfig()
        if cfg.cardiac_hz + 3 * cfg.cardiac_rate_sd_hz >= rate / 2:
            raise ValueError(f"a rate of {rate:g} Hz cannot carry a {cfg.cardiac_hz:g} Hz pulse (Nyquist {rate / 2:g} Hz)")
        self.rate = float(rate)
        rngs = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, 0xF1A5]).spawn(6)]
        self._rate_wander = ar1(cfg.cardiac_rate_tau_s, cfg.cardiac_rate_sd_hz, rate, rngs[0])
        self._resp = resonance(cfg.resp_hz, cfg.resp_bandwidth_hz, cfg.resp_sd, rate, rngs[1])
        self._mayer = resonance(cfg.mayer_hz, cfg.mayer_bandwidth_hz, cfg.mayer_sd, rate, rngs[2])
        self._drift = ar1(cfg.drift_tau_s, cfg.drift_sd, rate, rngs[3])
        self._local = ar1(cfg.local_tau_s, cfg.local_sd, rate, rngs[4], width=n_pairs)
        self._phase = float(rngs[5].uniform(0, 2 * math.pi))
        warmup = int(round(cfg.warmup_s * rate))  # start stationary: run the filters before the first sample
        for proc in (self._rate_wander, self._resp, self._mayer, self._drift, self._local):
            proc(warmup)
        self.heart_hz = cfg.cardiac_hz  # the last sample's instantaneous rate

    def _cardiac(self, n: int) -> np.ndarray:
        """Pulse waveform: phase accumulated from a fixed start (sequential sums: chunk-independent)."""
        f = self.config.cardiac_hz + self._rate_wander(n)[:, 0]
        steps = np.concatenate([[self._phase], 2 * math.pi * f / self.rate])
        phase = np.cumsum(steps)[1:]
        self._phase = float(phase[-1])
        self.heart_hz = float(f[-1])
        # a systolic upstroke and dicrotic shoulder: decreasing harmonics with fixed phase offsets
        return self.config.cardiac_amplitude * (np.sin(phase) + 0.45 * np.sin(2 * phase - 0.9)
                                                + 0.15 * np.sin(3 * phase - 1.8))

    def generate(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        cardiac = self._cardiac(n)
        resp, mayer, drift = self._resp(n)[:, 0], self._mayer(n)[:, 0], self._drift(n)[:, 0]
        hbo = cardiac + resp + mayer + drift
        hbr = (cfg.cardiac_hbr_ratio * cardiac + cfg.resp_hbr_ratio * resp + cfg.mayer_hbr_ratio * mayer
               + cfg.drift_hbr_ratio * drift)
        local = self._local(n)
        return np.stack([hbo, hbr], axis=1), np.stack([local, cfg.local_hbr_ratio * local], axis=2)
