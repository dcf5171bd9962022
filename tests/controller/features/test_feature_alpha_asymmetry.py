"""Frontal alpha asymmetry (alpha_asymmetry): ln(alpha power at F4) - ln(alpha power at F3).

Protocol YAML -> compiled spec; load-time errors at FILE:LINE:COL; the value's meaning on a
synthetic signal; and on real EEG streamed in amplifier-sized chunks, online == offline.
Recordings (shared/data/MANIFEST.md): PhysioNet eegmat Subject00 rest (21 ch, 500 Hz, labels
'EEG F3') and eegmmidb S001R01 eyes-open baseline (64 ch, 160 Hz, labels 'F3..'), read by MNE
in volts as an amplifier's stream is after the input's unit scaling. ODC-By 1.0.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

from controller.features import FeaturePipeline, offline_values
from controller.lang.compiled import Band
from controller.protocol import ProtocolError, json_schema, loads_protocol

EEG = Path(__file__).resolve().parents[4] / "shared" / "data" / "eeg"
RECORDINGS = {
    "eegmat": ("physionet_eegmat_Subject00_1_rest.edf", "reference: average, highpass: 0.5 Hz, notch: 50 Hz"),
    "eegmmidb": ("physionet_eegmmidb_S001R01_baseline_eyes_open.edf", "reference: [T9, T10], highpass: 1 Hz, notch: 60 Hz"),
}
SECONDS = 30.0
CHUNKS = (1, 8, 32)  # a sample at a time, a g.USBamp block, a large block


def _protocol(feature: str, input_extra: str = "reference: average, highpass: 0.5 Hz",
              channels: str = "F3, F4, F7, F8, Cz"):
    return loads_protocol(
        f"protocol: faa\ninputs: {{eeg: {{stream: {{type: EEG}}, channels: [{channels}], {input_extra}}}}}\n"
        f"features:\n  faa: {feature}\n"
        "timeline: [{train: 5 min}]\nrules: [{during: train, when: faa > 0, do: {feedback: reward}}]\n",
        "faa.yaml",
    )


def test_defaults_are_f4_over_f3_in_the_alpha_band() -> None:
    spec = _protocol("{alpha_asymmetry: {input: eeg, window: 2 s, every: 250 ms}}").features["faa"]
    assert (spec.kind, spec.channels, spec.band) == ("alpha_asymmetry", ("F4", "F3"), Band(8.0, 13.0))
    assert (spec.window_s, spec.every_s, spec.segment_s, spec.overlap) == (2.0, 0.25, None, 0.5)
    other = _protocol("{alpha_asymmetry: {input: eeg, right: F8, left: F7, band: [8 Hz, 12 Hz], window: 4 s, "
                      "every: 500 ms, segment: 2 s}}").features["faa"]
    assert (other.channels, other.band, other.segment_s) == (("F8", "F7"), Band(8.0, 12.0), 2.0)


def test_schema_documents_the_kind() -> None:
    kinds = json_schema()["$defs"]["FeatureDecl"]["properties"]
    assert "F4" in kinds["alpha_asymmetry"]["description"]
    decl = json_schema()["$defs"]["AlphaAsymmetryDecl"]
    assert set(decl["properties"]) >= {"input", "right", "left", "band", "window", "every"}


@pytest.mark.parametrize(
    ("feature", "channels", "expected"),
    [
        ("{alpha_asymmetry: {input: eeg, right: F4, left: C3, window: 2 s, every: 250 ms}}", "F3, F4",
         "faa.yaml:4:56: left: 'C3' is not a channel of input 'eeg'; add it to the input's channels "
         "(its channels: F3, F4)"),
        ("{alpha_asymmetry: {input: eeg, window: 2 s, every: 250 ms}}", "F4, Cz",
         "faa.yaml:4:26: left: 'F3' is not a channel of input 'eeg'; add it to the input's channels "
         "(its channels: F4, Cz)"),
        ("{alpha_asymmetry: {input: eeg, right: F3, window: 2 s, every: 250 ms}}", "F3, F4",
         "faa.yaml:4:26: alpha_asymmetry: right and left are both 'F3'; an asymmetry compares two channels, "
         "e.g. right: F4, left: F3"),
        ("{alpha_asymmetry: {input: eeg, window: 100 ms, every: 100 ms}}", "F3, F4",
         "faa.yaml:4:47: window: 100 ms is shorter than one cycle of 8 Hz (125 ms), the band's low edge; "
         "use a window of at least 125 ms"),
    ],
)
def test_load_time_errors_point_at_the_key(feature: str, channels: str, expected: str) -> None:
    with pytest.raises(ProtocolError) as info:
        _protocol(feature, channels=channels)
    assert str(info.value) == expected


def test_value_is_the_log_ratio_of_alpha_powers() -> None:
    """10 Hz at F4 with twice F3's amplitude: 4x the power, so ln(4) = 1.386; swapping the sides negates it."""
    fs = 250.0
    t = np.arange(int(20 * fs)) / fs
    rng = np.random.default_rng(1)
    alpha = np.sin(2 * np.pi * 10 * t)
    data = np.column_stack([10e-6 * alpha, 20e-6 * alpha]) + 1e-9 * rng.standard_normal((t.size, 2))  # F3, F4
    for feature, sign in (("{alpha_asymmetry: {input: eeg, window: 2 s, every: 500 ms}}", 1.0),
                          ("{alpha_asymmetry: {input: eeg, right: F3, left: F4, window: 2 s, every: 500 ms}}", -1.0)):
        p = _protocol(feature, "highpass: 1 Hz", channels="F3, F4")
        got = FeaturePipeline(fs, ["F3", "F4"], p.inputs["eeg"], [p.features["faa"]]).push(data, t)
        values = np.array([v.value for v in got])
        assert values.size == 37
        np.testing.assert_allclose(values[4:], sign * np.log(4.0), atol=1e-3)


