"""The fNIRS feature kinds through the feature pipeline on the real recording (../shared/data/fnirs):
haemoglobin over pairs equals MNE's optical_density + beer_lambert_law averaged the same way; the change
from the last rest equals its offline reference given the same blocks; optode_quality reads the front
end's sci/motion channels; a stream that lacks a listed pair's wavelength is an error at that pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controller.dsp.nirs import NirsFrontEnd, NirsLayout
from controller.features import FeaturePipeline
from controller.features.kinds.haemoglobin import relative_to_baseline
from controller.protocol import loads_protocol
from controller.protocol.stream_check import StreamFacts, check_stream

SNIRF = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "fnirs" / "snirf_samples_neuro_run01.snirf"
PAIRS = ["S1_D1", "S1_D2", "S2_D3"]

PROTOCOL = f"""
protocol: nirs-test
inputs:
  nirs:
    stream: {{type: NIRS}}
    channels: [{', '.join(PAIRS)}]
    fnirs: {{lowpass: false, short_channels: false}}
features:
  hbo:    {{haemoglobin: {{input: nirs, chromophore: hbo, window: 1 s, every: 500 ms}}}}
  hbr:    {{haemoglobin: {{input: nirs, channels: [S1_D2], chromophore: hbr, window: 2 s, every: 1 s}}}}
  change: {{haemoglobin: {{input: nirs, chromophore: hbo, change_from: rest, skip: 2 s, window: 1 s, every: 500 ms}}}}
  motion: {{optode_quality: {{input: nirs, measure: motion, window: 1 s, every: 500 ms}}}}
  sci:    {{optode_quality: {{input: nirs, measure: sci, window: 5 s, every: 500 ms}}}}
