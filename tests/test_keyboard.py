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


class _Engine:
    def __init__(self) -> None:
        self.acts: list[str] = []

    def pause(self):
        self.acts.append("pause")

    def resume(self):
        self.acts.append("resume")

    def skip_block(self):
        self.acts.append("skip")

    def stop(self, reason):
        self.acts.append(reason)


def test_estop_and_arm_keys_exist_only_when_the_runner_supplies_them():
    from controller.keyboard import help_text, key_actions

    eng = _Engine()
    plain = key_actions(eng)
    assert set(plain) == {"p", "r", "s", "q"} and "E-STOP" not in help_text(plain)
    reasons: list[str] = []
    full = key_actions(eng, estop=reasons.append, arm=lambda: None)
    assert set(full) == {"p", "r", "s", "q", "e", "a"}
    full["e"]()
    assert reasons == ["operator E-STOP (key e)"]
    assert help_text(full).startswith("keys: [e] E-STOP")


def _started(actions, **kw):
    import termios

    master, slave = os.openpty()
    stream = os.fdopen(slave, "r", closefd=False)
    before = termios.tcgetattr(slave)
    kb = KeyboardControl(actions, stream=stream, **kw)
    kb.start()
    deadline = time.monotonic() + 5
    while termios.tcgetattr(slave) == before and time.monotonic() < deadline:
        time.sleep(0.01)
    return kb, master, slave


def test_estop_key_is_not_held_up_by_a_slow_action():
    arming = threading.Event()
    release = threading.Event()
    stopped = threading.Event()
    order: list[str] = []

    def slow_arm():
        order.append("arm started")
        arming.set()
        release.wait(10)  # a Magstim takes ~1.1 s to arm
        order.append("arm finished")

    def estop():
        order.append("estop")
        stopped.set()

    kb, master, slave = _started({"a": slow_arm, "e": estop})
    os.write(master, b"aa")  # arming needs the key twice
    assert arming.wait(5)
    os.write(master, b"E")
    assert stopped.wait(5)  # while the arm action is still running
    assert order == ["arm started", "estop"]
    release.set()
    kb.stop()
    assert order == ["arm started", "estop", "arm finished"]
    os.close(master)
    os.close(slave)


def test_arm_needs_two_presses_and_another_key_cancels():
    armed: list[int] = []
    said: list[str] = []
    done = threading.Event()
    kb, master, slave = _started({"a": lambda: armed.append(1), "q": done.set}, notify=said.append)
    os.write(master, b"axa")  # x (not even a bound key) cancels the first a
    os.write(master, b"q")
    assert done.wait(5)
    assert armed == [] and said.count("press [a] again within 3 s to arm") == 2
    done.clear()
    os.write(master, b"aaq")
    assert done.wait(5)
    kb.stop()
    assert armed == [1]
    os.close(master)
    os.close(slave)


def test_a_failing_action_does_not_end_the_keyboard():
    said: list[str] = []
    done = threading.Event()

    def broken():
        raise RuntimeError("engine gone")

    kb, master, slave = _started({"p": broken, "q": done.set}, notify=said.append)
    os.write(master, b"pq")
    assert done.wait(5)
    kb.stop()
    assert said == ["key [p] failed: RuntimeError: engine gone"]
    os.close(master)
    os.close(slave)
