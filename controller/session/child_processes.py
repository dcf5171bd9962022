"""Processes a session starts (the simulated participant or scanner, virtual devices) end with it.

``child_env()`` is the environment to start them with: it names this process as their parent, and
the simulators arm a lifeline on it (``sim/lifeline.py``: Linux sends them SIGTERM when the session
dies, even by SIGKILL). LabRecorderCLI ends by itself when its stdin closes (controller/recording/xdf.py).
"""

from __future__ import annotations

import os
import subprocess

PARENT_ENV = "NEUROREFLEX_PARENT_PID"  # read by sim/lifeline.py (sim does not import the controller)


def child_env() -> dict[str, str]:
    return {**os.environ, PARENT_ENV: str(os.getpid())}


def end_process(proc: subprocess.Popen | None) -> None:
    """Ask a child to stop (SIGTERM: the simulators stop cleanly), kill it if it has not within 5 s."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
