"""Hardware-in-the-loop latency: LSL push of a triggering sample -> command bytes at the virtual device.

A separate process (as a real amplifier) pushes 64 channels at 1000 Hz, stamping each chunk
with local_clock() at the moment of the push and remembering every push time. Each path
(trigger box, Magstim) has its own channel on which a 1 mV, 5-sample pulse appears every
300 ms (the paths are 150 ms apart, so one device's work never delays the other's event).
The onset is the last sample of a pushed chunk, so its timestamp is its push time for any
``--chunk``.

The controller side is the real session path: InputReader -> runner wiring (input_seen,
NaN guard) -> FeaturePipeline (peak_to_peak over 10 ms, every sample) -> Engine (rule
``when: p2p > 300 uV``, refractory 100 ms, ``stimulate``) -> Stimulation -> Governor (site
limits, max_loop_latency 5 ms, dose ledger with fsync) -> driver -> pseudo-terminal ->
virtual device, which logs the arrival of every byte on the LSL clock. The session
watchdog runs too (it polls the governor and queries the devices every second).

The virtual devices run in their own processes (``python -m sim device KIND --log FILE``,
arrival times from the JSONL journal) when that command has ``--log``; otherwise as
threads in this process (arrival times from ``.received``). The line "devices:" says which.

Bench-only settings, documented here: the virtual Magstim 200² and its driver are given a
0.2 s recharge (the unit's real 2-4 s would allow one event in ten), and the site limits
allow a pulse every 100 ms. The latency budget stays the realistic 5 ms: a decision older
than that is refused (counted below) and raises the 'latency' interlock, which this bench
clears as an operator would (counted), so that the following events are measured. So is the
runner's 'clock_jump:eeg' interlock: with ``--chunk`` > 1 the push-time stamps back-dated by
liblsl step backwards by a few ms whenever a push is late, which the input reader reports
as a clock jump.

    python bench/hil_latency.py [--seconds 30] [--chunk 1] [--paths triggerbox,magstim] [--no-fsync]

Prints n / median / p99 / max in ms per path, next to the bare LSL hop of the same run
(push -> the inlet thread has the sample). Not a test: the numbers depend on the machine
and its load (printed at start and end).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

N_CH, RATE = 64, 1000.0
PERIOD_S = 0.3  # events per path
EVENT_LEN = 5  # samples of the pulse
EVENT_V = 1e-3  # pulse height; noise is 20 uV rms
NOISE_V = 20e-6
MATCH_S = 0.15  # a device arrival belongs to the event it follows by less than this
MAGSTIM_RECHARGE_S = 0.2  # bench setting for the virtual unit and the driver (see docstring)
CLOCK_JUMP = "clock_jump:"  # the runner's interlock for an input whose timestamps jumped


@dataclass(frozen=True)
class StimPath:
    """One measured path: its site device and driver, and the channel and feature that trigger it."""

    name: str  # --paths name
    device: str  # site/protocol device name
    driver: str
    channel: str
    feature: str
    offset_s: float  # event offset within the period
    device_options: dict[str, Any] = field(default_factory=dict)


PATHS = {
    "triggerbox": StimPath("triggerbox", "tb", "triggerbox", "C3", "tb_p2p", 0.0),
    "magstim": StimPath("magstim", "tms", "magstim", "C4", "ms_p2p", PERIOD_S / 2,
                        {"model": "200", "recharge_s": MAGSTIM_RECHARGE_S}),
}

SITE = """
site: bench-hil
timezone: UTC
max_loop_latency: 5 ms
input_stall: 1 s
devices:
{devices}
"""

SITE_DEVICES = {
    "triggerbox": """
  tb:
    driver: triggerbox
    port: {port}
    fixed_settings: {{current: 0.5 mA, pulse_width: 250 us, phases: 2}}
    limits:
      current_max: 5 mA
      pulse_width_max: 500 us
      frequency_max: 10 Hz
      min_pulse_interval: 100 ms
      pulses_per_session_max: 100000
