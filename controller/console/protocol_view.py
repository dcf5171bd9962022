"""What the console draws that the protocol already says: blocks, bands, feedback range, channels.

The session's ``status`` carries only what changes; this fills in the rest from the protocol
file the status names, so the live view is complete whether the console started the session
or attached to it.
"""

from __future__ import annotations

from typing import Any

from controller.lang.compiled import Protocol


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
        spec = protocol.features.get(fb.value)
        if spec is not None:
            channels[spec.input] = list(spec.channels)
    for spec in protocol.features.values():  # inputs without a feedback feature: their features' channels
        channels.setdefault(spec.input, list(spec.channels))
    return {"blocks": blocks, "bands": bands, "feedback": feedback, "channels": channels,
            "feature_names": list(protocol.features), "devices_used": list(protocol.devices),
            "fmri": bool(protocol.volume_inputs)}
