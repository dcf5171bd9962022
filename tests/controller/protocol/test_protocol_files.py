"""The protocol library loads, and the reference example compiles to exactly the expected objects."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import protocols
from controller.lang.compiled import (
    Action,
    AdaptSpec,
    And,
    AverageOfType,
    Band,
    Block,
    Compare,
    Constant,
    FeatureRef,
    FeatureSpec,
    FeedbackSpec,
    InputSpec,
    PercentileSpec,
    Rule,
    StreamSelector,
    Sustained,
    ThresholdRef,
    ThresholdSpec,
)
from controller.protocol import load_protocol, loads_protocol

LIBRARY = sorted(protocols.PROTOCOL_DIR.glob("*.yaml"))

EXAMPLE = """\
protocol: tbr-adhd
description: Theta/beta ratio down-training at Cz for ADHD
inputs:
  eeg:
    stream: {type: EEG}            # any of name/type/source_id
    channels: [Cz, Fp1, Fp2]
    reference: {average: all EEG}  # or average (of these channels), [A1, A2] or omitted
    highpass: 0.5 Hz               # optional
    notch: 50 Hz                   # optional
    stall: 1 s                     # optional, default 1 s
features:
  tbr:   {band_ratio: {input: eeg, channels: [Cz], numerator: [4 Hz, 8 Hz], denominator: [13 Hz, 21 Hz], window: 2 s, every: 100 ms}}
  emg:   {band_power: {input: eeg, channels: [Cz], band: [45 Hz, 70 Hz], window: 500 ms, every: 100 ms}}
  blink: {peak_to_peak: {input: eeg, channels: [Fp1, Fp2], band: [0.5 Hz, 4 Hz], window: 500 ms, every: 100 ms}}
thresholds:
  goal:     {percentile: {feature: tbr, during: baseline, q: 40}, adapt: {every: 60 s, target_reward_rate: 0.7}}
  emg_max:  {percentile: {feature: emg, during: baseline, q: 95}}
  blink_max: {fixed: 150 uV}
timeline: [{baseline: 2 min}, {repeat: 6, blocks: [{train: 3 min}, {rest: 30 s}]}]
rules:
  - during: train
    when: tbr < goal for 500 ms and emg < emg_max and blink < blink_max
    do: {feedback: reward}
feedback: {value: tbr, range: [3.0, 1.0], during: [train]}
"""


def test_library_is_not_empty() -> None:
    names = {p.stem for p in LIBRARY}
    assert {"tbr_adhd", "smr", "tbr_demo"} <= names


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_every_library_protocol_loads(path: Path) -> None:
    protocol = load_protocol(path)
    assert protocol.path == str(path)
    assert protocol.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert protocol.timeline and protocol.rules and protocol.features
    assert [b.index for b in protocol.timeline] == list(range(len(protocol.timeline)))


def test_example_compiles_to_expected_objects() -> None:
    p = loads_protocol(EXAMPLE, "example.yaml")
    assert p.name == "tbr-adhd"
    assert p.description == "Theta/beta ratio down-training at Cz for ADHD"
    assert p.path == ""
    assert p.sha256 == hashlib.sha256(EXAMPLE.encode()).hexdigest()
    assert p.inputs == {
        "eeg": InputSpec(
            name="eeg",
            stream=StreamSelector(type="EEG"),
            channels=("Cz", "Fp1", "Fp2"),
            reference=AverageOfType("EEG"),
            highpass_hz=0.5,
            notch_hz=50.0,
            stall_timeout_s=1.0,
            resolve_timeout_s=10.0,
            rate_hz=None,
        )
    }
    assert p.features == {
        "tbr": FeatureSpec("tbr", "band_ratio", "eeg", ("Cz",), 2.0, 0.1, "welch",
                           numerator=Band(4.0, 8.0), denominator=Band(13.0, 21.0)),
        "emg": FeatureSpec("emg", "band_power", "eeg", ("Cz",), 0.5, 0.1, "welch", band=Band(45.0, 70.0)),
        "blink": FeatureSpec("blink", "peak_to_peak", "eeg", ("Fp1", "Fp2"), 0.5, 0.1, band=Band(0.5, 4.0)),
    }
    assert list(p.features) == ["tbr", "emg", "blink"]  # file order kept
    assert p.thresholds == {
        "goal": ThresholdSpec("goal", percentile=PercentileSpec("tbr", "baseline", 40.0),
                              adapt=AdaptSpec(60.0, 0.7, "below", "tbr")),
        "emg_max": ThresholdSpec("emg_max", percentile=PercentileSpec("emg", "baseline", 95.0)),
        "blink_max": ThresholdSpec("blink_max", fixed=150e-6),
    }
    expected_blocks = [Block(0, "baseline", 120.0, None)]
    for cycle in range(6):
        expected_blocks.append(Block(len(expected_blocks), "train", 180.0, cycle))
        expected_blocks.append(Block(len(expected_blocks), "rest", 30.0, cycle))
    assert p.timeline == tuple(expected_blocks)
    assert p.duration_s == 120 + 6 * 210
    source = "tbr < goal for 500 ms and emg < emg_max and blink < blink_max"
    assert p.rules == (
        Rule(
            index=0,
            during=("train",),
            when=And((
                Sustained(Compare(FeatureRef("tbr"), "<", ThresholdRef("goal")), 0.5),
                Compare(FeatureRef("emg"), "<", ThresholdRef("emg_max")),
                Compare(FeatureRef("blink"), "<", ThresholdRef("blink_max")),
            )),
            do=Action(feedback="reward"),
            source=source,
            line=21,
        ),
    )
    assert p.feedback == FeedbackSpec("tbr", 3.0, 1.0, ("train",))


def test_library_tbr_adhd_matches_the_example() -> None:
    lib = load_protocol(protocols.find("tbr_adhd"))
    ex = loads_protocol(EXAMPLE)
    for field in ("name", "inputs", "features", "thresholds", "timeline", "feedback"):
        assert getattr(lib, field) == getattr(ex, field), field
    assert [r.when for r in lib.rules] == [r.when for r in ex.rules]


def test_demo_is_short_and_adapts_fast() -> None:
    demo = load_protocol(protocols.find("tbr_demo"))
    assert 120 <= demo.duration_s <= 180
    assert demo.timeline[0] == Block(0, "baseline", 20.0, None)
    assert [b.label for b in demo.timeline[1:]] == ["train", "rest"] * 4
    assert demo.thresholds["goal"].adapt == AdaptSpec(10.0, 0.7, "below", "tbr")


def test_smr_rewards_above_with_inhibits() -> None:
    smr = load_protocol(protocols.find("smr"))
    assert smr.features["smr"].band == Band(12.0, 15.0)
    assert smr.features["smr"].channels == ("C4",)
    assert smr.features["theta"].band == Band(4.0, 8.0)
    assert smr.features["hibeta"].band == Band(22.0, 30.0)
    assert smr.thresholds["goal"].adapt is not None
    assert smr.thresholds["goal"].adapt.direction == "above"
    assert smr.thresholds["goal"].adapt.feature == "smr"
    for name in ("theta_max", "hibeta_max"):
        assert smr.thresholds[name].percentile.during == "baseline"
    (rule,) = smr.rules
    assert rule.when == And((
        Sustained(Compare(FeatureRef("smr"), ">", ThresholdRef("goal")), 0.25),
        Compare(FeatureRef("theta"), "<", ThresholdRef("theta_max")),
        Compare(FeatureRef("hibeta"), "<", ThresholdRef("hibeta_max")),
    ))


def test_variants_of_the_language() -> None:
    """Optional forms: reference list, stated rate, nested repeat, during as a list,
    constants with units, relative_power defaults, iir method, marker actions."""
    text = """\
