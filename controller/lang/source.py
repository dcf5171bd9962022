"""A YAML document kept together with its nodes, so any value can be traced to LINE:COL.

PyYAML's composer gives every node a start mark; we build the plain data ourselves from
the node tree (SafeLoader rules: no Python objects) while checking for duplicate keys,
and answer "where is this path?" for error messages, down to a character inside a scalar
(e.g. a token inside a rule's condition string).
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable
from typing import Any

import yaml
import yaml.reader
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from controller.lang.errors import Issue

Loc = tuple[Any, ...]

KEY = "[key]"  # a path element meaning "the key node itself, not its value" (pydantic's spelling)
MERGE_TAG = "tag:yaml.org,2002:merge"
SEQ_TAG = "tag:yaml.org,2002:seq"
MAP_TAG = "tag:yaml.org,2002:map"


class Source:
    """One YAML text: its data (``.data``), the problems met while reading it (``.issues``),
    and lookups from a path (tuple of keys / indices) to a 1-based (line, col)."""

    def __init__(self, text: str, filename: str, skip: frozenset[str] = frozenset()) -> None:
        self.text = text
        self.filename = filename
        self.skip = skip  # path elements that are not in the data (pydantic union tags)
        self.issues: list[Issue] = []
        self._line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
        self._constructor = yaml.SafeLoader("")
        self.root: Node | None = None
        self.data: Any = None
        try:
            self.root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or "invalid YAML"
            if exc.context:
                problem = f"{exc.context}: {problem}" if exc.problem else exc.context
            self._add(mark.line + 1 if mark else 1, mark.column + 1 if mark else 1,
                      "YAML syntax error: " + " ".join(problem.split()))
            return
        except yaml.reader.ReaderError as exc:
            line = bisect.bisect_right(self._line_starts, exc.position) - 1
            char = exc.character if isinstance(exc.character, int) else ord(exc.character)
            self._add(line + 1, exc.position - self._line_starts[line] + 1,
                      f"character U+{char:04X} is not allowed in YAML ({exc.reason}); remove it")
            return
        except yaml.YAMLError as exc:
            self._add(1, 1, "YAML error: " + " ".join(str(exc).split()))
            return
        if self.root is not None:
            self.data = self._build(self.root, set())

    # ------------------------------------------------------------------ building data

    def _add(self, line: int, col: int, message: str) -> None:
        self.issues.append(Issue(self.filename, line, col, message))

    def _add_at(self, node: Node, message: str) -> None:
        self._add(node.start_mark.line + 1, node.start_mark.column + 1, message)

    def _build(self, node: Node, active: set[int]) -> Any:
        if isinstance(node, ScalarNode):
            try:
                return self._constructor.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                problem = getattr(exc, "problem", None) or str(exc)
                self._add_at(node, f"cannot read this value: {problem}")
                return None
        if isinstance(node, (SequenceNode, MappingNode)) and node.tag not in (SEQ_TAG, MAP_TAG):
            self._add_at(node, f"unsupported YAML tag {node.tag!r}; protocols use plain mappings, lists and values")
            return None
        if id(node) in active:
            self._add_at(node, "recursive alias: a value cannot contain itself")
            return None
        active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self._build(child, active) for child in node.value]
            if isinstance(node, MappingNode):
                return self._build_mapping(node, active)
        finally:
            active.discard(id(node))
        self._add_at(node, "unsupported YAML node")
        return None

    def _build_mapping(self, node: MappingNode, active: set[int]) -> dict[Hashable, Any]:
        seen: dict[Hashable, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self._build(key_node, active)
            if not isinstance(key, Hashable):
                self._add_at(key_node, "a key must be a plain value (text or number), not a list or mapping")
                continue
            if key in seen:
                first = seen[key].start_mark
                self._add_at(
                    key_node,
                    f"duplicate key {key!r} (first given at line {first.line + 1}, "
                    f"column {first.column + 1}); each key may appear once per mapping",
                )
            else:
                seen[key] = key_node
        try:
            self._constructor.flatten_mapping(node)  # resolve "<<" merge keys
        except yaml.YAMLError as exc:
            self._add_at(node, f"cannot merge mappings: {getattr(exc, 'problem', exc)}")
        out: dict[Hashable, Any] = {}
        for key_node, value_node in node.value:
            key = self._build(key_node, active)
            if not isinstance(key, Hashable):
                continue
            if key in out and seen.get(key) is not key_node:
                continue  # duplicate already reported; keep the first
            out[key] = self._build(value_node, active)
        return out

    # ------------------------------------------------------------------ locating

    def find(self, loc: Loc) -> tuple[Node | None, Node | None, int]:
        """Walk ``loc`` as far as the document allows.

        Returns (node reached, key node that led to it or None, number of path elements
        consumed). A path element equal to ``KEY`` selects the key node just passed.
        """
        node, key_node = self.root, None
        used = 0
        for part in loc:
            if node is None:
                break
            if part == KEY and key_node is not None:
                node = key_node
                used += 1
                break
            if part in self.skip:
                used += 1
                continue
            if isinstance(node, MappingNode):
                hit = None
                for k, v in reversed(node.value):
                    if isinstance(k, ScalarNode) and self._key_value(k) == part:
                        hit = (k, v)
                        break
                if hit is None:
                    break
                key_node, node = hit
            elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                key_node, node = None, node.value[part]
            else:
                break
            used += 1
        return node, key_node, used

    def _key_value(self, key_node: ScalarNode) -> Any:
        try:
            return self._constructor.construct_object(key_node, deep=True)
        except yaml.YAMLError:
            return key_node.value

    def position(self, loc: Loc, *, prefer_key: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the value at ``loc`` (or its key with ``prefer_key``).

        When the path does not exist completely (e.g. a missing key), the deepest existing
        value is used, preferring the key that introduced it, which reads better
        (``band_ratio:`` rather than the ``{`` of its flow mapping).
        """
        node, key_node, used = self.find(loc)
        if (used < len(loc) and isinstance(node, MappingNode)) or prefer_key:
            node = key_node or node
        if node is None:
            return 1, 1
        return node.start_mark.line + 1, node.start_mark.column + 1

    def scalar_position(self, loc: Loc, offset: int) -> tuple[int, int]:
        """1-based (line, col) of character ``offset`` of the string scalar at ``loc``.

        Exact for plain and for quoted/block scalars without escapes; folded line breaks
        are followed. Falls back to the scalar's start when the text cannot be aligned.
        """
        node, _, used = self.find(loc)
        if not isinstance(node, ScalarNode) or used < len(loc):
            return self.position(loc)
        start = (node.start_mark.line + 1, node.start_mark.column + 1)
        index = self._align(node, offset)
        if index is None:
            return start
        line = bisect.bisect_right(self._line_starts, index) - 1
        return line + 1, index - self._line_starts[line] + 1

    def _align(self, node: ScalarNode, offset: int) -> int | None:
        """Source index of value character ``offset`` (or just after the last character)."""
        chars = self._source_chars(node)
        if chars is None:
            return None
        visible = iter([(ch, i, j) for ch, i, j in chars if not ch.isspace()])
        last = None  # source index just after the last matched character
        for k, ch in enumerate(node.value):
            if ch.isspace():
                continue
            got = next(visible, None)
            if got is None or got[0] != ch:
                return None  # the text could not be aligned: caller falls back
            if k >= offset:
                return got[1]
            last = got[2]
        return last

    def _source_chars(self, node: ScalarNode) -> list[tuple[str, int, int]] | None:
        """The scalar's characters as (value char, source start, source end), escapes decoded."""
        text, style = self.text, node.style
        j, end = node.start_mark.index, node.end_mark.index
        if style in ("'", '"'):
            j, end = j + 1, end - 1
        elif style in ("|", ">"):
            newline = text.find("\n", j, end)
            if newline < 0:
                return None
            j = newline + 1
        out: list[tuple[str, int, int]] = []
        while j < end:
            ch = text[j]
            if style == "'" and ch == "'" and text.startswith("''", j):
                out.append(("'", j, j + 2))
                j += 2
            elif style == '"' and ch == "\\" and j + 1 < end:
                code = text[j + 1]
                width = {"x": 2, "u": 4, "U": 8}.get(code)
                if width is not None:
                    try:
                        decoded = chr(int(text[j + 2 : j + 2 + width], 16))
                    except ValueError:
                        return None
                    out.append((decoded, j, j + 2 + width))
                    j += 2 + width
                elif code == "\n":
                    j += 2  # escaped line break: joins lines
                else:
                    out.append((_ESCAPES.get(code, code), j, j + 2))
                    j += 2
            else:
                out.append((ch, j, j + 1))
                j += 1
        return out


_ESCAPES = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
    "r": "\r", "e": "\x1b", " ": " ", "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029",
}
