"""Channel label matching across LSL, EDF (MNE) and BCI2000 spellings."""

import pytest

from controller.dsp import normalize_label, resolve_channels


@pytest.mark.parametrize(
    "label, expected",
    [
        ("Cz", "cz"),
        ("CZ", "cz"),
        ("EEG Cz", "cz"),
        ("Cz..", "cz"),
        ("Fc5.", "fc5"),
        ("T10.", "t10"),
        ("EEG A2-A1", "a2-a1"),
        ("ECG ECG", "ecg"),
        ("Cz-REF", "cz"),
        ("  Fp1 ", "fp1"),
    ],
)
def test_normalize_label(label, expected):
    assert normalize_label(label) == expected


def test_resolve_matches_edf_and_bci2000_spellings():
    assert resolve_channels(["Cz", "fp1"], ["EEG Fp1", "EEG Cz"]).tolist() == [1, 0]
    assert resolve_channels(["CZ", "Fcz"], ["Fc5.", "Fcz.", "Cz.."]).tolist() == [2, 1]


def test_exact_match_wins_over_normalized_match():
    assert resolve_channels(["EEG Cz"], ["Cz", "EEG Cz"]).tolist() == [1]


def test_unknown_channel_names_label_and_lists_available():
    with pytest.raises(ValueError) as err:
        resolve_channels(["Oz"], ["EEG Fp1", "EEG Cz"], where="stream of input 'eeg'")
    msg = str(err.value)
    assert "'Oz'" in msg and "stream of input 'eeg'" in msg
    assert "'EEG Fp1'" in msg and "'EEG Cz'" in msg


def test_ambiguous_label_is_refused():
    with pytest.raises(ValueError, match="ambiguous.*'EEG Cz'.*'Cz..'"):
        resolve_channels(["cz"], ["EEG Cz", "Cz.."])
