"""The participant model learns from reinforcement, driven directly (no real time, no LSL)."""

import math

import numpy as np
import pytest

from sim.participant import ParticipantConfig, ParticipantModel

DT = 0.1  # s, like a controller's feature update
STEPS = 3000  # 300 s of model time


def run_session(rule, seed: int, learning_rate: float = 0.01) -> tuple[ParticipantModel, np.ndarray]:
    model = ParticipantModel(seed=seed, learning_rate=learning_rate)
    trace = np.empty(STEPS)
    for i in range(STEPS):
        trace[i] = model.step(DT)
        if rule(trace[i]):
            model.reward()
    return model, trace


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rewarding_low_ratios_lowers_the_ratio(seed):
    model, trace = run_session(lambda tbr: tbr < 2.8, seed)
    assert model.rewards > 300
    assert model.mean_tbr < 2.4
    assert trace[-600:].mean() < 0.85 * trace[:600].mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rewarding_high_ratios_raises_the_ratio(seed):
    model, trace = run_session(lambda tbr: tbr > 3.2, seed)
    assert model.rewards > 300
    assert model.mean_tbr > 3.6
    assert trace[-600:].mean() > 1.15 * trace[:600].mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_without_rewards_it_stays_around_the_start(seed):
    model, trace = run_session(lambda tbr: False, seed)
    assert model.rewards == 0
    assert model.mean_tbr == pytest.approx(3.0)
    assert np.exp(np.log(trace).mean()) == pytest.approx(3.0, rel=0.1)
    assert trace.std() > 0.2  # it does fluctuate


def test_learning_rate_sets_the_speed():
    slow, _ = run_session(lambda tbr: tbr < 2.8, seed=4, learning_rate=0.001)
    fast, _ = run_session(lambda tbr: tbr < 2.8, seed=4, learning_rate=0.01)
    assert 3.0 > slow.mean_tbr > fast.mean_tbr
    frozen, _ = run_session(lambda tbr: tbr < 2.8, seed=4, learning_rate=0.0)
    assert frozen.mean_tbr == pytest.approx(3.0)


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
        if model.step(0.1) < 10:
            model.reward(5)
    assert 1.0 <= model.mean_tbr <= 5.0
    with pytest.raises(ValueError, match="positive"):
        ParticipantModel(start_tbr=0.0)
    with pytest.raises(ValueError, match="time step"):
        model.step(-1.0)
