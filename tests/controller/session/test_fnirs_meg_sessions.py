"""fNIRS and MEG sessions end to end on real LSL: `sim fnirs` / `sim meg` in their own processes -> the
controller (front end, features, rules) -> LabRecorder XDF, journal, report. The XDF alone reproduces
every journaled feature value (the offline chains share only definitions with the online ones)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import pyxdf

from controller.recording.journal import read_journal
from controller.session.runner import RunOptions, SimOptions, run_session

pytestmark = [pytest.mark.lsl, pytest.mark.slow]

MEG_FILE = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "meg" / "sample_audvis_trunc_raw_sss.fif"

NIRS_PROTOCOL = """
protocol: e2e-fnirs
inputs:
  nirs:
    stream: {type: NIRS}
    channels: [S1_D1, S2_D1, S2_D2, S3_D2]
    fnirs: {reference: 5 s, short_channels: {memory: 30 s}}
features:
  hbo:    {haemoglobin: {input: nirs, chromophore: hbo, window: 1 s, every: 200 ms}}
  hbr:    {haemoglobin: {input: nirs, channels: [S2_D2], chromophore: hbr, window: 2 s, every: 500 ms}}
  change: {haemoglobin: {input: nirs, chromophore: hbo, change_from: rest, skip: 1 s, window: 1 s, every: 200 ms}}
  motion: {optode_quality: {input: nirs, measure: motion, window: 1 s, every: 200 ms}}
  sci:    {optode_quality: {input: nirs, measure: sci, window: 2 s, every: 200 ms}}
thresholds:
  goal: {fixed: 0.05 umol/L}
timeline: [{rest: 12 s}, {regulate: 12 s}, {rest: 4 s}]
rules:
  - during: regulate
    when: change > goal for 1 s and motion < 0.5
    do: {feedback: reward}
feedback: {value: change, range: [0 umol/L, 0.5 umol/L], during: [regulate]}
"""

MEG_PROTOCOL = """
protocol: e2e-meg
inputs:
  meg:
    stream: {type: MEG}
    ssp: {stream: true}
    highpass: 1 Hz
features:
  alpha_grad: {sensor_power: {input: meg, sensors: grad, selection: [Left-occipital, Right-occipital], band: [8 Hz, 12 Hz], window: 1 s, every: 100 ms, method: iir}}
  alpha_mag:  {sensor_power: {input: meg, sensors: mag, selection: [Left-occipital, Right-occipital], band: [8 Hz, 12 Hz], window: 1 s, every: 100 ms}}
thresholds:
  goal: {percentile: {feature: alpha_grad, during: baseline, q: 50}}
timeline: [{baseline: 5 s}, {train: 6 s}]
rules:
  - during: train
    when: alpha_grad > goal
    do: {feedback: reward}
