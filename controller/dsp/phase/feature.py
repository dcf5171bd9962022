"""The ``phase`` feature kind: a phase-locked pulse trigger inside the feature pipeline.

At each due sample it catches up on the conditioned channels it reads (a single channel or a
small Laplacian), runs the method's causal filter, asks the phase method for the next
target-phase crossing and lets a ``PhaseTrigger`` decide whether to commit to it now. Its value
is 1.0 at the evaluation that commits (with ``at`` = the predicted crossing, LSL time) and 0.0
otherwise, so a rule ``mu > 0.5`` fires once per planned pulse.

Gating: phase is meaningless without a clear rhythm, so a pulse also needs the method's
amplitude estimate to pass an absolute floor (``amplitude_min``) and/or a causal running
percentile of the method's own previous estimates (``amplitude_q`` over ``amplitude_over_s``:
no pulse until that history exists).

ETP needs a model: it is fitted online on the first ``train_s`` of the spatially filtered
signal (if the fit fails, e.g. too few cycles, on the next ``train_s``, and so on). The causal
filter then runs over the training segment from its start, so the state is what it would have
been had the filter run all along; values are 0.0 until then. The fit takes a few
milliseconds, once.
"""

from __future__ import annotations

import math
from typing import TypedDict

import numpy as np

from controller.dsp.features import ChannelSource
from controller.dsp.filters import StreamingSOS
from controller.dsp.phase.ar import ArPhase
from controller.dsp.phase.etp import EtpModel, EtpPhase, fit_etp
from controller.dsp.phase.naive import HilbertPhase
from controller.dsp.phase.tracker import PhaseEstimate, PhaseMethod
from controller.dsp.phase.trigger import PhaseTrigger
from controller.dsp.ring import RingBuffer
from controller.dsp.schedule import to_samples
from controller.lang.compiled import Band, FeatureSpec, PhaseParams


def spatial_weights(params: PhaseParams) -> np.ndarray:
    """Coefficients over ``(center, *neighbours)``: 1 for the centre, -1/n for each neighbour."""
    n = len(params.neighbours)
    return np.concatenate([[1.0], np.full(n, -1.0 / n)]) if n else np.ones(1)


class _MethodArgs(TypedDict):
    """What every phase method takes from the feature's declaration."""

    window_s: float
    delay_s: float
    target_phase: float


def make_method(spec: FeatureSpec, fs: float, model: EtpModel | None = None) -> PhaseMethod:
    """The phase method of ``spec`` at ``fs`` (ValueError when it cannot run there).

    ``etp`` needs ``model``; without one a placeholder (period of the band centre) is used,
    which is enough to check the window.
    """
    p: PhaseParams = spec.params
    band: Band = spec.band  # type: ignore[assignment]
    common: _MethodArgs = {"window_s": spec.window_s, "delay_s": p.delay_s, "target_phase": p.target_rad}
    if p.method == "ar":
        return ArPhase(fs, band, **common)
    if p.method == "hilbert":
        return HilbertPhase(fs, band, **common)
    if p.method == "etp":
        if model is None:
            model = EtpModel(2.0 / (band.lo_hz + band.hi_hz), 0.0, math.pi, 0)
        return EtpPhase(fs, model, band, **common)
    raise ValueError(f"feature {spec.name!r}: unknown phase method {p.method!r} (ar, etp or hilbert)")


def gate_length(spec: FeatureSpec, fs: float) -> int:
    """Previous estimates the running amplitude percentile is taken over."""
    hop_s = to_samples(spec.every_s, fs) / fs
    return int(round(spec.params.amplitude_over_s / hop_s))


class AmplitudeGate:
    """Causal running percentile of previous amplitude estimates (NaN until ``length`` exist)."""

    __slots__ = ("q", "length", "_ring")

    def __init__(self, q: float, length: int) -> None:
        if not 0.0 <= q <= 100.0 or length < 1:
            raise ValueError(f"amplitude gate: need 0 <= q <= 100 ({q}) and a history of >= 1 estimate ({length})")
        self.q = float(q)
        self.length = length
        self._ring = RingBuffer(1, length)

    def reset(self) -> None:
        self._ring.reset()

    def threshold(self) -> float:
        if self._ring.count < self.length:
            return math.nan
        return float(np.percentile(self._ring.latest(self.length)[0], self.q))

    def add(self, amplitude: float) -> None:
        """Remember an estimate; a failed one (NaN) counts as no rhythm (0)."""
        self._ring.write(np.array([[amplitude if math.isfinite(amplitude) else 0.0]]))


