"""Seizure-onset detection on a real recording: latency, false detections, cost (prints figures; not a test).

Recording: shared/data/seizure/ombao_malow_8ch.tar.gz, scalp EEG of one epilepsy patient
(University of Michigan, B. Malow; Wang, Ombao & Chung 2018, Ann. Appl. Stat. 12:1506): 8 channels
c3 c4 cz p3 p4 t3 t4 t5, 100 Hz, 32,678 samples. MANIFEST: "the first half precedes the seizure,
the second half is ictal". ASSUMPTION: the annotated onset is the midpoint, sample 32678 // 2 =
16339 (t = 163.39 s); the only annotation is that half/half split.

Protocol of the evaluation (all detectors run causally, chunk by chunk, with the streaming classes):
- the 30 s long-term trend warms up on pre-ictal [0, 30) s (ratios are undefined there);
- TRAIN = pre-ictal [30 s, 96.7 s): thresholds are chosen here and only here;
- TEST  = pre-ictal [96.7 s, 163.39 s): held-out false detections (counted as off->on transitions);
- ictal [163.39 s, end): detection latency = first evaluation at or after the onset that is "on".
Threshold rules (fixed before looking at the ictal half):
- single detectors: on when value > 1.1 x the channel's maximum over TRAIN;
- half-wave amplitude threshold: the channel's 95th percentile of TRAIN half-wave amplitudes (3-30 Hz);
- LL AND half-wave: each component at its own TRAIN 99th percentile (two independent signs allow
  lower single thresholds);
- channel vote: on when at least VOTE of the 8 channels are on.
One false detection in the 66.7 s TEST part is 54 per hour: these figures are coarse.

    .venv/bin/python bench/seizure_detection.py [--chunk 10]
"""

from __future__ import annotations

import argparse
import tarfile
import time
from pathlib import Path

import numpy as np
from scipy import signal

from controller.dsp.design import bandpass_sos
from controller.dsp.seizure import (
    AreaDetector,
    HalfWaveDetector,
    HalfWaveParams,
    LineLengthDetector,
    SeizureValues,
    TrendedWindowParams,
)
from controller.dsp.seizure_offline import halfwaves, offline_line_length
from controller.protocol.compiled import Band

ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "seizure" / "ombao_malow_8ch.tar.gz"
CHANNELS = ("c3", "c4", "cz", "p3", "p4", "t3", "t4", "t5")
FS = 100.0
N_SAMPLES = 32678
ONSET = N_SAMPLES // 2  # 16339: the midpoint split of the MANIFEST (assumption, see above)
WARMUP_S, TRAIN_END_S = 30.0, (30.0 + ONSET / FS) / 2  # TRAIN = [30, 96.7) s, TEST = [96.7, 163.39) s
MARGIN = 1.1
HW_AMPLITUDE_Q = 95.0
AND_Q = 99.0
VOTE = 3
HW_BAND = Band(3.0, 30.0)

LL = TrendedWindowParams(window_s=1.0, every_s=0.1, trend_s=WARMUP_S)
AREA = TrendedWindowParams(window_s=1.0, every_s=0.1, trend_s=WARMUP_S, band=Band(1.0, 40.0))


def load() -> np.ndarray:
    """(n_samples, 8) in the archive's unit (microvolts), channel order CHANNELS."""
    if not ARCHIVE.exists():
        raise SystemExit(f"recording {ARCHIVE} is absent (shared/data not mounted)")
    with tarfile.open(ARCHIVE) as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        cols = [np.array(tar.extractfile(members[c]).read().split(), dtype=np.float64) for c in CHANNELS]
    data = np.stack(cols, axis=1)
    if data.shape != (N_SAMPLES, len(CHANNELS)):
        raise SystemExit(f"unexpected recording shape {data.shape}")
    return data


