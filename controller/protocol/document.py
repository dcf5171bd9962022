"""What the protocol's part-checkers (fMRI, stimulation) see of the whole document being checked.

``Semantics`` checks a protocol as a whole and hands itself to ``FmriChecks`` and ``StimChecks``; they
see it through this ``Document`` protocol (its salvaged sections, what is known, how to report an
error), so they need not import ``Semantics`` and the checks form no import cycle.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, Protocol

from controller.lang.source import Loc, Source


class Document(Protocol):
    """A protocol document under check: salvaged sections, and one way to report an issue."""

    src: Source
    data: dict[str, Any]
    inputs: dict[str, Any]
    features: dict[str, Any]
    thresholds: dict[str, Any]
    raw_inputs: set[str]
    raw_features: set[str]
    raw_thresholds: set[str]
    raw_labels: set[str]
    known: dict[str, bool]
    blocks: list[Any]
    timeline_complete: bool

    def error(self, loc: Loc, message: str, *, key: bool = False) -> None: ...

    def error_in(self, loc: Loc, offset: int, message: str) -> None: ...

    def check_compare(self, loc: Loc, site: Any) -> None: ...

    def section_ok(self, section: str, kind: type) -> bool: ...

    def section_names(self, section: str) -> set[str]: ...

    def valid_entries(self, section: str) -> dict[str, Any]: ...

    def valid_list(self, section: str) -> tuple[list[tuple[int, Any]], bool]: ...


def unknown(kind: str, name: str, valid: Iterable[str]) -> str:
    """``unknown feature 'tbx' (did you mean 'tbr'?); features: tbr, emg``."""
    valid = sorted(valid)
    msg = f"unknown {kind} {name!r}"
    close = difflib.get_close_matches(name, valid, n=1)
    if close:
        msg += f" (did you mean {close[0]!r}?)"
    return msg + f"; {kind}s: {', '.join(valid) if valid else 'none defined'}"
