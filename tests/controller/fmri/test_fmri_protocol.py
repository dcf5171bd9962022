"""The fMRI parts of the protocol language: volume inputs, ROIs, per-volume features, runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.protocol import ProtocolError, load_protocol, loads_protocol
from controller.protocol.runs import RunChoiceError, select_run

ROOT = Path(__file__).resolve().parents[3]
SHARED = ROOT.parent / "shared" / "data"

BASE = """\
protocol: fmri-test
inputs:
  fmri:
    volumes: {folder: scanner, pattern: "*.dcm"}
    tr: 2 s
    skip: 3 TR
rois:
  amy: {sphere: {center: [-21, -5, -16], radius: 7 mm}, space: mni}
  pcc: {sphere: {center: [0, -52, 28], radius: 8 mm}, space: mni}
features:
  amygdala: {roi_psc: {input: fmri, roi: amy, baseline: rest, skip: 2 TR, average: 3 TR}}
  conn: {roi_correlation: {input: fmri, rois: [amy, pcc], window: 10 TR}}
thresholds:
  target: {fixed: 0.5 %}
timeline:
  - {rest: 40 s}
  - {happy: 40 s}
rules:
  - during: happy
    when: amygdala > target
    do: {feedback: reward}
feedback: {value: amygdala, range: [0 %, 2 %], during: happy}
runs:
  - {name: nf1, thresholds: {target: 1 %}}
  - {name: transfer, feedback: false}
"""


def _messages(text: str) -> list[str]:
    with pytest.raises(ProtocolError) as info:
        loads_protocol(text, "p.yaml")
    return [str(i) for i in info.value.issues]


def test_a_valid_fmri_protocol_compiles_to_volume_inputs_rois_and_features(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(BASE)
    p = load_protocol(path)
    assert p.inputs == {}
    spec = p.volume_inputs["fmri"]
    assert (spec.tr_s, spec.skip, spec.source.pattern) == (2.0, 3, "*.dcm")
    assert spec.source.folder == str(tmp_path / "scanner")  # relative to the protocol file
    assert spec.stall_s == 5.0  # 2 TR + 1 s
    assert p.rois["amy"].sphere_center_mm == (-21.0, -5.0, -16.0) and p.rois["amy"].sphere_radius_mm == 7.0
    f = p.features["amygdala"]
    assert (f.kind, f.params.baseline, f.params.skip, f.params.average, f.every_s) == ("roi_psc", "rest", 2, 3, 2.0)
    assert p.features["conn"].params.rois == ("amy", "pcc")
    assert [r.name for r in p.runs] == ["nf1", "transfer"]


@pytest.mark.parametrize("old,new,expected", [
    ("roi: amy, baseline", "roi: amyg, baseline", "p.yaml:11:42: roi: unknown ROI 'amyg' (did you mean 'amy'?); ROIs: amy, pcc"),
    ("baseline: rest,", "baseline: pause,", "p.yaml:11:57: baseline: unknown block 'pause'; blocks: happy, rest"),
    ("window: 10 TR", "window: 2 TR", "p.yaml:12:67: window: a correlation needs at least 3 volumes, got 2"),
    ("rois: [amy, pcc]", "rois: [amy, amy]", "p.yaml:12:47: rois: give two different ROIs, got 'amy' twice"),
    ("skip: 3 TR", "skip: three", "p.yaml:6:11: skip: expected a whole number of volumes like '3 TR'"),
    ("radius: 7 mm", "radius: 7 Hz", "p.yaml:8:50: radius: expected a length like '7 mm' or '1 cm', got '7 Hz'"),
    ("{name: transfer, feedback: false}", "{name: nf1}", "p.yaml:25:12: name: run 'nf1' is given twice"),
    ("thresholds: {target: 1 %}", "thresholds: {goal: 1 %}", "p.yaml:24:30: unknown threshold 'goal'; thresholds: target"),
    ("center: [-21, -5, -16]", "center: [-21, -5]",
     "p.yaml:8:26: rois.amy.sphere.center: too few items, item 3 is missing: centre [x, y, z] in mm"),
    ("volumes: {folder: scanner, pattern: \"*.dcm\"}", "volumes: {pattern: \"*.dcm\"}",
     "p.yaml:4:14: volumes: give exactly one of folder"),
])
def test_fmri_mistakes_are_named_at_their_position(old: str, new: str, expected: str) -> None:
    assert old in BASE
    messages = _messages(BASE.replace(old, new))
    assert any(m.startswith(expected) for m in messages), messages


def test_a_missing_mask_file_is_reported_where_it_is_named(tmp_path: Path) -> None:
    text = BASE.replace("  pcc: {sphere: {center: [0, -52, 28], radius: 8 mm}, space: mni}",
                        "  pcc: {mask: nothere.nii}")
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    (msg,) = [str(i) for i in info.value.issues]
    assert msg.startswith(f"{path}:9:15: mask: file 'nothere.nii' not found")


def test_eeg_features_cannot_take_a_volume_input_and_fmri_features_need_one() -> None:
    text = BASE.replace("  conn: {roi_correlation: {input: fmri, rois: [amy, pcc], window: 10 TR}}",
                        "  bp: {band_power: {input: fmri, band: [8 Hz, 12 Hz], window: 1 s, every: 100 ms}}")
    (msg,) = _messages(text)
    assert "input: 'fmri' is an fMRI input (volumes); band_power needs a signal stream" in msg


def test_runs_set_the_target_and_the_transfer_run_shows_nothing() -> None:
    p = loads_protocol(BASE, "p.yaml")
    nf1 = select_run(p, None)
    assert nf1.run.name == "nf1" and nf1.thresholds["target"].fixed == 1.0 and nf1.feedback is not None
    transfer = select_run(p, "transfer")
    assert transfer.feedback is None and transfer.rules == ()  # no bar, no reward
    assert select_run(p, "2").run.name == "transfer"
    with pytest.raises(RunChoiceError, match=r"no run 'nf9'; its runs: 1 \(nf1\), 2 \(transfer\)"):
        select_run(p, "nf9")


@pytest.mark.parametrize("name", ["amygdala_mdd", "acc_cbt", "network_connectivity"])
def test_the_fmri_protocols_validate(name: str) -> None:
    p = load_protocol(ROOT / "protocols" / f"{name}.yaml")
    assert p.volume_inputs and p.rois and p.feedback is not None


def test_the_mdd_protocol_raises_its_target_from_run_to_run() -> None:
    p = load_protocol(ROOT / "protocols" / "amygdala_mdd.yaml")
    targets = [select_run(p, r.name).thresholds["target"].fixed for r in p.runs if r.feedback]
    assert targets == sorted(targets) and len(set(targets)) == len(targets)
    assert p.runs[-1].name == "transfer" and not p.runs[-1].feedback
    blocks = [b.label for b in p.timeline]
    assert blocks[0] == "rest" and {"happy", "count"} <= set(blocks)
    assert all(b.duration_s == 40.0 for b in p.timeline)


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not present")
def test_the_opennft_replay_protocol_validates_against_the_shared_masks() -> None:
    p = load_protocol(ROOT / "protocols" / "opennft_psc_replay.yaml")
    assert p.volume_inputs["fmri"].skip == 5 and Path(p.rois["lroi"].mask).exists()
