"""The console clicked through as an operator would, offscreen, on real sessions.

Set-up -> preflight -> start -> pause -> resume -> threshold change -> note -> stop on a simulated
EEG session; arm -> E-STOP on a stimulation session with virtual devices (the device's own log shows
the disarm); an invalid protocol shown inline with its line; a session started from the console
survives the console's death and is attached to again. Every act is checked where it lands: the
session's journal, its XDF, the device log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

os.environ["QT_QPA_PLATFORM"] = "offscreen"
pytest.importorskip("PySide6", reason="the gui extra is not installed: pip install -e '.[gui,test]'")
pytest.importorskip("pyqtgraph", reason="the gui extra is not installed: pip install -e '.[gui,test]'")
pyxdf = pytest.importorskip("pyxdf")
pylsl = pytest.importorskip("pylsl")

from PySide6 import QtCore  # noqa: E402

from controller.console.session_link import running_sessions  # noqa: E402
from controller.console.window import ConsoleWindow  # noqa: E402
from controller.display.qt import application  # noqa: E402
from controller.operator.control_client import ENV_DIR, request  # noqa: E402

pytestmark = [pytest.mark.lsl, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
LEFT = QtCore.Qt.MouseButton.LeftButton
WAIT_MS = 90_000

EEG_PROTOCOL = """
protocol: console-eeg
inputs:
  eeg: {stream: {type: EEG}, channels: [Cz, Fp1, Fp2], reference: average, highpass: 0.5 Hz}
features:
  tbr: {band_ratio: {input: eeg, channels: [Cz], numerator: [4 Hz, 8 Hz], denominator: [13 Hz, 21 Hz], window: 1 s, every: 100 ms}}
thresholds:
  goal: {fixed: 2.0}
timeline: [{baseline: 60 s}, {train: 120 s}, {transfer: 60 s}]
rules:
  - {during: train, when: tbr < goal, do: {feedback: reward}}
