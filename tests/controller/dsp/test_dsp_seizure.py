"""Seizure-onset detectors (line length, area, half-waves): streaming == offline, and what they measure.

Real recording: shared/data/seizure/ombao_malow_8ch.tar.gz, scalp EEG of one epilepsy patient
(B. Malow, University of Michigan; Wang, Ombao & Chung 2018, Ann. Appl. Stat. 12:1506), 8 channels
at 100 Hz, first half pre-ictal, second half ictal; see shared/data/MANIFEST.md.
"""

import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from controller.dsp.design import bandpass_sos
from controller.dsp.features import ChannelSource
from controller.dsp.ring import RingBuffer
from controller.dsp.seizure.detectors import (
    AreaDetector,
    HalfWaveDetector,
    HalfWaveParams,
    LineLengthDetector,
    SeizureValues,
    TrendedWindowParams,
)
from controller.dsp.seizure.features import HalfWaveFeature, LineLengthFeature
from controller.dsp.seizure.halfwave import HalfWaveCriteria, HalfWaveTracker
from controller.dsp.seizure.offline import (
    halfwave_events,
    halfwaves,
    offline_area,
    offline_half_wave,
    offline_line_length,
)
from controller.dsp.seizure.trend import Trend, offline_trend_ratio
from controller.lang.compiled import Band

ARCHIVE = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "seizure" / "ombao_malow_8ch.tar.gz"
CHANNELS = ("c3", "c4", "cz", "p3", "p4", "t3", "t4", "t5")
FS = 100.0
N_SAMPLES = 32678
ONSET = N_SAMPLES // 2  # MANIFEST: first half pre-ictal, second half ictal


@pytest.fixture(scope="module")
def seizure_eeg(tmp_path_factory) -> np.ndarray:
    """(32678, 8) microvolts, channels in CHANNELS order, unpacked from the archive to a tmp dir."""
    if not ARCHIVE.exists():
        pytest.skip(f"real recording {ARCHIVE} is absent (shared/data not mounted)")
    root = tmp_path_factory.mktemp("seizure")
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(root, filter="data")
    files = {p.name: p for p in root.rglob("*") if p.is_file()}
    missing = [c for c in CHANNELS if c not in files]
    assert not missing, f"archive lacks channel files {missing}"
    data = np.stack([np.array(files[c].read_text().split(), dtype=np.float64) for c in CHANNELS], axis=1)
    assert data.shape == (N_SAMPLES, len(CHANNELS))
    return data


def _stream(detector, data: np.ndarray, chunk: int) -> SeizureValues:
    parts = [detector.push(data[a : a + chunk]) for a in range(0, len(data), chunk)]
    return SeizureValues.concat(parts, detector.n_channels)


def _assert_same(got: SeizureValues, ref: SeizureValues) -> None:
    np.testing.assert_array_equal(got.sample_index, ref.sample_index)
    np.testing.assert_allclose(got.value, ref.value, rtol=1e-9, atol=0)
    if ref.ratio is None:
        assert got.ratio is None
        return
    np.testing.assert_array_equal(np.isnan(got.ratio), np.isnan(ref.ratio))
    np.testing.assert_allclose(got.ratio, ref.ratio, rtol=1e-9, atol=0)


# --------------------------------------------------------------------------- real data: online == offline

LL_MEAN = TrendedWindowParams(window_s=1.0, every_s=0.1, trend_s=30.0)
LL_EMA = TrendedWindowParams(window_s=2.0, every_s=0.25, trend_s=20.0, trend="ema", trend_min_s=5.0, band=Band(1, 40))
AREA = TrendedWindowParams(window_s=1.0, every_s=0.1, trend_s=30.0, trend_min_s=10.0, band=Band(1, 40))
HALFWAVE = HalfWaveParams(min_amplitude=(38.0, 41.6, 16.9, 37.1, 43.8, 75.0, 93.0, 65.5), window_s=1.0, every_s=0.1)

CASES = {
    "line_length_mean": (lambda: LineLengthDetector(FS, 8, LL_MEAN), lambda x: offline_line_length(x, FS, LL_MEAN)),
    "line_length_ema": (lambda: LineLengthDetector(FS, 8, LL_EMA), lambda x: offline_line_length(x, FS, LL_EMA)),
    "area": (lambda: AreaDetector(FS, 8, AREA), lambda x: offline_area(x, FS, AREA)),
    "half_wave": (lambda: HalfWaveDetector(FS, 8, HALFWAVE), lambda x: offline_half_wave(x, FS, HALFWAVE)),
}
_REFERENCE: dict[str, SeizureValues] = {}


