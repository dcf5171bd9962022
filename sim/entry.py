"""Process set-up shared by every ``python -m sim`` command: quiet liblsl, signals as a clean stop.

Why a module of its own: the top-level CLI (sim/cli.py) dispatches to ``sim fmri`` (sim/fmri/cli.py,
sim/fmri/simulator.py), and those need the same set-up; taking it from sim/cli.py made the two
import each other. The CLI sits on top; this module imports no simulator.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` instead of killing the process (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    fired = [False]

    def on_signal(*_: object) -> None:
        # A handler runs between two bytecodes of the main thread, so a second signal can arrive inside
        # the first one's stop.set(), while it holds the event's lock: taking it again would deadlock
        # (a session's death sends its simulators one SIGTERM per thread it had). Only the first sets it.
        if fired[0]:
            return
        fired[0] = True
        stop.set()

    for sig in previous:
        signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def quiet_liblsl() -> None:
    """liblsl logs INFO lines by default; keep errors only unless asked (like a real amplifier app)."""
    import pylsl

    if os.environ.get("NEUROREFLEX_LSL_VERBOSE") or os.environ.get("LSLAPICFG"):
        return
    try:
        pylsl.set_config_content("[log]\nlevel = -2\n")
    except NotImplementedError:
        pass
