"""The operator's acts over the control channel on a real session: what the console sends.

A simulated EEG session runs in a thread; pause, resume, skip, a threshold change and a note go
through the session's control channel (the console's only way in) and are checked where they
land: the engine's state, the journal (who, why, the value replaced), and the XDF (the note's
marker). Bad requests are refused with a reason and change nothing.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

import pytest
import pyxdf
from stim_session_rig import wait_for

from controller.operator.control_client import ENV_DIR, request
from controller.session.runner import RunOptions, run_session
from controller.session.sim_commands import SimOptions

pytestmark = [pytest.mark.lsl, pytest.mark.slow]

PROTOCOL = """
protocol: console-acts
inputs:
  eeg: {stream: {type: EEG}, channels: [Cz, Fp1, Fp2], reference: average}
features:
  tbr: {band_ratio: {input: eeg, channels: [Cz], numerator: [4 Hz, 8 Hz], denominator: [13 Hz, 21 Hz], window: 1 s, every: 100 ms}}
thresholds:
  goal: {fixed: 2.0}
timeline: [{baseline: 60 s}, {train: 60 s}, {transfer: 60 s}]
rules:
  - {during: train, when: tbr < goal, do: {feedback: reward}}
feedback: {value: tbr, range: [4.0, 1.0]}
"""


def ask(cmd: str, session: str, **args):
    replies = request(cmd, args, session=session, timeout=5.0)
    assert len(replies) == 1, replies
    return replies[0]


@pytest.fixture
def control_dir(monkeypatch):
    d = Path(tempfile.mkdtemp(prefix="nr-acts-"))  # short: AF_UNIX paths are limited to 107 bytes
    monkeypatch.setenv(ENV_DIR, str(d))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_pause_resume_skip_threshold_note_and_stop_over_the_channel(tmp_path, control_dir):
    path = tmp_path / "protocol.yaml"
    path.write_text(PROTOCOL)
    sid = f"acts{uuid.uuid4().hex[:6]}"
    opts = RunOptions(protocol_path=path, session_root=tmp_path / "sessions", sim=SimOptions(channels=8, rate=250.0),
                      lsl_prefix=f"nrtest-{sid}", session_id=sid, progress=None, keyboard=False, build_report=False,
                      operator="ana")
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("result", run_session(opts)), daemon=True)
    thread.start()
    status = wait_for(lambda: (r := request("status", {}, session=sid, timeout=2.0)) and r[0].ok
                      and r[0].result.get("state") == "running" and r[0].result, 60, "a running session")
    assert status["protocol"] == "console-acts" and status["block"] == "baseline"
    assert status["outlets"]["markers"] == f"nrtest-{sid}-{sid}-markers"
    assert status["inputs"]["eeg"]["rate"] == 250.0 and Path(status["protocol_path"]) == path.resolve()
    assert status["thresholds"] == {"goal": 2.0} and status["n_blocks"] == 3

    assert ask("pause", sid, operator="ana", reason="participant sneezed").result == {"done": True}
    assert ask("status", sid).result["state"] == "paused"
    assert ask("resume", sid, operator="ana").result == {"done": True}
    assert ask("skip", sid, operator="ana", reason="baseline long enough").result == {"done": True}
    wait_for(lambda: ask("status", sid).result["block"] == "train", 10, "the train block")

    changed = ask("threshold", sid, name="goal", value=2.5, operator="ana", reason="too many rewards")
    assert changed.ok and changed.result == {"name": "goal", "value": 2.5, "before": 2.0}
    assert ask("status", sid).result["thresholds"] == {"goal": 2.5}
    unknown = ask("threshold", sid, name="gaol", value=1.0, operator="ana", reason="typo")
    assert not unknown.ok and "no threshold 'gaol'" in unknown.error and "goal" in unknown.error
    for bad, why in (({"name": "goal", "value": 1.0, "operator": "ana"}, "reason is needed"),
                     ({"name": "goal", "value": float("nan"), "operator": "ana", "reason": "x"}, "finite number"),
                     ({"name": "goal", "value": 1.0, "reason": "x"}, "operator's name is needed")):
        refused = ask("threshold", sid, **bad)
        assert not refused.ok and why in refused.error
    assert ask("status", sid).result["thresholds"] == {"goal": 2.5}

    assert ask("note", sid, text="electrode Fp1 re-gelled", operator="ana").ok
    assert not ask("note", sid, text="  ", operator="ana").ok
    assert ask("stop", sid, operator="ana", reason="end of test").result == {"done": True}
    thread.join(60)
    assert not thread.is_alive()
    result = outcome["result"]

    journal = [json.loads(line) for line in (result.session_dir / "journal.jsonl").read_text().splitlines()]
    acts = [e["data"] for e in journal if e["kind"] == "operator"]
    by_act = {a["act"]: a for a in acts if a.get("done", True)}
    assert by_act["pause"]["by"] == "ana" and by_act["pause"]["reason"] == "participant sneezed"
    assert by_act["threshold"] == {**by_act["threshold"], "name": "goal", "value": 2.5, "before": 2.0,
                                   "reason": "too many rewards", "by": "ana"}
    refused = [a for a in acts if a["act"] == "threshold" and a.get("done") is False]
    assert len(refused) == 1 and "gaol" in refused[0]["refused"]
    assert by_act["note"]["text"] == "electrode Fp1 re-gelled"
    thresholds = [e["data"] for e in journal if e["kind"] == "threshold"]
    assert thresholds[-1] == {**thresholds[-1], "name": "goal", "value": 2.5, "reason": "operator"}

    streams, _ = pyxdf.load_xdf(str(next(result.session_dir.glob("*.xdf"))))
    markers = next(s for s in streams if s["info"]["name"][0].endswith("-markers"))
    texts = [m[0] for m in markers["time_series"]]
    assert "note:electrode Fp1 re-gelled" in texts and "threshold:goal=2.5" in texts
