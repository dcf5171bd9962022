"""Run-time checks once the stream is resolved: its rate and channel labels."""

from __future__ import annotations

import pytest

import protocols
from controller.protocol import check_against_stream, load_protocol, loads_protocol


@pytest.fixture(scope="module")
def tbr():
    return load_protocol(protocols.find("tbr_adhd"))


def test_matching_stream_has_no_problems(tbr) -> None:
    assert check_against_stream(tbr, "eeg", 500.0, ["Fp1", "Fp2", "Cz", "Pz"]) == []


def test_band_above_nyquist_of_the_real_rate(tbr) -> None:
    problems = check_against_stream(tbr, "eeg", 128.0, ["Cz", "Fp1", "Fp2"])
    assert problems == [
        "feature 'emg': band [45 Hz, 70 Hz] reaches the stream's Nyquist frequency 64 Hz (rate 128 Hz)"
    ]


def test_low_rate_reports_filters_and_windows(tbr) -> None:
    problems = check_against_stream(tbr, "eeg", 60.0, ["Cz", "Fp1", "Fp2"])
    assert "input 'eeg': notch 50 Hz is at or above the stream's Nyquist frequency 30 Hz" in problems
    assert any(p.startswith("feature 'emg': band [45 Hz, 70 Hz]") for p in problems)
    assert any(p.startswith("feature 'tbr': denominator") for p in problems) is False  # 21 Hz < 30 Hz


def test_missing_and_duplicated_channels(tbr) -> None:
    problems = check_against_stream(tbr, "eeg", 500.0, ["Cz", "Cz", "Fp1"])
    assert problems == [
        "input 'eeg': channel 'Cz' is ambiguous in stream: it matches 'Cz', 'Cz'",
        "input 'eeg': channel 'Fp2' is not in the stream; its channels: Cz, Cz, Fp1",
    ]


def test_irregular_stream_and_unknown_input(tbr) -> None:
    assert check_against_stream(tbr, "eeg", 0.0, ["Cz"]) == [
        "input 'eeg': the stream has no regular sampling rate (nominal rate 0.0); a regular rate is needed"
    ]
    assert check_against_stream(tbr, "meg", 500.0, []) == ["input 'meg' is not in protocol 'tbr-adhd'; inputs: eeg"]


def test_stated_rate_and_reference_channels() -> None:
    p = loads_protocol(
        """\
protocol: p
inputs: {eeg: {stream: {type: EEG}, channels: [C3], reference: [A1, A2], rate: 1 kHz}}
features:
  mu: {band_power: {input: eeg, band: [8 Hz, 12 Hz], window: 1 s, every: 2 ms}}
timeline: [{run: 1 min}]
"""
    )
    assert check_against_stream(p, "eeg", 1000.0, ["C3", "A1", "A2"]) == []
    assert check_against_stream(p, "eeg", 1005.0, ["C3", "A1", "A2"]) == []  # within 1 %
    assert check_against_stream(p, "eeg", 200.0, ["C3", "A1"]) == [
        "input 'eeg': the protocol expects 1 kHz but the stream runs at 200 Hz",
        "input 'eeg': channel 'A2' is not in the stream; its channels: C3, A1",
        "feature 'mu': every 2 ms is under 1 sample at 200 Hz",
    ]


def test_labels_match_as_the_dsp_matches_them():
    """'Cz' finds 'EEG Cz' and BCI2000's dotted 'Cz..' (PhysioNet EDF), exactly as the pipeline does."""
    from controller.protocol import loads_protocol

    text = """
protocol: labels
inputs:
  eeg: {stream: {type: EEG}, channels: [Cz, Fp1]}
features:
  tbr: {band_ratio: {input: eeg, channels: [Cz], numerator: [4 Hz, 8 Hz], denominator: [13 Hz, 21 Hz], window: 2 s, every: 100 ms}}
thresholds:
  goal: {fixed: 2}
timeline: [{train: 1 min}]
rules:
  - {during: train, when: tbr < goal, do: {feedback: reward}}
"""
    p = loads_protocol(text)
    assert check_against_stream(p, "eeg", 160.0, ["Fc5.", "Cz..", "Fp1."]) == []
    assert check_against_stream(p, "eeg", 500.0, ["EEG Cz", "EEG Fp1"]) == []
    [problem] = check_against_stream(p, "eeg", 500.0, ["EEG Pz", "EEG Oz"])
    assert problem == "input 'eeg': channels 'Cz', 'Fp1' are not in the stream; its channels: EEG Pz, EEG Oz"
