"""Whole-protocol checks: each case edits a valid protocol and expects exactly the listed
issues, positioned at the text they name (found by searching the edited text)."""

from __future__ import annotations

import pytest

from controller.lang.compiled import AdaptSpec
from controller.protocol import ProtocolError, loads_protocol

BASE = """\
protocol: base
inputs:
  eeg:
    stream: {type: EEG}
    channels: [Cz, Fp1]
features:
  tbr: {band_ratio: {input: eeg, channels: [Cz], numerator: [4 Hz, 8 Hz], denominator: [13 Hz, 21 Hz], window: 2 s, every: 100 ms}}
  blink: {peak_to_peak: {input: eeg, channels: [Fp1], window: 500 ms, every: 100 ms}}
thresholds:
  goal: {percentile: {feature: tbr, during: baseline, q: 40}, adapt: {every: 60 s, target_reward_rate: 0.7}}
timeline: [{baseline: 2 min}, {repeat: 2, blocks: [{train: 3 min}, {rest: 30 s}]}]
rules:
  - during: train
    when: tbr < goal for 500 ms
    do: {feedback: reward}
"""


def edit(*pairs: tuple[str, str]) -> str:
    text = BASE
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def at(text: str, marker: str, occurrence: int = 0, delta: int = 0) -> str:
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(marker, start + 1)
        assert start >= 0
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1 + delta
    return f"{line}:{col}"


def issues(text: str) -> list[str]:
    with pytest.raises(ProtocolError) as info:
        loads_protocol(text, "p.yaml")
    return [f"{i.line}:{i.col}: {i.message}" for i in info.value.issues]


def check(text: str, *expected: tuple[str, str]) -> None:
    """expected: (marker, message) pairs; markers may carry '@n' for the n-th occurrence."""
    want = []
    for marker, message in expected:
        occ = 0
        if "@" in marker:
            marker, n = marker.rsplit("@", 1)
            occ = int(n)
        want.append(f"{at(text, marker, occ)}: {message}")
    assert issues(text) == sorted(want, key=lambda s: tuple(int(x) for x in s.split(":")[:2]))


def test_base_is_valid() -> None:
    p = loads_protocol(BASE)
    assert p.thresholds["goal"].adapt == AdaptSpec(60.0, 0.7, "below", "tbr")


def test_reversed_comparison_gives_same_direction() -> None:
    p = loads_protocol(edit(("when: tbr < goal for 500 ms", "when: goal > tbr for 500 ms")))
    assert p.thresholds["goal"].adapt.direction == "below"
    p = loads_protocol(edit(("when: tbr < goal for 500 ms", "when: not tbr < goal")))
    assert p.thresholds["goal"].adapt.direction == "above"


def test_adapt_on_a_fixed_threshold() -> None:
    p = loads_protocol(edit(("goal: {percentile: {feature: tbr, during: baseline, q: 40},", "goal: {fixed: 2.5,")))
    assert p.thresholds["goal"].fixed == 2.5
    assert p.thresholds["goal"].adapt == AdaptSpec(60.0, 0.7, "below", "tbr")


def test_plain_feature_compared_with_an_amplitude() -> None:
    text = edit(("when: tbr < goal for 500 ms", "when: tbr < goal and tbr < 3 uV"))
    check(text, ("3 uV", "tbr (band_ratio) is a plain number: compare it with a plain number, got '3 uV'"))


def test_constant_of_the_wrong_family() -> None:
    text = edit(("when: tbr < goal for 500 ms", "when: tbr < goal and tbr < 3 s"))
    check(text, ("3 s", "expected a plain number or an amplitude like '150 uV', got '3 s'"))


def test_comparison_without_a_feature() -> None:
    text = edit(("when: tbr < goal for 500 ms", "when: tbr < goal and goal > 2"))
    check(text, ("goal > 2", "'goal > 2' compares no feature; one side must be a feature, e.g. 'tbr < goal'"))


def test_fixed_amplitude_threshold_against_a_ratio() -> None:
    text = edit(
        ("thresholds:\n", "thresholds:\n  amp: {fixed: 100 uV}\n"),
        ("when: tbr < goal for 500 ms", "when: tbr < goal and tbr < amp"),
    )
    check(text, ("amp\n", "tbr (band_ratio) is a plain number, which cannot be compared with threshold 'amp' (fixed: 100 uV)"))


