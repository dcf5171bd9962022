"""Does the simulated participant learn in closed loop? An offline run of the whole loop.

No LSL and no real-time waiting: the real components run in one thread on simulated time.
Participant side: ``sim.participant.ParticipantModel`` steps once per chunk and drives
``sim.eeg.EegGenerator`` (as ``sim.stream.EegStreamer`` does). Controller side: the
protocol's ``FeaturePipeline`` and ``Engine`` with a fake clock that follows the samples;
a small ``Output`` hands "reward" markers back to the participant.

Loop delay: each chunk reaches the controller 10-50 ms after its last sample (uniform,
seeded); the engine's clock reads that time, and a reward decided on the chunk reaches the
participant at that same moment - one to three 20 ms chunks later, never before the
samples that earned it (the participant is stepped to the arrival time, rewarded, and
stepped on).

    python bench/closed_loop_learning.py                        # tbr_demo, seeds 0..4
    python bench/closed_loop_learning.py --protocol tbr_adhd --seeds 0 1 2 3 4
    python bench/closed_loop_learning.py --learning-rate 0.01 --set fluctuation_sd=0.25 --set time_constant_s=2

Prints, per train block, the true mean theta/beta ratio (the participant's state), the
measured mean (the protocol's feedback feature), the reward rate, the rewards and the
learnt mean ratio at the end of the block; per seed the learning-curve slope of the block
means and the change of the true mean from the first to the last train block.
Figures, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from controller.engine.engine import Engine  # noqa: E402
from controller.events import EventBus  # noqa: E402
from controller.features import FeaturePipeline  # noqa: E402
from controller.lang.compiled import Protocol  # noqa: E402
from controller.protocol import load_protocol  # noqa: E402
from drivers.base import Command, Output  # noqa: E402
from sim.eeg import EegGenerator  # noqa: E402
from sim.markers import is_reward  # noqa: E402
from sim.participant import ParticipantConfig, ParticipantModel  # noqa: E402

DEFAULT_LATENCY_S = (0.010, 0.050)


class FakeClock:
    """The engine's clock: the arrival time of the chunk being processed."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class RewardOutput(Output):
    """Collects reward markers with the time they leave the controller (= reach the participant)."""

    name = "participant"
    accepts = frozenset({"marker"})

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.pending: list[float] = []

    def open(self) -> None: ...

    def close(self) -> None: ...

    def send(self, command: Command) -> float:
        if is_reward(str(command.payload.get("text", ""))):
            self.pending.append(self.clock())
        return self.clock()


@dataclass
class BlockFigures:
    index: int
    label: str
    cycle: int
    true_mean: float  # mean of the participant's true ratio over the block
    measured_mean: float  # mean of the feedback feature over the block
    reward_rate: float | None  # engine's figure: evaluations that fired / evaluations
    rewards: int  # evaluations on which a reward fired
    learnt_tbr: float  # the participant's mean ratio (what learning moves) at the end of the block


@dataclass
class ClosedLoopResult:
    protocol: str
    seed: int
    learning_rate: float
    blocks: list[BlockFigures] = field(default_factory=list)
    rewards: int = 0
    final_mean_tbr: float = math.nan

    @property
    def train(self) -> list[BlockFigures]:
        return [b for b in self.blocks if b.label == "train"]

    def slope(self, attr: str = "measured_mean") -> float:
        """Least-squares slope per train block of ``attr`` (nan with fewer than two blocks)."""
        ys = [getattr(b, attr) for b in self.train]
        if len(ys) < 2:
            return math.nan
        return float(np.polyfit(np.arange(1, len(ys) + 1), ys, 1)[0])

    @property
    def true_change(self) -> float:
        """Relative change of the true mean ratio from the first to the last train block."""
        t = self.train
        return t[-1].true_mean / t[0].true_mean - 1.0 if len(t) >= 2 else math.nan


def _single_input(protocol: Protocol) -> str:
    if len(protocol.inputs) != 1:
        raise ValueError(f"protocol {protocol.name!r}: the offline loop simulates one EEG input, "
                         f"got {len(protocol.inputs)} ({', '.join(protocol.inputs)})")
    return next(iter(protocol.inputs))


