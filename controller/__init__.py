"""neuroreflex controller: the closed loop (inputs, DSP, protocol engine, recording, CLI)."""

__version__ = "0.1.0"
