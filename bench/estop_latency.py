"""E-STOP over the control channel: how long from "send" to the session's handler, and back.

A ControlListener runs in this process with a handler that only records when it was called
(the governor's own estop is timed elsewhere). Measured, in the same run:

  baseline     a bare UNIX-socket echo (connect, one line, one line back) on a thread server
  in-process   control_channel.send(estop): round trip, and send -> handler called
  CLI          the console scripts `neuroreflex estop` and `neuroreflex-estop` (where installed) as
               a new process, N times: spawn -> handler called (what the operator waits for after
               Enter), the CLI's own round trip, spawn -> exit; next to `python -c pass` (the
               interpreter's start-up floor, site and the editable install's finder included). Twice:
               with the environment's PYTHONDONTWRITEBYTECODE (every module compiled at each
               start), and with a bytecode cache (as an installed package has).
  devices      end to end, the requirement: real sessions (`neuroreflex run PROTOCOL --sim --arm`:
               tACS on a virtual Starstim, taVNS on a virtual trigger box, each a device process
               logging every command on the LSL clock = this host's monotonic clock), then
               `neuroreflex estop` as a new process: spawn -> the LAST device's disarm command
               (Starstim "abort", trigger box "low") in the device logs. The sessions themselves
               (simulated 64-channel EEG, DSP, devices) are load on the machine.

Each is measured idle and loaded: --load busy Python threads in the listener's process (the hot
path competes for the GIL; the switch interval is the runner's 0.5 ms) and --hog processes
spinning `while 1: pass` (competing for the CPUs with the new process).

    python bench/estop_latency.py [--n 300] [--cli-n 20] [--load 1] [--hog 1] [--e2e-n 20] [--no-devices]

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

from controller.operator import control_channel as cc  # noqa: E402
from controller.session.runner import GIL_SWITCH_INTERVAL_S  # noqa: E402


def _stats(xs: list[float]) -> str:
    if not xs:
        return "no samples"
    ms = sorted(1000 * x for x in xs)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    return f"median {statistics.median(ms):7.3f}  p99 {p99:7.3f}  max {ms[-1]:7.3f} ms  (n={len(ms)})"


def _row(label: str, xs: list[float]) -> None:
    print(f"  {label:<58} {_stats(xs)}")


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


def estop_commands() -> dict[str, list[str]]:
    """The operator's commands: the console scripts next to this interpreter (else `python -m`)."""
    bindir = Path(sys.executable).parent
    out = {}
    script = bindir / "neuroreflex"
    out["neuroreflex estop"] = [str(script), "estop"] if script.exists() else \
        [sys.executable, "-m", "controller.cli", "estop"]
    if (bindir / "neuroreflex-estop").exists():
        out["neuroreflex-estop"] = [str(bindir / "neuroreflex-estop")]
    return out


@contextmanager
def _hogs(k: int):
    """k processes spinning, each pinned to one core from the last down (the new process must share)."""
    ncpu = os.cpu_count() or 1
    procs = [subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{(ncpu - 1 - i) % ncpu}}})\n"
                                                     "while 1: pass"]) for i in range(k)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _cli(d: Path, n: int, calls: list[float], envs: dict[str, dict[str, str]]) -> dict[str, list[float]]:
    """The conditions interleaved run by run, so that the machine's drift affects each alike."""
    out: dict[str, list[float]] = {}
    commands = estop_commands()
    for _ in range(n):
        for label, env in envs.items():
            for name, cmd in commands.items():
                k = len(calls)
                t0 = time.monotonic()
                r = subprocess.run([*cmd, "--dir", str(d), "--reason", "bench"], capture_output=True, text=True,
                                   cwd=ROOT, env=env)
                t1 = time.monotonic()
                if r.returncode != 0 or len(calls) <= k:
                    print(f"CLI failed: {r.returncode} {r.stdout} {r.stderr}", file=sys.stderr)
                    continue
                out.setdefault(f"{name} ({label}): spawn -> handler", []).append(calls[k] - t0)
                m = _RTT.search(r.stdout)
                if m:
                    out.setdefault(f"{name} ({label}): its round trip", []).append(float(m.group(1)) / 1000)
                out.setdefault(f"{name} ({label}): spawn -> exit", []).append(t1 - t0)
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"])
        out.setdefault("baseline: spawn -> exit of `python -c pass`", []).append(time.monotonic() - t0)
    return out


# Which logged command is each virtual device's disarm (what the driver sends on E-STOP).
DISARM_MEANING = {"starstim": ("abort",), "triggerbox": ("low",)}
E2E_PROTOCOLS = ("tacs", "tavns")


def _read_log(path: Path) -> list[dict]:
    import json

    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line being written
    return out


