"""Telemetry at scale: N simulated sessions publish to one broker; one monitor measures what arrives.

Each simulated session is what a real session runs for telemetry: its own EventBus and its own
``TelemetryPublisher`` (its own MQTT client, asyncio thread, bounded queues and rate limits), fed with
the events a real session emits, built with the real records (controller/event_records.py): at every
frame (``--features-hz``, 10-40 Hz in real protocols) ``--features`` feature values and the feedback
value; every ``--block`` seconds a block change (rest / train, a threshold adapted after each train);
decisions while training when tbr < goal (at most one a second, like a paced rule); every 4-12 s a
stimulation request (the governor's verdict, the command, the delivered train; one in four refused,
with the governor's reason); once per session a pause of 1 s (state changes); start and end as a session
says them. The sessions' feature values, sample stamps and timings are random, not computed.

NOT full sessions: 20 sessions with their amplifiers, DSP, recorders and journals would not fit on the
2 CPUs this is developed on, and would measure the loop, not telemetry (bench/telemetry_latency.py
measures a full session's loop with telemetry on and off). Here the N publishers share one process and
its GIL, and one feeder thread stands for the N sessions' loops; on site each session is its own process,
usually on its own host, so the figures here are a pessimistic bound for the publishers' side.

The monitor is a separate process: one aiomqtt client subscribed to ``<prefix>/+/+/#``. Each payload
carries ``t``, the time its event was emitted on the session host's LSL clock (for features/feedback the
newest value's; a rate-limited value therefore waits up to one interval: that is what a monitor sees);
the monitor stamps arrival on the same clock (one host: LSL's clock is the host's monotonic clock),
so latency = arrival - t: the bus queue, the publisher's pump (every 10 ms), the outbox, the
broker and the monitor's client. Messages carry ``seq`` (per session, every topic): a gap is a message
lost anywhere between the publisher's building it and the monitor (the publisher's drops included).

Two phases in the same run, on the same broker: N=1 (the baseline) then N=``--sessions``, each with its
own topic prefix (no retained message of one phase reaches the other). Rates and latency are taken over
each phase's feeding window (``--seconds``, after every publisher has connected).

    python bench/telemetry_scale.py [--sessions 20] [--seconds 20] [--features-hz 20 | 10-40]
                                    [--rate all | 2] [--feedback-rate all | 10] [--broker mqtt://HOST:PORT]

``--rate``: the site config's ``rates: features:`` (``all``: every update; a number: at most that many
per second); ``--feedback-rate`` its ``feedback:`` (default: the same as ``--rate``). Without ``--broker``
the bench starts its own mosquitto (anonymous, loopback, as tests/mosquitto_broker.py does); with it, an
anonymous client must be allowed to publish and subscribe under the prefix. Needs aiomqtt and mosquitto.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import math
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402

from controller import event_records as rec  # noqa: E402
from controller.clock import now  # noqa: E402
from controller.events import EventBus  # noqa: E402
from controller.telemetry import topics as tp  # noqa: E402
from controller.telemetry.config import TelemetryConfig, parse_broker_url  # noqa: E402
from controller.telemetry.connection import client_options  # noqa: E402
from controller.telemetry.publisher import TelemetryPublisher  # noqa: E402

SITE = "bench"
DEVICE = "tms"
FEATURE_NAMES = ("tbr", "alpha", "theta", "beta", "smr", "gamma", "hbeta", "delta")
CONNECT_WAIT_S = 20.0
TAIL_S = 1.0  # after the publishers stopped, what is in flight gets this long to reach the monitor


# ----------------------------------------------------------------------------- one simulated session


@dataclass
class SimSession:
    """The events of one session's loop, as its engine, governor and dispatcher publish them."""

    index: int
    hz: float
    n_features: int
    bus: EventBus
    rng: np.random.Generator
    block_s: float
    seconds: float
    events: int = 0
    frames: int = 0
    late_s: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.session_id = f"s{self.index + 1:02d}"
        self.period = 1.0 / self.hz
        self.features = FEATURE_NAMES[: self.n_features]
        self.values = {name: float(self.rng.uniform(1.0, 3.0)) for name in self.features}
        self.goal = 2.0
        self.block = 0
        self.sample_index = 0
        self.decisions = 0
        self.trains = 0
        self.paused_until: float | None = None

    def identity(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "protocol": "bench-scale", "protocol_sha256": "0" * 64,
                "participant": f"p{self.index + 1:02d}", "operator": "bench", "software": "neuroreflex bench",
                "simulated": True, "started": time.time(), "devices": [DEVICE]}

    def _emit(self, record: rec.Record, t_source: float | None = None) -> None:
        self.bus.publish(record.event(now(), t_source))
        self.events += 1

    def _label(self, block: int) -> str:
        return "rest" if block % 2 == 0 else "train"

    def begin(self, t0: float) -> None:
        n_blocks = max(2, math.ceil(self.seconds / self.block_s) + 1)
        timeline = tuple(rec.TimelineEntry(k, self._label(k), self.block_s) for k in range(n_blocks))
        self._emit(rec.SessionStart(self.session_id, "bench-scale", "0" * 64, timeline, self.features[0],
                                    {"goal": "adaptive"}, {"goal": self.features[0]},
                                    {"eeg": {"channels": 32, "rate": 500.0}}, os.getpid()))
        self._emit(rec.InputStatus("eeg", "connected", "32 ch at 500 Hz"))
        self._emit(rec.Threshold("goal", self.goal, "fixed"))
        self._emit(rec.Command(DEVICE, "arm", True, None, now(), note="armed at the console"))
        self._emit(rec.State("running"))
        self._emit(rec.BlockStart(0, self._label(0), None, self.block_s), t0)
        self.t0 = t0
        self.next = t0 + float(self.rng.uniform(0.0, self.period))
        self.next_stim = t0 + float(self.rng.uniform(4.0, 12.0))
        self.pause_at = t0 + float(self.rng.uniform(0.2, 0.8)) * self.seconds
        self.last_decision = -math.inf

    def _block_edges(self, t: float) -> None:
        while t >= self.t0 + (self.block + 1) * self.block_s:
            edge = self.t0 + (self.block + 1) * self.block_s
            label = self._label(self.block)
            self._emit(rec.BlockEnd(self.block, label, None, self.frames, self.decisions,
                                    self.decisions / self.frames if self.frames else None), edge)
            if label == "train":
                self.goal *= float(self.rng.uniform(0.95, 1.05))
                self._emit(rec.Threshold("goal", self.goal, "adapt", 0.6, 0.55, self.frames), edge)
            self.block += 1
            self._emit(rec.BlockStart(self.block, self._label(self.block), None, self.block_s), edge)

    def tick(self, t: float) -> None:
        """The frame due at ``t`` (and what else falls due by then)."""
        self.late_s.append(now() - t)
        self.next = t + self.period
        self._block_edges(t)
        if self.paused_until is not None:
            if t < self.paused_until:
                return  # paused: no frames
            self.paused_until = None
            self._emit(rec.State("running", "operator: resume"))
        elif t >= self.pause_at:
            self.pause_at = math.inf
            self.paused_until = t + 1.0
            self._emit(rec.State("paused", "operator: pause"))
            return
        self.frames += 1
        self.sample_index += 10
        t_src = now() - float(self.rng.uniform(0.004, 0.02))  # the newest sample's stamp (an amplifier block ago)
        for name in self.features:
            self.values[name] = max(0.05, self.values[name] + float(self.rng.normal(0.0, 0.05)))
            self._emit(rec.Feature(name, self.values[name], self.sample_index, self.block), t_src)
        raw = self.values[self.features[0]]
        label = self._label(self.block)
        self._emit(rec.Feedback(min(1.0, max(0.0, (raw - 4.0) / (1.0 - 4.0))), raw, now() - t_src), t_src)
        if label == "train" and raw < self.goal and t - self.last_decision >= 1.0:
            self.last_decision = t
            self.decisions += 1
            latency = now() - t_src
            self._emit(rec.Decision("reward", 0, label, self.block, latency, latency - 0.003, "tbr < goal"), t_src)
        if t >= self.next_stim:
            self.next_stim = t + float(self.rng.uniform(4.0, 12.0))
            self._stimulate(t_src, label)

    def _stimulate(self, t_src: float, label: str) -> None:
        rule = "bench-scale rule 2"
        self.trains += 1
        latency = now() - t_src
        self._emit(rec.Decision(f"fire:{DEVICE}", 1, label, self.block, latency, latency - 0.003,
                                "tbr < goal and phase(alpha) == 0 deg"), t_src)
        if self.trains % 4 == 0:
            verdict = (f"refused: {DEVICE} fire: 12 pulses in the last 60 s would exceed the protocol's "
                       "limit pulses_per_minute 10")
            self._emit(rec.SafetyVerdict(False, verdict, DEVICE, "fire", "pulses_per_minute", 12.0, 10.0, rule),
                       t_src)
            self._emit(rec.Command(DEVICE, "fire", False, rule, reason=verdict), t_src)
            return
        self._emit(rec.SafetyVerdict(True, f"allowed: {DEVICE} fire", DEVICE, "fire", rule=rule), t_src)
        t_sent = now()
        self._emit(rec.Command(DEVICE, "fire", True, rule, t_sent, t_sent - t_src, t_sent - t_src - 0.003,
                               note="1 pulse, 60 % MSO", params={"intensity": 60.0}), t_src)
        self._emit(rec.TrainDelivered(DEVICE, self.trains, "fire", rule, 1.0, 1, 1.0, 1.0, confirmed=True,
                                      ended_by="complete", t_start=t_sent, t_end=t_sent), t_src)

    def end(self) -> None:
        self._emit(rec.BlockEnd(self.block, self._label(self.block), None, self.frames, self.decisions))
        self._emit(rec.State("stopped", "duration reached"))
        self._emit(rec.SessionEnd("completed", {"frames": self.frames, "decisions": self.decisions}))


