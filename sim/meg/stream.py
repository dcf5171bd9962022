"""Stream simulated MEG over LSL in real time, as an acquisition computer would.

Stamping as ``sim eeg`` (sim/stream.py): sample j (j = 0 the first streamed) carries
``first + j / rate`` on the LSL clock, ``first = t0 + 1 / rate`` with ``t0`` fixed when the outlets
open (no drift); a chunk leaves when its last sample is due. Samples are generated ahead in blocks of
at least 20 ms (one vectorised call per block) and pushed in ``chunk``-sample pieces. The participant
is stepped with stream time, its rewards come from the controller's marker stream, and its true alpha
amplitude goes out on ``<name>-state`` (stream_info.py documents both streams).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pylsl

from sim.markers import MarkerListener
from sim.meg.generator import MegConfig, MegGenerator
from sim.meg.layout import SensorLayout
from sim.meg.participant import AlphaConfig, AlphaParticipant
from sim.meg.stream_info import meg_stream_info, state_stream_info
from sim.names import DEFAULT_MARKER_STREAM, DEFAULT_MEG_NAME

STATE_PERIOD_S = 0.1  # publish the participant state at ~10 Hz
MIN_BLOCK_S = 0.02  # generate at least this much at once


@dataclass(frozen=True)
class MegStats:
    """What a finished run produced."""

    samples: int
    seconds: float
    markers: int
    rewards: int
    final_gain: float
    mean_gain: float


class MegStreamer:
    """A simulated MEG system: generator + participant + marker listener + two LSL outlets."""

    def __init__(self, layout: SensorLayout, rate: float = 1000.0, chunk: int = 10, name: str = DEFAULT_MEG_NAME,
                 source_id: str | None = None, line_freq: float = 50.0, seed: int = 0,
                 learning_rate: float | None = None, marker_stream: str | None = DEFAULT_MARKER_STREAM,
                 participant: AlphaParticipant | None = None, config: MegConfig | None = None,
                 layout_file: str | Path = "") -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1 sample, got {chunk}")
        if participant is None:
            overrides = {} if learning_rate is None else {"learning_rate": learning_rate}
            participant = AlphaParticipant(AlphaConfig(), seed=seed, **overrides)
        self.participant = participant
        self.generator = MegGenerator(layout, rate, seed=seed, line_freq=line_freq, config=config,
                                      gain=participant.gain)
        self.chunk = int(chunk)
        self.name = name
        self.source_id = source_id or f"neuroreflex-sim-meg:{name}:{layout.n_channels}ch:{rate:g}Hz:seed{seed}"
        self.state_name = f"{name}-state"
        self.layout_file = str(layout_file)
        self.marker_stream = marker_stream
        self.listener: MarkerListener | None = None
        self.outlet: pylsl.StreamOutlet | None = None
        self.state_outlet: pylsl.StreamOutlet | None = None
        self.t0: float | None = None
        self.first: float | None = None
        self.samples = 0
        self._buffer = np.empty((0, layout.n_channels), dtype=np.float32)
        self._block = max(self.chunk, int(round(MIN_BLOCK_S * self.generator.rate)))

    def lsl_time(self, j: int) -> float:
        """Timestamp of the j-th sample streamed (0-based)."""
        assert self.first is not None, "open() first"
        return self.first + j * (1.0 / self.generator.rate)

    def open(self) -> None:
        """Fix t0 (now), create the outlets and start listening for rewards."""
        if self.outlet is not None:
            return
        self.t0 = pylsl.local_clock()
        self.first = self.t0 + 1.0 / self.generator.rate
        info = meg_stream_info(self.name, self.source_id, self.generator.layout, self.generator.rate,
                               self.layout_file)
        self.outlet = pylsl.StreamOutlet(info, self.chunk)
        self.state_outlet = pylsl.StreamOutlet(state_stream_info(self.state_name, self.source_id + ":state"))
        if self.marker_stream:
            self.listener = self.participant.listen(self.marker_stream)

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        self.outlet = None
        self.state_outlet = None

    def __enter__(self) -> MegStreamer:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        g = self.generator
        n_mag, n_grad = len(g.layout.indices("mag")), len(g.layout.indices("grad"))
        markers = f"rewards from marker stream '{self.marker_stream}'" if self.marker_stream else "no marker stream"
        return (f"neuroreflex sim: streaming MEG '{self.name}' ({g.n_channels} ch: {n_mag} mag, {n_grad} grad; "
                f"@ {g.rate:g} Hz, chunks of {self.chunk}, source_id {self.source_id}); true alpha on "
                f"'{self.state_name}'; {markers}")

    def _next_chunk(self) -> np.ndarray:
        if len(self._buffer) < self.chunk:
            self.generator.set_gain(self.participant.gain)
            fresh = self.generator.generate(self._block).astype(np.float32)
            self._buffer = np.concatenate([self._buffer, fresh]) if len(self._buffer) else fresh
        out, self._buffer = self._buffer[: self.chunk], self._buffer[self.chunk :]
        return np.ascontiguousarray(out)

    def run(self, duration: float | None = None, stop_event: threading.Event | None = None) -> MegStats:
        """Stream until ``duration`` seconds of data were sent or ``stop_event`` is set."""
        self.open()
        assert self.outlet is not None and self.state_outlet is not None and self.first is not None
        stop = stop_event or threading.Event()
        rate = self.generator.rate
        dt_chunk = self.chunk / rate
        limit = None if duration is None else int(round(duration * rate))
        sent = 0
        last_state = -np.inf
        while not stop.is_set() and (limit is None or sent < limit):
            j0 = self.samples + sent
            stamps = self.first + np.arange(j0, j0 + self.chunk) * (1.0 / rate)  # lsl_time(j), exactly
            due = float(stamps[-1])
            self.participant.step(dt_chunk)
            block = self._next_chunk()
            wait = due - pylsl.local_clock()
            if wait > 0 and stop.wait(wait):
                break
            self.outlet.push_chunk(block, stamps.tolist())
            sent += self.chunk
            if due - last_state >= STATE_PERIOD_S:
                self.state_outlet.push_sample([self.generator.alpha_rms], due)
                last_state = due
        self.samples += sent
        return MegStats(samples=sent, seconds=sent / rate, markers=self.listener.markers if self.listener else 0,
                        rewards=self.participant.rewards, final_gain=self.participant.gain,
                        mean_gain=self.participant.mean_gain)
