"""``--wait-go``: hold the scanner's first volume until the session says ``go`` on stdin.

Why: a session records every volume stream with LabRecorder, which receives only samples pushed
after it subscribed. Waiting for a consumer is not enough (the session's own inlet connects
first, the recorder a second or two later, and LSL cannot count consumers), so the session
starts its recorder and then writes ``go`` to the simulator's stdin; volume 1 is sent after that.
End of input (the session went away) means never start.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

GO = "go"


def wait_for_go(stop: threading.Event, stream: TextIO | None = None) -> bool:
    """Block until a line ``go`` arrives (True), or ``stop`` is set or the input ends (False).

    The line is read in a helper thread so that a signal (which sets ``stop``) ends the wait.
    """
    stream = sys.stdin if stream is None else stream
    got = threading.Event()
    ended = threading.Event()

    def read() -> None:
        for line in stream:
            if line.strip().lower() == GO:
                got.set()
                return
        ended.set()

    threading.Thread(target=read, name="wait-go", daemon=True).start()
    while not (got.is_set() or ended.is_set() or stop.is_set()):
        got.wait(0.05)
    return got.is_set()
