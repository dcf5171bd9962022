"""Virtual stimulators: each speaks one device's real protocol on a pseudo-terminal or loopback TCP.

Registry of kinds for `neuroreflex sim device KIND`; each module exposes ``create(**options)``
returning a started-able VirtualDevice.
"""

from __future__ import annotations

import importlib

KINDS = {
    "magstim": "sim.devices.magstim",
    "magventure": "sim.devices.magventure",
    "triggerbox": "sim.devices.triggerbox",
    "starstim": "sim.devices.starstim",
}


def create(kind: str, **options):
    """A virtual device of ``kind`` (not yet started)."""
    if kind not in KINDS:
        raise ValueError(f"unknown device kind {kind!r}; kinds: {', '.join(sorted(KINDS))}")
    return importlib.import_module(KINDS[kind]).create(**options)
