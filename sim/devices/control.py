"""Fault switches of a virtual device, set by name (the stdin control lines of ``sim device``).

Why: an end-to-end fault test runs the device in its own process, so it cannot reach
``device.faults`` directly; it writes ``fault no_reply`` to the process instead. Every
device's fault dataclass (magstim ``Faults``, magventure ``Faults``, starstim ``NicFaults``,
triggerbox ``TriggerBoxFaults``) is driven through its field names, plus a few aliases and
the link faults every device has:

- ``bad_crc`` = ``corrupt_crc``; ``error_reply [?|S]`` = magstim ``reply_error`` (default ``?``);
- ``disconnect``: the cable is pulled (pty devices: ``device.disconnect()``; starstim: its
  ``disconnect`` switch, which also drops a connected client).

Values: booleans take no value (on) or on/off, true/false, 1/0; ``bytes`` fields take ASCII
text (``only EH``); ``str`` fields take text (``error_code 021``); ``off`` / ``none`` resets any
field to its default.
"""

from __future__ import annotations

import dataclasses
from typing import Any

ALIASES = {"bad_crc": "corrupt_crc", "error_reply": "reply_error"}
_OFF = ("off", "false", "0", "no", "none")
_ON = ("on", "true", "1", "yes")


def fault_fields(device: Any) -> dict[str, dataclasses.Field]:
    """The device's fault switches by name (empty when it has none)."""
    faults = getattr(device, "faults", None)
    if faults is None or not dataclasses.is_dataclass(faults):
        return {}
    return {f.name: f for f in dataclasses.fields(faults)}


def fault_names(device: Any) -> list[str]:
    """Every name ``set_fault`` accepts for this device (aliases included)."""
    names = set(fault_fields(device)) | {"disconnect"}
    names |= {alias for alias, target in ALIASES.items() if target in names}
    return sorted(names)


def _convert(field: dataclasses.Field, value: str | None) -> Any:
    kind = str(field.type)
    if value is not None and value.lower() in _OFF:
        return field.default
    if kind == "bool":
        if value is None or value.lower() in _ON:
            return True
        raise ValueError(f"fault {field.name} is on/off, got {value!r}")
    if value is None:
        if field.name == "reply_error":
            return b"?"
        raise ValueError(f"fault {field.name} needs a value (or 'off')")
    if kind.startswith("bytes"):
        if field.name == "reply_error" and value not in ("?", "S"):
            raise ValueError(f"fault reply_error is '?' (invalid data) or 'S' (conflicts with state), got {value!r}")
        return value.encode("ascii")
    return value


def set_fault(device: Any, name: str, value: str | None = None) -> str:
    """Switch one fault on (or off with value 'off'); returns what changed, raises ValueError on a bad name."""
    name = ALIASES.get(name, name)
    fields = fault_fields(device)
    if name == "disconnect" and "disconnect" not in fields:
        if value is not None and value.lower() in _OFF:
            device.reconnect()
            return "cable reconnected"
        device.disconnect()
        return "cable pulled: nothing arrives, nothing is answered"
    if name not in fields:
        raise ValueError(f"{device.kind} has no fault {name!r}; faults: {', '.join(fault_names(device))}")
    converted = _convert(fields[name], value)
    setattr(device.faults, name, converted)
    return f"{name} = {_plain(converted)}"


def clear_faults(device: Any) -> str:
    """Every fault switch back to its default and a pulled cable reconnected (an unplugged device stays so)."""
    faults = getattr(device, "faults", None)
    if faults is not None and dataclasses.is_dataclass(faults):
        device.faults = type(faults)()
    device.reconnect()
    return "faults cleared" + ("; still unplugged (send 'plug')" if device.unplugged else "")


def faults_state(device: Any) -> dict[str, Any]:
    """The fault switches as JSON-friendly values."""
    faults = getattr(device, "faults", None)
    if faults is None or not dataclasses.is_dataclass(faults):
        return {}
    return {k: _plain(v) for k, v in dataclasses.asdict(faults).items()}


def _plain(value: Any) -> Any:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value
