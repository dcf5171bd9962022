"""Remote requests and the monitor's table without a broker: what is accepted, what is refused and why,
what the journal gets, and what a row shows (the broker-backed cases: test_telemetry_remote.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.telemetry.monitor import Board
from controller.telemetry.remote import Refused, Request, check, execute, journal_refusal, parse_request


class Bus:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def publish(self, event: Any) -> None:
        self.events.append(event)


class Acts:
    """Records the calls an OperatorActs would get."""

    def __init__(self, engine: object | None = object()) -> None:
        self.engine = engine
        self.bus = Bus()
        self.calls: list[tuple[Any, ...]] = []

    def pause(self, via: str, by: str | None = None, reason: str | None = None) -> bool:
        self.calls.append(("pause", via, by, reason))
        return True

    def resume(self, via: str, by: str | None = None, reason: str | None = None) -> bool:
        self.calls.append(("resume", via, by, reason))
        return True

    def stop(self, via: str, by: str | None = None, reason: str | None = None) -> None:
        self.calls.append(("stop", via, by, reason))

    def note(self, text: str, via: str, by: str | None = None) -> dict[str, Any]:
        self.calls.append(("note", text, via, by))
        return {"noted": text}

    def estop(self, reason: str, via: str = "signal", by: str | None = None) -> dict[str, Any]:
        self.calls.append(("estop", reason, via, by))
        return {"estopped": True}


@pytest.mark.parametrize("payload, error, rid", [
    (b"{not json", "not JSON", None),
    (b"[1, 2]", "expected a JSON object", None),
    (b'{"cmd": "pause"}', "no request id", None),
    (b'{"id": "", "cmd": "pause"}', "no request id", None),
    (b'{"id": "a1"}', "no command", "a1"),
    (b'{"id": "a2", "cmd": "pause", "args": [1]}', "\"args\" must be a JSON object", "a2"),
    (b'{"id": "a3", "cmd": "pause", "by": 7}', "\"by\" must be a string", "a3"),
    (b"\xff\xfe", "not JSON", None),
    (b'{"id": "x", "cmd": "note", "args": {"text": "' + b"a" * 20000 + b'"}}', "too large", None),
])
def test_malformed_requests_are_refused_with_the_reason(payload, error, rid):
    with pytest.raises(Refused) as caught:
        parse_request(payload)
    assert error in caught.value.why and caught.value.rid == rid


@pytest.mark.parametrize("cmd, error", [
    ("arm", "refused by design: arming stays an act at the console"),
    ("clear_estop", "refused by design: lifting an E-STOP stays an act at the console"),
    ("skip", "unknown command 'skip'"),
    ("threshold", "unknown command 'threshold'"),
    ("disarm", "unknown command 'disarm'"),
])
def test_only_pause_resume_stop_estop_and_note_may_come_from_remote(cmd, error):
    with pytest.raises(Refused) as caught:
        check(Request("r1", cmd))
    assert error in caught.value.why and caught.value.rid == "r1"
    for ok in ("pause", "resume", "stop", "estop"):
        check(Request("r2", ok))
    check(Request("r3", "note", {"text": "hi"}))
    with pytest.raises(Refused, match="a note needs its text"):
        check(Request("r4", "note", {"text": "  "}))


def test_each_act_is_called_with_the_broker_user_and_the_senders_claim():
    acts = Acts()
    assert execute(acts, Request("1", "pause", {"reason": "why"}, "Dr. A"), "alice") == {"done": True}
    assert execute(acts, Request("2", "stop", {}, None), "alice") == {"done": True}
    assert execute(acts, Request("3", "note", {"text": "gel"}, "Dr. A"), "alice") == {"noted": "gel"}
    assert execute(acts, Request("4", "estop", {"reason": "smoke"}, "Dr. A"), "alice") == {"estopped": True}
    assert acts.calls == [
        ("pause", "remote (Dr. A, mqtt user alice)", "alice", "why"),
        ("stop", "remote (?, mqtt user alice)", "alice", None),
        ("note", "gel", "remote (Dr. A, mqtt user alice)", "alice"),
        ("estop", "smoke (remote, alice)", "remote (Dr. A, mqtt user alice)", "alice"),
    ]


def test_before_the_engine_exists_only_estop_and_notes_go_through():
    acts = Acts(engine=None)
    with pytest.raises(Refused, match="not started yet"):
        execute(acts, Request("1", "pause"), "alice")
    assert execute(acts, Request("2", "estop"), "alice") == {"estopped": True}


def test_a_refused_attempt_is_journaled_with_who_tried():
    acts = Acts()
    journal_refusal(acts, Request("9", "arm", {}, "Dr. A"), "alice", "refused by design")
    journal_refusal(acts, None, "alice", "malformed")  # nothing named: nothing journaled
    [event] = acts.bus.events
    assert event.kind == "operator"
    assert event.data == {"act": "arm", "by": "alice", "via": "remote (Dr. A, mqtt user alice)", "reason": None,
                          "done": False, "refused": "refused by design", "request": "9"}


def _msg(board: Board, kind: str, data: Any, retained: bool = False, session: str = "s1",
         site: str = "lab-a") -> list[str]:
    return board.update(f"neuroreflex/{site}/{session}/{kind}", json.dumps(data).encode(), retained)


def test_the_board_keeps_a_row_per_session_and_alerts_on_live_faults_offline_and_estop():
    board = Board()
    assert _msg(board, "status", {"status": "online"}, retained=True) == []
    _msg(board, "identity", {"protocol": "tavns"}, retained=True)
    _msg(board, "state", {"state": "running", "block": {"index": 0, "label": "rest"}}, retained=True)
    _msg(board, "feedback", {"value": 0.25})
    _msg(board, "devices", {"stimulators": {"tavns": {"armed": True}, "tms": {"armed": False}},
                            "inputs": {"eeg": {"status": "stalled"}}}, retained=True)
    _msg(board, "status", {"status": "online"}, session="s2", site="lab-b")
    row = board.rows[("lab-a", "s1")]
    assert (row.protocol, row.state, row.block, row.feedback, row.armed, row.signal) == (
        "tavns", "running", "rest", 0.25, ["tavns"], "eeg stalled")
    assert _msg(board, "fault", {"source": "old", "reason": "x"}, retained=True) == []  # history, no alert
    [alert] = _msg(board, "fault", {"source": "tavns", "reason": "no reply"})
    assert alert.startswith("ALERT ") and alert.endswith("lab-a/s1 fault: tavns: no reply")
    [alert] = _msg(board, "interlocks", {"inhibited": {"estop": "E-STOP: smoke"}, "estop": True})
    assert "lab-a/s1 E-STOP: E-STOP: smoke" in alert
    [alert] = _msg(board, "status", {"status": "offline"})
    assert "lab-a/s1 offline" in alert
    assert _msg(board, "status", {"status": "offline"}) == []  # once
    assert board.update("neuroreflex/lab-a/s1/cmd/alice", b"{}") == []  # commands are not the monitor's
    assert board.update("other/lab-a/s1/state", b"{}") == []
    table = board.render().splitlines()
    assert table[0].startswith("SITE") and len(table) == 3
    assert "E-STOP" in table[1] and "tavns: no reply" in table[1] and "offline" in table[1]
    assert "lab-b" in table[2]


def test_the_board_shows_an_ended_sessions_outcome_and_acks_as_event_lines():
    board = Board()
    _msg(board, "state", {"state": "ended", "status": "completed"})
    assert board.rows[("lab-a", "s1")].state == "completed"
    [line] = _msg(board, "ack", {"id": "r1", "cmd": "arm", "ok": False, "user": "alice", "error": "refused by design"})
    assert "command arm from alice (r1): refused: refused by design" in line
    assert _msg(board, "ack", {"id": "r2", "ok": True}, session="unknown") == []
