"""NirsFrontEnd as a whole: output layout, chunk-size invariance (real recording, everything on), the
offline reference, short channels on a synthetic montage, dropouts and optical-density streams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import signal  # type: ignore[import-untyped]  # scipy: no type stubs installed

from controller.dsp.front_end import FrontEnd
from controller.dsp.nirs import NirsFrontEnd, NirsLayout
from controller.dsp.nirs.extinction import absorption_coefficients
from controller.dsp.nirs.front_end import haemoglobin_lowpass_sos
from controller.dsp.nirs.optical_density import OpticalDensity
from controller.offline.nirs import haemoglobin_offline

SHARED = Path(__file__).resolve().parents[4].parent / "shared" / "data"
SNIRF = SHARED / "fnirs" / "snirf_samples_neuro_run01.snirf"
FS = 10.0


def _stream(fe: NirsFrontEnd, x: np.ndarray, chunk: int) -> np.ndarray:
    fe.reset()
    return np.concatenate([fe.process(x[i:i + chunk]) for i in range(0, len(x), chunk)], axis=0)


def _close_per_column(a: np.ndarray, b: np.ndarray, rel: float) -> None:
    scale = np.maximum(np.abs(b).max(axis=0), 1e-300)
    np.testing.assert_allclose(a / scale, b / scale, rtol=0, atol=rel)


@pytest.fixture(scope="module")
def recording():  # -> (layout, fs, (n, 18) intensities)
    if not SNIRF.exists():
        pytest.skip(f"real recording {SNIRF} is absent (shared/data not mounted)")
    mne = pytest.importorskip("mne")
    raw = mne.io.read_raw_snirf(str(SNIRF), preload=True, verbose="error")
    return NirsLayout.from_mne(raw.info), raw.info["sfreq"], raw.get_data().T


def test_real_recording_chunk_invariant_and_equal_to_offline_with_everything_on(recording) -> None:
    layout, fs, x = recording
    fe = NirsFrontEnd(layout, fs)  # learnt reference, regression (a pass-through here), 0.5 Hz low-pass, quality
    as_protocol: FrontEnd = fe  # the Protocol is structural (not runtime-checkable): mypy checks this line
    assert as_protocol.labels == fe.labels
    assert fe.unregressed == layout.names  # no short channel in this recording
    whole = _stream(fe, x, len(x))
    for chunk in (1, 8):
        _close_per_column(_stream(fe, x, chunk), whole, 1e-12)
    labels, types, ref = haemoglobin_offline(x, layout, fs)
    assert labels == fe.labels and types == fe.types
    assert fe.types == ("hbo", "hbr") * 9 + ("sci", "motion") * 9
    _close_per_column(whole[:, :18], ref[:, :18], 1e-9)  # haemoglobin
    np.testing.assert_allclose(whole[:, 18::2], ref[:, 18::2], rtol=0, atol=1e-9)  # SCI
    np.testing.assert_array_equal(whole[:, 19::2], ref[:, 19::2])  # motion
    # The recording is a good one: most pairs couple well once the window is full.
    assert np.median(whole[int(10 * fs):, 18::2]) > 0.7


def _montage() -> tuple[NirsLayout, dict[str, float]]:
    positions = {"S1": [0.0, 0.0, 0.0], "S2": [0.06, 0.0, 0.0], "D1": [0.03, 0.0, 0.0], "D2": [-0.03, 0.0, 0.0],
                 "D3": [0.09, 0.0, 0.0], "D4": [0.0, 0.03, 0.0], "D7": [0.0, 0.008, 0.0], "D8": [0.06, 0.008, 0.0]}
    names = ["S1_D7", "S1_D1", "S1_D2", "S2_D1", "S2_D3", "S2_D8", "S1_D4"]
    labels = [f"{n} {wl}" for wl in (760, 850) for n in names] + ["Trigger"]
    lay = NirsLayout.from_labels(labels, positions=positions)
    return lay, {n: float(np.linalg.norm(np.subtract(positions[n[3:]], positions[n[:2]]))) for n in names}


def _synthetic(lay: NirsLayout, n: int, rng: np.random.Generator, neural: np.ndarray) -> np.ndarray:
    """Intensities from haemoglobin by the forward model: systemic Hb everywhere (scaled per pair), the
    neural response only in long pairs, a 1.1 Hz heartbeat, noise; intensity = I0 * exp(-OD)."""
    t = np.arange(n) / FS
    systemic = 1e-6 * (np.sin(2 * np.pi * 0.1 * t) + 0.5 * np.sin(2 * np.pi * 0.3 * t + 1))
    heart = 2e-7 * np.sin(2 * np.pi * 1.1 * t)
    coef = absorption_coefficients(lay.wavelengths)
    x = np.zeros((n, lay.n_columns))
    for i, pair in enumerate(lay.pairs):
        gain = 0.7 + 0.1 * i
        hbo = gain * systemic + heart + (0.0 if pair.short else neural)
        hbr = -0.3 * gain * systemic - 0.3 * heart - (0.0 if pair.short else 0.3 * neural)
        od = (coef * pair.distance_m * 6.0) @ np.stack([hbo, hbr]) * 1e3  # inverse of MNE's iEL @ od * 1e-3
        od += rng.normal(0, 2e-4, od.shape)
        for row, col in enumerate(pair.columns):
            x[:, col] = (1.0 + 0.2 * i) * np.exp(-od[row])
    x[:, -1] = (np.arange(n) % 100 == 0)  # a trigger column the layout leaves out
    return x


def test_short_channel_montage_outputs_regression_and_invariance() -> None:
    lay, dist = _montage()
    assert [p.name for p in lay.short_pairs] == ["S1_D7", "S2_D8"] and lay.unused_columns == (14,)
    assert lay.pairs[1].distance_m == pytest.approx(dist["S1_D1"])
    rng = np.random.default_rng(4)
    n = int(400 * FS)
    t = np.arange(n) / FS
    neural = 3e-7 * ((t // 15) % 2 == 1) * (t > 60)
    x = _synthetic(lay, n, rng, neural)
    fe = NirsFrontEnd(lay, FS, short_memory_s=60.0)
    longs = ["S1_D1", "S1_D2", "S2_D1", "S2_D3", "S1_D4"]
    assert fe.labels[:10] == tuple(f"{p} {k}" for p in longs for k in ("hbo", "hbr"))
    assert fe.labels[10:20] == tuple(f"{p} {k}" for p in longs for k in ("sci", "motion"))
    assert fe.labels[20:] == ("S1_D7 hbo", "S1_D7 hbr", "S2_D8 hbo", "S2_D8 hbr")
    assert fe.types[20:] == ("hbo_short", "hbr_short") * 2
    assert fe.unregressed == ()  # every long pair found a short partner (S1_D4 by midpoint: S1_D7)
    whole = _stream(fe, x, n)
    for chunk in (1, 8):
        _close_per_column(_stream(fe, x, chunk), whole, 1e-12)
    labels, types, ref = haemoglobin_offline(x, lay, FS, short_memory_s=60.0)
    assert labels == fe.labels and types == fe.types
    _close_per_column(whole[:, :10], ref[:, :10], 1e-9)
    _close_per_column(whole[:, 20:], ref[:, 20:], 1e-9)
    # The regression removed the systemic part: after warm-up, HbO of each long pair follows the neural blocks
    # (as the same low-pass renders them; measured r ~0.96 here, ~-0.1 without the regression).
    truth = signal.sosfilt(haemoglobin_lowpass_sos(FS, 0.5), neural)
    plain = _stream(NirsFrontEnd(lay, FS, short_regression=False), x, n)
    warm = int(120 * FS)
    for k in range(0, 10, 2):
        r_reg = np.corrcoef(whole[warm:, k], truth[warm:])[0, 1]
        r_plain = np.corrcoef(plain[warm:, k], truth[warm:])[0, 1]
        assert r_reg > 0.9 and r_plain < 0.3, (fe.labels[k], r_reg, r_plain)


def test_regression_off_reports_every_long_pair() -> None:
    lay, _ = _montage()
    fe = NirsFrontEnd(lay, FS, short_regression=False)
    assert fe.unregressed == ("S1_D1", "S1_D2", "S2_D1", "S2_D3", "S1_D4")


def test_dropouts_hold_the_last_intensity_and_od_streams_pass_through() -> None:
    od = OpticalDensity(2, FS, reference=np.array([2.0, 4.0]))
    x = np.array([[0.0, 1.0, np.nan, -2.0, 0.0, 3.0], [4.0, np.inf, 2.0, 2.0, 0.0, 8.0]])
    out = od.process(x)
    # channel 0: nothing usable until 1.0; NaN and 0 hold it; -2 counts as 2 (MNE's abs)
    np.testing.assert_allclose(out[0], [0.0, np.log(2.0), np.log(2.0), 0.0, 0.0, -np.log(1.5)])
    np.testing.assert_allclose(out[1], [0.0, 0.0, np.log(2.0), np.log(2.0), np.log(2.0), -np.log(2.0)])
    passthrough = OpticalDensity(2, FS, measure="od")
    np.testing.assert_array_equal(passthrough.process(np.array([[0.1, np.nan], [0.2, 0.3]])), [[0.1, 0.1], [0.2, 0.3]])


def test_learnt_reference_is_the_running_mean_then_frozen() -> None:
    od = OpticalDensity(1, FS, reference_s=0.5)  # 5 samples
    x = np.array([[1.0, 3.0, 2.0, 2.0, 2.0, 8.0, 1.0]])
    out = np.concatenate([od.process(x[:, i:i + 2]) for i in range(0, 7, 2)], axis=1)
    running = np.array([1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    np.testing.assert_allclose(out[0], -np.log(x[0] / running))
    assert od.reference_frozen and od.reference[0] == 2.0


def test_od_measure_front_end_equals_intensity_front_end() -> None:
    lay, _ = _montage()
    rng = np.random.default_rng(5)
    x = _synthetic(lay, 600, rng, np.zeros(600))
    ref = x[:100].mean(axis=0)
    ref[-1] = 1.0  # the trigger column: not used
    a = NirsFrontEnd(lay, FS, reference=ref).process(x)
    od = x.copy()
    od[:, :-1] = -np.log(x[:, :-1] / ref[:-1])
    b = NirsFrontEnd(lay, FS, measure="od").process(od)
    _close_per_column(a, b, 1e-12)


def test_bad_inputs_are_refused() -> None:
    lay, _ = _montage()
    fe = NirsFrontEnd(lay, FS)
    with pytest.raises(ValueError, match=r"\(n, 15\)"):
        fe.process(np.ones((3, 14)))
    with pytest.raises(ValueError, match="reference"):
        NirsFrontEnd(lay, FS, measure="od", reference=np.ones(15))
    with pytest.raises(ValueError, match="low-pass"):
        NirsFrontEnd(lay, FS, lowpass_hz=5.0)
    no_dist = NirsLayout.from_labels(["S1_D1 760", "S1_D1 850"])
    with pytest.raises(ValueError, match="distance"):
        NirsFrontEnd(no_dist, FS)


def test_drift_highpass_on_long_pairs_only_online_equals_offline() -> None:
    """The drift high-pass filters the long pairs' HbO/HbR, never sci/motion (levels) nor the short pairs."""
    lay, _ = _montage()
    rng = np.random.default_rng(9)
    n = int(200 * FS)
    t = np.arange(n) / FS
    x = _synthetic(lay, n, rng, 3e-7 * ((t // 15) % 2 == 1))
    on = NirsFrontEnd(lay, FS, highpass_hz=0.01)
    off = NirsFrontEnd(lay, FS)
    with_hp, without = _stream(on, x, 8), _stream(off, x, 8)
    np.testing.assert_array_equal(with_hp[:, 10:], without[:, 10:])  # sci, motion, short pairs untouched
    assert not np.allclose(with_hp[:, :10], without[:, :10])
    _, _, ref = haemoglobin_offline(x, lay, FS, highpass_hz=0.01)
    _close_per_column(with_hp, ref, 1e-9)
    # a constant offset added to every intensity's OD decays away: the high-pass's DC gain is zero
    late = with_hp[-int(20 * FS):, :10]
    assert np.all(np.abs(late.mean(axis=0)) < 5 * late.std(axis=0) + 1e-12)
