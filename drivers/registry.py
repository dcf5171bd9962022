"""Drivers by the name a site config uses; the controller opens devices only through here."""

from __future__ import annotations

import importlib
from typing import Any

from drivers.stimulator import Stimulator

# site-config `driver:` name -> "module:Class"; modules are imported on use, so a site
# without a Starstim never imports its driver.
DRIVERS = {
    "magstim": "drivers.magstim:MagstimDriver",
    "magventure": "drivers.magventure:MagVentureDriver",
    "triggerbox": "drivers.triggerbox:TriggerBoxDriver",
    "starstim": "drivers.starstim:StarstimDriver",
}


def driver_class(kind: str) -> type[Stimulator]:
    if kind not in DRIVERS:
        raise ValueError(f"unknown driver {kind!r}; drivers: {', '.join(sorted(DRIVERS))}")
    module, _, name = DRIVERS[kind].partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Stimulator)):
        raise TypeError(f"driver {kind!r}: {DRIVERS[kind]} is not a Stimulator class")
    return cls


def make_driver(kind: str, port: str, **options: Any) -> Stimulator:
    """A driver for ``port`` (a serial device or URL; ``host:port`` for TCP devices), not yet connected."""
    return driver_class(kind).for_port(port, **options)
