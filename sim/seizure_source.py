"""Simulated seizures: evolving rhythmic spike-and-wave discharges that spread from a focus, as ground truth.

Why: a seizure detector (line length, area, half-waves against a long-term trend) is only tested
when the test knows where the seizure is. The one real recording has one onset; this model puts
any number of seizures at chosen times on top of the simulated participant's background, and says
exactly when each began, where, and when each channel was recruited.

The model (deterministic; every quantity is a function of the absolute sample index, so a stream
cut into any blocks gives the same samples and the phase never jumps):

- frequency: ``start_hz`` at onset, slowing exponentially to ``end_hz`` at the scheduled end
  (rhythmic 6-8 Hz at onset evolving to ~3 Hz spike-and-wave, as temporal-lobe and absence-like
  seizures do); the phase is the frequency's exact integral;
- waveform: a sharp surface-negative spike (Gaussian-like, ``spike_ms`` SD, so it is relatively
  broader at the fast start) and 0.3 cycle later a broad negative slow wave of half its height:
  two von Mises bumps on the cycle, normalised to zero mean and unit RMS in closed form (Bessel I0).
  Sharp negative peaks on a positive baseline (skewness -0.9 at 7 Hz to -1.4 at 3 Hz, where a
  sinusoid has 0), the fundamental the strongest harmonic (so the spectral peak is the rhythm's);
- amplitude: RMS ``amplitude`` x the background's 1-30 Hz RMS at the focus channel once developed;
  it starts at ``onset_level`` of that and grows over ``ramp_s``, and fades over the last ``offset_s``;
- spread: a channel at distance d from the focus is recruited ``d / recruit_m_s`` after onset
  (seconds: recruitment), each discharge reaches it ``d / propagation_m_s`` later (tens of ms: it
  stays phase-locked to the focus), with amplitude ``exp(-d / spread_m)``;
- post-ictal suppression: after the end the cerebral background (not the amplifier noise, mains,
  blinks or EMG) is reduced by ``postictal_depth`` x the channel's spread gain, held for half of
  ``postictal_s`` and recovering over the other half.

The EEG generator (sim/eeg.py) adds this source to its own; sim/seizure.py, above both, simulates
whole recordings with seizures and is where users import the seizure vocabulary from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import i0e

from sim.montage import Montage, template_position

SEIZURE_ONSET = "seizure_onset"  # the label the replay uses for the real recording's onset
SEIZURE_OFFSET = "seizure_offset"
BACKGROUND_BAND = (1.0, 30.0)  # the band the amplitude is relative to (and the detectors look at)
FADE_IN_S = 0.25  # the discharge never steps in: it fades in over this long at each channel
WAVE_HEIGHT = 0.5  # the slow wave's peak relative to the spike's
WAVE_AT_CYCLES = 0.3  # its centre after the spike: close enough that the fundamental dominates the spectrum
WAVE_SD_CYCLES = 0.15  # its width
_KAPPA_WAVE = 1.0 / (2.0 * np.pi * WAVE_SD_CYCLES) ** 2  # a von Mises bump's SD is ~1 / (2 pi sqrt(kappa)) cycles
_WAVE_COS, _WAVE_SIN = np.cos(2.0 * np.pi * WAVE_AT_CYCLES), np.sin(2.0 * np.pi * WAVE_AT_CYCLES)

# Named focus areas: the 10-10 site at their centre (the focus is the montage channel nearest it).
AREAS: dict[str, str] = {
    "left-temporal": "T7", "right-temporal": "T8", "left-frontal": "F3", "right-frontal": "F4",
    "frontal": "Fz", "left-central": "C3", "right-central": "C4", "central": "Cz", "parietal": "Pz",
    "left-occipital": "O1", "right-occipital": "O2", "occipital": "Oz",
}  # fmt: skip


@dataclass(frozen=True)
class Seizure:
    """One scheduled seizure: onset and duration in seconds from the first sample of the stream."""

    onset_s: float
    duration_s: float = 60.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.onset_s) and self.onset_s >= 0):
            raise ValueError(f"seizure onset must be >= 0 s, got {self.onset_s}")
        if not (np.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError(f"seizure duration must be > 0 s, got {self.duration_s}")

    @property
    def end_s(self) -> float:
        return self.onset_s + self.duration_s


@dataclass(frozen=True)
class SeizureConfig:
    """Where seizures start, how large they are and how they evolve (times in seconds, distances in metres)."""

    focus: str = "T7"  # a channel label (10-05, old names T3/T4/T5/T6 too) or an area from AREAS
    amplitude: float = 3.0  # developed discharge RMS / background 1-30 Hz RMS at the focus (scalp: 2-5)
    start_hz: float = 7.0  # discharge frequency at onset
    end_hz: float = 3.0  # ... at the scheduled end
    onset_level: float = 0.15  # first discharges at this fraction of the developed amplitude
    ramp_s: float = 5.0  # growth to the developed amplitude
    offset_s: float = 1.5  # fade at the end
    spike_ms: float = 10.0  # SD of the spike (base to base ~40 ms)
    recruit_m_s: float = 0.02  # recruitment speed over the scalp: a channel 4 cm away joins 2 s later
    propagation_m_s: float = 1.0  # each discharge's travel: 4 cm away it arrives 40 ms later
    spread_m: float = 0.05  # amplitude e-folding distance from the focus
    postictal_s: float = 10.0  # background suppression after the end (held half, recovering half)
    postictal_depth: float = 0.6  # fraction of the background removed at the focus

    def __post_init__(self) -> None:
        positive = ("amplitude", "start_hz", "end_hz", "ramp_s", "offset_s", "spike_ms", "recruit_m_s",
                    "propagation_m_s", "spread_m")
        bad = [name for name in positive if not getattr(self, name) > 0]
        if bad:
            raise ValueError(f"seizure parameters must be > 0: {', '.join(f'{n}={getattr(self, n)}' for n in bad)}")
        if not 0 <= self.onset_level <= 1 or not 0 <= self.postictal_depth <= 1 or not self.postictal_s >= 0:
            raise ValueError("seizure onset_level and postictal_depth must be within [0, 1], postictal_s >= 0")
        focus_site(self.focus)  # an unknown name fails here, not when streaming starts


@dataclass(frozen=True)
class SeizureSchedule:
    """Seizures (sorted, not overlapping) and the model they all follow."""

    seizures: tuple[Seizure, ...]
    config: SeizureConfig = field(default_factory=SeizureConfig)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.seizures, key=lambda s: s.onset_s))
        for a, b in zip(ordered, ordered[1:], strict=False):
            if b.onset_s < a.end_s:
                raise ValueError(f"seizures overlap: {a.onset_s:g}-{a.end_s:g} s and {b.onset_s:g}-{b.end_s:g} s")
        object.__setattr__(self, "seizures", ordered)

    def source(self, montage: Montage, rate: float, background_uv: np.ndarray) -> SeizureSource:
        """The streaming source for a cap and rate; ``background_uv``: each channel's 1-30 Hz RMS."""
        return SeizureSource(self, montage, rate, background_uv)