def test_percentile_of_an_amplitude_against_a_ratio() -> None:
    text = edit(
        ("thresholds:\n", "thresholds:\n  bmax: {percentile: {feature: blink, during: baseline, q: 90}}\n"),
        ("when: tbr < goal for 500 ms", "when: tbr < goal and bmax > tbr"),
    )
    check(text, ("bmax > tbr", "tbr (band_ratio) is a plain number, which cannot be compared with threshold 'bmax' "
                               "(a percentile of blink, peak_to_peak)"))


def test_threshold_named_like_a_feature() -> None:
    text = edit(("thresholds:\n", "thresholds:\n  blink: {fixed: 100 uV}\n"))
    check(text, ("blink: {fixed", "threshold 'blink' has the same name as a feature, so conditions could not tell "
                                  "them apart; rename one of them"))


def test_percentile_threshold_used_by_an_always_live_rule() -> None:
    text = edit(("  - during: train\n    when: tbr < goal", "  - when: tbr < goal"))
    check(text, ("baseline, q: 40", "during: threshold 'goal' is known only when the first 'baseline' block (block 1) "
                                    "ends, but rule 1 uses it from block 1 ('baseline'); collect it in an earlier "
                                    "block or restrict the rule with 'during:'"))


def test_relative_power_band_outside_total() -> None:
    text = edit(("features:\n", "features:\n  hi: {relative_power: {input: eeg, band: [30 Hz, 45 Hz], window: 1 s, every: 100 ms}}\n"))
    check(text, ("[30 Hz", "band: [30 Hz, 45 Hz] must lie inside total [1 Hz, 40 Hz]"))


def test_welch_window_too_coarse_for_a_narrow_band() -> None:
    text = edit(("features:\n", "features:\n  smr: {band_power: {input: eeg, band: [12 Hz, 14 Hz], window: 250 ms, every: 100 ms}}\n"))
    check(text, ("250 ms", "window: Welch segments of 250 ms give a spectral resolution of 4 Hz, coarser than the "
                           "2 Hz wide band [12 Hz, 14 Hz], which may then hold no frequency bin; use a window of at "
                           "least 500 ms"))
    # past 1 s the default segment is 1 s: a narrower band needs a longer segment, which the window holds
    narrow = text.replace("[12 Hz, 14 Hz], window: 250 ms", "[12 Hz, 12.5 Hz], window: 4 s")
    check(narrow, ("4 s", "window: Welch segments of 1 s give a spectral resolution of 1 Hz, coarser than the "
                          "0.5 Hz wide band [12 Hz, 12.5 Hz], which may then hold no frequency bin; give segment: 2 s"))
    loads_protocol(narrow.replace("window: 4 s", "window: 4 s, segment: 2 s"))
    # the same window is fine for a band-pass (iir) power estimate
    loads_protocol(text.replace("every: 100 ms}}\n  tbr", "every: 100 ms, method: iir}}\n  tbr"))


def test_filters_above_the_stated_nyquist() -> None:
    text = edit(("    channels: [Cz, Fp1]\n", "    channels: [Cz, Fp1]\n    rate: 100 Hz\n    notch: 50 Hz\n"))
    check(text, ("50 Hz", "notch: 50 Hz is at or above the Nyquist frequency 50 Hz of the stated rate 100 Hz; "
                          "use a frequency below 50 Hz"))


def test_names_must_be_identifiers_and_not_keywords() -> None:
    text = edit(("  blink: {peak", "  and: {peak"), ("[{train: 3 min}", "[{train-1: 3 min}"))
    check(
        text,
        ("and: {peak", "features: 'and' is a condition keyword (and, for, not, or); pick another name"),
        ("train-1", "blocks[0]: 'train-1' is not a valid name: use letters, digits and _, not starting "
                    "with a digit (e.g. theta_beta)"),
        ("train\n", "during: unknown block 'train' (did you mean 'train-1'?); blocks: baseline, rest, train-1"),
    )


