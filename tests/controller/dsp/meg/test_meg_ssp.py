"""SSP operator and front end against MNE's own (make_projector, apply_proj) on the real Vectorview file."""

import warnings
from pathlib import Path

import numpy as np
import pytest

from controller.dsp.front_end import FrontEnd
from controller.dsp.meg.front_end import SspFrontEnd
from controller.dsp.meg.ssp import (
    Projector,
    projector_coverage,
    projector_matrix,
    projectors_from_file,
    projectors_from_stream,
)

FIF = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "meg" / "sample_audvis_trunc_raw_sss.fif"
needs_fif = pytest.mark.skipif(not FIF.is_file(), reason=f"real MEG recording not available: {FIF}")


def _make_projector():
    try:
        from mne._fiff.proj import make_projector
    except ImportError:  # older MNE
        from mne.io.proj import make_projector
    return make_projector


@pytest.fixture(scope="module")
def raw():
    mne = pytest.importorskip("mne")
    return mne.io.read_raw_fif(FIF, preload=True, verbose=False)


@pytest.fixture(scope="module")
def meg_projs(raw):
    """Three MEG projectors computed by MNE on the 1 s file (2 planar, 1 axial), plus the file's EEG reference."""
    import mne

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 300 samples: "covariance may be unreliable" - fine here
        return mne.compute_proj_raw(raw, duration=1, n_grad=2, n_mag=1, n_eeg=0, verbose=False)


def ours(mne_projs) -> list[Projector]:
    out = []
    for p in mne_projs:
        for row in np.atleast_2d(p["data"]["data"]):
            out.append(Projector(p["desc"], bool(p["active"]), tuple(p["data"]["col_names"]), np.array(row, float)))
    return out


@needs_fif
def test_matrix_equals_mne_on_the_files_own_projector(raw):
    projs = raw.info["projs"]
    assert [p["desc"] for p in projs] == ["Average EEG reference"]
    expected, nproj, _ = _make_projector()(projs, raw.ch_names)
    got = projector_matrix(ours(projs), raw.ch_names)
    assert nproj == 1
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    assert np.abs(got - np.eye(len(raw.ch_names)))[:306].max() == 0  # an EEG projector leaves MEG alone


@needs_fif
def test_matrix_and_projection_equal_mne_for_meg_projectors(raw, meg_projs):
    projs = list(raw.info["projs"]) + list(meg_projs)
    expected, nproj, _ = _make_projector()(projs, raw.ch_names)
    assert nproj == 4
    got = projector_matrix(ours(projs), raw.ch_names)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)

    # applied to the recording, chunk by chunk, it gives what MNE's apply_proj gives
    reference = raw.copy().add_proj(meg_projs).apply_proj(verbose=False).get_data()
    types = raw.get_channel_types()
    front = SspFrontEnd.from_projectors(raw.ch_names, types, ours(projs))
    data = raw.get_data().T  # (n_samples, n_channels), SI
    out = np.concatenate([front.process(data[i:i + 5]) for i in range(0, len(data), 5)]).T
    for kind in ("mag", "grad", "eeg"):
        picks = [i for i, t in enumerate(types) if t == kind]
        scale = np.abs(reference[picks]).max()
        assert np.abs(out[picks] - reference[picks]).max() <= 1e-10 * scale, kind
    stim = [i for i, t in enumerate(types) if t == "stim"]
    np.testing.assert_array_equal(out[stim], data.T[stim])  # untouched columns pass through exactly
    # and the projected MEG data hold nothing of the removed patterns
    for p in ours(meg_projs):
        cols = [raw.ch_names.index(c) for c in p.channels]
        assert np.abs(p.data @ out[cols]).max() < 1e-10 * np.abs(p.data @ data.T[cols]).max()


@needs_fif
def test_dependent_and_random_vectors_as_mne(raw):
    """Random vectors over the MEG channels, one of them a combination of two others: MNE drops it, so do we."""
    import mne

    rng = np.random.default_rng(7)
    names = raw.ch_names[:306]
    vecs = rng.standard_normal((4, 306))
    vecs = np.vstack([vecs, vecs[0] + 0.5 * vecs[1]])
    projs = [mne.Projection(data=dict(nrow=1, ncol=306, row_names=None, col_names=names, data=v[None, :]),
                            desc=f"random {k}", kind=1, active=False) for k, v in enumerate(vecs)]
    expected, nproj, _ = _make_projector()(projs, raw.ch_names)
    assert nproj == 4
    np.testing.assert_allclose(projector_matrix(ours(projs), raw.ch_names), expected, rtol=0, atol=1e-10)


