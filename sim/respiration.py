"""A respiration belt: breathing waveform with its true phase, streamed over LSL in real time.

Why: respiration-gated stimulation (stimulate only while the participant breathes out)
needs a belt signal whose phase is known exactly, so a test can check that every pulse
fell in an exhalation.

The waveform, one breath at a time (a thoracic belt's stretch: it rises on inhalation):
- breath period drawn around ``60 / breaths_per_min`` s with breath-to-breath variability
  (log-normal, AR(1) so runs of slower or faster breaths occur), kept within
  ``period_limits_s`` (default 3-5 s = 12-20 breaths/min);
- inhalation is the shorter part, ``inhale_fraction`` of the breath (I:E about 1:1.5), a
  half-cosine rise from the resting level to the breath's amplitude (varies per breath);
- exhalation is passive and longer: a fall over ``fall_fraction`` of it, fast at first and
  slowing down (a half-cosine on a time axis warped by ``fall_shape``), then an end-expiratory
  pause at the resting level;
- plus a slow baseline wander (belt slip, posture) and a little sensor noise.

The true phase is ``inhale`` from the first sample of a rise to the sample before the peak,
``exhale`` from the peak to the sample before the next rise (the pause included). The
streamer publishes each change as a marker stamped with the LSL time of that first sample.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pylsl
from scipy import signal

from sim.names import DEFAULT_RESP_NAME

RESP_TYPE = "RESP"
PHASE_TYPE = "Markers"
INHALE, EXHALE = "inhale", "exhale"


@dataclass(frozen=True)
class BreathingConfig:
    """Breathing parameters (times in seconds, amplitudes in belt units)."""

    breaths_per_min: float = 15.0
    period_cv: float = 0.12  # breath-to-breath SD of log(period)
    period_ar: float = 0.5  # correlation of successive breath periods
    period_limits_s: tuple[float, float] = (3.0, 5.0)  # 20 to 12 breaths/min
    inhale_fraction: float = 0.4  # inhalation time / breath time (I:E = 1:1.5)
    inhale_fraction_sd: float = 0.03
    amplitude: float = 1.0  # belt units (arbitrary)
    amplitude_cv: float = 0.12
    fall_fraction: float = 0.8  # part of exhalation spent falling; the rest is the end-expiratory pause
    fall_shape: float = 0.65  # < 1: passive recoil, a fast fall that slows down (1 = symmetric half-cosine)
    wander_sd: float = 0.05  # slow baseline wander (belt units)
    wander_tau_s: float = 20.0
    noise_sd: float = 0.004  # sensor noise, low-passed at 5 Hz


class BreathingGenerator:
    """Streaming belt signal: :meth:`generate` returns the next samples and the phase changes in them."""

    def __init__(self, rate: float = 50.0, seed: int = 0, config: BreathingConfig | None = None) -> None:
        cfg = config or BreathingConfig()
        lo, hi = cfg.period_limits_s
        if not 0 < lo <= 60 / cfg.breaths_per_min <= hi:
            raise ValueError(f"{cfg.breaths_per_min:g} breaths/min is outside the period limits {lo:g}-{hi:g} s")
        if not 0.2 <= cfg.inhale_fraction < 0.5:
            raise ValueError(f"inhale_fraction must be in [0.2, 0.5): inhalation is the shorter part, "
                             f"got {cfg.inhale_fraction}")
        if rate < 10.0:
            raise ValueError(f"respiration rate must be >= 10 Hz, got {rate:g} Hz")
        self.rate = float(rate)
        self.config = cfg
        # one generator per part, so the output does not depend on how the stream is cut into blocks
        breath, wander, noise = np.random.SeedSequence([seed, 0xB2EA7]).spawn(3)
        self._rng = np.random.default_rng(breath)
        self._wander_rng = np.random.default_rng(wander)
        self._noise_rng = np.random.default_rng(noise)
        self._log_period_dev = 0.0  # AR(1) state of log(period) around its mean
        self._wave = np.empty(0)  # generated, not yet emitted
        self._changes: list[tuple[int, str]] = []  # (absolute sample, phase) not yet emitted
        self._generated = 0  # samples generated so far (absolute index of the next breath's first sample)
        self.emitted = 0  # samples emitted so far
        wander_a = np.exp(-1.0 / (cfg.wander_tau_s * rate))
        self._wander = (wander_a, cfg.wander_sd * np.sqrt(1 - wander_a**2), 0.0)
        self._noise_sos = signal.butter(2, min(5.0, 0.4 * rate), fs=rate, output="sos")
        self._noise_zi = np.zeros((self._noise_sos.shape[0], 2))
        self.breaths = 0
        self.phase = INHALE  # the phase of the last emitted sample

    def _breath(self) -> None:
        """Append one breath (inhale then exhale) to the pending waveform."""
        cfg, rng, fs = self.config, self._rng, self.rate
        ar = cfg.period_ar
        self._log_period_dev = ar * self._log_period_dev + np.sqrt(1 - ar**2) * cfg.period_cv * rng.standard_normal()
        period = float(np.clip(60.0 / cfg.breaths_per_min * np.exp(self._log_period_dev), *cfg.period_limits_s))
        frac = float(np.clip(cfg.inhale_fraction + cfg.inhale_fraction_sd * rng.standard_normal(), 0.3, 0.45))
        amp = cfg.amplitude * float(np.exp(cfg.amplitude_cv * rng.standard_normal()))
        n = int(round(period * fs))
        n_in = max(2, int(round(frac * n)))
        n_out = n - n_in
        n_fall = max(2, int(round(cfg.fall_fraction * n_out)))
        rise = amp * 0.5 * (1 - np.cos(np.pi * np.arange(n_in) / n_in))  # 0 -> just below amp, increasing
        k = np.minimum(np.arange(n_out) / n_fall, 1.0) ** cfg.fall_shape
        fall = amp * 0.5 * (1 + np.cos(np.pi * k))  # amp (the peak) -> 0, fast then slow, then the pause
        self._changes += [(self._generated, INHALE), (self._generated + n_in, EXHALE)]
        self._wave = np.concatenate([self._wave, rise, fall])
        self._generated += n
        self.breaths += 1

    def _slow_wander(self, n: int) -> np.ndarray:
        a, sd, state = self._wander
        drive = sd * self._wander_rng.standard_normal(n)
        out, zf = signal.lfilter([1.0], [1.0, -a], drive, zi=[a * state])
        self._wander = (a, sd, float(out[-1]) if n else state)
        return out

    def generate(self, n: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Next ``n`` samples (float64) and the phase changes among them as (offset in block, phase)."""
        if n < 0:
            raise ValueError(f"block size must be >= 0, got {n}")
        while len(self._wave) < n:
            self._breath()
        clean, self._wave = self._wave[:n], self._wave[n:]
        white = self.config.noise_sd * self._noise_rng.standard_normal(n)
        noise, self._noise_zi = signal.sosfilt(self._noise_sos, white, zi=self._noise_zi)
        start = self.emitted
        changes = [(i - start, p) for i, p in self._changes if start <= i < start + n]
        self._changes = [(i, p) for i, p in self._changes if i >= start + n]
        self.emitted += n
        if changes:
            self.phase = changes[-1][1]
        return clean + self._slow_wander(n) + noise, changes


