"""Real-time EEG phase estimation for phase-locked TMS: circular statistics, Laplacian by label,
AR / ETP / naive phase methods, the streaming tracker, the trigger, and accuracy on real EEG
against the offline zero-phase ground truth.

Real recording: PhysioNet eegmat Subject00 rest (500 Hz, 10-20 cap, ODC-By 1.0; see
shared/data/MANIFEST.md).
"""

import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from controller.dsp.circular import angle_diff, circ_mean, circ_std, resultant_length, wrap_angle
from controller.dsp.features import ChannelSource
from controller.dsp.laplacian import C3_NEIGHBOURS_1010, C3_NEIGHBOURS_1020, Laplacian
from controller.dsp.phase.ar import ArForecaster, ArPhase, analytic_rows, burg, yule_walker
from controller.dsp.phase.etp import EtpPhase, fit_etp
from controller.dsp.phase.feature import PhaseFeature
from controller.dsp.phase.naive import HilbertPhase
from controller.dsp.phase.tracker import PhaseEstimate, PhaseTracker
from controller.dsp.phase.trigger import PhaseTrigger
from controller.dsp.phase.truth import TruePhase
from controller.dsp.ring import RingBuffer
from controller.lang.compiled import Band, FeatureSpec, PhaseParams
from controller.offline.phase_replay import fire, replay

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "eeg"
MU = Band(8.0, 13.0)
DEG = math.pi / 180.0

# --------------------------------------------------------------------------- circular statistics


def test_circular_mean_and_sd_wrap_around_pi():
    a = np.array([179.0, -179.0, 178.0, -178.0]) * DEG  # clustered at 180 deg, straddling the wrap
    assert abs(angle_diff(circ_mean(a), math.pi)) < 1e-9
    assert circ_std(a) == pytest.approx(np.std([179, 181, 178, 182]) * DEG, rel=1e-3)
    naive = np.mean(a)  # the arithmetic mean would say 0 deg: the wrong side of the circle
    assert abs(angle_diff(naive, circ_mean(a))) > 179 * DEG


def test_circular_sd_matches_linear_sd_for_small_spread_and_grows_for_uniform():
    rng = np.random.default_rng(0)
    a = wrap_angle(math.pi + rng.normal(0.0, 10 * DEG, 20000))  # centred on the wrap point
    assert circ_std(a) == pytest.approx(10 * DEG, rel=0.03)
    assert abs(angle_diff(circ_mean(a), math.pi)) < 0.5 * DEG
    u = rng.uniform(-math.pi, math.pi, 20000)
    assert resultant_length(u) < 0.03 and circ_std(u) > 150 * DEG
    assert circ_std(np.full(5, 2.0)) == 0.0
    assert math.isnan(circ_mean(np.empty(0))) and math.isnan(circ_std(np.empty(0)))


def test_wrap_and_difference():
    assert wrap_angle(3 * math.pi) == pytest.approx(-math.pi)
    assert angle_diff(-179 * DEG, 179 * DEG) == pytest.approx(2 * DEG)
    np.testing.assert_allclose(wrap_angle(np.array([0.0, 2 * math.pi, -3 * math.pi / 2])), [0.0, 0.0, math.pi / 2], atol=1e-12)


# --------------------------------------------------------------------------- Laplacian


def test_laplacian_by_label_across_spellings():
    labels = ["Fc5.", "Fc1.", "C3..", "Cz..", "Cp5.", "Cp1.", "O1.."]  # BCI2000 / PhysioNet spelling
    lap = Laplacian(labels, "C3", C3_NEIGHBOURS_1010)
    assert lap.center == "C3.." and set(lap.neighbours) == {"Fc1.", "Fc5.", "Cp1.", "Cp5."} and lap.missing == ()
    chunk = np.random.default_rng(1).standard_normal((9, len(labels)))
    expected = chunk[:, 2] - chunk[:, [0, 1, 4, 5]].mean(axis=1)
    np.testing.assert_allclose(lap.apply(chunk), expected, rtol=1e-12)
    np.testing.assert_allclose(chunk @ lap.weights(len(labels)), expected, rtol=1e-12)


