"""Two sessions at once on one machine (issue 10): each recording, display and E-STOP reaches only its own.

Found in a lab: every session published 'neuroreflex-feedback', so the thermometer of one room showed
another room's session. Now outlet names and source_ids carry the session id, displays pick a session
(listing the candidates when several are visible), and an E-STOP goes to the session named, or to all
of them and says so.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import pyxdf
from helpers import session_started

from controller.cli import main
from controller.inputs.lsl.sessions import SessionChoiceError, choose_session, visible_sessions
from controller.operator.control_client import ENV_DIR
from controller.recording.journal import read_journal
from controller.session.runner import RunOptions, SimOptions, run_session

pytestmark = [pytest.mark.lsl, pytest.mark.slow]

PROTOCOL = """
protocol: iso-{which}
inputs:
  eeg: {{stream: {{type: EEG}}, channels: [Cz, Fp1, Fp2], reference: average}}
features:
  tbr: {{band_ratio: {{input: eeg, channels: [Cz], numerator: [4 Hz, 8 Hz], denominator: [13 Hz, 21 Hz], window: 1 s, every: 100 ms}}}}
thresholds:
  goal: {{fixed: 2.0}}
timeline: [{{train: 14 s}}]
rules:
  - {{during: train, when: tbr < goal, do: {{feedback: reward}}}}
feedback: {{value: tbr, range: [4.0, 1.0]}}
"""


@pytest.fixture
def control_dir(monkeypatch):
    d = Path(tempfile.mkdtemp(prefix="nr-iso-"))  # short: AF_UNIX paths are limited to 107 bytes
    monkeypatch.setenv(ENV_DIR, str(d))
    yield d
    shutil.rmtree(d, ignore_errors=True)



def _start(tmp_path: Path, which: str, prefix: str, session_id: str, results: dict) -> threading.Thread:
    root = tmp_path / which
    root.mkdir()
    path = root / "protocol.yaml"
    path.write_text(PROTOCOL.format(which=which))
    opts = RunOptions(protocol_path=path, session_root=root, sim=SimOptions(channels=8, rate=250.0, seed=len(which)),
                      lsl_prefix=prefix, session_id=session_id, progress=None, keyboard=False, build_report=False)

    def run() -> None:
        results[which] = run_session(opts)

    t = threading.Thread(target=run, name=f"session-{which}", daemon=True)
    t.start()
    return t


def _wait_for(done, what: str, limit_s: float = 60.0) -> None:
    """Poll until ``done()``; the limit only turns a hang into a failure that says what never happened."""
    give_up = time.monotonic() + limit_s
    while not done():
        if time.monotonic() > give_up:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _started(tmp_path: Path, which: str) -> bool:
    return session_started(tmp_path / which)


def test_two_sessions_keep_their_displays_recordings_and_estops_apart(tmp_path, control_dir, capsys, monkeypatch):
    prefix = f"iso-{uuid.uuid4().hex[:6]}"
    a, b = f"a{uuid.uuid4().hex[:5]}", f"b{uuid.uuid4().hex[:5]}"
    results: dict = {}
    threads = [_start(tmp_path, "one", prefix, a, results), _start(tmp_path, "two", prefix, b, results)]
    _wait_for(lambda: _started(tmp_path, "one") and _started(tmp_path, "two"), "both sessions to start")

    # displays: both sessions are visible; none is picked silently
    assert {s.session_id for s in visible_sessions(prefix)} == {a, b}
    with pytest.raises(SessionChoiceError, match="2 sessions publish") as err:
        choose_session(prefix, None, wait_s=2)
    assert a in str(err.value) and b in str(err.value)
    assert choose_session(prefix, a) == f"{prefix}-{a}"
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert main(["display", "thermometer", "--prefix", prefix, "--quit-after", "3"]) == 2
    assert "choose one with --session ID" in capsys.readouterr().err
    assert main(["display", "thermometer", "--prefix", prefix, "--session", a, "--quit-after", "3",
                 "--screenshot", str(tmp_path / "a.png")]) == 0
    assert f"following {prefix}-{a}-*" in capsys.readouterr().err

    # E-STOP: one session by name, then all of them, said out loud
    assert main(["estop", "--session", a, "--reason", "room one only"]) == 0
    assert f"E-STOP sent to session {a}" in capsys.readouterr().out
    assert main(["estop", "--reason", "everyone"]) == 0
    assert "E-STOP sent to ALL 2 running session(s)" in capsys.readouterr().out

    for t in threads:
        t.join(90)
    assert set(results) == {"one", "two"}

    def estops(which: str) -> list[str]:
        events = read_journal(results[which].session_dir / "journal.jsonl")
        return [e["data"]["reason"] for e in events if e["kind"] == "operator" and e["data"]["act"] == "estop"]

    assert [r.split(" (from")[0] for r in estops("one")] == ["room one only", "everyone"]
    assert [r.split(" (from")[0] for r in estops("two")] == ["everyone"]

    # recordings: each XDF holds its own session's outlets and simulator, none of the other's
    for which, mine, other in (("one", a, b), ("two", b, a)):
        streams, _ = pyxdf.load_xdf(str(results[which].session_dir / "recording.xdf"))
        names = {s["info"]["name"][0] for s in streams}
        assert {f"{prefix}-{mine}-features", f"{prefix}-{mine}-markers", f"{prefix}-{mine}-feedback",
                f"{prefix}-{mine}-sim-eeg"} <= names
        assert not any(other in n for n in names), names
        ids = {s["info"]["source_id"][0] for s in streams if s["info"]["type"][0] != "EEG"}
        assert all(mine in sid for sid in ids if sid.startswith(prefix)), ids
