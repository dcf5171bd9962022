"""Reading recordings for replay (no LSL): XDF streams become MNE Raw objects."""

from pathlib import Path

import numpy as np
import pytest

from sim.replay import load_recording, xdf_to_raw

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
XDF = DATA / "xdf"
EDF_21 = DATA / "eeg" / "physionet_eegmat_Subject00_1_rest.edf"
needs_data = pytest.mark.skipif(not XDF.is_dir(), reason=f"real recordings not available: {XDF}")


@needs_data
def test_minimal_xdf_values():
    raw = xdf_to_raw(XDF / "minimal.xdf")
    assert raw.info["sfreq"] == 10.0 and raw.ch_names == ["ch001", "ch002", "ch003"]
    np.testing.assert_array_equal(raw.get_data()[:, 1:5], [[12, 13, 14, 15], [22, 23, 24, 25], [32, 33, 34, 35]])


@needs_data
def test_clock_resets_xdf_picks_the_eeg_stream():
    raw = xdf_to_raw(XDF / "clock_resets.xdf")
    assert raw.info["sfreq"] == 100.0 and len(raw.ch_names) == 8 and raw.n_times == 27815
    with pytest.raises(ValueError, match="no regularly sampled numeric stream named 'nope'"):
        xdf_to_raw(XDF / "clock_resets.xdf", stream_name="nope")


@pytest.mark.skipif(not EDF_21.is_file(), reason=f"real recording not available: {EDF_21}")
def test_edf_labels_are_kept():
    raw = load_recording(EDF_21)
    assert raw.info["sfreq"] == 500.0 and "EEG Fp1" in raw.ch_names


def test_missing_file_is_named():
    with pytest.raises(FileNotFoundError, match="nothing-here.edf"):
        load_recording("/nonexistent/nothing-here.edf")