@cache
def _recording(key: str):
    mne = pytest.importorskip("mne")
    path = EEG / RECORDINGS[key][0]
    if not path.exists():
        pytest.skip(f"real recording {path} is absent (shared/data not mounted)")
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    fs = float(raw.info["sfreq"])
    data = np.ascontiguousarray(raw.get_data()[:, : int(SECONDS * fs)].T)
    jitter = np.random.default_rng(0).uniform(0, 1e-4, len(data))  # LSL stamps are not a perfect grid
    return data, fs, tuple(raw.ch_names), 5000.0 + np.arange(len(data)) / fs + jitter


@cache
def _case(key: str):
    data, fs, labels, stamps = _recording(key)
    channels = "F3, F4, F7, F8, Cz" + (", T9, T10" if key == "eegmmidb" else "")
    p = _protocol("{alpha_asymmetry: {input: eeg, window: 2 s, every: 100 ms}}", RECORDINGS[key][1], channels)
    spec = p.features["faa"]
    return p, spec, offline_values(data, fs, labels, p.inputs["eeg"], spec, stamps)


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("key", sorted(RECORDINGS))
def test_online_equals_offline_on_real_eeg(key: str, chunk: int) -> None:
    data, fs, labels, stamps = _recording(key)
    p, spec, (ref_idx, ref_val, ref_at) = _case(key)
    pipeline = FeaturePipeline(fs, labels, p.inputs["eeg"], [spec])
    got = []
    for a in range(0, len(data), chunk):
        got += pipeline.push(data[a : a + chunk], stamps[a : a + chunk])
    idx = np.array([v.sample_index for v in got])
    val = np.array([v.value for v in got])
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal([v.source_time for v in got], stamps[idx])
    assert np.isfinite(ref_val).all() and np.isnan(ref_at).all()
    np.testing.assert_allclose(val, ref_val, rtol=0, atol=1e-9)
    print(f"{key} chunk {chunk}: {val.size} values, FAA median {np.median(val):+.3f}, "
          f"max |online - offline| {np.max(np.abs(val - ref_val)):.2e}")
    assert 0.05 < np.std(val) < 2.0  # a real, moving signal (a log ratio, not a constant)
