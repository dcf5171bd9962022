"""Windows fall due on fixed sample indices, however the stream is chunked."""

import numpy as np
import pytest

from controller.dsp import WindowSchedule
from controller.features import FeaturePipeline
from controller.lang.compiled import Band, FeatureSpec, InputSpec, StreamSelector

FS = 100.0
LABELS = ["Fp1", "Fp2", "Cz", "Pz"]
INPUT = InputSpec("eeg", StreamSelector(type="EEG"), (), reference="average", highpass_hz=1.0)
FEATURES = [
    FeatureSpec("theta", "band_power", "eeg", ("Cz",), 1.0, 0.1, band=Band(4, 8)),
    FeatureSpec("tbr", "band_ratio", "eeg", ("Cz", "Pz"), 0.73, 0.3, method="iir", numerator=Band(4, 8), denominator=Band(13, 21)),
    FeatureSpec("blink", "peak_to_peak", "eeg", ("Fp1", "Fp2"), 0.25, 0.07, band=Band(0.5, 4)),
]


def _run(pipe, data, stamps, sizes):
    out, pos = [], 0
    for n in sizes:
        out += pipe.push(data[pos : pos + n], stamps[pos : pos + n])
        pos += n
    assert pos == len(data)
    return out


def _random_sizes(rng, total, high):
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(rng.integers(0, high)))
    sizes[-1] -= sum(sizes) - total
    return sizes


def test_window_schedule_indices():
    s = WindowSchedule(window=5, every=3)
    assert list(s.take_due(4)) == []
    assert list(s.take_due(5)) == [4]
    assert list(s.take_due(5)) == []  # never twice
    assert list(s.take_due(14)) == [7, 10, 13]
    s.reset()
    assert list(s.take_due(8)) == [4, 7]


def test_values_are_identical_for_any_chunking():
    rng = np.random.default_rng(7)
    data = rng.standard_normal((1500, 4))
    stamps = 50.0 + np.arange(1500) / FS
    reference = _run(FeaturePipeline(FS, LABELS, INPUT, FEATURES), data, stamps, [1500])
    for trial in range(4):
        sizes = _random_sizes(rng, 1500, [3, 20, 90, 400][trial])
        got = _run(FeaturePipeline(FS, LABELS, INPUT, FEATURES), data, stamps, sizes)
        assert [(v.name, v.sample_index, v.source_time) for v in got] == [
            (v.name, v.sample_index, v.source_time) for v in reference
        ]
        np.testing.assert_allclose([v.value for v in got], [v.value for v in reference], rtol=1e-12)


def test_due_indices_timestamps_and_order():
    data = np.random.default_rng(8).standard_normal((400, 4))
    stamps = 10.0 + np.arange(400) / FS
    out = _run(FeaturePipeline(FS, LABELS, INPUT, FEATURES), data, stamps, [400])
    by_name = {f.name: [v.sample_index for v in out if v.name == f.name] for f in FEATURES}
    assert by_name["theta"] == list(range(99, 400, 10))  # W=100, S=10
    assert by_name["tbr"] == list(range(72, 400, 30))  # W=round(73)=73, S=30
    assert by_name["blink"] == list(range(24, 400, 7))  # W=25, S=7
    assert [v.sample_index for v in out] == sorted(v.sample_index for v in out)
    assert all(v.source_time == stamps[v.sample_index] for v in out)


def test_long_chunk_yields_several_values_and_empty_chunks_yield_none():
    pipe = FeaturePipeline(FS, LABELS, INPUT, FEATURES[:1])
    data = np.random.default_rng(9).standard_normal((350, 4))
    stamps = np.arange(350) / FS
    assert pipe.push(np.empty((0, 4)), np.empty(0)) == []
    assert pipe.push(data[:99], stamps[:99]) == []  # one sample short of the first window
    assert pipe.push(np.empty((0, 4)), np.empty(0)) == []
    values = pipe.push(data[99:], stamps[99:])  # 251 samples: k = 99, 109, ..., 349
    assert [v.sample_index for v in values] == list(range(99, 350, 10))
    assert pipe.sample_count == 350


def test_reset_restarts_counting_and_state():
    data = np.random.default_rng(10).standard_normal((600, 4))
    stamps = np.arange(600) / FS
    pipe = FeaturePipeline(FS, LABELS, INPUT, FEATURES)
    first = _run(pipe, data, stamps, [250, 350])
    pipe.reset()
    assert pipe.sample_count == 0
    again = _run(pipe, data, stamps, [600])
    assert first == again


def test_bad_chunk_shape_is_refused():
    pipe = FeaturePipeline(FS, LABELS, INPUT, FEATURES)
    with pytest.raises(ValueError, match=r"shape \(n_samples, 4\), got \(3, 5\)"):
        pipe.push(np.zeros((3, 5)), np.zeros(3))
    with pytest.raises(ValueError, match="3 samples but 2 timestamps"):
        pipe.push(np.zeros((3, 4)), np.zeros(2))
