"""Accuracy and cost of real-time mu-alpha phase estimation for phase-triggered TMS (prints figures; not a test).

Real resting EEG (PhysioNet, ODC-By 1.0; see shared/data/MANIFEST.md):
- eegmat Subject00 rest, 500 Hz, 10-20 cap: no FC1/FC5/CP1/CP5, so the Laplacian around C3 uses
  the nearest 10-20 ring F3, Cz, P3, T3;
- eegmmidb S001R01 eyes-open baseline, 160 Hz, 64-ch 10-10 cap: C3 - mean(FC1, FC5, CP1, CP5).

The first ``--train`` seconds train what needs training (ETP period and peak/trough offsets, every
method's amplitude gate = the median of its own amplitude estimates there); pulses are fired on
the rest. Each method is streamed sample by sample (one evaluation per sample), a trigger fires
at the predicted target crossing with a minimum inter-pulse interval and the amplitude gate, and
every pulse is scored against the offline ground truth (zero-phase 8-13 Hz Butterworth +
Hilbert of the whole recording). "dense" scores the phase estimate at every gated evaluation of
the test part (many more samples than pulses, same error definition).

    .venv/bin/python bench/phase_accuracy.py [--delay 0.01] [--min-interval 2] [--train 20]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from controller.dsp.circular import angle_diff, circ_mean, circ_std
from controller.dsp.laplacian import C3_NEIGHBOURS_1010, C3_NEIGHBOURS_1020, Laplacian
from controller.dsp.phase.ar import ArPhase
from controller.dsp.phase.etp import EtpPhase, fit_etp
from controller.dsp.phase.naive import HilbertPhase
from controller.dsp.phase.tracker import PhaseTracker
from controller.dsp.phase.trigger import PhaseTrigger
from controller.dsp.phase.truth import TruePhase
from controller.lang.compiled import Band
from controller.offline.phase_replay import EstimateSeries, fire

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "eeg"
FILES = ("physionet_eegmat_Subject00_1_rest.edf", "physionet_eegmmidb_S001R01_baseline_eyes_open.edf")
MU = Band(8.0, 13.0)
TARGETS = {"trough": math.pi, "peak": 0.0}
T0 = 1000.0  # LSL time of the first sample


def load(path: Path) -> tuple[np.ndarray, float, list[str]]:
    import mne

    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    return np.ascontiguousarray(raw.get_data().T * 1e6), float(raw.info["sfreq"]), list(raw.ch_names)  # microvolts


def laplacian(labels: list[str]) -> tuple[Laplacian, str]:
    """C3 minus its 10-10 ring (the neighbours that exist); the 10-20 ring when none does. And a note saying which."""
    try:
        lap = Laplacian(labels, "C3", C3_NEIGHBOURS_1010, allow_missing=True)
    except ValueError:
        lap = Laplacian(labels, "C3", C3_NEIGHBOURS_1020)
        return lap, f"none of {', '.join(C3_NEIGHBOURS_1010)} exists: nearest 10-20 ring used"
    return lap, f"absent neighbours: {', '.join(lap.missing)}" if lap.missing else "all four 10-10 neighbours present"


def stream(tracker: PhaseTracker, data: np.ndarray, stamps: np.ndarray) -> tuple[EstimateSeries, np.ndarray, np.ndarray]:
    """One sample per push (one evaluation each): the estimates, and per evaluation the wall-clock and
    the thread CPU time of the push in us (CPU time leaves out preemption by other processes)."""
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    est, us, cpu_us = [], np.empty(data.shape[0]), np.empty(data.shape[0])
    for k in range(data.shape[0]):
        x, t = data[k : k + 1], stamps[k : k + 1]
        t0, c0 = wall(), cpu()
        out = tracker.push(x, t)
        c1, t1 = cpu(), wall()
        us[k], cpu_us[k] = (t1 - t0) / 1000.0, (c1 - c0) / 1000.0
        est.extend(out)
    due = np.zeros(data.shape[0], dtype=bool)
    series = EstimateSeries.of(est)
    due[series.sample_index] = True
    return series, us[due], cpu_us[due]


def methods(fs: float, target: float, delay: float, train_signal: np.ndarray) -> dict:
    model = fit_etp(train_signal, fs, MU)
    plain = fit_etp(train_signal, fs, MU, learn_offsets=False)
    return {
        "AR Burg 1 s (default)": ArPhase(fs, MU, delay_s=delay, target_phase=target),
        "AR Yule-Walker 1 s": ArPhase(fs, MU, fit="yule_walker", delay_s=delay, target_phase=target),
        "AR YW 0.5 s, edge 64ms, p30": ArPhase(fs, MU, window_s=0.5, edge_s=0.064, order=30, fit="yule_walker",
                                               delay_s=delay, target_phase=target),
        "ETP (learned offsets)": EtpPhase(fs, model, MU, delay_s=delay, target_phase=target),
        "ETP (peak=0, trough=180)": EtpPhase(fs, plain, MU, delay_s=delay, target_phase=target),
        "naive causal Hilbert": HilbertPhase(fs, MU, delay_s=delay, target_phase=target),
        "naive causal Hilbert, order 1": HilbertPhase(fs, MU, delay_s=delay, target_phase=target, order=1),
    }, model


def deg(a: float) -> float:
    return math.degrees(a)


def run_file(name: str, args: argparse.Namespace) -> None:
    path = DATA / name
    if not path.exists():
        print(f"{name}: absent ({path}); skipped")
        return
    data, fs, labels = load(path)
    lap, note = laplacian(labels)
    n = data.shape[0]
    stamps = T0 + np.arange(n) / fs
    x = lap.apply(data)
    truth = TruePhase(x, fs, MU, t0=T0)
    n_train = int(args.train * fs)
    train_end = T0 + args.train
    test = slice(n_train, n)
    print(f"\n{name}: {fs:.0f} Hz, {n / fs:.0f} s; Laplacian {lap.center} - mean({', '.join(lap.neighbours)}) ({note})")
    print(
        f"  train {args.train:.0f} s, test {(n - n_train) / fs:.0f} s; delay {args.delay * 1e3:.0f} ms, "
        f"min interval {args.min_interval} s, gate = median amplitude on train; true mu amplitude median "
        f"{np.median(truth.amplitude[test]):.2f} uV"
    )
    print(
        f"  {'target':6s} {'method':30s} {'pulses':>6s} {'mean err':>9s} {'circ SD':>8s} {'(95% CI)':>13s} | "
        f"{'dense mean':>10s} {'dense SD':>8s} | {'wall us med':>11s} {'p99':>7s} | {'cpu us med':>10s} {'p99':>6s}"
    )
    for tname, target in TARGETS.items():
        ms, model = methods(fs, target, args.delay, x[:n_train])
        if tname == "trough":
            print(
                f"  ETP model: period {model.period_s * 1e3:.1f} ms ({1 / model.period_s:.2f} Hz) over {model.n_cycles} "
                f"cycles; detected peak at true {deg(model.peak_phase):.0f} deg, trough at {deg(model.trough_phase):.0f} deg"
            )
        for mname, method in ms.items():
            tracker = PhaseTracker(fs, data.shape[1], lap, method, every_s=1.0 / fs)
            series, us, cpu = stream(tracker, data, stamps)
            train = series.source_time < train_end
            gate = float(np.nanmedian(series.amplitude[train]))
            trigger = PhaseTrigger(
                min_interval_s=args.min_interval, hop_s=1.0 / fs, amplitude_threshold=gate, device_delay_s=args.delay
            )
            pulses = fire(series, trigger, start_time=train_end)
            err = angle_diff(truth.phase_at(pulses), target) if pulses.size else np.empty(0)
            lo, hi = bootstrap_sd(err)
            dense = series.select(~train & (series.amplitude >= gate))
            derr = angle_diff(dense.phase, truth.phase_at(dense.at_time))
            derr = derr[np.isfinite(derr)]
            print(
                f"  {tname:6s} {mname:30s} {pulses.size:6d} {deg(circ_mean(err)):8.1f}° {deg(circ_std(err)):7.1f}° "
                f"({deg(lo):4.0f}-{deg(hi):4.0f}°) | {deg(circ_mean(derr)):9.1f}° {deg(circ_std(derr)):7.1f}° | "
                f"{np.median(us):11.1f} {np.percentile(us, 99):7.1f} | {np.median(cpu):10.1f} {np.percentile(cpu, 99):6.1f}"
            )


def bootstrap_sd(err: np.ndarray, n: int = 2000) -> tuple[float, float]:
    """95 % bootstrap interval of the circular SD of ``err`` (pulse counts are small)."""
    if err.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(0)
    sds = [circ_std(err[rng.integers(0, err.size, err.size)]) for _ in range(n)]
    return float(np.percentile(sds, 2.5)), float(np.percentile(sds, 97.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--delay", type=float, default=0.01, help="system delay from newest sample to pulse, s")
    ap.add_argument("--min-interval", type=float, default=2.0, help="minimum inter-pulse interval, s")
    ap.add_argument("--train", type=float, default=20.0, help="training segment at the start, s")
    ap.add_argument("--file", choices=("eegmat", "eegmmidb", "both"), default="both")
    args = ap.parse_args()
    for name in FILES:
        if args.file == "both" or args.file in name:
            run_file(name, args)


if __name__ == "__main__":
    main()
