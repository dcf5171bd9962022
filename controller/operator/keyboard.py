"""Operator keys in the run's terminal: pause, resume, skip a block, stop, E-STOP, arm.

Single keys, no Enter (cbreak mode), only when stdin is a terminal; the terminal's
settings are restored on exit. The keys map to engine acts, never to the hot path.

E-STOP is the one key ``e`` (either case), not also space or Esc: one key printed in the help
line is one thing to remember; space is "pause" in most players and gets pressed out of habit,
Esc begins every arrow-key sequence. The E-STOP key runs on the reading thread itself, the
instant it is read; the other acts run in order on a worker thread, so a slow one (arming a
Magstim takes ~1.1 s) never delays an E-STOP. Arming (``a``) is the one act in the unsafe
direction: it needs the key twice within CONFIRM_S, and any other key in between cancels it.
"""

from __future__ import annotations

import os
import queue
import select
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping

HELP = "keys: [p] pause  [r] resume  [s] skip block  [q] stop"
ESTOP_KEY = "e"
ARM_KEY = "a"
CONFIRM_S = 3.0
_LABELS = {"p": "pause", "r": "resume", "s": "skip block", "q": "stop", ESTOP_KEY: "E-STOP", ARM_KEY: "arm (twice)"}


def key_actions(acts, estop: bool = False, arm: bool = False) -> dict[str, Callable[[], object]]:
    """The session keys, through the operator's acts (controller.operator.acts: each one journaled
    with the key that did it), plus ``e`` (E-STOP) and ``a`` (arm the protocol's devices in the
    operator's name) when the session drives a stimulator."""
    actions: dict[str, Callable[[], object]] = {
        "p": lambda: acts.pause(via="key p"),
        "r": lambda: acts.resume(via="key r"),
        "s": lambda: acts.skip(via="key s"),
        "q": lambda: acts.stop(via="key q"),
    }
    if estop:
        actions[ESTOP_KEY] = lambda: acts.estop(f"operator E-STOP (key {ESTOP_KEY})", via=f"key {ESTOP_KEY}")
    if arm:
        actions[ARM_KEY] = lambda: acts.arm(via=f"key {ARM_KEY}")
    return actions


def help_text(actions: Iterable[str]) -> str:
    """The help line for the keys that are bound (E-STOP first: it is the one to find fast)."""
    keys = list(actions)
    order = [k for k in (ESTOP_KEY, "p", "r", "s", "q", ARM_KEY) if k in keys] + \
        [k for k in keys if k not in (ESTOP_KEY, "p", "r", "s", "q", ARM_KEY)]
    return "keys: " + "  ".join(f"[{k}] {_LABELS.get(k, k)}" for k in order)


class KeyboardControl(threading.Thread):
    """Reads single keys and runs their actions. ``urgent`` keys run on the reading thread the
    moment they are read; ``confirm`` keys need a second press within CONFIRM_S. ``notify(text)``
    hears prompts and action failures (an action that raises does not end the keyboard)."""

    def __init__(self, actions: Mapping[str, Callable[[], object]], stream=None, *,
                 urgent: Iterable[str] = (ESTOP_KEY,), confirm: Iterable[str] = (ARM_KEY,),
                 notify: Callable[[str], object] | None = None) -> None:
        super().__init__(name="keyboard", daemon=True)
        self.actions = dict(actions)
        self.stream = stream if stream is not None else sys.stdin
        self.urgent = frozenset(urgent)
        self.confirm = frozenset(confirm)
        self.notify = notify
        self._halt = threading.Event()
        self._saved = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="keyboard-actions", daemon=True)
        self._armed_key: tuple[str, float] | None = None  # (key, time) of a first press awaiting its second

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
        self._queue.put(None)
        if self._worker.is_alive():
            self._worker.join(timeout=1)

    def run(self) -> None:
        import termios
        import tty

        self._worker.start()
        fd = self.stream.fileno()
        self._saved = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd)
            while not self._halt.is_set():
                ready, _, _ = select.select([fd], [], [], 0.1)
                if ready:
                    data = os.read(fd, 64)
                    if not data:  # the terminal is gone
                        self._say("keyboard: the terminal closed; keys no longer read")
                        return
                    for key in data.decode(errors="ignore").lower():
                        self._press(key)
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, self._saved)

    def _press(self, key: str) -> None:
        action = self.actions.get(key)
        pending, self._armed_key = self._armed_key, None  # any key ends a pending confirmation
        if action is None:
            return
        if key in self.urgent:
            self._run(key, action)
            return
        if key in self.confirm:
            if pending is None or pending[0] != key or time.monotonic() - pending[1] > CONFIRM_S:
                self._armed_key = (key, time.monotonic())
                self._say(f"press [{key}] again within {CONFIRM_S:g} s to {_LABELS.get(key, key).split(' (')[0]}")
                return
        self._queue.put((key, action))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._run(*item)

    def _run(self, key: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as exc:
            self._say(f"key [{key}] failed: {type(exc).__name__}: {exc}")

    def _say(self, text: str) -> None:
        if self.notify is not None:
            try:
                self.notify(text)
            except Exception:
                pass
