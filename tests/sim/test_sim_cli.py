"""The command line: `python -m sim eeg ...` streams until told to stop and exits 0."""

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pylsl
import pytest

from sim.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def test_parser_defaults_and_choices():
    args = build_parser().parse_args(["eeg"])
    assert (args.channels, args.rate, args.chunk, args.seed, args.line_freq) == (64, 500.0, 10, 0, 50.0)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eeg", "--line-freq", "55"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eeg", "--channels", "0"])


@pytest.mark.lsl
def test_main_streams_for_a_duration(capsys):
    name = f"sim-cli-{uuid.uuid4().hex[:8]}"
    code = main(["eeg", "--channels", "4", "--rate", "200", "--duration", "0.3", "--name", name,
                 "--marker-stream", f"absent-{name}", "--line-freq", "60"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert name in out and "4 ch @ 200 Hz" in out and "stopped after 0.3 s" in out


def test_main_reports_a_missing_replay_file(capsys):
    assert main(["eeg", "--replay", "/nonexistent/rec.edf"]) == 2
    assert "rec.edf" in capsys.readouterr().err


@pytest.mark.lsl
def test_sigterm_stops_the_process_cleanly():
    name = f"sim-cli-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim", "eeg", "--channels", "8", "--name", name, "--marker-stream", f"absent-{name}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        infos = pylsl.resolve_byprop("name", name, minimum=1, timeout=20)
        assert infos and infos[0].channel_count() == 8
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "stopped after" in out


def test_seizure_and_channel_options_parse():
    args = build_parser().parse_args(["eeg", "--seizure", "5", "--seizure", "90:30", "--channels", "C3,T3, Cz"])
    assert args.seizure == [(5.0, 60.0), (90.0, 30.0)] and args.channels == ("C3", "T3", "Cz")
    assert (args.seizure_focus, args.seizure_amplitude, args.seizure_frequency) == ("T7", 3.0, (7.0, 3.0))
    args = build_parser().parse_args(["eeg", "--seizure-focus", "right-temporal", "--seizure-amplitude", "4.5",
                                      "--seizure-frequency", "8:2.5"])
    assert (args.seizure, args.seizure_focus, args.seizure_amplitude) == ([], "right-temporal", 4.5)
    assert args.seizure_frequency == (8.0, 2.5)
    for bad in (["--seizure", "x"], ["--seizure", "-1"], ["--seizure", "5:0"], ["--seizure-frequency", "7"],
                ["--seizure-amplitude", "0"], ["--channels", "C3,,Cz"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["eeg", *bad])


@pytest.mark.parametrize(("argv", "message"), [
    (["--seizure", "1", "--replay", "/nonexistent/rec.edf"], "--annotate"),
    (["--seizure", "1", "--seizure-focus", "nowhere"], "unknown seizure focus 'nowhere'"),
    (["--seizure", "1:30", "--seizure", "10"], "overlap"),
    (["--channels", "C3,Q9"], "'Q9' has no 10-05 template position"),
])  # fmt: skip
def test_seizure_option_errors_exit_2_before_streaming(capsys, argv, message):
    assert main(["eeg", "--duration", "0.1", "--marker-stream", "", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.lsl
@pytest.mark.parametrize("command", [["eeg", "--channels", "4", "--rate", "200"],
                                     ["resp", "--rate", "50"]])
def test_a_burst_of_sigterms_still_stops_the_process(command):
    """A session that dies sends each simulator one SIGTERM per thread it had (PR_SET_PDEATHSIG fires as each
    of the parent's threads goes): a signal that lands inside the first one's handling must not deadlock it."""
    name = f"sim-burst-{uuid.uuid4().hex[:8]}"
    extra = ["--marker-stream", f"absent-{name}"] if command[0] == "eeg" else []
    proc = subprocess.Popen([sys.executable, "-m", "sim", *command, "--name", name, *extra], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert pylsl.resolve_byprop("name", name, minimum=1, timeout=20)
        for _ in range(200):
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            pytest.fail("the simulator hung after a burst of SIGTERMs")
    assert proc.returncode == 0
