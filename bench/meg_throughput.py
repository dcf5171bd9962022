"""MEG at full rate through the online pipeline (prints figures; not a test).

306 channels (the real Vectorview layout of ../shared/data/meg) at 5 kHz in chunks of 5 samples, signal-space
projection with three projectors, 1 Hz high-pass and 50 Hz notch, ten sensor_power features (gradiometer pairs
and magnetometers over the Vectorview regions; method iir, as protocols/meg_alpha.yaml) every 50 ms on 1 s
windows (``--welch``: the same by Welch's method, for comparison):

1. throughput: the pipeline fed as fast as it takes it, in-process: signal seconds per wall second;
2. loop latency over real LSL: ``sim meg`` (its own process) streams in real time; this process pulls each chunk,
   pushes it through the pipeline and stamps each feature value. Sample -> feature out (LSL time of the value
   minus the LSL time of the newest sample it used) against the bare LSL hop in the same run (pull time minus
   the chunk's newest sample's time): median, p99, max, and their difference;
3. memory: this process's resident memory every 10 s of the latency run (first, last, max, and the slope of a
   least-squares line through the samples after the first minute).

    .venv/bin/python bench/meg_throughput.py [--seconds 20] [--minutes 10] [--rate 5000] [--chunk 5]

``--minutes 10`` is the figure the README quotes (memory flat over ten minutes); ``--minutes 1`` for a quick run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.dsp.meg.front_end import SspFrontEnd  # noqa: E402
from controller.dsp.meg.ssp import Projector  # noqa: E402
from controller.features import FeaturePipeline  # noqa: E402
from controller.protocol import loads_protocol  # noqa: E402

MEG_FILE = ROOT.parent / "shared" / "data" / "meg" / "sample_audvis_trunc_raw_sss.fif"
REGIONS = ("Left-occipital", "Right-occipital", "Left-parietal", "Right-parietal")


METHOD = ["iir"]
CONDITIONING = "highpass: 1 Hz, notch: 50 Hz"


def protocol_text() -> str:
    feats = []
    for region in REGIONS:
        key = region.lower().replace("-", "_")
        feats.append(f"  alpha_grad_{key}: {{sensor_power: {{input: meg, sensors: grad, selection: {region}, "
                     "band: [8 Hz, 12 Hz], window: 1 s, every: 50 ms, method: iir}}")
        feats.append(f"  alpha_mag_{key}: {{sensor_power: {{input: meg, sensors: mag, selection: {region}, "
                     "band: [8 Hz, 12 Hz], window: 1 s, every: 50 ms, method: iir}}")
    feats.append("  beta_vertex: {sensor_power: {input: meg, sensors: grad, selection: Vertex, band: [13 Hz, 30 Hz], "
                 "window: 1 s, every: 50 ms, method: iir}}")
    feats.append("  gamma_temporal: {sensor_power: {input: meg, sensors: grad, selection: [Left-temporal, "
                 "Right-temporal], band: [60 Hz, 120 Hz], window: 1 s, every: 50 ms, method: iir}}")
    text = "\n".join(feats)
    if METHOD[0] == "welch":
        text = text.replace(", method: iir", "")
    return ("protocol: meg-bench\ninputs:\n  meg: {stream: {type: MEG}" + (f", {CONDITIONING}" if CONDITIONING else "")
            + "}\n"
            "features:\n" + text + "\ntimeline: [{train: 1 h}]\n")


def layout() -> tuple[list[str], list[str]]:
    import mne

    raw = mne.io.read_raw_fif(MEG_FILE, verbose=False).pick("meg")
    return list(raw.ch_names), list(raw.get_channel_types())


def pipeline(fs: float, labels: list[str], types: list[str], *, bare: bool = False) -> FeaturePipeline:
    """The bench's pipeline; ``bare``: the ten features alone (no SSP, no high-pass or notch)."""
    global CONDITIONING
    saved, CONDITIONING = CONDITIONING, ("" if bare else CONDITIONING)
    try:
        protocol = loads_protocol(protocol_text(), "meg-bench.yaml")
    finally:
        CONDITIONING = saved
    if bare:
        return FeaturePipeline(fs, labels, protocol.inputs["meg"], list(protocol.features.values()),
                               channel_types=types)
    rng = np.random.default_rng(1)
    meg = [i for i, t in enumerate(types) if t in ("grad", "mag")]
    projectors = [Projector(f"empty-room {k}", False, tuple(labels[i] for i in meg), rng.standard_normal(len(meg)))
                  for k in range(3)]
    front = SspFrontEnd.from_projectors(labels, types, projectors)
    return FeaturePipeline(fs, labels, protocol.inputs["meg"], list(protocol.features.values()),
                           channel_types=types, front_end=front)


def throughput(seconds: float, fs: float, chunk: int, labels: list[str], types: list[str], *,
               bare: bool = False) -> None:
    pipe = pipeline(fs, labels, types, bare=bare)
    rng = np.random.default_rng(0)
    block = rng.standard_normal((int(fs), len(labels))) * 1e-12  # 1 s of data, reused
    n = int(seconds * fs)
    stamps = np.arange(n) / fs
    values = 0
    per_chunk = []
    t0 = time.perf_counter()
    for a in range(0, n, chunk):
        b = a % block.shape[0]
        c0 = time.perf_counter_ns()
        values += len(pipe.push(block[b:b + chunk], stamps[a:a + chunk]))
        per_chunk.append(time.perf_counter_ns() - c0)
    wall = time.perf_counter() - t0
    us = np.asarray(per_chunk) / 1000.0
    front = "the features alone" if bare else "SSP (3 projectors), 1 Hz high-pass, 50 Hz notch"
    print(f"throughput: {len(labels)} ch @ {fs:g} Hz, chunks of {chunk}, {len(pipe.feature_names)} features "
          f"({METHOD[0]}) every 50 ms, {front}, {seconds:g} s of signal")
    print(f"  {seconds / wall:.1f}x real time ({wall:.2f} s wall for {seconds:g} s; {values} feature values)")
    print(f"  per chunk: median {np.median(us):.0f} us, p99 {np.percentile(us, 99):.0f} us, max {us.max():.0f} us "
          f"(a chunk arrives every {chunk / fs * 1e6:.0f} us)")


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _stats(name: str, v: np.ndarray) -> str:
    return f"{name:22s} median {np.median(v):6.2f} ms   p99 {np.percentile(v, 99):6.2f} ms   max {v.max():6.2f} ms"


