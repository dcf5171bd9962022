"""`neuroreflex sim device KIND` as an engineer runs it: a separate process, a port printed, a real driver on it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from drivers.magstim import MagstimDriver

ROOT = Path(__file__).resolve().parents[2]


def test_virtual_magstim_in_its_own_process_answers_the_real_driver():
    proc = subprocess.Popen([sys.executable, "-m", "sim", "device", "magstim", "--set", "model=200"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"on (\S+) \(Ctrl-C", line)
        assert match, line + proc.stderr.read()
        driver = MagstimDriver(match.group(1), model="200")
        driver.connect()
        status = driver.status()
        assert status.connected and status.remote and not status.armed
        driver.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "commands received" in out


def test_unknown_kind_lists_the_kinds():
    r = subprocess.run([sys.executable, "-m", "sim", "device", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "magstim" in r.stderr and "magventure" in r.stderr
