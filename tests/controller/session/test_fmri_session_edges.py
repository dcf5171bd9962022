"""The edges of an fMRI session (issue 12): a scanner whose files the protocol never reads, a session that
processed nothing, ``--volumes`` with ``--replay``, the stock OpenNFT protocol over a whole run, volumes
that never came versus volumes that came late.

Everything real: the replay in its own process writing the real run's volumes (DICOM MOSAICs with the
run's own template header) into a folder watched by inotify, or streaming them over LSL, LabRecorder
writing the XDF, the report built from the journal.
"""

from __future__ import annotations

import configparser
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import pyxdf
from helpers import session_journal

from controller.cli import main
from controller.fmri.design import VolumeDesign
from controller.fmri.opennft_json import opennft_block_labels
from controller.protocol import load_protocol
from controller.session.export_check import replay_export
from controller.session.fmri_modality import FmriSimOptions
from controller.session.runner import RunOptions, SessionInputError, SimOptions, run_session

ROOT = Path(__file__).resolve().parents[3]
OPENNFT = ROOT.parent / "shared" / "data" / "fmri" / "opennft"
RUN = OPENNFT / "opennft_psc_run_vols001-048_4d.nii.gz"
TEMPLATE = OPENNFT / "001_000007_000006.dcm"
STOCK = ROOT / "protocols" / "opennft_psc_replay.yaml"
PATTERN_LINE = 'volumes: {folder: scanner_export, pattern: "001_000007_*.dcm"}'

pytestmark = [pytest.mark.skipif(not RUN.exists(), reason="../shared/data/fmri/opennft not present")]


def _options(protocol: Path, tmp_path: Path, fmri: FmriSimOptions | None, **kw) -> RunOptions:
    return RunOptions(protocol_path=protocol, session_root=tmp_path / "sessions",
                      sim=SimOptions() if fmri is not None else None, fmri_sim=fmri, progress=None, keyboard=False,
                      lsl_prefix=f"nr-test-{tmp_path.name[-12:]}", **kw)


def _stop_reason(events: list[dict]) -> str:
    return [e["data"]["reason"] for e in events if e["kind"] == "state" and e["data"]["state"] == "stopped"][-1]


def _statuses(events: list[dict], status: str) -> list[str]:
    return [e["data"]["detail"] for e in events if e["kind"] == "input" and e["data"]["status"] == status]


def _stock_protocol(tmp_path: Path, stream: bool = False) -> Path:
    """The stock protocol with absolute ROI paths (to run from tmp_path), optionally reading LSL volumes."""
    text = STOCK.read_text().replace("../../shared/data", str(ROOT.parent / "shared" / "data"))
    if stream:
        assert PATTERN_LINE in text
        text = text.replace(PATTERN_LINE, "volumes: {stream: {type: fMRI}}")
    path = tmp_path / ("opennft_lsl.yaml" if stream else "opennft.yaml")
    path.write_text(text)
    return path


# ------------------------------------------------------------------ files the pattern can never read


def test_a_replay_whose_files_the_pattern_never_reads_is_refused_before_the_session_starts(tmp_path: Path,
                                                                                         capsys) -> None:
    lonely = tmp_path / "run"  # the NIfTI alone: no DICOM of its series beside it, so the replay synthesizes
    lonely.mkdir()          # series 1 (001_000001_*.dcm), which the protocol's 001_000007_*.dcm never matches
    (lonely / RUN.name).symlink_to(RUN)
    sessions = tmp_path / "sessions"
    with pytest.raises(SessionInputError) as caught:
        run_session(_options(STOCK, tmp_path, FmriSimOptions(replay=str(lonely / RUN.name), speed=8.0)))
    text = str(caught.value)
    line = next(n for n, t in enumerate(STOCK.read_text().splitlines(), 1) if "pattern:" in t)
    for part in (f"--replay {lonely / RUN.name}", "001_000001_000001.dcm .. 001_000001_000048.dcm",
                 "vol_000001.nii .. vol_000048.nii", "'001_000007_*.dcm'", f"{STOCK}:{line}:",
                 f"scanner/ (under {sessions.absolute()})", "not one volume would be read",
                 f"none in {lonely.absolute()}: series 1"):
        assert part in text, (part, text)
    assert not sessions.exists() or not any(sessions.iterdir())  # nothing started, nothing left behind

    # the command line says the same and exits 2, as for any other protocol/command-line mismatch
    code = main(["run", str(STOCK), "--sim", "--replay", str(lonely / RUN.name), "--speed", "8",
                 "--session-dir", str(sessions), "--no-report"])
    assert code == 2
    assert "'001_000007_*.dcm'" in capsys.readouterr().err


