"""The simulated fNIRS signal, without LSL: montage, Beer-Lambert physics, physiology, the learning participant."""

import numpy as np
import pytest
from scipy.signal import welch

from sim.fnirs.beer_lambert import EXTINCTION, concentrations_from_od, extinction
from sim.fnirs.generator import FnirsGenerator, canonical_hrf
from sim.fnirs.montage import prefrontal_montage
from sim.fnirs.participant import FnirsParticipant, FnirsParticipantConfig

FS = 10.0


def od_of(x: np.ndarray) -> np.ndarray:
    """MNE's optical density: -ln(I / mean I)."""
    return -np.log(x / x.mean(axis=0))


def hb_of(od: np.ndarray, montage, pair: int) -> np.ndarray:
    """(n, 2) [HbO, HbR] mol/L of one pair, by inverting Beer-Lambert with the simulator's own table."""
    cols = [montage.labels.index(f"{montage.pairs[pair].name} {w}") for w in montage.wavelengths]
    return concentrations_from_od(od[:, cols], montage.pairs[pair].distance_mm, montage.wavelengths)


def test_montage_layout():
    m = prefrontal_montage()
    assert len(m.sources) == 8 and len(m.detectors) == 16  # 8 long + 8 short-separation detectors
    long, short = m.distances_mm[~m.short_mask], m.distances_mm[m.short_mask]
    assert len(long) == 22 and len(short) == 8
    np.testing.assert_allclose(long, 30.0, atol=1e-9)
    np.testing.assert_allclose(short, 8.0, atol=1e-9)
    assert m.labels[:4] == ("S1_D1 760", "S1_D1 850", "S1_D2 760", "S1_D2 850")  # pair-major
    # every long channel has a short channel nearby (the one at its own source)
    near = m.nearest_short()
    gap = np.linalg.norm(m.midpoints - m.midpoints[near], axis=1)
    assert gap[~m.short_mask].max() < 20.0
    for i, p in enumerate(m.pairs):
        assert m.pairs[near[i]].source == p.source
    # on the forehead: in front of the ears, above the eyes, within a head's width
    pos = np.array(list(m.sources.values()) + list(m.detectors.values()))
    assert np.all(pos[:, 1] > 15) and np.all(pos[:, 2] > -10) and np.all(np.abs(pos[:, 0]) < 90)
    assert np.all(pos[:, 2] < 60)


def test_extinction_table_is_mnes_at_760_and_850():
    """The controller converts with MNE's table: at the simulator's wavelengths the numbers are the same."""
    from mne.preprocessing.nirs._beer_lambert_law import _load_absorption

    np.testing.assert_allclose(_load_absorption([760, 850]) / 0.2303, extinction([760, 850]), rtol=1e-12)
    assert EXTINCTION[760] == (586.0, 1548.52) and EXTINCTION[850] == (1058.0, 691.32)
    with pytest.raises(ValueError, match="no extinction coefficients for 700"):
        extinction([700])


def test_hrf_is_canonical():
    h = canonical_hrf(FS)
    t = np.arange(len(h)) / FS
    assert h.sum() == pytest.approx(1.0)
    assert t[np.argmax(h)] == pytest.approx(5.0, abs=0.11)
    assert 13.0 < t[np.argmin(h)] < 17.0 and h.min() < 0


@pytest.fixture(scope="module")
def resting():
    gen = FnirsGenerator(rate=FS, seed=11)
    return gen, gen.generate(int(400 * FS))


def test_intensities_are_positive_with_device_like_baselines(resting):
    gen, x = resting
    assert x.shape == (4000, 60) and np.all(x > 0)
    short = gen.montage.short_mask[gen.montage.column_pairs]
    assert np.median(x[:, short]) > 5 * np.median(x[:, ~short])  # short channels lose less light
    assert len(np.unique(np.round(gen.i0, 6))) == 60


def test_cardiac_and_mayer_peaks_in_long_and_short_channels(resting):
    gen, x = resting
    f, p = welch(od_of(x), fs=FS, nperseg=int(100 * FS), axis=0)
    m = gen.montage
    cardiac_band, mayer_band = (f >= 0.6) & (f <= 2.0), (f >= 0.05) & (f <= 0.2)
    for col in range(gen.n_columns):
        pc = p[cardiac_band, col]
        assert 1.0 <= f[cardiac_band][np.argmax(pc)] <= 1.2, m.labels[col]
        assert pc.max() > 10 * np.median(pc), m.labels[col]  # a peak, not a bump of the noise floor
        pm = p[mayer_band, col]
        assert 0.08 <= f[mayer_band][np.argmax(pm)] <= 0.12, m.labels[col]
        assert pm.max() > 5 * p[(f >= 0.15) & (f <= 0.2), col].mean(), m.labels[col]


