"""Phase by educated temporal prediction (ETP; after Shirinpour et al. 2020, J Neural Eng 17:046002).

Training (offline, on a resting segment): learn the mean cycle period of the rhythm (zero-phase
band-pass + Hilbert of the training segment). Because the online causal filter delays the
rhythm, a causally detected peak is not at true phase 0; when learning offsets we also band-pass
the training segment causally, exactly as online, and learn the mean true phase at its detected
peaks and at its detected troughs (the "educated" correction of the filter lag).

Online: find the newest peak or trough in the causally filtered window (sub-sample, by a
parabola through three samples) and advance its learned phase at the learned rate:
``phase(t) = phase_at_extremum + 2 pi (t - t_extremum) / period``. Cheap: no fit, no transform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage, signal  # type: ignore[import-untyped]  # scipy: no type stubs installed

from controller.dsp.circular import circ_mean
from controller.dsp.design import check_band
from controller.dsp.phase.truth import TruePhase
from controller.dsp.schedule import to_samples
from controller.lang.compiled import Band

TWO_PI = 2.0 * math.pi
NAN4 = (math.nan, math.nan, math.nan, math.nan)
SEPARATION = 0.25  # an extremum must be the extreme sample within +- this many learned periods
SETTLE_S = 1.0  # training skips this much at the start, where the causal filter still rings up
# Butterworth order per band edge of the causal filter. Low, so that its phase lag varies little
# across the band: a sharp filter's lag swings by well over 100 deg between 9 and 12 Hz, which no
# single learned offset can correct. On the bench recordings (fit on 0-10 s, scored on 10-20 s)
# order 1 gave a circular SD of 33 / 27 deg, order 2 47 / 29 deg, order 4 79 / 42 deg (eegmat /
# eegmmidb). A broad filter lets more noise ripple through; SEPARATION discards those ripples.
ETP_ORDER = 1


def etp_sos(fs: float, band: Band, order: int = ETP_ORDER) -> np.ndarray:
    """The causal band-pass ETP trains and runs with."""
    check_band(band, fs, what="ETP band", open_interval=True)
    sos: NDArray[np.float64] = signal.butter(order, [band.lo_hz, band.hi_hz], btype="bandpass", fs=fs, output="sos")
    return sos


def extrema(x: np.ndarray, half_width: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(peak positions, peak values, trough positions, trough values), sub-sample by parabolic interpolation.

    With ``half_width`` > 0 a peak (trough) must also be the largest (smallest) sample within
    +-``half_width`` samples, so ripples riding on a flank of the rhythm do not count.
    """
    d = np.diff(x)
    peaks = np.flatnonzero((d[:-1] > 0) & (d[1:] <= 0)) + 1
    troughs = np.flatnonzero((d[:-1] < 0) & (d[1:] >= 0)) + 1
    if half_width > 0:
        size = 2 * half_width + 1
        peaks = peaks[x[peaks] >= ndimage.maximum_filter1d(x, size, mode="nearest")[peaks]]
        troughs = troughs[x[troughs] <= ndimage.minimum_filter1d(x, size, mode="nearest")[troughs]]
    return (*_refine(x, peaks), *_refine(x, troughs))