# ----------------------------------------------------------------------------- the monitor (its own process)


def _monitor(url: str, topic_filter: str, prefix: str, conn: Any) -> None:
    asyncio.run(_monitor_main(url, topic_filter, prefix, conn))


async def _monitor_main(url: str, topic_filter: str, prefix: str, conn: Any) -> None:
    cfg = TelemetryConfig.for_broker(url)
    got: list[tuple[str, str, int | None, float | None, float, bool]] = []
    cpu0 = time.process_time()
    try:
        async with aiomqtt.Client(**client_options(cfg, client_id=f"bench-monitor-{uuid.uuid4().hex[:8]}"),
                                  timeout=10) as client:
            await client.subscribe(topic_filter, qos=1)

            async def receive() -> None:
                async for m in client.messages:
                    arrival = now()
                    name = tp.parse_topic(m.topic.value, prefix)
                    try:
                        body = json.loads(m.payload) if isinstance(m.payload, (bytes, bytearray)) else {}
                    except ValueError:
                        body = {}
                    got.append((name.kind if name else m.topic.value, name.session if name else "?",
                                body.get("seq"), body.get("t"), arrival, bool(m.retain)))

            task = asyncio.create_task(receive())
            conn.send("ready")
            try:
                await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stop"
            except EOFError:
                pass
            task.cancel()
    except Exception as exc:  # said to the bench, which stops with it
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
        return
    conn.send({"messages": got, "cpu_s": time.process_time() - cpu0})