def test_systemic_changes_are_shared_so_the_short_channel_explains_them(resting):
    gen, x = resting
    m, od = gen.montage, od_of(resting[1])
    near = m.nearest_short()
    for i in np.flatnonzero(~m.short_mask):
        hbo, ref = hb_of(od, m, i)[:, 0], hb_of(od, m, near[i])[:, 0]
        assert np.corrcoef(hbo, ref)[0, 1] > 0.9, m.pairs[i].name
        beta = np.polyfit(ref, hbo, 1)[0]
        assert beta == pytest.approx(gen.systemic_scale[i] / gen.systemic_scale[near[i]], rel=0.1)


def _block_difference(drive: np.ndarray, seed: int = 2, **kwargs) -> tuple[FnirsGenerator, np.ndarray]:
    """OD with the drive minus OD without it, same seed: exactly the neural part."""
    with_drive = FnirsGenerator(rate=FS, seed=seed, **kwargs)
    x1 = with_drive.generate(len(drive), drive)
    x0 = FnirsGenerator(rate=FS, seed=seed, **kwargs).generate(len(drive))
    return with_drive, -np.log(x1 / x0)


def test_block_response_in_recovered_hbo_peaks_4_to_8_s_after_onset():
    onset = 100
    drive = np.zeros(600)
    drive[onset:onset + 20] = 0.8  # a 2 s regulation block at gain 0.8
    gen, od = _block_difference(drive)
    m = gen.montage
    for i, pair in enumerate(m.pairs):
        hb = hb_of(od, m, i)
        if pair.short:
            np.testing.assert_allclose(hb, 0.0, atol=1e-15)  # short channels carry no brain signal
            continue
        peak = (np.argmax(hb[:, 0]) - onset) / FS
        assert 4.0 <= peak <= 8.0, (pair.name, peak)
        np.testing.assert_allclose(hb[:, 1], -0.3 * hb[:, 0], atol=1e-13)  # HbR = -0.3 HbO
        expected = 0.8 * 1e-6 * np.convolve(drive > 0, canonical_hrf(FS))[:600]
        np.testing.assert_allclose(hb[:, 0], expected, atol=1e-12)


def test_block_response_survives_physiology_after_short_separation_regression():
    """With everything on (systemic, noise), the epoch average of SSR-cleaned HbO peaks 4-8 s after onset."""
    gen = FnirsGenerator(rate=FS, seed=5)
    onsets = np.arange(20) * 300 + 100
    drive = np.zeros(20 * 300 + 200)
    for o in onsets:
        drive[o:o + 20] = 1.0
    od = od_of(gen.generate(len(drive), drive))
    m, near = gen.montage, gen.montage.nearest_short()
    for i in np.flatnonzero(~m.short_mask)[::4]:
        hbo, ref = hb_of(od, m, i)[:, 0], hb_of(od, m, near[i])[:, 0]
        clean = hbo - np.polyfit(ref, hbo, 1)[0] * ref
        avg = np.mean([clean[o - 20:o + 200] - clean[o - 20:o].mean() for o in onsets], axis=0)
        assert 4.0 <= np.argmax(avg[20:]) / FS <= 8.0, m.pairs[i].name
        assert avg.max() == pytest.approx(0.42e-6, rel=0.25)  # the 2 s block's true peak, 0.42 uM


def test_mnes_beer_lambert_recovers_the_true_neural_concentrations():
    """What the controller (MNE's table and arithmetic) would compute from the simulated OD: the truth."""
    import mne

    drive = np.zeros(300)
    drive[20:120] = 1.0
    gen, od = _block_difference(drive)
    m = gen.montage
    info = mne.create_info(list(m.labels), FS, "fnirs_od")
    for ch, pair, wl in zip(info["chs"], m.column_pairs, m.column_wavelengths, strict=True):
        p = m.pairs[pair]
        ch["loc"][3:6] = m.sources[p.source] / 1000.0
        ch["loc"][6:9] = m.detectors[p.detector] / 1000.0
        ch["loc"][:3] = (ch["loc"][3:6] + ch["loc"][6:9]) / 2
        ch["loc"][9] = wl
    hb = mne.preprocessing.nirs.beer_lambert_law(mne.io.RawArray(od.T, info, verbose="error"), ppf=6.0)
    truth = gen.neural_hbo
    for pair in m.pairs:
        hbo, hbr = hb.get_data(picks=[f"{pair.name} hbo", f"{pair.name} hbr"])
        want = 0.0 if pair.short else 1.0
        np.testing.assert_allclose(hbo, want * truth, rtol=0, atol=1e-14)
        np.testing.assert_allclose(hbr, -0.3 * want * truth, rtol=0, atol=1e-14)


