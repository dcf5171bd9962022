"""One thread per input: a blocking pull, then the whole hot path runs in this thread.

No polling interval and no queue hop: ``pull_chunk(min_samples=1)`` wakes as soon as a
sample arrives and drains what else is already there, and the sink's ``on_data`` runs the DSP,
the engine and the outputs before the next pull (controller/inputs/source.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pylsl

from controller.clock import now
from controller.inputs.source import Chunk, Sink

BLOCK_SAMPLE = 16  # chunks looked at to report the amplifier's block size


@dataclass
class OpenedInlet:
    """An inlet opened before its reader exists: the stream's full description (labels, units) is
    checked against the protocol first, and a dead stream fails the session before it starts."""

    info: pylsl.StreamInfo
    inlet: pylsl.StreamInlet
    full_info: pylsl.StreamInfo

    def close(self) -> None:
        """For an inlet no reader will run (a check only, or a session that did not start)."""
        self.inlet.close_stream()


def new_inlet(info: pylsl.StreamInfo) -> pylsl.StreamInlet:
    return pylsl.StreamInlet(info, max_buflen=60, recover=True, processing_flags=pylsl.proc_clocksync)


def open_inlet(name: str, info: pylsl.StreamInfo, timeout_s: float = 10.0) -> OpenedInlet:
    """Open ``info``'s inlet and read its full description (raises RuntimeError if it does not open)."""
    inlet = new_inlet(info)
    try:
        full_info = _open(name, inlet, timeout_s)
    except BaseException:
        inlet.close_stream()
        raise
    return OpenedInlet(info, inlet, full_info)


def _open(name: str, inlet: pylsl.StreamInlet, timeout_s: float) -> pylsl.StreamInfo:
    """Read the stream's full description (labels, units) and open it; RuntimeError on a timeout."""
    try:
        full_info = inlet.info(timeout=timeout_s)
        inlet.open_stream(timeout=timeout_s)
    except pylsl.util.TimeoutError as exc:  # pragma: no cover - depends on network
        raise RuntimeError(f"input {name!r}: stream did not open within {timeout_s:g} s") from exc
    return full_info


