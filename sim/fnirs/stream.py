"""Stream simulated fNIRS over LSL in real time, as a continuous-wave device would.

Stamping, as sim/stream.py: sample j (j = 0 the first streamed) carries ``first + j / rate`` on the
LSL clock, ``first = t0 + 1 / rate`` with ``t0`` fixed when the outlets open; a chunk of ``chunk``
samples leaves when its last sample is due. The chunk is generated at that moment (not ahead), from
the participant's activity at each sample's own timestamp, so a block marker that arrived before
its samples left takes effect at exactly its time.

Outlets: ``<name>`` (type NIRS, sim/fnirs/stream_info.py) and ``<name>-state`` (type SimState,
irregular, one sample per chunk stamped like the chunk's last sample): the ground truth,

- ``hbo``: the neural HbO change now on the target pairs (micromolar; what a perfect pipeline
  would recover on them, without the systemic part),
- ``amplitude``: the plateau a sustained block would reach now (``gain x neural_hbo_max``, uM),
- ``active``: 1 while a regulation block runs.

The participant listens to the controller's marker stream (rewards, ``block_start:<label>``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pylsl

from sim.fnirs.generator import FnirsGenerator
from sim.fnirs.participant import FnirsParticipant
from sim.fnirs.physiology import UM
from sim.fnirs.stream_info import layout_of_montage, nirs_stream_info
from sim.markers import MarkerListener

STATE_TYPE = "SimState"
STATE_CHANNELS = (("hbo", "uM"), ("amplitude", "uM"), ("active", "bool"))


@dataclass(frozen=True)
class FnirsStats:
    samples: int
    seconds: float  # stream time covered
    markers: int
    rewards: int
    blocks: int
    gain: float
    motion_events: int


def state_stream_info(name: str, source_id: str) -> pylsl.StreamInfo:
    info = pylsl.StreamInfo(name, STATE_TYPE, len(STATE_CHANNELS), pylsl.IRREGULAR_RATE, pylsl.cf_double64,
                            source_id)
    channels = info.desc().append_child("channels")
    for label, unit in STATE_CHANNELS:
        ch = channels.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", unit)
        ch.append_child_value("type", STATE_TYPE)
    return info


class FnirsStreamer:
    """Generator + participant + marker listener + two LSL outlets."""

    def __init__(self, generator: FnirsGenerator, participant: FnirsParticipant, name: str, chunk: int = 1,
                 source_id: str | None = None, marker_stream: str | None = None) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1 sample, got {chunk}")
        self.generator = generator
        self.participant = participant
        self.name = name
        self.chunk = int(chunk)
        g = generator
        self.source_id = source_id or f"neuroreflex-sim:{name}:nirs{g.n_columns}:{g.rate:g}Hz:seed{g.seed}"
        self.state_name = f"{name}-state"
        self.marker_stream = marker_stream
        self.listener: MarkerListener | None = None
        self.outlet: pylsl.StreamOutlet | None = None
        self.state_outlet: pylsl.StreamOutlet | None = None
        self.t0: float | None = None
        self.first: float | None = None
        self.samples = 0

    def lsl_time(self, j: int) -> float:
        """Timestamp of the j-th sample streamed (0-based)."""
        assert self.first is not None, "open() first"
        return self.first + j * (1.0 / self.generator.rate)

    def open(self) -> None:
        if self.outlet is not None:
            return
        g = self.generator
        self.t0 = pylsl.local_clock()
        self.first = self.t0 + 1.0 / g.rate
        info = nirs_stream_info(self.name, self.source_id, g.rate, layout_of_montage(g.montage))
        self._describe_simulation(info.desc())
        self.outlet = pylsl.StreamOutlet(info, self.chunk)
        self.state_outlet = pylsl.StreamOutlet(state_stream_info(self.state_name, self.source_id + ":state"))
        if self.marker_stream:
            p = self.participant
            self.listener = MarkerListener(self.marker_stream, p.reward, on_marker=p.on_marker).start()

    def _describe_simulation(self, desc: pylsl.XMLElement) -> None:
        """desc/simulation: the ground truth a test or report may want (not part of the device format)."""
        g, p = self.generator, self.participant
        node = desc.append_child("simulation")
        for key, value in (("state_stream", self.state_name), ("ppf", f"{g.config.ppf:g}"),
                           ("neural_hbo_max_uM", f"{g.config.neural_hbo_max / UM:g}"),
                           ("hbr_ratio", f"{g.config.hbr_ratio:g}"),
                           ("active_labels", ",".join(p.config.active_labels)),
                           ("first_sample_lsl_time", repr(self.lsl_time(0))),
                           ("sample_interval_s", repr(1.0 / g.rate))):
            node.append_child_value(key, value)
        target = node.append_child("target_pairs")
        for pair, on in zip(g.montage.pairs, g.target, strict=True):
            if on:
                target.append_child_value("pair", pair.name)

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        self.outlet = self.state_outlet = None

    def __enter__(self) -> FnirsStreamer:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        g = self.generator
        n_long = int((~g.montage.short_mask).sum())
        markers = (f"blocks ({', '.join(self.participant.config.active_labels)} active) and rewards from "
                   f"'{self.marker_stream}'" if self.marker_stream else "no marker stream")
        motion = f", motion every ~{1 / (g.motion.p * g.rate):g} s" if g.motion is not None else ""
        return (f"neuroreflex sim: streaming fNIRS '{self.name}' ({g.n_columns} columns: {n_long} long + "
                f"{len(g.montage.pairs) - n_long} short pairs x {'/'.join(map(str, g.montage.wavelengths))} nm "
                f"@ {g.rate:g} Hz, chunks of {self.chunk}{motion}); true neural HbO on '{self.state_name}'; "
                f"{markers}")

    def run(self, duration: float | None = None, stop_event: threading.Event | None = None) -> FnirsStats:
        """Stream until ``duration`` seconds of data were sent or ``stop_event`` is set."""
        self.open()
        assert self.outlet is not None and self.state_outlet is not None and self.first is not None
        stop = stop_event or threading.Event()
        g, p = self.generator, self.participant
        limit = None if duration is None else int(round(duration * g.rate))
        sent = 0
        while not stop.is_set() and (limit is None or sent < limit):
            j0 = self.samples + sent
            stamps = self.first + np.arange(j0, j0 + self.chunk) * (1.0 / g.rate)
            due = float(stamps[-1])
            wait = due - pylsl.local_clock()
            if wait > 0 and stop.wait(wait):
                break
            drive = p.drive(stamps)
            block = g.generate(self.chunk, drive).astype(np.float32)
            self.outlet.push_chunk(block, stamps.tolist())
            self.state_outlet.push_sample(
                [float(g.neural_hbo[-1]) / UM, p.gain * g.config.neural_hbo_max / UM, float(drive[-1] > 0)], due)
            p.forget_before(due)
            sent += self.chunk
        self.samples += sent
        return FnirsStats(samples=sent, seconds=sent / g.rate,
                          markers=self.listener.markers if self.listener else 0, rewards=p.rewards,
                          blocks=p.blocks, gain=p.gain,
                          motion_events=len(g.motion.events) if g.motion is not None else 0)