def latency(minutes: float, fs: float, chunk: int, labels: list[str], types: list[str]) -> None:
    import pylsl

    name = f"meg-bench-{os.getpid()}"
    sim = subprocess.Popen([sys.executable, "-m", "sim", "meg", "--name", name, "--rate", f"{fs:g}", "--chunk",
                            str(chunk), "--marker-stream", "", "--quiet"], cwd=ROOT)
    try:
        found = pylsl.resolve_byprop("name", name, 1, 30.0)
        if not found:
            raise SystemExit("the simulator's stream did not appear")
        inlet = pylsl.StreamInlet(found[0], max_buflen=10, processing_flags=pylsl.proc_clocksync)
        inlet.open_stream(10.0)
        pipe = pipeline(fs, labels, types)
        # figures go into arrays allocated (and touched) up front, so the bench's own bookkeeping does not grow
        # the resident memory it measures
        pulls = int(minutes * 60.0 * fs / chunk * 1.5) + 1000
        hop, sizes = np.full(pulls, np.nan), np.full(pulls, 0, dtype=np.int64)
        loop = np.full(int(minutes * 60.0 * 20 * 10 * 1.5) + 1000, np.nan)
        n_hop = n_loop = 0
        memory: list[tuple[float, float]] = []
        end = time.monotonic() + 60.0 * minutes
        next_memory = time.monotonic()
        buf = np.empty((int(fs), len(labels)), dtype=np.float32)
        warm = time.monotonic() + 3.0  # the first seconds: imports, first windows
        cpu0 = wall0 = None
        while time.monotonic() < end:
            # as the session's reader pulls (controller/inputs/lsl/reader.py)
            _, stamps = inlet.pull_chunk(timeout=0.1, max_samples=buf.shape[0], dest_obj=buf, min_samples=1,
                                         as_numpy=True)
            if len(stamps) == 0:
                continue
            pulled = pylsl.local_clock()
            values = pipe.push(buf[:len(stamps)], stamps)
            out = pylsl.local_clock()
            if time.monotonic() < warm:
                continue
            if cpu0 is None:
                cpu0, wall0 = time.thread_time(), time.monotonic()
            if n_hop < hop.size:
                hop[n_hop], sizes[n_hop] = (pulled - stamps[-1]) * 1e3, len(stamps)
                n_hop += 1
            for v in values:
                if n_loop < loop.size:
                    loop[n_loop] = (out - v.source_time) * 1e3
                    n_loop += 1
            if time.monotonic() >= next_memory:
                memory.append((time.monotonic(), rss_mb()))
                next_memory += 10.0
        cpu = time.thread_time() - cpu0 if cpu0 is not None else float("nan")
        wall = time.monotonic() - wall0 if wall0 is not None else float("nan")
    finally:
        sim.terminate()
        sim.wait(10)
    h, lp, sizes = hop[:n_hop], loop[:n_loop], sizes[:n_hop]
    print(f"loop latency over LSL: {minutes:g} min, {h.size} pulls (samples per pull: median "
          f"{np.median(sizes):.0f}, max {sizes.max()}), {lp.size} feature values")
    print("  " + _stats("bare LSL hop", h))
    print("  " + _stats("sample -> feature out", lp))
    print(f"  difference (pipeline): median {np.median(lp) - np.median(h):+.2f} ms, "
          f"p99 {np.percentile(lp, 99) - np.percentile(h, 99):+.2f} ms, max {lp.max() - h.max():+.2f} ms")
    print(f"  the loop's thread used {cpu:.1f} CPU-s in {wall:.1f} s of streaming: {100 * cpu / wall:.1f} % of a core, "
          f"{wall / cpu:.1f}x headroom over real time (pull, pipeline, bookkeeping)")
    m = np.asarray(memory)
    if m.size:
        t, mb = m[:, 0] - m[0, 0], m[:, 1]
        later = t >= 60.0
        slope = np.polyfit(t[later], mb[later], 1)[0] * 60.0 if later.sum() >= 3 else float("nan")
        print(f"memory (RSS, every 10 s): first {mb[0]:.1f} MB, last {mb[-1]:.1f} MB, max {mb.max():.1f} MB, "
              f"slope after the first minute {slope:+.3f} MB/min")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="signal seconds for the throughput figure")
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the LSL latency and memory run")
    ap.add_argument("--rate", type=float, default=5000.0)
    ap.add_argument("--chunk", type=int, default=5)
    ap.add_argument("--welch", action="store_true", help="band power by Welch's method instead of iir")
    args = ap.parse_args()
    METHOD[0] = "welch" if args.welch else "iir"
    if not MEG_FILE.exists():
        raise SystemExit(f"the real MEG layout is missing: {MEG_FILE}")
    labels, types = layout()
    throughput(args.seconds, args.rate, args.chunk, labels, types)
    throughput(args.seconds, args.rate, args.chunk, labels, types, bare=True)
    latency(args.minutes, args.rate, args.chunk, labels, types)


if __name__ == "__main__":
    main()