def test_laplacian_missing_neighbours_fail_or_are_dropped_and_listed():
    labels = ["EEG C3", "EEG F3", "EEG Cz", "EEG P3", "EEG T3"]  # a 10-20 cap: no 10-10 ring
    with pytest.raises(ValueError, match="unknown channel 'FC1'"):
        Laplacian(labels, "C3", C3_NEIGHBOURS_1010)
    with pytest.raises(ValueError, match="none of the neighbours"):
        Laplacian(labels, "C3", C3_NEIGHBOURS_1010, allow_missing=True)
    partial = Laplacian(labels + ["EEG FC1"], "C3", C3_NEIGHBOURS_1010, allow_missing=True)
    assert partial.neighbours == ("EEG FC1",) and partial.missing == ("FC5", "CP1", "CP5")
    ring = Laplacian(labels, "C3", C3_NEIGHBOURS_1020)
    assert ring.neighbours == ("EEG F3", "EEG Cz", "EEG P3", "EEG T3")
    with pytest.raises(ValueError, match="repeats channel"):
        Laplacian(labels, "C3", ("F3", "C3"))


# --------------------------------------------------------------------------- building blocks


def test_ar_fits_recover_a_known_process_and_forecast_continues_the_recursion():
    e = np.random.default_rng(2).standard_normal(20000)
    y = signal.lfilter([1.0], [1.0, -1.5, 0.8], e)  # AR(2): y[t] = 1.5 y[t-1] - 0.8 y[t-2] + e
    np.testing.assert_allclose(yule_walker(y, 2), [1.5, -0.8], atol=0.02)
    np.testing.assert_allclose(burg(y, 2), [1.5, -0.8], atol=0.02)
    phi = burg(y[:300], 6)
    hist = list(y[:300])
    for _ in range(25):
        hist.append(float(np.dot(phi, hist[:-7:-1])))
    np.testing.assert_allclose(ArForecaster(6, 25)(y[:300], phi), hist[300:], rtol=1e-10, atol=1e-12)


def test_analytic_rows_equal_scipy_hilbert_on_the_grid():
    for n in (90, 91):
        x = np.random.default_rng(n).standard_normal(n)
        np.testing.assert_allclose(analytic_rows(np.arange(n, dtype=float), n) @ x, signal.hilbert(x), atol=1e-12)


def test_ground_truth_phase_of_a_cosine():
    fs, f0 = 250.0, 10.0
    t = np.arange(int(30 * fs)) / fs
    truth = TruePhase(np.cos(2 * math.pi * f0 * t + 0.5), fs, MU, t0=100.0)
    mid = slice(int(5 * fs), int(25 * fs))
    err = angle_diff(truth.phase[mid], 2 * math.pi * f0 * t[mid] + 0.5)
    assert np.max(np.abs(err)) < 1 * DEG
    tq = 100.0 + np.array([10.0, 10.0 + 0.3 / fs])  # between samples: interpolated
    assert np.max(np.abs(angle_diff(truth.phase_at(tq), 2 * math.pi * f0 * (tq - 100.0) + 0.5))) < 1 * DEG
    assert np.isnan(truth.phase_at(np.array([99.0]))[0])


# --------------------------------------------------------------------------- synthetic sine through the tracker

FS = 500.0
F0 = 10.0
PHI0 = 0.3
T0 = 50.0
LABELS = ["C3", "FC1", "FC5", "CP1", "CP5", "Cz"]


@cache
def _sine_recording(seconds: float = 14.0):
    """10 Hz cosine + white noise (in-band SNR ~ 17 dB) at C3 on top of a drifting signal that
    every electrode shares: the Laplacian must remove the shared part."""
    rng = np.random.default_rng(7)
    n = int(seconds * FS)
    t = np.arange(n) / FS
    shared = np.cumsum(rng.standard_normal(n)) * 0.1 + 5.0 * np.sin(2 * math.pi * 0.3 * t)
    data = np.tile(shared[:, None], (1, len(LABELS)))
    data[:, 0] += np.cos(2 * math.pi * F0 * t + PHI0) + rng.standard_normal(n)
    return np.ascontiguousarray(data), T0 + t


def _sine_phase(times):
    return 2 * math.pi * F0 * (np.asarray(times) - T0) + PHI0


