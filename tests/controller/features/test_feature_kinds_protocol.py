"""The newer feature kinds in the protocol language: line_length, area, halfwave, slope, phase.

YAML -> loader (errors with FILE:LINE:COL) -> compiled FeatureSpec with its params dataclass;
units in conditions, thresholds and feedback; the JSON Schema; checks against a real stream.
The bad fixtures in tests/data/feature_kinds_bad announce their errors in '# expect:' lines whose
positions were found by searching the file for the offending token when they were written.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest

from controller.lang.compiled import (
    Band,
    ChannelsAbove,
    Compare,
    Constant,
    FeatureRef,
    HalfWaveParams,
    PhaseParams,
    SeizureParams,
    SlopeParams,
    Sustained,
)
from controller.protocol import ProtocolError, check_against_stream, json_schema, load_protocol, loads_protocol

DATA = Path(__file__).resolve().parents[2] / "data"
GOOD = DATA / "feature_kinds"
BAD_FILES = sorted((DATA / "feature_kinds_bad").glob("*.yaml"))
_EXPECT = re.compile(r"^# expect: (\d+):(\d+): (.+)$")


@pytest.fixture(scope="module")
def seizure():
    return load_protocol(GOOD / "seizure_8ch.yaml")


@pytest.fixture(scope="module")
def mu():
    return load_protocol(GOOD / "mu_phase_resp.yaml")


# --------------------------------------------------------------------------- each kind parsed


def test_line_length_area_halfwave_compile_to_their_params(seizure) -> None:
    ll, area, hw = (seizure.features[k] for k in ("ll", "area", "hw"))
    assert (ll.kind, ll.window_s, ll.every_s, ll.band) == ("line_length", 1.0, 0.1, Band(1.0, 30.0))
    assert ll.channels == ("c3", "c4", "cz", "p3", "p4", "t3", "t4", "t5")  # default: all of the input's
    assert ll.params == SeizureParams(trend_s=60.0, trend_kind="mean", warmup_s=None, reduce="max")
    assert area.kind == "area"
    assert area.params == SeizureParams(trend_s=60.0, trend_kind="ema", warmup_s=30.0, reduce="max")
    assert (hw.kind, hw.band) == ("halfwave", Band(3.0, 30.0))
    assert hw.params == HalfWaveParams(min_amplitude=100e-6, max_amplitude=2e-3, min_duration_s=None,
                                       max_duration_s=None, reduce="max")


def test_percent_in_conditions_thresholds_and_feedback(seizure) -> None:
    cond = seizure.rules[0].when
    assert cond.items[0] == Sustained(Compare(FeatureRef("ll"), ">", Constant(200.0)), 1.0)
    assert cond.items[1] == Compare(FeatureRef("hw"), ">", Constant(6.0))
    text = (GOOD / "seizure_8ch.yaml").read_text(encoding="utf-8")
    text = text.replace("timeline:", "thresholds:\n  hi: {fixed: 250 %}\n  usual: {percentile: {feature: ll, during: monitor, q: 95}}\ntimeline:")
    text = text.replace("timeline: [{monitor: 10 min}]", "timeline: [{monitor: 10 min}, {watch: 10 min}]")
    text += "  - {during: watch, when: area > hi and ll > usual, do: {marker: x}}\nfeedback: {value: ll, range: [100 %, 300 %]}\n"
    p = loads_protocol(text)
    assert p.thresholds["hi"].fixed == 250.0
    assert (p.feedback.low, p.feedback.high) == (100.0, 300.0)


def test_percent_feature_against_other_families() -> None:
    text = (GOOD / "seizure_8ch.yaml").read_text(encoding="utf-8")
    bad = text.replace("hw > 6", "hw > 6 and area > 100 uV and hw < 50 %") + "feedback: {value: ll, range: [1, 3]}\n"
    with pytest.raises(ProtocolError) as info:
        loads_protocol(bad, "p.yaml")
    got = [i.message for i in info.value.issues]
    assert got == [
        "area (area) is a percentage of its trend: write the number with %, e.g. '175 %' (75 % above the usual "
        "level), got '100 uV'",
        "hw (halfwave) is a plain number: compare it with a plain number, got '50 %'",
        "range: ll (line_length) is a percentage: give the limits with %, e.g. [100 %, 300 %], got 1",
        "range: ll (line_length) is a percentage: give the limits with %, e.g. [100 %, 300 %], got 3",
    ]


def test_channel_votes_and_trend_holds_compile() -> None:
    text = (GOOD / "seizure_8ch.yaml").read_text(encoding="utf-8")
    text = text.replace("trend: 60 s, reduce: max}}", "trend: 60 s, hold_above: 150 %, hold_max: 2 min, reduce: {channels_above: 200 %}}}", 1)
    text = text.replace("window: 1 s, every: 100 ms, reduce: max}}", "window: 1 s, every: 100 ms, reduce: {channels_above: 2}}}")
    text = text.replace("ll > 200 % for 1 s and hw > 6", "ll >= 2 for 1 s and hw >= 2")
    p = loads_protocol(text)
    assert p.features["ll"].params == SeizureParams(60.0, "mean", None, ChannelsAbove(2.0), 1.5, 120.0)
    assert p.features["hw"].params.reduce == ChannelsAbove(2.0)
    assert p.rules[0].when.items[0] == Sustained(Compare(FeatureRef("ll"), ">=", Constant(2.0)), 1.0)


def test_channel_votes_and_trend_holds_report_mistakes_where_they_are() -> None:
    text = (GOOD / "seizure_8ch.yaml").read_text(encoding="utf-8")
    text = text.replace("trend: 60 s, reduce: max}}", "trend: 60 s, hold_above: 90 %, reduce: {channels_above: 2}}}", 1)
    text = text.replace("window: 1 s, every: 100 ms, reduce: max}}", "window: 1 s, every: 100 ms, reduce: {channels_above: 50 %}}}")
    text = text.replace("trend_kind: ema, warmup: 30 s, reduce: max", "trend_kind: ema, warmup: 30 s, reduce: {votes: 2}")
    with pytest.raises(ProtocolError) as info:
        loads_protocol(text, "p.yaml")
    lines = text.splitlines()
    got = {(i.line, i.message) for i in info.value.issues}
    ll_line = next(n for n, t in enumerate(lines, 1) if t.startswith("  ll:"))
    hw_line = next(n for n, t in enumerate(lines, 1) if t.startswith("  hw:"))
    area_line = next(n for n, t in enumerate(lines, 1) if t.startswith("  area:"))
    assert (ll_line, "hold_above: must be above 100 % (100 % is the trend itself), got 90 %") in got
    assert (ll_line, "channels_above: line length and area are percentages of their trend; write e.g. 200 %, not 2") in got
    assert (hw_line, "channels_above: a half-wave count is a plain number, e.g. 6, not 50 %") in got
    assert (area_line, "reduce: expected mean, median, max or a channel vote like {channels_above: 200 %}, "
                       "got {'votes': 2}") in got


def test_phase_and_slope_compile_to_their_params(mu) -> None:
    f = mu.features["mu"]
    assert (f.kind, f.input, f.band, f.every_s) == ("phase", "eeg", Band(8.0, 13.0), 0.01)
    assert f.channels == ("C3", "FC1", "FC5", "CP1", "CP5")  # centre, then neighbours
    assert f.window_s == 1.0  # the AR method's default window
    assert f.params == PhaseParams(
        center="C3", neighbours=("FC1", "FC5", "CP1", "CP5"), method="ar", target_rad=math.pi, delay_s=0.005,
        min_interval_s=2.0, amplitude_min=None, amplitude_q=50.0, amplitude_over_s=30.0, train_s=None,
    )
    b = mu.features["breath"]
    assert (b.kind, b.channels, b.window_s, b.every_s, b.band) == ("slope", ("Resp",), 0.5, 0.05, None)
    assert b.params == SlopeParams(lowpass_hz=1.0)


@pytest.mark.parametrize(
    "target, rad",
    [("trough", math.pi), ("peak", 0.0), ("rising", -math.pi / 2), ("falling", math.pi / 2),
     ("180 deg", math.pi), ("-180 deg", math.pi), ("-90 deg", -math.pi / 2), ("270deg", -math.pi / 2), ("45 deg", math.pi / 4)],
)
def test_phase_targets(target: str, rad: float) -> None:
    text = (GOOD / "mu_phase_resp.yaml").read_text(encoding="utf-8").replace("target: trough", f"target: {target}")
    assert loads_protocol(text).features["mu"].params.target_rad == pytest.approx(rad, abs=1e-12)


def test_phase_single_channel_etp_hilbert_and_defaults() -> None:
    text = (GOOD / "mu_phase_resp.yaml").read_text(encoding="utf-8").replace(
        "  breath:",
        "  mu_etp: {phase: {input: eeg, channel: C3, band: [8 Hz, 12 Hz], method: etp, train: 20 s, min_interval: 1 s,"
        " amplitude: 2 uV, every: 20 ms}}\n"
        "  mu_h: {phase: {input: eeg, channel: CP1, band: [8 Hz, 13 Hz], method: hilbert, window: 400 ms,"
        " target: peak, min_interval: 3 s, every: 4 ms}}\n  breath:",
    )
    p = loads_protocol(text)
    etp, h = p.features["mu_etp"], p.features["mu_h"]
    assert etp.channels == ("C3",) and etp.window_s == pytest.approx(1.5 / 8.0)  # 1.5 cycles of the low edge
    assert etp.params == PhaseParams(center="C3", method="etp", min_interval_s=1.0, amplitude_min=2e-6, train_s=20.0)
    assert (h.channels, h.window_s, h.params.method, h.params.target_rad, h.params.delay_s) == (("CP1",), 0.4, "hilbert", 0.0, 0.0)


def test_slope_with_a_band_and_without_a_filter() -> None:
    text = (GOOD / "mu_phase_resp.yaml").read_text(encoding="utf-8").replace(
        "lowpass: 1 Hz,", "band: [0.1 Hz, 1 Hz],"
    ).replace("  breath:", "  raw_slope: {slope: {input: resp, window: 2 s, every: 100 ms}}\n  breath:")
    p = loads_protocol(text)
    assert (p.features["breath"].band, p.features["breath"].params) == (Band(0.1, 1.0), SlopeParams(None))
    assert (p.features["raw_slope"].band, p.features["raw_slope"].params) == (None, SlopeParams(None))


# --------------------------------------------------------------------------- errors, one pass, positioned


def _expectations(path: Path) -> list[tuple[int, int, str]]:
    return [
        (int(m.group(1)), int(m.group(2)), m.group(3))
        for m in map(_EXPECT.match, path.read_text(encoding="utf-8").splitlines())
        if m
    ]


def test_bad_fixtures_present() -> None:
    assert len(BAD_FILES) >= 10
    assert all(_expectations(p) for p in BAD_FILES)


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.stem)
def test_bad_feature_kind_reports_exact_positions(path: Path) -> None:
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    got = sorted((i.line, i.col, i.message) for i in info.value.issues)
    assert got == sorted(_expectations(path)), "\n".join(str(i) for i in info.value.issues)
    for text, issue in zip(str(info.value).splitlines(), info.value.issues):
        assert text == f"{path}:{issue.line}:{issue.col}: {issue.message}"


def test_unknown_kind_lists_the_new_kinds() -> None:
    text = (GOOD / "seizure_8ch.yaml").read_text(encoding="utf-8").replace("{halfwave:", "{half_wave:")
    with pytest.raises(ProtocolError) as info:
        loads_protocol(text, "p.yaml")
    (issue,) = info.value.issues
    assert issue.message == (
        "unknown feature kind 'half_wave' in features.hw (did you mean 'halfwave'?); valid feature kinds: band_power, "
        "sensor_power, band_ratio, relative_power, peak_to_peak, line_length, area, halfwave, slope, phase, alpha_asymmetry, haemoglobin, optode_quality, roi_psc, roi_mean, "
        "roi_correlation"
    )


# --------------------------------------------------------------------------- JSON Schema


def test_schema_documents_the_new_kinds() -> None:
    schema = json_schema()
    kinds = schema["$defs"]["FeatureDecl"]["properties"]
    for kind, decl in [("line_length", "LineLengthDecl"), ("area", "AreaDecl"), ("halfwave", "HalfWaveDecl"),
                       ("slope", "SlopeDecl"), ("phase", "PhaseDecl")]:
        assert kinds[kind]["description"]
        definition = schema["$defs"][decl]
        assert definition["description"]
        assert all(sub.get("description") for sub in definition["properties"].values()), decl
    assert schema["$defs"]["PhaseDecl"]["properties"]["method"]["enum"] == ["ar", "etp", "hilbert"]
    assert schema["$defs"]["LaplacianDecl"]["required"] == ["center", "neighbours"]


def test_schema_accepts_the_examples_and_rejects_mistakes() -> None:
    yaml = pytest.importorskip("yaml")
    from test_protocol_schema import Invalid, validate  # the repo's small JSON Schema validator

    schema = json_schema()
    for name in ("seizure_8ch", "mu_phase_resp"):
        data = yaml.safe_load((GOOD / f"{name}.yaml").read_text(encoding="utf-8"))
        validate(data, schema, schema)
    data = yaml.safe_load((GOOD / "mu_phase_resp.yaml").read_text(encoding="utf-8"))
    for mutate in (
        lambda d: d["features"]["mu"]["phase"].update(method="pll"),
        lambda d: d["features"]["mu"]["phase"].update(target="bottom"),
        lambda d: d["features"]["mu"]["phase"].update(delay=5),
        lambda d: d["features"]["mu"]["phase"]["laplacian"].update(neighbors=["FC1"]),
        lambda d: d["features"]["breath"]["slope"].update(lowpass="1 s"),
    ):
        bad = yaml.safe_load(yaml.safe_dump(data))
        mutate(bad)
        with pytest.raises(Invalid):
            validate(bad, schema, schema)


# --------------------------------------------------------------------------- against the real stream

MU_LABELS = ["C3", "FC1", "FC5", "CP1", "CP5"]


def test_stream_check_passes_matching_streams(mu, seizure) -> None:
    assert check_against_stream(mu, "eeg", 500.0, ["Fp1", *MU_LABELS]) == []
    assert check_against_stream(mu, "resp", 25.0, ["Resp"]) == []
    assert check_against_stream(seizure, "ieeg", 100.0, ["c3", "c4", "cz", "p3", "p4", "t3", "t4", "t5"]) == []


def test_stream_check_laplacian_labels(mu) -> None:
    assert check_against_stream(mu, "eeg", 500.0, ["C3", "FC1", "FC5", "CP1"]) == [
        "input 'eeg': channel 'CP5' is not in the stream; its channels: C3, FC1, FC5, CP1"
    ]
    # A compiled protocol built in code, whose Laplacian names an electrode its input does not list.
    f = mu.features["mu"]
    odd = dataclasses.replace(f, channels=("C3", "FC1", "FC5", "CP1", "CP6"),
                              params=dataclasses.replace(f.params, neighbours=("FC1", "FC5", "CP1", "CP6")))
    p = dataclasses.replace(mu, features={"mu": odd})
    assert check_against_stream(p, "eeg", 500.0, MU_LABELS) == [
        "feature 'mu': Laplacian electrode 'CP6' not in the stream; its channels: C3, FC1, FC5, CP1, CP5"
    ]


def test_stream_check_kind_limits_at_the_real_rate(mu) -> None:
    short = dataclasses.replace(mu, features={"mu": dataclasses.replace(mu.features["mu"], window_s=0.3)})
    assert check_against_stream(short, "eeg", 500.0, MU_LABELS) == [
        "feature 'mu': window: AR phase: a 0.3 s window at fs=500.0 Hz leaves 25 samples after cutting 0.1 s "
        "edges and decimating by 2; AR order 20 needs at least 40"
    ]
    slow = dataclasses.replace(mu.features["breath"], window_s=4.0, every_s=1.0)
    p = dataclasses.replace(mu, features={"breath": slow})
    assert check_against_stream(p, "resp", 2.0, ["Resp"]) == [
        "feature 'breath': lowpass: lowpass 1 Hz is at or above the Nyquist frequency 1 Hz"
    ]


def test_stream_check_halfwave_shorter_than_a_sample(seizure) -> None:
    hw = seizure.features["hw"]
    quick = dataclasses.replace(hw, params=dataclasses.replace(hw.params, min_duration_s=0.001, max_duration_s=0.005))
    p = dataclasses.replace(seizure, features={"hw": quick})
    assert check_against_stream(p, "ieeg", 100.0, ["c3", "c4", "cz", "p3", "p4", "t3", "t4", "t5"]) == [
        "feature 'hw': duration: the longest qualifying half-wave is 0.5 samples at 100 Hz; a half-wave lasts at least 1 sample"
    ]
