"""Acceptance: the real SNIRF recording streamed through NirsFrontEnd gives MNE's haemoglobin.

snirf_samples_neuro_run01.snirf (shared/data/MANIFEST.md): 18 CW amplitude channels, 9 pairs at
690/830 nm, 20.03 Hz, 399 s, no short channels. With the whole-recording mean as the reference and
the regression and low-pass off, HbO/HbR must equal MNE's optical_density + beer_lambert_law
(default ppf); with the learnt reference they must equal MNE plus the predicted constant.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controller.dsp.nirs import NirsFrontEnd, NirsLayout

SHARED = Path(__file__).resolve().parents[4].parent / "shared" / "data"
SNIRF = SHARED / "fnirs" / "snirf_samples_neuro_run01.snirf"


@pytest.fixture(scope="module")
def recording():  # -> (raw, MNE's haemoglobin Raw)
    if not SNIRF.exists():
        pytest.skip(f"real recording {SNIRF} is absent (shared/data not mounted)")
    mne = pytest.importorskip("mne")
    raw = mne.io.read_raw_snirf(str(SNIRF), preload=True, verbose="error")
    hb = mne.preprocessing.nirs.beer_lambert_law(mne.preprocessing.nirs.optical_density(raw))
    return raw, hb


def _stream(fe: NirsFrontEnd, x: np.ndarray, chunk: int) -> np.ndarray:
    return np.concatenate([fe.process(x[i:i + chunk]) for i in range(0, len(x), chunk)], axis=0)


def test_layout_from_mne_matches_mne_geometry(recording) -> None:
    import mne

    raw, _ = recording
    lay = NirsLayout.from_mne(raw.info)
    assert len(lay.pairs) == 9 and not lay.short_pairs and lay.wavelengths == (690.0, 830.0)
    dist = mne.preprocessing.nirs.source_detector_distances(raw.info)
    for pair in lay.pairs:
        for col in pair.columns:
            assert pair.distance_m == pytest.approx(dist[col], rel=1e-15)
        assert [raw.ch_names[c] for c in pair.columns] == [f"{pair.name} 690", f"{pair.name} 830"]


@pytest.mark.parametrize("chunk", [1, 8])
def test_haemoglobin_equals_mne_with_the_whole_recording_mean(recording, chunk: int) -> None:
    raw, hb = recording
    x = raw.get_data()
    reference = np.array([np.mean(row) for row in x])  # what MNE's optical_density divides by
    fe = NirsFrontEnd(NirsLayout.from_mne(raw.info), raw.info["sfreq"], reference=reference,
                      short_regression=False, lowpass_hz=None)
    out = _stream(fe, x.T, chunk)
    n_hb = 2 * 9
    assert fe.labels[:n_hb] == tuple(f"{p} {k}" for p in NirsLayout.from_mne(raw.info).names for k in ("hbo", "hbr"))
    assert fe.types[:n_hb] == ("hbo", "hbr") * 9
    expected = hb.get_data(picks=list(fe.labels[:n_hb])).T
    scale = np.abs(expected).max()
    assert 1e-6 < scale < 1e-3  # mol/L, as MNE's
    np.testing.assert_allclose(out[:, :n_hb], expected, rtol=1e-9, atol=1e-12 * scale)


def test_learnt_reference_differs_from_mne_by_the_predicted_constant(recording) -> None:
    from mne.preprocessing.nirs import source_detector_distances
    from mne.preprocessing.nirs._beer_lambert_law import _load_absorption

    raw, hb = recording
    x = raw.get_data()
    fs = raw.info["sfreq"]
    lay = NirsLayout.from_mne(raw.info)
    fe = NirsFrontEnd(lay, fs, short_regression=False, lowpass_hz=None)  # reference_s = 10 s
    out = _stream(fe, x.T, 8)
    n_ref = round(10.0 * fs)
    ref_online = x[:, :n_ref].mean(axis=1)
    ref_mne = np.array([np.mean(row) for row in x])
    cols = lay.columns().ravel()
    np.testing.assert_allclose(fe.reference, ref_online[cols], rtol=1e-12)
    assert fe.reference_frozen
    # OD_online = OD_mne + ln(ref_online / ref_mne), pushed through each pair's inverse like the OD itself.
    abs_coef = _load_absorption(np.array([690, 830]))
    dist = source_detector_distances(raw.info)
    expected = hb.get_data(picks=list(fe.labels[:18])).T.copy()
    for i, pair in enumerate(lay.pairs):
        delta_od = np.log(ref_online[list(pair.columns)] / ref_mne[list(pair.columns)])
        delta_hb = np.linalg.inv(abs_coef * dist[pair.columns[0]] * 6.0) @ delta_od * 1e-3
        expected[:, 2 * i: 2 * i + 2] += delta_hb
        assert np.all(np.abs(delta_hb) > 1e-9)  # the constant is real, not rounding
    scale = np.abs(expected).max()
    np.testing.assert_allclose(out[n_ref:, :18], expected[n_ref:], rtol=1e-9, atol=1e-9 * scale)