def _true_next_crossing(times, target):
    """First time >= ``times`` at which the sine's phase is ``target`` (mod 2 pi)."""
    cycles = (_sine_phase(times) - target) / (2 * math.pi)
    return np.asarray(times) + (np.ceil(cycles) - cycles) / F0


@cache
def _methods(delay=0.01, target=math.pi):
    data, _ = _sine_recording()
    x = Laplacian(LABELS, "C3", C3_NEIGHBOURS_1010).apply(data)
    model = fit_etp(x[: int(6 * FS)], FS, MU)
    return {
        "ar_burg": ArPhase(FS, MU, delay_s=delay, target_phase=target),
        "ar_yw": ArPhase(FS, MU, fit="yule_walker", delay_s=delay, target_phase=target),
        "etp": EtpPhase(FS, model, MU, delay_s=delay, target_phase=target),
        "naive": HilbertPhase(FS, MU, delay_s=delay, target_phase=target),
    }


def _track(method, chunk=32, every_s=0.01):
    return _track_cached(method, chunk, every_s)


@cache
def _track_cached(method, chunk, every_s):
    data, stamps = _sine_recording()
    tracker = PhaseTracker(FS, len(LABELS), Laplacian(LABELS, "C3", C3_NEIGHBOURS_1010), method, every_s=every_s)
    return replay(tracker, data, stamps, chunk=chunk)


def test_etp_learns_the_period_of_a_sine():
    data, _ = _sine_recording()
    x = Laplacian(LABELS, "C3", C3_NEIGHBOURS_1010).apply(data)
    model = fit_etp(x[: int(6 * FS)], FS, MU)
    assert model.period_s == pytest.approx(1 / F0, rel=0.01)
    # A 10 Hz cosine sits near the band's centre, where the causal band-pass barely shifts phase.
    assert abs(angle_diff(model.peak_phase, 0.0)) < 20 * DEG
    assert abs(angle_diff(model.trough_phase, math.pi)) < 20 * DEG
    plain = fit_etp(x[: int(6 * FS)], FS, MU, learn_offsets=False)
    assert (plain.peak_phase, plain.trough_phase) == (0.0, math.pi) and plain.period_s == model.period_s


@pytest.mark.parametrize("name, max_sd_deg, max_bias_deg", [("ar_burg", 18, 5), ("ar_yw", 16, 5), ("etp", 25, 8)])
def test_predictive_methods_estimate_the_phase_of_a_noisy_sine(name, max_sd_deg, max_bias_deg):
    """Phase at now + 10 ms delay against the sine's own phase; amplitude and frequency too.

    Measured (seed 7): circular SD 12.9 / 11.8 / 19.1 deg, bias 1.9 / 0.3 / 3.9 deg (Burg, YW, ETP);
    with in-band noise at -17 dB, about 8 deg of that spread is the noise in the true signal itself.
    ETP's broad first-order filter lets more of the white noise through than EEG's 1/f background would.
    """
    s = _track(_methods()[name])
    s = s.select(s.source_time >= T0 + 2.0)  # after the causal filters have settled
    err = angle_diff(s.phase, _sine_phase(s.at_time))
    assert len(s) > 1000
    np.testing.assert_allclose(s.at_time - s.source_time, 0.01)
    assert abs(circ_mean(err)) < max_bias_deg * DEG
    assert circ_std(err) < max_sd_deg * DEG
    assert np.median(s.frequency_hz) == pytest.approx(F0, rel=0.02)
    assert 0.5 < np.median(s.amplitude) < 1.3  # unit cosine; AR forecasts damp a little


@pytest.mark.parametrize("name, median_ms, p95_ms", [("ar_burg", 4, 11), ("ar_yw", 4, 10), ("etp", 5, 13)])
@pytest.mark.parametrize("target", [math.pi, 0.0])
def test_predicted_crossing_times_are_close_to_the_true_ones(name, median_ms, p95_ms, target):
    """Measured |error| median / p95: 2.6 / 7.8 ms (Burg), 2.5 / 6.9 ms (YW), 3.5 / 9.7 ms (ETP); 1 ms = 3.6 deg at 10 Hz."""
    s = _track(_methods(target=target)[name])
    s = s.select(s.source_time >= T0 + 2.0)
    assert np.all(s.next_target_time >= s.at_time - 1e-9)  # never earlier than the system delay allows
    assert np.all(s.next_target_time - s.at_time < 1.5 / MU.lo_hz)
    dt = s.next_target_time - _true_next_crossing(s.at_time, target)
    dt = (dt + 0.5 / F0) % (1 / F0) - 0.5 / F0  # a crossing just before at_time counts as one period off, not as wrong
    assert np.median(np.abs(dt)) < median_ms * 1e-3
    assert np.percentile(np.abs(dt), 95) < p95_ms * 1e-3