def test_the_replay_writes_exactly_the_names_the_session_checked(tmp_path: Path) -> None:
    """The pre-start check and the writer share one naming convention; here is what a replay really writes."""
    folder = tmp_path / "export"
    subprocess.run([sys.executable, "-m", "sim", "fmri", "--replay", str(RUN), "--folder", str(folder),
                    "--volumes", "3", "--speed", "50", "--quiet",
                    *replay_export("001_000007_*.dcm", RUN).args()], check=True, cwd=ROOT, capture_output=True)
    export = replay_export("001_000007_*.dcm", RUN)
    assert export.template == TEMPLATE and export.series == 7
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == sorted(export.names(range(1, 4)))


# ------------------------------------------------------------------ nothing processed


@pytest.mark.lsl
@pytest.mark.slow
def test_a_session_that_processed_no_volume_fails_and_says_why(tmp_path: Path, capsys) -> None:
    export = tmp_path / "export"  # a scanner writing NIfTI where the protocol reads its MOSAIC DICOMs
    export.mkdir()
    img = nib.load(str(RUN))
    for i in range(1, 4):
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj[..., i - 1]), img.affine), str(export / f"vol_{i:06d}.nii"))
    result = run_session(_options(STOCK, tmp_path, None, volumes_folder=export, duration_s=3.0))
    assert result.status == "error"
    assert result.failure.startswith("no fMRI volume was processed: ")
    for part in (f"input 'fmri' received no volume from {export}",
                 "3 file(s) there match none of its pattern '001_000007_*.dcm'",
                 "vol_000001.nii, vol_000002.nii, vol_000003.nii", "the session ended: duration 3 s reached"):
        assert part in result.failure, (part, result.failure)
    manifest = json.loads((result.session_dir / "manifest.json").read_text())
    assert manifest["status"] == "error" and manifest["summary"]["failure"] == result.failure
    events = session_journal(result.session_dir)
    assert any(e["kind"] == "fault" and e["data"]["reason"] == result.failure for e in events)
    assert next(e for e in events if e["kind"] == "session_end")["data"]["status"] == "error"

    code = main(["run", str(STOCK), "--volumes-folder", str(export), "--duration", "3", "--no-report",
                 "--session-dir", str(tmp_path / "cli"), "--prefix", f"nr-test-cli-{tmp_path.name[-8:]}"])
    assert code == 1
    assert "neuroreflex: session failed: no fMRI volume was processed" in capsys.readouterr().err


# ------------------------------------------------------------------ --volumes, missing versus late


@pytest.mark.lsl
@pytest.mark.slow
def test_volumes_limits_the_replay_and_missing_counts_volumes_that_never_came(tmp_path: Path) -> None:
    """--volumes 20 of the real run, written as its scanner did; 12-14 dropped (one report, three volumes)
    and 8 delivered after 9 (reported missing, then came: late, not missing)."""
    fmri = FmriSimOptions(replay=str(RUN), speed=8.0, volumes=20, extra_args=["--drop", "12,13,14", "--swap", "8"])
    result = run_session(_options(_stock_protocol(tmp_path), tmp_path, fmri))
    assert result.status == "stopped" and result.failure is None
    events = session_journal(result.session_dir)
    got = [e["data"]["index"] for e in events if e["kind"] == "volume"]
    assert sorted(got) == [i for i in range(1, 21) if i not in (12, 13, 14)]
    assert _stop_reason(events) == "the simulated scanner finished: all 17 volumes sent were processed"
    written = sorted(p.name for p in (result.session_dir / "scanner").glob("*.dcm"))
    assert written == [f"001_000007_{i:06d}.dcm" for i in range(1, 21) if i not in (12, 13, 14)]

    assert len(_statuses(events, "missing")) == 2  # "8 missing (got 9 after 7)" and "12-14 missing (got 15 ...)"
    assert any("was reported missing" in d for d in _statuses(events, "out_of_order"))
    end = next(e for e in events if e["kind"] == "session_end")["data"]["summary"]["volumes"]["fmri"]
    assert end["missing"] == [12, 13, 14] and end["late"] == [8] and end["received"] == 17 and end["sent"] == 17
    summary = json.loads((result.session_dir / "report" / "summary.json").read_text())["fmri"]["volumes"]
    assert summary["missing"] == 3 and summary["missing_indices"] == [12, 13, 14]
    assert summary["processed"] == 17 - 5 and summary["out_of_order"] == 1


