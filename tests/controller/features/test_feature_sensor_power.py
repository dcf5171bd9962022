"""sensor_power (MEG): gradiometer pairs combined as root-sum-square, magnetometers apart, on the real
Vectorview layout of ../shared/data/meg; online equals offline; a sensor of the wrong type is an error
where it is written (load time) or where the feature is declared (stream time)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controller.dsp.meg.sensors import grad_pairs, selection, sensor_kind
from controller.features import FeaturePipeline
from controller.features.offline import offline_values
from controller.protocol import ProtocolError, load_protocol, loads_protocol
from controller.protocol.stream_check import StreamFacts, check_stream

ROOT = Path(__file__).resolve().parents[3]
MEG_FILE = ROOT.parent / "shared" / "data" / "meg" / "sample_audvis_trunc_raw_sss.fif"
PROTOCOL = ROOT / "protocols" / "meg_alpha.yaml"


@pytest.fixture(scope="module")
def layout() -> tuple[list[str], list[str]]:
    if not MEG_FILE.exists():
        pytest.skip(f"real MEG layout not found: {MEG_FILE}")
    import mne

    raw = mne.io.read_raw_fif(MEG_FILE, verbose=False).pick("meg")
    return list(raw.ch_names), list(raw.get_channel_types())


def test_names_and_the_files_types_agree(layout) -> None:
    labels, types = layout
    assert [sensor_kind(n) for n in labels] == types
    pairs = grad_pairs(tuple(labels))
    assert len(pairs) == 102 and sum(t == "mag" for t in types) == 102


def test_alpha_over_posterior_gradiometer_pairs_online_equals_offline(layout) -> None:
    labels, types = layout
    protocol = load_protocol(PROTOCOL)
    grad, mag = protocol.features["alpha_grad"], protocol.features["alpha_mag"]
    posterior = set(selection("Left-occipital")) | set(selection("Right-occipital"))
    assert set(grad.channels) <= posterior | set(selection("Left-parietal")) | set(selection("Right-parietal"))
    assert all(sensor_kind(c) == "grad" for c in grad.channels) and len(grad.channels) % 2 == 0
    assert all(sensor_kind(c) == "mag" for c in mag.channels)

    fs = 1000.0
    rng = np.random.default_rng(3)
    n = int(3 * fs)
    x = rng.normal(0, 1e-12, (n, len(labels)))  # ~1 pT/m white noise on gradiometers
    x[:, [t == "mag" for t in types]] *= 1e-2  # ~10 fT on magnetometers
    t = np.arange(n) / fs
    alpha = 5e-12 * np.sin(2 * np.pi * 10 * t)
    for c in grad.channels[:2]:  # one posterior position's pair: alpha split between its two directions
        x[:, labels.index(c)] += alpha * (0.6 if c.endswith("2") else 0.8)
    spec = protocol.inputs["meg"]
    pipe = FeaturePipeline(fs, labels, spec, [grad, mag], channel_types=types)
    online = {"alpha_grad": [], "alpha_mag": []}
    stamps = t + 100.0
    for a in range(0, n, 5):
        for v in pipe.push(x[a:a + 5], stamps[a:a + 5]):
            online[v.name].append(v.value)
    for feat in (grad, mag):
        _, ref, _ = offline_values(x, fs, labels, spec, feat, channel_types=types)
        np.testing.assert_allclose(online[feat.name], ref, rtol=1e-9)
    # the pair's RSS power: (0.6^2 + 0.8^2) x the alpha's power, whatever its direction, shared by the pairs
    n_pairs = len(grad.channels) / 2
    expected = (5e-12) ** 2 / 2 / n_pairs
    assert online["alpha_grad"][-1] == pytest.approx(expected, rel=0.25)


def test_a_magnetometer_in_a_gradiometer_feature_is_an_error_where_it_is_written(tmp_path) -> None:
    text = PROTOCOL.read_text().replace(
        "alpha_grad: {sensor_power: {input: meg, sensors: grad, selection: [Left-occipital, Right-occipital, Left-parietal, Right-parietal]",
        "alpha_grad: {sensor_power: {input: meg, sensors: grad, channels: [MEG 1642, MEG 1643, MEG 1641, MEG 1712]")
    with pytest.raises(ProtocolError) as info:
        loads_protocol(text, "meg.yaml")
    messages = [f"{i.line}:{i.col}: {i.message}" for i in info.value.issues]
    assert any("'MEG 1641' is a magnetometer" in m and "T vs T/m" in m for m in messages), messages
    assert any("'MEG 1712' has no partner" in m for m in messages), messages
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "MEG 1641" in row)
    assert any(m.startswith(f"{line}:") for m in messages)


def test_the_streams_types_overrule_the_names(layout) -> None:
    labels, types = layout
    protocol = load_protocol(PROTOCOL)
    swapped = ["mag" if t == "grad" else "grad" for t in types]
    facts = StreamFacts("meg-x", 1000.0, tuple(labels), tuple(swapped), tuple("T" for _ in labels))
    problems = check_stream(protocol, "meg", facts, units=False).problems
    found = [p for p in problems if p.loc[:2] == ("features", "alpha_grad")]
    assert found and "sensors: grad reads planar gradiometers" in found[0].message
    assert found[0].loc == ("features", "alpha_grad", "sensor_power", "sensors")
    fine = StreamFacts("meg-x", 1000.0, tuple(labels), tuple(types), tuple("T" for _ in labels))
    assert not check_stream(protocol, "meg", fine, units=False).problems