class InputReader(threading.Thread):
    """Pulls one LSL stream and reports its health.

    Health rules: no sample for ``stall_timeout_s`` -> "stalled" (once), the first sample
    after -> "resumed" (``last_gap_s`` then holds how much signal time was missed). While
    samples keep flowing, a timestamp jumping forward by more than ``clock_jump_s`` beyond
    what the nominal rate explains is a hiccup: lost samples, up to ``max_gap_s`` of them ->
    "gap" (``last_gap_s`` set); a longer jump, or a timestamp going backwards -> "clock_jump".
    liblsl's inlet recovers a stream that comes back with the same
    source_id by itself; we only have to keep pulling.
    """

    def __init__(
        self,
        name: str,
        stream: pylsl.StreamInfo | OpenedInlet,
        sink: Sink[Chunk],
        stall_timeout_s: float = 1.0,
        clock_jump_s: float = 0.5,
        max_chunk: int = 4096,
        backward_tolerance_s: float = 0.1,
        max_gap_s: float = 2.0,
    ) -> None:
        super().__init__(name=f"input:{name}", daemon=True)
        self.input_name = name
        opened = stream if isinstance(stream, OpenedInlet) else None
        info: pylsl.StreamInfo = stream.info if isinstance(stream, OpenedInlet) else stream
        self.info = info
        self.sink = sink
        self.stall_timeout_s = stall_timeout_s
        self.clock_jump_s = clock_jump_s
        self.max_gap_s = max_gap_s
        self.last_gap_s: float | None = None  # signal time missed in the last gap or stall (< 0: went back)
        # liblsl back-dates the samples of a chunk from its push time: a late push makes the
        # next chunk's first stamps step back a few ms. That is jitter, not a clock jump.
        self.backward_tolerance_s = backward_tolerance_s
        self.max_chunk = max_chunk
        self.srate = info.nominal_srate()
        self.samples_received = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self._inlet = opened.inlet if opened is not None else new_inlet(info)
        self._opened = threading.Event()
        self.full_info: pylsl.StreamInfo = opened.full_info if opened is not None else info
        if opened is not None:
            self._opened.set()
        self.units = None  # controller.protocol.signal_units.InputUnits, once checked
        self.speed = 1.0  # signal seconds per LSL second (desc/replay/speed of a replayed recording)
        # Samples stamped before this LSL time are dropped: the recorder subscribed then, so
        # everything the loop uses is also in the XDF (set it before start()).
        self.start_after: float | None = None
        self.samples_dropped = 0  # before start_after
        self.first_used: float | None = None  # timestamp of the first sample handed on
        self.block_sizes: list[int] = []  # the first chunks' sizes: the amplifier's block, reported once

    def open(self, timeout_s: float = 10.0) -> None:
        """Open the inlet before the thread starts, so a dead stream fails the session early."""
        if not self._opened.is_set():
            self.full_info = _open(self.input_name, self._inlet, timeout_s)
            self._opened.set()

    def stop(self) -> None:
        self._halt.set()

    def _note_block(self, n: int) -> None:
        """After the first chunks: how many samples the amplifier sends at once. Its samples wait that
        long in the device before the controller sees them (the acquisition delay, not the controller's)."""
        self.block_sizes.append(n)
        if len(self.block_sizes) == BLOCK_SAMPLE:
            block = int(np.median(self.block_sizes))
            ms = f", {1000 * block / self.srate:.1f} ms" if self.srate > 0 else ""
            self.sink.on_status("blocks", f"{block} sample(s) per chunk{ms} of acquisition delay")

    def run(self) -> None:
        try:
            self._pull_loop()
        except BaseException as exc:  # surfaced to the session, never swallowed
            self.error = exc
            self.sink.on_status("lost", f"{type(exc).__name__}: {exc}")

    def _check_steps(self, steps: np.ndarray, expected_gap: float) -> None:
        """Say "gap" for lost samples up to ``max_gap_s``, "clock_jump" for time going back or jumping further."""
        back = steps < -max(expected_gap, self.backward_tolerance_s)
        if back.any():
            step = steps[np.argmax(back)]
            self.last_gap_s = float(step)
            self.sink.on_status("clock_jump", f"timestamp moved {step * 1000:+.1f} ms between samples", self.last_gap_s)
            return
        forward = steps > expected_gap + self.clock_jump_s
        if not forward.any():
            return
        step = float(steps[forward].max())
        self.last_gap_s = step - expected_gap
        if self.last_gap_s <= self.max_gap_s:
            self.sink.on_status("gap", f"{self.last_gap_s * 1000:.0f} ms of samples missing "
                                       f"(timestamp moved {step * 1000:+.1f} ms between samples)", self.last_gap_s)
        else:
            self.sink.on_status("clock_jump", f"timestamp moved {step * 1000:+.1f} ms between samples, "
                                              f"more than max_gap {self.max_gap_s:g} s", self.last_gap_s)

    def _pull_loop(self) -> None:
        if not self._opened.is_set():
            self.open()
        inlet = self._inlet
        n_ch = self.info.channel_count()
        dtype = inlet.np_dtype or np.float64
        buffer = np.empty((self.max_chunk, n_ch), dtype=dtype)
        wait_s = min(0.1, self.stall_timeout_s / 4)
        last_arrival = now()
        last_ts: float | None = None
        stalled = False
        expected_gap = 1.0 / self.srate if self.srate > 0 else 0.0
        self.sink.on_status("connected", f"{self.info.name()} ({n_ch} ch, {self.srate:g} Hz)")
        while not self._halt.is_set():
            data, ts = inlet.pull_chunk(
                timeout=wait_s, max_samples=self.max_chunk, dest_obj=buffer, min_samples=1, as_numpy=True
            )
            t = now()
            n = len(ts)
            if n == 0:
                if not stalled and t - last_arrival > self.stall_timeout_s:
                    stalled = True
                    self.sink.on_status("stalled", f"no samples for {t - last_arrival:.2f} s")
                continue
            last_arrival = t
            if stalled:
                stalled = False
                self.last_gap_s = None if last_ts is None else float(ts[0] - last_ts - expected_gap)
                missed = "" if self.last_gap_s is None else f", {self.last_gap_s:+.3f} s of signal time missed"
                self.sink.on_status("resumed", f"{n} samples{missed}", self.last_gap_s)
                last_ts = None  # a gap across a stall is expected, not a clock jump
            self._check_steps(np.diff(ts, prepend=ts[0] if last_ts is None else last_ts), expected_gap)
            last_ts = ts[-1]
            if self.first_used is None and self.start_after is not None:
                keep = int(np.searchsorted(ts, self.start_after, side="left"))  # stamps rise within a chunk
                self.samples_dropped += keep
                if keep == n:
                    continue
                data, ts, n = data[keep:], ts[keep:], n - keep
            if self.first_used is None:
                self.first_used = float(ts[0])
            self.samples_received += n
            self.sink.on_data(Chunk(data, ts, t))
            if len(self.block_sizes) < BLOCK_SAMPLE:
                self._note_block(n)
        self._inlet.close_stream()