# ------------------------------------------------------------------ the stock protocol over its whole run


def test_the_stock_protocol_is_the_opennft_run_design() -> None:
    ini = configparser.ConfigParser()
    ini.read(OPENNFT / "NF_PSC_cont_155.ini")
    run_volumes, skipped = ini.getint("General", "NrOfVolumes"), ini.getint("General", "nrSkipVol")
    tr_s = ini.getint("General", "TR") / 1000.0
    protocol = load_protocol(STOCK)
    spec = protocol.volume_inputs["fmri"]
    assert (spec.skip, spec.tr_s) == (skipped, tr_s)
    design = VolumeDesign(protocol.timeline, spec.tr_s, 1 + spec.skip)
    assert design.volumes == run_volumes - skipped == 150
    want = opennft_block_labels(OPENNFT / "NF_PSC_cont_155.json", design.volumes)
    assert design.labels(range(design.first, design.first + design.volumes)) == \
        [{"BAS": "baseline", "NFBREG": "nf"}[x] for x in want]
    assert design.block_of(run_volumes + 1) is None  # no block waits for a volume the run never acquires


@pytest.mark.lsl
@pytest.mark.slow
def test_a_whole_155_volume_run_completes_with_every_volume_and_no_stall(tmp_path: Path) -> None:
    """The run's length (NF_PSC_cont_155.ini) made of its real volumes (1..48 there and back again), with the
    run's own template DICOM beside it, replayed as its scanner wrote it: the timeline ends with the run."""
    folder = tmp_path / "run155"
    folder.mkdir()
    img = nib.load(str(RUN))
    data = np.asarray(img.dataobj)
    cycle = list(range(48)) + list(range(46, 0, -1))
    order = [cycle[k % len(cycle)] for k in range(155)]
    nib.save(nib.Nifti1Image(data[..., order], img.affine, img.header), str(folder / "run155.nii"))
    (folder / TEMPLATE.name).symlink_to(TEMPLATE)
    result = run_session(_options(_stock_protocol(tmp_path), tmp_path, FmriSimOptions(
        replay=str(folder / "run155.nii"), speed=12.0)))
    assert result.status == "completed", result.status
    events = session_journal(result.session_dir)
    volumes = [e["data"] for e in events if e["kind"] == "volume"]
    assert [v["index"] for v in volumes] == list(range(1, 156))
    assert _statuses(events, "stalled") == [] and _statuses(events, "missing") == []
    assert _stop_reason(events) == "timeline complete"
    labels = opennft_block_labels(OPENNFT / "NF_PSC_cont_155.json", 150)
    assert [v["block"] for v in volumes[5:]] == [{"BAS": "baseline", "NFBREG": "nf"}[x] for x in labels]
    blocks = result.block_stats
    assert [b["label"] for b in blocks] == ["baseline", "nf"] * 7 + ["baseline"]
    assert all(b["frames"] > 0 for b in blocks if b["label"] == "nf")  # no empty last NF block


@pytest.mark.lsl
@pytest.mark.slow
def test_the_recording_has_every_lsl_volume_from_the_first(tmp_path: Path) -> None:
    """The replay sends volume 1 only once LabRecorder has subscribed: the XDF holds every volume the session
    processed, voxel for voxel, and the QC row of every counted one."""
    result = run_session(_options(_stock_protocol(tmp_path, stream=True), tmp_path,
                                  FmriSimOptions(replay=str(RUN), speed=8.0, volumes=12)))
    assert result.status == "stopped"
    events = session_journal(result.session_dir)
    processed = [e["data"]["index"] for e in events if e["kind"] == "volume"]
    assert processed == list(range(1, 13))
    assert _stop_reason(events) == "the simulated scanner finished: all 12 volumes sent were processed"
    streams, _ = pyxdf.load_xdf(str(result.session_dir / "recording.xdf"))
    vols = next(s for s in streams if s["info"]["type"][0] == "fMRI")
    assert vols["time_series"][:, 0].astype(int).tolist() == processed
    run = np.asarray(nib.load(str(RUN)).dataobj)
    for row in vols["time_series"]:
        k = int(row[0]) - 1
        np.testing.assert_array_equal(row[1:].reshape(run.shape[:3], order="F"), run[..., k].astype(np.float32))
    qc = next(s for s in streams if s["info"]["name"][0].endswith("-fmri-qc"))
    assert qc["time_series"][:, 0].astype(int).tolist() == list(range(6, 13))
