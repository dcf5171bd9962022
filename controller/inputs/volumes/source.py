"""What every volume source shares: the thread, health statuses and acquisition-index bookkeeping.

A source is a thread like controller/inputs/lsl/reader.py's InputReader, built with its sink
(controller/inputs/source.py): it waits for the next volume (inotify/polling, or an LSL pull), reads
it and calls ``sink.on_data`` in its own thread (the hot path: the pipeline runs there before the
next wait). ``sink.on_status(status, detail)`` reports:

- ``connected``: the source is watching/pulling; ``lost``: it died (``.error`` holds why);
- ``stalled``: no volume for ``stall_timeout_s`` since the last one (a scanner not yet started is
  not a stall: the clock starts at the first volume); ``resumed``: the next volume after a stall;
- ``missing``: indices skipped (detail names them); ``out_of_order``: an index below the highest
  seen (delivered, never renumbered); ``duplicate``: an index seen before (dropped);
- ``bad_file`` (folder source): a complete file that is not a usable volume (dropped, named).
"""

from __future__ import annotations

import threading
from typing import Any

from controller.clock import now
from controller.inputs.source import Sink
from controller.inputs.volumes.volume import Volume


def index_ranges(indices: list[int]) -> str:
    """[7, 8, 9, 12] -> '7-9, 12' (how journal lines and errors name volumes)."""
    parts: list[str] = []
    start = prev = indices[0]
    for i in indices[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


class IndexTracker:
    """Checks each acquisition index against those seen: missing, out of order, duplicate."""

    def __init__(self, first_index: int | None = None) -> None:
        self.first_index = first_index
        self.highest: int | None = None
        self.seen: set[int] = set()
        self.missing: set[int] = set()  # reported missing and not (yet) received: volumes, not reports
        self.late: set[int] = set()  # reported missing, then received after all

    def check(self, index: int) -> tuple[bool, list[tuple[str, str]]]:
        """(deliver?, status events) for a new volume with this index."""
        events: list[tuple[str, str]] = []
        if index in self.seen:
            return False, [("duplicate", f"volume {index} received again; dropped")]
        low = self.first_index if self.highest is None else self.highest + 1
        if low is not None and index > low:
            gap = list(range(low, index))
            self.missing.update(gap)
            after = f"after {self.highest}" if self.highest is not None else "as the first volume"
            events.append(("missing", f"volume(s) {index_ranges(gap)} missing (got {index} {after})"))
        elif self.highest is not None and index < self.highest:
            late = " (was reported missing)" if index in self.missing else ""
            events.append(("out_of_order", f"volume {index} arrived after {self.highest}{late}"))
        if index in self.missing:
            self.late.add(index)
        self.missing.discard(index)
        self.seen.add(index)
        self.highest = index if self.highest is None else max(self.highest, index)
        return True, events


class VolumeSource(threading.Thread):
    """Base thread: subclasses implement ``_open``, ``_loop`` (call ``_deliver`` and ``_tick``) and ``_close``."""

    kind = "volumes"

    def __init__(self, input_name: str, sink: Sink[Volume], stall_timeout_s: float = 10.0,
                 first_index: int | None = None) -> None:
        super().__init__(name=f"volumes:{input_name}", daemon=True)
        self.input_name = input_name
        self.sink = sink
        self.stall_timeout_s = float(stall_timeout_s)
        self.error: BaseException | None = None
        self.volumes_received = 0
        self.processed: set[int] = set()  # indices whose on_data returned (the end of a run waits for these)
        self.tracker = IndexTracker(first_index)
        self.tr_s: float | None = None
        self.shape: tuple[int, int, int] | None = None
        self._halt = threading.Event()
        self._opened = threading.Event()
        self._last_volume_t: float | None = None
        self._stalled = False

    # ------------------------------------------------------------ lifecycle
    def open(self, timeout_s: float = 10.0) -> None:
        """Connect before the thread starts (a missing folder/stream fails the session early)."""
        if not self._opened.is_set():
            self._open(timeout_s)
            self._opened.set()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            self.open()
            self.sink.on_status("connected", self._connected_detail())
            self._loop()
        except BaseException as exc:  # surfaced to the session, never swallowed
            self.error = exc
            self.sink.on_status("lost", f"{type(exc).__name__}: {exc}")
        finally:
            self._close()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "where": self._where(), "tr_s": self.tr_s,
                "shape": list(self.shape) if self.shape else None}

    # ------------------------------------------------------------ for subclasses
    def _deliver(self, volume: Volume) -> None:
        """Health bookkeeping, then the hot path."""
        if self._stalled:
            self._stalled = False
            self.sink.on_status("resumed", f"volume {volume.index}")
        self._last_volume_t = volume.arrived
        ok, events = self.tracker.check(volume.index)
        for status, detail in events:
            self.sink.on_status(status, detail)
        if not ok:
            return
        self.volumes_received += 1
        self.sink.on_data(volume)
        self.processed.add(volume.index)

    def _tick(self) -> None:
        """Call when a wait timed out: reports a stall once."""
        last = self._last_volume_t
        if last is not None and not self._stalled and now() - last > self.stall_timeout_s:
            self._stalled = True
            self.sink.on_status("stalled", f"no volume for {now() - last:.1f} s (last: {self.tracker.highest})")

    def _wait_s(self, cap: float = 0.1) -> float:
        return max(0.005, min(cap, self.stall_timeout_s / 4))

    def _open(self, timeout_s: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _loop(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self) -> None:
        pass

    def _where(self) -> str:
        return ""

    def _connected_detail(self) -> str:
        return self._where()
