"""Positions inside YAML: columns inside condition strings of every scalar style, duplicate
keys at any depth, merge keys, and the file-level loader behaviour (bytes, hash, encoding)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from controller.lang.source import Source
from controller.protocol import ProtocolError, load_protocol, loads_protocol

PROTOCOL = """\
protocol: p
inputs: {eeg: {stream: {type: EEG}, channels: [Cz]}}
features:
  tbr: {band_ratio: {input: eeg, numerator: [4 Hz, 8 Hz], denominator: [13 Hz, 21 Hz], window: 2 s, every: 100 ms}}
thresholds:
  goal: {fixed: 2.0}
timeline: [{train: 1 min}]
rules:
  - when: WHEN
    do: {feedback: reward}
"""


def errors(when: str) -> list[tuple[int, int, str]]:
    with pytest.raises(ProtocolError) as info:
        loads_protocol(PROTOCOL.replace("WHEN", when))
    return [(i.line, i.col, i.message) for i in info.value.issues]


@pytest.mark.parametrize(
    "when, line, col",
    [
        ("tbr < goal and tbx < 1", 9, 26),  # plain: col of 'when: ' value (11) + offset 15
        ("'tbr < goal and tbx < 1'", 9, 27),  # single-quoted: one more for the quote
        ('"tbr < goal and tbx < 1"', 9, 27),
        ('"tbr < goal and \\x20 tbx < 1"', 9, 32),  # escape: \x20 is one space in the value
        ("|\n      tbr < goal and\n      tbx < 1", 11, 7),  # literal block
        (">-\n      tbr < goal\n        and tbx < 1", 11, 13),  # folded, more-indented line
        ("tbr < goal\n      and tbx < 1", 10, 11),  # plain scalar over two lines
    ],
)
def test_column_inside_condition(when: str, line: int, col: int) -> None:
    got = [(ln, c) for ln, c, msg in errors(when) if "unknown name 'tbx'" in msg]
    assert got == [(line, col)], errors(when)


def test_escaped_whitespace_in_double_quotes() -> None:
    # "\t" is one (white) character in the value but two in the source
    got = [(ln, c) for ln, c, msg in errors('"tbr < goal and\\ttbx < 1"') if "'tbx'" in msg]
    assert got == [(9, 28)]


@pytest.mark.parametrize(
    "yaml_text, offset, position",
    [
        ("k: 'a''b c'\n", 4, (1, 10)),  # value "a'b c": offset 4 is 'c'
        ("k: 'a''b c'\n", 1, (1, 6)),  # the quote, written twice
        ('k: "\\u00e9t\\x41 z"\n', 2, (1, 12)),  # value "étA z": 'A' is the \x41 escape
        ("k: |\n  one\n  two\n", 4, (3, 3)),
        ("k: plain text\n", 99, (1, 14)),  # past the end: just after the last character
        ("k: [not, a, scalar]\n", 0, (1, 4)),
    ],
)
def test_scalar_position(yaml_text: str, offset: int, position: tuple[int, int]) -> None:
    src = Source(yaml_text, "f.yaml")
    assert src.issues == []
    assert src.scalar_position(("k",), offset) == position


def test_duplicate_keys_at_any_depth_are_all_reported() -> None:
    text = "a: 1\nb: {c: 1, c: 2}\na: 3\nd:\n  - {e: 1, e: 1}\n"
    src = Source(text, "f.yaml")
    assert sorted(str(i) for i in src.issues) == [
        "f.yaml:2:11: duplicate key 'c' (first given at line 2, column 5); each key may appear once per mapping",
        "f.yaml:3:1: duplicate key 'a' (first given at line 1, column 1); each key may appear once per mapping",
        "f.yaml:5:12: duplicate key 'e' (first given at line 5, column 6); each key may appear once per mapping",
    ]
    assert src.data == {"a": 1, "b": {"c": 1}, "d": [{"e": 1}]}


def test_merge_keys_and_anchors() -> None:
    text = "base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n"
    src = Source(text, "f.yaml")
    assert src.issues == []
    assert src.data["derived"] == {"x": 1, "y": 3}
    assert src.position(("derived", "y")) == (4, 6)


def test_no_python_objects_from_yaml() -> None:
    text = "protocol: !!python/object/apply:os.system ['echo hi']\n"
    with pytest.raises(ProtocolError) as info:
        loads_protocol(text, "x.yaml")
    assert any(str(i).startswith("x.yaml:1:11: unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'")
               for i in info.value.issues), str(info.value)
    with pytest.raises(ProtocolError) as info:
        loads_protocol("protocol: !!python/name:os.system x\n", "x.yaml")
    assert any(str(i).startswith("x.yaml:1:11: cannot read this value:") for i in info.value.issues), str(info.value)


def test_load_protocol_hashes_the_file_bytes(tmp_path: Path) -> None:
    text = PROTOCOL.replace("WHEN", "tbr < goal")
    path = tmp_path / "p.yaml"
    raw = ("\ufeff" + text).encode("utf-8")  # with a byte-order mark
    path.write_bytes(raw)
    p = load_protocol(path)
    assert p.sha256 == hashlib.sha256(raw).hexdigest()
    assert p.path == str(path)
    assert loads_protocol(text).sha256 == hashlib.sha256(text.encode()).hexdigest()


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("protocol: p\ndescription: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    assert str(info.value) == f"{path}:2:17: the file is not UTF-8 text (byte 0xe9); save it as UTF-8"


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_protocol(tmp_path / "nope.yaml")
