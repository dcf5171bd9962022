"""The MEG simulator offline: layout from the real .fif, spectra (posterior alpha), SI units, the participant."""

from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from sim.meg.generator import FT, FT_PER_CM, MegGenerator
from sim.meg.layout import read_layout
from sim.meg.participant import AlphaParticipant

FIF = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "meg" / "sample_audvis_trunc_raw_sss.fif"
needs_fif = pytest.mark.skipif(not FIF.is_file(), reason=f"real MEG recording not available: {FIF}")


@pytest.fixture(scope="module")
def layout():
    return read_layout(FIF)


@pytest.fixture(scope="module")
def selections():
    import mne

    return {name: set(mne.read_vectorview_selection(name)) for name in ("occipital", "frontal")}


@needs_fif
def test_layout_is_the_files(layout):
    import mne

    info = mne.io.read_info(FIF, verbose=False)
    assert layout.labels == tuple(info["ch_names"][:306])
    assert layout.types.count("grad") == 204 and layout.types.count("mag") == 102
    assert set(layout.units) == {"T", "T/m"} and set(layout.coil_types) == {3012, 3024}
    np.testing.assert_array_equal(layout.loc, np.array([ch["loc"] for ch in info["chs"][:306]]))
    full = read_layout(FIF, all_channels=True)
    assert full.n_channels == 376 and {"eeg", "eog", "stim"} <= set(full.types)
    assert [p.name for p in full.projectors] == ["Average EEG reference"] and not full.projectors[0].active
    with pytest.raises(FileNotFoundError, match="--layout"):
        read_layout(FIF.parent / "absent.fif")


def _band_ratio(x: np.ndarray, fs: float) -> np.ndarray:
    """Per column: mean PSD in 8-12 Hz over mean PSD in 3-6 and 15-20 Hz (1 = no peak)."""
    f, p = signal.welch(x, fs, nperseg=int(2 * fs), axis=0)
    band = p[(f >= 8) & (f <= 12)].mean(axis=0)
    flank = p[((f >= 3) & (f <= 6)) | ((f >= 15) & (f <= 20))].mean(axis=0)
    return band / flank


@needs_fif
def test_alpha_peak_posterior_not_anterior_and_si_units(layout, selections):
    fs = 1000.0
    gen = MegGenerator(layout, fs, seed=3)
    x = np.concatenate([gen.generate(1000) for _ in range(20)])  # 20 s, in blocks as streamed
    mags, grads = layout.indices("mag"), layout.indices("grad")
    sd = x.std(axis=0)
    # SI units, realistic sizes: magnetometers ~100 fT, gradiometers a few pT/m (at 1 kHz, white floor included)
    assert 50 * FT < np.median(sd[mags]) < 500 * FT
    assert 10 * FT_PER_CM < np.median(sd[grads]) < 100 * FT_PER_CM
    ratio = _band_ratio(x, fs)
    post = [i for i, lab in enumerate(layout.labels) if lab in selections["occipital"]]
    ante = [i for i, lab in enumerate(layout.labels) if lab in selections["frontal"]]
    for kind in (mags, grads):
        p = np.intersect1d(post, kind)
        a = np.intersect1d(ante, kind)
        assert np.median(ratio[p]) > 2.5 and ratio[p].max() > 8.0  # a clear alpha peak over the occipital sensors
        assert 0.5 < np.median(ratio[a]) < 1.5  # none over the frontal ones
    # the alpha field's RMS at the strongest magnetometer is the configured 150 fT
    best = mags[np.argmax(gen.alpha_weights[mags])]
    f, p = signal.welch(x[:, best], fs, nperseg=2000)
    assert best in post and gen.alpha_rms == pytest.approx(150 * FT)
    alpha_power = np.trapezoid(p[(f >= 7) & (f <= 13)], f[(f >= 7) & (f <= 13)])
    assert 0.8 < np.sqrt(alpha_power) / gen.alpha_rms < 1.3  # (plus the background in the band)


@needs_fif
def test_gain_scales_alpha_and_blocks_do_not_matter(layout):
    a, b = MegGenerator(layout, 1000.0, seed=1), MegGenerator(layout, 1000.0, seed=1)
    np.testing.assert_allclose(np.concatenate([a.generate(n) for n in (7, 300, 93, 600)]), b.generate(1000),
                               rtol=1e-9, atol=1e-22)
    low, high = MegGenerator(layout, 1000.0, seed=2, line_freq=0), MegGenerator(layout, 1000.0, seed=2, line_freq=0)
    high.set_gain(2.0)
    mags = layout.indices("mag")
    best = mags[np.argmax(low.alpha_weights[mags])]
    xl, xh = low.generate(10_000)[:, best], high.generate(10_000)[:, best]
    f, pl = signal.welch(xl, 1000.0, nperseg=2000)
    _, ph = signal.welch(xh, 1000.0, nperseg=2000)
    band = (f >= 9) & (f <= 11)
    assert 3.0 < ph[band].sum() / pl[band].sum() < 4.2  # twice the amplitude: ~4x alpha power (+ background)
    assert high.alpha_rms == pytest.approx(2 * low.alpha_rms)


@needs_fif
def test_active_projectors_are_applied(layout):
    from sim.meg.layout import SimProjector

    rng = np.random.default_rng(0)
    v = rng.standard_normal(102)
    mags = tuple(layout.labels[i] for i in layout.indices("mag"))
    projected = layout.with_projectors([SimProjector("test", True, mags, v)])
    x = MegGenerator(projected, 1000.0).generate(500)
    assert np.abs(x[:, layout.indices("mag")] @ v).max() < 1e-12 * np.abs(x).max() * np.linalg.norm(v)
    inactive = layout.with_projectors([SimProjector("test", False, mags, v)])
    y = MegGenerator(inactive, 1000.0).generate(500)
    assert np.abs(y[:, layout.indices("mag")] @ v).max() > 1e-3 * np.abs(y).max()


def test_participant_rewards_raise_alpha():
    p = AlphaParticipant(seed=0, learning_rate=0.01)
    for _ in range(100):
        p.step(0.1)
    assert p.mean_gain == 1.0 and p.rewards == 0
    p.reward(50)
    assert p.mean_gain == pytest.approx(np.exp(0.5))
    p.reward(1000)
    assert p.mean_gain == pytest.approx(4.0)  # the ceiling
    gains = [p.step(0.05) for _ in range(4000)]
    assert 3.0 < np.exp(np.mean(np.log(gains))) < 5.3 and p.rewards == 1050
    with pytest.raises(ValueError):
        AlphaParticipant(learning_rate=-1.0)


def test_cli_options_and_a_missing_layout(tmp_path, capsys):
    from sim.cli import build_parser, main

    args = build_parser().parse_args(["meg", "--rate", "5000", "--chunk", "5", "--all-channels", "--ssp", "a.fif",
                                      "--ssp", "b.fif", "--learning-rate", "0.01", "--seed", "3", "--duration", "2"])
    assert (args.rate, args.chunk, args.all_channels, args.ssp, args.learning_rate) == (5000.0, 5, True,
                                                                                        ["a.fif", "b.fif"], 0.01)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["meg", "--rate", "500"])  # MEG: 1000-5000 Hz
    assert main(["meg", "--layout", str(tmp_path / "none.fif"), "--quiet"]) == 2
    assert "--layout" in capsys.readouterr().err
