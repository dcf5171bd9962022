"""Feature values mean what they say: synthetic signals, MNE's Welch, construction errors."""

import numpy as np
import pytest
from scipy import signal

from controller.dsp.spectral import WelchBandPowers
from controller.features import FeaturePipeline, offline_feature
from controller.lang.compiled import Band, FeatureSpec, InputSpec, StreamSelector

FS = 250.0
THETA, BETA = Band(4, 8), Band(13, 21)


def _input(**kw):
    return InputSpec("eeg", StreamSelector(type="EEG"), (), **kw)


def _feed(pipe, data, chunk=10):
    stamps = np.arange(len(data)) / FS
    out = []
    for a in range(0, len(data), chunk):
        out += pipe.push(data[a : a + chunk], stamps[a : a + chunk])
    return out


def _sine(freq, seconds=8.0, amp=1.0):
    t = np.arange(int(seconds * FS)) / FS
    noise = np.random.default_rng(0).standard_normal(t.size) * 0.01
    return amp * np.sin(2 * np.pi * freq * t) + noise


@pytest.mark.parametrize("method", ["welch", "iir"])
def test_six_hz_sine_has_high_theta_and_low_beta(method):
    x = _sine(6.0)[:, None]
    feats = [
        FeatureSpec("theta", "band_power", "eeg", ("Cz",), 2.0, 0.5, method=method, band=THETA),
        FeatureSpec("beta", "band_power", "eeg", ("Cz",), 2.0, 0.5, method=method, band=BETA),
        FeatureSpec("tbr", "band_ratio", "eeg", ("Cz",), 2.0, 0.5, method=method, numerator=THETA, denominator=BETA),
        FeatureSpec("rel", "relative_power", "eeg", ("Cz",), 2.0, 0.5, method=method, band=THETA),
    ]
    out = _feed(FeaturePipeline(FS, ["Cz"], _input(), feats), x)
    last = {v.name: v.value for v in out}  # the final window, long after filters settle
    assert last["theta"] == pytest.approx(0.5, rel=0.05)  # mean square of a unit sine
    assert last["beta"] < 1e-3 * last["theta"]
    assert last["tbr"] > 1000
    assert last["rel"] == pytest.approx(1.0, abs=0.02)


def test_peak_to_peak_of_a_sine_and_its_prefilter():
    t = np.arange(int(6 * FS)) / FS
    x = (50 * np.sin(2 * np.pi * 1.0 * t) + 5 * np.sin(2 * np.pi * 40 * t))[:, None]
    raw = FeatureSpec("ptp", "peak_to_peak", "eeg", ("Fp1",), 1.0, 0.5)
    slow = FeatureSpec("ptp_slow", "peak_to_peak", "eeg", ("Fp1",), 1.0, 0.5, band=Band(0.5, 4))
    last = {v.name: v.value for v in _feed(FeaturePipeline(FS, ["Fp1"], _input(), [raw, slow]), x)}
    assert last["ptp"] == pytest.approx(110, rel=0.02)
    assert last["ptp_slow"] == pytest.approx(100, rel=0.05)  # the 40 Hz ripple is filtered out


def test_multichannel_feature_is_the_mean_over_channels():
    x = np.c_[_sine(6.0, amp=1.0), _sine(6.0, amp=2.0)]
    feat = FeatureSpec("theta", "band_power", "eeg", ("C3", "C4"), 2.0, 1.0, band=THETA)
    last = _feed(FeaturePipeline(FS, ["C3", "C4"], _input(), [feat]), x)[-1]
    assert last.value == pytest.approx((0.5 + 2.0) / 2, rel=0.05)


def test_welch_band_powers_match_scipy_welch_exactly():
    x = np.random.default_rng(4).standard_normal((3, 700))  # 700 samples: nperseg 250, 4 segments
    powers = WelchBandPowers(FS, 700, [THETA, Band(0, FS / 2)])(x)
    f, psd = signal.welch(x, fs=FS, window="hann", nperseg=250, noverlap=125, detrend="constant")
    df = FS / 250
    theta = psd[:, (f >= 4) & (f <= 8)].sum(axis=1).mean() * df
    np.testing.assert_allclose(powers, [theta, psd.sum(axis=1).mean() * df], rtol=1e-12)