class PhaseFeature:
    """Evaluator of a ``phase`` FeatureSpec; call with the due sample's LSL time and index.

    ``source`` gives the conditioned ``(center, *neighbours)`` rows; its ring must hold
    ``max(window, every)`` samples, as every sample is consumed once between evaluations.
    """

    timed = True  # the pipeline calls it with (time, index) and gets (value, at)

    def __init__(self, source: ChannelSource, spec: FeatureSpec, fs: float, every: int) -> None:
        p: PhaseParams = spec.params
        self.spec = spec
        self.fs = float(fs)
        self._p = p
        self._source = source
        self._weights = spatial_weights(p)
        self._window = to_samples(spec.window_s, fs)
        self._etp = p.method == "etp"
        self._n_train = 0
        if self._etp:
            if p.train_s is None:  # the protocol's check requires it; a spec built in code may lack it
                raise ValueError(f"feature {spec.name!r}: etp needs train_s, the signal its model is fitted on")
            self._n_train = to_samples(p.train_s, fs)
        if self._etp and self._n_train < self._window:
            raise ValueError(f"feature {spec.name!r}: etp training ({p.train_s} s) is shorter than the window")
        self._train = np.empty(self._n_train)
        self._gate = AmplitudeGate(p.amplitude_q, gate_length(spec, fs)) if p.amplitude_q is not None else None
        self._trigger = PhaseTrigger(
            min_interval_s=p.min_interval_s, hop_s=every / self.fs, device_delay_s=p.delay_s
        )
        self._ring = RingBuffer(1, self._window)
        self.failed_fits = 0  # etp: training segments the model could not be fitted on
        self.model: EtpModel | None = None
        self.reset()
        if self._etp:
            make_method(spec, fs)  # fail now, not after training, if the window cannot work at fs

    def reset(self) -> None:
        """Start over (new stream): filter, rings, gate history, trigger, and an etp model."""
        self._method = None if self._etp else make_method(self.spec, self.fs)
        sos = None if self._method is None else self._method.causal_sos
        self._filter = None if sos is None else StreamingSOS(sos, 1)
        self._ring.reset()
        self._trained = 0
        self._seen = 0
        self.model = None
        if self._gate is not None:
            self._gate.reset()
        self._trigger.reset()

    # ------------------------------------------------------------------ signal

    def _consume(self) -> None:
        ring = self._source.ring
        count = ring.count
        if count <= self._seen:  # the ring was reset under us: a new stream
            self.reset()
        new = count - self._seen
        if new > ring.capacity:
            raise ValueError(
                f"phase feature {self.spec.name!r} missed samples: {new} arrived since the last evaluation "
                f"but the ring holds {ring.capacity}"
            )
        self._seen = count
        y = self._weights @ self._source.window(new)
        if self._method is None:
            y = self._collect(y)
        if y.size:
            self._write(y.reshape(1, -1))

    def _write(self, y: np.ndarray) -> None:
        if self._filter is not None:
            self._filter.process_(y)
        self._ring.write(y)

    def _collect(self, y: np.ndarray) -> np.ndarray:
        """etp: take training samples; fit when there are enough; return what follows the segment."""
        while self._method is None:
            take = min(y.size, self._n_train - self._trained)
            self._train[self._trained : self._trained + take] = y[:take]
            self._trained += take
            y = y[take:]
            if self._trained < self._n_train:
                return y
            try:
                self.model = fit_etp(self._train, self.fs, self.spec.band)  # type: ignore[arg-type]
            except ValueError:
                self.failed_fits += 1
                self._trained = 0
                continue
            self._method = make_method(self.spec, self.fs, self.model)
            sos = self._method.causal_sos
            assert sos is not None, "an etp method band-passes"  # EtpPhase.causal_sos is always an array
            self._filter = StreamingSOS(sos, 1)
            self._write(self._train.copy().reshape(1, -1))  # the filter runs from the segment's start
        return y

    # ------------------------------------------------------------------ evaluation

    def __call__(self, t: float, k: int) -> tuple[float, float | None]:
        """(1.0, pulse time) when a pulse is committed at this evaluation, else (0.0, None)."""
        self._consume()
        method = self._method
        if method is None or self._ring.count < self._window:
            return 0.0, None
        phase, amp, freq, ahead = method(self._ring.latest(self._window)[0])
        p = self._p
        ok = p.amplitude_min is None or amp >= p.amplitude_min
        if self._gate is not None:
            ok = ok and amp >= self._gate.threshold()  # NaN (history forming) -> False
            self._gate.add(amp)
        if not ok:
            return 0.0, None
        at = self._trigger.decide(PhaseEstimate(phase, amp, freq, t + method.delay_s, t + ahead, t, k))
        return (0.0, None) if at is None else (1.0, at)
