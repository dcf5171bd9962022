"""SIGINT/SIGTERM E-STOP first, then stop: real signals to real subprocesses."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from controller.operator.estop_signals import estop_on_signals

ROOT = Path(__file__).resolve().parents[3]

# The main thread sits in a C call that does not return on a signal (pthread_mutex_lock retries
# after EINTR, like liblsl's waits) until the test writes a line to stdin.
STUCK_IN_C = textwrap.dedent("""
    import ctypes, sys, threading, time
    from controller.operator.estop_signals import estop_on_signals

    libc = ctypes.CDLL("libc.so.6")
    mutex = ctypes.create_string_buffer(64)  # zero bytes = PTHREAD_MUTEX_INITIALIZER
    held = threading.Event()

    def say(text):
        print(text, flush=True)

    def holder():
        libc.pthread_mutex_lock(mutex)
        held.set()
        while ctypes.c_int.from_buffer(mutex).value != 2:  # glibc: 2 = locked and someone waits
            time.sleep(0.001)
        say("ready")  # the main thread is inside pthread_mutex_lock now
        sys.stdin.readline()
        say("released")
        libc.pthread_mutex_unlock(mutex)

    threading.Thread(target=holder, daemon=True).start()
    held.wait()
    try:
        with estop_on_signals(lambda reason: say("estop " + reason)):
            libc.pthread_mutex_lock(mutex)  # blocks in C, the GIL released
            say("main returned")
    except KeyboardInterrupt as exc:
        say(f"stopped: {exc}")
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses glibc from ctypes")
@pytest.mark.parametrize("sig, name", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT (Ctrl-C)")])
def test_estop_happens_while_the_main_thread_is_stuck_in_c(sig, name):
    p = subprocess.Popen([sys.executable, "-c", STUCK_IN_C], cwd=ROOT, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        p.send_signal(sig)
        assert p.stdout.readline().strip() == f"estop signal {name}"  # before the main thread could run Python
        p.stdin.write("go\n")
        p.stdin.close()
        rest, err = p.stdout.read(), p.stderr.read()  # not communicate(): readline() may have buffered some
        p.wait(30)
    finally:
        p.kill()
    assert rest.splitlines() == ["released", f"stopped: signal {name}"], err  # E-STOP once, then the stop


SLEEPING = textwrap.dedent("""
    import signal, sys, time
    from controller.operator.estop_signals import estop_on_signals

    calls = []
    stops = []

    def estop(reason):
        calls.append(reason)
        print("estop", len(calls), flush=True)
        if "fail" in sys.argv:
            raise RuntimeError("driver busy")

    with estop_on_signals(estop, stop=stops.append):
        print("ready", flush=True)
        while len(stops) < int(sys.argv[1]):
            time.sleep(0.01)
    print("calls", len(calls), "stops", len(stops), flush=True)
    print("reasons", stops, flush=True)
    print("restored", signal.getsignal(signal.SIGINT) is signal.default_int_handler,
          signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, signal.set_wakeup_fd(-1) == -1, flush=True)
""")


def _run_sleeping(signals: list[int], *extra: str) -> tuple[list[str], str]:
    p = subprocess.Popen([sys.executable, "-c", SLEEPING, str(len(signals)), *extra], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        for i, sig in enumerate(signals):
            p.send_signal(sig)
            assert p.stdout.readline().strip() == f"estop {i + 1}"  # each signal's E-STOP before the next
        out, err = p.stdout.read(), p.stderr.read()  # not communicate(): readline() may have buffered some
        p.wait(30)
    finally:
        p.kill()
    assert p.returncode == 0, err
    return out.splitlines(), err


def test_each_signal_estops_once_then_stops_and_handlers_are_restored():
    lines, _ = _run_sleeping([signal.SIGINT, signal.SIGTERM])
    assert lines[0] == "calls 2 stops 2" and lines[2] == "restored True True True"
    # the main thread may run the two handlers in either order
    assert sorted(eval(lines[1].removeprefix("reasons "))) == ["signal SIGINT (Ctrl-C)", "signal SIGTERM"]


def test_a_failing_estop_is_reported_and_does_not_break_the_main_thread():
    lines, err = _run_sleeping([signal.SIGTERM], "fail")
    assert len(lines) >= 3 and "stops 1" in lines[-3] and lines[-1] == "restored True True True", (lines, err)
    # reported on stderr (the watcher's attempt) or in the stop reason (the main thread's)
    assert "E-STOP on signal SIGTERM failed: RuntimeError: driver busy" in err or \
        "(E-STOP failed: RuntimeError: driver busy)" in lines[-2]


def test_only_the_main_thread_can_install_it():
    errors: list[BaseException] = []

    def other():
        try:
            with estop_on_signals(lambda r: None):
                pass
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join(10)
    assert errors and "main thread" in str(errors[0])


BURST = textwrap.dedent("""
    import signal, sys, time
    from controller.operator.estop_signals import estop_on_signals

    calls, stops = [], []
    with estop_on_signals(lambda reason: calls.append(reason), stop=stops.append):
        print("ready", flush=True)
        deadline = time.monotonic() + 20
        while not stops and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.5)  # the rest of the burst lands
    print("estops", len(calls) > 0, "stopped", len(stops) > 0, flush=True)
""")


def test_a_burst_of_signals_estops_and_never_deadlocks_the_handler():
    """A signal that lands while the main thread is inside the handler (holding its lock) must not make the
    handler wait on itself: a burst of 200 SIGTERMs still E-STOPs, stops, and the process ends."""
    p = subprocess.Popen([sys.executable, "-c", BURST], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        for _ in range(200):
            p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
            pytest.fail("the process hung on a burst of signals")
    assert p.returncode == 0, err
    assert out.strip() == "estops True stopped True"


NESTED = textwrap.dedent("""
    import os, signal, sys, time
    from controller.operator.estop_signals import estop_on_signals

    calls, stops = [], []

    def stop(reason):
        stops.append(reason)
        if len(stops) == 1:  # a second signal while the first one's handler is still running
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):  # bytecodes: the nested handler runs between two of them
                time.sleep(0.001)

    with estop_on_signals(calls.append, stop=stop):
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 10
        while len(stops) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    time.sleep(0.2)  # the watcher's late bytes, if any, would E-STOP a third time
    print(sorted(calls), stops, flush=True)
""")


def test_a_signal_during_the_handler_of_another_is_estopped_and_stopped_after_it():
    done = subprocess.run([sys.executable, "-c", NESTED], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls, stops = eval(done.stdout.strip().replace("] [", "], ["))
    assert calls == ["signal SIGINT (Ctrl-C)", "signal SIGTERM"]  # each E-STOPped once, by either side
    assert stops == ["signal SIGINT (Ctrl-C)", "signal SIGTERM"]  # the nested one after the first, not lost
