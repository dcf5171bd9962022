"""The protocol engine on a hand-built protocol and a fake clock: timeline, thresholds, rules."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from controller import events as ev
from controller.engine.conditions import build
from controller.engine.engine import Engine
from controller.engine.timeline import Timeline
from controller.events import EventBus
from controller.lang.compiled import (
    Action,
    AdaptSpec,
    And,
    Block,
    Compare,
    Constant,
    FeatureRef,
    FeatureSpec,
    FeedbackSpec,
    InputSpec,
    Not,
    Or,
    PercentileSpec,
    Protocol,
    Rule,
    StreamSelector,
    Sustained,
    ThresholdRef,
    ThresholdSpec,
)
from drivers.base import Command, Output


@dataclass(frozen=True)
class FV:
    name: str
    value: float
    source_time: float
    sample_index: int


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class RecordingOutput(Output):
    name = "recording"
    accepts = frozenset({"marker", "feedback", "features"})

    def __init__(self, clock) -> None:
        self.sent: list[Command] = []
        self.clock = clock

    def open(self) -> None: ...

    def close(self) -> None: ...

    def send(self, command: Command) -> float:
        self.sent.append(command)
        return self.clock()


def blocks(*spec: tuple[str, float]) -> tuple[Block, ...]:
    return tuple(Block(i, label, d) for i, (label, d) in enumerate(spec))


def make_protocol(timeline, thresholds, rules, feedback=None) -> Protocol:
    feat = FeatureSpec("tbr", "band_ratio", "eeg", ("Cz",), 2.0, 0.1)
    emg = FeatureSpec("emg", "band_power", "eeg", ("Cz",), 0.5, 0.1)
    return Protocol(
        name="t", inputs={"eeg": InputSpec("eeg", StreamSelector(type="EEG"), ("Cz",))},
        features={"tbr": feat, "emg": emg}, thresholds=thresholds, timeline=timeline, rules=rules,
        feedback=feedback,
    )


def lt(feature: str, threshold: str) -> Compare:
    return Compare(FeatureRef(feature), "<", ThresholdRef(threshold))


# ---------------------------------------------------------------- timeline

def test_timeline_advances_pauses_and_skips():
    tl = Timeline(blocks(("baseline", 10), ("train", 20), ("rest", 5)))
    [tr] = tl.start(0.0)
    assert tr.started.label == "baseline" and tr.ended is None
    assert tl.advance(9.99) == []
    [tr] = tl.advance(10.5)
    assert (tr.ended.label, tr.started.label, tr.t) == ("baseline", "train", 10.0)
    tl.pause(15.0)
    assert tl.advance(100.0) == []  # paused: time does not run
    assert tl.time_left(100.0) == pytest.approx(15.0)
    tl.resume(100.0)
    assert tl.time_left(101.0) == pytest.approx(14.0)
    tr = tl.skip(101.0)
    assert tr.ended.label == "train" and tr.started.label == "rest"
    trs = tl.advance(1000.0)
    assert [t.ended.label for t in trs] == ["rest"] and trs[0].started is None
    assert tl.finished and tl.current is None


def test_timeline_crosses_several_blocks_in_one_advance_at_exact_boundaries():
    tl = Timeline(blocks(("a", 1), ("b", 2), ("c", 3)))
    tl.start(0.0)
    trs = tl.advance(3.5)
    assert [(t.ended.label, t.started.label, t.t) for t in trs] == [("a", "b", 1.0), ("b", "c", 3.0)]
    assert tl.time_left(3.5) == pytest.approx(2.5)


def test_timeline_stop_ends_current_block():
    tl = Timeline(blocks(("a", 1), ("b", 2)))
    tl.start(0.0)
    tr = tl.stop(0.5)
    assert tr.ended.label == "a" and tr.started is None and tl.finished
    assert tl.stop(0.6) is None


# ---------------------------------------------------------------- conditions

def test_for_binds_to_its_comparison_and_measures_source_time():
    cond = build(And((Sustained(lt("tbr", "goal"), 0.5), Compare(FeatureRef("emg"), "<", Constant(10.0)))))
    th = {"goal": 2.0}
    assert not cond({"tbr": 1.0, "emg": 1.0}, th, 0.0)  # just started holding
    assert not cond({"tbr": 1.0, "emg": 1.0}, th, 0.4)
    assert cond({"tbr": 1.0, "emg": 1.0}, th, 0.5)
    assert not cond({"tbr": 1.0, "emg": 20.0}, th, 0.6)  # emg breaks the and, not the for
    assert cond({"tbr": 1.0, "emg": 1.0}, th, 0.7)
    assert not cond({"tbr": 3.0, "emg": 1.0}, th, 0.8)  # tbr broke: the for restarts
    assert not cond({"tbr": 1.0, "emg": 1.0}, th, 0.9)
    assert cond({"tbr": 1.0, "emg": 1.0}, th, 1.4)


def test_missing_and_nan_values_are_never_true():
    cond = build(lt("tbr", "goal"))
    assert not cond({}, {"goal": 1.0}, 0)
    assert not cond({"tbr": 0.5}, {"goal": None}, 0)
    assert not cond({"tbr": float("nan")}, {"goal": 1.0}, 0)
    neg = build(Not(lt("tbr", "goal")))
    assert neg({"tbr": 0.5}, {"goal": None}, 0)  # not(false) is true: authors must know missing = false


def test_or_and_not():
    cond = build(Or((Compare(FeatureRef("a"), ">", Constant(1)), Not(Compare(FeatureRef("b"), "<=", Constant(0))))))
    assert cond({"a": 2, "b": 0}, {}, 0)
    assert cond({"a": 0, "b": 1}, {}, 0)
    assert not cond({"a": 0, "b": 0}, {}, 0)


# ---------------------------------------------------------------- engine

def run_values(engine: Engine, clock: FakeClock, values: np.ndarray, dt: float = 0.125, name: str = "tbr",
               start_index: int = 0) -> None:
    for i, v in enumerate(values):
        clock.t += dt
        k = start_index + i
        engine.on_features([FV(name, float(v), clock.t, k), FV("emg", 1.0, clock.t, k)])


def test_percentile_threshold_set_when_baseline_ends_and_rules_fire_only_in_train():
    clock = FakeClock()
    bus = EventBus()
    sub = bus.subscribe()
    out = RecordingOutput(clock)
    protocol = make_protocol(
        blocks(("baseline", 10), ("train", 10)),
        {"goal": ThresholdSpec("goal", percentile=PercentileSpec("tbr", "baseline", 40))},
        (Rule(0, ("train",), lt("tbr", "goal"), Action(feedback="reward"), source="tbr < goal"),),
        FeedbackSpec("tbr", 3.0, 1.0, ("train",)),
    )
    engine = Engine(protocol, bus, [out], clock=clock)
    engine.start()
    baseline = np.linspace(1.0, 3.0, 79)
    run_values(engine, clock, baseline)  # 9.875 s of baseline
    assert engine.thresholds.values["goal"] is None
    assert not [c for c in out.sent if c.kind == "marker" and c.payload["text"] == "reward"]
    run_values(engine, clock, [0.5, 2.9, 0.5], start_index=79)  # the first value crosses into train
    assert engine.thresholds.values["goal"] == pytest.approx(np.percentile(baseline, 40))
    rewards = [c for c in out.sent if c.kind == "marker" and c.payload["text"] == "reward"]
    assert [round(c.t_source, 6) for c in rewards] == [110.0, 110.25]
    feedback = [c for c in out.sent if c.kind == "feedback"]
    assert [c.payload["value"] for c in feedback] == [1.0, pytest.approx(0.05), 1.0]
    events = sub.drain()
    decisions = [e for e in events if e.kind == ev.DECISION]
    assert all(e.data["latency_s"] == pytest.approx(0.0) for e in decisions)
    assert [e.t_source for e in decisions] == [c.t_source for c in rewards]
    ths = [e for e in events if e.kind == ev.THRESHOLD]
    assert ths[0].data["reason"] == "percentile" and ths[0].data["n_values"] == 79


def test_adaptive_threshold_tracks_target_reward_rate():
    clock = FakeClock()
    bus = EventBus()
    adapt = AdaptSpec(every_s=5.0, target_reward_rate=0.7, direction="below", feature="tbr")
    protocol = make_protocol(
        blocks(("train", 1000),),
        {"goal": ThresholdSpec("goal", fixed=2.0, adapt=adapt)},
        (Rule(0, ("train",), lt("tbr", "goal"), Action(feedback="reward")),),
    )
    engine = Engine(protocol, bus, [RecordingOutput(clock)], clock=clock)
    engine.start()
    rng = np.random.default_rng(1)
    values = rng.normal(1.0, 0.2, 50)  # 50 values x every 0.1 s = one 5 s period, all well under the goal
    run_values(engine, clock, values)
    assert engine.thresholds.values["goal"] == pytest.approx(np.quantile(values, 0.7))
    [change] = [e for e in bus.subscribe().drain()] or [None]  # new subscriber sees nothing old
    assert change is None
    # over many periods the comparison rate converges near the target
    rates = []
    sub = bus.subscribe({ev.THRESHOLD})
    run_values(engine, clock, rng.normal(1.0, 0.2, 2000), start_index=50)
    for e in sub.drain():
        rates.append(e.data["comparison_rate"])
    assert len(rates) == 40
    assert abs(np.mean(rates[1:]) - 0.7) < 0.08


def test_inhibition_stops_rewards_and_feedback_and_is_published():
    clock = FakeClock()
    bus = EventBus()
    sub = bus.subscribe({ev.STATE})
    out = RecordingOutput(clock)
    protocol = make_protocol(
        blocks(("train", 100),), {"goal": ThresholdSpec("goal", fixed=2.0)},
        (Rule(0, (), lt("tbr", "goal"), Action(feedback="reward")),), FeedbackSpec("tbr", 3.0, 1.0),
    )
    engine = Engine(protocol, bus, [out], clock=clock)
    engine.start()
    engine.set_inhibit("input:eeg", "input eeg stalled")
    assert engine.state == "inhibited"
    run_values(engine, clock, [1.0] * 5)
    assert not [c for c in out.sent if c.kind in ("feedback",) or c.payload.get("text") == "reward"]
    engine.clear_inhibit("input:eeg")
    run_values(engine, clock, [1.0] * 5, start_index=5)
    assert len([c for c in out.sent if c.payload.get("text") == "reward"]) == 5
    states = [(e.data["state"], e.data["reason"]) for e in sub.drain()]
    assert ("inhibited", "input eeg stalled") in states and states[-1] == ("running", None)


def test_pause_resume_stop_and_block_stats():
    clock = FakeClock()
    bus = EventBus()
    out = RecordingOutput(clock)
    protocol = make_protocol(
        blocks(("train", 2), ("rest", 2)), {"goal": ThresholdSpec("goal", fixed=2.0)},
        (Rule(0, ("train",), lt("tbr", "goal"), Action(feedback="reward")),),
    )
    engine = Engine(protocol, bus, [out], clock=clock)
    engine.start()
    run_values(engine, clock, [1.0, 3.0, 1.0, 3.0])
    engine.pause()
    assert engine.state == "paused"
    clock.t += 50  # paused time does not count
    run_values(engine, clock, [1.0] * 3, start_index=4)
    engine.resume()
    run_values(engine, clock, [1.0] * 16, start_index=7)  # 2 s: train ends, rest begins
    assert engine.timeline.current.label == "rest"
    assert engine.block_stats[0]["label"] == "train"
    assert engine.block_stats[0]["rewarded"] / engine.block_stats[0]["frames"] == engine.block_stats[0]["reward_rate"]
    engine.stop("test")
    assert engine.state == "stopped" and engine.done.is_set()
    texts = [c.payload["text"] for c in out.sent if c.kind == "marker" and c.payload["text"].startswith("block")]
    assert texts == ["block_start:train", "block_end:train", "block_start:rest", "block_end:rest"]


def test_engine_finishes_when_timeline_ends_on_tick():
    clock = FakeClock()
    protocol = make_protocol(blocks(("train", 1),), {"goal": ThresholdSpec("goal", fixed=2.0)}, ())
    engine = Engine(protocol, EventBus(), [], clock=clock)
    engine.start()
    clock.t += 0.5
    engine.tick()
    assert not engine.done.is_set()
    clock.t += 0.6
    engine.tick()
    assert engine.done.is_set() and engine.state == "stopped"


def test_percentile_over_no_values_is_a_published_fault_not_a_silent_zero():
    clock = FakeClock()
    bus = EventBus()
    sub = bus.subscribe({ev.FAULT})
    protocol = make_protocol(
        blocks(("baseline", 1), ("train", 5)),
        {"goal": ThresholdSpec("goal", percentile=PercentileSpec("tbr", "baseline", 40))},
        (Rule(0, ("train",), lt("tbr", "goal"), Action(feedback="reward")),),
    )
    engine = Engine(protocol, bus, [], clock=clock)
    engine.start()
    clock.t += 1.5
    engine.tick()
    [fault] = sub.drain()
    assert "no values of 'tbr' during 'baseline'" in fault.data["reason"]
    assert engine.thresholds.values["goal"] is None


def test_adaptation_reports_how_often_the_comparison_held_and_how_often_it_rewarded():
    """The issue-10 field report: 'reward rate was 58%' while no reward had been given. The comparison
    rate and the reward rate are different numbers and both are published."""
    clock = FakeClock()
    bus = EventBus()
    sub = bus.subscribe({ev.THRESHOLD})
    adapt = AdaptSpec(every_s=5.0, target_reward_rate=0.7, direction="below", feature="tbr")
    rule = Rule(0, ("train",), And((lt("tbr", "goal"), Compare(FeatureRef("emg"), "<", Constant(1.0)))),
                Action(feedback="reward"))
    protocol = make_protocol(blocks(("train", 1000),), {"goal": ThresholdSpec("goal", fixed=2.0, adapt=adapt)}, (rule,))
    engine = Engine(protocol, bus, [RecordingOutput(clock)], clock=clock)
    engine.start()
    for i in range(50):  # one 5 s period: tbr always under the goal, emg blocks the reward 4 frames in 5
        clock.t += 0.1
        t = clock.t
        engine.on_features([FV("tbr", 1.0 + 0.001 * i, t, i), FV("emg", 0.5 if i % 5 == 0 else 2.0, t, i)])
    [change] = [e for e in sub.drain() if e.data["reason"] == "adapt"]
    assert change.data["comparison_rate"] == 1.0
    # the period's 50th value adapts the threshold before that frame's rule runs (with the new value),
    # so the period's rewards are those of its first 49 frames: 10 of 49
    assert change.data["reward_rate"] == pytest.approx(10 / 49)
    from controller.operator.terminal import describe_event

    assert describe_event(change).endswith("(adapt: the comparison held 100% of the time, 20% of frames rewarded)")


def test_a_decision_carries_its_chunks_arrival_so_the_controller_delay_excludes_the_amplifiers_block():
    """Issue 11: with a block of 32 samples, the detecting sample is older than its block's arrival by
    up to 31 samples; the loop budget is for the controller (arrival -> command), the sample's own age
    is the end-to-end latency (both journaled)."""
    from controller.dsp.features import FeatureValue
    from controller.lang.compiled import StimAction

    class Stim:
        governor = None

        def __init__(self) -> None:
            self.latencies: list[float] = []
            self.calls: list[tuple[float, float | None]] = []

        def observe_latency(self, latency_s: float) -> None:
            self.latencies.append(latency_s)

        def execute(self, action, t_source, rule, features, at=None, arrival=None) -> None:
            self.calls.append((t_source, arrival))

    clock = FakeClock()
    bus = EventBus()
    sub = bus.subscribe({ev.DECISION})
    stim = Stim()
    rule = Rule(0, ("train",), lt("tbr", "goal"), Action(stimulation=StimAction("stimulate", "tms")))
    engine = Engine(make_protocol(blocks(("train", 100),), {"goal": ThresholdSpec("goal", fixed=2.0)}, (rule,)),
                    bus, [RecordingOutput(clock)], clock=clock, stimulation=stim)
    engine.start()
    clock.t += 1.0
    arrival = clock.t - 0.001  # the block arrived 1 ms ago; its first sample is 124 ms older (32 at 256 Hz)
    sample = arrival - 31 / 256
    engine.on_features([FeatureValue("tbr", 1.0, sample, 0, arrival=arrival), FeatureValue("emg", 1.0, sample, 0,
                                                                                          arrival=arrival)])
    assert stim.calls == [(sample, arrival)]
    assert stim.latencies == [pytest.approx(0.001)]
    [decision] = sub.drain()
    assert decision.data["controller_latency_s"] == pytest.approx(0.001)
    assert decision.data["latency_s"] == pytest.approx(0.001 + 31 / 256)


# ---------------------------------------------------------------- the signal's clock (issue 11, item 4)

def _replayed_session(speed: float):
    """A detector-like rule on a fixed signal, delivered as a replay at ``speed``: what was decided when."""
    from controller.engine.signal_clock import SignalClock

    clock = FakeClock()
    bus = EventBus()
    sub = bus.subscribe({ev.DECISION, ev.BLOCK_START, ev.INFO})
    rule = Rule(0, ("watch",), Sustained(lt("tbr", "goal"), 1.0), Action(marker="onset"), source="tbr < goal for 1 s",
                refractory_s=3.0, max_per_episode=2, episode_gap_s=10.0)
    protocol = make_protocol(blocks(("rest", 5.0), ("watch", 40.0)), {"goal": ThresholdSpec("goal", fixed=2.0)}, (rule,))
    signal = SignalClock(speed)
    engine = Engine(protocol, bus, [RecordingOutput(clock)], clock=clock, signal_clock=signal)
    t0 = clock.t
    engine.start()
    dt = 0.1  # signal seconds between values
    for k in range(1, 400):
        s = k * dt  # signal seconds since the start
        clock.t = t0 + s / speed  # the LSL stamp of a replay at `speed`
        low = (8.0 <= s < 20.0) or (27.0 <= s < 30.0)  # two "episodes"
        engine.on_features([FV("tbr", 1.0 if low else 3.0, clock.t, k), FV("emg", 1.0, clock.t, k)])
        engine.tick()
    events = sub.drain()
    to_signal = lambda t: round((t - t0) * speed, 6)  # noqa: E731
    decisions = [to_signal(e.t_source) for e in events if e.kind == ev.DECISION]
    starts = [(e.data["label"], to_signal(e.t_source)) for e in events if e.kind == ev.BLOCK_START]
    return decisions, starts


@pytest.mark.parametrize("speed", [2.0, 4.0, 8.0])
def test_a_replay_at_any_speed_decides_exactly_as_in_real_time(speed):
    """`for`, refractory, per-episode caps, episode gaps and block times count the signal's seconds."""
    real = _replayed_session(1.0)
    fast = _replayed_session(speed)
    assert real == fast
    decisions, starts = real
    assert starts == [("rest", 0.0), ("watch", 5.0)]
    # low from 8 s: held 1 s -> 9 s; refractory 3 s -> 12 s; then 2 per episode reached until 20 s;
    # low again from 27 s: held 1 s -> 28 s, 16 s after the last firing (> the 10 s gap): a new episode.
    assert decisions == [9.0, 12.0, 28.0]


def test_a_sample_acquired_before_a_block_began_is_judged_by_the_block_it_was_acquired_in():
    clock = FakeClock()
    bus = EventBus()
    sub = bus.subscribe({ev.DECISION})
    rule = Rule(0, ("stim",), lt("tbr", "goal"), Action(marker="go"), source="tbr < goal")
    engine = Engine(make_protocol(blocks(("rest", 10.0), ("stim", 10.0)), {"goal": ThresholdSpec("goal", fixed=2.0)},
                                  (rule,)), bus, [RecordingOutput(clock)], clock=clock)
    t0 = clock.t
    engine.start()
    clock.t = t0 + 10.005
    engine.tick()  # the control loop has moved on to 'stim' ...
    sample = t0 + 9.997  # ... when a chunk arrives whose sample was acquired 3 ms before 'stim' began
    engine.on_features([FV("tbr", 1.0, sample, 1), FV("emg", 1.0, sample, 1)])
    assert sub.drain() == []
    engine.on_features([FV("tbr", 1.0, t0 + 10.001, 2), FV("emg", 1.0, t0 + 10.001, 2)])
    [decision] = sub.drain()
    assert decision.t_source == t0 + 10.001 and decision.data["block"] == "stim"
