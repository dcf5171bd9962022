"""The participant model learns from reinforcement, driven directly (no real time, no LSL),
and in an offline closed loop with the real feature pipeline and engine."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from controller.protocol import loads_protocol
from sim.participant import ParticipantConfig, ParticipantModel

DT = 0.1  # s, like a controller's feature update
STEPS = 3000  # 300 s of model time
START = math.log(3.0)


def run_session(rule, seed: int, learning_rate: float = 0.01, delay_steps: int = 0, **cfg):
    """Reward (one per step) whenever ``rule`` holds for the ratio ``delay_steps`` steps ago."""
    model = ParticipantModel(seed=seed, learning_rate=learning_rate, **cfg)
    trace = np.empty(STEPS)
    for i in range(STEPS):
        trace[i] = model.step(DT)
        if i >= delay_steps and rule(trace[i - delay_steps]):
            model.reward()
    return model, trace


def log_change(model: ParticipantModel) -> float:
    return math.log(model.mean_tbr) - START


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rewarding_low_ratios_lowers_the_ratio(seed):
    model, trace = run_session(lambda tbr: tbr < 2.8, seed)
    assert model.rewards > 300
    assert model.mean_tbr < 2.0
    assert trace[-600:].mean() < 0.75 * trace[:600].mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rewarding_high_ratios_raises_the_ratio(seed):
    model, trace = run_session(lambda tbr: tbr > 3.2, seed)
    assert model.rewards > 300
    assert model.mean_tbr > 4.5
    assert trace[-600:].mean() > 1.5 * trace[:600].mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_without_rewards_the_mean_does_not_move(seed):
    model, trace = run_session(lambda tbr: False, seed)
    assert model.rewards == 0 and model.expected_reward_rate == 0.0
    assert model.mean_tbr == pytest.approx(3.0, rel=1e-12)
    assert np.exp(np.log(trace).mean()) == pytest.approx(3.0, rel=0.1)
    assert trace.std() > 0.5  # it does fluctuate


def test_rewards_unrelated_to_the_state_teach_nothing_on_average():
    """Rewards at a steady rate, or at random, carry no information about the state: no drift."""
    steady = [log_change(run_session(lambda tbr: True, seed)[0]) for seed in range(8)]
    coin = np.random.default_rng(123)
    random = [log_change(run_session(lambda tbr: coin.random() < 0.5, seed)[0]) for seed in range(8)]
    low = [log_change(run_session(lambda tbr: tbr < 2.8, seed)[0]) for seed in range(8)]
    for changes in (steady, random):
        assert abs(np.mean(changes)) < 0.15
        assert np.max(np.abs(changes)) < 0.5
    assert np.max(low) < -0.6  # while rewards that depend on the state teach every time


def test_credit_goes_to_the_state_of_the_last_seconds():
    """The same rewards for low ratios teach when they follow the state promptly, not 10 s late."""
    prompt = [log_change(run_session(lambda tbr: tbr < 2.8, seed, delay_steps=3)[0]) for seed in range(8)]
    late = [log_change(run_session(lambda tbr: tbr < 2.8, seed, delay_steps=100)[0]) for seed in range(8)]
    assert max(prompt) < -0.6
    assert abs(np.mean(late)) < 0.2 * abs(np.mean(prompt))


def test_learning_rate_sets_the_speed():
    slow, _ = run_session(lambda tbr: tbr < 2.8, seed=4, learning_rate=0.002)
    fast, _ = run_session(lambda tbr: tbr < 2.8, seed=4, learning_rate=0.01)
    assert 3.0 > slow.mean_tbr > fast.mean_tbr
    frozen, _ = run_session(lambda tbr: tbr < 2.8, seed=4, learning_rate=0.0)
    assert frozen.mean_tbr == pytest.approx(3.0, rel=1e-12)


def test_expected_reward_rate_follows_the_rewards():
    model = ParticipantModel(seed=0, reward_memory_s=10.0)
    for i in range(1200):  # 120 s, a reward every other step: 5 per second
        model.step(DT)
        if i % 2 == 0:
            model.reward()
    assert model.expected_reward_rate == pytest.approx(5.0, rel=0.05)
    for _ in range(100):  # 10 s without: one memory time
        model.step(DT)
    assert model.expected_reward_rate == pytest.approx(5.0 / math.e, rel=0.05)


def test_fluctuation_statistics_match_the_configuration():
    model = ParticipantModel(ParticipantConfig(fluctuation_sd=0.3, time_constant_s=1.0), seed=9)
    logs = np.log([model.step(0.05) for _ in range(40_000)])
    assert logs.std() == pytest.approx(0.3, rel=0.15)
    lag = int(1.0 / 0.05)  # autocorrelation at one time constant ~ 1/e
    r = np.corrcoef(logs[:-lag], logs[lag:])[0, 1]
    assert r == pytest.approx(math.exp(-1), abs=0.1)


def test_mean_stays_within_limits_and_bad_parameters_are_refused():
    model = ParticipantModel(seed=0, learning_rate=0.5, tbr_limits=(1.0, 5.0))
    for _ in range(2000):
        if model.step(0.1) < 3.0:
            model.reward(5)
    assert 1.0 <= model.mean_tbr <= 5.0
    with pytest.raises(ValueError, match="positive"):
        ParticipantModel(start_tbr=0.0)
    with pytest.raises(ValueError, match="positive"):
        ParticipantModel(reward_memory_s=0.0)
    with pytest.raises(ValueError, match="time step"):
        model.step(-1.0)


# ---------------------------------------------------------------- offline closed loop

def _closed_loop_module():
    path = Path(__file__).resolve().parents[2] / "bench" / "closed_loop_learning.py"
    spec = importlib.util.spec_from_file_location("closed_loop_learning", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


SHORT_PROTOCOL = """
protocol: tbr-short
inputs:
  eeg: {stream: {type: EEG}, channels: [Cz, Fp1, Fp2], reference: average, highpass: 0.5 Hz, notch: 50 Hz}
