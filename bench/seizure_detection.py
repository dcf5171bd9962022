"""Seizure-onset detection of a protocol: sensitivity, latency from onset, false detections per hour (prints figures).

What is measured is the protocol file itself (default protocols/seizure_responsive.yaml): its
features computed by the streaming ``FeaturePipeline`` fed in amplifier blocks, its rule judged by
the ``Engine`` on the signal's clock, exactly as ``neuroreflex run`` does, only as fast as the CPU
goes. A detection is the rule firing; its latency is the detecting sample's time minus the onset.

Data sets
- real seizure: shared/data/seizure/ombao_malow_8ch.tar.gz (8 scalp channels, 100 Hz, in uV),
  electrographic onset at about 180 s (MANIFEST, corrected; rhythmic 3-4 Hz activity begins then);
  its pre-ictal part after the trend's warm-up is interictal time for false detections;
- real rest EEG: shared/data/eeg/physionet_eegmat_Subject00_1_rest.edf (the same 8 10-20 sites,
  500 Hz, 182 s; a healthy resting subject: every firing there is false);
- simulated seizures (sim.seizure): N recordings, each an evolving spike-and-wave seizure from a
  different focus, amplitude (2-4x background, the scalp range), starting rhythm and length, on the
  simulated participant's background; onset and offset are exact;
- simulated background: an hour (``--hours``) without seizures, for false detections per hour
  with a resolution real data this short cannot give.

False detections are counted as events: firings outside [onset, offset + 30 s] closer than the
rule's episode gap to the previous false firing are the same event. With zero events in T hours
the 95 % upper bound of the rate is 3.0 / T (Poisson); it is printed, since 4 minutes of real
interictal EEG cannot show 1/h.

Cost: time per pushed block of the protocol's pipeline, median, p99 and max, against the same
stream through a pipeline with the line length feature alone (the baseline, measured in the same run).

    .venv/bin/python bench/seizure_detection.py [--protocol FILE] [--seizures 20] [--hours 1] [--block 8]
"""

from __future__ import annotations

import argparse
import math
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controller import events as ev
from controller.engine.engine import Engine
from controller.events import EventBus
from controller.features import FeaturePipeline
from controller.lang.compiled import Protocol
from controller.protocol import load_protocol

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SEIZURE = DATA / "seizure" / "ombao_malow_8ch.tar.gz"
REST = DATA / "eeg" / "physionet_eegmat_Subject00_1_rest.edf"
REAL_ONSET_S = 180.0
LABELS = ("C3", "C4", "Cz", "P3", "P4", "T3", "T4", "T5")
AFTER_OFFSET_S = 30.0  # firings this long after a seizure's end still belong to it (not false)
GOALS = {"sensitivity": 0.95, "latency_s": 2.0, "false_per_h": 1.0}


@dataclass
class Recording:
    name: str
    data: np.ndarray  # (n, 8) volts
    rate: float
    onsets_s: tuple[float, ...] = ()
    offsets_s: tuple[float, ...] = ()
    visible_s: tuple[float, ...] = ()  # simulated: when the focus's discharge first matches the background


@dataclass
class Outcome:
    recording: Recording
    firings: list[float]  # sample times (s from the first sample) of the rule's firings
    interictal_h: float
    warmup_s: float

    def latencies(self, visible: bool = False) -> list[float]:
        """Per seizure: seconds from onset (or its visible onset) to the first firing within it (NaN: missed)."""
        out = []
        rec = self.recording
        for i, (onset, offset) in enumerate(zip(rec.onsets_s, rec.offsets_s)):
            hits = [t for t in self.firings if onset <= t <= offset]
            start = rec.visible_s[i] if visible and rec.visible_s else onset
            out.append(hits[0] - start if hits else math.nan)
        return out

    def false_events(self, gap_s: float) -> int:
        spans = [(a, b + AFTER_OFFSET_S) for a, b in zip(self.recording.onsets_s, self.recording.offsets_s)]
        false = [t for t in self.firings if not any(a <= t <= b for a, b in spans)]
        events, last = 0, -math.inf
        for t in false:
            if t - last >= gap_s:
                events += 1
            last = t
        return events


def _check_protocol(protocol: Protocol, need_rule: bool = True) -> tuple[str, float]:
    if len(protocol.inputs) != 1:
        raise SystemExit(f"{protocol.name}: the bench feeds one signal input, the protocol has {len(protocol.inputs)}")
    rules = [r for r in protocol.rules if r.when is not None]
    if need_rule and not rules:
        raise SystemExit(f"{protocol.name}: no rule with a condition to evaluate")
    gap = max([(r.episode_gap_s or r.refractory_s or 0.0) for r in rules], default=0.0)
    return next(iter(protocol.inputs)), gap


