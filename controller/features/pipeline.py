"""The streaming feature pipeline of one input: chunk in, feature values out, state kept.

Per chunk: pick + re-reference + high-pass/notch the channels any feature needs, run the
band-pass (and low-pass) stages that features read, append everything to preallocated ring
buffers, and compute exactly the windows that fall due inside the chunk. When no window is
due that is all the work there is. What a feature reads, how much of it is kept and how it is
evaluated is its kind's business (``controller.features.registry``); the pipeline only plans
the shared filter stages and rings and keeps the schedule.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import numpy as np

from controller.dsp.design import bandpass_sos, conditioning_sos
from controller.dsp.features import ChannelSource, FeatureValue
from controller.dsp.filters import Conditioner, StreamingSOS
from controller.dsp.front_end import FrontEnd
from controller.dsp.labels import resolve_channels
from controller.dsp.reference import reference_columns
from controller.dsp.ring import RingBuffer
from controller.dsp.schedule import WindowSchedule, feature_window
from controller.dsp.slope import lowpass_sos
from controller.lang.compiled import Band, FeatureSpec, InputSpec

from .blocks import BlockClock
from .kind import FilterKey, Lowpass
from .registry import kind

_NEVER = sys.maxsize


class _BandStage:
    """A band-passed (or low-passed) copy of some conditioned rows, kept in its own ring."""

    __slots__ = ("key", "rows", "filter", "ring")

    def __init__(self, fs: float, key: Band | Lowpass, rows: list[int], capacity: int, what: str) -> None:
        self.key = key
        self.rows = np.asarray(rows, dtype=np.intp)
        sos = lowpass_sos(fs, key.hz, what=what) if isinstance(key, Lowpass) else bandpass_sos(fs, key, what=what)
        self.filter = StreamingSOS(sos, len(rows))
        self.ring = RingBuffer(len(rows), capacity)

    def process(self, conditioned: np.ndarray) -> np.ndarray:
        return self.filter.process_(conditioned.take(self.rows, axis=0))


class _Scheduled:
    __slots__ = ("name", "schedule", "evaluate", "timed")

    def __init__(self, name: str, schedule: WindowSchedule, evaluate) -> None:
        self.name = name
        self.schedule = schedule
        self.evaluate = evaluate
        self.timed = getattr(evaluate, "timed", False)  # called with (time, index) -> (value, at)


class FeaturePipeline:
    """Online features of ONE input; feed it chunks in arrival order with ``push``."""

    def __init__(
        self,
        fs: float,
        stream_labels: Sequence[str],
        input_spec: InputSpec,
        features: Sequence[FeatureSpec],
        *,
        channel_types: Sequence[str] | None = None,
        scale: np.ndarray | None = None,
        front_end: FrontEnd | None = None,
    ) -> None:
        """``channel_types``: each stream channel's type (for ``{average: all EEG}``); ``scale``: each
        stream channel's factor to SI (controller.inputs.channel_units), applied before anything else;
        ``front_end``: turns the (scaled) stream columns into the channels features read (fNIRS:
        haemoglobin per pair; MEG: projected sensors); features then name its labels."""
        if not (math.isfinite(fs) and fs > 0):
            raise ValueError(f"input {input_spec.name!r}: sampling rate must be a positive number, got {fs}")
        self.fs = float(fs)
        self.input = input_spec
        labels = [str(s) for s in stream_labels]
        self.stream_labels = tuple(labels)
        self._n_stream = len(labels)
        where = f"input {input_spec.name!r}"
        self.blocks = BlockClock()  # the session points it at its timeline (kinds relative to a block read it)
        self._front = front_end
        # the stream columns' factor to SI, applied before the front end (none when every factor is 1)
        self._scale = (None if scale is None or front_end is None or np.all(np.asarray(scale) == 1.0)
                       else np.asarray(scale, dtype=np.float64))
        if front_end is not None:  # features name the front end's channels; the stream's are its business
            labels = list(front_end.labels)
            channel_types = front_end.types
            scale = None

        allowed = None
        if input_spec.channels and front_end is None:
            allowed = set(resolve_channels(input_spec.channels, labels, where=f"stream of {where}").tolist())

        # Which stream columns each feature averages over; the union is what gets conditioned.
        needed: list[int] = []
        feature_cols: list[list[int]] = []
        for spec in features:
            if spec.input != input_spec.name:
                raise ValueError(f"feature {spec.name!r} reads input {spec.input!r}, not {input_spec.name!r}")
            if not spec.channels and not labels:
                raise ValueError(f"feature {spec.name!r} names no channels")
            cols = resolve_channels(spec.channels or labels, labels, where=f"stream of {where} (feature {spec.name!r})")
            if allowed is not None:
                for label, col in zip(spec.channels, cols.tolist()):
                    if col not in allowed:
                        raise ValueError(
                            f"feature {spec.name!r}: channel {label!r} is not among the channels of {where} "
                            f"({', '.join(input_spec.channels)})"
                        )
            rows = []
            for col in cols.tolist():
                if col not in needed:
                    needed.append(col)
                rows.append(needed.index(col))
            feature_cols.append(rows)
        self.channels = tuple(labels[c] for c in needed)  # stream labels, in conditioned-row order

        ref = reference_columns(input_spec, labels, channel_types)
        if ref is not None and ref.size == len(labels) and np.array_equal(ref, np.arange(len(labels))):
            ref = "average"  # every column: a plain row mean, no gather
        self._conditioner = Conditioner(len(labels), needed, ref, conditioning_sos(self.fs, input_spec), scale)

        self._specs = tuple(features)
        self._features = self._build_features(features, feature_cols)
        self._count = 0
        self._next_due = self._earliest_due()

    # ------------------------------------------------------------------ construction

    def _build_features(self, specs: Sequence[FeatureSpec], feature_rows: list[list[int]]) -> list[_Scheduled]:
        fs = self.fs
        windows = [feature_window(spec, fs) for spec in specs]

        # First pass: what each feature reads (conditioned rows, or rows of a band stage).
        cond_capacity = 0
        stage_plan: dict[FilterKey, dict] = {}
        needs: list[list[FilterKey]] = []
        kinds = [kind(spec.kind) for spec in specs]
        for k, spec, rows, (window, every) in zip(kinds, specs, feature_rows, windows):
            k.check_spec(spec, fs)
            bands = list(k.reads(spec))
            capacity = k.ring_capacity(spec, window, every)
            for band in bands:
                if band is None:
                    cond_capacity = max(cond_capacity, capacity)
                    continue
                plan = stage_plan.setdefault(band, {"band": band, "rows": [], "cap": 0, "by": spec.name})
                plan["cap"] = max(plan["cap"], capacity)
                plan["rows"].extend(r for r in rows if r not in plan["rows"])
            needs.append(bands)

        self._cond_ring = RingBuffer(self._conditioner.n_channels, cond_capacity) if cond_capacity else None
        self._stages = [
            _BandStage(fs, p["band"], p["rows"], p["cap"],
                       what=f"{'lowpass' if isinstance(p['band'], Lowpass) else 'band'} of feature {p['by']!r}")
            for p in stage_plan.values()
        ]
        stage_by_key = {s.key: s for s in self._stages}

        def source(band: FilterKey, rows: list[int]) -> ChannelSource:
            if band is None:
                return ChannelSource(self._cond_ring, np.asarray(rows, dtype=np.intp))
            stage = stage_by_key[band]
            where = stage.rows.tolist()
            return ChannelSource(stage.ring, np.asarray([where.index(r) for r in rows], dtype=np.intp))

        # Second pass: evaluators.
        scheduled = []
        for k, spec, rows, (window, every), bands in zip(kinds, specs, feature_rows, windows, needs):
            evaluate = k.evaluator(spec, [source(b, rows) for b in bands], fs, window, every)
            bind = getattr(evaluate, "bind_blocks", None)
            if bind is not None:  # relative to a block of the timeline (e.g. the change from the last rest)
                bind(self.blocks)
            scheduled.append(_Scheduled(spec.name, WindowSchedule(window, every), evaluate))
        return scheduled

    # ------------------------------------------------------------------ streaming

    @property
    def sample_count(self) -> int:
        """Samples received since construction or the last reset."""
        return self._count

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self._features)

    def reset(self) -> None:
        """Start over as if no sample had been seen (after a stream reconnect)."""
        if self._front is not None:
            self._front.reset()
        self._conditioner.reset()
        if self._cond_ring is not None:
            self._cond_ring.reset()
        for stage in self._stages:
            stage.filter.reset()
            stage.ring.reset()
        for f in self._features:
            f.schedule.reset()
            reset = getattr(f.evaluate, "reset", None)
            if reset is not None:  # evaluators with state: trends, half-wave trackers, phase triggers
                reset()
        self._count = 0
        self._next_due = self._earliest_due()

    def restart_windows(self) -> None:
        """After a short gap (lost samples): no window may span it, so every feature's next window
        holds only samples from here on; filters and long-term state (trends, their warm-up) carry
        on, so a detector is back one window after the gap instead of a whole trend later."""
        for f in self._features:
            f.schedule.restart(self._count)
        self._next_due = self._earliest_due()

    @property
    def warmup_s(self) -> float:
        """Longest history a feature needs before it has a value (trends): what a reset costs."""
        return max((kind(s.kind).warmup_s(s) for s in self._specs), default=0.0)

    def push(self, chunk: np.ndarray, timestamps: np.ndarray, arrival: float | None = None) -> list[FeatureValue]:
        """Feed ``chunk`` ``(n_samples, n_stream_channels)`` with its LSL ``timestamps`` (and the LSL
        time it arrived, carried on each value: the controller's delay counts from there).

        Returns the feature values that fell due inside the chunk, in sample order (ties in
        feature order).
        """
        x = np.asarray(chunk, dtype=np.float64)
        n = x.shape[0] if x.ndim else 0
        if n == 0:
            return []
        if x.ndim != 2 or x.shape[1] != self._n_stream:
            raise ValueError(
                f"input {self.input.name!r}: chunk must have shape (n_samples, {self._n_stream}), got {x.shape}"
            )
        if len(timestamps) != n:
            raise ValueError(f"input {self.input.name!r}: {n} samples but {len(timestamps)} timestamps")

        if self._front is not None:
            x = self._front.process(x if self._scale is None else x * self._scale)
        conditioned = self._conditioner.process(x)
        outputs = [stage.process(conditioned) for stage in self._stages]
        start = self._count
        end = start + n
        self._count = end
        if end <= self._next_due:  # nothing due in this chunk: just remember the samples
            if self._cond_ring is not None:
                self._cond_ring.write(conditioned)
            for stage, data in zip(self._stages, outputs):
                stage.ring.write(data)
            return []
        return self._emit(conditioned, outputs, timestamps, start, end, arrival)

    def _emit(self, conditioned, outputs, timestamps, start: int, end: int, arrival: float | None) -> list[FeatureValue]:
        due = []
        for i, f in enumerate(self._features):
            due.extend((k, i) for k in f.schedule.take_due(end))
        due.sort()
        values = []
        written = 0  # samples of this chunk already in the rings
        for k, i in due:
            upto = k - start + 1
            if upto > written:
                self._write(conditioned, outputs, written, upto)
                written = upto
            f = self._features[i]
            t = float(timestamps[k - start])
            if f.timed:
                value, at = f.evaluate(t, k)
                values.append(FeatureValue(f.name, value, t, k, at, arrival=arrival))
            else:
                values.append(FeatureValue(f.name, f.evaluate(), t, k, arrival=arrival))
        if written < end - start:
            self._write(conditioned, outputs, written, end - start)
        self._next_due = self._earliest_due()
        return values

    def _write(self, conditioned: np.ndarray, outputs: list[np.ndarray], a: int, b: int) -> None:
        if self._cond_ring is not None:
            self._cond_ring.write(conditioned[:, a:b])
        for stage, data in zip(self._stages, outputs):
            stage.ring.write(data[:, a:b])

    def _earliest_due(self) -> int:
        return min((f.schedule.next_due for f in self._features), default=_NEVER)
