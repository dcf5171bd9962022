"""Volumes placed by acquisition number (issue 12): a late start, a lost first volume, drops and swaps change
only the volumes not seen, never where the others sit.

The per-volume pipeline is fed the real OpenNFT run's volumes in the order a broken scanner link would
deliver them; its feedback must equal the offline reference placed by acquisition number
(``offline_features_placed``: a fresh least-squares fit per volume with each row at its acquisition
position, PSC baselines and the moving average indexed by acquisition), written from the definitions.
The same run placed by ARRIVAL gives other numbers: the check has teeth.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from controller.fmri.design import VolumeDesign
from controller.fmri.glm import GlmConfig
from controller.fmri.offline import FeaturePipelineConfig, offline_features_placed
from controller.fmri.pipeline import VolumePipeline
from controller.fmri.psc import PscConfig, PscFeedback, offline_psc_placed
from controller.inputs.volumes.volume import Volume
from controller.lang.compiled import Block
from controller.protocol import load_protocol

ROOT = Path(__file__).resolve().parents[3]
OPENNFT = ROOT.parent / "shared" / "data" / "fmri" / "opennft"
RUN = OPENNFT / "opennft_psc_run_vols001-048_4d.nii.gz"
STOCK = ROOT / "protocols" / "opennft_psc_replay.yaml"

pytestmark = pytest.mark.skipif(not RUN.exists(), reason="../shared/data/fmri/opennft not present")


@pytest.fixture(scope="module")
def run() -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(RUN))
    return np.asarray(img.dataobj, dtype=np.float32), img.affine


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    text = STOCK.read_text().replace("../../shared/data", str(ROOT.parent / "shared" / "data"))
    path = tmp_path_factory.mktemp("placement") / "opennft.yaml"
    path.write_text(text)
    return load_protocol(path)


def _pipeline(protocol) -> VolumePipeline:
    spec = protocol.volume_inputs["fmri"]
    return VolumePipeline(spec, list(protocol.features.values()), protocol.rois, protocol.timeline,
                          feedback_blocks=protocol.feedback.during)


def _push_all(pipe: VolumePipeline, data: np.ndarray, affine: np.ndarray, order: list[int]) -> list[dict]:
    rows = []
    for k, index in enumerate(order):
        v = Volume(index, data[..., index - 1], affine, 1.97, acquired=float(index), arrived=float(k))
        res = pipe.push(v)
        values = {f.name: f.value for f in res.values}
        rows.append({**res.qc.to_data(), "values": values, "block_index": {f.block_index for f in res.values}})
    return rows


def _reference(protocol, pipe: VolumePipeline, rows: list[dict], by_arrival: bool = False) -> dict[str, np.ndarray]:
    """Offline, from the online raw ROI means and motion of the counted volumes (the stages after them)."""
    counted = [r for r in rows if not r.get("dummy")]
    design = pipe.design
    places = [design.place(r["index"]) for r in counted]
    if by_arrival:  # the old way: the k-th volume received taken as the k-th acquired
        places = [design.place(design.first + k) for k in range(len(counted))]
    spec = protocol.volume_inputs["fmri"]
    out = {}
    for name, f in protocol.features.items():
        raw = np.array([[r["rois"][f.params.roi]["raw"]] for r in counted])
        cfg = FeaturePipelineConfig(glm=GlmConfig(drift_order=spec.detrend.drift_order, motion=spec.detrend.motion,
                                                  n_task=1, n_planned=design.volumes),
                                    psc=PscConfig(baseline=f.params.baseline, skip=f.params.skip,
                                                  window=f.params.average))
        motion = np.array([r["motion"] for r in counted])
        res = offline_features_placed(raw, motion, places, cfg, pipe.task)
        out[name] = res.feedback[:, 0]
    return out


def _online(rows: list[dict], name: str) -> np.ndarray:
    return np.array([r["values"].get(name, np.nan) for r in rows if not r.get("dummy")])


ORDERS = {
    "in order": list(range(1, 49)),
    "first counted volume lost": [i for i in range(1, 49) if i != 6],
    "late start at 14": list(range(14, 49)),
    "drops and swaps": [1, 2, 3, 4, 5, 6, 7, 9, 8, 10, 11, 12, 16, 17, 18, 19, 21, 20, 22, 23, 24, 25, 27, 28, 29,
                        30, 31, 33, 32, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 47, 46, 48],
    "a baseline volume delivered after the next block began": [*range(1, 15), 16, 15, *range(17, 49)],
}


@pytest.mark.parametrize("case", list(ORDERS))
def test_feedback_equals_the_offline_reference_placed_by_acquisition(run, protocol, case: str) -> None:
    data, affine = run
    order = ORDERS[case]
    pipe = _pipeline(protocol)
    rows = _push_all(pipe, data, affine, order)
    reference = _reference(protocol, pipe, rows)
    for name in protocol.features:
        online = _online(rows, name)
        assert np.isfinite(online).sum() >= 10, case
        np.testing.assert_allclose(online, reference[name], rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=case)
    for r in rows:  # every value says the block its volume was acquired in
        if r["values"]:
            assert r["block_index"] == {pipe.design.block_of(r["index"]).index}
    if case != "in order" and case != "a baseline volume delivered after the next block began":
        by_arrival = _reference(protocol, pipe, rows, by_arrival=True)["lroi_psc"]
        diff = np.nanmax(np.abs(by_arrival - _online(rows, "lroi_psc")))
        assert diff > 0.01, f"{case}: placing by arrival should have shifted the feedback (max diff {diff})"


def test_a_late_start_costs_only_the_volumes_not_seen(run, protocol) -> None:
    """Joining at volume 14 (counted 8, the first baseline's 9th volume): from the first NF volume on, the
    feedback is the full run's wherever the baseline it needs was seen whole enough (skip 3 TR)."""
    data, affine = run
    full = _push_all(_pipeline(protocol), data, affine, list(range(1, 49)))
    late = _push_all(_pipeline(protocol), data, affine, list(range(14, 49)))
    assert [r["block"] for r in late] == [r["block"] for r in full if r["index"] >= 14]  # the scanner's blocks
    assert [r["counted"] for r in late] == list(range(8, 43))
    # a value as soon as a baseline before it closed: volume 16 (the first NF volume) has one
    first_value = next(r["index"] for r in late if r["values"].get("lroi_psc") is not None)
    assert first_value == 16


def test_psc_placed_by_acquisition_hand_example() -> None:
    """Blocks of 4 volumes rest / up / rest / up; skip 1; window 2. Volume n=2 (rest) is lost, n=5 arrives late."""
    cfg = PscConfig(baseline="rest", skip=1, window=2)
    blocks = [Block(0, "rest", 4.0), Block(1, "up", 4.0), Block(2, "rest", 4.0), Block(3, "up", 4.0)]
    design = VolumeDesign(blocks, 1.0, 1)
    values = {1: 90.0, 2: 100.0, 3: 98.0, 4: 102.0, 5: 101.0, 6: 103.0, 7: 104.0, 8: 99.0,
              9: 50.0, 10: 200.0, 11: 200.0, 12: 200.0, 13: 202.0, 14: 204.0}
    order = [1, 3, 4, 6, 5, 7, 8, 9, 10, 11, 12, 13, 14]  # 2 lost; 5 after 6
    p = PscFeedback(cfg)
    out = {}
    for i in order:
        pl = design.place(i)
        out[i] = p.update(pl.label, values[i], block=pl.block.index, position=pl.position, n=pl.n)
    assert out[6].psc[0] == pytest.approx(100 * (103 - 100) / 100)  # baseline = mean(98, 102): 90 skipped, 100 lost
    # volume 5 (late): its window is the volumes acquired at n = 3, 4, not the last two to arrive (6 and 5: 2 %)
    assert out[5].psc[0] == pytest.approx(1.0) and out[5].feedback[0] == pytest.approx(1.0)
    assert out[7].feedback[0] == pytest.approx((3.0 + 4.0) / 2)  # volumes 6 and 7
    assert out[13].psc[0] == pytest.approx(1.0)  # rest 2 closed: mean(200, 200, 200), the 50 skipped
    places = [design.place(i) for i in order]
    off_psc, off_fb = offline_psc_placed(np.array([values[i] for i in order]), [q.label for q in places],
                                         [q.block.index for q in places], [q.position for q in places],
                                         [q.n for q in places], cfg)
    on_psc = np.array([np.nan if out[i].psc is None else out[i].psc[0] for i in order])
    on_fb = np.array([np.nan if out[i].feedback is None else out[i].feedback[0] for i in order])
    np.testing.assert_allclose(on_psc, off_psc, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(on_fb, off_fb, rtol=1e-12, equal_nan=True)