def resp_stream_info(name: str, source_id: str, gen: BreathingGenerator) -> pylsl.StreamInfo:
    """1-channel belt stream, type RESP, channel label "Resp" (arbitrary belt units)."""
    info = pylsl.StreamInfo(name, RESP_TYPE, 1, gen.rate, pylsl.cf_float32, source_id)
    desc = info.desc()
    desc.append_child_value("manufacturer", "neuroreflex simulator")
    ch = desc.append_child("channels").append_child("channel")
    ch.append_child_value("label", "Resp")
    ch.append_child_value("unit", "a.u.")
    ch.append_child_value("type", "RESP")
    model = desc.append_child("breathing")
    cfg = gen.config
    model.append_child_value("breaths_per_min", f"{cfg.breaths_per_min:g}")
    model.append_child_value("inhale_fraction", f"{cfg.inhale_fraction:g}")
    model.append_child_value("rises_on", INHALE)
    model.append_child_value("phase_stream", f"{name}-phase")
    return info


def phase_stream_info(name: str, source_id: str) -> pylsl.StreamInfo:
    """Irregular string markers "inhale" / "exhale", stamped with the first sample of each phase."""
    info = pylsl.StreamInfo(name, PHASE_TYPE, 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, source_id)
    info.desc().append_child_value("meaning", "true respiration phase from this sample on: inhale | exhale")
    return info