def test_naive_baseline_lags_behind_ar_prediction():
    """On the same sine the naive causal Hilbert is less accurate than AR (its filter lag and edge are uncorrected)."""
    errs = {}
    for name, method in _methods().items():
        if name == "etp":
            continue
        s = _track(method)
        s = s.select(s.source_time >= T0 + 2.0)
        e = angle_diff(s.phase, _sine_phase(s.at_time))
        errs[name] = math.hypot(circ_mean(e), circ_std(e))  # bias and spread together
    # Measured: naive 18.7 deg (15 deg of it bias), Burg 13.0, YW 11.8 (ETP 19.5: white noise, see above).
    assert errs["naive"] > max(errs["ar_burg"], errs["ar_yw"])
    assert abs(circ_mean(angle_diff(*_naive_and_true()))) > 10 * DEG  # the uncorrected lag shows as bias


def _naive_and_true():
    s = _track(_methods()["naive"])
    s = s.select(s.source_time >= T0 + 2.0)
    return s.phase, _sine_phase(s.at_time)


@pytest.mark.parametrize("name", ["ar_burg", "etp", "naive"])
def test_estimates_do_not_depend_on_chunk_size(name):
    method = _methods()[name]
    runs = [_track(method, chunk=c, every_s=0.01) for c in (1, 7, 32)]
    for other in runs[1:]:
        np.testing.assert_array_equal(other.sample_index, runs[0].sample_index)
        for field in ("phase", "amplitude", "frequency_hz", "at_time", "next_target_time", "source_time"):
            np.testing.assert_allclose(getattr(other, field), getattr(runs[0], field), rtol=1e-12, atol=1e-12)
    assert runs[0].sample_index[0] == method.window - 1
    assert np.all(np.diff(runs[0].sample_index) == 5)  # 10 ms at 500 Hz


