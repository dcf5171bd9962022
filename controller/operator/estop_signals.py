"""SIGINT/SIGTERM: E-STOP first, then the normal stop.

A Python signal handler only runs when the main thread returns to the interpreter, which can
be seconds away if it sits in a C call (an LSL resolve, a blocking read). The C-level handler,
however, writes the signal number to the wakeup fd at once; a small thread waiting on that fd
calls ``estop`` immediately. The Python-level handler in the main thread then asks for the
normal stop (by default it raises KeyboardInterrupt, which is what the runner already handles);
it calls ``estop`` itself only if it got there first, so each signal E-STOPs once.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

_NAMES = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}


def _name(signum: int) -> str:
    return _NAMES.get(signum, signal.Signals(signum).name)


def _default_stop(reason: str) -> None:
    raise KeyboardInterrupt(reason)


@contextmanager
def estop_on_signals(estop: Callable[[str], object], stop: Callable[[str], object] | None = None,
                     signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """While inside, each of ``signals`` calls ``estop(reason)`` at once (from a helper thread),
    then ``stop(reason)`` in the main thread (default: raise KeyboardInterrupt). Must be entered
    in the main thread; the previous handlers and wakeup fd are restored on exit. ``estop``
    must be thread-safe and idempotent (a second signal E-STOPs again)."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("estop_on_signals must be entered in the main thread (signal handlers live there)")
    stop = stop or _default_stop
    wanted = {int(s) for s in signals}
    lock = threading.Lock()
    # Each delivery is seen twice: a byte on the wakeup fd (watcher) and a handler call (main
    # thread). Whichever side sees delivery k first E-STOPs; the other skips it, except that the
    # main thread tries again if the watcher's attempt has already failed.
    seen = {"watcher": 0, "main": 0}
    watcher_failed = [False]

    in_handler = [False]
    queued: list[int] = []

    def handler(signum: int, frame: object) -> None:
        # A second signal can arrive while this handler runs (handlers run between the main thread's
        # bytecodes, this one's included): handling it there would take ``lock`` twice and deadlock.
        # It is queued instead and handled, E-STOP and stop, as soon as the first one is done.
        queued.append(signum)
        while queued and not in_handler[0]:
            in_handler[0] = True
            try:
                _handle(queued.pop(0))
            except BaseException:
                queued.clear()  # stop() raised (KeyboardInterrupt): the session is stopping anyway
                raise
            finally:
                in_handler[0] = False

    def _handle(signum: int) -> None:
        reason = f"signal {_name(signum)}"
        with lock:
            seen["main"] += 1
            go = seen["main"] > seen["watcher"] or watcher_failed[0]
            watcher_failed[0] = False
        if go:
            try:
                estop(reason)
            except Exception as exc:  # never raised into whatever the main thread was doing
                reason += f" (E-STOP failed: {type(exc).__name__}: {exc})"
        stop(reason)

    r, w = socket.socketpair()
    w.setblocking(False)

    def watch() -> None:
        while True:
            try:
                data = r.recv(64)
            except OSError:
                return
            if not data:
                return
            for b in data:
                if b not in wanted:
                    continue
                with lock:
                    seen["watcher"] += 1
                    go = seen["watcher"] > seen["main"]
                if not go:
                    continue
                try:
                    estop(f"signal {_name(b)}")
                except Exception as exc:
                    with lock:
                        watcher_failed[0] = True
                    print(f"neuroreflex: E-STOP on signal {_name(b)} failed: {type(exc).__name__}: {exc}",
                          file=sys.stderr, flush=True)

    watcher = threading.Thread(target=watch, name="estop-signals", daemon=True)
    watcher.start()
    old_fd = signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)  # first: no delivery without its byte
    old_handlers = {s: signal.signal(s, handler) for s in wanted}
    try:
        yield
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        signal.set_wakeup_fd(old_fd)
        w.close()  # the watcher sees EOF and ends
        watcher.join(timeout=1)
        r.close()