@pytest.mark.parametrize("chunk", [1, 7, 32])
@pytest.mark.parametrize("case", sorted(CASES))
def test_online_equals_offline_on_real_seizure_eeg(seizure_eeg, case, chunk):
    make, offline = CASES[case]
    if case not in _REFERENCE:
        _REFERENCE[case] = offline(seizure_eeg)
    ref = _REFERENCE[case]
    assert ref.sample_index.size > 1000
    if ref.ratio is not None:
        assert np.isfinite(ref.ratio[-100:]).all() and np.isnan(ref.ratio[0]).all()
    else:
        assert ref.value.max() > 5  # half-waves do get counted
    _assert_same(_stream(make(), seizure_eeg, chunk), ref)


@pytest.mark.parametrize("chunk", [1, 7, 32])
def test_halfwave_tracker_finds_each_half_wave_once_across_chunks(seizure_eeg, chunk):
    """Cumulative qualified half-waves after every chunk equal the whole-recording reference."""
    x = signal.sosfilt(bandpass_sos(FS, Band(3, 30)), seizure_eeg[:8000], axis=0)
    criteria = HalfWaveCriteria.from_seconds(FS, HALFWAVE.min_amplitude, math.inf, 1 / 60, 1 / 6)
    events = [halfwave_events(x[:, c], criteria, c) for c in range(8)]
    assert min(e.size for e in events) > 20
    tracker = HalfWaveTracker(8, criteria)
    block = np.ascontiguousarray(x.T)
    for a in range(0, len(x), chunk):
        tracker.observe(block[:, a : a + chunk])
        end = min(a + chunk, len(x)) - 1
        expected = [np.searchsorted(e, end, side="right") for e in events]
        np.testing.assert_array_equal(tracker.count(end, end + 1), expected, err_msg=f"after sample {end}")


def test_ictal_half_has_higher_line_length_on_most_channels(seizure_eeg):
    ref = offline_line_length(seizure_eeg, FS, LL_MEAN)
    pre, ictal = ref.sample_index < ONSET, ref.sample_index >= ONSET
    rise = ref.value[ictal].mean(axis=0) / ref.value[pre].mean(axis=0)
    assert np.all((rise > 1.4) & (rise < 4.5)), rise  # MANIFEST: rises 1.4-4x
    high_pre = np.nanpercentile(ref.ratio[pre], 95, axis=0)
    high_ictal = np.nanpercentile(ref.ratio[ictal], 95, axis=0)
    assert np.sum(high_ictal > 1.2 * high_pre) >= 6, (high_pre, high_ictal)
    assert np.sum(np.nanmean(ref.ratio[ictal], axis=0) > np.nanmean(ref.ratio[pre], axis=0)) >= 6


# --------------------------------------------------------------------------- synthetic: what they measure


def _noise(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n)


def test_sine_burst_raises_line_length_and_area_ratio():
    fs, n = 200.0, 4000  # 20 s; burst from 14 s to 16 s
    x = 0.3 * _noise(n)
    t = np.arange(n) / fs
    burst = (t >= 14.0) & (t < 16.0)
    x[burst] += 6.0 * np.sin(2 * np.pi * 8.0 * t[burst])
    params = TrendedWindowParams(window_s=1.0, every_s=0.1, trend_s=5.0)
    for detector in (LineLengthDetector(fs, 1, params), AreaDetector(fs, 1, params)):
        out = _stream(detector, x, 50)
        time = out.sample_index / fs
        quiet = (time > 7.0) & (time < 14.0)
        inside = (time >= 15.0) & (time < 16.0)  # window wholly inside the burst
        assert np.isnan(out.ratio[time < 5.0]).all()  # trend still forming: undefined
        assert 0.7 < np.nanmin(out.ratio[quiet]) and np.nanmax(out.ratio[quiet]) < 1.4, type(detector).__name__
        # The trend absorbs the burst as it goes on (it is a trend), so the ratio peaks first.
        assert np.min(out.ratio[inside]) > 1.8 and np.max(out.ratio[inside]) > 2.5, type(detector).__name__


