"""Operator keys in the run's terminal: pause, resume, skip a block, stop.

Single keys, no Enter (cbreak mode), only when stdin is a terminal; the terminal's
settings are restored on exit. The keys map to engine acts, never to the hot path.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from collections.abc import Callable, Mapping

HELP = "keys: [p] pause  [r] resume  [s] skip block  [q] stop"


def key_actions(engine) -> dict[str, Callable[[], None]]:
    return {
        "p": engine.pause,
        "r": engine.resume,
        "s": engine.skip_block,
        "q": lambda: engine.stop("operator stop (key q)"),
    }


class KeyboardControl(threading.Thread):
    def __init__(self, actions: Mapping[str, Callable[[], None]], stream=None) -> None:
        super().__init__(name="keyboard", daemon=True)
        self.actions = dict(actions)
        self.stream = stream if stream is not None else sys.stdin
        self._halt = threading.Event()
        self._saved = None

    @staticmethod
    def available(stream=None) -> bool:
        stream = stream if stream is not None else sys.stdin
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=1)

    def run(self) -> None:
        import termios
        import tty

        fd = self.stream.fileno()
        self._saved = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd)
            while not self._halt.is_set():
                ready, _, _ = select.select([fd], [], [], 0.1)
                if ready:
                    key = os.read(fd, 1).decode(errors="ignore").lower()
                    action = self.actions.get(key)
                    if action is not None:
                        action()
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, self._saved)
