"""Causal signal quality: scalp coupling index (cardiac correlation of the two wavelengths) and the
motion flag (OD jumps held for a while); chunk-size invariance and the offline references."""

from __future__ import annotations

import numpy as np
import pytest

from controller.dsp.nirs.quality import MotionJumps, ScalpCoupling
from controller.offline.nirs import motion_offline, sci_offline

FS = 20.0


def _run(proc: ScalpCoupling | MotionJumps, od: np.ndarray, chunk: int) -> np.ndarray:
    return np.concatenate([proc.process(od[:, :, i:i + chunk]) for i in range(0, od.shape[2], chunk)], axis=1)


def _cardiac_pair(n: int, rng: np.random.Generator) -> np.ndarray:
    """(2, n): both wavelengths see the same 1.1 Hz heartbeat (different amplitudes) plus small noise."""
    t = np.arange(n) / FS
    beat = np.sin(2 * np.pi * 1.1 * t)
    return np.stack([0.010 * beat + rng.normal(0, 0.001, n), -0.006 * beat + rng.normal(0, 0.001, n)]) + 0.02


def test_sci_high_with_a_shared_heartbeat_low_with_independent_noise() -> None:
    rng = np.random.default_rng(0)
    n = int(120 * FS)
    coupled = _cardiac_pair(n, rng)
    coupled[1] *= -1  # OD of both wavelengths rises with each beat: positive correlation
    loose = rng.normal(0, 0.01, (2, n))
    od = np.stack([coupled, loose], axis=1)  # (2 wavelengths, 2 pairs, n)
    sci = _run(ScalpCoupling(2, FS, window_s=5.0), od, 8)
    warm = int(10 * FS)  # band-pass transient and the first full window
    assert sci[0, warm:].min() > 0.9
    assert np.median(np.abs(sci[1, warm:])) < 0.3  # a 5 s window of 0.8 Hz-wide noise: r scatters around 0
    assert abs(sci[1, warm:].mean()) < 0.1
    assert np.all(np.abs(sci) <= 1.0)


def test_sci_equals_the_offline_two_pass_correlation_in_any_chunking() -> None:
    rng = np.random.default_rng(1)
    n = int(60 * FS)
    od = np.stack([_cardiac_pair(n, rng), rng.normal(0, 0.01, (2, n)), _cardiac_pair(n, rng)], axis=1)
    od[:, 1, 300:340] = 0.5  # a flat stretch after a jump
    ref = sci_offline(od.transpose(2, 0, 1), FS, 5.0).T
    outs = [_run(ScalpCoupling(3, FS, window_s=5.0), od, c) for c in (1, 8, n)]
    for out in outs:
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-9)
        np.testing.assert_allclose(out, outs[-1], rtol=0, atol=1e-12)


def test_a_step_flags_motion_for_the_lag_plus_the_hold_then_clears() -> None:
    n = int(30 * FS)
    od = np.zeros((2, 2, n)) + 0.01 * np.sin(np.arange(n) / FS)[None, None]  # slow, physiological
    step = int(10 * FS)
    od[1, 0, step:] += 0.3  # pair 0, the long wavelength: 0.3 OD step
    lag, hold = round(0.5 * FS), round(2.0 * FS)
    for chunk in (1, 8, n):
        det = MotionJumps(2, FS, threshold_od=0.1, lag_s=0.5, hold_s=2.0)
        flag = _run(det, od, chunk)
        expected = np.zeros(n)
        expected[step: step + lag + hold] = 1.0  # the change spans the lag window, then the hold after it
        np.testing.assert_array_equal(flag[0], expected)
        np.testing.assert_array_equal(flag[1], 0.0)
    np.testing.assert_array_equal(motion_offline(od.transpose(2, 0, 1), FS).T, flag)


def test_reset_forgets_state() -> None:
    rng = np.random.default_rng(2)
    od = np.stack([_cardiac_pair(400, rng)], axis=1)
    for proc in (ScalpCoupling(1, FS), MotionJumps(1, FS)):
        first = proc.process(od)
        proc.reset()
        np.testing.assert_array_equal(proc.process(od), first)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="SCI band"):
        ScalpCoupling(1, 2.0)  # 1.5 Hz is above Nyquist at 2 Hz
    with pytest.raises(ValueError, match="threshold"):
        MotionJumps(1, FS, threshold_od=0.0)
