"""Loop latency with telemetry publishing every feature update, against telemetry off, in the same run.

One session runs throughout, in this process (where a session's telemetry publisher lives: its
asyncio thread shares the interpreter with the loop), on a simulated amplifier of 64 channels at
1000 Hz in blocks of 10 samples, computing theta/beta every 25 ms with feedback on every frame. The
run alternates phases: telemetry off, then on (a TelemetryPublisher on the session's event bus with
``rates: {features: all, feedback: all}``, publishing to a real mosquitto that a ``mosquitto_sub``
process drains), and so on. The loop latency of each frame is the session's own figure (journal
``feedback`` events: feedback sent minus the newest sample's stamp, so it includes the amplifier's
10-sample block). Frames in the first ``--settle`` seconds of each phase are left out.

    python bench/telemetry_latency.py [--phase 20] [--rounds 3] [--settle 3]

Prints median / p99 / max (ms) per phase and per condition, on-minus-off differences, the ratio, and
the run's own noise: the range of the same figure over the off phases. Needs mosquitto and aiomqtt.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pylsl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.events import EventBus  # noqa: E402
from controller.session import runner  # noqa: E402
from controller.telemetry.config import TelemetryConfig  # noqa: E402
from controller.telemetry.publisher import TelemetryPublisher  # noqa: E402

PROTOCOL = """
protocol: bench-telemetry
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stats(values: np.ndarray) -> str:
    if values.size == 0:
        return "no frames"
    ms = values * 1e3
    return (f"median {np.median(ms):6.2f}  p99 {np.percentile(ms, 99):6.2f}  max {ms.max():6.2f} ms  "
            f"(n {values.size})")


class _BusCatcher(EventBus):
    """The session's bus, caught as the runner makes it, so phases can attach and detach a publisher."""

    made: list[EventBus] = []

    def __init__(self) -> None:
        super().__init__()
        _BusCatcher.made.append(self)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase", type=float, default=20.0, help="seconds per phase (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="off+on pairs (default %(default)s)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds left out at each phase start")
    args = parser.parse_args()
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(mosquitto).exists() or not shutil.which("mosquitto_sub"):
        raise SystemExit("needs mosquitto and mosquitto_sub: apt-get install mosquitto mosquitto-clients")

    work = Path(tempfile.mkdtemp(prefix="nr-bench-telemetry-"))
    port = _free_port()
    (work / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen([mosquitto, "-c", str(work / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    drain = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", "neuroreflex/#"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    received = [0]
    threading.Thread(target=lambda: [received.__setitem__(0, received[0] + 1) for _ in drain.stdout or ()],
                     daemon=True).start()

    sid = f"bt{uuid.uuid4().hex[:6]}"
    name = f"bench-telemetry-{sid}-eeg"
    protocol = work / "protocol.yaml"
    protocol.write_text(PROTOCOL.format(name=name))
    total = args.phase * 2 * args.rounds + 30
    sim = subprocess.Popen([sys.executable, "-m", "controller.cli", "sim", "eeg", "--name", name, "--channels", "64",
                            "--rate", "1000", "--chunk", "10", "--duration", f"{total:g}", "--quiet"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cfg = TelemetryConfig.for_broker(f"mqtt://127.0.0.1:{port}", site="bench", features_hz=None, feedback_hz=None,
                                     queue=1000)
    runner.EventBus = _BusCatcher  # type: ignore[misc]  # the bench's handle on the session's bus
    opts = runner.RunOptions(protocol_path=protocol, session_root=work / "s", duration_s=total - 10, progress=None,
                             keyboard=False, build_report=False, session_id=sid, lsl_prefix=f"bench-{sid}",
                             operator="bench")
    outcome: dict = {}
    session = threading.Thread(target=lambda: outcome.setdefault("result", runner.run_session(opts)), daemon=True)
    session.start()
    phases: list[tuple[str, float, float, str]] = []
    try:
        deadline = time.monotonic() + 60
        while not _BusCatcher.made and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _BusCatcher.made:
            raise SystemExit("the session did not start")
        bus = _BusCatcher.made[0]
        time.sleep(6)  # the 2 s window filled, LabRecorder subscribed
        identity = {"session_id": sid, "protocol": "bench-telemetry", "software": "bench"}
        for _ in range(args.rounds):
            t0 = pylsl.local_clock()
            time.sleep(args.phase)
            phases.append(("off", t0 + args.settle, pylsl.local_clock(), ""))
            t0, before = pylsl.local_clock(), received[0]
            publisher = TelemetryPublisher(cfg, bus, identity).start()
            time.sleep(args.phase)
            stats = publisher.stop()
            phases.append(("on", t0 + args.settle, pylsl.local_clock(),
                           f"published {stats['published']}, dropped {stats['dropped']}, "
                           f"received by the subscriber {received[0] - before}"))
    finally:
        session.join(total + 60)
        sim.terminate()
        drain.terminate()
        broker.terminate()
        for p in (sim, drain, broker):
            p.wait(10)

    folder = outcome["result"].session_dir
    events = [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]
    events = [e for e in events if e["kind"] == "feedback" and e["data"].get("latency_s") is not None]
    t = np.array([e["t"] for e in events])
    lat = np.array([e["data"]["latency_s"] for e in events])
    by: dict[str, list[np.ndarray]] = {"off": [], "on": []}
    print(f"session {sid}: 64 ch x 1000 Hz in blocks of 10, tbr and feedback every 25 ms; phases of "
          f"{args.phase:g} s, first {args.settle:g} s of each left out; on = every feature and feedback published")
    for kind, a, b, note in phases:
        sel = lat[(t >= a) & (t < b)]
        by[kind].append(sel)
        print(f"  {kind:3s} {_stats(sel)}" + (f"   telemetry: {note}" if note else ""))
    off, on = np.concatenate(by["off"]), np.concatenate(by["on"])
    print(f"off {_stats(off)}")
    print(f"on  {_stats(on)}")
    for what, f in (("median", np.median), ("p99", lambda v: np.percentile(v, 99)), ("max", np.max)):
        diff = (f(on) - f(off)) * 1e3
        per_phase = [f(v) * 1e3 for v in by["off"] if v.size]
        noise = max(per_phase) - min(per_phase)
        verdict = "within" if abs(diff) <= noise else "OUTSIDE"
        print(f"{what:6s} on - off {diff:+6.2f} ms; run noise (range over the off phases) {noise:5.2f} ms: "
              f"{verdict} the noise; ratio on/off {f(on) / f(off):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
