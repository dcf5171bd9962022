"""MegLayout on the real Neuromag Vectorview file's channel names and types (and sensor geometry to check pairs)."""

from pathlib import Path

import numpy as np
import pytest

from controller.dsp.meg.layout import MegLayout, canonical_label

FIF = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "meg" / "sample_audvis_trunc_raw_sss.fif"
needs_fif = pytest.mark.skipif(not FIF.is_file(), reason=f"real MEG recording not available: {FIF}")


@pytest.fixture(scope="module")
def info():
    mne = pytest.importorskip("mne")
    return mne.io.read_info(FIF, verbose=False)


@needs_fif
def test_real_file_layout(info):
    labels = info["ch_names"]
    types = [str(t) for t in info.get_channel_types()]
    layout = MegLayout.from_stream(labels, types)
    assert len(layout.mags) == 102 and len(layout.grads) == 204
    assert layout.pairs.shape == (102, 2)
    assert np.array_equal(np.sort(layout.pairs.ravel()), layout.grads)  # every gradiometer in exactly one pair
    assert layout.meg.tolist() == list(range(306))  # the fif's MEG channels come first
    first = [labels[i] for i in layout.pairs[0]]
    assert first == ["MEG 0112", "MEG 0113"]  # the '2' then the '3' one, although the fif lists 0113 first
    loc = np.array([ch["loc"] for ch in info["chs"]])
    # the two gradiometers of a pair sit at one location, at their unit's magnetometer ('...1')
    np.testing.assert_array_equal(loc[layout.pairs[:, 0], :3], loc[layout.pairs[:, 1], :3])
    mag_at = {canonical_label(labels[i])[:-1]: i for i in layout.mags}
    mags_of_pairs = [mag_at[canonical_label(labels[a])[:-1]] for a, _ in layout.pairs]
    np.testing.assert_allclose(loc[mags_of_pairs, :3], loc[layout.pairs[:, 0], :3], atol=0)
    # and their gradient directions (loc[3:6]) are orthogonal
    dots = np.einsum("ij,ij->i", loc[layout.pairs[:, 0], 3:6], loc[layout.pairs[:, 1], 3:6])
    assert np.all(np.abs(dots) < 1e-3)  # (stored as float32)


@needs_fif
def test_vectorview_selection_restricted_and_spelling_robust(info):
    labels = info["ch_names"]
    types = [str(t) for t in info.get_channel_types()]
    layout = MegLayout.from_stream(labels, types)
    got = layout.selection("Left-occipital")
    units = ("164", "171", "172", "173", "174", "191", "192", "193", "194", "204", "211", "214")
    assert sorted(got) == sorted(f"MEG {u}{d}" for u in units for d in "123")
    assert list(got) == [lab for lab in labels if lab in got]  # stream order
    # a stream spelling names without the space, and holding only part of the selection
    squashed = [lab.replace("MEG ", "MEG") for lab in labels]
    keep = [i for i, lab in enumerate(squashed) if not lab.startswith("MEG164")]
    partial = MegLayout.from_stream([squashed[i] for i in keep], [types[i] for i in keep])
    assert sorted(partial.selection("Left-occipital")) == sorted(f"MEG{u}{d}" for u in units[1:] for d in "123")
    assert len(layout.selection("occipital")) == 2 * len(got)  # MNE's substring match: left and right
    with pytest.raises(ValueError, match="Vectorview selections"):
        layout.selection("Nowhere")


def test_unpaired_gradiometer_is_named():
    labels = ["MEG 0111", "MEG 0112", "MEG 0113", "MEG 0121", "MEG 0122", "EEG 001"]
    types = ["mag", "grad", "grad", "mag", "grad", "eeg"]
    with pytest.raises(ValueError, match="'MEG 0122' has no partner"):
        MegLayout.from_stream(labels, types)
    ok = MegLayout.from_stream(labels[:3] + labels[5:], types[:3] + types[5:])
    assert ok.pairs.tolist() == [[1, 2]] and ok.mags.tolist() == [0]


def test_generic_meg_type_resolved_by_unit():
    labels = ["MEG0111", "MEG0112", "MEG0113", "STI014"]
    layout = MegLayout.from_stream(labels, ["MEG", "MEG", "MEG", "stim"], ["fT", "fT/cm", "T/m", ""])
    assert layout.mags.tolist() == [0] and layout.pairs.tolist() == [[1, 2]]
    with pytest.raises(ValueError, match="neither magnetometer"):
        MegLayout.from_stream(labels, ["MEG"] * 4, ["fT", "fT/cm", "T/m", "V"])
