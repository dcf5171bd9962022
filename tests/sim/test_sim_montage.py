"""Simulated cap labels and positions."""

import numpy as np
import pytest

from sim.montage import LABELS_64, channel_labels, make_montage


def test_64_labels_are_the_10_10_set_and_unique():
    assert len(LABELS_64) == 64 == len(set(LABELS_64))
    for label in ("Fp1", "Fp2", "Fz", "FCz", "Cz", "C3", "C4", "Pz", "O1", "O2", "Oz", "T7", "T8"):
        assert label in LABELS_64


@pytest.mark.parametrize("n", [1, 2, 3, 8, 19, 32, 63, 64])
def test_small_caps_keep_cz_and_canonical_order(n):
    labels = channel_labels(n)
    assert len(labels) == n == len(set(labels))
    assert "Cz" in labels
    assert labels == [lab for lab in LABELS_64 if lab in labels]


def test_19_channels_are_the_classic_10_20_sites():
    assert set(channel_labels(19)) == {
        "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz",
        "C4", "T8", "P7", "P3", "Pz", "P4", "P8", "O1", "O2",
    }  # fmt: skip


def test_generic_labels_above_64():
    labels = channel_labels(70)
    assert labels[:64] == list(LABELS_64)
    assert labels[64:] == [f"EEG{i:03d}" for i in range(65, 71)]
    with pytest.raises(ValueError, match="channel count"):
        channel_labels(0)


def test_positions_are_on_a_head_and_projection_is_oriented():
    m = make_montage(70)
    assert m.pos3d.shape == (70, 3) and m.pos2d.shape == (70, 2)
    dist = np.linalg.norm(m.pos3d - m.centre, axis=1)
    assert np.all(np.abs(dist - m.radius) < 0.03)  # all within 3 cm of the fitted sphere
    assert 0.07 < m.radius < 0.12
    cz, fp1, oz, t7, t8 = (m.pos2d[m.index(k)] for k in ("Cz", "Fp1", "Oz", "T7", "T8"))
    assert np.linalg.norm(cz) < 0.1  # vertex near the centre
    assert fp1[1] > 0.5 and oz[1] < -0.5  # nose up, occiput down
    assert t7[0] < -0.5 and t8[0] > 0.5  # left on the left
    assert m.index("cz") == m.index("Cz")
    with pytest.raises(KeyError, match="Xx9"):
        m.index("Xx9")


def test_a_montage_of_given_labels_keeps_them_with_10_20_names_at_their_10_10_places():
    """The seizure protocol asks for C3 C4 Cz P3 P4 T3 T4 T5: a simulated cap can carry exactly those."""
    labels = ("C3", "C4", "Cz", "P3", "P4", "T3", "T4", "T5")
    m = make_montage(labels)
    full = make_montage(64)
    assert m.labels == labels and m.pos3d.shape == (8, 3)
    for old, new in (("T3", "T7"), ("T4", "T8"), ("T5", "P7")):
        np.testing.assert_array_equal(m.pos3d[m.index(old)], full.pos3d[full.index(new)])
    np.testing.assert_allclose(m.pos2d[m.index("Cz")], full.pos2d[full.index("Cz")])
    assert m.radius == full.radius
    with pytest.raises(ValueError, match="'Xx9' has no 10-05 template position"):
        make_montage(["Cz", "Xx9"])
    with pytest.raises(ValueError, match="repeat"):
        make_montage(["Cz", "cz"])