def halfwave_params(data: np.ndarray) -> HalfWaveParams:
    """Per-channel amplitude thresholds: the TRAIN percentile of each channel's half-wave heights."""
    x = signal.sosfilt(bandpass_sos(FS, HW_BAND), data, axis=0)  # causal, as the detector filters
    lo, hi = int(WARMUP_S * FS), int(TRAIN_END_S * FS)
    shortest, longest = 0.5 / HW_BAND.hi_hz * FS, 0.5 / HW_BAND.lo_hz * FS
    amplitudes = []
    for c in range(data.shape[1]):
        ends, amplitude, duration = halfwaves(x[:, c])
        train = (ends >= lo) & (ends < hi) & (duration >= shortest) & (duration <= longest)
        amplitudes.append(float(np.percentile(amplitude[train], HW_AMPLITUDE_Q)))
    return HalfWaveParams(min_amplitude=tuple(amplitudes), band=HW_BAND, window_s=1.0, every_s=0.1)


class Bank:
    """The detectors of the bench (one 8-channel object each), fed chunk by chunk; push times kept."""

    def __init__(self, hw: HalfWaveParams) -> None:
        n = len(CHANNELS)
        self.detectors = {
            "line length": LineLengthDetector(FS, n, LL),
            "area": AreaDetector(FS, n, AREA),
            "half-wave": HalfWaveDetector(FS, n, hw),
        }
        self.cost: dict[str, list[float]] = {k: [] for k in self.detectors}

    def run(self, data: np.ndarray, chunk: int) -> dict[str, SeizureValues]:
        clock = time.perf_counter_ns
        parts: dict[str, list[SeizureValues]] = {k: [] for k in self.detectors}
        for a in range(0, len(data), chunk):
            x = data[a : a + chunk]
            for name, det in self.detectors.items():
                t0 = clock()
                parts[name].append(det.push(x))
                self.cost[name].append((clock() - t0) / 1000.0)
        return {k: SeizureValues.concat(v, len(CHANNELS)) for k, v in parts.items()}


def onsets(on: np.ndarray) -> np.ndarray:
    """Off->on transitions of a boolean series (an 'on' first element counts)."""
    prev = np.concatenate([[False], on[:-1]])
    return on & ~prev


def first_after_onset(idx: np.ndarray, on: np.ndarray) -> list[float]:
    """Seconds from the onset to the first 'on' evaluation at or after it, per column and for the vote (NaN: never)."""
    columns = [*(on[:, c] for c in range(on.shape[1])), on.sum(axis=1) >= VOTE]
    out = []
    for series in columns:
        first = np.flatnonzero(series & (idx >= ONSET))
        out.append((idx[first[0]] - ONSET) / FS if first.size else float("nan"))
    return out


def oracle(data: np.ndarray) -> list[float]:
    """Non-causal yardstick: when the 1 s line length first exceeds its maximum over the WHOLE pre-ictal half.

    No line-length detector that stays silent throughout the pre-ictal half can fire earlier
    (up to the hop); it says when the data themselves first leave their pre-ictal range.
    """
    ref = offline_line_length(data, FS, LL)
    before = ref.sample_index < ONSET
    return first_after_onset(ref.sample_index, ref.value > ref.value[before].max(axis=0))


def summarize(label: str, idx: np.ndarray, on: np.ndarray, window_s: float, thresholds: list[str], yardstick: list[float]) -> None:
    """One table: per channel and channel vote, latency from the onset and false detections per hour."""
    train = (idx >= WARMUP_S * FS) & (idx < TRAIN_END_S * FS)
    test = (idx >= TRAIN_END_S * FS) & (idx < ONSET)
    hours_train = train.sum() * (idx[1] - idx[0]) / FS / 3600
    hours_test = test.sum() * (idx[1] - idx[0]) / FS / 3600
    print(f"\n{label}   (window {window_s:g} s; the window first lies wholly after the onset {window_s - 1 / FS:.2f} s after it)")
    print(f"  {'channel':8s} {'threshold':>12s} {'latency s':>10s} {'oracle s':>9s} {'FP/h TRAIN':>11s} {'FP/h TEST':>10s}")
    columns = [*(on[:, c] for c in range(on.shape[1])), on.sum(axis=1) >= VOTE]
    names = [*CHANNELS, f"vote>={VOTE}"]
    latencies = first_after_onset(idx, on)
    for c, (name, series) in enumerate(zip(names, columns)):
        latency = f"{latencies[c]:10.1f}" if np.isfinite(latencies[c]) else f"{'none':>10s}"
        fp_train = onsets(series[train]).sum() / hours_train
        fp_test = onsets(series[test]).sum() / hours_test
        th = thresholds[c] if c < len(thresholds) else ""
        print(f"  {name:8s} {th:>12s} {latency} {yardstick[c]:9.1f} {fp_train:11.0f} {fp_test:10.0f}")


def main(chunk: int) -> None:
    data = load()
    hw = halfwave_params(data)
    bank = Bank(hw)
    out = bank.run(data, chunk)
    idx = out["line length"].sample_index
    train = (idx >= WARMUP_S * FS) & (idx < TRAIN_END_S * FS)
    print(f"{len(CHANNELS)} channels @ {FS:g} Hz, {N_SAMPLES} samples; onset assumed at sample {ONSET} ({ONSET / FS:.2f} s)")
    print(f"warm-up [0, {WARMUP_S:g}) s, TRAIN [{WARMUP_S:g}, {TRAIN_END_S:.1f}) s, TEST [{TRAIN_END_S:.1f}, {ONSET / FS:.2f}) s")
    print(
        "latency: s from the assumed onset to the first detection; oracle: s from the onset until the 1 s line\n"
        "length first exceeds its maximum over the whole pre-ictal half (non-causal: when the data leave their\n"
        f"pre-ictal range); FP/h: off->on detections per hour; vote: >= {VOTE} of {len(CHANNELS)} channels on"
    )

    yardstick = oracle(data)
    scores = {"line length": out["line length"].ratio, "area": out["area"].ratio, "half-wave": out["half-wave"].value}
    units = {"line length": "x trend", "area": "x trend", "half-wave": "count"}
    for name, score in scores.items():
        limit = MARGIN * np.nanmax(score[train], axis=0)
        on = np.nan_to_num(score, nan=-np.inf) > limit
        summarize(f"{name} > {MARGIN} x TRAIN max ({units[name]})", idx, on, 1.0, [f"{v:.2f}" for v in limit], yardstick)
    print("  half-wave amplitude thresholds (uV): " + " ".join(f"{c}={a:.1f}" for c, a in zip(CHANNELS, hw.min_amplitude)))

    ll, hwc = scores["line length"], scores["half-wave"]
    ll_th = np.nanpercentile(ll[train], AND_Q, axis=0)
    hw_th = np.percentile(hwc[train], AND_Q, axis=0)
    both = (np.nan_to_num(ll, nan=-np.inf) > ll_th) & (hwc > hw_th)
    summarize(
        f"line length > TRAIN p{AND_Q:g} AND half-wave count > TRAIN p{AND_Q:g}",
        idx,
        both,
        1.0,
        [f"{a:.2f}&{b:.0f}" for a, b in zip(ll_th, hw_th)],
        yardstick,
    )

    # What the data show around the annotated onset: 1 s line length over the pre-ictal mean.
    steps = np.abs(np.diff(data, axis=0))
    base = steps[:ONSET].mean(axis=0) * FS
    secs = np.arange(int(ONSET / FS) - 3, int(ONSET / FS) + 33, 3)
    profile = [np.median(steps[int(s * FS) : int((s + 1) * FS)].sum(axis=0) / base) for s in secs]
    print("\nchannel-median 1 s line length / pre-ictal mean, around the onset (the data's own evidence):")
    print("  " + "  ".join(f"{s}s:{p:.1f}" for s, p in zip(secs, profile)))

    print(f"\nprocessing cost per chunk of {chunk} sample(s) ({chunk / FS * 1000:g} ms), whole recording:")
    for name, us in bank.cost.items():
        v = np.asarray(us[len(us) // 20 :])
        print(f"  {name:12s} median {np.median(v):7.1f} us   p99 {np.percentile(v, 99):7.1f} us")
    total = np.sum([np.asarray(v) for v in bank.cost.values()], axis=0)[len(bank.cost['area']) // 20 :]
    print(f"  {'all three':12s} median {np.median(total):7.1f} us   p99 {np.percentile(total, 99):7.1f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=int, default=10, help="samples per push (10 = 100 ms at 100 Hz)")
    args = parser.parse_args()
    main(args.chunk)
