"""Stream simulated EEG over LSL in real time, as an amplifier would.

Chunks are paced against ``pylsl.local_clock``: chunk k is due at
``t0 + (k + 1) * chunk / rate`` (due times are computed from the start, so there is no
drift), the thread sleeps until then, and the chunk is stamped with the due time of its
last sample. The participant model is stepped with stream time, reads rewards from the
controller's marker stream, and its true theta/beta ratio is published on a second
stream (type ``SimState``) so tests and reports can check the learning.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pylsl

from sim.eeg import EegGenerator
from sim.markers import MarkerListener
from sim.names import DEFAULT_NAME  # re-exported
from sim.participant import DEFAULT_MARKER_STREAM, ParticipantConfig, ParticipantModel

STATE_TYPE = "SimState"
STATE_PERIOD_S = 0.1  # publish the participant state at ~10 Hz
MIN_BLOCK_S = 0.02  # generate at least this much at once (amortises per-call overhead)


@dataclass(frozen=True)
class StreamStats:
    """What a finished run produced."""

    samples: int
    seconds: float  # stream time covered by the samples
    markers: int
    rewards: int
    final_tbr: float
    mean_tbr: float


def eeg_stream_info(name: str, source_id: str, gen: EegGenerator) -> pylsl.StreamInfo:
    """StreamInfo with the XDF channel meta-data (label, unit, type, location in mm)."""
    info = pylsl.StreamInfo(name, "EEG", gen.n_channels, gen.rate, pylsl.cf_float32, source_id)
    desc = info.desc()
    desc.append_child_value("manufacturer", "neuroreflex simulator")
    channels = desc.append_child("channels")
    for label, pos in zip(gen.labels, gen.montage.pos3d, strict=True):
        ch = channels.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "volts")
        ch.append_child_value("type", "EEG")
        loc = ch.append_child("location")
        for axis, value in zip("XYZ", pos * 1000.0, strict=True):
            loc.append_child_value(axis, f"{value:.2f}")
    return info


def state_stream_info(name: str, source_id: str) -> pylsl.StreamInfo:
    """Irregular 1-channel stream carrying the participant's true theta/beta ratio."""
    info = pylsl.StreamInfo(name, STATE_TYPE, 1, pylsl.IRREGULAR_RATE, pylsl.cf_double64, source_id)
    ch = info.desc().append_child("channels").append_child("channel")
    ch.append_child_value("label", "tbr")
    ch.append_child_value("unit", "ratio")
    ch.append_child_value("type", "SimState")
    return info