def _refine(x: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b, c = x[i - 1], x[i], x[i + 1]
    den = a - 2.0 * b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(den != 0.0, 0.5 * (a - c) / den, 0.0)
    return i + delta, b - 0.25 * (a - c) * delta


@dataclass(frozen=True)
class EtpModel:
    """What ETP learns from a training segment."""

    period_s: float  # mean cycle period of the (zero-phase) band-passed training signal
    peak_phase: float  # rad: true phase at a causally detected peak (0 when offsets are not learned)
    trough_phase: float  # rad: true phase at a causally detected trough (pi when not learned)
    n_cycles: int  # whole cycles the period was averaged over


def fit_etp(
    x: np.ndarray,
    fs: float,
    band: Band = Band(8.0, 13.0),
    *,
    learn_offsets: bool = True,
    order: int = ETP_ORDER,
    separation: float = SEPARATION,
) -> EtpModel:
    """Learn an ``EtpModel`` from ``x``, the spatially filtered training signal (1-D, raw, several seconds).

    The period is the mean cycle length of the zero-phase band-passed training signal (its total
    phase advance over the segment; counting intervals between extrema of a causally filtered
    signal would be shortened by ripples that noise adds). ``band``, ``order`` and ``separation``
    must be those of the ``EtpPhase`` that will use the model.
    """
    x = np.asarray(x, dtype=np.float64)
    settle = to_samples(SETTLE_S, fs)
    if x.ndim != 1 or x.size < 2 * settle + to_samples(4.0 / band.lo_hz, fs):
        raise ValueError(
            f"ETP training needs a 1-D signal longer than {2 * SETTLE_S} s + 4 cycles, got shape {x.shape}"
        )
    truth = TruePhase(x, fs, band)
    core = slice(settle, x.size - settle)  # away from the zero-phase filter's edges too
    advance = np.unwrap(truth.phase[core])
    cycles = (advance[-1] - advance[0]) / TWO_PI
    if not cycles >= 4:
        raise ValueError(f"ETP training found only {cycles:.1f} cycles in {x.size / fs:.1f} s of signal")
    period = (advance.size - 1) / fs / cycles
    peak_phase, trough_phase = 0.0, math.pi
    if learn_offsets:
        causal = signal.sosfilt(etp_sos(fs, band, order), x - x[:settle].mean())
        pk, _, tr, _ = extrema(causal, int(round(separation * period * fs)))
        pk, tr = pk[(pk >= core.start) & (pk < core.stop)], tr[(tr >= core.start) & (tr < core.stop)]
        peak_phase = circ_mean(truth.phase_at(pk / fs))
        trough_phase = circ_mean(truth.phase_at(tr / fs))
    return EtpModel(float(period), float(peak_phase), float(trough_phase), int(cycles))


class EtpPhase:
    """Phase method: extrapolate from the newest causal peak/trough with the learned period.

    ``window_s`` must hold at least one cycle at ``band.lo_hz`` (default 1.5 cycles + 2 samples);
    ``band`` and ``order`` of the causal band-pass, and ``separation`` (in periods) of extrema
    must be those the model was fitted with.
    """

    def __init__(
        self,
        fs: float,
        model: EtpModel,
        band: Band = Band(8.0, 13.0),
        *,
        window_s: float | None = None,
        delay_s: float = 0.0,
        target_phase: float = math.pi,
        order: int = ETP_ORDER,
        separation: float = SEPARATION,
    ) -> None:
        if not model.period_s > 0:
            raise ValueError(f"ETP: the model's period must be positive, got {model.period_s}")
        if delay_s < 0:
            raise ValueError(f"ETP: delay_s must be >= 0, got {delay_s}")
        self.fs = float(fs)
        self.model = model
        self.delay_s = float(delay_s)
        self.target_phase = float(target_phase)
        self.causal_sos = etp_sos(fs, band, order)
        self.window = to_samples(1.5 / band.lo_hz, fs) + 2 if window_s is None else to_samples(window_s, fs)
        if self.window < to_samples(1.0 / band.lo_hz, fs):
            raise ValueError(f"ETP: window {window_s} s is shorter than one cycle at {band.lo_hz} Hz")
        self._rate = TWO_PI / model.period_s
        self._half_width = int(round(separation * model.period_s * fs))

    def __call__(self, x: np.ndarray) -> tuple[float, float, float, float]:
        peaks, p_vals, troughs, t_vals = extrema(x, self._half_width)
        if peaks.size == 0 or troughs.size == 0:
            return NAN4
        p_pos, p_val, t_pos, t_val = peaks[-1], p_vals[-1], troughs[-1], t_vals[-1]
        m = self.model
        pos, at = (p_pos, m.peak_phase) if p_pos > t_pos else (t_pos, m.trough_phase)
        elapsed = (x.size - 1 - pos) / self.fs
        phase = at + self._rate * (elapsed + self.delay_s)
        ahead = self.delay_s + ((self.target_phase - phase) % TWO_PI) / self._rate
        return (phase + math.pi) % TWO_PI - math.pi, 0.5 * float(p_val - t_val), 1.0 / m.period_s, ahead