@pytest.mark.parametrize("name", ["ar_burg", "etp", "naive"])
def test_tracker_equals_the_method_on_whole_array_windows(name):
    """Online (ring, carried filter state) equals offline (whole-array Laplacian + sosfilt, sliced windows)."""
    method = _methods()[name]
    data, stamps = _sine_recording()
    s = _track(method, chunk=13, every_s=0.05)
    x = Laplacian(LABELS, "C3", C3_NEIGHBOURS_1010).apply(data)
    if method.causal_sos is not None:
        x = signal.sosfilt(method.causal_sos, x)
    w = method.window
    expected = np.array([method(x[k - w + 1 : k + 1]) for k in s.sample_index])
    np.testing.assert_allclose(s.phase, expected[:, 0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(s.amplitude, expected[:, 1], rtol=1e-9)
    np.testing.assert_allclose(s.next_target_time, stamps[s.sample_index] + expected[:, 3], rtol=0, atol=1e-9)


def test_tracker_reset_and_input_checks():
    method = _methods()["etp"]
    data, stamps = _sine_recording()
    tracker = PhaseTracker(FS, len(LABELS), Laplacian(LABELS, "C3", C3_NEIGHBOURS_1010), method, every_s=0.02)
    first = tracker.push(data[:2000], stamps[:2000])
    tracker.reset()
    assert tracker.sample_count == 0
    assert tracker.push(data[:2000], stamps[:2000]) == first
    with pytest.raises(ValueError, match=r"shape \(n_samples, 6\)"):
        tracker.push(data[:10, :5], stamps[:10])
    with pytest.raises(ValueError, match="timestamps"):
        tracker.push(data[:10], stamps[:9])
    with pytest.raises(ValueError, match="at least 1"):
        PhaseTracker(FS, 6, Laplacian(LABELS, "C3", C3_NEIGHBOURS_1010), method, every_s=0.0001)
    with pytest.raises(ValueError, match="AR order 30 needs"):
        ArPhase(160.0, MU, window_s=0.3, order=30)


# --------------------------------------------------------------------------- trigger


def _est(t, ahead, amp=1.0):
    return PhaseEstimate(0.0, amp, 10.0, t + 0.01, t + ahead, t, 0)


def test_trigger_waits_for_the_last_estimate_that_can_still_make_it():
    trig = PhaseTrigger(min_interval_s=2.0, hop_s=0.004, device_delay_s=0.01)
    assert trig.decide(_est(10.0, 0.05)) is None  # send at 10.04: a later estimate can still do it
    assert trig.decide(_est(10.036, 0.0155)) is None  # send at 10.0415 >= next estimate at 10.040
    assert trig.decide(_est(10.040, 0.012)) == pytest.approx(10.052)  # send at 10.042 < 10.044: now
    assert trig.last_pulse_time == pytest.approx(10.052)


def test_trigger_min_interval_and_amplitude_gate():
    trig = PhaseTrigger(min_interval_s=2.0, hop_s=0.01, amplitude_threshold=0.5, device_delay_s=0.0)
    assert trig.decide(_est(1.0, 0.005)) == pytest.approx(1.005)
    assert trig.decide(_est(2.0, 0.005)) is None  # 1.0 s after the last pulse
    assert trig.decide(_est(3.0, 0.004)) is None  # 1.999 s
    assert trig.decide(_est(3.1, 0.005, amp=0.2)) is None  # below the gate
    assert trig.decide(_est(3.2, math.nan)) is None  # no crossing predicted
    assert trig.decide(_est(3.2, 0.005)) == pytest.approx(3.205)
    with pytest.raises(ValueError, match="hop_s > 0"):
        PhaseTrigger(min_interval_s=1.0, hop_s=0.0)


def test_firing_on_a_sine_hits_the_target_phase():
    method = _methods(target=math.pi)["ar_burg"]
    s = _track(method, every_s=0.004)
    pulses = fire(s, PhaseTrigger(min_interval_s=0.5, hop_s=0.004, device_delay_s=0.01), start_time=T0 + 2.0)
    assert len(pulses) >= 20 and np.all(np.diff(pulses) >= 0.5)
    err = angle_diff(_sine_phase(pulses), math.pi)
    assert abs(circ_mean(err)) < 10 * DEG and circ_std(err) < 25 * DEG


# --------------------------------------------------------------------------- real EEG

EEGMAT = "physionet_eegmat_Subject00_1_rest.edf"
TRAIN_S = 20.0


@cache
def _eegmat():
    """(data in uV (n, ch), fs, labels, stamps) of the eegmat resting recording."""
    mne = pytest.importorskip("mne")
    path = DATA / EEGMAT
    if not path.exists():
        pytest.skip(f"real recording {path} is absent (shared/data not mounted)")
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    fs = float(raw.info["sfreq"])
    data = np.ascontiguousarray(raw.get_data().T * 1e6)
    return data, fs, tuple(raw.ch_names), 1000.0 + np.arange(data.shape[0]) / fs


@cache
def _real_run(kind: str):
    """Trough-targeted firing on the eegmat test part (after TRAIN_S): 10 ms system delay, an
    estimate every 10 ms, 2 s minimum interval, gate = median amplitude of the method's own
    estimates over the training part. Returns (phase errors at the pulses, dense phase errors of
    all gated test estimates), both in rad against the zero-phase ground truth."""
    data, fs, labels, stamps = _eegmat()
    lap = Laplacian(labels, "C3", C3_NEIGHBOURS_1020)  # 10-20 cap: FC1/FC5/CP1/CP5 do not exist
    x = lap.apply(data)
    truth = TruePhase(x, fs, MU, t0=stamps[0])
    n_train = int(TRAIN_S * fs)
    common = {"delay_s": 0.01, "target_phase": math.pi}
    method = {
        "ar": lambda: ArPhase(fs, MU, **common),
        "etp": lambda: EtpPhase(fs, fit_etp(x[:n_train], fs, MU), MU, **common),
        "naive": lambda: HilbertPhase(fs, MU, **common),
        "naive1": lambda: HilbertPhase(fs, MU, order=1, **common),
    }[kind]()
    series = replay(PhaseTracker(fs, data.shape[1], lap, method, every_s=0.01), data, stamps, chunk=50)
    train_end = stamps[n_train]
    gate = float(np.median(series.amplitude[series.source_time < train_end]))
    trigger = PhaseTrigger(min_interval_s=2.0, hop_s=0.01, amplitude_threshold=gate, device_delay_s=0.01)
    pulses = fire(series, trigger, start_time=train_end)
    assert np.all(np.diff(pulses) >= 2.0)
    dense = series.select((series.source_time >= train_end) & (series.amplitude >= gate))
    dense_err = angle_diff(dense.phase, truth.phase_at(dense.at_time))
    return angle_diff(truth.phase_at(pulses), math.pi), dense_err[np.isfinite(dense_err)]


@pytest.mark.slow
def test_real_eeg_ar_pulses_land_near_the_trough_and_beat_the_naive_baseline():
    """C3 Laplacian of real resting EEG, trough-targeted pulses scored against the zero-phase truth.

    Measured: AR (Burg, 1 s) 74 pulses, circular mean +3 deg, circular SD 47 deg (bootstrap 95 %
    interval 37-56 deg); naive causal Hilbert (the pipeline's 4th-order band-pass) 59 pulses, mean
    +22 deg, SD 117 deg. The 60 deg bound lies above AR's bootstrap interval and within the range
    reported for real-time phase estimation of resting mu-alpha (circular SD about 40-60 deg).
    """
    ar, naive = _real_run("ar")[0], _real_run("naive")[0]
    assert ar.size >= 50 and naive.size >= 30  # ~162 s of test signal, 2 s apart, about half gated out
    assert abs(circ_mean(ar)) < 20 * DEG
    assert circ_std(ar) < 60 * DEG
    assert circ_std(ar) < circ_std(naive)


@pytest.mark.slow
def test_real_eeg_etp_pulses_land_near_the_trough():
    """Measured: ETP 74 pulses, mean +0.5 deg, SD 40.5 deg (bootstrap 95 % interval 31-51 deg)."""
    etp = _real_run("etp")[0]
    assert etp.size >= 50
    assert abs(circ_mean(etp)) < 20 * DEG
    assert circ_std(etp) < 60 * DEG


@pytest.mark.slow
def test_real_eeg_phase_at_every_gated_estimate_beats_both_naive_variants():
    """The phase of every gated estimate (~8000 of them), not only at pulses.

    Measured circular mean / SD: AR -6 / 49 deg, ETP +2 / 48 deg, naive with the pipeline's
    4th-order band-pass +21 / 114 deg, naive with a 1st-order band-pass +31 / 58 deg. (At the
    pulses the 1st-order naive variant scores 39 deg SD, no better or worse than AR and ETP within
    the bootstrap intervals: firing only on the first predicted crossing hides part of its bias.)
    """
    dense = {k: _real_run(k)[1] for k in ("ar", "etp", "naive", "naive1")}
    assert all(d.size > 5000 for d in dense.values())
    for k in ("ar", "etp"):
        assert abs(circ_mean(dense[k])) < 12 * DEG
        assert circ_std(dense[k]) < 53 * DEG
        assert circ_std(dense[k]) < min(circ_std(dense["naive"]), circ_std(dense["naive1"]))
    assert abs(circ_mean(dense["naive1"])) > 20 * DEG  # the uncorrected filter lag


def test_an_etp_phase_feature_without_training_time_is_refused_by_name() -> None:
    """A spec built in code (not compiled from a protocol, whose check requires ``train``) with method etp
    and no train_s: a ValueError naming the feature, like every other bad phase spec (was a TypeError)."""
    spec = FeatureSpec("mu", "phase", "eeg", ("C3",), 1.0, 0.01, band=MU, params=PhaseParams("C3", method="etp"))
    source = ChannelSource(RingBuffer(1, 500), np.arange(1))
    with pytest.raises(ValueError, match="feature 'mu': etp needs train_s"):
        PhaseFeature(source, spec, 500.0, 5)