protocol: variants
inputs:
  eeg: {stream: {name: amp, source_id: "X1"}, channels: [C3, C4, A1, A2], reference: [A1, A2], rate: 500 Hz}
features:
  alpha: {relative_power: {input: eeg, channels: [C3, C4], band: [8 Hz, 12 Hz], window: 1 s, every: 250 ms, method: iir}}
  ptp:   {peak_to_peak: {input: eeg, window: 200 ms, every: 200 ms}}
thresholds:
  low: {fixed: 0.1}
timeline:
  - warmup: 10 s
  - repeat: 2
    blocks:
      - {a: 1 min}
      - repeat: 3
        blocks: [{b: 500 ms}]
rules:
  - during: [a, b]
    when: not alpha < low or (ptp > 0.2 mV and alpha >= 0.05) for 1 s
    do: {marker: "alpha lost"}
  - when: ptp <= 100 uV
    do: {feedback: reward}
"""
    p = loads_protocol(text)
    eeg = p.inputs["eeg"]
    assert eeg.stream == StreamSelector(name="amp", source_id="X1")
    assert eeg.reference == ("A1", "A2")
    assert eeg.rate_hz == 500.0
    assert p.features["alpha"].total == Band(1.0, 40.0)
    assert p.features["alpha"].method == "iir"
    assert p.features["ptp"].channels == ("C3", "C4", "A1", "A2")
    assert p.features["ptp"].band is None
    assert [(b.label, b.duration_s, b.cycle) for b in p.timeline] == [
        ("warmup", 10.0, None),
        ("a", 60.0, 0), ("b", 0.5, 0), ("b", 0.5, 1), ("b", 0.5, 2),
        ("a", 60.0, 1), ("b", 0.5, 0), ("b", 0.5, 1), ("b", 0.5, 2),
    ]
    r0, r1 = p.rules
    assert r0.during == ("a", "b")
    assert r0.do == Action(marker="alpha lost")
    from controller.lang.compiled import Not, Or

    assert r0.when == Or((
        Not(Compare(FeatureRef("alpha"), "<", ThresholdRef("low"))),
        Sustained(And((
            Compare(FeatureRef("ptp"), ">", Constant(0.2e-3)),
            Compare(FeatureRef("alpha"), ">=", Constant(0.05)),
        )), 1.0),
    ))
    assert r1.during == ()
    assert r1.when == Compare(FeatureRef("ptp"), "<=", Constant(100e-6))
    assert r1.line == 20
