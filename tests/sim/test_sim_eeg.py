"""Spectral and spatial properties of the simulated EEG, checked with Welch like the controller does."""

import numpy as np
import pytest
from scipy.signal import welch

from sim.eeg import BETA_BAND, THETA_BAND, EegGenerator

FS = 250.0


def band_power(x: np.ndarray, fs: float, band: tuple[float, float], nperseg: float = 2.0) -> np.ndarray:
    f, p = welch(x, fs=fs, nperseg=int(nperseg * fs), axis=0)
    sel = (f >= band[0]) & (f <= band[1])
    return p[sel].sum(axis=0) * (f[1] - f[0])


def welch_tbr(x: np.ndarray, fs: float) -> float:
    return float(band_power(x, fs, THETA_BAND) / band_power(x, fs, BETA_BAND))


@pytest.fixture(scope="module")
def long_64ch():
    gen = EegGenerator(64, FS, seed=7, tbr=3.0)
    return gen, gen.generate(int(120 * FS))


def ch(gen: EegGenerator, label: str) -> int:
    return gen.labels.index(label)


def test_output_is_in_volts_with_plausible_amplitudes(long_64ch):
    gen, x = long_64ch
    assert x.shape == (int(120 * FS), 64)
    sd = x.std(axis=0)
    assert np.all(sd > 3e-6) and np.all(sd < 60e-6), sd * 1e6
    assert np.abs(x).max() < 1e-3
    assert abs(np.median(x)) < 5e-6


def test_alpha_is_posterior(long_64ch):
    gen, x = long_64ch
    alpha = band_power(x, FS, (8.0, 12.0))
    for occipital in ("O1", "O2"):
        assert alpha[ch(gen, occipital)] > 4 * alpha[ch(gen, "Fp1")]
    f, p = welch(x[:, ch(gen, "O1")], fs=FS, nperseg=int(4 * FS))
    in_range = (f >= 2) & (f <= 40)
    assert 8.5 <= f[in_range][np.argmax(p[in_range])] <= 11.5  # the O1 spectrum peaks at alpha


def test_blinks_are_frontal_and_large(long_64ch):
    gen, x = long_64ch
    fp1, oz = x[:, ch(gen, "Fp1")], x[:, ch(gen, "Oz")]
    low = band_power(x, FS, (0.5, 3.0))
    assert low[ch(gen, "Fp1")] > 10 * low[ch(gen, "Oz")]
    assert np.ptp(fp1) > 100e-6  # at least one blink of ~100-200 uV
    assert np.ptp(fp1) > 2 * np.ptp(oz)


def test_emg_is_temporal(long_64ch):
    gen, x = long_64ch
    hf = band_power(x, FS, (60.0, 110.0))
    assert hf[ch(gen, "T7")] > 5 * hf[ch(gen, "Pz")]
    assert hf[ch(gen, "T8")] > 5 * hf[ch(gen, "Pz")]


@pytest.mark.parametrize("line", [50.0, 60.0])
def test_line_noise_peak(line):
    gen = EegGenerator(8, 500.0, seed=1, line_freq=line)
    x = gen.generate(20 * 500)
    f, p = welch(x, fs=500.0, nperseg=2000, axis=0)
    peak = p[np.argmin(np.abs(f - line))]
    other = 60.0 if line == 50.0 else 50.0
    neighbours = p[(np.abs(f - line) > 3) & (np.abs(f - line) < 8)]
    assert np.all(peak > 10 * neighbours.max(axis=0))
    assert np.all(p[np.argmin(np.abs(f - other))] < peak / 10)


def test_no_line_noise_when_disabled():
    x = EegGenerator(4, 500.0, seed=1, line_freq=0).generate(10_000)
    f, p = welch(x, fs=500.0, nperseg=1000, axis=0)
    assert np.all(p[np.argmin(np.abs(f - 50))] < 3 * p[(f > 44) & (f < 48)].mean(axis=0))


def test_band_powers_match_the_analytic_expectation(long_64ch):
    """The generator's own expected band powers (used for calibration) match Welch on its output."""
    gen, x = long_64ch
    for band, label in [((8.0, 12.0), "O1"), ((12.0, 15.0), "C3"), (THETA_BAND, "Cz"), (BETA_BAND, "Cz"),
                        (THETA_BAND, "Fz"), (BETA_BAND, "Pz")]:  # fmt: skip
        measured = band_power(x, FS, band)[ch(gen, label)] * 1e12
        expected = gen.expected_band_power(band)[ch(gen, label)]
        assert measured == pytest.approx(expected, rel=0.25), (band, label)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_welch_tbr_at_cz_tracks_the_model(seed):
    measured = {}
    for tbr in (2.0, 4.0):
        gen = EegGenerator(32, FS, seed=seed, tbr=tbr)
        x = gen.generate(int(90 * FS))
        measured[tbr] = welch_tbr(x[:, ch(gen, "Cz")], FS)
        assert measured[tbr] == pytest.approx(tbr, rel=0.2)
    assert measured[4.0] > 1.4 * measured[2.0]


def test_tbr_changes_mid_stream_follow_quickly():
    gen = EegGenerator(8, FS, seed=3, tbr=1.5)
    first = gen.generate(int(60 * FS))
    gen.set_tbr(5.0)
    gen.generate(int(1 * FS))  # gain smoothing settles (time constant 0.25 s)
    second = gen.generate(int(60 * FS))
    cz = ch(gen, "Cz")
    assert welch_tbr(first[:, cz], FS) == pytest.approx(1.5, rel=0.2)
    assert welch_tbr(second[:, cz], FS) == pytest.approx(5.0, rel=0.2)
    with pytest.raises(ValueError, match="positive"):
        gen.set_tbr(-1.0)


def test_block_size_does_not_change_the_signal():
    a, b = EegGenerator(16, FS, seed=11), EegGenerator(16, FS, seed=11)
    xa = np.vstack([a.generate(1) for _ in range(37 * 12)])
    xb = np.vstack([b.generate(37) for _ in range(12)])
    np.testing.assert_allclose(xa, xb, rtol=1e-9, atol=1e-15)  # up to BLAS summation order


def test_seed_determines_the_signal():
    x1 = EegGenerator(8, FS, seed=5).generate(500)
    x2 = EegGenerator(8, FS, seed=5).generate(500)
    x3 = EegGenerator(8, FS, seed=6).generate(500)
    np.testing.assert_array_equal(x1, x2)
    assert not np.allclose(x1, x3)


@pytest.mark.parametrize("rate", [100.0, 1000.0, 5000.0])
def test_other_rates_keep_tbr_and_scale(rate):
    gen = EegGenerator(8, rate, seed=2, tbr=3.0)
    x = gen.generate(int(40 * rate))
    assert welch_tbr(x[:, ch(gen, "Cz")], rate) == pytest.approx(3.0, rel=0.3)
    assert np.all(x.std(axis=0) > 3e-6) and np.all(x.std(axis=0) < 60e-6)


def test_rejects_rates_too_low_for_beta():
    with pytest.raises(ValueError, match="rate"):
        EegGenerator(8, 40.0)