feedback: {value: alpha_grad, range: [0, 1.5e-23], during: [train]}
"""


def _run(tmp_path_factory, name: str, text: str, sim: SimOptions) -> Path:
    root = tmp_path_factory.mktemp(name)
    protocol = root / f"{name}.yaml"
    protocol.write_text(text)
    result = run_session(RunOptions(protocol_path=protocol, session_root=root, sim=sim,
                                    lsl_prefix=f"{name}-{uuid.uuid4().hex[:6]}", progress=None))
    assert result.status == "completed"
    return result.session_dir


def _journaled(session: Path) -> dict[str, dict[int, float | None]]:
    out: dict[str, dict[int, float | None]] = {}
    for e in read_journal(session / "journal.jsonl"):
        if e["kind"] == "feature":
            out.setdefault(e["data"]["name"], {})[e["data"]["sample_index"]] = e["data"]["value"]
    return out


def _input_from_xdf(session: Path, stream_type: str, input_name: str) -> tuple[dict, np.ndarray]:
    manifest = json.loads((session / "manifest.json").read_text())
    first_used = manifest["summary"]["inputs"][input_name]["first_sample_used"]
    streams, _ = pyxdf.load_xdf(str(session / "recording.xdf"), dejitter_timestamps=False)
    [s] = [s for s in streams if s["info"]["type"][0] == stream_type]
    i0 = int(np.argmin(np.abs(s["time_stamps"] - first_used)))
    assert abs(s["time_stamps"][i0] - first_used) < 1e-3, "the first sample the loop used is in the XDF"
    return s, np.asarray(s["time_series"], dtype=np.float64)[i0:]


@pytest.fixture(scope="module")
def nirs_session(tmp_path_factory) -> Path:
    return _run(tmp_path_factory, "fnirs", NIRS_PROTOCOL, SimOptions(rate=10.0, chunk=1, seed=2))


def test_fnirs_session_feeds_back_haemoglobin_and_the_xdf_reproduces_it(nirs_session) -> None:
    from controller.dsp.nirs import NirsLayout
    from controller.features import offline_feature
    from controller.offline.nirs import haemoglobin_offline
    from controller.protocol import load_protocol

    session = nirs_session
    protocol = load_protocol(session / "protocol.yaml")
    stream, data = _input_from_xdf(session, "NIRS", "nirs")
    info = stream["info"]
    labels = [c["label"][0] for c in info["desc"][0]["channels"][0]["channel"]]
    optodes = info["desc"][0]["montage"][0]["optodes"][0]
    positions = {}
    for group, item in (("sources", "source"), ("detectors", "detector")):
        for o in optodes[group][0][item]:
            loc = o["location"][0]
            positions[o["label"][0]] = np.array([float(loc[a][0]) for a in "XYZ"]) / 1000.0
    fs = float(info["nominal_srate"][0])
    nirs = protocol.inputs["nirs"].fnirs
    layout = NirsLayout.from_labels(labels, positions=positions, short_max_m=nirs.short_max_m)
    derived_labels, _, derived = haemoglobin_offline(
        data, layout, fs, ppf=nirs.ppf, reference_s=nirs.reference_s, short_regression=nirs.short_regression,
        short_memory_s=nirs.short_memory_s, lowpass_hz=nirs.lowpass_hz, highpass_hz=nirs.highpass_hz,
        sci_window_s=nirs.sci_window_s, jump_od=nirs.jump_od, jump_hold_s=nirs.jump_hold_s)
    journaled = _journaled(session)
    for name in ("hbo", "hbr", "motion", "sci"):
        ends, values = offline_feature(derived, fs, derived_labels, protocol.inputs["nirs"], protocol.features[name])
        offline = dict(zip(ends.tolist(), values.tolist()))
        online = journaled[name]
        assert min(online) == min(offline), name
        for k, v in online.items():
            assert v == pytest.approx(offline[k], rel=1e-9, abs=1e-15), (name, k)
    # the block-relative change: None until the first rest closed, then values in mol/L
    change = journaled["change"]
    assert any(v is None for v in change.values()) and any(v is not None for v in change.values())
    # the report has the haemoglobin part: regions, block average, the figure
    summary = json.loads((session / "report" / "summary.json").read_text())
    region = next(iter(summary["haemodynamics"]["regions"].values()))
    assert region["pairs"] == ["S1_D1", "S2_D1", "S2_D2", "S3_D2"] and region["hbo"]["feature"] == "hbo"
    assert "haemodynamics" in summary["figures"]


@pytest.fixture(scope="module")
def meg_session(tmp_path_factory) -> Path:
    if not MEG_FILE.exists():
        pytest.skip(f"the real MEG layout is absent: {MEG_FILE}")
    return _run(tmp_path_factory, "meg", MEG_PROTOCOL, SimOptions(rate=1000.0, chunk=10, seed=1))


def test_meg_session_feeds_back_posterior_alpha_and_the_xdf_reproduces_it(meg_session) -> None:
    from controller.features import offline_feature
    from controller.protocol import load_protocol

    session = meg_session
    protocol = load_protocol(session / "protocol.yaml")
    stream, data = _input_from_xdf(session, "MEG", "meg")
    channels = stream["info"]["desc"][0]["channels"][0]["channel"]
    labels = [c["label"][0] for c in channels]
    types = [c["type"][0] for c in channels]
    assert len(labels) == 306 and types.count("grad") == 204 and types.count("mag") == 102
    fs = float(stream["info"]["nominal_srate"][0])
    journaled = _journaled(session)
    for name in ("alpha_grad", "alpha_mag"):
        spec = protocol.features[name]
        ends, values = offline_feature(data, fs, labels, protocol.inputs["meg"], spec, channel_types=types)
        offline = dict(zip(ends.tolist(), values.tolist()))
        online = journaled[name]
        assert min(online) == min(offline), name
        for k, v in online.items():
            assert v == pytest.approx(offline[k], rel=1e-9), (name, k)
    # gradiometer pairs (T/m)^2 and magnetometers T^2 are apart: magnitudes of the simulator's posterior alpha
    grad = np.median(list(journaled["alpha_grad"].values()))
    mag = np.median(list(journaled["alpha_mag"].values()))
    # (the simulator's posterior alpha: ~3 pT/m and ~150 fT RMS, raised up to 4x by rewards; 1/f background besides)
    assert 1e-25 < grad < 1e-21 and 1e-30 < mag < 1e-24
    assert grad / mag > 100  # (T/m)^2 against T^2: a gradiometer feature never reads magnetometers
    events = read_journal(session / "journal.jsonl")
    assert any(e["kind"] == "decision" for e in events)
