"""Every bad protocol in tests/data/protocols_bad is refused with exactly the errors its
``# expect: LINE:COL: message`` header lines announce (positions found independently by
searching the file for the offending token when the fixtures were written)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.protocol import ProtocolError, load_protocol, loads_protocol

BAD_DIR = Path(__file__).resolve().parents[2] / "data" / "protocols_bad"
BAD_FILES = sorted(BAD_DIR.glob("*.yaml"))
_EXPECT = re.compile(r"^# expect: (\d+):(\d+): (.+)$")


def expectations(path: Path) -> list[tuple[int, int, str]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _EXPECT.match(line)
        if m:
            out.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return out


def test_fixtures_present() -> None:
    assert len(BAD_FILES) >= 20
    for path in BAD_FILES:
        assert expectations(path), f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.stem)
def test_bad_protocol_reports_expected_errors(path: Path) -> None:
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    issues = info.value.issues
    got = sorted((i.line, i.col, i.message) for i in issues)
    want = expectations(path)
    assert len(got) == len(want), "\n".join(str(i) for i in issues)
    for line, col, message in want:
        matching = [g for g in got if g[0] == line and g[1] == col and message in g[2]]
        assert matching, f"expected {path.name}:{line}:{col}: {message}\ngot:\n" + "\n".join(str(i) for i in issues)
    # str() is one FILE:LINE:COL: message line per issue
    lines = str(info.value).splitlines()
    assert len(lines) == len(issues)
    for text, issue in zip(lines, issues):
        assert text == f"{path}:{issue.line}:{issue.col}: {issue.message}"


def _at(text: str, filename: str = "p.yaml") -> list[str]:
    with pytest.raises(ProtocolError) as info:
        loads_protocol(text, filename)
    return [str(i) for i in info.value.issues]


def test_yaml_syntax_error_has_position() -> None:
    assert _at("protocol: x\ninputs: {eeg: [\n") == [
        "p.yaml:3:1: YAML syntax error: while parsing a flow node: expected the node content, but found '<stream end>'"
    ]


def test_empty_file() -> None:
    (msg,) = _at("# nothing here\n")
    assert msg.startswith("p.yaml:1:1: empty protocol file; expected a mapping with keys protocol, description, inputs")


def test_top_level_not_a_mapping() -> None:
    (msg,) = _at("- protocol: x\n")
    assert msg.startswith("p.yaml:1:1: protocol file: expected a mapping with keys protocol, description, inputs")


def test_missing_top_level_keys_point_at_document_start() -> None:
    msgs = _at("\nprotocol: x\n")
    assert msgs == [
        "p.yaml:2:1: missing required key 'inputs': signal inputs by name, e.g. eeg.",
        "p.yaml:2:1: missing required key 'timeline': blocks in order: {LABEL: DURATION} or {repeat: N, blocks: [...]}.",
    ]
