"""Per-chunk cost of the streaming feature pipeline (prints figures; not a test).

64 channels at 1000 Hz, average reference, 0.5 Hz high-pass + 50 Hz notch, and a typical
neurofeedback feature set (theta/beta ratio by Welch and by IIR, EMG power, blink
peak-to-peak, relative alpha). Reports the median and 99th percentile time of ``push`` in
microseconds, separately for chunks where no window is due (the common case) and where one is.

    .venv/bin/python bench/dsp_throughput.py [--seconds 30] [--chunk 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from controller.features import FeaturePipeline
from controller.lang.compiled import Band, FeatureSpec, InputSpec, StreamSelector

FS = 1000.0
N_CHANNELS = 64


def build() -> tuple[list[str], FeaturePipeline]:
    labels = [f"EEG {i:02d}" for i in range(N_CHANNELS - 6)] + ["Cz", "Fz", "Fp1", "Fp2", "C3", "C4"]
    spec = InputSpec("eeg", StreamSelector(type="EEG"), (), reference="average", highpass_hz=0.5, notch_hz=50.0)
    theta, beta = Band(4, 8), Band(13, 21)
    features = [
        FeatureSpec("tbr", "band_ratio", "eeg", ("Cz",), 2.0, 0.1, numerator=theta, denominator=beta),
        FeatureSpec("tbr_iir", "band_ratio", "eeg", ("Cz", "Fz"), 2.0, 0.1, method="iir", numerator=theta, denominator=beta),
        FeatureSpec("emg", "band_power", "eeg", ("C3", "C4"), 0.5, 0.1, band=Band(45, 70)),
        FeatureSpec("blink", "peak_to_peak", "eeg", ("Fp1", "Fp2"), 0.5, 0.1, band=Band(0.5, 4)),
        FeatureSpec("alpha", "relative_power", "eeg", ("Cz", "Fz"), 2.0, 0.25, band=Band(8, 12)),
    ]
    return labels, FeaturePipeline(FS, labels, spec, features)


def run(seconds: float, chunk: int) -> None:
    labels, pipe = build()
    rng = np.random.default_rng(0)
    n = int(seconds * FS)
    data = rng.standard_normal((n, N_CHANNELS)) * 1e-5
    stamps = 100.0 + np.arange(n) / FS
    times, due = [], []
    clock = time.perf_counter_ns
    for a in range(0, n, chunk):
        x, t = data[a : a + chunk], stamps[a : a + chunk]
        t0 = clock()
        out = pipe.push(x, t)
        times.append((clock() - t0) / 1000.0)
        due.append(bool(out))
    skip = len(times) // 20  # drop the first 5% (caches, lazy imports)
    us, busy = np.asarray(times[skip:]), np.asarray(due[skip:])
    print(f"{N_CHANNELS} ch @ {FS:.0f} Hz, chunk {chunk}, {seconds:.0f} s of data, {len(pipe.feature_names)} features")
    for name, v in (("no window due", us[~busy]), ("window(s) due", us[busy]), ("all chunks", us)):
        if v.size:
            print(f"  {name:14s} n={v.size:6d}  median {np.median(v):8.1f} us   p99 {np.percentile(v, 99):8.1f} us   max {v.max():8.1f} us")
    total = float(np.sum(times))
    print(f"  real-time factor: {seconds * 1e6 / total:.0f}x faster than the stream")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--chunk", type=int, default=1)
    args = parser.parse_args()
    run(args.seconds, args.chunk)