def test_line_length_and_area_values_of_a_ramp_and_a_constant():
    x = np.concatenate([np.arange(10.0), np.full(5, 9.0), np.full(5, -3.0)])  # ramp 0..9, hold, jump to -3
    params = TrendedWindowParams(window_s=0.5, every_s=0.5, trend_s=0.5)  # 10 samples at 20 Hz
    ll = _stream(LineLengthDetector(20.0, 1, params), x, 3)
    area = _stream(AreaDetector(20.0, 1, params), x, 3)
    np.testing.assert_array_equal(ll.sample_index, [9, 19])
    np.testing.assert_array_equal(ll.value[:, 0], [9.0, 12.0])  # 9 unit steps; then one step of 12
    np.testing.assert_array_equal(area.value[:, 0], [45.0, 60.0])
    assert np.isnan(ll.ratio[0, 0]) and ll.ratio[1, 0] == pytest.approx(12.0 / 9.0)


def _triangle(n: int, half: int, amp: float = 1.0) -> np.ndarray:
    """Triangle wave: rises for ``half`` samples, falls for ``half``, peak-to-peak ``amp``."""
    phase = np.arange(n) % (2 * half)
    return amp * np.where(phase <= half, phase, 2 * half - phase) / half


def test_halfwave_counts_on_a_triangle_wave():
    fs = 100.0
    x = _triangle(1000, half=10, amp=4.0)  # 5 Hz, half-waves of 0.1 s and height 4
    count = lambda **kw: _stream(HalfWaveDetector(fs, 1, HalfWaveParams(band=None, window_s=1.0, **kw)), x, 13)
    out = count(min_amplitude=3.0, min_duration_s=0.05, max_duration_s=0.15)
    steady = out.sample_index >= 200
    np.testing.assert_array_equal(out.value[steady, 0], 10.0)  # 100 samples hold 10 half-waves
    assert out.value[0, 0] == 8.0  # runs end at 10, 20 .. 90; the one from sample 0 has no start turn
    assert count(min_amplitude=4.5, min_duration_s=0.05, max_duration_s=0.15).value.max() == 0  # too small
    assert count(min_amplitude=3.0, min_duration_s=0.11, max_duration_s=0.2).value.max() == 0  # too short
    assert count(min_amplitude=3.0, min_duration_s=0.02, max_duration_s=0.09).value.max() == 0  # too long
    exact = count(min_amplitude=4.0, max_amplitude=4.0, min_duration_s=0.1, max_duration_s=0.1)
    np.testing.assert_array_equal(exact.value[steady, 0], 10.0)  # bounds are inclusive


def test_halfwave_counts_of_a_band_passed_sine():
    fs = 100.0
    t = np.arange(3000) / fs
    x = 50.0 * np.sin(2 * np.pi * 6.0 * t + 0.3) + 0.1 * _noise(t.size)
    out = _stream(HalfWaveDetector(fs, 1, HalfWaveParams(min_amplitude=40.0, window_s=2.0)), x, 32)
    steady = out.sample_index >= 1000
    assert np.all(np.abs(out.value[steady, 0] - 24.0) <= 1.0)  # 6 Hz: 12 half-waves per second
    quiet = _stream(HalfWaveDetector(fs, 1, HalfWaveParams(min_amplitude=40.0, window_s=2.0)), _noise(3000), 32)
    assert quiet.value.max() == 0


@pytest.mark.parametrize("split", range(1, 45))
def test_halfwave_spanning_a_chunk_boundary_counts_once(split):
    """Every split point of two triangle periods (turns at 10, 20, 30, 40): same events as unsplit."""
    x = _triangle(45, half=10, amp=2.0)[None, :]
    criteria = HalfWaveCriteria(1.0, math.inf, 5.0, 15.0)
    whole = halfwave_events(x[0], criteria)
    np.testing.assert_array_equal(whole, [21, 31, 41])  # half-waves end at 20, 30, 40; known one sample later
    tracker = HalfWaveTracker(1, criteria)
    tracker.observe(x[:, :split])
    tracker.observe(x[:, split:])
    assert tracker.count(44, 45)[0] == 3.0
    assert tracker.count(44, 44 - 21 + 1)[0] == 3.0 and tracker.count(44, 44 - 21)[0] == 2.0


@pytest.mark.parametrize("split", range(1, 12))
def test_plateau_across_a_chunk_boundary_keeps_its_direction(split):
    up_flat_down = np.array([0, 1, 2, 3, 3, 3, 3, 2, 1, 0, 1, 2], dtype=float)  # peak = end of plateau (6)
    up_flat_up = np.array([0, 1, 2, 3, 3, 3, 3, 4, 5, 6, 5, 4], dtype=float)  # no turn at the plateau
    criteria = HalfWaveCriteria(0.5, math.inf, 1.0, 20.0)
    for x, turns in ((up_flat_down, [6, 9]), (up_flat_up, [9])):
        ends, _, _ = halfwaves(x)
        assert ends.tolist() == turns[1:]
        tracker = HalfWaveTracker(1, criteria)
        tracker.observe(x[None, :split])
        tracker.observe(x[None, split:])
        assert tracker.count(11, 12)[0] == len(turns) - 1


