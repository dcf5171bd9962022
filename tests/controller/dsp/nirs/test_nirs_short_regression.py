"""Causal short-separation regression (RLS with forgetting): recovers the cortical part under a drifting
coupling, matches least squares where the coupling is steady, and equals the offline per-sample loop."""

from __future__ import annotations

import numpy as np
import pytest

from controller.dsp.nirs.short_separation import ShortRegression, forgetting_factor
from controller.offline.nirs import rls_offline

FS = 10.0


def _systemic(n: int, rng: np.random.Generator) -> np.ndarray:
    """Mayer waves, breathing and a slow wander, as a short channel sees them."""
    t = np.arange(n) / FS
    wander = np.cumsum(rng.normal(0, 0.05, n))
    wander -= np.convolve(wander, np.ones(600) / 600, mode="same")
    return np.sin(2 * np.pi * 0.1 * t) + 0.6 * np.sin(2 * np.pi * 0.25 * t + 1.0) + wander


def _neural(n: int) -> np.ndarray:
    """20 s task / 20 s rest blocks, smoothed like a haemodynamic response."""
    t = np.arange(n) / FS
    box = ((t // 20) % 2 == 1).astype(float)
    kernel = np.exp(-np.arange(0, 8, 1 / FS) / 2.0)
    return np.convolve(box, kernel / kernel.sum())[:n]


def _run(reg: ShortRegression, y: np.ndarray, x: np.ndarray, chunk: int) -> np.ndarray:
    return np.concatenate([reg.process(y[:, i:i + chunk], x[:, i:i + chunk]) for i in range(0, y.shape[1], chunk)],
                          axis=1)


def test_forgetting_factor() -> None:
    assert forgetting_factor(60.0, 10.0) == pytest.approx(np.exp(-1 / 600))
    with pytest.raises(ValueError):
        forgetting_factor(0.0, 10.0)


def test_residual_recovers_the_neural_part_under_a_drifting_coupling() -> None:
    rng = np.random.default_rng(1)
    n = int(900 * FS)
    short = _systemic(n, rng)
    neural = _neural(n)
    a = np.linspace(0.6, 1.6, n)  # the scalp coupling drifts by a factor of 2.7 over 15 min
    long_ = a * short + neural + rng.normal(0, 0.1, n)
    reg = ShortRegression(1, FS, memory_s=60.0)
    res = _run(reg, long_[None], short[None], 10)[0]
    warm = int(120 * FS)
    r_after = np.corrcoef(res[warm:], neural[warm:])[0, 1]
    r_before = np.corrcoef(long_[warm:], neural[warm:])[0, 1]
    assert r_after > 0.9
    assert r_before < 0.5  # the systemic part really did dominate
    assert reg.beta[0] == pytest.approx(a[-1], rel=0.1)  # it followed the drift


def test_rls_beta_matches_least_squares_on_a_stationary_segment() -> None:
    rng = np.random.default_rng(2)
    n = int(600 * FS)
    t = np.arange(n) / FS
    # Mayer waves, breathing and white noise: no slow wander that the blocks could correlate with by chance
    short = np.sin(2 * np.pi * 0.1 * t) + 0.6 * np.sin(2 * np.pi * 0.25 * t + 1.0) + rng.normal(0, 0.3, n)
    neural = _neural(n)
    a = np.where(np.arange(n) < n // 2, np.linspace(0.5, 1.3, n), 1.3)  # steady for the last 300 s
    long_ = a * short + neural + rng.normal(0, 0.1, n) + 5.0  # an offset: the intercept must absorb it
    reg = ShortRegression(1, FS, memory_s=60.0)
    _run(reg, long_[None], short[None], 8)
    seg = slice(n - int(240 * FS), n)  # four memories of the steady part
    design = np.column_stack([short[seg], np.ones(seg.stop - seg.start)])
    beta_ls = np.linalg.lstsq(design, long_[seg], rcond=None)[0][0]
    assert beta_ls == pytest.approx(1.3, rel=0.01)
    assert reg.beta[0] == pytest.approx(beta_ls, rel=0.03)  # measured: -1.4 %


@pytest.mark.parametrize("chunk", [1, 8, 100000])
def test_chunked_equals_the_offline_loop(chunk: int) -> None:
    rng = np.random.default_rng(3)
    n, m = 3000, 4
    x = np.stack([_systemic(n, rng) for _ in range(m)])
    y = 0.8 * x + rng.normal(0, 0.3, (m, n))
    y[2] += 1e-3  # rows are independent
    res = _run(ShortRegression(m, FS, memory_s=30.0), y, x, chunk)
    ref, betas = rls_offline(y.T, x.T, FS, memory_s=30.0)
    np.testing.assert_allclose(res, ref.T, rtol=1e-10, atol=1e-12)
    assert np.all(betas[0] == 0.0)  # nothing seen before the first sample: no correction
    np.testing.assert_allclose(res[:, 0], y[:, 0])


def test_reset_and_flat_regressor() -> None:
    reg = ShortRegression(1, FS)
    y = np.arange(50.0)[None]
    out = reg.process(y, np.ones((1, 50)))  # a flat short channel has no variance: pass-through
    np.testing.assert_array_equal(out, y)
    reg.reset()
    assert reg.beta[0] == 0.0