class EegStreamer:
    """A simulated amplifier: generator + participant + marker listener + two LSL outlets."""

    def __init__(
        self,
        channels: int = 64,
        rate: float = 500.0,
        chunk: int = 10,
        name: str = DEFAULT_NAME,
        source_id: str | None = None,
        line_freq: float = 50.0,
        seed: int = 0,
        learning_rate: float | None = None,
        marker_stream: str | None = DEFAULT_MARKER_STREAM,
        participant: ParticipantModel | None = None,
    ) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1 sample, got {chunk}")
        if participant is None:
            cfg = ParticipantConfig()
            if learning_rate is not None:
                cfg = ParticipantConfig(**{**cfg.__dict__, "learning_rate": learning_rate})
            participant = ParticipantModel(cfg, seed=seed)
        self.participant = participant
        self.generator = EegGenerator(channels, rate, seed=seed, line_freq=line_freq, tbr=participant.tbr)
        self.chunk = int(chunk)
        self.name = name
        self.source_id = source_id or f"neuroreflex-sim:{name}:{self.generator.n_channels}ch:{rate:g}Hz:seed{seed}"
        self.state_name = f"{name}-state"
        self.marker_stream = marker_stream
        self.listener: MarkerListener | None = None
        self.outlet: pylsl.StreamOutlet | None = None
        self.state_outlet: pylsl.StreamOutlet | None = None
        self.samples = 0
        self._buffer = np.empty((0, self.generator.n_channels), dtype=np.float32)
        self._block = max(self.chunk, int(round(MIN_BLOCK_S * self.generator.rate)))

    # ---- lifecycle ------------------------------------------------------------------
    def open(self) -> None:
        """Create the outlets and start listening for rewards."""
        if self.outlet is not None:
            return
        self.outlet = pylsl.StreamOutlet(eeg_stream_info(self.name, self.source_id, self.generator), self.chunk)
        self.state_outlet = pylsl.StreamOutlet(state_stream_info(self.state_name, self.source_id + ":state"))
        if self.marker_stream:
            self.listener = self.participant.listen(self.marker_stream)

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        self.outlet = None  # pylsl outlets are destroyed when released
        self.state_outlet = None

    def __enter__(self) -> EegStreamer:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        g = self.generator
        markers = f"rewards from marker stream '{self.marker_stream}'" if self.marker_stream else "no marker stream"
        return (
            f"neuroreflex sim: streaming EEG '{self.name}' ({g.n_channels} ch @ {g.rate:g} Hz, chunks of {self.chunk}, "
            f"source_id {self.source_id}); participant state on '{self.state_name}'; {markers}"
        )

    # ---- streaming --------------------------------------------------------------------
    def _next_chunk(self) -> np.ndarray:
        """The next ``chunk`` samples (float32), generating a block when the buffer runs short."""
        if len(self._buffer) < self.chunk:
            self.generator.set_tbr(self.participant.tbr)
            fresh = self.generator.generate(self._block).astype(np.float32)
            self._buffer = np.concatenate([self._buffer, fresh]) if len(self._buffer) else fresh
        out, self._buffer = self._buffer[: self.chunk], self._buffer[self.chunk :]
        return np.ascontiguousarray(out)

    def run(self, duration: float | None = None, stop_event: threading.Event | None = None) -> StreamStats:
        """Stream until ``duration`` seconds of data were sent or ``stop_event`` is set."""
        self.open()
        assert self.outlet is not None and self.state_outlet is not None
        stop = stop_event or threading.Event()
        rate = self.generator.rate
        dt_chunk = self.chunk / rate
        limit = None if duration is None else int(round(duration * rate))
        t0 = pylsl.local_clock()
        sent = 0
        last_state = -np.inf
        while not stop.is_set() and (limit is None or sent < limit):
            due = t0 + (sent + self.chunk) / rate
            # generate ahead, push on time: like an amplifier, the samples leave as soon as
            # the last one is "acquired", stamped with that moment
            self.participant.step(dt_chunk)
            block = self._next_chunk()
            wait = due - pylsl.local_clock()
            if wait > 0 and stop.wait(wait):
                break
            self.outlet.push_chunk(block, due)
            sent += self.chunk
            if due - last_state >= STATE_PERIOD_S:
                self.state_outlet.push_sample([self.participant.tbr], due)
                last_state = due
        self.samples += sent
        listener = self.listener
        return StreamStats(
            samples=sent,
            seconds=sent / rate,
            markers=listener.markers if listener else 0,
            rewards=self.participant.rewards,
            final_tbr=self.participant.tbr,
            mean_tbr=self.participant.mean_tbr,
        )


def run_eeg_stream(
    channels: int = 64,
    rate: float = 500.0,
    chunk: int = 10,
    name: str = DEFAULT_NAME,
    source_id: str | None = None,
    line_freq: float = 50.0,
    seed: int = 0,
    learning_rate: float | None = None,
    marker_stream: str | None = DEFAULT_MARKER_STREAM,
    duration: float | None = None,
    stop_event: threading.Event | None = None,
    verbose: bool = True,
) -> StreamStats:
    """Stream simulated EEG over LSL in real time until ``duration`` elapses or ``stop_event`` is set."""
    streamer = EegStreamer(
        channels=channels,
        rate=rate,
        chunk=chunk,
        name=name,
        source_id=source_id,
        line_freq=line_freq,
        seed=seed,
        learning_rate=learning_rate,
        marker_stream=marker_stream,
    )
    with streamer:
        if verbose:
            print(streamer.describe(), flush=True)
        return streamer.run(duration=duration, stop_event=stop_event)
