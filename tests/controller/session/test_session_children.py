"""The processes a session starts end with it, even when the session is killed with SIGKILL (issue 13):
the simulated participant, the virtual stimulators and the simulated scanner must not be left running,
streaming on the lab's network and holding pseudo-terminals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.session.child_processes import PARENT_ENV as CONTROLLER_PARENT_ENV
from sim.lifeline import PARENT_ENV

ROOT = Path(__file__).resolve().parents[3]


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _state(pid: int) -> str:
    """What a process that did not end is doing (for the failure message)."""
    try:
        status = {k: v.strip() for k, _, v in (line.partition(":") for line in
                                                Path(f"/proc/{pid}/status").read_text().splitlines())}
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return "gone"
    return (f"state {status.get('State')}, ppid {status.get('PPid')}, blocked signals {status.get('SigBlk')}, "
            f"pending {status.get('ShdPnd')}, caught {status.get('SigCgt')}, waiting in {wchan}")


def test_the_controller_and_the_simulators_agree_on_the_lifeline_variable() -> None:
    assert PARENT_ENV == CONTROLLER_PARENT_ENV


@pytest.mark.lsl
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the lifeline is Linux's PR_SET_PDEATHSIG")
@pytest.mark.parametrize("protocol, extra", [
    ("tavns.yaml", ["--site", "config/site.yaml", "--arm"]),  # the simulated participant and a virtual stimulator
    ("opennft_psc_replay.yaml", ["--replay", str(ROOT.parent / "shared" / "data" / "fmri" / "opennft"
                                                  / "opennft_psc_run_vols001-048_4d.nii.gz")]),  # the scanner
])
def test_a_session_killed_with_sigkill_leaves_no_simulator_running(tmp_path: Path, protocol: str,
                                                                   extra: list[str]) -> None:
    if protocol.startswith("opennft") and not Path(extra[-1]).exists():
        pytest.skip("../shared/data/fmri/opennft not present")
    cmd = [sys.executable, "-m", "controller.cli", "run", f"protocols/{protocol}", "--sim", "--session-dir",
           str(tmp_path), "--prefix", f"nr-kill-{tmp_path.name[-10:]}", *extra]
    session = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        kids: set[int] = set()
        while time.monotonic() < deadline:
            kids = {k for k in _children(session.pid) if " -m sim " in _command(k)}
            if kids and list(tmp_path.glob("*/journal.jsonl")):
                break
            assert session.poll() is None, "the session ended before its simulators started"
            time.sleep(0.1)
        assert kids, "no simulator process started"
        time.sleep(1.0)  # running: streams up, devices connected
        os.kill(session.pid, signal.SIGKILL)
        session.wait(10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.1)
        left = {k: f"{_command(k)} ({_state(k)})" for k in kids if _alive(k)}
        assert not left, f"still running after the session was killed: {left}"
    finally:
        if session.poll() is None:
            session.kill()
        for k in _children(session.pid):
            try:
                os.kill(k, signal.SIGKILL)
            except OSError:
                pass