# ----------------------------------------------------------------------------- one phase


def _proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _hz_of(spec: str, n: int) -> list[float]:
    """``20`` -> every session at 20 Hz; ``10-40`` -> spread evenly from 10 to 40 Hz."""
    lo, _, hi = spec.partition("-")
    a, b = float(lo), float(hi or lo)
    if n == 1:
        return [(a + b) / 2]
    return [a + (b - a) * k / (n - 1) for k in range(n)]


def run_phase(n: int, args: argparse.Namespace, url: str, broker_pid: int | None, run_id: str, phase: str,
              ) -> dict[str, Any]:
    prefix = f"neuroreflex-bench/{run_id}-{phase}"
    topic_filter = f"{prefix}/+/+/#"
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    monitor = ctx.Process(target=_monitor, args=(url, topic_filter, prefix, child), daemon=True)
    monitor.start()
    if not parent.poll(30):
        monitor.kill()
        raise SystemExit("the monitor did not subscribe within 30 s")
    first = parent.recv()
    if first != "ready":
        raise SystemExit(f"the monitor could not subscribe to {url}: {first.get('error')}")

    cfg = TelemetryConfig.for_broker(url, topic_prefix=prefix, site=SITE, features_hz=args.rate,
                                     feedback_hz=args.feedback_rate, queue=args.queue)
    rng = np.random.default_rng(args.seed + n)
    sessions = [SimSession(i, hz, args.features, EventBus(), rng, args.block, args.seconds)
                for i, hz in enumerate(_hz_of(args.features_hz, n))]
    publishers = [TelemetryPublisher(cfg, s.bus, s.identity()).start() for s in sessions]
    deadline = time.monotonic() + CONNECT_WAIT_S
    while not all(p.stats()["connected"] for p in publishers):
        if time.monotonic() > deadline:
            down = [p.session for p in publishers if not p.stats()["connected"]]
            raise SystemExit(f"{len(down)} publisher(s) not connected to {url} within {CONNECT_WAIT_S:g} s: "
                             f"{publishers[0].stats()['last_error']}")
        time.sleep(0.05)
    time.sleep(0.5)  # the retained pictures out of the way

    published0 = sum(p.stats()["published"] for p in publishers)
    cpu0, broker_cpu0 = time.process_time(), (_proc_cpu_s(broker_pid) if broker_pid else None)
    t0 = now()
    for s in sessions:
        s.begin(t0)
    t_end = t0 + args.seconds
    heap = [(s.next, s.index) for s in sessions]
    heapq.heapify(heap)
    while heap:
        due, i = heap[0]
        if due >= t_end:
            break
        wait = due - now()
        if wait > 0:
            time.sleep(wait)
        heapq.heappop(heap)
        s = sessions[i]
        s.tick(due)
        heapq.heappush(heap, (s.next, i))
    t1 = now()
    published1 = sum(p.stats()["published"] for p in publishers)
    cpu1, broker_cpu1 = time.process_time(), (_proc_cpu_s(broker_pid) if broker_pid else None)
    for s in sessions:
        s.end()
    stats: list[dict[str, Any]] = [{}] * n

    def stop(k: int) -> None:
        stats[k] = publishers[k].stop()

    stoppers = [threading.Thread(target=stop, args=(k,)) for k in range(n)]
    for th in stoppers:
        th.start()
    for th in stoppers:
        th.join()
    time.sleep(TAIL_S)
    parent.send("stop")
    if not parent.poll(30):
        monitor.kill()
        raise SystemExit("the monitor did not answer within 30 s")
    result = parent.recv()
    monitor.join(10)
    if "error" in result:
        raise SystemExit(f"the monitor failed: {result['error']}")
    return _summarise(n, args, sessions, stats, result, t0, t1, published1 - published0, cpu1 - cpu0,
                      None if broker_cpu0 is None or broker_cpu1 is None else broker_cpu1 - broker_cpu0)


