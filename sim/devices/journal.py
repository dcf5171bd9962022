"""The JSONL journal of a virtual device process (``sim device KIND --log FILE``).

Why: a session report must show when each command reached the "patient" (the virtual
device), in the controller's time base. Every line is one JSON object, written and flushed
as it happens (a crash loses nothing written before it), appended to FILE:

    {"seq": 7, "t": 4410.123456, "wall": 1732240000.123, "device": "magstim",
     "type": "command", "meaning": "set power 50", "hex": "403035302a", "reply": "4009..."}

- ``seq``: 0, 1, 2 ... in the order written (per process);
- ``t``: LSL clock (``pylsl.local_clock()``) when the bytes arrived or the device acted;
  a Rapid² train's pulse and a MagVenture train pulse carry their own (scheduled) time;
- ``wall``: ``time.time()`` when the line was written (only to line up with other logs);
- ``type``: ``start`` (first line; ``info`` holds kind, port, device_path, transport, pid,
  options), ``command`` (a complete command the device parsed: ``meaning`` says what it
  asks for, ``hex`` its bytes as received, ``reply`` the bytes answered or null),
  ``ignored`` (bytes or a command the device dropped or refused to apply, ``meaning`` = why),
  ``event`` (a refusal or a change the device made by itself: "remote control dropped:
  keep-alive missed ...; disarmed", "disarmed: armed and idle ...", "protocol 'tacs' loaded"),
  ``pulse`` (a stimulus delivered: "pulse 50 %"), ``link`` (cable pulled, unplugged, plugged
  in, client connected/dropped), ``control`` (a line received on stdin and its outcome;
  ``info`` holds the acknowledgement), ``stop`` (last line; ``info`` holds counts);
- ``hex``, ``reply``: lower-case hex without separators, or null.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import pylsl

from sim.devices.link import Note

TYPES = ("start", "command", "ignored", "event", "pulse", "link", "control", "stop")


class DeviceJournal:
    """Appends one flushed JSON line per note; thread-safe (device thread, control thread, main)."""

    def __init__(self, path: str | Path, device: str) -> None:
        self.path = Path(path)
        self.device = device
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._seq = 0
        self.counts: dict[str, int] = dict.fromkeys(TYPES, 0)

    def write(self, type_: str, meaning: str, t: float | None = None, data: bytes | None = None,
              reply: bytes | None = None, info: dict[str, Any] | None = None) -> None:
        """One journal line (``t`` defaults to now on the LSL clock)."""
        if type_ not in TYPES:
            raise ValueError(f"journal type {type_!r} is not one of {TYPES}")
        entry: dict[str, Any] = {
            "seq": 0,
            "t": pylsl.local_clock() if t is None else float(t),
            "wall": 0.0,
            "device": self.device,
            "type": type_,
            "meaning": meaning,
            "hex": None if data is None else bytes(data).hex(),
            "reply": None if reply is None else bytes(reply).hex(),
        }
        if info is not None:
            entry["info"] = info
        with self._lock:
            if self._file is None:
                return
            entry["seq"] = self._seq
            entry["wall"] = time.time()
            self._file.write(json.dumps(entry, separators=(", ", ": ")) + "\n")
            self._file.flush()
            self._seq += 1
            self.counts[type_] += 1

    def __call__(self, note: Note) -> None:
        """Observer for :attr:`sim.devices.link.VirtualDevice.observer`."""
        self.write(note.type, note.meaning, note.t, note.data, note.reply)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """All entries of a journal file (a torn last line, from a killed process, is skipped)."""
    entries = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries
