"""Per-frame cost of the console's live page (prints figures; not a test).

64 channels at 1000 Hz in volts, 1 Hz high-pass + 50 Hz notch, fed to ``LivePage`` a frame's worth of
samples at a time (40 samples at 25 fps), offscreen. Each frame is timed in three parts:
``on_signal`` (filter + ring), ``refresh`` (decimation, spectrum when due, setData of every curve) and
``paint`` (the event loop painting what changed: the traces every frame, the spectrum a few times a
second, the status labels at 4 Hz), after the ring has filled once.
Reports median, 99th percentile and max in milliseconds, and the share of the 40 ms frame budget.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/console_draw.py [--seconds 20] [--fps 25] [--size 1600x1000]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from controller.console.live.live_page import LivePage  # noqa: E402
from controller.display.qt import application  # noqa: E402

FS = 1000.0
N_CHANNELS = 64


def status() -> dict:
    labels = ["Cz", "Fz", "Pz", "Oz"] + [f"E{i}" for i in range(5, N_CHANNELS + 1)]
    return {
        "session": "bench", "protocol": "tbr", "state": "running", "block": "nf1", "block_index": 1, "n_blocks": 3,
        "time_left_s": 20.0, "total_left_s": 80.0, "elapsed_s": 30.0,
        "blocks": [{"label": "rest", "start_s": 0.0, "duration_s": 20.0},
                   {"label": "nf1", "start_s": 20.0, "duration_s": 40.0},
                   {"label": "rest", "start_s": 60.0, "duration_s": 20.0}],
        "thresholds": {"target": 2.0}, "feedback": {"value": "tbr", "lo": 1.0, "hi": 4.0, "direction": "down"},
        "bands": {"theta": [4.0, 8.0], "beta": [13.0, 21.0]}, "channels": {"eeg": ["Cz"]},
        "reward_rates": [{"block": "rest", "frames": 100, "rewarded": 0}],
        "latency_ms": {"median": 1.0, "p99": 2.0, "max": 3.0, "n": 100},
        "watchdog": {"period_ms": 50.0, "margin_ms": 40.0},
        "inputs": {"eeg": {"stream": "bench-eeg", "srate": FS, "channels": labels, "units": "V",
                           "highpass_hz": 1.0, "notch_hz": 50.0}},
    }


def summary(name: str, ms: np.ndarray, budget_ms: float) -> str:
    return (f"  {name:22s} median {np.median(ms):7.2f} ms   p99 {np.percentile(ms, 99):7.2f} ms   "
            f"max {ms.max():7.2f} ms   ({100 * np.median(ms) / budget_ms:4.1f} % of the frame)")


def run(seconds: float, fps: float, size: tuple[int, int]) -> None:
    app = application()
    page = LivePage()
    page.resize(*size)
    page.show()
    app.processEvents()
    st = status()
    page.configure(st)
    app.processEvents()
    per_frame = int(round(FS / fps))
    warm = int(page.seconds * FS)  # fill the ring once: every curve drawn at full length
    n = warm + int(seconds * FS)
    rng = np.random.default_rng(0)
    t = 1000.0 + np.arange(n) / FS
    x = 5e-6 * rng.standard_normal((n, N_CHANNELS)) + 10e-3
    x[:, 0] += 20e-6 * np.sin(2 * np.pi * 10 * t)
    page.on_markers(["block_start:rest"], [1000.0])
    ft = 1000.0 + np.arange(0, n / FS, 0.1)
    page.on_features(np.column_stack([2 + np.sin(ft / 3)]), ft, ["tbr"])
    feed, refresh, paint = [], [], []
    clock = time.perf_counter_ns
    frame = 0
    for a in range(0, n - per_frame + 1, per_frame):
        if frame % max(1, int(fps / 4)) == 0:
            page.on_status(st)  # the ~4 Hz status poll, as the console does (its labels painted below)
        c0 = clock()
        page.on_signal(x[a:a + per_frame], t[a:a + per_frame])
        c1 = clock()
        page.refresh()
        c2 = clock()
        app.processEvents()  # Qt paints what changed, as the console's event loop does after the frame timer
        c3 = clock()
        frame += 1
        if a >= warm:
            feed.append((c1 - c0) / 1e6)
            refresh.append((c2 - c1) / 1e6)
            paint.append((c3 - c2) / 1e6)
    f, r, p = np.asarray(feed), np.asarray(refresh), np.asarray(paint)
    budget = 1000.0 / fps
    m = page.signal_model
    assert m is not None
    print(f"LivePage, {N_CHANNELS} ch @ {FS:.0f} Hz, {per_frame} samples per frame at {fps:g} fps, {f.size} frames, "
          f"window {size[0]}x{size[1]}, {m.columns} columns x {m.points_per_column} points per channel")
    print(summary("on_signal", f, budget))
    print(summary("refresh (models+setData)", r, budget))
    print(summary("paint (event loop)", p, budget))
    print(summary("on_signal + refresh", f + r, budget))
    print(summary("total", f + r + p, budget))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="timed stream seconds (after a 10 s warm-up)")
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--size", default="1600x1000", help="window size WxH in pixels")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    run(args.seconds, args.fps, (w, h))


if __name__ == "__main__":
    main()