def _summarise(n: int, args: argparse.Namespace, sessions: list[SimSession], stats: list[dict[str, Any]],
               result: dict[str, Any], t0: float, t1: float, published: int, cpu_s: float,
               broker_cpu_s: float | None) -> dict[str, Any]:
    span = t1 - t0
    messages = result["messages"]
    in_window = [m for m in messages if t0 <= m[4] <= t1]
    lat: dict[str, list[float]] = defaultdict(list)
    for kind, _session, _seq, t, arrival, retained in messages:
        if t is not None and not retained and t0 <= t <= t1:
            lat[kind].append(arrival - t)
    seqs: dict[str, set[int]] = defaultdict(set)
    for _kind, session, seq, *_ in messages:
        if isinstance(seq, int):
            seqs[session].add(seq)
    lost = sum(max(s) - min(s) + 1 - len(s) for s in seqs.values() if s)
    late = np.concatenate([np.asarray(s.late_s) for s in sessions]) if sessions else np.zeros(0)
    all_lat = np.asarray([x for v in lat.values() for x in v])
    return {
        "n": n, "span": span, "hz": [s.hz for s in sessions],
        "events_per_s": sum(s.events for s in sessions) / span,
        "frames_per_s": sum(s.frames for s in sessions) / span,
        "published_per_s": published / span, "received_per_s": len(in_window) / span,
        "published_total": sum(st["published"] for st in stats), "received_total": len(messages),
        "dropped": sum(st["dropped"] for st in stats), "dropped_bus": sum(st["dropped_bus"] for st in stats),
        "dropped_queue": sum(st["dropped_queue"] for st in stats), "lost_seq": lost,
        "ended_sent": sum(bool(st["ended_sent"]) for st in stats), "sessions_seen": len(seqs),
        "latency": all_lat, "by_kind": {k: np.asarray(v) for k, v in lat.items()},
        "received_by_kind": Counter(m[0] for m in in_window),
        "feeder_late_p99": float(np.percentile(late, 99)) if late.size else math.nan,
        "cpu_pub": cpu_s / span, "cpu_mon_total_s": result["cpu_s"],
        "cpu_broker": None if broker_cpu_s is None else broker_cpu_s / span,
    }


