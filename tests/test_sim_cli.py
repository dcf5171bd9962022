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

REPO = Path(__file__).resolve().parents[1]


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
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "stopped after" in out
