"""Stream simulated EEG over LSL in real time, as an amplifier would.

Every sample is stamped by rule: sample j (j = 0 the first streamed) carries
``first + j / rate`` on the LSL clock, ``first = t0 + 1 / rate`` with ``t0`` fixed when the
outlets open (so there is no drift); a chunk leaves when its last sample is due, as an
amplifier's would. The participant model is stepped with stream time, reads rewards from the
controller's marker stream, and its true theta/beta ratio is published on a second
stream (type ``SimState``) so tests and reports can check the learning.

Scheduled seizures (sim/seizure_source.py) are announced as ground truth: ``seizure_onset`` and
``seizure_offset`` markers on ``<name>-annotations`` (type Markers, as the replay's), each
stamped with exactly its sample's timestamp, and the schedule in the EEG stream's
desc/seizures (times in seconds, samples, and LSL times by the rule above, 17 digits).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pylsl

from sim.eeg import EegGenerator
from sim.markers import MarkerListener
from sim.names import DEFAULT_NAME  # re-exported
from sim.participant import DEFAULT_MARKER_STREAM, ParticipantConfig, ParticipantModel
from sim.seizure_source import SeizureSchedule

STATE_TYPE = "SimState"
ANNOTATION_TYPE = "Markers"
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
    seizure_markers: int = 0  # onsets/offsets announced


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


def _exact(x: float) -> str:
    return repr(float(x))


def describe_seizures(desc: pylsl.XMLElement, gen: EegGenerator, annotation_stream: str,
                      lsl_time: Callable[[int], float]) -> None:
    """desc/seizures: the model, the timing rule, each seizure's onset/offset and each channel's recruitment."""
    src = gen.seizures
    assert src is not None
    node = desc.append_child("seizures")
    cfg = src.config
    node.append_child_value("annotation_stream", annotation_stream)
    node.append_child_value("focus", cfg.focus)
    node.append_child_value("focus_channel", src.focus_channel)
    model = node.append_child("model")
    for key, value in cfg.__dict__.items():
        model.append_child_value(key, str(value))
    node.append_child_value("first_sample_lsl_time", _exact(lsl_time(0)))
    node.append_child_value("sample_interval_s", _exact(1.0 / gen.rate))
    node.append_child_value("rule", "lsl_time(sample j) = first_sample_lsl_time + j * sample_interval_s "
                                    "(j = 0: the first sample streamed)")
    for seizure, onset, offset in zip(src.schedule.seizures, src.onsets, src.offsets, strict=True):
        item = node.append_child("seizure")
        for key, value in (("onset_s", _exact(seizure.onset_s)), ("duration_s", _exact(seizure.duration_s)),
                           ("onset_sample", str(onset)), ("offset_sample", str(offset)),
                           ("onset_lsl_time", _exact(lsl_time(int(onset)))),
                           ("offset_lsl_time", _exact(lsl_time(int(offset))))):
            item.append_child_value(key, value)
    recruitment = node.append_child("recruitment")
    for label, delay, gain in zip(gen.labels, src.delay_s, src.gain, strict=True):
        ch = recruitment.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("delay_s", f"{delay:.6g}")
        ch.append_child_value("gain", f"{gain:.6g}")


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
        channels: int | Sequence[str] = 64,
        rate: float = 500.0,
        chunk: int = 10,
        name: str = DEFAULT_NAME,
        source_id: str | None = None,
        line_freq: float = 50.0,
        seed: int = 0,
        learning_rate: float | None = None,
        marker_stream: str | None = DEFAULT_MARKER_STREAM,
        participant: ParticipantModel | None = None,
        seizures: SeizureSchedule | None = None,
    ) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1 sample, got {chunk}")
        if participant is None:
            cfg = ParticipantConfig()
            if learning_rate is not None:
                cfg = ParticipantConfig(**{**cfg.__dict__, "learning_rate": learning_rate})
            participant = ParticipantModel(cfg, seed=seed)
        self.participant = participant
        self.generator = EegGenerator(channels, rate, seed=seed, line_freq=line_freq, tbr=participant.tbr,
                                      seizures=seizures)
        self.chunk = int(chunk)
        self.name = name
        self.source_id = source_id or f"neuroreflex-sim:{name}:{self.generator.n_channels}ch:{rate:g}Hz:seed{seed}"
        self.state_name = f"{name}-state"
        self.annotation_name = f"{name}-annotations"
        marks = self.generator.seizures.markers() if self.generator.seizures is not None else []
        self._mark_samples = np.array([k for k, _ in marks], dtype=np.int64)
        self._mark_labels = [label for _, label in marks]
        self.markers_sent = 0
        self.marker_stream = marker_stream
        self.listener: MarkerListener | None = None
        self.outlet: pylsl.StreamOutlet | None = None
        self.state_outlet: pylsl.StreamOutlet | None = None
        self.annotation_outlet: pylsl.StreamOutlet | None = None
        self.t0: float | None = None
        self.first: float | None = None  # stamp of the first sample: t0 + 1 / rate
        self.samples = 0
        self._buffer = np.empty((0, self.generator.n_channels), dtype=np.float32)
        self._block = max(self.chunk, int(round(MIN_BLOCK_S * self.generator.rate)))

    # ---- lifecycle ------------------------------------------------------------------
    def lsl_time(self, j: int) -> float:
        """Timestamp of the j-th sample streamed (0-based); the rule desc/seizures publishes."""
        assert self.first is not None, "open() first"
        return self.first + j * (1.0 / self.generator.rate)

    def open(self) -> None:
        """Fix t0 (now), create the outlets and start listening for rewards."""
        if self.outlet is not None:
            return
        self.t0 = pylsl.local_clock()
        self.first = self.t0 + 1.0 / self.generator.rate
        info = eeg_stream_info(self.name, self.source_id, self.generator)
        if self.generator.seizures is not None:
            describe_seizures(info.desc(), self.generator, self.annotation_name, self.lsl_time)
            marks = pylsl.StreamInfo(self.annotation_name, ANNOTATION_TYPE, 1, pylsl.IRREGULAR_RATE, pylsl.cf_string,
                                     self.source_id + ":annotations")
            marks.desc().append_child_value("eeg_stream", self.name)
            marks.desc().append_child_value("meaning", "seizure onsets and offsets, each stamped with its sample's time")
            self.annotation_outlet = pylsl.StreamOutlet(marks)
        self.outlet = pylsl.StreamOutlet(info, self.chunk)
        self.state_outlet = pylsl.StreamOutlet(state_stream_info(self.state_name, self.source_id + ":state"))
        if self.marker_stream:
            self.listener = self.participant.listen(self.marker_stream)

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        self.outlet = None  # pylsl outlets are destroyed when released
        self.state_outlet = None
        self.annotation_outlet = None

    def __enter__(self) -> EegStreamer:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        g = self.generator
        markers = f"rewards from marker stream '{self.marker_stream}'" if self.marker_stream else "no marker stream"
        text = (
            f"neuroreflex sim: streaming EEG '{self.name}' ({g.n_channels} ch @ {g.rate:g} Hz, chunks of {self.chunk}, "
            f"source_id {self.source_id}); participant state on '{self.state_name}'; {markers}"
        )
        if g.seizures is not None:
            src, cfg = g.seizures, g.seizures.config
            times = ", ".join(f"{s.onset_s:g} s ({s.duration_s:g} s)" for s in src.schedule.seizures)
            text += (f"\nneuroreflex sim: seizures at {times}; focus {src.focus_channel}, {cfg.amplitude:g}x background, "
                     f"{cfg.start_hz:g} -> {cfg.end_hz:g} Hz; onsets/offsets on '{self.annotation_name}'")
        return text

    # ---- streaming --------------------------------------------------------------------
    def _next_chunk(self) -> np.ndarray:
        """The next ``chunk`` samples (float32), generating a block when the buffer runs short."""
        if len(self._buffer) < self.chunk:
            self.generator.set_tbr(self.participant.tbr)
            fresh = self.generator.generate(self._block).astype(np.float32)
            self._buffer = np.concatenate([self._buffer, fresh]) if len(self._buffer) else fresh
        out, self._buffer = self._buffer[: self.chunk], self._buffer[self.chunk :]
        return np.ascontiguousarray(out)

    def _announce(self, j0: int, stamps: np.ndarray) -> None:
        """Seizure markers whose sample is in the chunk just pushed, stamped with that sample's time."""
        if self.annotation_outlet is None:
            return
        lo, hi = np.searchsorted(self._mark_samples, [j0, j0 + len(stamps)])
        for i in range(lo, hi):
            self.annotation_outlet.push_sample([self._mark_labels[i]], float(stamps[self._mark_samples[i] - j0]))
            self.markers_sent += 1

    def run(self, duration: float | None = None, stop_event: threading.Event | None = None) -> StreamStats:
        """Stream until ``duration`` seconds of data were sent or ``stop_event`` is set."""
        self.open()
        assert self.outlet is not None and self.state_outlet is not None
        stop = stop_event or threading.Event()
        rate = self.generator.rate
        dt_chunk = self.chunk / rate
        limit = None if duration is None else int(round(duration * rate))
        sent = 0
        last_state = -np.inf
        while not stop.is_set() and (limit is None or sent < limit):
            j0 = self.samples + sent  # index of the chunk's first sample in the stream
            stamps = self.first + np.arange(j0, j0 + self.chunk) * (1.0 / rate)
            due = float(stamps[-1])
            # generate ahead, push on time: like an amplifier, the samples leave as soon as
            # the last one is "acquired", stamped with that moment
            self.participant.step(dt_chunk)
            block = self._next_chunk()
            wait = due - pylsl.local_clock()
            if wait > 0 and stop.wait(wait):
                break
            self.outlet.push_chunk(block, stamps.tolist())
            self._announce(j0, stamps)
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
            seizure_markers=self.markers_sent,
        )


def run_eeg_stream(
    channels: int | Sequence[str] = 64,
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
    seizures: SeizureSchedule | None = None,
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
        seizures=seizures,
    )
    with streamer:
        if verbose:
            print(streamer.describe(), flush=True)
        return streamer.run(duration=duration, stop_event=stop_event)
