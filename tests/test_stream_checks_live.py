"""A live stream checked against a protocol before anything starts (issue 10): `validate --stream` and `run`
report a missing channel, a wrong rate or missing units at the protocol's FILE:LINE:COL and exit 2; a run that
never started leaves no session folder."""

from __future__ import annotations

import signal
import uuid

import numpy as np
import pytest

from amplifier import BlockAmplifier
from controller.cli import main

pytestmark = [pytest.mark.lsl]

PROTOCOL = """\
protocol: live-check
inputs:
  eeg:
    stream: {{type: EEG}}
    channels: [Cz, Fp1, {third}]
    reference: {{average: all EEG}}
    rate: {rate}
features:
  tbr: {{band_ratio: {{input: eeg, channels: [Cz], numerator: [4 Hz, 8 Hz], denominator: [13 Hz, 21 Hz], window: 2 s, every: 100 ms}}}}
timeline: [{{train: 5 s}}]
"""

LABELS = ["Cz", "Fp1", "Fp2", "TRIG"]
TYPES = ["EEG", "EEG", "EEG", "TRIG"]


@pytest.fixture(autouse=True)
def _keep_sigterm():
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


@pytest.fixture
def amp():
    name = f"live-amp-{uuid.uuid4().hex[:6]}"
    a = BlockAmplifier(name, np.zeros((10, 4)), 256.0, LABELS, TYPES, ["uV", "uV", "uV", ""], 1e6)
    yield name
    a.stop()


def _protocol(tmp_path, third: str = "Fp2", rate: str = "256 Hz"):
    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL.format(third=third, rate=rate))
    return path


def test_validate_with_the_stream_prints_units_and_passes(tmp_path, amp, capsys):
    path = _protocol(tmp_path)
    assert main(["validate", str(path), "--stream", amp]) == 0
    out = capsys.readouterr().out
    assert f"input eeg: stream '{amp}' (4 ch, 256 Hz" in out
    assert "units Cz, Fp1, Fp2: uV -> V (x1e-06)" in out


def test_validate_with_the_stream_reports_each_problem_at_its_place(tmp_path, amp, capsys):
    path = _protocol(tmp_path, third="Pz", rate="500 Hz")
    assert main(["validate", str(path), "--stream", f"eeg={amp}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"{path}:5:25: stream '{amp}': input 'eeg': channel 'Pz' is not in the stream; its channels: Cz, Fp1, Fp2, TRIG",
        f"{path}:7:11: stream '{amp}': input 'eeg': the protocol expects 500 Hz but the stream runs at 256 Hz",
    ]


def test_validate_names_an_unknown_input_and_a_missing_stream(tmp_path, capsys):
    path = _protocol(tmp_path)
    assert main(["validate", str(path), "--stream", "emg=Nope"]) == 2
    assert "has no input 'emg'; its inputs: eeg" in capsys.readouterr().err
    assert main(["validate", str(path), "--stream", f"absent-{uuid.uuid4().hex[:6]}"]) == 2
    assert "no LSL stream matches" in capsys.readouterr().err


@pytest.mark.slow
def test_run_on_a_stream_without_a_channel_exits_2_and_leaves_no_session(tmp_path, amp, capsys):
    path = _protocol(tmp_path, third="Pz")
    sessions = tmp_path / "sessions"
    assert main(["run", str(path), "--stream", amp, "--session-dir", str(sessions), "--no-report"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:5:25: stream '{amp}': input 'eeg': channel 'Pz' is not in the stream" in err
    assert not sessions.exists() or not any(sessions.iterdir())
