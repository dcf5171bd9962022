"""Replay a recording over LSL with timestamps we choose, and its annotations at the exact sample times.

Why not mne-lsl's PlayerLSL: a seizure-detection test must know the LSL time of the onset
sample *as streamed*, and tests of a 327 s recording should not take 327 s. Here every
sample is stamped by rule, so the annotation marker and the stream description can state
that time exactly:

- ``dt = 1 / (rate * speed)``; the j-th sample streamed (j = 0, 1, ...) is file sample
  ``start + j mod n_pass`` (``n_pass = n - start``; no wrap without ``loop``) and carries
  the timestamp ``first + j * dt`` on the LSL clock (``first = t0 + dt``, one double fixed at
  open, so the published rule below reproduces every stamp to the last bit); chunks of ``chunk`` samples leave
  when their last sample is due (as an amplifier's would), so a timestamp never lies in the
  future; ``nominal_srate`` stays the file's rate (at ``speed`` 4 the data arrive 4x faster
  than they were recorded: the DSP, which counts samples, sees the same signal);
- the EEG stream is ``name`` (type EEG, channel labels/units/types in desc/channels);
- annotations go to ``<name>-annotations`` (type Markers, string), each as its label (e.g.
  "seizure_onset") stamped with exactly the timestamp of its sample, once per pass;
- desc/annotations/annotation: label, onset_sample and onset_s (file-relative), source,
  and onset_lsl_time for the first pass (absent when the replay starts after it);
  desc/replay: file, start_sample, start_s, speed, loop, first_sample_lsl_time (= t0 + dt),
  sample_interval_s (= dt), pass_duration_s (= n_pass * dt), annotation_stream, and
  ``rule``: "lsl_time(file sample i, pass p) = first_sample_lsl_time + (i - start_sample
  + p * n_pass) * sample_interval_s". Floats are written with 17 significant digits, so
  they parse back to the very doubles used for the timestamps.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pylsl

from sim.recording import Recording

ANNOTATION_TYPE = "Markers"


@dataclass(frozen=True)
class ReplayStats:
    samples: int  # samples streamed
    passes: int  # passes begun (1 + number of loops)
    markers: int  # annotation markers pushed
    first_sample_lsl_time: float


def _exact(x: float) -> str:
    return repr(float(x))


class ReplayStreamer:
    """Streams a :class:`Recording` in real time (or ``speed`` x faster) with exact timestamps."""

    def __init__(self, recording: Recording, name: str, chunk: int = 10, speed: float = 1.0, start_s: float = 0.0,
                 loop: bool = False, source_id: str | None = None) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1 sample, got {chunk}")
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        rec = recording
        start = int(round(start_s * rec.rate))
        if not 0 <= start < rec.n_samples:
            raise ValueError(f"--start {start_s:g} s is outside the recording (0-{rec.n_samples / rec.rate:g} s)")
        self.recording = rec
        self.name = name
        self.annotation_name = f"{name}-annotations"
        self.chunk = int(chunk)
        self.speed = float(speed)
        self.start = start
        self.loop = loop
        self.n_pass = rec.n_samples - start
        self.dt = 1.0 / (rec.rate * self.speed)
        self.source_id = source_id or f"neuroreflex-replay:{Path(rec.source).name}"
        self.data = np.ascontiguousarray(rec.data, dtype=np.float32)
        # annotations inside the streamed part: offset within a pass -> labels
        self._marks: dict[int, list[str]] = {}
        for a in rec.annotations:
            if a.onset_sample >= start:
                self._marks.setdefault(a.onset_sample - start, []).append(a.label)
        self._mark_offsets = np.array(sorted(self._marks), dtype=np.int64)
        self.t0: float | None = None
        self.first: float | None = None  # stamp of the first sample streamed: t0 + dt
        self.outlet: pylsl.StreamOutlet | None = None
        self.annotation_outlet: pylsl.StreamOutlet | None = None

    # ---------------------------------------------------------------- timing rule
    def lsl_time(self, j: int | np.ndarray) -> float | np.ndarray:
        """Timestamp of the j-th sample streamed (0-based, counting across passes)."""
        assert self.first is not None, "open() first"
        return self.first + np.asarray(j) * self.dt if isinstance(j, np.ndarray) else self.first + j * self.dt

    def onset_lsl_time(self, onset_sample: int, pass_index: int = 0) -> float | None:
        """LSL time of a file sample in a given pass (None when the replay starts after it)."""
        if onset_sample < self.start:
            return None
        return self.lsl_time(onset_sample - self.start + pass_index * self.n_pass)

    # ---------------------------------------------------------------- outlets
    def _stream_info(self) -> pylsl.StreamInfo:
        """The stream's type and channel description (another modality's replay overrides this)."""
        rec = self.recording
        info = pylsl.StreamInfo(self.name, "EEG", len(rec.labels), rec.rate, pylsl.cf_float32, self.source_id)
        desc = info.desc()
        desc.append_child_value("manufacturer", "neuroreflex replay")
        channels = desc.append_child("channels")
        for label, unit, ctype in zip(rec.labels, rec.units, rec.types, strict=True):
            ch = channels.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", unit)
            ch.append_child_value("type", ctype)
        return info

    def _info(self) -> pylsl.StreamInfo:
        rec = self.recording
        info = self._stream_info()
        desc = info.desc()
        notes = desc.append_child("recording")
        notes.append_child_value("file", rec.source)
        notes.append_child_value("samples", str(rec.n_samples))
        notes.append_child_value("rate", _exact(rec.rate))
        for text in rec.notes:
            notes.append_child_value("note", text)
        annotations = desc.append_child("annotations")
        for a in rec.annotations:
            node = annotations.append_child("annotation")
            node.append_child_value("label", a.label)
            node.append_child_value("onset_sample", str(a.onset_sample))
            node.append_child_value("onset_s", _exact(a.onset_sample / rec.rate))
            node.append_child_value("source", a.source)
            t = self.onset_lsl_time(a.onset_sample)
            if t is not None:
                node.append_child_value("onset_lsl_time", _exact(t))
        replay = desc.append_child("replay")
        for key, value in (
            ("file", rec.source), ("start_sample", str(self.start)), ("start_s", _exact(self.start / rec.rate)),
            ("speed", _exact(self.speed)), ("loop", "true" if self.loop else "false"),
            ("first_sample_lsl_time", _exact(self.lsl_time(0))), ("sample_interval_s", _exact(self.dt)),
            ("pass_samples", str(self.n_pass)), ("pass_duration_s", _exact(self.n_pass * self.dt)),
            ("annotation_stream", self.annotation_name),
            ("rule", "lsl_time(file sample i, pass p) = first_sample_lsl_time + "
                     "(i - start_sample + p * pass_samples) * sample_interval_s"),
        ):
            replay.append_child_value(key, value)
        return info

    def _annotation_info(self) -> pylsl.StreamInfo:
        info = pylsl.StreamInfo(self.annotation_name, ANNOTATION_TYPE, 1, pylsl.IRREGULAR_RATE, pylsl.cf_string,
                                self.source_id + ":annotations")
        desc = info.desc()
        desc.append_child_value("eeg_stream", self.name)
        desc.append_child_value("meaning", "file annotations, each stamped with the LSL time of its sample")
        return info

    def open(self) -> None:
        """Fix t0 (now) and create both outlets; the description carries the timing rule."""
        if self.outlet is not None:
            return
        self.t0 = pylsl.local_clock()
        self.first = self.t0 + self.dt
        self.annotation_outlet = pylsl.StreamOutlet(self._annotation_info())
        self.outlet = pylsl.StreamOutlet(self._info(), self.chunk)

    def close(self) -> None:
        self.outlet = self.annotation_outlet = None

    def describe(self) -> str:
        rec = self.recording
        onsets = ", ".join(f"{a.label} at {a.onset_sample / rec.rate:g} s" for a in rec.annotations[:5])
        more = f" (+{len(rec.annotations) - 5} more)" if len(rec.annotations) > 5 else ""
        return (f"neuroreflex sim: replaying {Path(rec.source).name} as '{self.name}' ({len(rec.labels)} ch "
                f"{' '.join(rec.labels[:8])}{' ...' if len(rec.labels) > 8 else ''} @ {rec.rate:g} Hz, chunks of "
                f"{self.chunk}, from {self.start / rec.rate:g} s, speed x{self.speed:g}, "
                f"{'looping' if self.loop else 'once'}); annotations on '{self.annotation_name}'"
                + (f": {onsets}{more}" if onsets else ""))

    # ---------------------------------------------------------------- streaming
    def run(self, duration: float | None = None, stop_event: threading.Event | None = None) -> ReplayStats:
        """Stream until the end (or forever with ``loop``), ``duration`` wall seconds, or ``stop_event``."""
        self.open()
        assert self.outlet is not None and self.annotation_outlet is not None and self.t0 is not None
        stop = stop_event or threading.Event()
        limit = None if duration is None else int(round(duration / self.dt))
        if not self.loop:
            limit = self.n_pass if limit is None else min(limit, self.n_pass)
        sent = markers = 0
        while not stop.is_set() and (limit is None or sent < limit):
            offset = sent % self.n_pass  # position within the pass
            n = min(self.chunk, self.n_pass - offset)
            if limit is not None:
                n = min(n, limit - sent)
            j = np.arange(sent, sent + n)
            stamps = self.lsl_time(j)
            wait = float(stamps[-1]) - pylsl.local_clock()
            if wait > 0 and stop.wait(wait):
                break
            first = self.start + offset
            self.outlet.push_chunk(self.data[first:first + n], stamps.tolist())
            lo, hi = np.searchsorted(self._mark_offsets, [offset, offset + n])
            for mark in self._mark_offsets[lo:hi]:
                stamp = float(stamps[mark - offset])
                for label in self._marks[int(mark)]:
                    self.annotation_outlet.push_sample([label], stamp)
                    markers += 1
            sent += n
        passes = 0 if sent == 0 else (sent - 1) // self.n_pass + 1
        return ReplayStats(sent, passes, markers, float(self.lsl_time(0)))


def run_replay_stream(recording: Recording, name: str, chunk: int = 10, speed: float = 1.0, start_s: float = 0.0,
                      loop: bool = False, source_id: str | None = None, duration: float | None = None,
                      stop_event: threading.Event | None = None, verbose: bool = True) -> ReplayStats:
    """Open, announce, stream, close (see :class:`ReplayStreamer`)."""
    streamer = ReplayStreamer(recording, name, chunk=chunk, speed=speed, start_s=start_s, loop=loop,
                              source_id=source_id)
    streamer.open()
    try:
        if verbose:
            print(streamer.describe(), flush=True)
            for note in recording.notes:
                print(f"neuroreflex sim: {note}", flush=True)
        return streamer.run(duration=duration, stop_event=stop_event)
    finally:
        streamer.close()
