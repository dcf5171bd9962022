"""Operator keys through a real pseudo-terminal."""

from __future__ import annotations

import os
import threading
import time

from controller.operator.keyboard import KeyboardControl


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
    """The engine's operator-facing calls, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def pause(self, reason=None):
        self.calls.append(("pause", reason))
        return True

    def resume(self, reason=None):
        self.calls.append(("resume", reason))
        return True

    def skip_block(self, reason=None):
        self.calls.append(("skip", reason))
        return True

    def stop(self, reason):
        self.calls.append(("stop", reason))

    def set_inhibit(self, source, reason):
        self.calls.append(("inhibit", reason))

    def snapshot(self):
        return {"block": "train"}


def test_keys_act_through_the_operators_acts_and_each_act_is_journaled_with_its_key():
    from controller import events as ev
    from controller.events import EventBus
    from controller.operator.acts import OperatorActs
    from controller.operator.keyboard import help_text, key_actions

    bus = EventBus()
    sub = bus.subscribe({ev.OPERATOR})
    eng = _Engine()
    acts = OperatorActs(eng, bus, "s1", "p", operator="ana")
    plain = key_actions(acts)
    assert set(plain) == {"p", "r", "s", "q"} and "E-STOP" not in help_text(plain)
    for key in "prsq":
        plain[key]()
    full = key_actions(acts, estop=True, arm=True)
    assert set(full) == {"p", "r", "s", "q", "e", "a"}
    full["e"]()
    assert help_text(full).startswith("keys: [e] E-STOP")
    assert [c[0] for c in eng.calls] == ["pause", "resume", "skip", "stop", "inhibit"]
    assert eng.calls[2] == ("skip", "skipped by the operator (key s)")
    journaled = [(e.data["act"], e.data["via"], e.data["by"]) for e in sub.drain()]
    assert journaled == [("pause", "key p", "ana"), ("resume", "key r", "ana"), ("skip", "key s", "ana"),
                         ("stop", "key q", "ana"), ("estop", "key e", "ana")]


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
