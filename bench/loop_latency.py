"""Loop latency: LSL push of a sample -> the decision it causes, against the bare LSL hop.

A separate process (as a real amplifier would be) pushes 64 channels at 1000 Hz in chunks
of 1 or 32 samples, stamping each chunk with local_clock() at the moment of the push.
The controller side runs the real hot path: InputReader (blocking pull) -> FeaturePipeline
(theta/beta Welch ratio at Cz, 2 s window) -> Engine (rule + reward) -> LSL marker outlet.
The figure is t_sent(decision) - t_source(newest sample). The bare hop is the same
inlet with no processing: pull time - push time, measured in the same run.

    python bench/loop_latency.py [--seconds 30] [--every 25ms]

Prints median / p99 / max in ms and the difference to the bare hop. Not a test: the
numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import threading
import time
import uuid

import numpy as np

N_CH, RATE = 64, 1000.0
WARMUP = int(RATE)  # the first second (connection set-up, first window filling) is not measured

PROTOCOL = """
protocol: bench-tbr
inputs:
  eeg: {{stream: {{name: {name}}}, channels: [Cz]}}
features:
  tbr: {{band_ratio: {{input: eeg, numerator: [4 Hz, 8 Hz], denominator: [13 Hz, 21 Hz], window: 2 s, every: {every}}}}}
thresholds:
  goal: {{fixed: 1000}}
timeline: [{{train: 1 h}}]
rules:
  - during: train
    when: tbr < goal
    do: {{feedback: reward}}
"""


def _producer(name: str, chunk: int, seconds: float, ready: mp.Event) -> None:
    import pylsl

    from controller.lsl_config import configure

    configure()

    from sim.montage import channel_labels

    info = pylsl.StreamInfo(name, "EEG", N_CH, RATE, "float32", name)
    chans = info.desc().append_child("channels")
    for label in channel_labels(N_CH):
        chans.append_child("channel").append_child_value("label", label)
    outlet = pylsl.StreamOutlet(info, chunk_size=chunk)
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((int(RATE * 4), N_CH)) * 20e-6).astype(np.float32)
    while not outlet.have_consumers():
        time.sleep(0.01)
    ready.set()
    period = chunk / RATE
    t0 = time.perf_counter()
    n_chunks = int(seconds / period)
    for i in range(n_chunks):
        due = t0 + (i + 1) * period
        while (left := due - time.perf_counter()) > 0:
            time.sleep(left if left > 0.0005 else 0)
        j = (i * chunk) % (len(data) - chunk)
        outlet.push_chunk(data[j:j + chunk], pylsl.local_clock())
    time.sleep(0.5)


def _stats(values_s: list[float]) -> tuple[int, float, float, float]:
    a = np.asarray(values_s) * 1000
    if a.size == 0:
        return 0, float("nan"), float("nan"), float("nan")
    return int(a.size), float(np.median(a)), float(np.percentile(a, 99)), float(a.max())


def _measure(chunk: int, seconds: float, every: str, process: bool) -> dict[str, list[float]]:
    import pylsl

    from controller.clock import now
    from controller.engine.engine import Engine
    from controller.events import EventBus
    from controller.features import FeaturePipeline
    from controller.inputs.lsl.reader import InputReader
    from controller.inputs.lsl.resolve import channel_labels
    from controller.inputs.source import Callbacks
    from controller.protocol import loads_protocol
    from drivers.base import Command, Output

    name = f"bench-{uuid.uuid4().hex[:8]}"
    ready = mp.get_context("spawn").Event()
    proc = mp.get_context("spawn").Process(target=_producer, args=(name, chunk, seconds, ready), daemon=True)
    proc.start()
    info = pylsl.resolve_bypred(f"name='{name}'", 1, 20)[0]
    out = {"chunk": [], "decision": []}
    current = {"base": 0, "ts": np.zeros(1)}

    def push_time(k: int, t_k: float) -> float:
        """liblsl back-dates the samples of a pushed chunk from the push time by 1/rate each."""
        return t_k + (chunk - 1 - k % chunk) / RATE

    def record_hops(ts: np.ndarray, t: float) -> None:
        # only the sample that completed a push has a timestamp equal to its push time
        idx = np.arange(current["base"], current["base"] + len(ts))
        keep = ((idx % chunk) == chunk - 1) & (idx >= WARMUP)
        out["chunk"].extend((t - ts[keep]).tolist())

    class Timestamping(Output):
        name = "bench"
        accepts = frozenset({"marker"})

        def open(self) -> None: ...

        def close(self) -> None: ...

        def send(self, command: Command) -> float:
            t = now()
            if command.payload.get("text") == "reward":
                ts = current["ts"]
                i = int(np.searchsorted(ts, command.t_source))
                if current["base"] + i >= WARMUP:
                    out["decision"].append(t - push_time(current["base"] + i, ts[i]))
            return t

    if process:
        protocol = loads_protocol(PROTOCOL.format(name=name, every=every))
        spec = protocol.inputs["eeg"]
        pipeline = FeaturePipeline(RATE, channel_labels(pylsl.StreamInlet(info).info(timeout=5)), spec,
                                   list(protocol.features.values()))
        engine = Engine(protocol, EventBus(), [Timestamping()])

        def on_chunk(data, ts):
            current["ts"] = ts
            engine.on_features(pipeline.push(data, ts))
            record_hops(ts, now())
            current["base"] += len(ts)
    else:
        def on_chunk(data, ts):
            current["ts"] = ts
            record_hops(ts, now())
            current["base"] += len(ts)

    reader = InputReader("bench", info, Callbacks(lambda c: on_chunk(c.data, c.timestamps)), stall_timeout_s=5.0)
    reader.open()
    if process:
        engine.start()
    reader.start()
    ready.wait(20)
    proc.join(seconds + 30)
    reader.stop()
    reader.join(2)
    return out


def main() -> None:
    from controller.lsl_config import configure

    configure()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per configuration")
    parser.add_argument("--every", default="25 ms", help="feature/decision period (window stays 2 s)")
    args = parser.parse_args()
    print(f"64 ch @ 1000 Hz, theta/beta Welch ratio at Cz (2 s window, every {args.every}), "
          f"{args.seconds:g} s per configuration\n")
    header = f"{'configuration':<50}{'n':>7}{'median':>9}{'p99':>9}{'max':>9}   (ms)"
    print(header)
    print("-" * len(header))
    for chunk in (1, 32):
        bare = _measure(chunk, args.seconds, args.every, process=False)["chunk"]
        loop = _measure(chunk, args.seconds, args.every, process=True)
        rows = [
            (f"bare LSL hop, chunk {chunk}", bare),
            (f"loop, push -> pulled and processed, chunk {chunk}", loop["chunk"]),
            (f"loop, push -> decision (window due), chunk {chunk}", loop["decision"]),
        ]
        for label, values in rows:
            n, med, p99, mx = _stats(values)
            print(f"{label:<50}{n:>7}{med:>9.3f}{p99:>9.3f}{mx:>9.3f}")
        _, bmed, bp99, _ = _stats(bare)
        _, dmed, dp99, _ = _stats(loop["decision"])
        print(f"{'  decision - bare hop':<50}{'':>7}{dmed - bmed:>+9.3f}{dp99 - bp99:>+9.3f}"
              f"   (p99 ratio {dp99 / bp99:.2f}x)\n")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