# ----------------------------------------------------------------------------- printing


def _ms(values: np.ndarray, q: float | None) -> float:
    if values.size == 0:
        return math.nan
    return float((values.max() if q is None else np.percentile(values, q)) * 1e3)


def _row(label: str, r: dict[str, Any]) -> str:
    v = r["latency"]
    return (f"{label:14s} {r['n']:8d} {r['events_per_s']:9.0f} {r['published_per_s']:11.1f} {r['received_per_s']:10.1f} "
            f"{r['dropped']:7d} {r['lost_seq']:6d}   {_ms(v, 50):8.2f} {_ms(v, 99):8.2f} {_ms(v, None):8.2f}"
            f"   {v.size:7d}")


def report(args: argparse.Namespace, url: str, own: bool, base: dict[str, Any], big: dict[str, Any]) -> None:
    rate = "all" if args.rate is None else f"{args.rate:g} Hz"
    fb = "all" if args.feedback_rate is None else f"{args.feedback_rate:g} Hz"
    print(f"broker {url} ({'mosquitto started by the bench' if own else 'given'}); site rates: features {rate}, "
          f"feedback {fb}; frames at {args.features_hz} Hz per session with {args.features} feature(s) + feedback; "
          f"{args.seconds:g} s per phase; blocks of {args.block:g} s")
    print("publishers: one process (N TelemetryPublisher threads, one feeder thread); monitor: its own process, "
          "aiomqtt on <prefix>/+/+/#")
    print()
    print(f"{'':14s} {'sessions':>8s} {'events/s':>9s} {'published/s':>11s} {'received/s':>10s} {'dropped':>7s} "
          f"{'lost':>6s}   {'median':>8s} {'p99':>8s} {'max':>8s}   {'n lat':>7s}")
    print(f"{'':14s} {'':8s} {'(bus)':>9s} {'(MQTT)':>11s} {'(monitor)':>10s} {'(pub)':>7s} {'(seq)':>6s}   "
          f"{'latency event -> monitor (ms)':>28s}")
    print(_row("baseline N=1", base))
    print(_row(f"N={big['n']}", big))
    b, g = base, big
    print(f"{'ratio N/1':14s} {g['n'] / b['n']:8.0f} {g['events_per_s'] / b['events_per_s']:9.1f} "
          f"{g['published_per_s'] / b['published_per_s']:11.1f} {g['received_per_s'] / b['received_per_s']:10.1f} "
          f"{'':7s} {'':6s}   {_ms(g['latency'], 50) / _ms(b['latency'], 50):8.2f} "
          f"{_ms(g['latency'], 99) / _ms(b['latency'], 99):8.2f} {_ms(g['latency'], None) / _ms(b['latency'], None):8.2f}")
    print()
    for r in (base, big):
        cpu_b = "n/a" if r["cpu_broker"] is None else f"{r['cpu_broker'] * 100:.0f} %"
        print(f"N={r['n']}: per session {r['published_per_s'] / r['n']:.1f} messages/s; publishers' process CPU "
              f"{r['cpu_pub'] * 100:.0f} % of a core, mosquitto {cpu_b}, monitor {r['cpu_mon_total_s']:.1f} s in all; "
              f"feeder lateness p99 {r['feeder_late_p99'] * 1e3:.1f} ms; totals: published {r['published_total']}, "
              f"received {r['received_total']}, dropped bus {r['dropped_bus']} / outbox {r['dropped_queue']}, "
              f"sessions seen {r['sessions_seen']}/{r['n']}, 'ended' sent {r['ended_sent']}/{r['n']}")
        period = 1.0 / max(r["hz"])
        if r["feeder_late_p99"] > period:
            print(f"  N={r['n']}: the feeder ran late (p99 {r['feeder_late_p99'] * 1e3:.0f} ms > one frame, "
                  f"{period * 1e3:.0f} ms): {r['frames_per_s']:.0f} frames/s of {sum(r['hz']):.0f} asked; the "
                  "publishers' process is saturated (one GIL for N sessions), its latency included")
    print()
    print(f"per kind, N={big['n']}:  {'received/s':>10s}   {'median':>7s} {'p99':>7s} {'max':>7s} (ms)")
    for kind in sorted(big["received_by_kind"], key=lambda k: -big["received_by_kind"][k]):
        v = big["by_kind"].get(kind, np.zeros(0))
        print(f"  {kind:18s} {big['received_by_kind'][kind] / big['span']:10.1f}   {_ms(v, 50):7.2f} {_ms(v, 99):7.2f} "
              f"{_ms(v, None):7.2f}" + ("" if v.size else "   (no t: not timed)"))