def run_protocol(protocol: Protocol, rec: Recording, block: int, cost: list[float] | None = None) -> Outcome:
    """Stream ``rec`` through the protocol's pipeline and engine in blocks of ``block`` samples."""
    name, _ = _check_protocol(protocol, need_rule=False)
    features = list(protocol.features.values())
    pipeline = FeaturePipeline(rec.rate, LABELS, protocol.inputs[name], features)
    clock_t = [0.0]
    bus = EventBus()
    decisions = bus.subscribe({ev.DECISION})
    engine = Engine(protocol, bus, [], clock=lambda: clock_t[0])
    engine.start(0.0)
    stamps = np.arange(rec.data.shape[0]) / rec.rate
    firings: list[float] = []
    clock = time.perf_counter_ns
    for a in range(0, rec.data.shape[0], block):
        b = min(a + block, rec.data.shape[0])
        t0 = clock()
        values = pipeline.push(rec.data[a:b], stamps[a:b])
        if cost is not None:
            cost.append((clock() - t0) / 1000.0)
        clock_t[0] = stamps[b - 1]
        engine.on_features(values)
        engine.tick()
        firings += [e.t_source for e in decisions.drain()]
        if engine.done.is_set():
            break
    warm = pipeline.warmup_s  # the trends' warm-up: no detection is possible before it
    quiet = _interictal_s(rec, warm)
    return Outcome(rec, firings, quiet / 3600.0, warm)


def _interictal_s(rec: Recording, warmup_s: float) -> float:
    total = rec.data.shape[0] / rec.rate - warmup_s
    for a, b in zip(rec.onsets_s, rec.offsets_s):
        lo, hi = max(a, warmup_s), max(min(b + AFTER_OFFSET_S, rec.data.shape[0] / rec.rate), warmup_s)
        total -= hi - lo
    return max(total, 0.0)


# ------------------------------------------------------------------ data sets

def real_seizure() -> Recording:
    if not SEIZURE.exists():
        raise SystemExit(f"recording {SEIZURE} is absent (shared/data not mounted)")
    with tarfile.open(SEIZURE) as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        cols = [np.array(tar.extractfile(members[c.lower()]).read().split(), dtype=np.float64) for c in LABELS]
    data = np.stack(cols, axis=1) * 1e-6  # the archive is in microvolts; the stream carries volts
    end = data.shape[0] / 100.0
    return Recording("real seizure (ombao_malow_8ch)", data, 100.0, (REAL_ONSET_S,), (end,))


def real_rest() -> Recording:
    import mne

    raw = mne.io.read_raw_edf(REST, verbose="error")
    picks = [f"EEG {c}" for c in LABELS]
    data = raw.get_data(picks=picks).T  # volts
    return Recording("real rest EEG (eegmat Subject00)", data, float(raw.info["sfreq"]))


def simulated_seizures(n: int, rate: float) -> list[Recording]:
    """``n`` seizures, one per recording: focus, amplitude (2-4x), rhythm, build-up (1-5 s) and length vary."""
    from sim.seizure import Seizure, SeizureConfig, SeizureSchedule, simulate_seizures

    rng = np.random.default_rng(20261207)
    foci = ("T3", "T4", "T5", "C3", "C4", "P3", "P4", "Cz")
    out = []
    for i in range(n):
        onset = float(rng.uniform(90.0, 120.0))
        duration = float(rng.uniform(30.0, 90.0))
        config = SeizureConfig(focus=foci[i % len(foci)], amplitude=float(rng.uniform(2.0, 4.0)),
                               start_hz=float(rng.uniform(5.0, 8.0)), end_hz=float(rng.uniform(2.5, 3.5)),
                               ramp_s=float(rng.uniform(1.0, 5.0)))
        rec = simulate_seizures(onset + duration + 40.0, SeizureSchedule((Seizure(onset, duration),), config),
                                channels=list(LABELS), rate=rate, seed=100 + i, keep_discharge=True)
        on, off = rec.onsets / rec.rate, rec.offsets / rec.rate
        out.append(Recording(f"sim {i + 1:2d} {config.focus} x{config.amplitude:.1f} ramp {config.ramp_s:.1f} s "
                             f"{config.start_hz:.1f}->{config.end_hz:.1f} Hz {duration:.0f} s",
                             rec.data, rec.rate, tuple(on), tuple(off), (_visible_onset(rec),)))
    return out


def _visible_onset(rec) -> float:
    """When the focus's discharge (1 s RMS) first reaches the background's 1-30 Hz RMS before the onset:
    about where an EEG reader would mark the electrographic onset of a seizure that builds up."""
    from scipy import signal

    focus = rec.labels.index(rec.focus)
    sos = signal.butter(4, (1.0, 30.0), btype="bandpass", fs=rec.rate, output="sos")
    onset = int(rec.onsets[0])
    background = np.sqrt(np.mean(signal.sosfilt(sos, rec.data[:onset, focus]) ** 2))
    second = int(rec.rate)
    power = np.convolve(rec.discharge[:, focus] ** 2, np.ones(second) / second, mode="full")[: rec.data.shape[0]]
    above = np.flatnonzero(np.sqrt(power[onset:]) >= background)
    return (onset + above[0]) / rec.rate if above.size else math.nan


