"""Protocol errors: every problem found in one pass, each pinned to FILE:LINE:COL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True, order=True)
class Issue:
    """One problem in a protocol file; line and col are 1-based."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class ProtocolError(Exception):
    """A protocol that cannot be used; ``issues`` lists every problem found, in file order."""

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues: list[Issue] = sorted(set(issues))
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues)