# ----------------------------------------------------------------------------- main


def _rate(text: str) -> float | None:
    if text == "all":
        return None
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("a rate is `all` or a number of Hz above 0")
    return value


def _hz_spec(text: str) -> str:
    try:
        lo, _, hi = text.partition("-")
        if float(lo) <= 0 or (hi and float(hi) < float(lo)):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError("a rate in Hz like 20, or a range like 10-40") from None
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20, help="simulated sessions (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=20.0, help="feeding time per phase (default %(default)s)")
    parser.add_argument("--features-hz", type=_hz_spec, default="20",
                        help="frame rate per session, or a range like 10-40 spread over the sessions (default 20)")
    parser.add_argument("--features", type=int, default=2, choices=range(1, len(FEATURE_NAMES) + 1),
                        help="feature values per frame (default %(default)s)")
    parser.add_argument("--rate", type=_rate, default=None, help="site rates: features: `all` (default) or Hz")
    parser.add_argument("--feedback-rate", type=_rate, default=argparse.SUPPRESS,
                        help="site rates: feedback: `all` or Hz (default: as --rate)")
    parser.add_argument("--block", type=float, default=10.0, help="block length, s (default %(default)s)")
    parser.add_argument("--queue", type=int, default=1000, help="site telemetry queue: (default %(default)s)")
    parser.add_argument("--broker", help="mqtt://HOST:PORT of a running broker (default: start a mosquitto)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not hasattr(args, "feedback_rate"):
        args.feedback_rate = args.rate
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")

    broker = None
    if args.broker:
        try:
            url = parse_broker_url(args.broker).url
        except ValueError as exc:
            parser.error(f"--broker: {exc}")
    else:
        from tests.mosquitto_broker import MOSQUITTO, Broker

        if MOSQUITTO is None:
            raise SystemExit("mosquitto not found (apt-get install mosquitto), or give a running broker: "
                             "--broker mqtt://HOST:PORT")
        broker = Broker.plain(Path(tempfile.mkdtemp(prefix="nr-bench-tscale-"))).start()
        url = broker.url
    run_id = uuid.uuid4().hex[:6]
    try:
        pid = broker.process.pid if broker is not None and broker.process is not None else None
        base = run_phase(1, args, url, pid, run_id, "baseline")
        big = run_phase(args.sessions, args, url, pid, run_id, "scale")
    finally:
        if broker is not None:
            broker.stop()
    report(args, url, broker is not None, base, big)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
