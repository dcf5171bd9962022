"""Per-channel signal quality of a few seconds of EEG, for the console's preflight.

Qt-free and pure (numpy, scipy): the preflight pulls the last seconds of a real inlet and hands the
block here; the console shows each channel green, amber or red with a reason that names the channel
and the number (``Cz: line noise 50 Hz at 38 % of power (> 20 %)``).

What is looked at, per channel, and why:

* flat: a constant column, or a peak-to-peak under half a microvolt, is an electrode that is not
  connected (or a dead amplifier channel): scalp EEG is never that quiet;
* saturated: a run of samples pinned at the block's maximum or minimum (or at the amplifier's clipping
  value, if known) is an input outside the amplifier's range; nothing computed on it means anything;
* amplitude: peak-to-peak (after removing the offset and a linear drift, which a DC-coupled amplifier
  has and the session's high-pass removes) above the range of scalp EEG means movement, a loose
  electrode or a bridge to something else;
* line noise: power at 50 and 60 Hz relative to the broadband power: a poor contact (high impedance)
  picks up the mains;
* high-frequency noise: power above 40 Hz (line bins left out) relative to the broadband power: muscle
  (EMG) or a poor contact; resting EEG falls off as 1/f and has a few percent there at most.

Impedances, when the stream's description gives them, are judged by :func:`impedance_quality`.
All data is in volts once ``scale_to_volts`` (or ``units``) is applied; thresholds below are in volts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import welch  # type: ignore[import-untyped]  # scipy-stubs is not installed

from controller.protocol.signal_units import parse_unit

GREEN, AMBER, RED = "green", "amber", "red"
LEVELS = (GREEN, AMBER, RED)  # in order of severity

UV = 1e-6

# Flat: scalp EEG has a peak-to-peak of tens of microvolts; under 0.5 µV over seconds there is no
# electrode on the head (or the channel is dead). A low standard deviation is suspicious only.
FLAT_PTP_RED_V = 0.5 * UV
LOW_STD_AMBER_V = 0.5 * UV
# Amplitude: resting scalp EEG stays within ~100-150 µV peak-to-peak; blinks reach ~200 µV on frontal
# channels. Above 200 µV the operator should look; above 500 µV the channel is unusable as it is.
PTP_AMBER_V = 200 * UV
PTP_RED_V = 500 * UV
# Saturation: this many consecutive samples (and at least this long) pinned at the block's extreme.
# A real peak holds the same value for a sample or two at most (even quantised, at 500 Hz).
SATURATION_MIN_RUN = 5
SATURATION_MIN_RUN_S = 0.010
# Line noise: mains power as a share of the broadband power. Clean recordings have well under 1 %;
# a few percent is a contact to improve; a fifth of the power is a contact that is not there.
LINE_FREQS_HZ = (50.0, 60.0)
LINE_HALF_WIDTH_HZ = 1.0
LINE_AMBER = 0.05
LINE_RED = 0.20
# High-frequency noise: power above 40 Hz (line bins excluded) as a share of the broadband power.
# Resting EEG has under 5 % there; muscle activity (jaw, forehead, neck) raises it past 15-35 %.
HF_LO_HZ = 40.0
HF_AMBER = 0.15
HF_RED = 0.35
# The broadband power the shares are taken of: from 1 Hz (below is drift) to Nyquist.
BROADBAND_LO_HZ = 1.0
WELCH_SEGMENT_S = 1.0  # 1 Hz resolution: a line bin is separable from its neighbours
# Impedance: 10 kΩ is the usual target for gel electrodes; above 50 kΩ a passive-electrode channel
# picks up the mains and drifts (active electrodes tolerate more: treat this as the amber/red guide).
IMPEDANCE_AMBER_OHM = 10e3
IMPEDANCE_RED_OHM = 50e3


@dataclass(frozen=True)
class ChannelQuality:
    """One channel's verdict: the worst finding's level and every finding's text."""

    label: str
    level: str  # green | amber | red
    reason: str  # the worst findings, each naming the channel and the number
    findings: tuple[str, ...] = ()  # every amber/red finding (empty when green)
    metrics: dict[str, float] = field(default_factory=dict)  # ptp_uv, std_uv, line50_pct, line60_pct, hf_pct, ...