@needs_fif
def test_projection_file_round_trip(raw, meg_projs, tmp_path):
    import mne

    path = tmp_path / "meg-proj.fif"
    mne.write_proj(path, meg_projs, verbose=False)
    read = projectors_from_file(path)
    assert [p.name for p in read] == [p["desc"] for p in meg_projs]
    assert all(len(p.channels) in (204, 102) for p in read) and not any(p.active for p in read)
    expected, _, _ = _make_projector()(mne.read_proj(path, verbose=False), raw.ch_names)  # (stored as float32)
    np.testing.assert_allclose(projector_matrix(read, raw.ch_names), expected, rtol=0, atol=1e-10)


def test_stream_fields_parse_exactly():
    data = np.array([0.1, -0.2, 1 / 3])
    entry = {"name": "ECG-1", "active": "0", "channels": "MEG 0111, MEG 0121,MEG 0131",
             "data": " ".join(repr(float(v)) for v in data)}
    (p,) = projectors_from_stream([entry])
    assert p.name == "ECG-1" and not p.active and p.channels == ("MEG 0111", "MEG 0121", "MEG 0131")
    np.testing.assert_array_equal(p.data, data)  # repr precision: exact
    for bad, message in ((dict(active="yes"), "active must be 0 or 1"), (dict(data="0.1 0.2"), "3 channels but 2"),
                         (dict(data="0.1 x 0.2"), "space-separated numbers"), (dict(name=""), "no name"),
                         (dict(data="0.1 nan 0.2"), "finite"), (dict(channels="a,,b"), "empty channel")):
        with pytest.raises(ValueError, match=message):
            projectors_from_stream([{**entry, **bad}])


def test_front_end_partial_coverage_spelling_and_chunks():
    labels = ["MEG0111", "MEG0121", "MEG0131", "STI 014", "MEG0141"]
    types = ["mag", "mag", "mag", "stim", "mag"]
    proj = Projector("p", False, ("MEG 0111", "MEG 0121", "MEG 0131"), np.array([1.0, 2.0, 2.0]))
    front: FrontEnd = SspFrontEnd.from_projectors(labels, types, [proj])
    assert front.labels == tuple(labels) and front.types == tuple(types)
    assert isinstance(front, SspFrontEnd) and front.covered.tolist() == [0, 1, 2]
    u = np.array([1.0, 2.0, 2.0]) / 3.0
    np.testing.assert_allclose(front.matrix[:3, :3], np.eye(3) - np.outer(u, u), atol=1e-15)
    x = np.random.default_rng(1).standard_normal((103, 5)) * 1e-13
    whole = front.process(x)
    chunks = np.concatenate([front.process(x[i:i + 5]) for i in range(0, 103, 5)])
    np.testing.assert_allclose(chunks, whole, rtol=0, atol=1e-28)
    np.testing.assert_array_equal(whole[:, 3:], x[:, 3:])
    assert np.abs(whole[:, :3] @ u).max() < 1e-27
    front.reset()
    np.testing.assert_array_equal(front.process(x), whole)
    assert projector_coverage([proj], labels[:2]).tolist() == pytest.approx([np.sqrt(5) / 3])
    # no projector: a copy; a wrong shape is refused
    empty = SspFrontEnd.from_projectors(labels, types, [])
    assert empty.covered.size == 0 and np.array_equal(empty.process(x), x)
    with pytest.raises(ValueError, match=r"\(5, 5\)"):
        SspFrontEnd(labels, types, np.eye(4))
    with pytest.raises(ValueError, match="leave no signal"):
        projector_matrix([Projector("a", False, ("a",), np.array([1.0]))], ["a"])


def test_kinds_projected_separately():
    """An EEG reference and a MEG projector in one operator: volts never leak into teslas, NaN in a stim stays there."""
    labels = ["EEG 001", "EEG 002", "EEG 003", "MEG 0111", "MEG 0121", "MEG 0131", "STI 014"]
    types = ["eeg"] * 3 + ["mag"] * 3 + ["stim"]
    eeg = Projector("Average EEG reference", False, tuple(labels[:3]), np.full(3, 1 / np.sqrt(3)))
    meg = Projector("ECG", False, tuple(labels[3:6]), np.array([0.3, -0.5, 0.8]))
    both = SspFrontEnd.from_projectors(labels, types, [eeg, meg])
    alone = SspFrontEnd.from_projectors(labels[3:6], types[3:6], [meg])
    rng = np.random.default_rng(3)
    x = np.hstack([rng.standard_normal((50, 3)) * 1e-5, rng.standard_normal((50, 3)) * 1e-13, np.full((50, 1), np.nan)])
    out = both.process(x)
    np.testing.assert_allclose(out[:, 3:6], alone.process(x[:, 3:6]), rtol=0, atol=1e-28)
    np.testing.assert_allclose(out[:, :3], x[:, :3] - x[:, :3].mean(axis=1, keepdims=True), rtol=0, atol=1e-20)
    assert np.isnan(out[:, 6]).all() and np.isfinite(out[:, :6]).all()
