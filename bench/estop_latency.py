"""E-STOP over the control channel: how long from "send" to the session's handler, and back.

A ControlListener runs in this process with a handler that only records when it was called
(the governor's own estop is timed elsewhere). Measured, in the same run:

  baseline     a bare UNIX-socket echo (connect, one line, one line back) on a thread server
  in-process   control_channel.send(estop): round trip, and send -> handler called
  CLI          `python -m controller.cli estop` as a new process, N times: spawn -> handler called
               (what the operator waits for after Enter), the CLI's own round trip, spawn -> exit;
               next to `python -c pass` (the interpreter's start-up floor). Twice: with the
               environment's PYTHONDONTWRITEBYTECODE (every module compiled at each start), and
               with a bytecode cache (as an installed package has).

Each is measured idle and with --load busy Python threads in the session process (the hot path
competes for the GIL; the switch interval is the runner's 0.5 ms).

    python bench/estop_latency.py [--n 300] [--cli-n 20] [--load 1]

Prints median / p99 / max in ms. Not a test: the figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller import control_channel as cc  # noqa: E402
from controller.runner import GIL_SWITCH_INTERVAL_S  # noqa: E402


def _stats(xs: list[float]) -> str:
    if not xs:
        return "no samples"
    ms = sorted(1000 * x for x in xs)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    return f"median {statistics.median(ms):7.3f}  p99 {p99:7.3f}  max {ms[-1]:7.3f} ms  (n={len(ms)})"


def _row(label: str, xs: list[float]) -> None:
    print(f"  {label:<44} {_stats(xs)}")


@contextmanager
def _busy(k: int):
    """k pure-Python threads spinning (they hold the GIL between switch intervals)."""
    halt = threading.Event()

    def spin() -> None:
        x = 0
        while not halt.is_set():
            for i in range(1000):
                x += i * i

    threads = [threading.Thread(target=spin, daemon=True) for _ in range(k)]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        halt.set()
        for t in threads:
            t.join()


def _echo_baseline(d: Path, n: int) -> list[float]:
    path = d / "echo.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(16)

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
                c.sendall(buf)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    out = []
    line = b'{"cmd":"estop","args":{"reason":"bench"}}\n'
    for _ in range(n):
        t0 = time.monotonic()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(path))
            s.sendall(line)
            buf = b""
            while not buf.endswith(b"\n"):
                buf += s.recv(4096)
        out.append(time.monotonic() - t0)
    srv.close()
    path.unlink()
    return out


def _in_process(path: Path, n: int, calls: list[float]) -> tuple[list[float], list[float]]:
    rtt, delay = [], []
    for _ in range(n):
        [r] = cc.send([path], cc.ESTOP, {"reason": "bench"})
        assert r.ok, r.error
        rtt.append(r.rtt_s)
        delay.append(r.handler_delay_s)
    return rtt, delay


_RTT = re.compile(r"round trip ([0-9.]+) ms")


def _cli(d: Path, n: int, calls: list[float], envs: dict[str, dict[str, str]]) -> dict[str, list[float]]:
    """The conditions interleaved run by run, so that the machine's drift affects each alike."""
    out: dict[str, list[float]] = {}
    cmd = [sys.executable, "-m", "controller.cli", "estop", "--dir", str(d), "--reason", "bench"]
    for _ in range(n):
        for label, env in envs.items():
            k = len(calls)
            t0 = time.monotonic()
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
            t1 = time.monotonic()
            if r.returncode != 0 or len(calls) <= k:
                print(f"CLI failed: {r.returncode} {r.stdout} {r.stderr}", file=sys.stderr)
                continue
            out.setdefault(f"CLI ({label}): spawn -> handler", []).append(calls[k] - t0)
            m = _RTT.search(r.stdout)
            if m:
                out.setdefault(f"CLI ({label}): its round trip", []).append(float(m.group(1)) / 1000)
            out.setdefault(f"CLI ({label}): spawn -> exit", []).append(t1 - t0)
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"])
        out.setdefault("baseline: spawn -> exit of `python -c pass`", []).append(time.monotonic() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300, help="in-process requests per condition")
    ap.add_argument("--cli-n", type=int, default=20, help="CLI runs per condition")
    ap.add_argument("--load", type=int, default=1,
                    help="busy Python threads in the 'loaded' condition (a worst case: they never wait)")
    args = ap.parse_args()

    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    d = Path(tempfile.mkdtemp(prefix="nr-bench-"))
    pycache = Path(tempfile.mkdtemp(prefix="nr-pyc-"))
    echo_dir = Path(tempfile.mkdtemp(prefix="nr-echo-"))  # not where the CLI looks for sessions
    calls: list[float] = []

    def handler(name: str, a: dict) -> dict:
        calls.append(time.monotonic())
        return {"message": "recorded"}

    nocache_env = {**os.environ}
    cached_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached_env["PYTHONPYCACHEPREFIX"] = str(pycache)  # keeps the repository free of __pycache__
    subprocess.run([sys.executable, "-m", "controller.cli", "estop", "--dir", str(d)], env=cached_env,
                   capture_output=True, cwd=ROOT)  # fills the cache (no session yet: exits 1)
    print(f"E-STOP latency over the control channel ({os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
          f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r})")
    try:
        with cc.ControlListener("bench", handler, d) as listener:
            for label, load in (("idle", 0), (f"{args.load} busy threads in the session", args.load)):
                with _busy(load):
                    print(f"\n[{label}]")
                    _row("baseline: bare UNIX-socket echo round trip", _echo_baseline(echo_dir, args.n))
                    rtt, delay = _in_process(listener.path, args.n, calls)
                    _row("in-process client: round trip", rtt)
                    _row("in-process client: send -> handler", delay)
                    res = _cli(d, args.cli_n, calls, {"no bytecode cache": nocache_env, "bytecode cache": cached_env})
                    for key in sorted(res, key=lambda k: (not k.startswith("baseline"), k)):
                        _row(key, res[key])
    finally:
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(pycache, ignore_errors=True)
        shutil.rmtree(echo_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
