"""Checks that need the real stream: the runner calls these once a protocol's input is
resolved, before the session starts (rate and channel labels are unknown at load time)."""

from __future__ import annotations

import math
from typing import Sequence

from controller.dsp.labels import resolve_channels
from controller.protocol.compiled import Protocol
from controller.protocol.units import DURATION, FREQUENCY, format_quantity

RATE_TOLERANCE = 0.01  # relative difference allowed between the stated and the actual rate


def _hz(v: float) -> str:
    return format_quantity(v, FREQUENCY)


def check_against_stream(protocol: Protocol, input_name: str, fs: float, labels: Sequence[str]) -> list[str]:
    """Problems with using a stream of rate ``fs`` (Hz) and channel ``labels`` for input
    ``input_name``; an empty list means the protocol can run on it."""
    spec = protocol.inputs.get(input_name)
    if spec is None:
        return [f"input {input_name!r} is not in protocol {protocol.name!r}; inputs: {', '.join(protocol.inputs)}"]
    pre = f"input {input_name!r}"
    if not (isinstance(fs, (int, float)) and math.isfinite(fs) and fs > 0):
        return [f"{pre}: the stream has no regular sampling rate (nominal rate {fs!r}); a regular rate is needed"]
    problems: list[str] = []
    nyquist = fs / 2
    if spec.rate_hz is not None and abs(fs - spec.rate_hz) > RATE_TOLERANCE * spec.rate_hz:
        problems.append(f"{pre}: the protocol expects {_hz(spec.rate_hz)} but the stream runs at {_hz(fs)}")
    wanted = list(spec.channels)
    if isinstance(spec.reference, tuple):
        wanted += [ch for ch in spec.reference if ch not in wanted]
    missing = []
    for ch in wanted:
        try:  # the same matching the DSP uses: 'Cz' finds 'Cz', 'CZ', 'EEG Cz', 'Cz..'
            resolve_channels([ch], labels)
        except ValueError as exc:
            if "ambiguous" in str(exc):
                problems.append(f"{pre}: {exc}")
            else:
                missing.append(ch)
    if missing:
        names = ", ".join(repr(ch) for ch in missing)
        verb = "are" if len(missing) > 1 else "is"
        problems.append(f"{pre}: channel{'s' if len(missing) > 1 else ''} {names} {verb} not in the stream; "
                        f"its channels: {', '.join(labels) or 'none'}")
    for field, value in (("highpass", spec.highpass_hz), ("notch", spec.notch_hz)):
        if value is not None and value >= nyquist:
            problems.append(f"{pre}: {field} {_hz(value)} is at or above the stream's Nyquist frequency {_hz(nyquist)}")
    for feat in protocol.features.values():
        if feat.input != input_name:
            continue
        fpre = f"feature {feat.name!r}"
        for field in ("band", "numerator", "denominator", "total"):
            band = getattr(feat, field)
            if band is not None and band.hi_hz >= nyquist:
                problems.append(
                    f"{fpre}: {field} [{_hz(band.lo_hz)}, {_hz(band.hi_hz)}] reaches the stream's Nyquist "
                    f"frequency {_hz(nyquist)} (rate {_hz(fs)})"
                )
        if round(feat.window_s * fs) < 2:
            problems.append(f"{fpre}: window {format_quantity(feat.window_s, DURATION)} is under 2 samples at {_hz(fs)}")
        if round(feat.every_s * fs) < 1:
            problems.append(f"{fpre}: every {format_quantity(feat.every_s, DURATION)} is under 1 sample at {_hz(fs)}")
        if feat.kind == "phase":  # its Laplacian electrodes (those the input lists are checked above)
            problems += _laplacian_labels(feat, [ch for ch in feat.channels if ch not in wanted], labels, fpre)
        if feat.params is not None and round(feat.window_s * fs) >= 1 and round(feat.every_s * fs) >= 1:
            from controller.dsp.feature_kinds import rate_problems  # numpy/scipy: not at import time

            problems += [f"{fpre}: {field}: {message}" for field, message in rate_problems(feat, fs)]
    return problems


def _laplacian_labels(feat, check: list[str], labels: Sequence[str], fpre: str) -> list[str]:
    what = "Laplacian electrode" if getattr(feat.params, "neighbours", ()) else "channel"
    missing = []
    for ch in check:
        try:
            resolve_channels([ch], labels)
        except ValueError as exc:
            if "ambiguous" in str(exc):
                return [f"{fpre}: {exc}"]
            missing.append(ch)
    if not missing:
        return []
    names = ", ".join(repr(ch) for ch in missing)
    return [f"{fpre}: {what}{'s' if len(missing) > 1 else ''} {names} not in the stream; "
            f"its channels: {', '.join(labels) or 'none'}"]
