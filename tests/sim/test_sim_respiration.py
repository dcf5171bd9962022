"""The simulated respiration belt: a breathing waveform with its true phase, as its own LSL streams."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pylsl
import pytest
from scipy.signal import savgol_filter

from sim.respiration import EXHALE, INHALE, BreathingConfig, BreathingGenerator, phase_at

REPO = Path(__file__).resolve().parents[2]
FS = 50.0


def _labels(n: int, changes: list[tuple[int, str]]) -> np.ndarray:
    out = np.full(n, "", dtype=object)
    for k, (i, phase) in enumerate(changes):
        end = changes[k + 1][0] if k + 1 < len(changes) else n
        out[i:end] = phase
    return out


def _generate(seed: int, seconds: float, blocks: list[int]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    gen = BreathingGenerator(FS, seed=seed)
    total = int(seconds * FS)
    xs, changes, done, k = [], [], 0, 0
    while done < total:
        n = min(blocks[k % len(blocks)], total - done)
        x, c = gen.generate(n)
        xs.append(x)
        changes += [(done + i, p) for i, p in c]
        done += n
        k += 1
    return np.concatenate(xs), changes


def test_breathing_is_12_to_20_per_minute_with_shorter_inhalations_and_a_rising_belt():
    x, changes = _generate(seed=3, seconds=600, blocks=[7, 13, 1, 50])
    starts = np.array([i for i, p in changes if p == INHALE])
    periods = np.diff(starts) / FS
    assert 3.0 <= periods.min() and periods.max() <= 5.0  # 12-20 breaths/min
    assert 14.0 < 60 / periods.mean() < 16.5  # around the configured 15
    assert periods.std() > 0.2  # breath-to-breath variability
    phases = [p for _, p in changes]
    assert all(a != b for a, b in zip(phases, phases[1:], strict=False))  # strictly alternating
    idx = np.array([i for i, _ in changes])
    durations = np.diff(idx) / FS
    inhale = durations[[p == INHALE for p in phases[:-1]]]
    exhale = durations[[p == EXHALE for p in phases[:-1]]]
    assert inhale.mean() < 0.8 * exhale.mean()
    labels = _labels(len(x), changes)
    slope = np.gradient(savgol_filter(x, 25, 2))
    assert (slope[labels == INHALE] > 0).mean() > 0.95  # the belt stretches on inhalation
    assert (slope[labels == EXHALE] < 0).mean() > 0.7  # and relaxes on exhalation (the pause is flat)
    peaks = idx[[p == EXHALE for p in phases]]
    lo = np.maximum(peaks - 10, 0)
    # the exhale marker sits on the breath's peak (within 0.15 s: the top is flat and the sensor noisy)
    assert all(abs(int(np.argmax(x[a:p + 10])) + a - p) <= 0.15 * FS for a, p in zip(lo, peaks, strict=True))


def test_output_does_not_depend_on_how_the_stream_is_cut_into_blocks():
    a, ca = _generate(seed=5, seconds=60, blocks=[1])
    b, cb = _generate(seed=5, seconds=60, blocks=[17, 250, 3])
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert ca == cb


def test_phase_at_reads_the_last_marker():
    phases = phase_at([1.0, 2.5, 4.0], [INHALE, EXHALE, INHALE], [0.5, 1.0, 2.0, 2.5, 3.9, 9.0])
    assert list(phases) == ["", INHALE, INHALE, EXHALE, EXHALE, INHALE]


def test_bad_breathing_settings_are_refused():
    with pytest.raises(ValueError, match="breaths/min"):
        BreathingGenerator(config=BreathingConfig(breaths_per_min=40))
    with pytest.raises(ValueError, match="inhale_fraction"):
        BreathingGenerator(config=BreathingConfig(inhale_fraction=0.6))


def _resolve(name: str, timeout: float = 20.0) -> pylsl.StreamInfo:
    infos = pylsl.resolve_byprop("name", name, minimum=1, timeout=timeout)
    assert infos, f"stream {name!r} not found"
    return infos[0]


def _channel(info: pylsl.StreamInfo, key: str) -> str:
    return info.desc().child("channels").child("channel").child_value(key)


@pytest.mark.lsl
def test_sim_eeg_with_respiration_streams_the_belt_and_its_true_phase():
    name = f"sim-resp-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim", "eeg", "--channels", "4", "--rate", "200", "--name", name,
         "--marker-stream", f"absent-{name}", "--respiration", "--breaths-per-min", "20"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        eeg = _resolve(name)
        belt_info, phase_info = _resolve(f"{name}-resp"), _resolve(f"{name}-resp-phase")
        assert eeg.channel_count() == 4
        belt = pylsl.StreamInlet(belt_info)
        marks = pylsl.StreamInlet(phase_info)
        full = belt.info(timeout=5)
        assert (full.type(), full.channel_count(), full.nominal_srate()) == ("RESP", 1, 50.0)
        assert _channel(full, "label") == "Resp" and _channel(full, "type") == "RESP"
        assert phase_info.type() == "Markers" and phase_info.channel_format() == pylsl.cf_string
        belt.open_stream(timeout=5)
        marks.open_stream(timeout=5)
        x, tx, labels, tm = [], [], [], []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(1 for p in labels if p == INHALE) < 2:
            d, ts = belt.pull_chunk(timeout=0.2)
            x += [s[0] for s in d]
            tx += ts
            m, tsm = marks.pull_chunk(timeout=0.0)
            labels += [s[0] for s in m]
            tm += tsm
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)  # a loaded CI host once needed more than 15 s
    assert proc.returncode == 0, err
    assert f"respiration '{name}-resp'" in out
    assert sum(1 for p in labels if p == INHALE) >= 2, (labels, err)
    x, tx, tm = np.asarray(x), np.asarray(tx), np.asarray(tm)
    assert np.allclose(np.diff(tx), 1 / 50.0, atol=1e-6)  # one stamp per sample, by rule
    stamped = [t for t in tm if tx[0] <= t <= tx[-1]]
    assert stamped and all(np.any(tx == t) for t in stamped)  # each marker carries a sample's exact stamp
    # between an inhale marker and the next exhale marker the belt rises; peak at the exhale marker
    phase = phase_at(tm, labels, tx)
    slope = np.gradient(savgol_filter(x, 11, 2))
    # the half-cosine rise starts and ends with a near-zero slope, where sensor noise decides the sign
    assert (slope[phase == INHALE] > 0).mean() > 0.85
    assert (slope[phase == EXHALE] < 0).mean() > 0.6


@pytest.mark.lsl
def test_sim_resp_standalone_exits_cleanly_after_its_duration():
    name = f"sim-resp-alone-{uuid.uuid4().hex[:8]}"
    r = subprocess.run([sys.executable, "-m", "sim", "resp", "--name", name, "--duration", "0.5", "--rate", "25"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"respiration '{name}'" in r.stdout and f"'{name}-phase'" in r.stdout and "stopped after 0.5 s" in r.stdout
