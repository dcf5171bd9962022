"""Streaming phase estimation for phase-triggered stimulation (e.g. TMS at the mu-alpha trough).

``PhaseTracker`` is the hot-path object: chunk in (all stream channels), spatial filter to one
signal, optional causal band-pass, ring buffer, and at every due sample one call of a phase
method on the newest window. A method answers, from the past only:

- the phase (rad, cosine convention: 0 = peak, +-pi = trough) at ``now + delay_s``, where
  ``now`` is the newest sample and ``delay_s`` the known system delay;
- the instantaneous amplitude (signal units) and frequency (Hz);
- the time until the next crossing of its target phase, no earlier than ``now + delay_s``.

The tracker turns those into LSL times using the newest sample's timestamp, so a trigger can be
scheduled ahead (send at ``next_target_time - device_delay``). Evaluation samples are counted
like the feature pipeline's windows (``WindowSchedule``), so results do not depend on chunking.

Methods: ``ArPhase`` (autoregressive forward prediction, phase_ar), ``EtpPhase`` (educated
temporal prediction, phase_etp), ``HilbertPhase`` (naive causal baseline, phase_naive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from controller.dsp.filters import StreamingSOS
from controller.dsp.laplacian import Laplacian
from controller.dsp.ring import RingBuffer
from controller.dsp.schedule import WindowSchedule, to_samples


@dataclass(frozen=True, slots=True)
class PhaseEstimate:
    """One phase estimate, stamped like a feature value with the newest sample it used."""

    phase: float  # rad in [-pi, pi) at at_time; 0 = peak, -pi = trough
    amplitude: float  # instantaneous amplitude, signal units
    frequency_hz: float  # instantaneous frequency the method extrapolates with
    at_time: float  # LSL time the phase refers to: source_time + the method's delay_s
    next_target_time: float  # LSL time of the next target-phase crossing >= at_time; NaN if none predicted
    source_time: float  # LSL timestamp of the newest sample used
    sample_index: int  # index of that sample since the tracker started


class PhaseMethod(Protocol):
    """What ``PhaseTracker`` needs from a phase method (ArPhase, EtpPhase, HilbertPhase)."""

    # read-only members (properties), so a method may hold them as plain attributes of narrower types
    # (ArPhase's causal_sos is always None, EtpPhase's always an array)
    @property
    def window(self) -> int: ...  # samples read per evaluation
    @property
    def delay_s(self) -> float: ...  # the phase is for now + delay_s; crossings are searched from there on
    @property
    def target_phase(self) -> float: ...  # rad
    @property
    def causal_sos(self) -> np.ndarray | None: ...  # band-pass the tracker applies causally before the ring, or None

    def __call__(self, x: np.ndarray) -> tuple[float, float, float, float]:
        """Newest ``window`` samples (1-D, oldest first) ->
        (phase at now + delay_s, amplitude, frequency Hz, seconds from now to the next target crossing or NaN)."""
        ...


class PhaseTracker:
    """Phase of one spatially filtered signal, evaluated every ``every_s`` while chunks stream in."""

    __slots__ = ("fs", "spatial", "method", "every", "_schedule", "_filter", "_ring", "_count", "_n_stream")

    def __init__(
        self, fs: float, n_stream_channels: int, spatial: Laplacian, method: PhaseMethod, *, every_s: float
    ) -> None:
        """``every_s``: evaluation interval, rounded to whole samples (``1 / fs`` = every sample)."""
        if not (math.isfinite(fs) and fs > 0):
            raise ValueError(f"phase tracker: sampling rate must be a positive number, got {fs}")
        every = to_samples(every_s, fs)
        if every < 1:
            raise ValueError(f"phase tracker: every {every_s} s is {every} samples at fs={fs} Hz; need at least 1")
        if int(spatial.columns.max()) >= n_stream_channels:
            raise ValueError(
                f"phase tracker: the spatial filter reads column {int(spatial.columns.max())} "
                f"but the stream has {n_stream_channels} channels"
            )
        self.fs = float(fs)
        self.spatial = spatial
        self.method = method
        self.every = every
        self._n_stream = n_stream_channels
        self._schedule = WindowSchedule(method.window, every)
        self._filter = None if method.causal_sos is None else StreamingSOS(method.causal_sos, 1)
        self._ring = RingBuffer(1, method.window)
        self._count = 0

    @property
    def sample_count(self) -> int:
        return self._count

    def reset(self) -> None:
        """Start over as if no sample had been seen (after a stream reconnect)."""
        if self._filter is not None:
            self._filter.reset()
        self._ring.reset()
        self._schedule.reset()
        self._count = 0

    def push(self, chunk: np.ndarray, timestamps: np.ndarray) -> list[PhaseEstimate]:
        """Feed ``chunk`` ``(n_samples, n_stream_channels)`` with its LSL ``timestamps``; estimates due inside it."""
        x = np.asarray(chunk, dtype=np.float64)
        n = x.shape[0] if x.ndim else 0
        if n == 0:
            return []
        if x.ndim != 2 or x.shape[1] != self._n_stream:
            raise ValueError(f"phase tracker: chunk must have shape (n_samples, {self._n_stream}), got {x.shape}")
        if len(timestamps) != n:
            raise ValueError(f"phase tracker: {n} samples but {len(timestamps)} timestamps")
        y = self.spatial.apply(x).reshape(1, n)
        if self._filter is not None:
            self._filter.process_(y)
        start = self._count
        self._count = start + n
        due = self._schedule.take_due(start + n)
        if not due:
            self._ring.write(y)
            return []
        method, delay = self.method, self.method.delay_s
        out = []
        written = 0
        for k in due:
            upto = k - start + 1
            self._ring.write(y[:, written:upto])
            written = upto
            phase, amp, freq, ahead = method(self._ring.latest(method.window)[0])
            t = float(timestamps[upto - 1])
            out.append(PhaseEstimate(phase, amp, freq, t + delay, t + ahead, t, k))
        self._ring.write(y[:, written:])
        return out
