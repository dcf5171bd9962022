"""The typed event records: one definition for the writer and the reader, the journal's bytes unchanged.

The "as written before" dicts below are what the emitters built by hand before the records existed
(engine, governor, dispatcher, operator acts, input faults, fMRI session, runner, journal): the journal
line of a record must be exactly the line of that dict, so existing journals, readers and tools see
no difference.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from controller import event_records as rec
from controller import events as ev
from controller.events import Event, EventBus
from controller.recording.journal import Journal, encode_event, read_journal
from controller.report.data import load_session

T, TS = 1234.5, 1234.49


def _line(kind: str, data: dict, t_source: float | None = TS) -> str:
    return encode_event(Event(kind, T, t_source, data))


MISSED = (rec.MissedPulse(3, 10.2, 0.021),)
TRAIN = rec.TrainDelivered("tavns", 4, "fire", "tavns rule 1 (line 40)", 8.0, 7, 8.0, 7.0, 2e-6, 1.75e-6, True,
                           "complete", True, "1 slot skipped", 10.0, 10.3, MISSED)
TRAIN_DICT = {"device": "tavns", "entry": 4, "train": "fire", "rule": "tavns rule 1 (line 40)", "planned": 8.0,
              "delivered": 7, "counted": 8.0, "recorded": 7.0, "charge_counted_c": 2e-6, "charge_recorded_c": 1.75e-6,
              "confirmed": True, "ended_by": "complete", "short": True, "reason": "1 slot skipped", "t_start": 10.0,
              "t_end": 10.3, "missed": [{"pulse": 3, "t_due": 10.2, "late_s": 0.021}]}
VOLUME_DICT = {"index": 9, "counted": 4, "block": "happy", "block_index": 1, "acquired": 100.0, "received": 100.4,
               "arrived": 100.45, "source": "vol_00009.nii", "motion": [0.1, -0.2, 0.0, 0.01, 0.0, -0.03],
               "fd_mm": 0.12, "rois": {"amy": {"raw": 812.5, "detrended": 1.25}},
               "timing_ms": {"read": 5.0, "realign": 20.0, "roi": 1.0, "glm": 2.0, "features": 0.5,
                             "acquisition_to_arrival": None, "arrival_to_feedback": 30.0, "total": None},
               "input": "fmri", "acquisition_time": "unknown (a folder file does not say when its volume was acquired)"}

# (record, kind, the data dict as the emitter wrote it before)
AS_WRITTEN_BEFORE = [
    (rec.Feature("tbr", 2.5, 1200, None), ev.FEATURE,
     {"name": "tbr", "value": 2.5, "sample_index": 1200, "block_index": None}),
    (rec.Feature("amy_psc", math.nan, 9, 1), ev.FEATURE,
     {"name": "amy_psc", "value": math.nan, "sample_index": 9, "block_index": 1}),
    (rec.Feedback(0.4, 2.2, 0.0021), ev.FEEDBACK, {"value": 0.4, "raw": 2.2, "latency_s": 0.0021}),
    (rec.Decision("reward", 0, "train", None, 0.002, None, "tbr < goal for 300 ms"), ev.DECISION,
     {"rule": 0, "action": "reward", "block": "train", "latency_s": 0.002, "condition": "tbr < goal for 300 ms"}),
    (rec.Decision("stimulate:tms", 1, "monitor", 2, 0.004, 0.003, "ll > ll_max"), ev.DECISION,
     {"rule": 1, "action": "stimulate:tms", "block": "monitor", "block_index": 2, "latency_s": 0.004,
      "controller_latency_s": 0.003, "condition": "ll > ll_max"}),
    (rec.RulePaced(1, "rule 2 (line 30): refractory 5 s"), ev.INFO,
     {"rule": 1, "what": "rule paced", "reason": "rule 2 (line 30): refractory 5 s"}),
    (rec.State("inhibited", "input eeg stalled"), ev.STATE, {"state": "inhibited", "reason": "input eeg stalled"}),
    (rec.BlockStart(3, "train", 1, 180.0), ev.BLOCK_START, {"index": 3, "label": "train", "cycle": 1, "duration_s": 180.0}),
    (rec.BlockEnd(3, "train", 1, 40, 10, 0.25, False, None), ev.BLOCK_END,
     {"index": 3, "label": "train", "cycle": 1, "frames": 40, "rewarded": 10, "reward_rate": 0.25, "skipped": False,
      "skip_reason": None}),
    (rec.Threshold("goal", 2.9, "adapt", 0.6, 0.5, 30), ev.THRESHOLD,
     {"name": "goal", "value": 2.9, "reason": "adapt", "comparison_rate": 0.6, "reward_rate": 0.5, "n_values": 30}),
    (rec.Fault("lsl-feedback", "outlet closed"), ev.FAULT, {"source": "lsl-feedback", "reason": "outlet closed"}),
    (rec.Fault("journal", dropped_events=12), ev.FAULT, {"source": "journal", "dropped_events": 12}),
    (rec.InputStatus("eeg", "stalled", "no samples for 1 s"), ev.INPUT,
     {"input": "eeg", "status": "stalled", "detail": "no samples for 1 s"}),
    (rec.InputStatus("fmri", "joined", "joined at volume 7", 7), ev.INPUT,
     {"input": "fmri", "status": "joined", "detail": "joined at volume 7", "index": 7}),
    (rec.SafetyVerdict(False, "refused: tms intensity 85 % > 80 %", "tms", "set", "intensity_max", 85.0, 80.0, "r1"),
     ev.SAFETY, {"what": "refused", "verdict": "refused: tms intensity 85 % > 80 %", "device": "tms", "command": "set",
                 "limit": "intensity_max", "value": 85.0, "limit_value": 80.0, "rule": "r1"}),
    (rec.SafetyVerdict(True, "allowed: tms arm", "tms", "arm"), ev.SAFETY,
     {"what": "allowed", "verdict": "allowed: tms arm", "device": "tms", "command": "arm", "limit": None,
      "value": None, "limit_value": None, "rule": None}),
    (rec.InterlockRaised("estop", "operator"), ev.SAFETY, {"what": "inhibited", "source": "estop", "reason": "operator"}),
    (rec.InterlockCleared("latency"), ev.SAFETY, {"what": "cleared", "source": "latency"}),
    (rec.Refund("tacs", 10.0, 0.002), ev.SAFETY, {"what": "refund", "device": "tacs", "pulses": 10.0, "charge_c": 0.002}),
    (rec.DeliveryUnmatched("tavns", 12.5, 25), ev.SAFETY,
     {"what": "delivery_unmatched", "device": "tavns", "t_start": 12.5, "delivered": 25}),
    (rec.NotApplied("tacs", "set: port closed", {"current_a": 0.001}), ev.SAFETY,
     {"what": "not_applied", "device": "tacs", "reason": "set: port closed", "settings": {"current_a": 0.001}}),
    (rec.EStop("key e", 0.012), ev.SAFETY, {"what": "estop", "reason": "key e", "took_s": 0.012}),
    (rec.EStopDone("key e", None, 0.001), ev.SAFETY,
     {"what": "estop_done", "reason": "key e", "disarm_s": None, "took_s": 0.001}),
    (rec.EStopCleared("ana"), ev.SAFETY, {"what": "estop_cleared", "operator": "ana"}),
    (TRAIN, ev.DELIVERY, TRAIN_DICT),
    (TRAIN.as_short_train(2), ev.SHORT_TRAIN, {**TRAIN_DICT, "count": 2}),
    (rec.Command("tms", "fire", True, "tms-test rule 1 (line 9)", 20.0, 0.004, 0.003, "", "1 pulse"), ev.COMMAND,
     {"device": "tms", "kind": "fire", "ok": True, "rule": "tms-test rule 1 (line 9)", "t_sent": 20.0,
      "latency_s": 0.004, "controller_latency_s": 0.003, "note": "1 pulse"}),
    (rec.Command("tms", "set", False, "r1", reason="intensity_max", params={"intensity_pct": 85.0}), ev.COMMAND,
     {"device": "tms", "kind": "set", "ok": False, "rule": "r1", "reason": "intensity_max",
      "params": {"intensity_pct": 85.0}}),
    (rec.Command("tms", "disarm", True, "session end", 30.0), ev.COMMAND,
     {"device": "tms", "kind": "disarm", "ok": True, "rule": "session end", "t_sent": 30.0}),
    (rec.NotReady("tms", "tms: fire: not ready (charging)"), ev.COMMAND,
     {"device": "tms", "kind": "not_ready", "ok": False, "reason": "tms: fire: not ready (charging)"}),
    (rec.TrMismatch("fmri", "source says TR 1 s, protocol 2 s; the protocol's TR sets the design"), ev.INFO,
     {"input": "fmri", "what": "TR mismatch",
      "reason": "source says TR 1 s, protocol 2 s; the protocol's TR sets the design"}),
    (rec.Annotation("seizure_onset", 180.25), ev.INFO, {"what": "annotation", "text": "seizure_onset", "t": 180.25}),
    (rec.VolumeQC(9, 4, "happy", 1, 100.0, 100.4, 100.45, "vol_00009.nii", False, (0.1, -0.2, 0.0, 0.01, 0.0, -0.03),
                  0.12, {"amy": rec.RoiValues(812.5, 1.25)}, VOLUME_DICT["timing_ms"], "fmri",
                  VOLUME_DICT["acquisition_time"]), ev.VOLUME, VOLUME_DICT),
    (rec.VolumeQC(2, -3, None, None, 90.0, 90.0, 90.01, "vol_00002.nii", dummy=True, input="fmri"), ev.VOLUME,
     {"index": 2, "counted": -3, "block": None, "block_index": None, "acquired": 90.0, "received": 90.0,
      "arrived": 90.01, "source": "vol_00002.nii", "dummy": True, "input": "fmri"}),
    (rec.SessionStart("s1", "tbr-demo", "ab" * 32, (rec.TimelineEntry(0, "baseline", 60.0, None),), "tbr",
                      {"goal": "adaptive"}, {"goal": "tbr"},
                      {"eeg": {"name": "amp", "rate": 250.0, "si_scale": [1e-6]}}, 4242), ev.SESSION_START,
     {"session_id": "s1", "protocol": "tbr-demo", "protocol_sha256": "ab" * 32,
      "timeline": [{"index": 0, "label": "baseline", "duration_s": 60.0, "cycle": None}], "feedback_feature": "tbr",
      "thresholds": {"goal": "adaptive"}, "threshold_features": {"goal": "tbr"},
      "inputs": {"eeg": {"name": "amp", "rate": 250.0, "si_scale": [1e-6]}}, "pid": 4242}),
    (rec.SessionStart("s2", "amygdala", None, (), "amy_psc", {}, {}, {}, 7,
                      rec.FmriStart({"fmri": rec.FmriInputStart(2.0, 5, {"kind": "folder", "where": "/x", "tr_s": None,
                                                                         "shape": [74, 74, 36]}, ("amy", "ctl"))},
                                    "nf1")), ev.SESSION_START,
     {"session_id": "s2", "protocol": "amygdala", "protocol_sha256": None, "timeline": [],
      "feedback_feature": "amy_psc", "thresholds": {}, "threshold_features": {}, "inputs": {}, "pid": 7,
      "fmri": {"inputs": {"fmri": {"tr_s": 2.0, "skip": 5, "source": {"kind": "folder", "where": "/x", "tr_s": None,
                                                                     "shape": [74, 74, 36]}, "rois": ["amy", "ctl"]}},
               "run": "nf1"}}),
    (rec.SessionEnd("completed", {"blocks": [], "samples": {"eeg": 1000}}), ev.SESSION_END,
     {"status": "completed", "summary": {"blocks": [], "samples": {"eeg": 1000}}}),
]


@pytest.mark.parametrize("record, kind, before", AS_WRITTEN_BEFORE,
                         ids=[f"{k}-{type(r).__name__}-{i}" for i, (r, k, _) in enumerate(AS_WRITTEN_BEFORE)])
def test_the_journal_line_is_the_one_written_before_and_reads_back_as_the_record(record, kind, before) -> None:
    assert record.KIND == kind
    line = encode_event(record.event(T, TS))
    assert line == _line(kind, before)  # byte for byte, keys in the same order
    back = rec.parse(kind, json.loads(line)["data"], "journal.jsonl:1")
    assert type(back) is type(record)
    assert encode_event(back.event(T, TS)) == line
    if not any(isinstance(v, float) and math.isnan(v) for v in before.values()):
        assert back == record


def test_every_record_class_is_read_by_its_kind() -> None:
    classes = {type(r) for r, _, _ in AS_WRITTEN_BEFORE}
    assert classes >= set(rec.BY_KIND.values()) | set(rec.SAFETY_BY_WHAT.values()) | set(rec.INFO_BY_WHAT.values())
    assert rec.record_class(ev.OPERATOR, {"act": "pause"}) is None  # a kind the report does not read
    assert rec.record_class(ev.SAFETY, {"what": "something new"}) is None
    assert rec.record_class(ev.SAFETY, {"what": "inhibit", "source": "x"}) is rec.InterlockRaised  # older spelling


@pytest.mark.parametrize("kind, data, message", [
    (ev.FEATURE, {"value": 1.0}, "journal.jsonl:17: feature event: required field 'name' is missing"),
    (ev.FEATURE, {"name": "tbr", "value": "high"}, "journal.jsonl:17: feature event: field 'value' should be a number, "
                                                   "not 'high'"),
    (ev.FEATURE, {"name": "tbr", "value": 1.0, "sample_index": 1.5}, "field 'sample_index' should be an integer"),
    (ev.BLOCK_START, {"index": True, "label": "x"}, "field 'index' should be an integer, not True"),
    (ev.COMMAND, {"device": "tms", "kind": "fire"}, "command event: required field 'ok' is missing"),
    (ev.SESSION_START, {"timeline": [{"index": 0}]}, "session_start event: required field 'timeline[0].label'"),
    (ev.VOLUME, {"index": 3, "rois": {"amy": {"raw": "x", "detrended": 1.0}}}, "field 'rois.amy.raw' should be a "
                                                                               "number, not 'x'"),
    (ev.DELIVERY, {"device": "d", "missed": [{"pulse": 1, "t_due": 2.0}]}, "required field 'missed[0].late_s'"),
    (ev.SAFETY, {"what": "cleared"}, "safety (cleared) event: required field 'source' is missing"),
    (ev.STATE, ["running"], "state event: 'data' should be an object"),
])
def test_a_field_that_does_not_fit_names_the_line_and_the_field(kind: str, data, message: str) -> None:
    with pytest.raises(rec.RecordError) as info:
        rec.parse(kind, data, "journal.jsonl:17")
    assert message in str(info.value)


def test_optional_fields_stay_optional_for_older_and_hand_written_journals() -> None:
    assert rec.Feature.from_data({"name": "tbr", "value": 1}) == rec.Feature("tbr", 1.0)
    assert rec.Threshold.from_data({"name": "goal", "value": 2.9, "reason": "percentile"}).n_values is None
    assert rec.BlockStart.from_data({"index": 0, "label": "train", "cycle": None}).duration_s is None
    assert rec.SessionEnd.from_data({"status": "completed"}).summary is None
    assert rec.SessionStart.from_data({"protocol": "nf", "timeline": []}).fmri is None
    older = rec.VolumeQC.from_data({"index": 4, "motion": [0.0] * 6, "timing_ms": {"read": 1.0, "total": 9.0}})
    assert older.processed and older.counted is None and older.input is None and older.stage_ms("total") == 9.0
    assert older.stage_ms("arrival_to_feedback") is None
    assert rec.Annotation.from_data({"what": "annotation", "label": "seizure_onset"}).text == "seizure_onset"


def test_read_records_leaves_out_a_bad_line_says_why_and_keeps_the_rest() -> None:
    events = [
        {"kind": "session_open", "t": 0.5, "t_source": None, "data": {"operator": "ana"}},
        {"kind": "session_start", "t": 1.0, "t_source": None, "data": {"protocol": "p"}},
        {"kind": "feature", "t": 2.0, "t_source": 1.9, "data": {"name": 3, "value": 1.0}},
        {"kind": "feature", "t": 3.0, "t_source": 2.9, "data": {"name": "x", "value": 2.0}},
        {"kind": "state", "t": "late", "data": {"state": "running"}},
        {"kind": "safety", "t": 4.0, "t_source": None, "data": {"what": "a new kind of verdict"}},
    ]
    journal = rec.read_records(events, "journal.jsonl")
    assert [p.split(":")[1] for p in journal.problems] == ["3", "5"]
    assert "feature event: field 'name' should be text, not 3 (event left out)" in journal.problems[0]
    [feature] = journal.of(rec.Feature)
    assert (feature.t, feature.t_source, feature.line, feature.record) == (3.0, 2.9, 4, rec.Feature("x", 2.0))
    assert feature.at == 2.9
    assert journal.first(rec.SessionStart) is not None and journal.last(rec.SessionEnd) is None
    assert journal.counts == {"session_open": 1, "session_start": 1, "feature": 2, "state": 1, "safety": 1}
    assert (journal.t_first, journal.t_max) == (0.5, 4.0)


def test_a_damaged_line_is_a_report_problem_not_a_failed_report(tmp_path: Path) -> None:
    session = tmp_path / "s"
    bus = EventBus()
    with Journal(session / "journal.jsonl") as journal:
        journal.start(bus)
        bus.publish(rec.SessionStart(protocol="p", feedback_feature="x").event(10.0))
        for i in range(3):
            bus.publish(rec.Feature("x", float(i), i).event(11.0 + i, 10.9 + i))
        bus.publish(Event(ev.FEATURE, 14.0, 13.9, {"name": "x", "value": [1.0]}))  # a writer's bug
        bus.publish(rec.SessionEnd("completed", {}).event(15.0))
    assert len(read_journal(session / "journal.jsonl")) == 6
    data = load_session(session)
    assert data.features["x"].value.tolist() == [0.0, 1.0, 2.0]
    assert any("journal.jsonl:5: feature event: field 'value' should be a number" in p for p in data.journal_problems)
    assert data.status == "completed" and data.counts["feature"] == 4