def run_closed_loop(
    protocol: str | Path | Protocol,
    seed: int = 0,
    learning_rate: float | None = None,
    channels: int = 64,
    rate: float = 500.0,
    chunk: int = 10,
    latency_s: tuple[float, float] = DEFAULT_LATENCY_S,
    participant: ParticipantConfig | None = None,
) -> ClosedLoopResult:
    """Run ``protocol`` to the end of its timeline against a simulated participant, offline."""
    proto = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
    input_name = _single_input(proto)
    feedback = proto.feedback.value if proto.feedback else next(iter(proto.features))
    cfg = participant or ParticipantConfig()
    if learning_rate is not None:
        cfg = ParticipantConfig(**{**cfg.__dict__, "learning_rate": learning_rate})
    model = ParticipantModel(cfg, seed=seed)
    gen = EegGenerator(channels, rate, seed=seed, tbr=model.tbr)
    features = [f for f in proto.features.values() if f.input == input_name]
    pipeline = FeaturePipeline(rate, gen.labels, proto.inputs[input_name], features)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xDE1A]))

    t0 = 1000.0
    clock = FakeClock(t0)
    output = RewardOutput(clock)
    engine = Engine(proto, EventBus(), [output], clock=clock)
    engine.start()

    true_sum: dict[int, list[float]] = {}  # block index -> [sum, n]
    meas_sum: dict[int, list[float]] = {}
    learnt: dict[int, float] = {}
    t_model = 0.0  # participant time, relative to t0
    sent = 0
    limit = int(math.ceil((proto.duration_s + 5.0) * rate))
    offsets = np.arange(1, chunk + 1) / rate
    while not engine.done.is_set() and sent < limit:
        t_end = (sent + chunk) / rate
        # rewards that reach the participant while this chunk is being recorded (latency may exceed a chunk)
        due = [t - t0 for t in output.pending if t - t0 <= t_end]
        output.pending = [t for t in output.pending if t - t0 > t_end]
        for arrival in sorted(due):
            if arrival > t_model:
                model.step(arrival - t_model)
                t_model = arrival
            model.reward()
        model.step(t_end - t_model)
        t_model = t_end
        gen.set_tbr(model.tbr)
        data = gen.generate(chunk)
        stamps = t0 + sent / rate + offsets
        sent += chunk

        block = engine.timeline.current
        if block is not None:
            acc = true_sum.setdefault(block.index, [0.0, 0])
            acc[0] += model.tbr
            acc[1] += 1
            learnt[block.index] = model.mean_tbr
        clock.t = float(stamps[-1]) + float(rng.uniform(*latency_s))
        values = pipeline.push(data, stamps)
        engine.on_features(values)
        engine.tick()
        block = engine.timeline.current
        if block is not None:
            fb = [v.value for v in values if v.name == feedback and math.isfinite(v.value)]
            if fb:
                acc = meas_sum.setdefault(block.index, [0.0, 0])
                acc[0] += sum(fb)
                acc[1] += len(fb)
    if not engine.done.is_set():
        engine.stop("offline loop: sample limit reached")

    result = ClosedLoopResult(proto.name, seed, cfg.learning_rate, rewards=model.rewards,
                              final_mean_tbr=model.mean_tbr)
    for stats in engine.block_stats:
        i = stats["index"]
        tsum, tn = true_sum.get(i, (math.nan, 1))
        msum, mn = meas_sum.get(i, (math.nan, 1))
        result.blocks.append(BlockFigures(i, stats["label"], stats["cycle"], tsum / tn, msum / mn,
                                          stats["reward_rate"], stats["rewarded"],
                                          learnt.get(i, math.nan)))
    return result


# ---------------------------------------------------------------- printing

def format_result(r: ClosedLoopResult) -> str:
    lines = [f"{r.protocol}  seed {r.seed}  learning rate {r.learning_rate:g}",
             "  block  label   true tbr  measured tbr  reward rate  rewards  learnt mean"]
    base = [b for b in r.blocks if b.label != "train" and b.index == 0]
    for b in base + r.train:
        rr = f"{100 * b.reward_rate:6.1f} %" if b.reward_rate is not None else "      - "
        lines.append(f"  {b.index:5d}  {b.label:<7} {b.true_mean:8.2f}  {b.measured_mean:12.2f}  {rr:>11}  {b.rewards:7d}  {b.learnt_tbr:11.2f}")
    lines.append(f"  slope per train block: measured {r.slope('measured_mean'):+.3f}, true {r.slope('true_mean'):+.3f}; "
                 f"true last/first train block {100 * r.true_change:+.1f} %; final mean tbr {r.final_mean_tbr:.2f}")
    return "\n".join(lines)


def format_summary(results: list[ClosedLoopResult]) -> str:
    neg = sum(r.slope("measured_mean") < 0 for r in results)
    drops = [r.true_change for r in results]
    fell = sum(d <= -0.15 for d in drops)
    return (f"summary {results[0].protocol}: measured slope < 0 in {neg}/{len(results)} seeds; "
            f"true tbr fell >= 15 % in {fell}/{len(results)}; true change per seed "
            + ", ".join(f"{100 * d:+.0f}%" for d in drops))


def _default_learning_rate(protocol: Path) -> float | None:
    if protocol.stem == "tbr_demo":  # what `neuroreflex demo` passes to the simulator
        from controller.cli import DEMO_LEARNING_RATE

        return DEMO_LEARNING_RATE
    return None


def _protocol_path(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    import protocols

    return protocols.find(name)


def _run_one(args: tuple) -> ClosedLoopResult:
    path, seed, lr, channels, chunk, cfg = args
    return run_closed_loop(path, seed=seed, learning_rate=lr, channels=channels, chunk=chunk, participant=cfg)


def _participant_config(settings: list[str]) -> ParticipantConfig:
    """ParticipantConfig with ``name=value`` overrides (numbers)."""
    cfg = ParticipantConfig()
    values = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or key not in cfg.__dict__ or key == "tbr_limits":
            raise SystemExit(f"--set {item!r}: expected NAME=NUMBER with NAME one of "
                             f"{', '.join(k for k in cfg.__dict__ if k != 'tbr_limits')}")
        values[key] = float(value)
    return ParticipantConfig(**{**cfg.__dict__, **values})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--protocol", nargs="+", default=["tbr_demo"], help="protocol files or library names")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--learning-rate", type=float, default=None,
                   help="participant learning rate (default: the demo's for tbr_demo, else the model's)")
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--chunk", type=int, default=10, metavar="SAMPLES")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a participant parameter, e.g. --set eligibility_s=2 (repeatable)")
    args = p.parse_args(argv)
    cfg = _participant_config(args.set)
    for name in args.protocol:
        path = _protocol_path(name)
        lr = args.learning_rate if args.learning_rate is not None else _default_learning_rate(path)
        jobs = [(path, s, lr, args.channels, args.chunk, cfg) for s in args.seeds]
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(_run_one, jobs))
        for r in results:
            print(format_result(r), flush=True)
        print(format_summary(results) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