def simulated_background(hours: float, rate: float) -> Recording:
    from sim.seizure import SeizureSchedule, simulate_seizures

    rec = simulate_seizures(hours * 3600.0, SeizureSchedule(()), channels=list(LABELS), rate=rate, seed=7)
    return Recording(f"simulated background {hours:g} h", rec.data, rec.rate)


# ------------------------------------------------------------------ report

def _rate(events: int, hours: float) -> str:
    if hours <= 0:
        return "n/a"
    bound = (3.0 if events == 0 else _poisson_upper(events)) / hours
    return f"{events / hours:6.1f}/h (95 % upper {bound:.1f}/h)"


def _poisson_upper(k: int) -> float:
    from scipy.stats import chi2

    return 0.5 * chi2.ppf(0.975, 2 * (k + 1))


def _percentiles(values: list[float]) -> str:
    v = np.asarray(values)
    return f"median {np.median(v):7.1f} us   p99 {np.percentile(v, 99):7.1f} us   max {v.max():8.1f} us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", type=Path, default=ROOT / "protocols" / "seizure_responsive.yaml")
    parser.add_argument("--seizures", type=int, default=20, help="simulated seizures (default 20)")
    parser.add_argument("--hours", type=float, default=1.0, help="simulated background hours (default 1)")
    parser.add_argument("--block", type=int, default=8, help="samples per pushed block (default 8, a g.USBamp's)")
    parser.add_argument("--rate", type=float, default=256.0, help="simulated sampling rate in Hz (default 256)")
    args = parser.parse_args()
    protocol = load_protocol(args.protocol)
    _, gap = _check_protocol(protocol)
    [rule] = [r for r in protocol.rules if r.when is not None][:1]
    print(f"protocol {args.protocol.name}: {rule.source!r}; blocks of {args.block} samples; "
          f"false firings closer than {gap:g} s are one event")

    latencies: list[float] = []
    from_visible: list[float] = []
    false_events, interictal_h = 0, 0.0
    sets = [("real", [real_seizure(), real_rest()]),
            ("simulated", simulated_seizures(args.seizures, args.rate) + [simulated_background(args.hours, args.rate)])]
    for kind, recordings in sets:
        print(f"\n{kind}:")
        print(f"  {'recording':48s} {'seizures':>8s} {'latency s':>10s} {'false':>5s} {'interictal':>10s}")
        for rec in recordings:
            out = run_protocol(protocol, rec, args.block)
            lat = out.latencies()
            latencies += lat
            if rec.visible_s:
                from_visible += out.latencies(visible=True)
            events = out.false_events(gap)
            false_events += events
            interictal_h += out.interictal_h
            shown = " ".join("missed" if math.isnan(x) else f"{x:.2f}" for x in lat) or "-"
            found = f"{sum(not math.isnan(x) for x in lat)}/{len(lat)}" if lat else "-"
            print(f"  {rec.name:48s} {found:>8s} {shown:>10s} {events:5d} {out.interictal_h * 60:8.1f} min")

    lat = np.asarray(latencies)
    hit = lat[~np.isnan(lat)]
    sens = hit.size / lat.size if lat.size else math.nan
    seen = np.asarray([x for x in from_visible if not math.isnan(x)])
    if seen.size:
        print(f"\nsimulated, from the visible onset (the focus's discharge as large as its background): "
              f"latency median {np.median(seen):.2f} s, max {seen.max():.2f} s")
    print(f"\nall: sensitivity {hit.size}/{lat.size} = {100 * sens:.0f} % (goal >= {100 * GOALS['sensitivity']:.0f} %); "
          f"latency from onset median {np.median(hit):.2f} s, max {hit.max():.2f} s (goal <= {GOALS['latency_s']:g} s); "
          f"false detections {false_events} in {interictal_h:.2f} h = {_rate(false_events, interictal_h)} "
          f"(goal <= {GOALS['false_per_h']:g}/h)")

    rec = real_seizure()
    cost: list[float] = []
    run_protocol(protocol, rec, args.block, cost)
    base_protocol = _only_first_feature(protocol)
    base: list[float] = []
    run_protocol(base_protocol, rec, args.block, base)
    skip = len(cost) // 20
    c, b = np.asarray(cost[skip:]), np.asarray(base[skip:])
    print(f"\ncost per block of {args.block} samples ({args.block / rec.rate * 1000:g} ms at {rec.rate:g} Hz), "
          f"{len(c)} blocks of the real recording:")
    print(f"  protocol ({len(protocol.features)} features)   {_percentiles(list(c))}")
    print(f"  baseline (line length only)  {_percentiles(list(b))}")
    print(f"  ratio protocol / baseline: median {np.median(c) / np.median(b):.2f}, p99 "
          f"{np.percentile(c, 99) / np.percentile(b, 99):.2f}")


def _only_first_feature(protocol: Protocol) -> Protocol:
    from dataclasses import replace

    first = next(iter(protocol.features))
    return replace(protocol, features={first: protocol.features[first]}, rules=(), thresholds={})


if __name__ == "__main__":
    main()
