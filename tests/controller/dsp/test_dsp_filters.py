"""Streaming filters and re-referencing equal their whole-array counterparts."""

import numpy as np
import pytest
from scipy import signal

from controller.dsp import Conditioner, StreamingSOS
from controller.dsp.design import bandpass_sos, conditioning_sos, highpass_sos, notch_sos
from controller.lang.compiled import Band, InputSpec, StreamSelector

FS = 250.0


def _chunks(n, rng):
    pos = 0
    while pos < n:
        step = int(rng.integers(0, 40))  # includes 0-length chunks
        yield pos, min(n, pos + step)
        pos += step


@pytest.mark.parametrize("use_kernel", [True, False])
def test_streaming_sos_equals_whole_array_sosfilt(use_kernel):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2000)) + 5.0  # with a DC offset for the high-pass to remove
    sos = np.vstack([highpass_sos(FS, 0.5), notch_sos(FS, 50.0)])
    filt = StreamingSOS(sos, 3, use_kernel=use_kernel)
    out = np.concatenate([filt.process_(x[:, a:b].copy()) for a, b in _chunks(2000, rng)], axis=1)
    np.testing.assert_allclose(out, signal.sosfilt(sos, x, axis=-1), rtol=1e-12, atol=1e-12)


def test_reset_restarts_from_zero_state():
    sos = bandpass_sos(FS, Band(8, 12))
    x = np.random.default_rng(2).standard_normal((1, 300))
    filt = StreamingSOS(sos, 1)
    first = filt.process_(x.copy())
    filt.reset()
    np.testing.assert_array_equal(filt.process_(x.copy()), first)


def test_conditioner_average_and_named_reference():
    rng = np.random.default_rng(3)
    data = rng.standard_normal((500, 6))
    avg = Conditioner(6, [4, 1], "average", None)
    named = Conditioner(6, [4, 1], [0, 2], None)
    got_avg = np.concatenate([avg.process(data[a : a + 7]) for a in range(0, 500, 7)], axis=1)
    got_named = np.concatenate([named.process(data[a : a + 7]) for a in range(0, 500, 7)], axis=1)
    np.testing.assert_allclose(got_avg, (data[:, [4, 1]] - data.mean(axis=1, keepdims=True)).T, rtol=1e-12)
    np.testing.assert_allclose(got_named, (data[:, [4, 1]] - data[:, [0, 2]].mean(axis=1, keepdims=True)).T, rtol=1e-12)


def test_conditioner_highpass_removes_offset_causally():
    spec = InputSpec("eeg", StreamSelector(), (), highpass_hz=1.0, notch_hz=50.0)
    cond = Conditioner(2, [0], None, conditioning_sos(FS, spec))
    t = np.arange(int(20 * FS)) / FS
    data = np.c_[100.0 + np.sin(2 * np.pi * 10 * t), np.zeros_like(t)]
    out = np.concatenate([cond.process(data[a : a + 32]) for a in range(0, t.size, 32)], axis=1)[0]
    tail = out[-int(2 * FS) :]
    assert abs(tail.mean()) < 0.01  # the 100-unit offset is gone
    assert 0.9 < tail.std() * np.sqrt(2) < 1.1  # the 10 Hz sine passes


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: highpass_sos(FS, 200.0), "highpass 200.0 Hz"),
        (lambda: notch_sos(100.0, 50.0), "notch 50.0 Hz"),
        (lambda: bandpass_sos(160.0, Band(45, 90), what="band of feature 'emg'"), "feature 'emg'.*80.0"),
        (lambda: bandpass_sos(FS, Band(12, 8)), r"\[12, 8\]"),
    ],
)
def test_impossible_filters_are_refused_with_a_clear_message(make, match):
    with pytest.raises(ValueError, match=match):
        make()