feedback: {value: tbr, range: [4.0, 1.0], during: [train]}
"""


@pytest.fixture(scope="module")
def app():
    return application()


@pytest.fixture
def control_dir(monkeypatch):
    d = Path(tempfile.mkdtemp(prefix="nr-con-"))  # short: AF_UNIX paths are limited to 107 bytes
    monkeypatch.setenv(ENV_DIR, str(d))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def journal(folder: Path) -> list[dict]:
    out = []
    for line in (folder / "journal.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def session_folder(root: Path) -> Path:
    found = [p.parent for p in root.glob("*/manifest.json")]
    assert len(found) == 1, found
    return found[0]


def click(qtbot, widget) -> None:
    """As an operator does: once the button is enabled (the window updates it from the next status)."""
    qtbot.waitUntil(widget.isEnabled, timeout=WAIT_MS)
    qtbot.mouseClick(widget, LEFT)


def state_of(window) -> str | None:
    return (window.link.status or {}).get("state") if window.link is not None else None


def close(window, qtbot) -> None:
    if window.link is not None and window.link.exit_code() is None and window.link.process is not None:
        window.link.act("stop", operator="teardown")
        window.link.process.wait(60)
    window.close()
    if window.simulator is not None:
        window.simulator.stop()


def test_an_invalid_protocol_is_shown_inline_with_its_line_and_column(app, qtbot, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EEG_PROTOCOL.replace("window: 1 s", "window: 1 parsec"))
    window = ConsoleWindow(operator="ana", participant="p01", session_root=tmp_path / "sessions")
    qtbot.addWidget(window)
    window.setup_page.choose_protocol(bad)
    text = window.setup_page.validation.toPlainText()
    completed = subprocess.run([sys.executable, "-m", "controller.cli", "validate", str(bad)], capture_output=True,
                               text=True, cwd=ROOT)
    assert completed.returncode == 2
    first = completed.stderr.strip().splitlines()[0]
    assert first.startswith(f"{bad}:6:") and first in text  # the same message as `neuroreflex validate`
    assert "1 parsec" in text.splitlines()[1]  # the offending line quoted under it, with a caret
    assert window.setup_page.protocol is None
    click(qtbot, window.controls.buttons["start"])
    assert window.link is None and "the protocol is not valid" in window.log_lines[-1]


def test_operator_runs_a_simulated_eeg_session_from_set_up_to_stop(app, qtbot, tmp_path, control_dir):
    protocol = tmp_path / "console_eeg.yaml"
    protocol.write_text(EEG_PROTOCOL)
    root = tmp_path / "sessions"
    window = ConsoleWindow(operator="ana", participant="p01", session_root=root, sim_channels=8, sim_rate=250.0)
    qtbot.addWidget(window)
    window.show()
    try:
        window.setup_page.choose_protocol(protocol)
        assert window.setup_page.validation.toPlainText().startswith("valid protocol 'console-eeg'")

        click(qtbot, window.setup_page.preflight_button)
        qtbot.waitUntil(lambda: window.preflight_page.runs == 1, timeout=WAIT_MS)
        checks = {c.name: c for c in window.preflight_page.checks}
        assert checks["stream eeg"].level == "green", checks["stream eeg"]
        assert window.simulator is not None and window.simulator.name in checks["stream eeg"].reason
        sim_name = window.simulator.name
        assert checks["channels eeg"].level == "green"
        assert window.preflight_page.view.table.rowCount() == len(checks)

        click(qtbot, window.controls.buttons["start"])
        if window.link is None:  # a red check on this machine (e.g. little disk): the second click starts anyway
            click(qtbot, window.controls.buttons["start"])
        assert window.link is not None
        qtbot.waitUntil(lambda: state_of(window) == "running", timeout=WAIT_MS)
        sid = window.link.session_id
        assert window.simulator.marker_stream == window.link.status["outlets"]["markers"]  # it learns from rewards
        qtbot.waitUntil(lambda: _signal_samples(window) > 250, timeout=WAIT_MS)
        assert window.live_page.signal_model.labels[:3] == ["Fp1", "Fp2", "F3"] or "Cz" in window.live_page.signal_model.labels
        assert "session " + sid in window.header.text()
        window.display_mode.setCurrentText("game")  # the participant's screen (offscreen: screen 0)
        window.display_screen.setValue(0)
        click(qtbot, window.findChild(type(window.estop_button), "open-participant-display"))
        participant = window.participant_window
        assert participant is not None and participant.isVisible() and participant.mode == "game"
        assert participant.state.feedback.block == "baseline"  # opened mid-block: its instruction shows at once

        click(qtbot, window.controls.buttons["pause"])
        qtbot.waitUntil(lambda: state_of(window) == "paused", timeout=WAIT_MS)
        click(qtbot, window.controls.buttons["resume"])
        qtbot.waitUntil(lambda: state_of(window) == "running", timeout=WAIT_MS)
        click(qtbot, window.controls.buttons["skip"])
        qtbot.waitUntil(lambda: (window.link.status or {}).get("block") == "train", timeout=WAIT_MS)
        qtbot.waitUntil(lambda: participant.state.feedback.block == "train"  # its own markers, from the outlet
                        and participant.state.feedback.updates > 0, timeout=WAIT_MS)

        controls = window.controls
        controls.threshold_box.setCurrentText("goal")
        controls.threshold_value.setText("2.5")
        controls.threshold_reason.setText("rewarded too often")
        click(qtbot, controls.threshold_button)
        qtbot.waitUntil(lambda: (window.link.status or {}).get("thresholds") == {"goal": 2.5}, timeout=WAIT_MS)
        qtbot.keyClicks(controls.note_edit, "participant yawning")
        click(qtbot, controls.note_button)
        qtbot.waitUntil(lambda: any("note: done" in line for line in window.log_lines), timeout=WAIT_MS)

        click(qtbot, window.controls.buttons["stop"])
        qtbot.waitUntil(lambda: window.link.exit_code() is not None, timeout=WAIT_MS)
        assert window.link.exit_code() == 0, window.link.log_tail(30)
        qtbot.waitUntil(lambda: any("ended" in line for line in window.log_lines), timeout=WAIT_MS)
        folder = session_folder(root)
        window.open_review(folder)  # the finished session, scrubbed through in the same window
        review = window.review_page
        assert window.tabs.currentWidget() is review and review.record is not None
        notes = [r for r in range(review.events_table.rowCount())
                 if "participant yawning" in " ".join(review.events_table.item(r, c).text()
                                                     for c in range(review.events_table.columnCount())
                                                     if review.events_table.item(r, c))]
        assert notes, "the note is among the reviewed events"
        review.scrub_to_event(notes[0])
        assert abs(review.position - review.record.events[notes[0]].t) < 0.2
    finally:
        close(window, qtbot)

    events = journal(folder)
    acts = {e["data"]["act"]: e["data"] for e in events if e["kind"] == "operator"}
    for act in ("pause", "resume", "skip", "threshold", "note", "stop"):
        assert act in acts, act
        assert acts[act]["by"] == "ana" and "console" in acts[act]["via"], acts[act]
    assert acts["threshold"]["reason"] == "rewarded too often" and acts["threshold"]["before"] == 2.0
    assert acts["note"]["text"] == "participant yawning"
    assert events[-1]["kind"] == "session_end"
    streams, _ = pyxdf.load_xdf(str(next(folder.glob("*.xdf"))))
    markers = next(s for s in streams if s["info"]["name"][0].endswith("-markers"))
    assert "note:participant yawning" in [m[0] for m in markers["time_series"]]
    assert any(s["info"]["name"][0] == sim_name for s in streams)  # the console's simulator, recorded as a stream


def _signal_samples(window) -> int:
    model = window.live_page.signal_model if window.live_page is not None else None
    return 0 if model is None else int(model.samples_in)


def test_operator_arms_in_two_steps_and_the_estop_button_disarms_the_virtual_device(app, qtbot, tmp_path,
                                                                                    control_dir):
    root = tmp_path / "sessions"
    window = ConsoleWindow(operator="ana", participant="p02", session_root=root, site=ROOT / "config" / "site.yaml",
                           sim_channels=32, sim_rate=1000.0)
    qtbot.addWidget(window)
    window.show()
    try:
        window.setup_page.choose_protocol(ROOT / "protocols" / "phase_locked_tms.yaml")
        assert "stimulates tms" in window.setup_page.validation.toPlainText()
        click(qtbot, window.setup_page.preflight_button)
        qtbot.waitUntil(lambda: window.preflight_page.runs == 1, timeout=WAIT_MS)
        checks = {c.name: c for c in window.preflight_page.checks}
        assert checks["device tms"].level == "green" and "virtual" in checks["device tms"].reason
        assert checks["dose tms"].level == "green"  # a new participant: nothing used today
        click(qtbot, window.controls.buttons["start"])
        if window.link is None:
            click(qtbot, window.controls.buttons["start"])
        qtbot.waitUntil(lambda: state_of(window) == "running"
                        and "tms" in ((window.link.status or {}).get("devices") or {}), timeout=WAIT_MS)
        assert window.controls.stim_row.isVisible()
        assert window.link.status["devices"]["tms"]["armed"] is False

        controls = window.controls
        click(qtbot, controls.arm_button)  # step 1: names what will be armed, sends nothing
        assert controls.arm_button.text() == "Confirm: ARM tms"
        assert window.link.status["devices"]["tms"]["armed"] is False
        click(qtbot, controls.arm_button)  # step 2: armed, with the operator's name
        qtbot.waitUntil(lambda: (window.link.status.get("devices") or {}).get("tms", {}).get("armed") is True,
                        timeout=WAIT_MS)

        click(qtbot, window.estop_button)
        assert any(line.startswith(f"E-STOP {window.link.session_id}: done") for line in window.log_lines)
        qtbot.waitUntil(lambda: window.link.status["devices"]["tms"]["armed"] is False
                        and "estop" in (window.link.status.get("interlocks") or {}), timeout=WAIT_MS)
        status = window.link.status
        assert "E-STOP button (ana)" in status["interlocks"]["estop"]
        qtbot.waitUntil(lambda: "estop" in window.header.text().lower() or "E-STOP" in window.header.text(),
                        timeout=WAIT_MS)
        folder = Path(status["folder"])
        click(qtbot, window.controls.buttons["stop"])
        qtbot.waitUntil(lambda: window.link.exit_code() is not None, timeout=WAIT_MS)
    finally:
        close(window, qtbot)

    events = journal(folder)
    arms = [e["data"] for e in events if e["kind"] == "operator" and e["data"]["act"] == "arm"]
    assert len(arms) == 1 and arms[0]["by"] == "ana" and arms[0]["done"] is True
    estops = [e for e in events if e["kind"] == "operator" and e["data"]["act"] == "estop"]
    assert len(estops) == 1 and "console" in estops[0]["data"]["via"]
    log = [json.loads(line) for line in (folder / "devices" / "tms.jsonl").read_text().splitlines() if line.strip()]
    meanings = [str(e.get("meaning", "")) for e in log]
    armed_at = next(i for i, m in enumerate(meanings) if m == "arm")
    assert any(m == "disarm" for m in meanings[armed_at:]), meanings  # the device itself was told


def test_killing_the_console_leaves_the_session_running_and_a_new_console_attaches(app, qtbot, tmp_path,
                                                                                  control_dir):
    protocol = tmp_path / "console_eeg.yaml"
    protocol.write_text(EEG_PROTOCOL)
    root = tmp_path / "sessions"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", ENV_DIR: str(control_dir)}
    console = subprocess.Popen([sys.executable, "-m", "controller.cli", "console", "--protocol", str(protocol),
                                "--operator", "ana", "--participant", "p03", "--session-dir", str(root), "--start",
                                "--sim-channels", "8", "--sim-rate", "250"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sim_pattern = None
    try:
        first = console.stdout.readline().strip()
        assert first.startswith("session "), (first, console.stderr.read() if console.poll() is not None else "")
        sid = first.split()[1]
        sim_pattern = f"{sid}-sim-eeg"

        def state() -> str | None:
            replies = [r for r in request("status", {}, session=sid, timeout=2.0) if r.ok]
            return replies[0].result.get("state") if replies else None

        qtbot.waitUntil(lambda: state() == "running", timeout=WAIT_MS)
        folder = Path(request("status", {}, session=sid, timeout=2.0)[0].result["folder"])
        # a few seconds in (LabRecorder subscribes to the session's outlets about a second after they open)
        qtbot.waitUntil(lambda: sum(e["kind"] == "feature" for e in journal(folder)) > 40, timeout=WAIT_MS)
        lines_before = len(journal(folder))
        console.send_signal(signal.SIGKILL)
        console.wait(10)
        t_killed = time.monotonic()
        t_killed_lsl = pylsl.local_clock()
        qtbot.waitUntil(lambda: time.monotonic() - t_killed > 3 and len(journal(folder)) > lines_before + 20,
                        timeout=WAIT_MS)  # the session goes on: features keep being journaled
        assert state() == "running" and sid in running_sessions()

        window = ConsoleWindow(operator="bob", participant="p03", session_root=root)
        qtbot.addWidget(window)
        window.attach(sid)
        qtbot.waitUntil(lambda: window.live_page is not None and _signal_samples(window) > 250, timeout=WAIT_MS)
        click(qtbot, window.controls.buttons["stop"])
        qtbot.waitUntil(lambda: sid not in running_sessions(), timeout=WAIT_MS)
        qtbot.waitUntil(lambda: journal(folder)[-1]["kind"] == "session_end", timeout=WAIT_MS)  # closed in order
        window.close()
    finally:
        if console.poll() is None:
            console.kill()
        if sim_pattern and sim_pattern.split("-")[0] in running_sessions():  # a failed test: stop what it started
            request("stop", {"operator": "teardown"}, session=sim_pattern.split("-")[0], timeout=5.0)
        if sim_pattern:  # the console's simulator outlives the console by design; the test stops it
            subprocess.run(["pkill", "-f", sim_pattern], check=False)

    events = journal(folder)
    assert events[-1]["kind"] == "session_end"
    stop = [e["data"] for e in events if e["kind"] == "operator" and e["data"]["act"] == "stop"]
    assert len(stop) == 1 and stop[0]["by"] == "bob"
    streams, _ = pyxdf.load_xdf(str(next(folder.glob("*.xdf"))))
    features = next(s for s in streams if s["info"]["name"][0].endswith("-features"))
    stamps = features["time_stamps"]
    assert stamps[0] < t_killed_lsl < stamps[-1] - 1.0  # recorded across the console's death, and on after it
    assert float(max(stamps[1:] - stamps[:-1])) < 1.0  # with no hole (features every 100 ms)
