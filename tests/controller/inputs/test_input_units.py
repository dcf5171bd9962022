"""Stream units end to end (issue 10): a µV amplifier, a volt stream and a stream without units decide alike.

Found on a real g.USBamp recording: the controller never read the stream's unit, so a ``150 uV``
blink threshold became 1.5e-4 against values in µV and no reward was ever given. Here a real
recording is streamed as amplifiers send it (µV, V, or no unit; 8-sample blocks; a trigger
column), and every session's features and decisions must equal the offline computation in SI.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from amplifier import EEGMAT, BlockAmplifier, eegmat_volts
from helpers import session_started

from controller.features import offline_feature
from controller.protocol import ProtocolError, load_protocol
from controller.protocol.signal_units import input_units, parse_unit
from controller.recording.journal import read_journal
from controller.session.runner import RunOptions, run_session

# --- unit names as amplifiers write them ------------------------------------------------------------


@pytest.mark.parametrize("text, scale, si", [
    ("V", 1.0, "V"), ("volts", 1.0, "V"), ("Volt", 1.0, "V"), ("mV", 1e-3, "V"), ("millivolts", 1e-3, "V"),
    ("uV", 1e-6, "V"), ("µV", 1e-6, "V"), ("μV", 1e-6, "V"), ("microvolts", 1e-6, "V"), ("Microvolt", 1e-6, "V"),
    ("nV", 1e-9, "V"), ("T", 1.0, "T"), ("fT", 1e-15, "T"), ("pT", 1e-12, "T"), ("T/m", 1.0, "T/m"),
    ("fT/cm", 1e-13, "T/m"), ("mol/L", 1.0, "mol/L"), ("uM", 1e-6, "mol/L"), ("mmol/L", 1e-3, "mol/L"),
    ("ratio", 1.0, ""), ("a.u.", 1.0, ""),
])
def test_units_amplifiers_write_are_read_to_si(text, scale, si):
    unit = parse_unit(text)
    assert unit is not None and unit.si == si
    assert unit.scale == pytest.approx(scale, rel=1e-12)


@pytest.mark.parametrize("text", ["", "MV", "furlongs", "uv/Hz", "kV "])
def test_unknown_units_are_refused(text):
    assert parse_unit(text) is None


def test_only_the_used_channels_need_a_unit_and_stream_and_protocol_must_agree():
    labels = ["Cz", "Fp1", "TRIG"]
    found, problems = input_units(["uV", "microvolts", ""], labels, [0, 1], None, "amp")
    assert problems == [] and found.scale.tolist() == [1e-6, 1e-6, 1.0]
    assert "Cz, Fp1: uV -> V" in found.summary or "Cz: uV" in found.summary
    _, problems = input_units(["", "", ""], labels, [0, 1], None, "amp")
    assert problems == ["stream 'amp' gives no unit for channels Cz, Fp1: write the unit the amplifier sends in "
                        "the protocol's input, e.g. unit: uV (or unit: V)"]
    filled, problems = input_units(["", "", ""], labels, [0, 1], "uV", "amp")
    assert problems == [] and filled.from_protocol and filled.scale[0] == 1e-6
    _, problems = input_units(["V", "V", ""], labels, [0], "uV", "amp")
    assert problems and "is in 'V' by its stream description, but the protocol says unit: uV" in problems[0]
    _, problems = input_units(["parsecs", "", ""], labels, [0], None, "amp")
    assert "has unit 'parsecs', which is not a known unit" in problems[0]


def test_a_protocol_unit_is_checked_at_load_with_its_position(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL.format(name="x", goal=2.0).replace("highpass: 0.5 Hz", "highpass: 0.5 Hz, unit: parsec"))
    with pytest.raises(ProtocolError) as err:
        load_protocol(path)
    [issue] = err.value.issues
    assert issue.line == 4 and "expected the unit the amplifier sends" in issue.message


# --- the same recording through three amplifiers ---------------------------------------------------

PROTOCOL = """\
protocol: units-tbr
inputs:
  eeg: {{stream: {{name: {name}}}, channels: [Cz, Fp1, Fp2], reference: {{average: all EEG}},
         highpass: 0.5 Hz}}
features:
  tbr:   {{band_ratio: {{input: eeg, channels: [Cz], numerator: [4 Hz, 8 Hz], denominator: [13 Hz, 21 Hz], window: 2 s, every: 100 ms}}}}
  blink: {{peak_to_peak: {{input: eeg, channels: [Fp1, Fp2], band: [0.5 Hz, 4 Hz], window: 500 ms, every: 100 ms}}}}
thresholds:
  goal:      {{fixed: {goal}}}
  blink_max: {{fixed: 150 uV}}
timeline: [{{train: 9 s}}]
rules:
  - {{during: train, when: tbr < goal and blink < blink_max, do: {{feedback: reward}}}}
