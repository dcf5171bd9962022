"""A simulator started by a session ends with it, even when the session is killed with SIGKILL.

The session puts its process id in ``NEUROREFLEX_PARENT_PID`` when it starts a simulated participant,
scanner or virtual device. The child asks Linux to send it SIGTERM when its parent dies
(``prctl(PR_SET_PDEATHSIG)``; the simulators turn SIGTERM into a clean stop), and exits at once if the
parent is already gone (it died between the fork and this call). Without the variable (a simulator
started by hand, or a test) nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PARENT_ENV = "NEUROREFLEX_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Arm the lifeline when a session started this process; True when armed."""
    text = os.environ.get(PARENT_ENV, "").strip()
    if not text.isdigit() or not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        return False
    if os.getppid() != int(text):  # the session died before the lifeline was armed
        os.kill(os.getpid(), signal.SIGTERM)
    return True