def test_timeline_entry_shapes() -> None:
    text = edit(("[{baseline: 2 min}, {repeat: 2, blocks: [{train: 3 min}, {rest: 30 s}]}]",
                 "[{baseline: 2 min, pause: 1 s}, baseline, {repeat: 2}]"))
    check(
        text,
        ("{baseline: 2 min, pause", "timeline[0]: one block per entry: write [{baseline: ...}, {pause: ...}] rather "
                                    "than one mapping with 2 labels"),
        ("baseline, {repeat", "timeline[1]: expected a timeline entry {LABEL: DURATION} like {train: 3 min}, or "
                              "{repeat: N, blocks: [...]}, got 'baseline'"),
        ("{repeat: 2}", "missing required key 'blocks' in timeline[2]: the blocks to repeat, e.g. [{train: 3 min}, {rest: 30 s}]."),
        ("train\n", "during: unknown block 'train'; blocks: baseline, pause"),
    )


def test_unknown_names_of_broken_entries_are_not_reported_twice() -> None:
    # tbr is broken (bare window); the rule and the threshold that use it say nothing more
    text = edit(("window: 2 s, every: 100 ms}}\n  blink", "window: 2, every: 100 ms}}\n  blink"))
    check(text, ("2, every", "window: expected a duration like '2 s' or '500 ms', got 2"))


def test_misc_structure_errors() -> None:
    text = edit(
        ("stream: {type: EEG}", "stream: {}"),
        ("channels: [Cz, Fp1]", "channels: Cz"),
        ("do: {feedback: reward}", "do: {feedback: reward, marker: x}"),
        ("target_reward_rate: 0.7", "target_reward_rate: 1.5"),
    )
    check(
        text,
        ("{}", "stream: give at least one of name, type, source_id, e.g. {type: EEG}"),
        ("Cz\n", "channels: expected a list of channel labels like [Cz], got 'Cz'"),
        ("1.5", "target_reward_rate: input should be less than 1, got 1.5"),
        ("{feedback: reward, marker", "do: give exactly one of feedback, marker, stimulate, set, stop, e.g. {feedback: reward}"),
    )


def test_feedback_checks() -> None:
    text = BASE + "feedback: {value: blink, range: [100, 10 uV], during: [train, trian]}\n"
    check(
        text,
        ("100, 10", "range: blink is an amplitude: give the limits with a unit, e.g. [50 uV, 10 uV], got 100"),
        ("trian", "during: unknown block 'trian' (did you mean 'train'?); blocks: baseline, rest, train"),
    )
    text = BASE + "feedback: {value: tbx, range: [3, 3]}\n"
    check(
        text,
        ("[3, 3]", "range: LOW and HIGH must differ, got 3 twice"),
        ("tbx", "value: unknown feature 'tbx' (did you mean 'tbr'?); features: blink, tbr"),
    )


def test_unknown_input_and_percentile_feature() -> None:
    text = edit(("{input: eeg, channels: [Fp1]", "{input: eg, channels: [Fp1]"), ("feature: tbr,", "feature: tbrr,"))
    check(
        text,
        ("eg, channels: [Fp1]", "input: unknown input 'eg' (did you mean 'eeg'?); inputs: eeg"),
        ("tbrr", "feature: unknown feature 'tbrr' (did you mean 'tbr'?); features: blink, tbr"),
    )


def test_too_many_blocks() -> None:
    text = edit(("{repeat: 2, blocks:", "{repeat: 100000, blocks:"))
    check(text, ("timeline:", "timeline: 200001 blocks after expanding repeats; at most 10000 are supported"))


def test_a_rule_with_a_broken_action_still_has_its_condition_checked() -> None:
    text = edit(("do: {feedback: reward}", "do: {feedback: prize}"), ("when: tbr < goal", "when: tbx < goal"))
    check(
        text,
        ("tbx", "unknown name 'tbx' in condition (did you mean 'tbr'?); features: blink, tbr; thresholds: goal"),
        ("prize", "feedback: input should be 'reward', got 'prize'"),
    )


def test_a_broken_section_does_not_make_every_reference_unknown() -> None:
    text = edit(("features:\n  tbr:", "features: 3\nunused:\n  tbr:"))
    got = issues(text)
    assert got[0].startswith(f"{at(text, '3')}: features: expected a mapping")
    assert not any("unknown feature" in m or "unknown name" in m for m in got), got
