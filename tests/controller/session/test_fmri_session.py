"""Real-time fMRI sessions end to end: the simulator and the real OpenNFT run replayed as a scanner writes it.

Each session runs the way the CLI runs it (``run_session``): the simulator or the replay in its
own process writing into the session's scanner folder (or streaming over LSL), the folder/LSL
source, the per-volume pipeline, the engine, the LSL outlets, LabRecorder and the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import session_journal

from controller.fmri.design import VolumeDesign
from controller.fmri.glm import GlmConfig
from controller.fmri.hrf import task_regressor
from controller.fmri.offline import FeaturePipelineConfig, offline_features
from controller.fmri.pipeline import build_roi, task_conditions
from controller.fmri.psc import PscConfig
from controller.fmri.realign import Realigner
from controller.fmri.realign_sample import reslice
from controller.protocol import load_protocol
from controller.session.fmri_modality import FmriSimOptions
from controller.session.runner import RunOptions, SimOptions, run_session

ROOT = Path(__file__).resolve().parents[3]
OPENNFT = ROOT.parent / "shared" / "data" / "fmri" / "opennft"
RUN = OPENNFT / "opennft_psc_run_vols001-048_4d.nii.gz"

pytestmark = [pytest.mark.lsl, pytest.mark.slow]


def _run(protocol: Path, tmp_path: Path, fmri: FmriSimOptions, **kw) -> tuple[Path, list[dict]]:
    opts = RunOptions(protocol_path=protocol, session_root=tmp_path / "sessions", sim=SimOptions(), fmri_sim=fmri,
                      progress=None, keyboard=False, lsl_prefix=f"nr-test-{tmp_path.name[-12:]}", **kw)
    result = run_session(opts)
    assert result.status in ("completed", "stopped"), result.status
    return result.session_dir, session_journal(result.session_dir)


def test_amygdala_session_on_the_simulator(tmp_path: Path) -> None:
    session, events = _run(ROOT / "protocols" / "amygdala_mdd.yaml", tmp_path,
                           FmriSimOptions(speed=10.0, volumes=50, seed=3), run="nf1")
    volumes = [e["data"] for e in events if e["kind"] == "volume"]
    assert [v["index"] for v in volumes] == list(range(1, 51))
    counted = [v for v in volumes if not v.get("dummy")]
    assert len(counted) == 47 and counted[0]["index"] == 4  # skip: 3 TR
    for v in counted:
        assert len(v["motion"]) == 6 and v["fd_mm"] >= 0
        assert v["timing_ms"]["arrival_to_feedback"] > 0 and set(v["rois"]) == {"amygdala_l"}
        assert v["timing_ms"]["acquisition_to_arrival"] is None and v["acquisition_time"].startswith("unknown")
    blocks = {v["block"] for v in counted}
    assert blocks == {"rest", "happy"}  # 47 volumes at TR 2 s: the first rest and happy blocks, then rest
    start = next(e for e in events if e["kind"] == "session_start")["data"]
    assert start["fmri"]["run"] == "nf1"
    thresholds = [e["data"] for e in events if e["kind"] == "threshold"]
    assert thresholds[0]["name"] == "target" and thresholds[0]["value"] == 1.0  # run nf1's target
    psc = [e for e in events if e["kind"] == "feature" and e["data"]["name"] == "amygdala"]
    assert psc and all(e["t_source"] in {v["acquired"] for v in counted} for e in psc)
    by_index = {v["acquired"]: v["block"] for v in counted}
    feedback = [e for e in events if e["kind"] == "feedback"]
    assert feedback and all(by_index[e["t_source"]] == "happy" for e in feedback)  # feedback: during happy only
    truth = session / "scanner" / "sim_truth.tsv"
    assert truth.exists()
    # the recording holds the QC stream and the simulator's truth
    import pyxdf

    streams, _ = pyxdf.load_xdf(str(session / "recording.xdf"))
    names = {s["info"]["name"][0] for s in streams}
    assert any(n.endswith("-fmri-qc") for n in names) and any(n.endswith("-state") for n in names)
    qc = next(s for s in streams if s["info"]["name"][0].endswith("-fmri-qc"))
    assert qc["time_series"].shape == (47, 10)
    np.testing.assert_allclose(qc["time_series"][:, 8], [v["timing_ms"]["arrival_to_feedback"] for v in counted])
    assert np.isnan(qc["time_series"][:, 9]).all()  # a folder does not know the acquisition time
    np.testing.assert_array_equal(qc["time_series"][:, 0], [v["index"] for v in counted])


def _offline_reference(protocol_path: Path, indices: list[int], affine: np.ndarray) -> dict[str, np.ndarray]:
    """The same pipeline computed on the whole 4D array (realign all, reslice, then every stage offline).

    ``affine``: the geometry the session read (a MOSAIC's header gives the NIfTI's affine to ~1e-6 mm,
    enough to move the numbers at 1e-7, so the reference uses what the session saw)."""
    protocol = load_protocol(protocol_path)
    spec = protocol.volume_inputs["fmri"]
    img = nib.Nifti1Image(np.asarray(nib.load(str(RUN)).dataobj), affine)
    data = np.asarray(img.dataobj, dtype=np.float32)
    design = VolumeDesign(protocol.timeline, spec.tr_s, 1 + spec.skip)
    counted = [i for i in indices if design.counted(i) >= 0]
    ref = data[..., counted[0] - 1].astype(np.float64)
    realigner = Realigner(ref, img.affine)
    motions = [realigner.estimate(data[..., i - 1]) for i in counted]
    moved = np.stack([reslice(data[..., i - 1], img.affine, m) for i, m in zip(counted, motions)], axis=-1)
    params = np.array([m.params6() for m in motions])
    labels = [design.block_of(i).label for i in counted]
    conditions = task_conditions(list(protocol.features.values()), protocol.timeline, protocol.feedback.during)
    all_labels = [b.label if (b := design.block_of(i)) else "" for i in range(design.first, design.first + design.volumes)]
    task = task_regressor(all_labels, conditions, spec.tr_s)[: len(counted), None]
    out = {}
    for name, f in protocol.features.items():
        roi = build_roi(protocol.rois[f.params.roi], data.shape[:3], img.affine, None)
        d = spec.detrend
        cfg = FeaturePipelineConfig(glm=GlmConfig(drift_order=d.drift_order, motion=d.motion, n_task=1,
                                                  n_planned=design.volumes),
                                    psc=PscConfig(baseline=f.params.baseline, skip=f.params.skip,
                                                  window=f.params.average))
        res = offline_features(moved, img.affine, [roi], params, labels, cfg, task)
        out[name] = res.feedback[:, 0]
    out["counted"] = np.array(counted)
    out["labels"] = np.array(labels)
    return out


def _online(events: list[dict], name: str) -> dict[int, float]:
    acquired = {e["data"]["acquired"]: e["data"]["index"] for e in events if e["kind"] == "volume"}
    return {acquired[e["t_source"]]: e["data"]["value"] for e in events
            if e["kind"] == "feature" and e["data"]["name"] == name}


@pytest.mark.skipif(not RUN.exists(), reason="../shared/data/fmri/opennft not present")
@pytest.mark.parametrize("transport", ["dicom-folder", "lsl"])
def test_the_real_opennft_run_replayed_matches_the_offline_pipeline(tmp_path: Path, transport: str) -> None:
    protocol_path = ROOT / "protocols" / "opennft_psc_replay.yaml"
    if transport == "lsl":  # the same protocol reading an LSL stream of volumes instead of the folder
        text = protocol_path.read_text().replace('volumes: {folder: scanner_export, pattern: "001_000007_*.dcm"}',
                                                 "volumes: {stream: {type: fMRI}}")
        text = text.replace("../../shared/data", str(ROOT.parent / "shared" / "data"))
        protocol_path = tmp_path / "opennft_lsl.yaml"
        protocol_path.write_text(text)
    session, events = _run(protocol_path, tmp_path, FmriSimOptions(replay=str(RUN), speed=6.0))
    volumes = [e["data"] for e in events if e["kind"] == "volume"]
    assert [v["index"] for v in volumes] == list(range(1, 49))
    problems = [e for e in events if e["kind"] == "input" and e["data"]["status"] in ("missing", "out_of_order",
                                                                                      "stalled")]
    assert problems == []  # the whole file replayed: no stall at its end either
    stopped = [e["data"]["reason"] for e in events if e["kind"] == "state" and e["data"]["state"] == "stopped"]
    assert stopped == ["the simulated scanner finished: all 48 volumes sent were processed"]
    if transport == "lsl":  # the recording has every volume, the first included
        import pyxdf

        streams, _ = pyxdf.load_xdf(str(session / "recording.xdf"))
        sent = next(s for s in streams if s["info"]["type"][0] == "fMRI")
        assert sent["time_series"][:, 0].astype(int).tolist() == list(range(1, 49))
    # the volume's time as its stages: over LSL the replay stamps each volume with its acquisition and sends it a
    # period later (as a scanner does once the volume is complete): that period is delivery, not pipeline time
    period_ms = 1e3 * 1.97 / 6.0
    for e in [e for e in events if e["kind"] == "volume"][5:]:  # the counted ones (5 dummies)
        v, t = e["data"], e["data"]["timing_ms"]
        assert t["arrival_to_feedback"] == pytest.approx(1e3 * (e["t"] - v["received"]), abs=1e-6)
        if transport == "lsl":
            assert v["acquisition_time"] == "known (LSL timestamp)"
            assert t["acquisition_to_arrival"] >= 0.9 * period_ms
            assert t["total"] == pytest.approx(t["acquisition_to_arrival"] + t["arrival_to_feedback"], abs=1e-9)
        else:
            assert v["acquisition_time"].startswith("unknown")
            assert t["acquisition_to_arrival"] is None and t["total"] is None
    summary = json.loads((session / "report" / "summary.json").read_text())["fmri"]
    pipeline = [v["timing_ms"]["arrival_to_feedback"] for v in volumes[5:]]
    assert summary["tr_fraction"] == pytest.approx(np.median(pipeline) / 1970.0, rel=1e-9)  # the budget: pipeline
    assert summary["timing_ms"]["acquisition_to_arrival"]["n"] == (len(pipeline) if transport == "lsl" else 0)
    if transport == "lsl":
        affine = nib.load(str(RUN)).affine  # the stream description carries it exactly
    else:
        from controller.inputs.volumes.dicom import read_dicom

        affine = read_dicom(next((session / "scanner").glob("*.dcm"))).affine
    reference = _offline_reference(protocol_path, list(range(1, 49)), affine)
    online = _online(events, "lroi_psc")
    counted = reference["counted"]
    have = [(k, i) for k, i in enumerate(counted) if np.isfinite(reference["lroi_psc"][k])]
    assert len(have) >= 30 and set(i for _, i in have) == set(online)
    got = np.array([online[i] for _, i in have])
    want = np.array([reference["lroi_psc"][k] for k, _ in have])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    # the online feedback follows the run's block design as its OpenNFT JSON states it (NF blocks counted after
    # the 5 skipped volumes), convolved with the HRF; the protocol's timeline is that design
    from controller.fmri.opennft_json import opennft_block_labels

    labels = opennft_block_labels(RUN.parent / "NF_PSC_cont_155.json", len(counted))
    assert [{"BAS": "baseline", "NFBREG": "nf"}[x] for x in labels] == list(reference["labels"])
    design = task_regressor(labels, {"NFBREG"}, 1.97)
    r = np.corrcoef(got, np.array([design[k] for k, _ in have]))[0, 1]
    assert r > 0.5, r
