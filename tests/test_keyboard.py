"""Operator keys through a real pseudo-terminal."""

from __future__ import annotations

import os
import threading
import time

from controller.keyboard import KeyboardControl


def test_keys_reach_their_actions_and_the_terminal_is_restored():
    import termios

    master, slave = os.openpty()
    stream = os.fdopen(slave, "r", closefd=False)
    before = termios.tcgetattr(slave)
    pressed: list[str] = []
    seen = threading.Event()

    def act(key):
        def f():
            pressed.append(key)
            if key == "q":
                seen.set()
        return f

    assert KeyboardControl.available(stream)
    kb = KeyboardControl({k: act(k) for k in "prsq"}, stream=stream)
    kb.start()
    deadline = time.monotonic() + 5
    while termios.tcgetattr(slave) == before and time.monotonic() < deadline:
        time.sleep(0.01)  # until it has switched the terminal to cbreak
    os.write(master, b"pxRsq")  # x is not a key; R is r
    assert seen.wait(5)
    kb.stop()
    assert pressed == ["p", "r", "s", "q"]
    assert termios.tcgetattr(slave) == before
    os.close(master)
    os.close(slave)


def test_not_a_terminal_is_not_available(tmp_path):
    with open(tmp_path / "f", "w+") as f:
        assert not KeyboardControl.available(f)
