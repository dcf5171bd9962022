"""Phase error of phase-locked stimulation: where in the cycle did each pulse really land?

For every ``phase`` feature of the protocol, the recorded EEG input (recording.xdf) is turned
into the same spatial signal the feature used (centre minus the mean of its neighbours, or the
centre alone), band-passed over the whole recording with a zero-phase Butterworth (filtfilt) in
the feature's band, and its Hilbert phase is read at each pulse
(:class:`controller.dsp.phase.truth.TruePhase`). Pulse time = the fire command's arrival at the
device when its log exists, else ``t_sent``. Error = true phase - target phase, wrapped to
[-pi, pi); reported as circular mean and circular SD (Mardia, ``sqrt(-2 ln R)``).

Pulses of a phase feature are the allowed 'fire' commands of the rules whose stimulation is
timed ``at`` that feature (matched by the rule label the dispatcher journals, else by device).
Times are mapped to samples through the recorded timestamps (linear interpolation), so a
recording with a gap still places each pulse on the right sample.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from controller.dsp.circular import angle_diff, circ_mean, circ_std, resultant_length
from controller.dsp.labels import resolve_channels
from controller.dsp.laplacian import Laplacian
from controller.dsp.phase.truth import TruePhase
from controller.lang.compiled import FeatureSpec, PhaseParams, Protocol
from controller.report.recording import Recording, channel_labels, first

DEFINITION = (
    "phase error = true phase at the pulse - target phase (true phase: zero-phase Butterworth band-pass of the "
    "whole recording in the feature's band + Hilbert, on the feature's spatial signal; pulse time: arrival at "
    "the device when logged, else t_sent); circular mean and circular SD sqrt(-2 ln R)"
)


def spatial_signal(stream: dict[str, Any], params: PhaseParams) -> tuple[np.ndarray, str]:
    """(signal, description) of the feature's spatial filter applied to a recorded stream."""
    labels = channel_labels(stream["info"])
    x = np.asarray(stream["time_series"], dtype=float)
    if x.ndim != 2:
        raise ValueError("the recorded input is not a numeric multichannel stream")
    if not labels:
        labels = [f"ch{i + 1}" for i in range(x.shape[1])]
    if params.neighbours:
        lap = Laplacian(labels, params.center, params.neighbours, allow_missing=True)
        text = f"{lap.center} - mean({', '.join(lap.neighbours)})"
        if lap.missing:
            text += f" (missing in the recording: {', '.join(lap.missing)})"
        return lap.apply(x), text
    col = int(resolve_channels([params.center], labels, where="recorded stream")[0])
    return x[:, col].copy(), labels[col]


def sample_positions(ts: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Fractional sample index of each time (NaN outside the recording)."""
    idx = np.arange(ts.size, dtype=float)
    if ts.size > 1 and np.all(np.diff(ts) > 0):
        pos = np.interp(times, ts, idx)
    else:  # timestamps not increasing (clock reset): a straight line through them
        slope, intercept = np.polyfit(ts, idx, 1)
        pos = intercept + slope * times
    pos = np.asarray(pos, dtype=float)
    pos[(times < ts[0]) | (times > ts[-1])] = np.nan
    return pos


def _pulses(protocol: Protocol, name: str, commands: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    rules = [r for r in protocol.rules if r.do.stimulation is not None and r.do.stimulation.at == name]
    labels = {f"{protocol.name} {r.label}" for r in rules}
    devices = {r.do.stimulation.device for r in rules if r.do.stimulation is not None}
    fires = [c for c in commands if c["ok"] and c["kind"] == "fire" and c["t_sent"] is not None]
    by_rule = [c for c in fires if c["rule"] in labels]
    if by_rule:
        return by_rule, "rule"
    return [c for c in fires if c["device"] in devices], "device"


def _pick_stream(recording: Recording, protocol: Protocol, spec: FeatureSpec) -> dict[str, Any]:
    inp = protocol.inputs.get(spec.input)
    if inp is None:
        raise ValueError(f"the protocol has no input {spec.input!r}")
    found = [s for s in recording.find(inp.stream)
             if first(s["info"], "channel_format") != "string" and len(s["time_stamps"]) > 1]
    if not found:
        raise ValueError(f"recording.xdf holds no numeric stream matching input {spec.input!r} ({inp.stream})")
    return max(found, key=lambda s: len(s["time_stamps"]))


def phase_feature_error(protocol: Protocol, spec: FeatureSpec, recording: Recording,
                        commands: list[dict[str, Any]]) -> dict[str, Any]:
    """Phase error of the pulses timed to one phase feature (raises ValueError on missing data)."""
    params = spec.params
    if not isinstance(params, PhaseParams) or spec.band is None:
        raise ValueError(f"feature {spec.name} has no phase parameters")
    pulses, matched_by = _pulses(protocol, spec.name, commands)
    out: dict[str, Any] = {
        "feature": spec.name, "method": params.method, "band_hz": [spec.band.lo_hz, spec.band.hi_hz],
        "target_rad": params.target_rad, "target_deg": math.degrees(params.target_rad),
        "pulses_matched_by": matched_by, "n_pulses": len(pulses),
    }
    if recording.error:
        raise ValueError(recording.error)
    stream = _pick_stream(recording, protocol, spec)
    signal, text = spatial_signal(stream, params)
    ts = np.asarray(stream["time_stamps"], dtype=float)
    fs = float(first(stream["info"], "nominal_srate", "0") or 0.0)
    if not fs > 0:
        fs = (ts.size - 1) / (ts[-1] - ts[0])
    truth = TruePhase(signal, fs, spec.band, t0=0.0)
    times = np.array([c["arrival_t"] if c["arrival_t"] is not None else c["t_sent"] for c in pulses], float)
    by_arrival = sum(1 for c in pulses if c["arrival_t"] is not None)
    pos = sample_positions(ts, times) if times.size else np.array([])
    true_phase = np.full(times.shape, np.nan)
    inside = np.isfinite(pos)
    true_phase[inside] = np.angle(truth.at(pos[inside] / fs))
    ok = np.isfinite(true_phase)
    err = np.asarray(angle_diff(true_phase[ok], params.target_rad), dtype=float).reshape(-1)
    out.update({
        "stream": first(stream["info"], "name"), "signal": text, "fs_hz": fs,
        "timed_by": {"arrival": by_arrival, "t_sent": len(pulses) - by_arrival},
        "n_scored": int(err.size), "outside_recording": int(np.count_nonzero(~ok)),
        "circ_mean_rad": circ_mean(err) if err.size else None,
        "circ_mean_deg": math.degrees(circ_mean(err)) if err.size else None,
        "circ_std_rad": circ_std(err) if err.size else None,
        "circ_std_deg": math.degrees(circ_std(err)) if err.size else None,
        "resultant_length": resultant_length(err) if err.size else None,
        "errors_rad": err.tolist(),
        "pulse_times_lsl": times[ok].tolist(),
    })
    return out


def phase_errors(protocol: Protocol | None, recording: Recording | None,
                 commands: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """Per phase feature: its phase error, or ``{"error": why}``. None when there is no phase feature."""
    if protocol is None:
        return None
    specs = [f for f in protocol.features.values() if f.kind == "phase"]
    if not specs:
        return None
    out: dict[str, Any] = {}
    for spec in specs:
        try:
            if recording is None:
                raise ValueError("recording.xdf was not read")
            out[spec.name] = phase_feature_error(protocol, spec, recording, commands or [])
        except ValueError as exc:
            out[spec.name] = {"feature": spec.name, "error": str(exc)}
    return out