def worst(levels: Sequence[str]) -> str:
    """The most severe of ``levels`` (green when empty)."""
    return max(levels, key=LEVELS.index, default=GREEN)


def scale_factors(n_channels: int, scale_to_volts: float | Sequence[float] | np.ndarray | None = None,
                  units: str | Sequence[str] | None = None) -> np.ndarray:
    """Per-column factors to volts: ``scale_to_volts`` (one or per channel), else from ``units``
    ('uV', 'µV', 'mV', 'V', one or per channel), else 1 (the LSL readers' volts)."""
    if scale_to_volts is not None:
        factors = np.broadcast_to(np.asarray(scale_to_volts, dtype=float), (n_channels,)).copy()
        return factors
    if units is None:
        return np.ones(n_channels)
    texts = [units] * n_channels if isinstance(units, str) else list(units)
    if len(texts) != n_channels:
        raise ValueError(f"{len(texts)} units for {n_channels} channels")
    out = np.ones(n_channels)
    for i, text in enumerate(texts):
        if not text:
            continue
        unit = parse_unit(text)
        if unit is None or unit.si != "V":
            raise ValueError(f"channel {i + 1}: unit {text!r} is not a voltage (uV, mV, V)")
        out[i] = unit.scale
    return out


def channel_quality(data: np.ndarray, srate: float, labels: Sequence[str], *,
                    scale_to_volts: float | Sequence[float] | np.ndarray | None = None,
                    units: str | Sequence[str] | None = None,
                    clip_volts: float | None = None,
                    line_freqs: Sequence[float] = LINE_FREQS_HZ,
                  notched: Sequence[float] = ()) -> list[ChannelQuality]:
    """The quality of every column of ``data`` (samples x channels) sampled at ``srate`` Hz.

    ``clip_volts``: the amplifier's input range (|x| at or above it counts as clipped), if known.
    ``notched``: line frequencies the protocol notches before its features: their noise is at most amber
    (still worth a look: it usually means a poor contact), never a reason to refuse the session.
    """
    x = np.asarray(data, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(labels):
        raise ValueError(f"data must be samples x {len(labels)} channels, got shape {x.shape}")
    if not srate > 0:
        raise ValueError(f"srate must be positive, got {srate!r}")
    x = x * scale_factors(x.shape[1], scale_to_volts, units)
    n = x.shape[0]
    if n < 2:
        return [ChannelQuality(lab, RED, f"{lab}: no data ({n} sample(s))") for lab in labels]
    finite = np.isfinite(x).all(axis=0)
    x = np.where(np.isfinite(x), x, 0.0)
    raw_ptp = np.ptp(x, axis=0)
    detrended = _detrend(x)
    ptp = np.ptp(detrended, axis=0)
    std = detrended.std(axis=0)
    runs = _extreme_runs(x, raw_ptp, clip_volts)
    clipped = np.zeros(x.shape[1], dtype=bool) if clip_volts is None else (np.abs(x) >= clip_volts).any(axis=0)
    spectra = _spectral_shares(detrended, srate, line_freqs)
    min_run = max(SATURATION_MIN_RUN, math.ceil(SATURATION_MIN_RUN_S * srate))
    out = []
    for c, label in enumerate(labels):
        metrics = {"ptp_uv": ptp[c] / UV, "std_uv": std[c] / UV, "saturated_run": float(runs[c])}
        metrics.update({k: v[c] for k, v in spectra.items()})
        found: list[tuple[str, str]] = []
        if not finite[c]:
            found.append((RED, f"{label}: NaN or infinite samples"))
        if raw_ptp[c] == 0.0:
            found.append((RED, f"{label}: flat (constant {x[0, c] / UV:.3g} µV)"))
        elif ptp[c] < FLAT_PTP_RED_V:
            found.append((RED, f"{label}: flat, peak-to-peak {ptp[c] / UV:.2g} µV (< {FLAT_PTP_RED_V / UV:g} µV)"))
        else:
            if runs[c] >= min_run:
                found.append((RED, f"{label}: saturated, {runs[c]} samples in a row at its extreme "
                                   f"({1000 * runs[c] / srate:.0f} ms)"))
            elif clipped[c] and clip_volts is not None:
                found.append((RED, f"{label}: clipped at ±{clip_volts / UV:g} µV"))
            if std[c] < LOW_STD_AMBER_V:
                found.append((AMBER, f"{label}: very low signal, SD {std[c] / UV:.2g} µV (< {LOW_STD_AMBER_V / UV:g} µV)"))
            found += _graded(label, ptp[c], PTP_AMBER_V, PTP_RED_V,
                             lambda v, lim: f"peak-to-peak {v / UV:.0f} µV (> {lim / UV:g} µV)")
            for freq in line_freqs:
                share = spectra.get(f"line{freq:g}_pct", np.full(len(labels), np.nan))[c] / 100
                graded = _graded(label, share, LINE_AMBER, LINE_RED, _line_text(freq))
                if any(abs(freq - n) < 1.0 for n in notched):
                    graded = [(AMBER, f"{t} (the protocol notches {freq:g} Hz)") for _, t in graded]
                found += graded
            hf = spectra["hf_pct"][c] / 100
            found += _graded(label, hf, HF_AMBER, HF_RED,
                             lambda v, lim: f"high-frequency noise (> {HF_LO_HZ:g} Hz) at {100 * v:.0f} % of "
                                            f"power (> {100 * lim:g} %)")
        out.append(_verdict(label, found, metrics))
    return out


def _graded(label: str, value: float, amber: float, red: float,
            text: Callable[[float, float], str]) -> list[tuple[str, str]]:
    if not np.isfinite(value):
        return []
    if value > red:
        return [(RED, f"{label}: {text(value, red)}")]
    if value > amber:
        return [(AMBER, f"{label}: {text(value, amber)}")]
    return []


def _line_text(freq: float) -> Callable[[float, float], str]:
    return lambda v, lim: f"line noise {freq:g} Hz at {100 * v:.0f} % of power (> {100 * lim:g} %)"


def _verdict(label: str, found: list[tuple[str, str]], metrics: dict[str, float]) -> ChannelQuality:
    if not found:
        bits = [f"peak-to-peak {metrics['ptp_uv']:.0f} µV"]
        line = [v for k, v in metrics.items() if k.startswith("line") and np.isfinite(v)]
        if line:
            bits.append(f"line {max(line):.1f} %")
        if np.isfinite(metrics.get("hf_pct", np.nan)):
            bits.append(f">{HF_LO_HZ:g} Hz {metrics['hf_pct']:.1f} %")
        return ChannelQuality(label, GREEN, f"{label}: ok ({', '.join(bits)})", (), metrics)
    level = worst([lv for lv, _ in found])
    texts = tuple(t for _, t in found)
    top = [t for lv, t in found if lv == level]
    return ChannelQuality(label, level, "; ".join(top), texts, metrics)


def _detrend(x: np.ndarray) -> np.ndarray:
    """Each column minus its least-squares line (offset and linear drift)."""
    n = x.shape[0]
    t = np.arange(n, dtype=float) - (n - 1) / 2
    slope = (t @ (x - x.mean(axis=0))) / (t @ t)
    out: np.ndarray = x - x.mean(axis=0) - np.outer(t, slope)
    return out


def _extreme_runs(x: np.ndarray, ptp: np.ndarray, clip_volts: float | None) -> np.ndarray:
    """Per column, the longest run of consecutive samples at the column's max or min (or clipped)."""
    tol = np.maximum(ptp * 1e-6, 1e-15)  # float noise around an exactly repeated value
    at_max = x >= x.max(axis=0) - tol
    at_min = x <= x.min(axis=0) + tol
    if clip_volts is not None:
        at_max |= x >= clip_volts
        at_min |= x <= -clip_volts
    runs: np.ndarray = np.maximum(_longest_true_run(at_max), _longest_true_run(at_min))
    return runs


def _longest_true_run(mask: np.ndarray) -> np.ndarray:
    """Per column of a boolean (samples x channels) array, the longest run of True."""
    n, m = mask.shape
    padded = np.zeros((n + 2, m), dtype=np.int8)
    padded[1:-1] = mask
    edges = np.diff(padded, axis=0)
    out = np.zeros(m, dtype=int)
    for c in range(m):  # one pass per channel over its edges only
        starts = np.flatnonzero(edges[:, c] == 1)
        ends = np.flatnonzero(edges[:, c] == -1)
        if starts.size:
            out[c] = int((ends - starts).max())
    return out


def _spectral_shares(x: np.ndarray, srate: float, line_freqs: Sequence[float]) -> dict[str, np.ndarray]:
    """Line and high-frequency power as percentages of the broadband power (1 Hz .. Nyquist), Welch."""
    m = x.shape[1]
    nan = np.full(m, np.nan)
    nper = min(x.shape[0], max(8, int(round(WELCH_SEGMENT_S * srate))))
    freqs, psd = welch(x, fs=srate, nperseg=nper, axis=0)
    nyquist = srate / 2
    broad = freqs >= BROADBAND_LO_HZ
    total = psd[broad].sum(axis=0)
    ok = total > 0
    out: dict[str, np.ndarray] = {}
    line_mask = np.zeros(freqs.shape, dtype=bool)
    for freq in line_freqs:
        if freq + LINE_HALF_WIDTH_HZ >= nyquist:
            out[f"line{freq:g}_pct"] = nan
            continue
        band = np.abs(freqs - freq) <= LINE_HALF_WIDTH_HZ
        line_mask |= band
        out[f"line{freq:g}_pct"] = np.where(ok, 100 * psd[band].sum(axis=0) / np.where(ok, total, 1), np.nan)
    hf = (freqs > HF_LO_HZ) & ~line_mask
    if nyquist <= HF_LO_HZ + 10 or not hf.any():  # no band worth the name above 40 Hz
        out["hf_pct"] = nan
    else:
        out["hf_pct"] = np.where(ok, 100 * psd[hf].sum(axis=0) / np.where(ok, total, 1), np.nan)
    return out


# ----------------------------------------------------------------------------- impedance

_IMPEDANCE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([kKmM]?)\s*(?:Ω|ohms?|Ohms?|OHMS?)?\s*$")


def parse_impedance(text: str) -> float | None:
    """Ohms from a stream description's impedance text, or None if there is none or it is not a number.

    '5.2', '5.2 kOhm', '5200 Ohm', '5.2kΩ', '1.1 MOhm'. A bare number is read as kΩ: that is what
    amplifier software reports (BrainVision, g.tec, ANT) and what an impedance field holds in practice.
    """
    if not text or not text.strip():
        return None
    match = _IMPEDANCE.match(text)
    if match is None:
        return None
    value, prefix = float(match.group(1)), match.group(2)
    has_unit = bool(re.search(r"(Ω|ohm)", text, re.IGNORECASE))
    if prefix in ("k", "K") or (not prefix and not has_unit):
        return value * 1e3
    if prefix == "M":
        return value * 1e6
    if prefix == "m":
        return value * 1e-3
    return value


def impedance_quality(labels: Sequence[str], impedances: Sequence[str | float | None]) -> list[ChannelQuality]:
    """Each channel's impedance judged against 10 kΩ (amber) and 50 kΩ (red); channels with no
    value are left out. ``impedances``: ohms (numbers) or the description's texts."""
    if len(labels) != len(impedances):
        raise ValueError(f"{len(impedances)} impedances for {len(labels)} channels")
    out = []
    for label, raw in zip(labels, impedances, strict=True):
        ohm = parse_impedance(raw) if isinstance(raw, str) else (None if raw is None else float(raw))
        if ohm is None or not math.isfinite(ohm):
            continue
        kohm = ohm / 1e3
        if ohm > IMPEDANCE_RED_OHM:
            level, reason = RED, f"{label}: impedance {kohm:.0f} kΩ (> {IMPEDANCE_RED_OHM / 1e3:g} kΩ)"
        elif ohm > IMPEDANCE_AMBER_OHM:
            level, reason = AMBER, f"{label}: impedance {kohm:.0f} kΩ (> {IMPEDANCE_AMBER_OHM / 1e3:g} kΩ)"
        else:
            level, reason = GREEN, f"{label}: impedance {kohm:.1f} kΩ"
        out.append(ChannelQuality(label, level, reason, () if level == GREEN else (reason,), {"impedance_kohm": kohm}))
    return out