class RespStreamer:
    """Streams the belt signal in real time (sample k stamped ``t0 + (k + 1) / rate``) and its phase markers."""

    def __init__(self, name: str = DEFAULT_RESP_NAME, rate: float = 50.0, seed: int = 0,
                 config: BreathingConfig | None = None, chunk: int = 1, source_id: str | None = None) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1 sample, got {chunk}")
        self.generator = BreathingGenerator(rate, seed, config)
        self.name = name
        self.phase_name = f"{name}-phase"
        self.chunk = int(chunk)
        self.source_id = source_id or f"neuroreflex-sim:{name}:resp:{rate:g}Hz:seed{seed}"
        self.outlet: pylsl.StreamOutlet | None = None
        self.phase_outlet: pylsl.StreamOutlet | None = None
        self.samples = 0
        self.markers = 0

    def open(self) -> None:
        if self.outlet is None:
            self.outlet = pylsl.StreamOutlet(resp_stream_info(self.name, self.source_id, self.generator), self.chunk)
            self.phase_outlet = pylsl.StreamOutlet(phase_stream_info(self.phase_name, self.source_id + ":phase"))

    def close(self) -> None:
        self.outlet = self.phase_outlet = None

    def describe(self) -> str:
        cfg = self.generator.config
        return (f"neuroreflex sim: streaming respiration '{self.name}' (RESP, 1 ch 'Resp' @ "
                f"{self.generator.rate:g} Hz, "
                f"~{cfg.breaths_per_min:g} breaths/min); true phase markers on '{self.phase_name}'")

    def run(self, duration: float | None = None, stop_event: threading.Event | None = None) -> int:
        """Stream until ``duration`` seconds of signal were sent or ``stop_event`` is set; returns samples sent."""
        self.open()
        assert self.outlet is not None and self.phase_outlet is not None
        stop = stop_event or threading.Event()
        rate = self.generator.rate
        limit = None if duration is None else int(round(duration * rate))
        t0 = pylsl.local_clock()
        sent = 0
        while not stop.is_set() and (limit is None or sent < limit):
            n = self.chunk if limit is None else min(self.chunk, limit - sent)
            block, changes = self.generator.generate(n)
            stamps = t0 + (sent + 1 + np.arange(n)) / rate
            wait = stamps[-1] - pylsl.local_clock()
            if wait > 0 and stop.wait(wait):
                break
            self.outlet.push_chunk(block.astype(np.float32).reshape(n, 1), stamps.tolist())
            for offset, phase in changes:
                self.phase_outlet.push_sample([phase], float(stamps[offset]))
                self.markers += 1
            sent += n
        self.samples += sent
        return sent

    def start_thread(self, stop_event: threading.Event, duration: float | None = None) -> threading.Thread:
        """Stream in a background thread (next to the EEG streamer) until ``stop_event``."""
        self.open()
        thread = threading.Thread(target=self.run, args=(duration, stop_event), name=f"resp:{self.name}", daemon=True)
        thread.start()
        return thread


def phase_at(marker_times: np.ndarray | list[float], marker_phases: list[str], t: float | np.ndarray) -> np.ndarray:
    """The true phase at time(s) ``t`` from the phase markers (the last marker at or before ``t``).

    For checking gated stimulation: ``phase_at(times, phases, pulse_times) == "exhale"``.
    Times before the first marker get "" (unknown).
    """
    times = np.asarray(marker_times, dtype=float)
    if times.size and np.any(np.diff(times) < 0):
        raise ValueError("phase marker times must be in increasing order")
    labels = np.asarray([""] + list(marker_phases), dtype=object)
    return labels[np.searchsorted(times, np.atleast_1d(np.asarray(t, dtype=float)), side="right")]