def test_welch_power_agrees_with_mne_psd_array_welch():
    mne_psd = pytest.importorskip("mne.time_frequency").psd_array_welch
    rng = np.random.default_rng(5)
    data = rng.standard_normal((2000, 2)) + np.sin(2 * np.pi * 6 * np.arange(2000) / FS)[:, None]
    feat = FeatureSpec("theta", "band_power", "eeg", ("Cz", "Pz"), 2.0, 1.0, band=THETA)
    idx, values = offline_feature(data, FS, ["Cz", "Pz"], _input(), feat)
    online = _feed(FeaturePipeline(FS, ["Cz", "Pz"], _input(), [feat]), data, chunk=13)
    np.testing.assert_allclose([v.value for v in online], values, rtol=1e-9)
    w, nperseg = 500, 250
    for k, v in zip(idx, values):
        psd, freqs = mne_psd(
            data[k - w + 1 : k + 1].T, FS, fmin=4, fmax=8, n_fft=nperseg, n_per_seg=nperseg,
            n_overlap=nperseg // 2, window="hann", average="mean", verbose="error",
        )
        assert freqs[0] == 4 and freqs[-1] == 8
        np.testing.assert_allclose(psd.sum(axis=1).mean() * (FS / nperseg), v, rtol=1e-9)


def test_zero_denominator_gives_nan_not_an_exception():
    feat = FeatureSpec("tbr", "band_ratio", "eeg", ("Cz",), 1.0, 0.5, numerator=THETA, denominator=BETA)
    out = _feed(FeaturePipeline(FS, ["Cz"], _input(), [feat]), np.zeros((500, 1)))
    assert out and all(np.isnan(v.value) for v in out)


def test_unknown_channel_names_the_label_and_lists_available():
    feat = FeatureSpec("theta", "band_power", "eeg", ("Oz",), 2.0, 0.5, band=THETA)
    with pytest.raises(ValueError) as err:
        FeaturePipeline(FS, ["EEG Cz", "EEG Pz"], _input(), [feat])
    msg = str(err.value)
    assert "'Oz'" in msg and "feature 'theta'" in msg and "'EEG Cz', 'EEG Pz'" in msg


def test_unknown_reference_channel_is_refused():
    feat = FeatureSpec("theta", "band_power", "eeg", ("Cz",), 2.0, 0.5, band=THETA)
    with pytest.raises(ValueError, match="'M1'.*reference of input 'eeg'"):
        FeaturePipeline(FS, ["Cz", "Pz"], _input(reference=("M1",)), [feat])


def test_feature_channel_outside_the_input_channels_is_refused():
    feat = FeatureSpec("theta", "band_power", "eeg", ("Pz",), 2.0, 0.5, band=THETA)
    with pytest.raises(ValueError, match="'Pz' is not among the channels of input 'eeg'"):
        FeaturePipeline(FS, ["Cz", "Pz"], InputSpec("eeg", StreamSelector(), ("Cz",)), [feat])


@pytest.mark.parametrize(
    "feat, match",
    [
        (FeatureSpec("emg", "band_power", "eeg", ("Cz",), 0.5, 0.1, method="iir", band=Band(45, 130)), "feature 'emg'.*125.0"),
        (FeatureSpec("emg", "band_power", "eeg", ("Cz",), 0.5, 0.1, band=Band(45, 130)), "feature 'emg' band 1"),
        (FeatureSpec("r", "band_ratio", "eeg", ("Cz",), 1.0, 0.1, numerator=THETA), "feature 'r'.*denominator"),
        (FeatureSpec("p", "band_power", "eeg", ("Cz",), 1.0, 0.001, band=THETA), "feature 'p'.*at least 1 sample"),
        (FeatureSpec("p", "band_power", "other", ("Cz",), 1.0, 0.1, band=THETA), "reads input 'other'"),
    ],
)
def test_invalid_features_are_refused_naming_the_feature(feat, match):
    with pytest.raises(ValueError, match=match):
        FeaturePipeline(FS, ["Cz"], _input(), [feat])
