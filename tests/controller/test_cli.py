"""The `neuroreflex` command as a user runs it (subprocesses, real LSL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "data" / "protocols_bad"


def cli(*args: str, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.parametrize("name", ["tbr_adhd", "smr", "tbr_demo"])
def test_validate_library_protocols(name):
    r = cli("validate", str(ROOT / "protocols" / f"{name}.yaml"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1 and "valid protocol" in r.stdout


def test_validate_reports_every_error_as_file_line_col():
    path = BAD / "several_errors.yaml"
    r = cli("validate", str(path))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) >= 3
    for line in lines:
        file, line_no, col, message = line.split(":", 3)
        assert file == str(path) and int(line_no) > 0 and int(col) > 0 and message.strip()


def test_validate_missing_file_is_a_clear_error(tmp_path):
    r = cli("validate", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "nope.yaml" in r.stderr


def test_schema_is_json_with_the_protocol_sections():
    r = cli("schema")
    assert r.returncode == 0
    schema = json.loads(r.stdout)
    assert {"protocol", "inputs", "features", "thresholds", "timeline", "rules"} <= set(schema["properties"])


@pytest.mark.lsl
def test_sim_eeg_streams_for_a_duration_and_exits_cleanly():
    r = cli("sim", "eeg", "--channels", "8", "--rate", "250", "--duration", "1",
            "--name", f"cli-{uuid.uuid4().hex[:6]}")
    assert r.returncode == 0, r.stderr
    assert "8 ch @ 250 Hz" in r.stdout


SHORT = """
protocol: cli-short
inputs:
  eeg: {stream: {type: EEG}, channels: [Cz]}
features:
  tbr: {band_ratio: {input: eeg, numerator: [4 Hz, 8 Hz], denominator: [13 Hz, 21 Hz], window: 2 s, every: 100 ms}}
thresholds:
  goal: {percentile: {feature: tbr, during: baseline, q: 50}}
timeline: [{baseline: 4 s}, {train: 4 s}]
rules:
  - {during: train, when: tbr < goal, do: {feedback: reward}}
feedback: {value: tbr, range: [4.0, 1.0]}
"""


@pytest.mark.lsl
@pytest.mark.slow
def test_run_with_sim_then_rebuild_report(tmp_path):
    protocol = tmp_path / "short.yaml"
    protocol.write_text(SHORT)
    r = cli("run", str(protocol), "--sim", "--channels", "8", "--rate", "250", "--session-dir", str(tmp_path / "s"),
            "--no-report", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "session completed" in r.stdout
    assert "block 2: train" in r.stdout  # progress is visible
    assert "threshold goal" in r.stdout
    [session] = list((tmp_path / "s").iterdir())
    assert not (session / "report").exists()
    r = cli("report", str(session))
    assert r.returncode == 0, r.stderr
    assert (session / "report" / "report.html").is_file()


def test_report_on_a_folder_that_is_not_a_session(tmp_path):
    r = cli("report", str(tmp_path))
    assert r.returncode == 2 and "not a session folder" in r.stderr


@pytest.mark.lsl
def test_run_without_a_stream_says_what_is_visible(tmp_path):
    protocol = tmp_path / "p.yaml"
    protocol.write_text(SHORT.replace("{type: EEG}", f"{{name: absent-{uuid.uuid4().hex[:6]}}}")
                        .replace("protocol: cli-short", "protocol: cli-absent"))
    text = protocol.read_text().replace("eeg: {stream:", "eeg: {stall: 1 s, stream:")
    protocol.write_text(text)
    r = cli("run", str(protocol), "--session-dir", str(tmp_path / "s"), "--no-report", timeout=120)
    assert r.returncode == 1
    assert "no LSL stream matches [name='absent-" in r.stderr
    assert "Visible streams" in r.stderr