def _last_disarm(logs, t0: float) -> float | None:
    """When the last device logged its first disarm after t0 (None, said on stderr, if one never did in 5 s)."""
    try:
        firsts = _wait(lambda: (lambda ts: ts if all(ts) else None)(
            [min(_disarm_times(log, t0), default=None) for log in logs]), 5, "the disarms logged")
    except RuntimeError as exc:
        print(f"  {exc}", file=sys.stderr)
        return None
    return max(firsts)


def _disarm_times(path: Path, after: float) -> list[float]:
    entries = _read_log(path)
    kind = next((e.get("device") for e in entries if e.get("type") == "start"), None)
    meanings = DISARM_MEANING.get(str(kind), ())
    return [e["t"] for e in entries if e.get("type") == "command" and e.get("t", 0) >= after
            and str(e.get("meaning", "")).startswith(meanings)]


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def _devices(n: int, hog: int) -> dict[str, list[float]]:
    """Real sessions with virtual devices; `neuroreflex estop` spawn -> every device's disarm logged."""
    ctl = Path(tempfile.mkdtemp(prefix="nr-e2e-"))
    root = Path(tempfile.mkdtemp(prefix="nr-e2e-sessions-"))
    env = {**os.environ, cc.ENV_DIR: str(ctl)}
    procs = []
    out: dict[str, list[float]] = {}
    try:
        for name in E2E_PROTOCOLS:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "controller.cli", "run", str(ROOT / "protocols" / f"{name}.yaml"), "--sim",
                 "--arm", "--duration", "3600", "--no-report", "--session-dir", str(root / name)],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        _wait(lambda: len(list(ctl.glob("*.sock"))) == len(procs) or any(p.poll() is not None for p in procs),
              120, "the sessions' control sockets")
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"a session ended at start: {p.stderr.read().decode()[-2000:]}")
        logs = _wait(lambda: (lambda found: found if len(found) == len(procs) else None)(
            sorted(root.glob("*/*/devices/*.jsonl"))), 60, "the device logs")
        time.sleep(2.0)  # the sessions under way (streams resolved, devices armed)
        print(f"  devices: {', '.join(p.stem for p in logs)} in {len(procs)} sessions "
              f"({', '.join(E2E_PROTOCOLS)}), logs {root}")
        for cond, k in (("sessions running", 0), (f"sessions running + {hog} spinning processes", hog)):
            with _hogs(k):
                for name, cmd in estop_commands().items():
                    key = f"{name}: spawn -> last device disarmed ({cond})"
                    for _ in range(n):
                        t0 = time.monotonic()
                        r = subprocess.run([*cmd, "--reason", "bench"], capture_output=True, text=True, env=env)
                        if r.returncode != 0:
                            print(f"estop failed: {r.returncode} {r.stdout} {r.stderr}", file=sys.stderr)
                            continue
                        last = _last_disarm(logs, t0)
                        if last is None:
                            continue
                        out.setdefault(key, []).append(last - t0)
                        time.sleep(0.2)
                # a resident `neuroreflex estop --standby` terminal: Enter -> every device disarmed
                standby = subprocess.Popen([*estop_commands()["neuroreflex estop"], "--standby", "--reason", "bench"],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                           text=True, env=env)
                standby.stdout.readline()  # its banner: ready
                key = f"neuroreflex estop --standby: Enter -> last device disarmed ({cond})"
                for _ in range(n):
                    t0 = time.monotonic()
                    standby.stdin.write("\n")
                    standby.stdin.flush()
                    last = _last_disarm(logs, t0)
                    if last is None:
                        continue
                    out.setdefault(key, []).append(last - t0)
                    time.sleep(0.2)
                standby.stdin.close()
                standby.wait(10)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(ctl, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300, help="in-process requests per condition")
    ap.add_argument("--cli-n", type=int, default=20, help="CLI runs per condition")
    ap.add_argument("--load", type=int, default=1,
                    help="busy Python threads in the 'loaded' condition (a worst case: they never wait)")
    ap.add_argument("--hog", type=int, default=1, help="spinning processes in the 'loaded' conditions")
    ap.add_argument("--e2e-n", type=int, default=20, help="E-STOPs per condition against the real sessions")
    ap.add_argument("--no-devices", action="store_true", help="skip the end-to-end run with real sessions")
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
            for label, load, hog in (("idle", 0, 0), (f"{args.load} busy threads in the session, "
                                                      f"{args.hog} spinning processes", args.load, args.hog)):
                with _busy(load), _hogs(hog):
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
    if not args.no_devices:
        print("\n[end to end: real sessions, virtual devices]")
        for key, xs in _devices(args.e2e_n, args.hog).items():
            _row(key, xs)


if __name__ == "__main__":
    main()
