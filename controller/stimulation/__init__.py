"""Stimulation in a session: the dispatcher (engine -> governor -> drivers), device setup, the watchdog."""

from controller.stimulation.dispatcher import COMMAND, Link, Stimulation

__all__ = ["COMMAND", "Link", "Stimulation"]