""",
    "magstim": """
  tms:
    driver: magstim
    port: {port}
    options: {{model: "200", recharge_s: {recharge}}}
    limits:
      intensity_max: 50 %
      frequency_max: 10 Hz
      min_pulse_interval: 100 ms
      pulses_per_session_max: 100000
""",
}

PROTOCOL = """
protocol: bench-hil
inputs:
  eeg: {{stream: {{name: {name}}}, channels: [{channels}]}}
features:
{features}
timeline: [{{run: 1 h}}]
devices:
{devices}
rules:
{rules}
"""

PROTOCOL_DEVICE = {"triggerbox": "  tb: {current: 0.5 mA, pulse_width: 250 us, phases: 2}",
                   "magstim": "  tms: {intensity: 30 %}"}


# ----------------------------------------------------------------------------- schedule


def event_onsets(paths: list[StimPath], n_samples: int, chunk: int, first_s: float) -> dict[str, np.ndarray]:
    """Sample index of each event per path, moved to the last sample of its chunk (stamp = push time)."""
    out = {}
    for p in paths:
        starts = np.arange(first_s + p.offset_s, n_samples / RATE, PERIOD_S)
        idx = np.round(starts * RATE).astype(np.int64)
        idx = (idx // chunk) * chunk + chunk - 1
        out[p.name] = idx[idx + EVENT_LEN < n_samples]
    return out


# ----------------------------------------------------------------------------- sender process


def _sender(name: str, chunk: int, n_samples: int, channels: dict[str, int], onsets: dict[str, np.ndarray],
            ready: Any, result: Any) -> None:
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
    data = (rng.standard_normal((n_samples, N_CH)) * NOISE_V).astype(np.float32)
    for path, idx in onsets.items():
        for k in range(EVENT_LEN):
            data[idx + k, channels[path]] += EVENT_V
    n_chunks = n_samples // chunk
    pushed = np.full(n_chunks, np.nan)
    while not outlet.have_consumers():
        time.sleep(0.01)
    ready.set()
    period = chunk / RATE
    t0 = time.perf_counter()
    for i in range(n_chunks):
        due = t0 + (i + 1) * period
        while (left := due - time.perf_counter()) > 0:
            time.sleep(left if left > 0.0005 else 0)
        t = pylsl.local_clock()
        outlet.push_chunk(data[i * chunk:(i + 1) * chunk], t)
        pushed[i] = t
    result.put(pushed)
    time.sleep(0.5)


# ----------------------------------------------------------------------------- instrumentation


class Timed:
    """Wraps a callable and keeps how long each call took (perf_counter, seconds), by a key
    that ``key(args, result)`` gives (None: not kept)."""

    def __init__(self, fn: Callable, key: Callable[[tuple, Any], str | None] = lambda a, r: "all") -> None:
        self.fn, self.key = fn, key
        self.took: dict[str, list[float]] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        result = self.fn(*args, **kwargs)
        took = time.perf_counter() - t0
        key = self.key(args, result)
        if key is not None:
            self.took.setdefault(key, []).append(took)
        return result


@dataclass
class Receipts:
    """Per sample: when the inlet thread had it (LSL clock; filled per chunk, vectorised)."""

    t_recv: np.ndarray
    count: int = 0


# ----------------------------------------------------------------------------- devices


def device_log_supported() -> bool:
    """Whether ``python -m sim device`` takes ``--log`` (the JSONL journal with arrival times)."""
    try:
        out = subprocess.run([sys.executable, "-m", "sim", "device", "triggerbox", "--help"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "--log" in out.stdout


class Devices:
    """The virtual devices of the run: own processes with a journal, or threads in this process."""

    def __init__(self, paths: list[StimPath], folder: Path, process: bool) -> None:
        self.process = process
        self.ports: dict[str, str] = {}
        self._procs: dict[str, Any] = {}
        self._threads: dict[str, Any] = {}
        self._logs: dict[str, Path] = {}
        for p in paths:
            if process:
                from controller.session.stimulation import start_virtual_device

                log = folder / f"{p.device}.jsonl"
                dev = start_virtual_device(p.device, p.driver, log, p.device_options)
                self._procs[p.name], self._logs[p.name], self.ports[p.name] = dev, log, dev.port
            else:
                import importlib

                from sim.devices import KINDS

                dev = importlib.import_module(KINDS[p.driver]).create(**p.device_options)
                self.ports[p.name] = dev.start()
                self._threads[p.name] = dev

    def fire_arrivals(self, path: StimPath) -> np.ndarray:
        """LSL arrival times of the fire commands at the device, sorted."""
        if self.process:
            from controller.session.stimulation import read_device_log

            times = []
            for e in read_device_log(self._logs[path.name]):
                hexed = e.get("hex") or ""
                if e.get("type") != "command":
                    continue
                if path.driver == "triggerbox" and hexed and int(hexed[:2], 16) != 0:
                    times.append(e["t"])
                elif path.driver == "magstim" and hexed.startswith(b"EH".hex()):
                    times.append(e["t"])
            return np.sort(np.asarray(times, dtype=float))
        dev = self._threads[path.name]
        if path.driver == "triggerbox":
            return np.asarray([b.t for b in dev.bytes_received if b.value != 0], dtype=float)
        return np.asarray([t for t, frame in dev.frames if frame[:2] == b"EH"], dtype=float)

    def stop(self) -> None:
        for dev in self._procs.values():
            dev.stop()
        for dev in self._threads.values():
            dev.stop()


# ----------------------------------------------------------------------------- one run


@dataclass
class RunResult:
    push: np.ndarray  # per chunk
    receipts: Receipts
    onsets: dict[str, np.ndarray]
    arrivals: dict[str, np.ndarray]
    governor_s: dict[str, list[float]]  # allowed fire requests by device
    ledger_s: list[float]
    driver_s: dict[str, list[float]]
    refusals: dict[str, dict[str, int]]
    examples: dict[str, str]
    not_ready: dict[str, int]
    interlocks: dict[str, int]  # source -> times raised
    cleared: dict[str, int]  # interlock source -> times the bench cleared it
    chunk: int
    warmup_chunks: int


def run(paths: list[StimPath], seconds: float, chunk: int, first_s: float, fsync: bool, folder: Path,
        device_process: bool) -> RunResult:
    import pylsl

    from controller.engine.engine import Engine
    from controller.events import EventBus
    from controller.features import FeaturePipeline
    from controller.inputs.lsl.reader import InputReader, open_inlet
    from controller.inputs.lsl.resolve import channel_labels
    from controller.inputs.source import Chunk
    from controller.protocol import loads_protocol
    from controller.safety.commands import FIRE
    from controller.safety.governor import LATENCY_SOURCE, SAFETY, Governor
    from controller.safety.ledger import DoseLedger
    from controller.safety.site import loads_site
    from controller.session.signal_modality import signal_line
    from controller.stimulation.dispatcher import COMMAND, Link, Stimulation
    from controller.stimulation.watchdog import Watchdog
    from drivers.registry import driver_class
    from sim.montage import channel_labels as montage_labels

    name = f"bench-hil-{uuid.uuid4().hex[:8]}"
    n_samples = int(round(seconds * RATE)) // chunk * chunk
    onsets = event_onsets(paths, n_samples, chunk, first_s)
    labels = montage_labels(N_CH)

    devices = Devices(paths, folder, device_process)
    stim: Stimulation | None = None
    watchdog: Watchdog | None = None
    ledger: DoseLedger | None = None
    reader: InputReader | None = None
    proc = None
    try:
        site = loads_site(SITE.format(devices="".join(
            SITE_DEVICES[p.name].format(port=devices.ports[p.name], recharge=MAGSTIM_RECHARGE_S) for p in paths)))
        protocol = loads_protocol(PROTOCOL.format(
            name=name,
            channels=", ".join(p.channel for p in paths),
            features="\n".join(f"  {p.feature}: {{peak_to_peak: {{input: eeg, channels: [{p.channel}], "
                               f"window: 10 ms, every: 1 ms}}}}" for p in paths),
            devices="\n".join(PROTOCOL_DEVICE[p.name] for p in paths),
            rules="\n".join(f"  - when: {p.feature} > 300 uV\n    refractory: 100 ms\n"
                            f"    do: {{stimulate: {{device: {p.device}}}}}" for p in paths),
        ), site=site)

        bus = EventBus()
        commands = bus.subscribe({COMMAND})
        safety = bus.subscribe({SAFETY})
        ledger = DoseLedger(folder / "ledger.jsonl", tz=site.tzinfo, fsync=fsync)
        append = ledger.append
        if not fsync:  # the governor asks sync=True per dose entry, which overrides fsync=False
            def append(entry: Any, sync: bool | None = None, _append: Callable = ledger.append) -> int:
                return _append(entry, sync=False)
        ledger.append = Timed(append)  # type: ignore[method-assign]
        governor = Governor(site, ledger, f"bench-{uuid.uuid4().hex[:6]}", publish=bus.publish)
        refusals: dict[str, dict[str, int]] = {p.device: {} for p in paths}
        examples: dict[str, str] = {}  # limit -> the first refusal's text

        def fire_requests(args: tuple, verdict: Any) -> str | None:
            request = args[0]
            if request.kind != FIRE:
                return None
            if verdict.allowed:
                return request.device
            for v in verdict.violations:
                counts = refusals.setdefault(request.device, {})
                counts[v.limit] = counts.get(v.limit, 0) + 1
                examples.setdefault(v.limit, v.text)
            return None

        governor.request = Timed(governor.request, fire_requests)  # type: ignore[method-assign]
        links = {}
        driver_s: dict[str, list[float]] = {}
        for p in paths:
            cfg = site.device(p.device)
            on_error = lambda reason, n=p.device: stim and stim.device_error(n, reason)  # noqa: E731
            driver = driver_class(cfg.driver).from_site(p.device, cfg.port, cfg.options, on_error)
            driver.connect()
            timed = Timed(driver.fire)
            driver.fire = timed  # type: ignore[method-assign]
            driver_s[p.device] = timed.took.setdefault("all", [])
            links[p.device] = Link(p.device, driver)
        stim = Stimulation(governor, links, bus, operator="bench")
        problems = stim.prepare(protocol.devices) or stim.arm("bench")
        if problems:
            raise RuntimeError("device set-up refused: " + "; ".join(problems))
        watchdog = Watchdog(stim)  # started with the control loop below: it disarms all if not kicked

        ctx = mp.get_context("spawn")
        ready, result = ctx.Event(), ctx.Queue()
        proc = ctx.Process(target=_sender, daemon=True, args=(
            name, chunk, n_samples, {p.name: labels.index(p.channel) for p in paths}, onsets, ready, result))
        proc.start()
        info = pylsl.resolve_bypred(f"name='{name}'", 1, 30)[0]
        opened = open_inlet("eeg", info, 20)
        pipeline = FeaturePipeline(RATE, channel_labels(opened.full_info), protocol.inputs["eeg"],
                                   list(protocol.features.values()))
        engine = Engine(protocol, bus, [], stimulation=stim)
        line = signal_line("eeg", pipeline, engine, bus, governor, protocol.inputs["eeg"].max_gap_s)
        rec = Receipts(np.full(n_samples, np.nan))

        class Receiving:
            """The session's own sink, with each chunk's arrival noted first."""

            def on_data(self, chunk: Chunk) -> None:
                a = rec.count
                rec.t_recv[a:min(a + len(chunk.timestamps), n_samples)] = chunk.arrival
                rec.count += len(chunk.timestamps)
                line.on_data(chunk)

            def on_status(self, status: str, detail: str, gap_s: float | None = None) -> None:
                line.on_status(status, detail, gap_s)

        reader = InputReader("eeg", opened, Receiving(), stall_timeout_s=1.0)
        engine.start()
        reader.start()
        watchdog.start()
        cleared: dict[str, int] = {}
        push = None
        deadline = time.monotonic() + seconds + 60
        while push is None and time.monotonic() < deadline:  # the session's control loop
            engine.tick()
            watchdog.kick()
            for source in governor.inhibitions:  # the operator clears these (counted)
                if source == LATENCY_SOURCE or source.startswith(CLOCK_JUMP):
                    governor.clear(source)
                    cleared[source] = cleared.get(source, 0) + 1
            try:
                push = result.get(timeout=0.02)
            except Exception:  # queue.Empty
                pass
        if push is None:
            raise RuntimeError("the sender process did not finish" if ready.is_set() else "the sender did not start")
        t_end = time.monotonic() + 2.0
        while rec.count < n_samples and time.monotonic() < t_end:
            time.sleep(0.02)
        time.sleep(0.3)  # the last commands reach the devices
        arrivals = {p.name: devices.fire_arrivals(p) for p in paths}
        not_ready = {p.device: 0 for p in paths}
        for e in commands.drain():
            if e.data.get("kind") == "not_ready":
                not_ready[e.data["device"]] = not_ready.get(e.data["device"], 0) + 1
        interlocks: dict[str, int] = {}
        for e in safety.drain():
            if e.data.get("what") == "inhibited":
                source = str(e.data.get("source"))
                interlocks[source] = interlocks.get(source, 0) + 1
                examples.setdefault(f"interlock {source}", str(e.data.get("reason")))
        return RunResult(push, rec, onsets, arrivals, governor.request.took, ledger.append.took.get("all", []),
                         driver_s, refusals, examples, not_ready, interlocks, cleared, chunk,
                         int(math.ceil(first_s * RATE / chunk)))
    finally:
        if reader is not None:
            reader.stop()
            reader.join(2)
        if watchdog is not None:
            watchdog.stop()
        if stim is not None:
            try:
                stim.close()
            except Exception as exc:  # report, and go on closing
                print(f"closing the devices: {exc}", file=sys.stderr)
        if ledger is not None:
            ledger.close()
        devices.stop()
        if proc is not None:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()


# ----------------------------------------------------------------------------- report


def stats_ms(values_s: np.ndarray | list[float]) -> tuple[int, float, float, float]:
    a = np.asarray(values_s, dtype=float)
    a = a[np.isfinite(a)] * 1000
    if a.size == 0:
        return 0, math.nan, math.nan, math.nan
    return int(a.size), float(np.median(a)), float(np.percentile(a, 99)), float(a.max())


def match(push_t: np.ndarray, arrivals: np.ndarray) -> np.ndarray:
    """Per event: the first device arrival after its push (within MATCH_S), as latency; NaN if none."""
    if arrivals.size == 0:
        return np.full(push_t.shape, np.nan)
    j = np.searchsorted(arrivals, push_t)
    ok = j < arrivals.size
    lat = np.full(push_t.shape, np.nan)
    lat[ok] = arrivals[j[ok]] - push_t[ok]
    lat[lat > MATCH_S] = np.nan
    return lat


WIDTH = 58


def row(label: str, values: Any) -> tuple[int, float, float, float]:
    s = stats_ms(values)
    n, med, p99, mx = s
    print(f"{label:<{WIDTH}}{n:>7}{med:>9.3f}{p99:>9.3f}{mx:>9.3f}")
    return s


def report(r: RunResult, paths: list[StimPath]) -> None:
    chunk = r.chunk
    rec = r.receipts
    last = np.arange(len(r.push)) * chunk + chunk - 1  # the sample that completed each push
    hop_all = rec.t_recv[last] - r.push
    hop_all[: r.warmup_chunks] = np.nan
    header = f"{'measure':<{WIDTH}}{'n':>7}{'median':>9}{'p99':>9}{'max':>9}   (ms)"
    print(header)
    print("-" * len(header))
    _, bmed, bp99, _ = row("bare LSL hop: push -> inlet thread has it, every push", hop_all)
    for p in paths:
        onsets = r.onsets[p.name]
        push_t = r.push[onsets // chunk]
        hop = rec.t_recv[onsets] - push_t
        lat = match(push_t, r.arrivals[p.name])
        print()
        row(f"{p.name}: bare LSL hop of its trigger samples", hop)
        what = "command byte" if p.driver == "triggerbox" else "EH (fire) bytes"
        _, dmed, dp99, _ = row(f"{p.name}: push -> {what} at the device", lat)
        row(f"{p.name}:   inlet thread has it -> at the device", lat - hop)
        _, gmed, _, _ = row(f"{p.name}:   Governor.request (allowed fire), incl. ledger",
                            r.governor_s.get(p.device, []))
        row(f"{p.name}:   driver.fire() call" + (" (incl. reply)" if p.driver == "magstim" else ""),
            r.driver_s[p.device])
        ratio = dp99 / bp99 if bp99 > 0 else math.nan
        print(f"{f'{p.name}:   device - bare hop (every push)':<{WIDTH}}{'':>7}{dmed - bmed:>+9.3f}"
              f"{dp99 - bp99:>+9.3f}   (p99 ratio {ratio:.1f}x; governor {gmed / dmed * 100:.0f} % of the median)")
        missing = int(np.isnan(lat).sum())
        refused = r.refusals.get(p.device, {})
        extra = int(r.arrivals[p.name].size - np.isfinite(lat).sum())
        print(f"  {p.name}: {onsets.size} events, {onsets.size - missing} reached the device, {missing} did not; "
              f"refused by the governor: {sum(refused.values())} "
              f"({', '.join(f'{k} {v}' for k, v in sorted(refused.items())) or 'none'}); "
              f"driver not ready: {r.not_ready.get(p.device, 0)}; unmatched device arrivals: {extra}")
    n_ledger = stats_ms(r.ledger_s)
    print()
    row("ledger append per dose, all devices", r.ledger_s)
    _, gmed, _, _ = stats_ms([x for v in r.governor_s.values() for x in v])
    if n_ledger[0] and gmed > 0:
        print(f"  ledger share of the governor's median: {n_ledger[1] / gmed * 100:.0f} %")
    raised = ", ".join(f"{k} {v}" for k, v in sorted(r.interlocks.items())) or "none"
    cleared = ", ".join(f"{k} {v}" for k, v in sorted(r.cleared.items())) or "none"
    print(f"  interlocks raised: {raised}; cleared by the bench, as an operator would: {cleared}")
    for limit, text in sorted(r.examples.items()):
        print(f"  first {limit if limit.startswith('interlock') else 'refusal for ' + limit}: {text}")


def main() -> None:
    from controller.lsl_config import configure

    configure()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="streaming time (default 30)")
    parser.add_argument("--chunk", type=int, default=1, help="samples per LSL push (default 1)")
    parser.add_argument("--paths", default="triggerbox,magstim", help="comma-separated: triggerbox, magstim")
    parser.add_argument("--no-fsync", action="store_true",
                        help="dose ledger entries written without fsync (bench only, to show its cost)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before the first event (default 2)")
    parser.add_argument("--devices", choices=("auto", "process", "thread"), default="auto",
                        help="virtual devices in their own processes (needs sim device --log) or threads")
    args = parser.parse_args()
    names = [n.strip() for n in args.paths.split(",") if n.strip()]
    unknown = [n for n in names if n not in PATHS]
    if unknown or not names:
        parser.error(f"--paths: unknown {unknown or 'empty'}; paths: {', '.join(PATHS)}")
    if args.chunk < 1 or args.seconds <= args.warmup:
        parser.error("--chunk must be >= 1 and --seconds longer than --warmup")
    paths = [PATHS[n] for n in names]
    process = args.devices == "process" or (args.devices == "auto" and device_log_supported())
    load0 = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="neuroreflex-hil-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    print(f"64 ch @ 1000 Hz, chunk {args.chunk}, {args.seconds:g} s; a 1 mV pulse every {PERIOD_S * 1000:.0f} ms "
          f"per path; peak_to_peak 10 ms every sample > 300 uV -> stimulate")
    print(f"devices: {'own processes (python -m sim device KIND --log)' if process else 'threads in this process'}; "
          f"dose ledger {'with' if not args.no_fsync else 'WITHOUT'} fsync in {folder}; max_loop_latency 5 ms")
    print(f"load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} ({os.cpu_count()} CPUs)\n")
    try:
        result = run(paths, args.seconds, args.chunk, args.warmup, not args.no_fsync, folder, process)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report(result, paths)
    load1 = os.getloadavg()
    print(f"\nload average at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