timeline: [{{rest: 60 s}}, {{repeat: 5, blocks: [{{task: 30 s}}, {{rest: 30 s}}]}}]
feedback: {{value: change, range: [0 umol/L, 1 umol/L]}}
"""


@pytest.fixture(scope="module")
def recording():
    if not SNIRF.exists():
        pytest.skip(f"real recording {SNIRF} is absent (shared/data not mounted)")
    import mne

    raw = mne.io.read_raw_snirf(str(SNIRF), preload=True, verbose="error")
    hb = mne.preprocessing.nirs.beer_lambert_law(mne.preprocessing.nirs.optical_density(raw))
    return raw, hb


def _run(protocol, raw, chunk: int, block_of):
    x = raw.get_data().T
    fs = raw.info["sfreq"]
    layout = NirsLayout.from_mne(raw.info)
    front = NirsFrontEnd(layout, fs, reference=x.mean(axis=0), lowpass_hz=None, short_regression=False)
    spec = protocol.inputs["nirs"]
    pipe = FeaturePipeline(fs, raw.ch_names, spec, list(protocol.features.values()), front_end=front)
    state = {"k": 0}
    pipe.blocks.follow(lambda: block_of(state["k"]))
    stamps = np.arange(len(x)) / fs
    out: dict[str, list] = {name: [] for name in protocol.features}
    index: dict[str, list] = {name: [] for name in protocol.features}
    for a in range(0, len(x), chunk):
        state["k"] = a
        for v in pipe.push(x[a:a + chunk], stamps[a:a + chunk]):
            out[v.name].append(np.nan if v.value is None else v.value)
            index[v.name].append(v.sample_index)
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}, {k: np.asarray(v) for k, v in index.items()}


def _blocks(fs: float):
    def block_of(sample: int):
        t = sample / fs
        if t < 60:
            return (0, "rest")
        k = int((t - 60) // 30)
        return (1 + k, "task" if k % 2 == 0 else "rest")
    return block_of


@pytest.mark.parametrize("chunk", [1, 8])
def test_haemoglobin_equals_mne_averaged_over_the_pairs(recording, chunk) -> None:
    raw, hb = recording
    protocol = loads_protocol(PROTOCOL, "nirs.yaml")
    assert protocol.features["hbo"].channels == tuple(f"{p} hbo" for p in PAIRS)
    fs = raw.info["sfreq"]
    values, index = _run(protocol, raw, chunk, _blocks(fs))
    mne_hb = hb.get_data()

    def mne_mean(names: list[str], window: int, ends: np.ndarray) -> np.ndarray:
        cols = [hb.ch_names.index(n) for n in names]
        series = mne_hb[cols].mean(axis=0)
        return np.array([series[k - window + 1:k + 1].mean() for k in ends])

    w1 = round(1 * fs)
    np.testing.assert_allclose(values["hbo"], mne_mean([f"{p} hbo" for p in PAIRS], w1, index["hbo"]), rtol=1e-9)
    np.testing.assert_allclose(values["hbr"], mne_mean(["S1_D2 hbr"], round(2 * fs), index["hbr"]), rtol=1e-9)
    # the change from the last rest: the offline reference of the same values in the same blocks
    block_of = _blocks(fs)
    blocks = [block_of(int(k) - (int(k) % chunk)) for k in index["change"]]
    expected = relative_to_baseline(values["hbo"], blocks, ("rest",), skip=round(2 / 0.5))
    np.testing.assert_allclose(values["change"], expected, rtol=1e-9, atol=1e-15)
    assert np.isnan(values["change"][: int(55 / 0.5)]).all()  # no completed rest before 60 s
    assert np.isfinite(values["change"][int(61 / 0.5):]).all()
    # quality: a real, well-coupled recording; the worst pair's SCI and the motion fraction are in range
    assert np.all((values["motion"] >= 0) & (values["motion"] <= 1))
    assert np.nanmedian(values["sci"]) > 0.5


def test_a_stream_without_a_pairs_second_wavelength_is_an_error_at_the_pair(recording) -> None:
    raw, _ = recording
    protocol = loads_protocol(PROTOCOL, "nirs.yaml")
    labels = [c for c in raw.ch_names if c != "S1_D2 830"]
    facts = StreamFacts("nirx", raw.info["sfreq"], tuple(labels), (), ())
    problems = check_stream(protocol, "nirs", facts, units=False).problems
    assert [p.loc for p in problems] == [("inputs", "nirs", "channels", 1)]
    assert "pair S1_D2 has only 690 nm in the stream" in problems[0].message


def test_concentrations_in_conditions_thresholds_and_feedback() -> None:
    """'0.1 umol/L' is a concentration wherever a level is written; a plain number or volts for a
    haemoglobin feature is an error at its place."""
    from controller.lang.compiled import Compare, Constant

    text = PROTOCOL.replace("feedback: {value: change",
                            "rules:\n  - {during: task, when: change > 0.1 umol/L and hbo > 50 nM, do: {feedback: reward}}\n"
                            "feedback: {value: change")
    protocol = loads_protocol(text, "nirs.yaml")
    (rule,) = protocol.rules
    constants = []

    def walk(node) -> None:
        if isinstance(node, Compare):
            constants.extend(o.value for o in (node.left, node.right) if isinstance(o, Constant))
        for child in getattr(node, "items", ()) or getattr(node, "operands", ()) or ():
            walk(child)
        for attr in ("left", "right", "inner", "operand"):
            sub = getattr(node, attr, None)
            if sub is not None and not isinstance(sub, Constant) and hasattr(sub, "__dataclass_fields__"):
                walk(sub)

    walk(rule.when)
    assert sorted(constants) == pytest.approx([5e-8, 1e-7])
    assert (protocol.feedback.low, protocol.feedback.high) == pytest.approx((0.0, 1e-6))
    bad = PROTOCOL.replace("rules:", "").replace("feedback: {value: change",
                                                 "rules:\n  - {during: task, when: change > 0.1, do: {feedback: reward}}\n"
                                                 "feedback: {value: change")
    from controller.protocol import ProtocolError

    with pytest.raises(ProtocolError) as info:
        loads_protocol(bad, "nirs.yaml")
    assert "haemoglobin concentration change: write the number with its unit, e.g. '0.5 umol/L'" in str(info.value)