"""

SECONDS = 12.0

@pytest.fixture(scope="module")
def recording():
    if not EEGMAT.is_file():
        pytest.skip(f"{EEGMAT} is absent (../shared/data)")
    return eegmat_volts(SECONDS)


def _offline(protocol_path: Path, volts: np.ndarray, fs: float, labels, types) -> dict[str, dict[int, float]]:
    p = load_protocol(protocol_path)
    spec = p.inputs["eeg"]
    return {name: dict(zip(*(a.tolist() for a in offline_feature(volts, fs, labels, spec, feat, types))))
            for name, feat in p.features.items()}


def _session(tmp_path: Path, recording, units: list[str], scale, unit_line: str = "") -> tuple[Path, list[dict]]:
    volts, fs, labels, types = recording
    name = f"units-amp-{uuid.uuid4().hex[:6]}"
    root = tmp_path / name
    root.mkdir()
    offline_tbr = _offline_tbr(volts, fs, labels, types, tmp_path)
    path = root / "protocol.yaml"
    text = PROTOCOL.format(name=name, goal=f"{np.median(offline_tbr):.6g}")
    if unit_line:
        text = text.replace("highpass: 0.5 Hz}", f"highpass: 0.5 Hz, {unit_line}}}")
    path.write_text(text)

    amp = BlockAmplifier(name, volts, fs, labels, types, units, scale, block=8,
                         start_when=lambda: session_started(root))
    amp.start()
    try:
        result = run_session(RunOptions(protocol_path=path, session_root=root, progress=None, keyboard=False,
                                        build_report=False, lsl_prefix=name))
    finally:
        amp.stop()
    return path, read_journal(result.session_dir / "journal.jsonl")


_TBR_CACHE: dict[str, np.ndarray] = {}


def _offline_tbr(volts, fs, labels, types, tmp_path) -> np.ndarray:
    if "tbr" not in _TBR_CACHE:
        path = tmp_path / "offline.yaml"
        path.write_text(PROTOCOL.format(name="offline", goal=1.0))
        _TBR_CACHE["tbr"] = np.asarray(list(_offline(path, volts, fs, labels, types)["tbr"].values()))
    return _TBR_CACHE["tbr"]


def _check_against_offline(path: Path, events: list[dict], recording) -> tuple[set[int], int]:
    """Every journaled feature equals the offline value at its sample index; every frame is rewarded
    exactly when the offline values meet the rule. Returns (rewarded sample indices, last frame's index)."""
    volts, fs, labels, types = recording
    offline = _offline(path, volts, fs, labels, types)
    p = load_protocol(path)
    goal = p.thresholds["goal"].fixed
    frames: dict[float, dict[str, tuple[int, float]]] = {}
    for e in events:
        if e["kind"] == "feature":
            frames.setdefault(e["t_source"], {})[e["data"]["name"]] = (e["data"]["sample_index"], e["data"]["value"])
    rewarded_at = {e["t_source"] for e in events if e["kind"] == "decision"}
    assert frames, "no feature reached the journal"
    rewarded = set()
    for t, values in frames.items():
        for name, (k, value) in values.items():
            assert value == pytest.approx(offline[name][k], rel=1e-9, abs=1e-18), (name, k)
        expected = "tbr" in values and "blink" in values and values["tbr"][1] < goal and values["blink"][1] < 150e-6
        assert (t in rewarded_at) == expected, (values, goal)
        if expected:
            rewarded.add(values["tbr"][0])
    assert len(frames) > 50
    return rewarded, max(k for values in frames.values() for k, _ in values.values())


@pytest.mark.lsl
@pytest.mark.slow
def test_microvolt_volt_and_unitless_amplifiers_give_the_same_features_and_rewards(tmp_path, recording):
    n = recording[0].shape[1]
    micro = ["microvolts"] * (n - 1) + [""]  # the trigger column has no unit and is not used
    path_uv, events_uv = _session(tmp_path, recording, micro, 1e6)
    path_v, events_v = _session(tmp_path, recording, ["V"] * n, 1.0)
    path_none, events_none = _session(tmp_path, recording, [""] * n, 1e6, unit_line="unit: uV")

    start = next(e for e in events_uv if e["kind"] == "session_start")["data"]["inputs"]["eeg"]
    assert "microvolts -> V (x1e-06)" in start["units"]

    results = [_check_against_offline(p, e, recording) for p, e in
               ((path_uv, events_uv), (path_v, events_v), (path_none, events_none))]
    assert results[0][0], "a 150 uV blink threshold on a µV stream must allow rewards"
    common = min(last for _, last in results)  # the runs end by the wall clock, a few frames apart
    uv, v, none = ({k for k in rewarded if k <= common} for rewarded, _ in results)
    assert uv == v == none


@pytest.mark.lsl
@pytest.mark.slow
def test_a_stream_without_units_is_refused_with_the_protocol_position_and_no_session_folder(tmp_path, recording):
    volts, fs, labels, types = recording
    name = f"units-none-{uuid.uuid4().hex[:6]}"
    amp = BlockAmplifier(name, volts, fs, labels, types, [""] * len(labels), 1e6)
    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL.format(name=name, goal=2.0))
    root = tmp_path / "sessions"
    try:
        with pytest.raises(ProtocolError) as err:
            run_session(RunOptions(protocol_path=path, session_root=root, progress=None, keyboard=False,
                                   build_report=False, lsl_prefix=name))
    finally:
        amp.stop()
    [issue] = err.value.issues
    assert (issue.file, issue.line) == (str(path), 3)
    assert f"stream {name!r}" in issue.message and "gives no unit for channels" in issue.message
    assert "unit: uV" in issue.message
    assert not root.exists() or not any(root.iterdir()), "a session that never started leaves no folder"