# --------------------------------------------------------------------------- the long-term trend


def test_trend_ratio_uses_previous_values_only():
    trend = Trend(1, length=3, min_count=3, kind="mean")
    ratios = [trend.ratio(np.array([v]))[0] for v in (1.0, 1.0, 1.0, 4.0, 1.0, 1.0, 1.0)]
    assert all(math.isnan(r) for r in ratios[:3])
    assert ratios[3] == 4.0  # 4 / mean(1, 1, 1)
    assert ratios[4] == pytest.approx(1.0 / 2.0)  # 1 / mean(1, 1, 4)
    assert ratios[6] == pytest.approx(1.0 / 2.0)  # 1 / mean(4, 1, 1); then the 4 leaves the trend
    assert trend.ratio(np.array([1.0]))[0] == 1.0


@pytest.mark.parametrize("kind", ["mean", "ema"])
def test_trend_streaming_equals_offline(kind):
    values = np.abs(np.random.default_rng(3).standard_normal((500, 3))) + 0.1
    trend = Trend(3, length=40, min_count=10, kind=kind)
    got = np.array([trend.ratio(v) for v in values])
    ref = offline_trend_ratio(values, 40, 10, kind)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert np.isnan(got[:10]).all() and np.isfinite(got[10:]).all()
    np.testing.assert_allclose(got[10:], ref[10:], rtol=1e-12)


def test_ema_trend_of_a_constant_is_that_constant_and_a_zero_trend_is_undefined():
    trend = Trend(2, length=50, min_count=1, kind="ema")
    for _ in range(5):
        r = trend.ratio(np.array([2.0, 0.0]))
    assert r[0] == pytest.approx(1.0, rel=1e-12)  # bias correction: no pull toward the zero start
    assert math.isnan(r[1])  # flat signal: trend 0, ratio undefined


@pytest.mark.parametrize("kind", ["mean", "ema"])
@pytest.mark.parametrize("hold_max", [None, 7])
def test_held_trend_streaming_equals_its_spelled_out_reference(kind, hold_max):
    rng = np.random.default_rng(11)
    values = np.abs(rng.standard_normal((400, 3))) + 0.5
    values[150:230, 0] *= 5.0  # an episode on channel 0 only
    values[300:320, 1] *= 4.0
    trend = Trend(3, length=40, min_count=10, kind=kind, hold_above=1.6, hold_max=hold_max)
    got = np.array([trend.ratio(v) for v in values])
    ref = offline_trend_ratio(values, 40, 10, kind, hold_above=1.6, hold_max=hold_max)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got[10:], ref[10:], rtol=1e-12)


@pytest.mark.parametrize("kind", ["mean", "ema"])
def test_a_held_trend_keeps_a_sustained_episode_above_its_baseline(kind):
    """A 60 s mean fed a 3x seizure loses its ratio within the seizure; held, it keeps it."""
    values = np.ones((1200, 1))
    values[600:, 0] = 3.0  # the episode: 3x the baseline, sustained for 60 s at 10 evaluations/s
    free = Trend(1, length=600, min_count=100, kind=kind)
    held = Trend(1, length=600, min_count=100, kind=kind, hold_above=1.5)
    r_free = np.array([free.ratio(v)[0] for v in values])
    r_held = np.array([held.ratio(v)[0] for v in values])
    assert r_free[600] == pytest.approx(3.0) and r_free[-1] < 1.5  # adapted into the seizure
    np.testing.assert_allclose(r_held[600:], 3.0)  # held at the pre-episode baseline throughout
    assert held.holding[0] and not free.holding[0]


def test_a_hold_ends_after_hold_max_and_the_next_episode_holds_afresh():
    trend = Trend(1, length=20, min_count=5, kind="mean", hold_above=1.5, hold_max=10)
    values = np.concatenate([np.ones(50), np.full(60, 3.0), np.ones(60), np.full(5, 6.0)])
    r = np.array([trend.ratio(np.array([v]))[0] for v in values])
    np.testing.assert_allclose(r[50:60], 3.0)  # held for its first 10 evaluations
    assert r[75] < 2.0  # then the trend follows the lasting change
    assert r[-5:] == pytest.approx(np.full(5, r[-5]))  # a new episode: held again from its first value
    assert trend.holding[0]


