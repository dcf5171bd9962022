"""Small helpers several test files need (imported by name, like amplifier.py and stim_session_rig.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.recording.journal import read_journal


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.005) -> bool:
    """Bounded polling, never a fixed sleep: True as soon as ``predicate()`` holds, else its last answer
    after ``timeout`` seconds (the timeout only turns a hang into a failure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def session_journal(session_dir: Path) -> list[dict[str, Any]]:
    """Every event of a finished session's journal, read by the controller's own reader."""
    return read_journal(Path(session_dir) / "journal.jsonl")


def session_started(root: Path) -> bool:
    """Whether a session below ``root`` (a session root: one folder a session) has journalled its start."""
    return any("session_start" in j.read_text() for j in Path(root).glob("*/journal.jsonl"))
