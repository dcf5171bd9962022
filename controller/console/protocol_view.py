"""What the console draws that the protocol already says: blocks, bands, feedback range, channels.

The session's ``status`` carries only what changes; this fills in the rest from the protocol
file the status names, so the live view is complete whether the console started the session
or attached to it.
"""

from __future__ import annotations

from typing import Any

from controller.engine.conditions import compared_pairs
from controller.lang.compiled import Protocol

UNIT_OF_SCALE = {1.0: "V", 1e-3: "mV", 1e-6: "uV", 1e-9: "nV"}


def live_inputs(status: dict[str, Any], facts: dict[str, Any], labels: dict[str, list[str]]) -> dict[str, Any]:
    """The status's inputs as the live view takes them: channel labels (read from the stream), rate, the unit of
    the stream's numbers (from the session's scale to volts) and the protocol's filter for that input."""
    out: dict[str, Any] = {}
    for name, entry in (status.get("inputs") or {}).items():
        scale = entry.get("si_scale") or []
        unit = None
        if scale:
            nearest = min(UNIT_OF_SCALE, key=lambda s: abs(s - float(scale[0])) / s)
            unit = UNIT_OF_SCALE[nearest] if abs(nearest - float(scale[0])) <= 1e-3 * nearest else None
        count = int(entry.get("channels") or 0) if not isinstance(entry.get("channels"), list) else len(entry["channels"])
        out[name] = {**entry, "srate": entry.get("rate"), "units": unit,
                     "channels": labels.get(name) or [f"ch{i + 1}" for i in range(count)],
                     **{k: v for k, v in (facts.get("input_filters") or {}).get(name, {}).items() if v is not None}}
    return out


def protocol_facts(protocol: Protocol) -> dict[str, Any]:
    """The static part of the status dict (see the console spec): blocks, bands, feedback, channels."""
    blocks, start = [], 0.0
    for block in protocol.timeline:
        blocks.append({"label": block.label, "start_s": start, "duration_s": block.duration_s, "index": block.index})
        start += block.duration_s
    bands: dict[str, list[float]] = {}
    for spec in protocol.features.values():
        for part, band in (("", spec.band), ("num", spec.numerator), ("den", spec.denominator)):
            if band is not None:
                name = f"{spec.name}" if not part else f"{spec.name} {part}"
                bands[name] = [band.lo_hz, band.hi_hz]
    feedback = None
    channels: dict[str, list[str]] = {}
    if protocol.feedback is not None:
        fb = protocol.feedback
        feedback = {"value": fb.value, "lo": fb.low, "hi": fb.high, "direction": "up" if fb.high > fb.low else "down",
                    "during": list(fb.during)}
        fb_spec = protocol.features.get(fb.value)
        if fb_spec is not None:
            channels[fb_spec.input] = list(fb_spec.channels)
    for spec in protocol.features.values():  # inputs without a feedback feature: their features' channels
        channels.setdefault(spec.input, list(spec.channels))
    threshold_features: dict[str, list[str]] = {}
    for when in [r.when for r in protocol.rules if r.when is not None] + [i.when for i in protocol.interlocks]:
        for feature, th in sorted(compared_pairs(when)):
            if feature not in threshold_features.setdefault(th, []):
                threshold_features[th].append(feature)
    filters = {name: {"highpass_hz": inp.highpass_hz, "notch_hz": inp.notch_hz}
               for name, inp in protocol.inputs.items()}
    return {"blocks": blocks, "input_filters": filters, "threshold_features": threshold_features, "bands": bands, "feedback": feedback, "channels": channels,
            "feature_names": list(protocol.features), "devices_used": list(protocol.devices),
            "fmri": bool(protocol.volume_inputs)}
