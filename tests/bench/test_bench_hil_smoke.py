"""Smoke test of bench/hil_latency.py: a short run prints its table with finite figures.

No timing is asserted (the figures depend on the machine); only that the whole path ran:
LSL outlet process -> controller -> governor -> drivers -> virtual devices, and that every
row of the table is there with a count and numbers.
"""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "hil_latency.py"
NUM = r"(?:-?\d+\.\d+|nan)"
ROW = re.compile(rf"^(?P<label>.+?)\s+(?P<n>\d+)\s+(?P<med>{NUM})\s+(?P<p99>{NUM})\s+(?P<max>{NUM})$")


def _rows(out: str) -> dict[str, tuple[int, float, float, float]]:
    rows = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            rows[m["label"].strip()] = (int(m["n"]), float(m["med"]), float(m["p99"]), float(m["max"]))
    return rows


def _finite(row: tuple[int, float, float, float]) -> bool:
    n, med, p99, mx = row
    return n > 0 and all(math.isfinite(x) and x >= 0 for x in (med, p99, mx))


@pytest.mark.lsl
@pytest.mark.slow
def test_short_run_prints_every_row_with_finite_numbers():
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--seconds", "4", "--warmup", "1.5", "--paths", "triggerbox,magstim"],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "load average at start:" in out and "load average at end:" in out
    assert "devices: " in out
    rows = _rows(out)
    expected = [
        "bare LSL hop: push -> inlet thread has it, every push",
        "triggerbox: bare LSL hop of its trigger samples",
        "triggerbox: push -> command byte at the device",
        "triggerbox:   inlet thread has it -> at the device",
        "triggerbox:   Governor.request (allowed fire), incl. ledger",
        "triggerbox:   driver.fire() call",
        "magstim: bare LSL hop of its trigger samples",
        "magstim: push -> EH (fire) bytes at the device",
        "magstim:   inlet thread has it -> at the device",
        "magstim:   Governor.request (allowed fire), incl. ledger",
        "magstim:   driver.fire() call (incl. reply)",
        "ledger append per dose, all devices",
    ]
    missing = [label for label in expected if label not in rows]
    assert not missing, f"rows missing: {missing}\n{out}"
    not_finite = {label: rows[label] for label in expected if not _finite(rows[label])}
    assert not not_finite, f"rows without finite figures: {not_finite}\n{out}"
    for path in ("triggerbox", "magstim"):
        assert re.search(rf"{path}: \d+ events, [1-9]\d* reached the device", out), out
        assert f"{path}:   device - bare hop (every push)" in out


def test_bad_paths_are_refused_with_the_valid_names():
    proc = subprocess.run([sys.executable, str(BENCH), "--paths", "tms"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "tms" in proc.stderr and "triggerbox" in proc.stderr and "magstim" in proc.stderr
