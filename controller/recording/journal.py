"""The append-only event journal: one JSON object per line, flushed as it is written.

The journal is the session's record of what was decided and why. It is written by its own
thread from an EventBus subscription, so the loop never waits on the disk, and every line
is flushed (optionally fsync'ed) as soon as it is written: a crash loses at most the line
being written, which ``read_journal`` then reports and skips.

Format (JSON Lines, UTF-8): each line is exactly ``Event.to_dict()``::

    {"kind": "feature", "t": 1234.5, "t_source": 1234.49, "data": {"name": "tbr", ...}}

What ``data`` holds for each kind is defined once, in controller/event_records.py: the emitters
build those records, and ``read_records`` turns the events ``read_journal`` returns back into them.

Non-finite floats are written as the ``NaN`` / ``Infinity`` tokens that Python's ``json``
reads back unchanged (a NaN feature value is a fact worth keeping, not an error).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.clock import now
from controller.event_records import Fault
from controller.events import Event, EventBus, Subscription

log = logging.getLogger(__name__)

JOURNAL_NAME = "journal.jsonl"


class JournalError(ValueError):
    """A journal line (other than a truncated last one) is not a JSON object."""


class TruncatedJournalWarning(UserWarning):
    """The journal's last line is incomplete (the writer stopped mid-line, e.g. a crash)."""


def json_default(obj: Any) -> Any:
    """Make numpy scalars/arrays, paths and sets JSON-serialisable; anything else as str."""
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


def encode_event(event: Event) -> str:
    """One journal line (without the newline) for ``event``."""
    return json.dumps(event.to_dict(), default=json_default, separators=(",", ":"))


class Journal:
    """Writes every event of an EventBus subscription to ``path``, one line each.

    ``start(bus)`` subscribes and starts the writer thread; ``stop()`` unsubscribes, writes
    every event still queued, and closes the file. Events published after ``stop()`` began
    are not journaled, so publish ``session_end`` before stopping.

    If the subscription overflowed (the disk could not keep up), ``stop()`` appends one
    ``fault`` event saying how many events were lost, so the journal never silently hides
    a gap.
    """

    def __init__(self, path: Path | str, *, fsync: bool = False, maxsize: int = 100_000) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.maxsize = maxsize
        self.lines_written = 0
        self.unencodable = 0  # events that could not be encoded (logged, skipped)
        self.error: BaseException | None = None  # the writer's fatal I/O error, if any
        self._bus: EventBus | None = None
        self._sub: Subscription | None = None
        self._file: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    def start(self, bus: EventBus, kinds: set[str] | None = None) -> None:
        """Open the file (append) and start journaling ``bus`` events (all kinds by default)."""
        if self._thread is not None:
            raise RuntimeError(f"journal {self.path} is already started")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115
        self._bus = bus
        self._sub = bus.subscribe(kinds, maxsize=self.maxsize)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"journal:{self.path.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop journaling: write what is queued, record losses, close. Idempotent."""
        thread = self._thread
        if thread is None:
            return
        assert self._bus is not None and self._sub is not None
        self._bus.unsubscribe(self._sub)
        self._stopping.set()
        thread.join(timeout)
        if thread.is_alive():
            # The writer is stuck in I/O; leave it (daemon) rather than hang the caller.
            log.error("journal writer %s did not finish within %.1f s", self.path, timeout)
            return
        self._thread = None
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def dropped(self) -> int:
        """Events lost because the writer fell behind (the subscription overflowed)."""
        return self._sub.dropped if self._sub is not None else 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        sub = self._sub
        assert sub is not None
        try:
            while not self._stopping.is_set():
                event = sub.get(timeout=0.2)  # wakes at once on publish; timeout only bounds stop()
                if event is not None:
                    self._write(event)
            for event in sub.drain():
                self._write(event)
            if sub.dropped:
                self._write(Fault("journal", dropped_events=sub.dropped).event(now()))
        except OSError as exc:  # disk full, file system gone: say so, do not kill the process
            self.error = exc
            if self._bus is not None:
                self._bus.unsubscribe(sub)  # stop queueing for a writer that cannot write
            log.error("journal %s: writing failed after %d lines: %s", self.path, self.lines_written, exc)

    def _write(self, event: Event) -> None:
        try:
            line = encode_event(event)
        except (TypeError, ValueError) as exc:
            self.unencodable += 1
            log.error("journal %s: cannot encode %s event: %s", self.path, event.kind, exc)
            return
        self._file.write(line + "\n")
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
        self.lines_written += 1


def read_journal(
    path: Path | str, *, on_truncated: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Every event of a journal, in order, as dicts.

    A last line without its newline that is not valid JSON is what a crash mid-write
    leaves: it is skipped and reported - a log warning plus a ``TruncatedJournalWarning``,
    or, when given, a call to ``on_truncated(message)`` instead of the warning. Any other
    invalid line raises ``JournalError`` naming the file and line.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if not text:
        return []
    lines = text.split("\n")
    complete = text.endswith("\n")
    if complete:
        lines.pop()  # the empty string after the final newline
    events: list[dict[str, Any]] = []
    last = len(lines) - 1
    for i, line in enumerate(lines):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == last and not complete:
                msg = (
                    f"{path}:{i + 1}: truncated last line ignored ({len(line)} characters, "
                    f"the writer stopped mid-line): {line[:80]!r}"
                )
                log.warning(msg)
                if on_truncated is not None:
                    on_truncated(msg)
                else:
                    warnings.warn(msg, TruncatedJournalWarning, stacklevel=2)
                break
            raise JournalError(f"{path}:{i + 1}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(obj, dict) or "kind" not in obj:
            raise JournalError(f"{path}:{i + 1}: expected an event object with a 'kind', got {line[:80]!r}")
        events.append(obj)
    return events

