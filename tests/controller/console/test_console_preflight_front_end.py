"""Preflight of fNIRS and MEG inputs: the stream's description must build the input's front end (optode
positions for Beer-Lambert, projectors on this system's channels); what is missing is red, with the reason."""

from __future__ import annotations

from pathlib import Path

from controller.console.preflight import front_end_check
from controller.console.quality import GREEN, RED
from controller.protocol import load_protocol
from controller.protocol.stream_check import StreamFacts

ROOT = Path(__file__).resolve().parents[3]


def _nirs_facts(optodes: bool) -> StreamFacts:
    pairs = [("S1", "D1"), ("S2", "D1"), ("S1", "D9")]
    labels = tuple(f"{s}_{d} {w}" for s, d in pairs for w in (760, 850))
    where = (("S1", 0.0, 0.0, 0.0), ("S2", 0.03, 0.0, 0.0), ("D1", 0.015, 0.026, 0.0), ("D9", 0.0, 0.008, 0.0))
    return StreamFacts("nirs-x", 10.0, labels, ("NIRS",) * len(labels), ("a.u.",) * len(labels),
                       measures=("intensity",) * len(labels), optodes=where if optodes else ())


def test_fnirs_front_end_from_the_streams_description() -> None:
    spec = load_protocol(ROOT / "protocols" / "fnirs_prefrontal.yaml").inputs["nirs"]
    good = front_end_check("nirs", spec, _nirs_facts(optodes=True), ROOT)
    assert good is not None and good.level == GREEN
    assert "2 long + 1 short pairs at 760/850 nm" in good.reason
    bad = front_end_check("nirs", spec, _nirs_facts(optodes=False), ROOT)
    assert bad is not None and bad.level == RED and "no optode positions" in bad.reason


def test_eeg_inputs_have_no_front_end_line() -> None:
    spec = load_protocol(ROOT / "protocols" / "tbr_adhd.yaml").inputs["eeg"]
    assert front_end_check("eeg", spec, StreamFacts("eeg", 500.0, ("Cz",)), ROOT) is None


def test_meg_projectors_on_channels_the_stream_lacks_are_red() -> None:
    spec = load_protocol(ROOT / "protocols" / "meg_alpha.yaml").inputs["meg"]
    labels = ("MEG 0111", "MEG 0112", "MEG 0113")
    none = front_end_check("meg", spec, StreamFacts("meg", 1000.0, labels, ("mag", "grad", "grad")), ROOT)
    assert none is not None and none.level == GREEN and "no projectors" in none.reason
    foreign = (("empty-room", False, ("MEG 2011", "MEG 2012", "MEG 0111"), (0.7, 0.7, 0.1)),)
    facts = StreamFacts("meg", 1000.0, labels, ("mag", "grad", "grad"), projectors=foreign)
    red = front_end_check("meg", spec, facts, ROOT)
    assert red is not None and red.level == RED and "fewer than 90 %" in red.reason
    fitting = (("empty-room", False, labels, (0.2, 0.7, 0.7)),)
    ok = front_end_check("meg", spec, StreamFacts("meg", 1000.0, labels, ("mag", "grad", "grad"),
                                                  projectors=fitting), ROOT)
    assert ok is not None and ok.level == GREEN
