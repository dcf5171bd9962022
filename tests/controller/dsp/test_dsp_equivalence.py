"""Online (chunk by chunk) features equal the offline whole-array computation on real EEG.

Recordings: PhysioNet eegmat (Subject00, 21 ch, 500 Hz, labels 'EEG Cz') and eegmmidb
(S001R01, 64 ch, 160 Hz, labels 'Cz..'), ODC-By 1.0; see shared/data/MANIFEST.md.
"""

from functools import cache
from pathlib import Path

import numpy as np
import pytest

from controller.features import FeaturePipeline, offline_feature
from controller.lang.compiled import Band, FeatureSpec, InputSpec, StreamSelector

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "eeg"
SECONDS = 20.0  # enough for many windows, short enough for one-sample chunks

THETA, ALPHA, BETA, EMG = Band(4, 8), Band(8, 12), Band(13, 21), Band(45, 70)

RECORDINGS = {
    "eegmat": (
        "physionet_eegmat_Subject00_1_rest.edf",
        InputSpec("eeg", StreamSelector(type="EEG"), (), reference="average", highpass_hz=0.5, notch_hz=50.0),
    ),
    "eegmmidb": (
        "physionet_eegmmidb_S001R01_baseline_eyes_open.edf",
        InputSpec("eeg", StreamSelector(type="EEG"), (), reference=("T9", "T10"), highpass_hz=1.0, notch_hz=60.0),
    ),
}


def _features() -> list[FeatureSpec]:
    f = FeatureSpec
    return [
        f("theta_welch", "band_power", "eeg", ("Cz",), 2.0, 0.1, band=THETA),
        f("theta_iir", "band_power", "eeg", ("Cz",), 2.0, 0.1, method="iir", band=THETA),
        f("tbr_welch", "band_ratio", "eeg", ("Cz", "Fz"), 2.0, 0.1, numerator=THETA, denominator=BETA),
        f("tbr_iir", "band_ratio", "eeg", ("Cz", "Fz"), 2.0, 0.1, method="iir", numerator=THETA, denominator=BETA),
        f("alpha_rel_welch", "relative_power", "eeg", ("O1", "O2"), 3.0, 0.25, band=ALPHA),
        f("alpha_rel_iir", "relative_power", "eeg", ("O1", "O2"), 3.0, 0.25, method="iir", band=ALPHA, total=Band(2, 30)),
        f("emg", "band_power", "eeg", ("C3", "C4"), 0.5, 0.1, band=EMG),
        f("blink", "peak_to_peak", "eeg", ("Fp1", "Fp2"), 0.5, 0.1, band=Band(0.5, 4)),
        f("ptp_raw", "peak_to_peak", "eeg", ("Pz",), 1.0, 0.3),
    ]


@cache
def _recording(key: str):
    """(data (n, ch), fs, labels, timestamps) of the first SECONDS of a recording."""
    mne = pytest.importorskip("mne")
    path = DATA / RECORDINGS[key][0]
    if not path.exists():
        pytest.skip(f"real recording {path} is absent (shared/data not mounted)")
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    fs = float(raw.info["sfreq"])
    data = np.ascontiguousarray(raw.get_data()[:, : int(SECONDS * fs)].T)
    jitter = np.random.default_rng(0).uniform(0, 1e-4, len(data))  # LSL stamps are not a perfect grid
    stamps = 12345.0 + np.arange(len(data)) / fs + jitter
    return data, fs, tuple(raw.ch_names), stamps


@cache
def _offline(key: str):
    data, fs, labels, _ = _recording(key)
    return {f.name: offline_feature(data, fs, labels, RECORDINGS[key][1], f) for f in _features()}


@pytest.mark.parametrize("chunk", [1, 7, 32])
@pytest.mark.parametrize("key", sorted(RECORDINGS))
def test_online_equals_offline_on_real_eeg(key, chunk):
    data, fs, labels, stamps = _recording(key)
    pipe = FeaturePipeline(fs, labels, RECORDINGS[key][1], _features())
    out = []
    for a in range(0, len(data), chunk):
        out += pipe.push(data[a : a + chunk], stamps[a : a + chunk])

    assert [v.sample_index for v in out] == sorted(v.sample_index for v in out)
    for name, (indices, expected) in _offline(key).items():
        got = [v for v in out if v.name == name]
        assert len(indices) > 10, name
        np.testing.assert_array_equal([v.sample_index for v in got], indices, err_msg=name)
        np.testing.assert_array_equal([v.source_time for v in got], stamps[indices], err_msg=name)
        assert np.all(np.isfinite(expected)) and np.all(expected > 0), name
        np.testing.assert_allclose([v.value for v in got], expected, rtol=1e-9, err_msg=name)


def test_offline_values_are_physiologically_plausible():
    """Guards the reference itself: eyes-closed rest (eegmat) is alpha-dominated at O1/O2."""
    values = _offline("eegmat")
    assert np.median(values["alpha_rel_welch"][1]) > 0.4
    assert np.median(values["tbr_welch"][1]) > 0  # defined everywhere
    assert np.median(values["blink"][1]) < 500e-6  # volts: blink-band excursions below 500 uV