def test_a_long_block_plateaus_at_gain_times_the_maximum():
    drive = np.zeros(500)
    drive[50:450] = 0.5
    gen, od = _block_difference(drive)
    hbo = hb_of(od, gen.montage, 0)[:, 0]
    assert hbo[350:450].mean() == pytest.approx(0.5e-6, rel=0.01)


def test_only_the_target_pairs_respond():
    drive = np.zeros(300)
    drive[20:60] = 1.0
    gen, od = _block_difference(drive, target=["S4_D4", "S5_D5"])
    m = gen.montage
    for i, pair in enumerate(m.pairs):
        peak = np.abs(hb_of(od, m, i)[:, 0]).max()
        assert (peak > 0.5e-6) == (pair.name in ("S4_D4", "S5_D5")), pair.name
    with pytest.raises(ValueError, match="short-separation"):
        FnirsGenerator(target=["S1_D9"])


def test_rewards_raise_the_gain_with_diminishing_returns():
    p = FnirsParticipant(FnirsParticipantConfig(start_gain=0.4, learning_rate=0.02))
    gains = [p.gain]
    for _ in range(100):
        p.reward()
        gains.append(p.gain)
    steps = np.diff(gains)
    assert np.all(steps > 0) and np.all(np.diff(steps) < 0)  # up, ever less
    assert gains[-1] == pytest.approx(1 - 0.6 * 0.98**100) and gains[-1] < 1.0
    p.reward(0)
    assert p.rewards == 100


def test_blocks_follow_markers_at_their_timestamps():
    p = FnirsParticipant(FnirsParticipantConfig(active_labels=("regulate", "Up")))
    t = np.arange(0.0, 10.0, 0.5)
    assert not p.activity(t).any()
    p.on_marker("block_start:rest", 1.0)
    p.on_marker("block_start:up", 5.0)  # arrives before the earlier one: still ordered by time
    p.on_marker("block_start:Regulate", 3.0)
    p.on_marker("reward", 3.5)  # not a block marker
    p.on_marker("block_end:up", 8.0)
    expected = ((t >= 3.0) & (t < 8.0)).astype(float)
    np.testing.assert_array_equal(p.activity(t), expected)
    np.testing.assert_allclose(p.drive(t), 0.4 * expected)
    assert p.blocks == 3 and p.label == "Regulate"
    p.forget_before(6.0)
    np.testing.assert_array_equal(p.activity(t[t >= 6.0]), expected[t >= 6.0])


def test_chunking_does_not_change_the_output():
    n = 400
    drive = np.zeros(n)
    drive[50:200] = 0.7
    kwargs = dict(rate=FS, seed=9, motion_every_s=5.0)
    one, eight = FnirsGenerator(**kwargs), FnirsGenerator(**kwargs)
    a = np.concatenate([one.generate(1, drive[i:i + 1]) for i in range(n)])
    b = np.concatenate([eight.generate(8, drive[i:i + 8]) for i in range(0, n, 8)])
    c = FnirsGenerator(**kwargs).generate(n, drive)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    np.testing.assert_allclose(a, c, rtol=1e-12, atol=0)
    assert one.motion.events == eight.motion.events and len(one.motion.events) >= 3


def test_motion_events_move_the_light_of_one_region():
    gen = FnirsGenerator(rate=FS, seed=4, motion_every_s=20.0)
    x = gen.generate(int(300 * FS))
    quiet = FnirsGenerator(rate=FS, seed=4).generate(int(300 * FS))
    artefact = -np.log(x / quiet)  # the motion part of the OD (everything else is the same)
    events = gen.motion.events
    assert 5 <= len(events) <= 30
    m = gen.montage
    x_mid = m.midpoints[m.column_pairs, 0]
    for e in events[:5]:
        lo, hi = e.onset, e.onset + int(e.duration_s * FS)
        moved = np.abs(artefact[lo:hi]).max(axis=0) > 0.02
        assert moved.any()
        side = x_mid[moved]
        assert np.ptp(side) < 70  # one region (a third of the 166 mm wide band), not the whole forehead
    assert np.abs(artefact).max() < 0.8
