"""Optional spike removal for detrended ROI series: a Kalman filter with clipped innovations.

Modelled on OpenNFT's "modified Kalman" (its own code is not used): the clean signal is a
random walk (process noise Q = ``q_ratio`` * var), measured with noise R = var, where var is the
running variance of the filter's input so far (causal). A measurement whose innovation exceeds
``threshold_sd`` standard deviations is treated as a spike and clipped to the threshold; after
``max_spike_run`` clipped volumes in a row the next one is accepted whole, so a real level shift
is followed rather than clipped forever. It also low-passes, as OpenNFT's does. Vectorised over
series; the recursion is inherently sequential, so the offline reference runs the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SpikeConfig:
    threshold_sd: float = 3.0  # OpenNFT clips at 0.9 SD; 3 SD leaves ordinary noise alone
    q_ratio: float = 0.25
    max_spike_run: int = 2
    warmup: int = 3

    def __post_init__(self) -> None:
        if not self.threshold_sd > 0 or not self.q_ratio > 0:
            raise ValueError(f"spike filter needs threshold_sd > 0 and q_ratio > 0, got {self}")
        if self.max_spike_run < 0 or self.warmup < 1:
            raise ValueError(f"spike filter needs max_spike_run >= 0 and warmup >= 1, got {self}")


class SpikeFilter:
    """Per-volume Kalman + spike clipping over ``n_series`` series (inputs: GLM residuals)."""

    def __init__(self, config: SpikeConfig | None = None, n_series: int = 1) -> None:
        self.config = config or SpikeConfig()
        m = int(n_series)
        self._n = 0
        self._mean = np.zeros(m)
        self._m2 = np.zeros(m)
        self._x = np.zeros(m)
        self._p = np.zeros(m)
        self._run = np.zeros(m, dtype=np.int64)
        self.spikes = np.zeros(m, dtype=np.int64)  # clipped volumes so far, per series

    def update(self, values: np.ndarray | float) -> np.ndarray:
        """Filtered value(s) for the next volume."""
        z = np.asarray(values, dtype=np.float64).reshape(self._x.shape)
        cfg = self.config
        # Running variance of the raw input (Welford), including this volume.
        self._n += 1
        d = z - self._mean
        self._mean += d / self._n
        self._m2 += d * (z - self._mean)
        if self._n <= cfg.warmup:
            self._x = z.copy()
            self._p = self._m2 / self._n
            return z.copy()
        var = self._m2 / (self._n - 1)
        sd = np.sqrt(var)
        p = self._p + cfg.q_ratio * var
        innov = z - self._x
        thr = cfg.threshold_sd * sd
        spike = (np.abs(innov) > thr) & (self._run < cfg.max_spike_run)
        innov = np.where(spike, np.sign(innov) * thr, innov)
        self._run = np.where(spike, self._run + 1, 0)
        self.spikes += spike
        denom = p + var
        gain = np.divide(p, denom, out=np.ones_like(p), where=denom > 0)
        self._x = self._x + gain * innov
        self._p = (1.0 - gain) * p
        return self._x.copy()


def offline_spike_filter(series: np.ndarray, config: SpikeConfig | None = None) -> np.ndarray:
    """Reference: the same recursion written as a plain scalar loop per series over a whole (n,) or (n, m) array."""
    cfg = config or SpikeConfig()
    y = np.asarray(series, dtype=np.float64)
    y2 = y[:, None] if y.ndim == 1 else y
    out = np.empty_like(y2)
    for s in range(y2.shape[1]):
        x = p = 0.0
        run = 0
        for n in range(1, y2.shape[0] + 1):
            z = y2[n - 1, s]
            seen = y2[:n, s]
            if n <= cfg.warmup:
                x, p = z, float(seen.var())
                out[n - 1, s] = z
                continue
            var = float(seen.var(ddof=1))
            sd = var**0.5
            p = p + cfg.q_ratio * var
            innov = z - x
            thr = cfg.threshold_sd * sd
            if abs(innov) > thr and run < cfg.max_spike_run:
                innov = thr if innov > 0 else -thr
                run += 1
            else:
                run = 0
            gain = p / (p + var) if p + var > 0 else 1.0
            x = x + gain * innov
            p = (1.0 - gain) * p
            out[n - 1, s] = x
    return out.reshape(y.shape)
