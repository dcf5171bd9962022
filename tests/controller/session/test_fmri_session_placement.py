"""Whole rt-fMRI sessions that do not see their run whole (issue 12): a lost first volume, drops, swaps and a
duplicate over LSL (each volume delivered a TR after its acquisition, as a scanner does), and an operator who
starts ``run`` while the scanner is already writing into the export folder.

Everything real: the real OpenNFT run replayed in its own process (over LSL, or as the DICOM/NIfTI files a
scanner writes), the session as the CLI runs it, the journal and the report. The feedback the session gave
must equal the offline pipeline on the same volumes placed by acquisition number (realign, reslice, ROI
mean, then ``offline_features_placed``); the block statistics must count each volume in the block it was
acquired in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import session_journal, wait_for

from controller.fmri.design import VolumeDesign
from controller.fmri.glm import GlmConfig
from controller.fmri.offline import FeaturePipelineConfig, offline_features_placed, offline_roi_series
from controller.fmri.pipeline import VolumePipeline, build_roi
from controller.fmri.psc import PscConfig
from controller.fmri.realign import Realigner
from controller.fmri.realign_sample import reslice
from controller.protocol import load_protocol
from controller.session.fmri_modality import FmriSimOptions
from controller.session.runner import RunOptions, SimOptions, run_session

ROOT = Path(__file__).resolve().parents[3]
OPENNFT = ROOT.parent / "shared" / "data" / "fmri" / "opennft"
RUN = OPENNFT / "opennft_psc_run_vols001-048_4d.nii.gz"
STOCK = ROOT / "protocols" / "opennft_psc_replay.yaml"
PATTERN_LINE = 'volumes: {folder: scanner_export, pattern: "001_000007_*.dcm"}'

pytestmark = [pytest.mark.lsl, pytest.mark.slow,
              pytest.mark.skipif(not RUN.exists(), reason="../shared/data/fmri/opennft not present")]


def _protocol(tmp_path: Path, volumes: str, repeat: int = 7, last_baseline: bool = True, tr_s: float = 1.97) -> Path:
    """The stock protocol reading ``volumes``; ``tr_s``: a scanner 1.97 / tr_s times faster, blocks of 10 TR."""
    text = STOCK.read_text().replace("../../shared/data", str(ROOT.parent / "shared" / "data"))
    text = text.replace(PATTERN_LINE, f"volumes: {volumes}")
    text = text.replace("  - repeat: 7\n", f"  - repeat: {repeat}\n")
    if not last_baseline:
        assert "  - baseline: 19.7 s\n" in text
        text = text.replace("  - baseline: 19.7 s\n", "")
    text = text.replace("tr: 1.97 s", f"tr: {tr_s:g} s").replace("19.7 s", f"{10 * tr_s:g} s")
    path = tmp_path / "opennft.yaml"
    path.write_text(text)
    return path


def _statuses(events: list[dict], status: str) -> list[dict]:
    return [e["data"] for e in events if e["kind"] == "input" and e["data"]["status"] == status]


def _offline_placed(protocol_path: Path, volumes: list[dict], affine: np.ndarray) -> dict[str, dict[int, float]]:
    """The offline pipeline on the volumes the session processed, in the order it processed them, each placed by
    its acquisition number: realign to the first counted volume received, reslice, ROI means, then the rest."""
    protocol = load_protocol(protocol_path)
    spec = protocol.volume_inputs["fmri"]
    data = np.asarray(nib.load(str(RUN)).dataobj, dtype=np.float32)
    pipe = VolumePipeline(spec, list(protocol.features.values()), protocol.rois, protocol.timeline,
                          feedback_blocks=protocol.feedback.during)
    design = pipe.design
    order = [v["index"] for v in volumes if design.counted(v["index"]) >= 0]
    realigner = Realigner(data[..., order[0] - 1].astype(np.float64), affine)
    motions = [realigner.estimate(data[..., i - 1]) for i in order]
    moved = np.stack([reslice(data[..., i - 1], affine, m) for i, m in zip(order, motions)], axis=-1)
    params = np.array([m.params6() for m in motions])
    places = [design.place(i) for i in order]
    out: dict[str, dict[int, float]] = {}
    for name, f in protocol.features.items():
        roi = build_roi(protocol.rois[f.params.roi], data.shape[:3], affine, None)
        raw = offline_roi_series(moved, affine, [roi])
        d = spec.detrend
        cfg = FeaturePipelineConfig(glm=GlmConfig(drift_order=d.drift_order, motion=d.motion, n_task=1,
                                                  n_planned=design.volumes),
                                    psc=PscConfig(baseline=f.params.baseline, skip=f.params.skip,
                                                  window=f.params.average))
        fb = offline_features_placed(raw, params if d.motion else None, places, cfg, pipe.task).feedback[:, 0]
        out[name] = {i: float(x) for i, x in zip(order, fb) if np.isfinite(x)}
    return out


def _online(events: list[dict], name: str) -> dict[int, float]:
    return {e["data"]["sample_index"]: e["data"]["value"] for e in events
            if e["kind"] == "feature" and e["data"]["name"] == name}


def _check_feedback(protocol_path: Path, events: list[dict], affine: np.ndarray) -> dict[int, float]:
    volumes = [e["data"] for e in events if e["kind"] == "volume"]
    reference = _offline_placed(protocol_path, volumes, affine)
    online = _online(events, "lroi_psc")
    assert len(online) >= 15 and set(online) == set(reference["lroi_psc"])
    got = np.array([online[i] for i in sorted(online)])
    want = np.array([reference["lroi_psc"][i] for i in sorted(online)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    return online


def _acquired_in(design: VolumeDesign, index: int) -> int:
    return design.block_of(index).index


def test_lsl_delivery_with_the_first_volume_lost_drops_swaps_and_a_duplicate(tmp_path: Path) -> None:
    """Over LSL every volume reaches the session a TR after its acquisition stamp, i.e. after its block ended
    for the last volume of each block: the statistics must still count it in its own block."""
    protocol_path = _protocol(tmp_path, "{stream: {type: fMRI}}")
    fmri = FmriSimOptions(replay=str(RUN), speed=6.0,
                          extra_args=["--drop", "6,30,31", "--swap", "20", "--duplicate", "25"])
    result = run_session(RunOptions(protocol_path=protocol_path, session_root=tmp_path / "sessions", sim=SimOptions(),
                                    fmri_sim=fmri, progress=None, keyboard=False,
                                    lsl_prefix=f"nr-test-{tmp_path.name[-12:]}"))
    assert result.status == "stopped" and result.failure is None
    events = session_journal(result.session_dir)
    processed = [e["data"]["index"] for e in events if e["kind"] == "volume"]
    want = [i for i in range(1, 49) if i not in (6, 30, 31)]
    assert sorted(processed) == want and processed.index(21) < processed.index(20)

    # the first counted volume (6) never came: the timeline starts from 7, placed one TR in
    joined = _statuses(events, "joined")
    assert len(joined) == 1 and joined[0]["index"] == 7
    assert "volume 7, placed by its acquisition number 1 TR after the first counted volume (6)" in joined[0]["detail"]
    assert "volume(s) 6 were not seen (1 counted)" in joined[0]["detail"]  # the dummies 1-5 were seen
    assert any("volume 25 received again" in d["detail"] for d in _statuses(events, "duplicate"))
    end = next(e for e in events if e["kind"] == "session_end")["data"]["summary"]["volumes"]["fmri"]
    assert end["missing"] == [6, 30, 31]

    # the engine's timeline is the scanner's: block k starts at volume 6's acquisition + its design time
    starts = [e for e in events if e["kind"] == "block_start"]
    acquired = {e["data"]["index"]: e["data"]["acquired"] for e in events if e["kind"] == "volume"}
    t_run = acquired[7] - 1.97 / 6.0
    for e in starts:
        assert e["t_source"] == pytest.approx(t_run + e["data"]["index"] * 19.7 / 6.0, abs=1e-6)

    online = _check_feedback(protocol_path, events, nib.load(str(RUN)).affine)

    # per block, by acquisition: each NF block's rule evaluations are its volumes (all 10 of each NF block
    # arrived; the last of each arrives after its block ended); baselines have no rule, hence no frames
    spec = load_protocol(protocol_path).volume_inputs["fmri"]
    design = VolumeDesign(load_protocol(protocol_path).timeline, spec.tr_s, 1 + spec.skip)
    stats = {b["index"]: b for b in result.block_stats}
    for k in (1, 3):
        nf = [i for i in online if _acquired_in(design, i) == k]
        assert len(nf) == 10
        assert stats[k]["label"] == "nf" and stats[k]["frames"] == 10
        assert stats[k]["rewarded"] == sum(online[i] > 0.5 for i in nf)
    for k in (0, 2):
        assert stats[k]["label"] == "baseline" and stats[k]["frames"] == 0 and stats[k]["reward_rate"] is None
    rewards = [e for e in events if e["kind"] == "decision"]
    assert all(e["data"]["block_index"] in (1, 3) for e in rewards)

    # the report's block table counts the same way (from the journal alone)
    summary = json.loads((result.session_dir / "report" / "summary.json").read_text())
    rows = {r["index"]: r for r in summary["blocks"]}
    for k in (1, 3):
        assert rows[k]["n_feature_updates"] == 10 and rows[k]["n_rewards"] == stats[k]["rewarded"]
    for k in (0, 2):
        assert rows[k]["n_rewards"] == 0


def test_run_started_while_the_scanner_is_already_writing(tmp_path: Path) -> None:
    """The scanner (the replay, a separate process) writes the run's volumes as NIfTI files; the operator starts
    the session once 13 are there. The default skips those files, says so, and places the first new volume
    by its number: the blocks are the scanner's, the feedback is the offline pipeline's on what was seen."""
    export = tmp_path / "export"
    export.mkdir()
    # a scanner 4x faster than the run's (TR 0.4925 s, blocks of 10 TR): the session runs in real time
    protocol_path = _protocol(tmp_path, '{folder: export, pattern: "*.nii"}', repeat=2, last_baseline=False,
                              tr_s=1.97 / 4)
    scanner = subprocess.Popen([sys.executable, "-m", "sim", "fmri", "--replay", str(RUN), "--folder", str(export),
                                "--format", "nifti", "--speed", "4", "--quiet"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wrote = wait_for(lambda: len(list(export.glob("*.nii"))) >= 13 or scanner.poll() is not None, 60)
        assert wrote and scanner.poll() is None, "the replay did not write 13 volumes"
        result = run_session(RunOptions(protocol_path=protocol_path, session_root=tmp_path / "sessions",
                                        volumes_folder=export, progress=None, keyboard=False, record_xdf=False,
                                        lsl_prefix=f"nr-test-{tmp_path.name[-12:]}"))
    finally:
        scanner.terminate()
        scanner.wait(30)
    assert result.status == "completed" and result.failure is None
    events = session_journal(result.session_dir)
    existing = _statuses(events, "existing")
    assert len(existing) == 1 and "were already in" in existing[0]["detail"] and "skipped" in existing[0]["detail"]
    skipped = int(existing[0]["detail"].split(" file(s)")[0])
    volumes = [e["data"] for e in events if e["kind"] == "volume"]
    first = volumes[0]["index"]
    assert first > skipped >= 13  # the files there at start were not read
    joined = _statuses(events, "joined")
    assert len(joined) == 1 and joined[0]["index"] == first
    assert f"volume(s) 1-{first - 1} were not seen ({first - 6} counted)" in joined[0]["detail"]
    # to the end of the 40-volume timeline (a volume after it may come in while the session winds down)
    assert [v["index"] for v in volumes if v["index"] <= 45] == list(range(first, 46))
    volumes = [v for v in volumes if v["index"] <= 45]
    # the blocks are the scanner's: the volumes' blocks by acquisition number, the engine's block_start
    # placed from the first volume seen (a folder's volume is stamped when its file appears)
    protocol = load_protocol(protocol_path)
    tr = protocol.volume_inputs["fmri"].tr_s
    design = VolumeDesign(protocol.timeline, tr, 6)
    assert [v["block"] for v in volumes] == [design.block_of(v["index"]).label for v in volumes]
    t_run = volumes[0]["acquired"] - design.counted(first) * tr
    starts = [e for e in events if e["kind"] == "block_start"]
    assert [e["data"]["index"] for e in starts] == [0, 1, 2, 3]  # every block, those already over at the start too
    for e in starts:
        assert e["t_source"] == pytest.approx(t_run + e["data"]["index"] * 10 * tr, abs=1e-6)
    _check_feedback(protocol_path, [e for e in events if e["kind"] != "volume" or e["data"]["index"] <= 45],
                    nib.load(str(RUN)).affine)
    summary = json.loads((result.session_dir / "report" / "summary.json").read_text())
    assert summary["fmri"]["volumes"]["missing_indices"] == list(range(1, first))
    assert summary["fmri"]["volumes"]["joined"] == joined[0]["detail"]  # the report says which were not seen
    assert summary["fmri"]["volumes"]["existing_files"] == existing[0]["detail"]