features:
  tbr:   {band_ratio: {input: eeg, channels: [Cz], numerator: [4 Hz, 8 Hz], denominator: [13 Hz, 21 Hz], window: 2 s, every: 100 ms}}
  emg:   {band_power: {input: eeg, channels: [Cz], band: [45 Hz, 70 Hz], window: 500 ms, every: 100 ms}}
  blink: {peak_to_peak: {input: eeg, channels: [Fp1, Fp2], band: [0.5 Hz, 4 Hz], window: 500 ms, every: 100 ms}}
thresholds:
  goal:      {percentile: {feature: tbr, during: baseline, q: 40}, adapt: {every: 10 s, target_reward_rate: 0.7}}
  emg_max:   {percentile: {feature: emg, during: baseline, q: 95}}
  blink_max: {fixed: 150 uV}
timeline: [{baseline: 20 s}, {repeat: 3, blocks: [{train: 50 s}, {rest: 5 s}]}]
rules:
  - during: train
    when: tbr OP goal for 500 ms and emg < emg_max and blink < blink_max
    do: {feedback: reward}
"""


def _short_protocol(op: str):
    return loads_protocol(SHORT_PROTOCOL.replace("OP", op), "tbr-short.yaml")


@pytest.mark.parametrize("op, direction", [("<", -1), (">", +1)])
def test_offline_closed_loop_moves_the_true_ratio_the_rewarded_way(op, direction):
    """Real generator, pipeline and engine on simulated time: rewarding low TBR lowers it, high raises it."""
    loop = _closed_loop_module()
    result = loop.run_closed_loop(_short_protocol(op), seed=0, learning_rate=0.015, chunk=25)
    train = result.train
    assert len(train) == 3 and all(b.rewards > 50 for b in train)
    assert direction * (train[-1].true_mean / train[0].true_mean - 1.0) > 0.15
    assert direction * math.log(result.final_mean_tbr / 3.0) > 0.2
    assert direction * result.slope("measured_mean") > 0
