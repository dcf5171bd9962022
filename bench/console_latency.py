"""Loop latency with the operator console attached and drawing, against detached, in the same run.

One session runs throughout (``neuroreflex run`` in its own process) on a simulated amplifier of
64 channels at 1000 Hz in blocks of 10 samples, computing theta/beta every 25 ms with feedback on
every frame. The run alternates phases: console detached, then attached (``neuroreflex console
--attach`` in its own process, offscreen, following all 64 channels at its normal frame rate), and so
on. The loop latency of each frame is the session's own figure (journal ``feedback`` events:
feedback sent minus the newest sample's stamp, so it includes the amplifier's 10-sample block).
Frames in the first ``--settle`` seconds of each phase are left out (the console's start-up).

    python bench/console_latency.py [--phase 20] [--rounds 3] [--settle 4]

Prints median / p99 / max (ms) per phase and per condition, the attached-minus-detached differences,
and the run's own noise: the range of the same figure over the detached phases.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pylsl

ROOT = Path(__file__).resolve().parents[1]

PROTOCOL = """
protocol: bench-console
inputs:
  eeg: {{stream: {{name: {name}}}, channels: [Cz, Fp1, Fp2], reference: average, highpass: 0.5 Hz, notch: 50 Hz}}
features:
  tbr: {{band_ratio: {{input: eeg, channels: [Cz], numerator: [4 Hz, 8 Hz], denominator: [13 Hz, 21 Hz], window: 2 s, every: 25 ms}}}}
thresholds:
  goal: {{fixed: 2.0}}
timeline: [{{train: 1 h}}]
rules:
  - {{during: train, when: tbr < goal, do: {{feedback: reward}}}}
feedback: {{value: tbr, range: [4.0, 1.0]}}
"""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "controller.cli", *args]


def _journal(folder: Path) -> list[dict]:
    out = []
    for line in (folder / "journal.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _stats(values: np.ndarray) -> str:
    if values.size == 0:
        return "no frames"
    ms = values * 1e3
    return (f"median {np.median(ms):6.2f}  p99 {np.percentile(ms, 99):6.2f}  max {ms.max():6.2f} ms  "
            f"(n {values.size})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase", type=float, default=20.0, help="seconds per phase (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="detached+attached pairs (default %(default)s)")
    parser.add_argument("--settle", type=float, default=4.0, help="seconds left out at each phase start")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nr-bench-console-"))
    control = Path(tempfile.mkdtemp(prefix="nr-bc-"))
    env = {**os.environ, "NEUROREFLEX_CONTROL_DIR": str(control), "QT_QPA_PLATFORM": "offscreen"}
    sid = f"bc{uuid.uuid4().hex[:6]}"
    name = f"bench-console-{sid}-eeg"
    protocol = work / "protocol.yaml"
    protocol.write_text(PROTOCOL.format(name=name))
    total = args.phase * 2 * args.rounds + 60
    sim = subprocess.Popen(_cli("sim", "eeg", "--name", name, "--channels", "64", "--rate", "1000", "--chunk", "10",
                                "--duration", f"{total:g}", "--quiet"), env=env, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    session = subprocess.Popen(_cli("run", str(protocol), "--session-id", sid, "--session-dir", str(work / "s"),
                                    "--no-report", "--operator", "bench"), env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    phases: list[tuple[str, float, float, str]] = []
    try:
        from controller.operator.control_client import request

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            os.environ["NEUROREFLEX_CONTROL_DIR"] = str(control)
            replies = [r for r in request("status", {}, session=sid, timeout=2.0) if r.ok]
            if replies and replies[0].result.get("state") == "running":
                folder = Path(replies[0].result["folder"])
                break
            time.sleep(0.5)
        else:
            raise SystemExit("the session did not start: " + (session.stdout.read() if session.poll() else ""))
        time.sleep(5)  # the 2 s window filled, LabRecorder subscribed
        for _ in range(args.rounds):
            t0 = pylsl.local_clock()
            time.sleep(args.phase)
            phases.append(("detached", t0 + args.settle, pylsl.local_clock(), ""))
            t0 = pylsl.local_clock()
            console = subprocess.run(_cli("console", "--attach", sid, "--exit-after", f"{args.phase:g}",
                                          "--size", "1600x1000"),
                                     env=env, cwd=ROOT, capture_output=True, text=True, timeout=args.phase + 60)
            drawn = console.stdout.strip().splitlines()[-1] if console.stdout.strip() else console.stderr[-300:]
            phases.append(("attached", t0 + args.settle, pylsl.local_clock(), drawn))
    finally:
        request("stop", {"operator": "bench", "reason": "bench over"}, session=sid, timeout=5.0)
        session.wait(60)
        sim.terminate()
        sim.wait(10)

    events = [e for e in _journal(folder) if e["kind"] == "feedback" and e["data"].get("latency_s") is not None]
    t = np.array([e["t"] for e in events])
    lat = np.array([e["data"]["latency_s"] for e in events])
    by: dict[str, list[np.ndarray]] = {"detached": [], "attached": []}
    print(f"session {sid}: 64 ch x 1000 Hz in blocks of 10, feedback every 25 ms; phases of {args.phase:g} s, "
          f"first {args.settle:g} s of each left out")
    for kind, a, b, drawn in phases:
        sel = lat[(t >= a) & (t < b)]
        by[kind].append(sel)
        print(f"  {kind:9s} {_stats(sel)}" + (f"   console: {drawn}" if drawn else ""))
    detached, attached = np.concatenate(by["detached"]), np.concatenate(by["attached"])
    print(f"detached   {_stats(detached)}")
    print(f"attached   {_stats(attached)}")
    for what, f in (("median", np.median), ("p99", lambda v: np.percentile(v, 99)), ("max", np.max)):
        diff = (f(attached) - f(detached)) * 1e3
        per_phase = [f(v) * 1e3 for v in by["detached"] if v.size]
        noise = max(per_phase) - min(per_phase)  # how much the same condition moves from phase to phase
        verdict = "within" if abs(diff) <= noise else "OUTSIDE"
        print(f"{what:6s} attached - detached {diff:+6.2f} ms; run noise (range over the detached phases) "
              f"{noise:5.2f} ms: {verdict} the noise; ratio attached/detached {f(attached) / f(detached):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