def test_hold_settings_are_checked():
    with pytest.raises(ValueError, match="hold_above is a ratio to the trend above 1"):
        Trend(1, 10, 5, hold_above=0.9)
    with pytest.raises(ValueError, match="hold_max must be at least one evaluation"):
        Trend(1, 10, 5, hold_above=1.5, hold_max=0)


def test_held_detector_equals_the_offline_reference():
    x = _noise(6000)[:, None] * np.ones((1, 2))
    x[3000:, 0] *= 4.0
    params = TrendedWindowParams(window_s=1.0, every_s=0.1, trend_s=20.0, band=Band(1, 30), hold_above=1.5,
                                 hold_max_s=15.0)
    got = _stream(LineLengthDetector(100.0, 2, params), x, 13)
    _assert_same(got, offline_line_length(x, 100.0, params))


# --------------------------------------------------------------------------- plumbing and errors


def test_reset_starts_over_like_a_fresh_detector():
    x = _noise(3000)[:, None]
    params = TrendedWindowParams(window_s=0.5, every_s=0.1, trend_s=5.0, band=Band(1, 40))
    det = LineLengthDetector(100.0, 1, params)
    first = _stream(det, x, 17)
    det.reset()
    _assert_same(_stream(det, x, 17), first)


def test_evaluators_start_over_when_the_pipeline_ring_is_reset():
    """The pipeline resets its rings on reconnect but not the evaluators: they notice by themselves."""
    x = np.ascontiguousarray(_triangle(400, half=5, amp=3.0)[None, :] + 0.01 * _noise(400)[None, :])
    ring = RingBuffer(1, 40)
    source = ChannelSource(ring, np.arange(1))
    ll = LineLengthFeature(source, 20, Trend(1, length=5, min_count=2))
    hw = HalfWaveFeature(source, 20, HalfWaveCriteria(1.0, math.inf, 2.0, 8.0))

    def run():
        out = []
        for end in range(20, 400, 10):  # window 20, hop 10
            ring.write(x[:, ring.count : end])
            out.append((ll(), hw()))
        return out

    first = np.array(run())
    assert np.isnan(first[0, 0]) and np.isfinite(first[-1]).all() and first[-1, 1] > 0
    ring.reset()
    np.testing.assert_array_equal(np.array(run()), first)


def test_halfwave_feature_refuses_a_ring_too_small_for_its_hop():
    ring = RingBuffer(1, 10)
    hw = HalfWaveFeature(ChannelSource(ring, np.arange(1)), 10, HalfWaveCriteria(1.0, math.inf, 2.0, 8.0))
    ring.write(np.zeros((1, 10)))
    hw()
    ring.write(np.zeros((1, 10)))
    ring.write(np.zeros((1, 5)))
    with pytest.raises(ValueError, match="halfwave_ring_capacity"):
        hw()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: LineLengthDetector(100.0, 1, TrendedWindowParams(window_s=0.01)), "at least 2 samples"),
        (lambda: AreaDetector(100.0, 1, TrendedWindowParams(every_s=0.001)), "hop of at least 1"),
        (lambda: LineLengthDetector(100.0, 1, TrendedWindowParams(trend_s=0.01)), "shorter than one evaluation hop"),
        (lambda: LineLengthDetector(100.0, 1, TrendedWindowParams(trend_s=10, trend_min_s=20)), "warm-up"),
        (lambda: LineLengthDetector(100.0, 1, TrendedWindowParams(trend="median")), "trend must be one of"),
        (lambda: AreaDetector(100.0, 1, TrendedWindowParams(band=Band(1, 60))), "not valid at fs=100"),
        (lambda: HalfWaveDetector(100.0, 2, HalfWaveParams(min_amplitude=(1.0, 2.0, 3.0))), "3 values for 2 channels"),
        (lambda: HalfWaveDetector(100.0, 1, HalfWaveParams(min_amplitude=5.0, max_amplitude=1.0)), "0 <= min <= max"),
        (lambda: HalfWaveDetector(100.0, 1, HalfWaveParams(min_amplitude=1.0, band=None)), "needs min_duration_s"),
        (lambda: HalfWaveDetector(100.0, 1, HalfWaveParams(1.0, min_duration_s=0.2, max_duration_s=0.1)), "0 < min <= max"),
        (lambda: LineLengthDetector(100.0, 2).push(np.zeros((5, 3))), r"shape \(n_samples, 2\)"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()