def focus_site(focus: str) -> np.ndarray:
    """Template position of a focus label or area (ValueError naming both kinds when unknown)."""
    label = AREAS.get(focus.lower(), focus)
    try:
        return template_position(label)
    except KeyError:
        raise ValueError(f"unknown seizure focus {focus!r}: give a 10-20/10-10 channel label or one of "
                       f"{', '.join(AREAS)}") from None


def _smooth(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, a half cosine between: steps without corners."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def _spike_kappa(freq: np.ndarray, spike_s: float) -> np.ndarray:
    return 1.0 / (2.0 * np.pi * spike_s * np.asarray(freq, dtype=float)) ** 2


def _cycle_moments(kappa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SD over a cycle of the raw waveform (:func:`_raw_cycle`) for a spike concentration ``kappa``.

    A cycle's mean of exp(k (cos(theta - t1) - 1)) is i0e(k); of a product of two such bumps,
    i0e(R) exp(R - k1 - k2) with R = |k1 e^{i t1} + k2 e^{i t2}|: 2k for a bump with itself.
    """
    kw, h = _KAPPA_WAVE, WAVE_HEIGHT
    mean = -i0e(kappa) - h * i0e(kw)
    r = np.sqrt(kappa**2 + kw**2 + 2.0 * kappa * kw * _WAVE_COS)
    square = i0e(2 * kappa) + h * h * i0e(2 * kw) + 2 * h * i0e(r) * np.exp(r - kappa - kw)
    return mean, np.sqrt(square - mean**2)


def _raw_cycle(phase: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """Spike (at whole cycles) and slow wave, both surface-negative, before normalisation."""
    c, s = np.cos(2.0 * np.pi * phase), np.sin(2.0 * np.pi * phase)
    return -np.exp(kappa * (c - 1.0)) - WAVE_HEIGHT * np.exp(_KAPPA_WAVE * (c * _WAVE_COS + s * _WAVE_SIN - 1.0))


def spike_wave(phase: np.ndarray, freq: np.ndarray, spike_s: float) -> np.ndarray:
    """The spike-and-wave cycle at ``phase`` (cycles; the spike peaks at whole cycles) and ``freq`` (Hz).

    Zero mean and unit RMS over a cycle at every frequency, exactly (see :func:`_cycle_moments`).
    """
    kappa = _spike_kappa(freq, spike_s)
    mean, sd = _cycle_moments(kappa)
    return (_raw_cycle(np.asarray(phase, dtype=float), kappa) - mean) / sd


class SeizureSource:
    """The discharges (microvolts, one column per channel) and the post-ictal background gain, block by block."""

    def __init__(self, schedule: SeizureSchedule, montage: Montage, rate: float, background_uv: np.ndarray) -> None:
        cfg = schedule.config
        if max(cfg.start_hz, cfg.end_hz) > rate / 4:
            raise ValueError(f"seizure frequencies {cfg.start_hz:g}-{cfg.end_hz:g} Hz need a rate above "
                             f"{4 * max(cfg.start_hz, cfg.end_hz):g} Hz, got {rate:g} Hz")
        self.schedule = schedule
        self.config = cfg
        self.rate = float(rate)
        self.labels = montage.labels
        pos = montage.pos3d
        site = focus_site(cfg.focus)
        self.focus_index = int(np.argmin(np.linalg.norm(pos - site, axis=1)))
        self.focus_channel = montage.labels[self.focus_index]
        dist = np.linalg.norm(pos - pos[self.focus_index], axis=1)
        self.distance_m = dist
        self.delay_s = dist / cfg.recruit_m_s  # recruitment after onset
        self.recruit_n = np.round(self.delay_s * rate).astype(np.int64)  # ... in samples: the discharge fades in
        self.lag_s = dist / cfg.propagation_m_s  # each discharge's travel time
        self.gain = np.exp(-dist / cfg.spread_m)
        self.focus_uv = cfg.amplitude * float(np.asarray(background_uv)[self.focus_index])
        fs = self.rate
        self._spans = [(int(round(s.onset_s * fs)), int(round(s.end_s * fs))) for s in schedule.seizures]
        if any(end - onset < 2 for onset, end in self._spans):
            raise ValueError(f"a seizure must last at least 2 samples ({2 / fs:g} s at {fs:g} Hz)")
        # the cycle's mean and SD by frequency, tabulated (interpolation error < 1e-7 of the SD)
        lo, hi = sorted((cfg.start_hz, cfg.end_hz))
        self._f_grid = np.linspace(lo, hi, 1025 if hi > lo else 1)
        self._moments = _cycle_moments(_spike_kappa(self._f_grid, cfg.spike_ms * 1e-3))
        self._offset_n = int(np.ceil(cfg.offset_s * fs))
        self._post_n = int(np.ceil(cfg.postictal_s * fs))
        self._suppresses = cfg.postictal_s > 0 and cfg.postictal_depth > 0
        self._k = 0

    # ---- ground truth ---------------------------------------------------------------
    @property
    def onsets(self) -> np.ndarray:
        """Onset sample of each seizure (the focus's discharge fades in from zero here)."""
        return np.array([a for a, _ in self._spans], dtype=np.int64)

    @property
    def offsets(self) -> np.ndarray:
        """End sample of each seizure (the discharge is zero from here on)."""
        return np.array([b for _, b in self._spans], dtype=np.int64)

    def recruitment(self) -> np.ndarray:
        """(n_seizures, n_channels): the sample each channel's discharge fades in from, -1 if the seizure ends first."""
        onsets, offsets = self.onsets[:, None], self.offsets[:, None]
        joins = onsets + self.recruit_n[None, :]
        return np.where(joins < offsets, joins, -1)

    def frequency_hz(self, seconds: np.ndarray | float, duration_s: float) -> np.ndarray:
        """Discharge frequency at ``seconds`` after onset (at the focus) in a seizure of ``duration_s``."""
        cfg = self.config
        frac = np.clip(np.asarray(seconds, dtype=float) / duration_s, 0.0, 1.0)
        return cfg.start_hz * (cfg.end_hz / cfg.start_hz) ** frac

    def phase_cycles(self, seconds: np.ndarray, duration_s: float) -> np.ndarray:
        """Integral of :meth:`frequency_hz` from onset (cycles); linear before onset and after the end."""
        cfg = self.config
        t = np.asarray(seconds, dtype=float)
        inside = np.clip(t, 0.0, duration_s)
        log_r = np.log(cfg.end_hz / cfg.start_hz)
        if abs(log_r) < 1e-12:
            ramp = cfg.start_hz * inside
        else:
            ramp = cfg.start_hz * duration_s / log_r * np.expm1(log_r * inside / duration_s)
        return ramp + cfg.start_hz * np.minimum(t, 0.0) + cfg.end_hz * np.maximum(t - duration_s, 0.0)

    # ---- streaming --------------------------------------------------------------------
    def _discharge(self, k: np.ndarray, onset: int, end: int) -> np.ndarray:
        cfg = self.config
        fs = self.rate
        duration_s = (end - onset) / fs
        since = ((k - onset) / fs)[:, None]  # seconds since onset, (m, 1)
        travelled = since - self.lag_s[None, :]
        phase = self.phase_cycles(travelled, duration_s)
        freq = self.frequency_hz(travelled, duration_s)
        joined = (k[:, None] - onset - self.recruit_n[None, :]) / fs
        rise = _smooth(joined / FADE_IN_S) * (cfg.onset_level + (1.0 - cfg.onset_level) * _smooth(joined / cfg.ramp_s))
        fall = _smooth(((end - k) / fs) / cfg.offset_s)[:, None]
        mean, sd = (np.interp(freq, self._f_grid, m) for m in self._moments)
        wave = (_raw_cycle(phase, _spike_kappa(freq, cfg.spike_ms * 1e-3)) - mean) / sd
        return wave * rise * fall * (self.focus_uv * self.gain)[None, :]

    def _suppression(self, k: np.ndarray, onset: int, end: int) -> np.ndarray:
        cfg = self.config
        after = (k - end) / self.rate  # seconds after the end, (m,)
        half = cfg.postictal_s / 2.0
        post = _smooth((after + cfg.offset_s) / cfg.offset_s) * (1.0 - _smooth((after - half) / half))
        depth = cfg.postictal_depth * self.gain * (onset + self.recruit_n < end)
        return 1.0 - post[:, None] * depth[None, :]

    def block(self, k0: int, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Samples ``k0 .. k0 + n - 1``: discharges (n, n_ch) in microvolts and background gains (n, n_ch).

        Either is None where no seizure (or its post-ictal period) touches the block.
        """
        k1 = k0 + n
        ictal = gain = None
        n_ch = len(self.labels)
        for onset, end in self._spans:
            lo, hi = max(k0, onset), min(k1, end)
            if lo < hi:
                if ictal is None:
                    ictal = np.zeros((n, n_ch))
                ictal[lo - k0 : hi - k0] += self._discharge(np.arange(lo, hi), onset, end)
            lo, hi = max(k0, end - self._offset_n), min(k1, end + self._post_n)
            if lo < hi and self._suppresses:
                if gain is None:
                    gain = np.ones((n, n_ch))
                gain[lo - k0 : hi - k0] *= self._suppression(np.arange(lo, hi), onset, end)
        return ictal, gain

    def draw(self, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The next ``n`` samples (see :meth:`block`)."""
        out = self.block(self._k, n)
        self._k += n
        return out

    def markers(self) -> list[tuple[int, str]]:
        """(sample, label) of every onset and offset, in sample order: what the marker stream announces."""
        marks = [(a, SEIZURE_ONSET) for a, _ in self._spans] + [(b, SEIZURE_OFFSET) for _, b in self._spans]
        return sorted(marks)
