"""NirsLayout: grouping columns into pairs whatever their order, geometry, short channels, errors;
the extinction table against MNE's own loader."""

from __future__ import annotations

import numpy as np
import pytest

from controller.dsp.nirs import NirsLayout
from controller.dsp.nirs.beer_lambert import mbll_matrices
from controller.dsp.nirs.extinction import absorption_coefficients

PAIRS = ["S1_D1", "S1_D2", "S2_D1", "S2_D3"]


def test_wavelength_major_and_pair_major_orders_give_the_same_pairs() -> None:
    wl_major = [f"{p} {wl}" for wl in (760, 850) for p in PAIRS]
    pair_major = [f"{p} {wl}" for p in PAIRS for wl in (850, 760)]  # and the wavelengths swapped
    a = NirsLayout.from_labels(wl_major, distance_m=0.03)
    b = NirsLayout.from_labels(pair_major, distance_m=0.03)
    assert a.names == b.names == tuple(PAIRS)
    assert a.wavelengths == b.wavelengths == (760.0, 850.0)
    for pa, pb in zip(a.pairs, b.pairs):
        assert [wl_major[c] for c in pa.columns] == [pair_major[c] for c in pb.columns] == [f"{pa.name} 760",
                                                                                           f"{pa.name} 850"]
    assert a.columns().tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_wavelengths_given_separately_and_other_columns_left_out() -> None:
    labels = ["S1_D1", "S1_D1", "Trigger", "S2_D1", "S2_D1"]
    lay = NirsLayout.from_labels(labels, wavelengths=[690, 830, None, 830, 690], distance_m=0.03)
    assert lay.names == ("S1_D1", "S2_D1")
    assert [p.columns for p in lay.pairs] == [(0, 1), (4, 3)]
    assert lay.unused_columns == (2,)
    assert lay.n_columns == 5


def test_a_missing_wavelength_names_the_pair_and_the_wavelength() -> None:
    labels = ["S1_D1 760", "S1_D2 760", "S1_D1 850"]
    with pytest.raises(ValueError, match=r"S1_D2 has no column at 850 nm"):
        NirsLayout.from_labels(labels)


def test_more_than_two_wavelengths_and_duplicates_are_refused() -> None:
    with pytest.raises(ValueError, match="exactly 2 wavelengths"):
        NirsLayout.from_labels(["S1_D1 690", "S1_D1 760", "S1_D1 850"])
    with pytest.raises(ValueError, match="appears twice"):
        NirsLayout.from_labels(["S1_D1 690", "S1_D1 690", "S1_D1 850"])
    with pytest.raises(ValueError, match="no column label"):
        NirsLayout.from_labels(["Fz", "Cz"])


def _geometry() -> dict[str, list[float]]:
    # Two sources 6 cm apart on a line, long detectors 3 cm away, short detectors 8 mm away from each source.
    return {
        "S1": [0.0, 0.0, 0.0], "S2": [0.06, 0.0, 0.0],
        "D1": [0.03, 0.0, 0.0],  # between the sources: 3 cm from both
        "D2": [-0.03, 0.0, 0.0], "D3": [0.09, 0.0, 0.0],
        "D7": [0.0, 0.008, 0.0], "D8": [0.06, 0.008, 0.0],  # short detectors
    }


def test_short_channels_and_nearest_short_by_midpoint() -> None:
    names = ["S1_D1", "S1_D2", "S2_D1", "S2_D3", "S1_D7", "S2_D8"]
    labels = [f"{n} {wl}" for wl in (760, 850) for n in names]
    lay = NirsLayout.from_labels(labels, positions=_geometry())
    assert [p.short for p in lay.pairs] == [False, False, False, False, True, True]
    np.testing.assert_allclose(lay.distances(), [0.03, 0.03, 0.03, 0.03, 0.008, 0.008], rtol=1e-12)
    assert [p.name for p in lay.long_pairs] == names[:4]
    # S1_D1's midpoint (1.5 cm) is 1.55 cm from S1_D7's (0, 0.4 cm) and 4.5 cm from S2_D8's.
    assert lay.nearest_short("S1_D1").name == "S1_D7"  # type: ignore[union-attr]
    assert lay.nearest_short("S1_D2").name == "S1_D7"  # type: ignore[union-attr]
    assert lay.nearest_short("S2_D1").name == "S2_D8"  # type: ignore[union-attr]
    assert lay.nearest_short("S2_D3").name == "S2_D8"  # type: ignore[union-attr]
    assert lay.nearest_short("S1_D7") is None
    assert lay.nearest_short_indices().tolist() == [4, 4, 5, 5, -1, -1]


def test_without_positions_the_short_partner_shares_the_source() -> None:
    names = ["S1_D1", "S2_D1", "S3_D2", "S1_D7", "S2_D8"]
    labels = [f"{n} {wl}" for n in names for wl in (760, 850)]
    dist = {"S1_D1": 0.03, "S2_D1": 0.03, "S3_D2": 0.03, "S1_D7": 0.008, "S2_D8": 0.008}
    lay = NirsLayout.from_labels(labels, distance_m=dist)
    assert [p.short for p in lay.pairs] == [False, False, False, True, True]
    assert lay.nearest_short("S1_D1").name == "S1_D7"  # type: ignore[union-attr]
    assert lay.nearest_short("S2_D1").name == "S2_D8"  # type: ignore[union-attr]
    assert lay.nearest_short("S3_D2") is None


def test_beer_lambert_refuses_unknown_distances() -> None:
    lay = NirsLayout.from_labels(["S1_D1 760", "S1_D1 850", "S2_D1 760", "S2_D1 850"], positions={"S1": [0, 0, 0]})
    assert lay.distances() == [None, None]
    with pytest.raises(ValueError, match=r"S1_D1 \(None\).*positions or distance_m"):
        mbll_matrices(lay.wavelengths, lay.distances(), names=lay.names)


@pytest.mark.parametrize("wavelengths", [(690, 830), (760, 850), (761, 849)])
def test_extinction_equals_mne(wavelengths: tuple[int, int]) -> None:
    loader = pytest.importorskip("mne.preprocessing.nirs._beer_lambert_law")._load_absorption
    np.testing.assert_allclose(absorption_coefficients(wavelengths), loader(np.array(wavelengths)), rtol=1e-15, atol=0)


def test_extinction_outside_the_table_is_refused() -> None:
    with pytest.raises(ValueError, match="1200 nm"):
        absorption_coefficients((690, 1200))
