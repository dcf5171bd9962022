"""The console's one window: set up, preflight, live, review; the controls; the E-STOP always in view.

A frame timer (``FRAME_MS``) does all the GUI's work: it takes the newest status the link's thread
fetched, pulls the followed LSL streams without waiting, and redraws. Nothing here blocks on the
session except an act the operator clicked (one request on the control channel, bounded by its
timeout), and the E-STOP, which is sent before anything else is looked at.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from controller.console.controls import Controls
from controller.console.protocol_view import live_inputs, protocol_facts
from controller.console.session_link import (
    SessionLink,
    SessionSetup,
    SimulatedParticipant,
    estop_everything,
    running_sessions,
)
from controller.console.setup_page import SetupPage
from controller.display.qt import LslPoller

FRAME_MS = 40  # 25 frames per second
ESTOP_KEYS = ("Escape", "F12")
SIM_MARGIN_S = 120.0
RED_CONFIRM_S = 8.0  # the console's simulated participant outlives the protocol by this, then stops itself


class ConsoleWindow(QtWidgets.QMainWindow):
    def __init__(self, *, operator: str = "", participant: str = "", session_root: Path = Path("sessions"),
                 site: Path | None = None, sim_channels: int | str = 64, sim_rate: float = 500.0,
                 sim_chunk: int | None = None, sim_extra: Sequence[str] = ()) -> None:
        super().__init__()
        self.setWindowTitle("neuroreflex console")
        self.link: SessionLink | None = None
        self.simulator: SimulatedParticipant | None = None
        self.poller: LslPoller | None = None
        self.participant_window: QtWidgets.QWidget | None = None
        self.sim_channels, self.sim_rate, self.sim_chunk, self.sim_extra = sim_channels, sim_rate, sim_chunk, sim_extra
        self.facts: dict[str, Any] = {}
        self._labels: dict[str, list[str]] = {}  # input -> channel labels read from its stream
        self._signal_input: str | None = None
        self._signal_follower: Any = None
        self._status_seen: dict[str, Any] | None = None
        self._configured = False
        self._ended_reported = False
        self._red_pending: float | None = None
        self.pending_id: str | None = None  # the session id chosen at preflight (its streams are named after it)
        self.log_lines: list[str] = []
        self.frames = 0

        self.header = QtWidgets.QLabel("no session")
        self.header.setObjectName("header")
        self.header.setStyleSheet("font-size:15px; padding:4px")
        self.header.setWordWrap(True)  # a long interlock cause wraps; it never widens the window off the screen
        self.header.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.estop_button = QtWidgets.QPushButton("E-STOP  (Esc)")
        self.estop_button.setObjectName("estop")
        self.estop_button.setMinimumSize(180, 56)
        self.estop_button.setStyleSheet("background:#c00000; color:white; font-size:20px; font-weight:bold;"
                                        "border:3px solid #ffd000; border-radius:6px")
        self.estop_button.clicked.connect(self.estop)
        for key in ESTOP_KEYS:
            shortcut = QtGui.QShortcut(QtGui.QKeySequence(key), self)
            shortcut.setContext(QtCore.Qt.ShortcutContext.ApplicationShortcut)
            shortcut.activated.connect(self.estop)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.header, 1)
        top.addWidget(self.estop_button)

        self.tabs = QtWidgets.QTabWidget()
        self.setup_page = SetupPage(operator=operator, participant=participant, session_root=session_root, site=site)
        self.tabs.addTab(self.setup_page, "Set up")
        self.setup_page.preflight_requested.connect(self.run_preflight)
        from controller.console.preflight_page import PreflightPage

        self.preflight_page = PreflightPage()
        self.preflight_page.run_requested.connect(self.run_preflight)
        self.tabs.addTab(self.preflight_page, "Preflight")
        self.live_stack = QtWidgets.QStackedWidget()
        self.live_page: Any = None
        self.fmri_page: Any = None
        self.tabs.addTab(self.live_stack, "Live")
        self.review_page: Any = None
        self.tabs.addTab(QtWidgets.QWidget(), "Review")
        self.tabs.currentChanged.connect(self._tab_changed)

        self.controls = Controls()
        self.controls.act.connect(self.send_act)
        self.controls.start_requested.connect(self.start_session)
        self.log = QtWidgets.QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(500)
        self.log.setMaximumHeight(110)
        participant_row = QtWidgets.QHBoxLayout()
        self.display_mode = QtWidgets.QComboBox()
        self.display_mode.addItems(["bar", "game", "fmri-thermometer"])
        self.display_screen = QtWidgets.QSpinBox()
        self.display_screen.setRange(0, 8)
        self.display_screen.setValue(max(0, len(QtGui.QGuiApplication.screens()) - 1))
        open_display = QtWidgets.QPushButton("Open participant display")
        open_display.setObjectName("open-participant-display")
        open_display.clicked.connect(self.open_participant_display)
        attach = QtWidgets.QPushButton("Attach to a running session…")
        attach.setObjectName("attach")
        attach.clicked.connect(self._attach_clicked)
        participant_row.addWidget(QtWidgets.QLabel("Participant display"))
        participant_row.addWidget(self.display_mode)
        participant_row.addWidget(QtWidgets.QLabel("screen"))
        participant_row.addWidget(self.display_screen)
        participant_row.addWidget(open_display)
        participant_row.addStretch(1)
        participant_row.addWidget(attach)

        central = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(central)
        layout.addLayout(top)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.controls)
        layout.addLayout(participant_row)
        layout.addWidget(self.log)
        self.setCentralWidget(central)
        self.resize(1400, 950)
        self.frame_timer = QtCore.QTimer(self)
        self.frame_timer.setInterval(FRAME_MS)
        self.frame_timer.timeout.connect(self.frame)
        self.frame_timer.start()

    # ------------------------------------------------------------------ messages
    def say(self, text: str) -> None:
        self.log_lines.append(text)
        self.log.appendPlainText(text)

    @property
    def operator(self) -> str:
        return self.setup_page.operator_edit.text().strip()

    # ------------------------------------------------------------------ E-STOP
    def estop(self) -> None:
        """Sent first, to the followed session (or every session on this machine when none is followed)."""
        sid = self.link.session_id if self.link is not None else None
        replies = estop_everything(f"E-STOP button ({self.operator or 'operator'})", sid)
        if not replies:
            self.say("E-STOP: NO SESSION REACHABLE on this machine: use the hardware stop")
        for reply in replies:
            if reply.ok:
                took = (reply.result or {}).get("took_s")
                disarmed = ", ".join((reply.result or {}).get("disarmed") or []) or "no device"
                self.say(f"E-STOP {reply.session}: done" + (f" in {took * 1e3:.1f} ms" if took is not None else "")
                         + f"; disarmed: {disarmed}")
            else:
                self.say(f"E-STOP {reply.session}: FAILED: {reply.error}")

    # ------------------------------------------------------------------ preflight and start
    def _setup(self) -> SessionSetup | None:
        try:
            return self.setup_page.setup()
        except ValueError as exc:
            self.say(f"set-up: {exc}")
            self.tabs.setCurrentWidget(self.setup_page)
            return None

    def _ensure_simulator(self, setup: SessionSetup) -> SessionSetup:
        """For a simulated EEG session, the participant is started before preflight and followed as a stream."""
        protocol = self.setup_page.protocol
        if not setup.simulated or protocol is None or protocol.volume_inputs or len(protocol.inputs) != 1:
            return setup
        if self.pending_id is None:
            self.pending_id = uuid.uuid4().hex[:8]
        name = f"{setup.prefix}-{self.pending_id}-sim-eeg"
        if self.simulator is None or not self.simulator.alive() or self.simulator.name != name:
            if self.simulator is not None:
                self.simulator.stop()
            # rewarded by the session's own marker outlet (<prefix>-<session id>-markers), as under `run --sim`
            self.simulator = SimulatedParticipant(name, f"{setup.prefix}-{self.pending_id}-markers",
                                                  channels=self.sim_channels, rate=self.sim_rate,
                                                  chunk=self.sim_chunk or (1 if protocol.devices else 10),
                                                  duration_s=protocol.duration_s + SIM_MARGIN_S, extra=self.sim_extra)
            self.say(f"simulated participant started: LSL stream {name}")
        return SessionSetup(**{**setup.__dict__, "sim_stream": f"{next(iter(protocol.inputs))}={name}"})

    def run_preflight(self) -> None:
        setup = self._setup()
        if setup is None or self.setup_page.protocol is None:
            return
        setup = self._ensure_simulator(setup)
        self.tabs.setCurrentWidget(self.preflight_page)
        self.preflight_page.start(self.setup_page.protocol, setup)

    def start_session(self) -> None:
        if self.link is not None and self.link.exit_code() is None and self.link.status_error is None:
            self.say(f"session {self.link.session_id} is running: stop it before starting another")
            return
        setup = self._setup()
        if setup is None:
            return
        if self.preflight_page.level() == "red" and not self._confirm_red():
            return
        setup = self._ensure_simulator(setup)
        sid = self.pending_id or uuid.uuid4().hex[:8]
        try:
            link = SessionLink.launch(setup, session_id=sid)
        except (ValueError, OSError) as exc:
            self.say(f"cannot start: {exc}")
            return
        self.say(f"session {sid} starting: {' '.join(setup.command(sid)[2:])}")
        self.pending_id = None
        self._follow(link)

    def _confirm_red(self) -> bool:
        """Starting over a red preflight takes a second click within ``RED_CONFIRM_S``, and is logged."""
        now = time.monotonic()
        if self._red_pending is not None and now - self._red_pending <= RED_CONFIRM_S:
            self._red_pending = None
            self.say("starting despite a red preflight (confirmed by the operator)")
            return True
        self._red_pending = now
        reds = [c for c in self.preflight_page.checks if c.level == "red"]
        self.say("preflight is RED: " + "; ".join(f"{c.name}: {c.reason}" for c in reds)
                 + f". Click Start again within {RED_CONFIRM_S:g} s to start anyway.")
        return False

    def attach(self, session_id: str) -> None:
        self._follow(SessionLink.attach(session_id))
        self.say(f"attached to session {session_id}")

    def _attach_clicked(self) -> None:
        sessions = running_sessions()
        if not sessions:
            self.say("attach: no session is running on this machine")
            return
        sid, ok = QtWidgets.QInputDialog.getItem(self, "Attach", "Running sessions", sessions, 0, False)
        if ok and sid:
            self.attach(sid)

    def _follow(self, link: SessionLink) -> None:
        self.detach()
        self.link = link
        self._configured = False
        self._ended_reported = False
        self._status_seen = None
        link.start_polling()
        self.tabs.setCurrentWidget(self.live_stack)

    def detach(self) -> None:
        """Stop following (the session goes on)."""
        if self.poller is not None:
            self.poller.stop()
            self.poller = None
        if self.link is not None:
            self.link.stop_polling()
            self.link = None

    # ------------------------------------------------------------------ acts
    def send_act(self, command: str, args: dict[str, Any]) -> None:
        if self.link is None:
            self.say(f"{command}: no session")
            return
        args = dict(args)
        if command in ("arm", "threshold", "note", "clear_estop", "pause", "resume", "skip", "stop"):
            args.setdefault("operator", self.operator or None)
        reply = self.link.act(command, **args)
        if reply.ok:
            self.say(f"{command}: done {reply.result}")
            self.controls.message.setText(f"{command}: done")
        else:
            self.say(f"{command}: REFUSED: {reply.error}")
            self.controls.message.setText(f"{command} refused: {reply.error}")

    # ------------------------------------------------------------------ the frame
    def frame(self) -> None:
        self.frames += 1
        link = self.link
        status: dict[str, Any] = link.status if link is not None else {}
        if link is not None and status and status is not self._status_seen:
            self._status_seen = status
            self._on_status(status)
        self.controls.update_from(status, linked=link is not None and bool(status), operator=self.operator)
        if link is not None:
            self._check_ended(link)
        page = self.live_stack.currentWidget()
        if page is not None and hasattr(page, "refresh"):
            page.refresh()

    def _on_status(self, status: dict[str, Any]) -> None:
        if not self._configured and status.get("outlets"):  # a starting session has not named its streams yet
            self._configure(status)
        merged = self._merged(status)
        block = status.get("block") or "—"
        left = status.get("time_left_s")
        total = status.get("total_left_s")
        lat = status.get("latency_ms") or {}
        parts = [f"session {status.get('session')}", f"protocol {status.get('protocol')}",
                 f"state {str(status.get('state', '—')).upper()}", f"block {block}"]
        if left is not None:
            parts.append(f"{left:.0f} s left in block, {total:.0f} s in session")
        if lat:
            parts.append(f"loop {lat.get('median', 0):.1f}/{lat.get('p99', 0):.1f}/{lat.get('max', 0):.1f} ms")
        if status.get("interlocks") or status.get("inhibitions"):
            causes = {**(status.get("inhibitions") or {}), **(status.get("interlocks") or {})}
            parts.append("INHIBITED: " + "; ".join(f"{k}: {v}" for k, v in causes.items()))
        self.header.setText("   |   ".join(parts))
        page = self.live_stack.currentWidget()
        if page is not None and hasattr(page, "on_status"):
            page.on_status(merged)

    def _merged(self, status: dict[str, Any]) -> dict[str, Any]:
        """The status with what the protocol says (blocks, bands...) and the inputs as the live view takes them."""
        merged = {**self.facts, **status}
        blocks = self.facts.get("blocks") or []
        if blocks and status.get("total_left_s") is not None:  # session time on the protocol's timeline
            merged["elapsed_s"] = sum(b["duration_s"] for b in blocks) - float(status["total_left_s"])
        if status.get("inputs"):
            merged["inputs"] = live_inputs(status, self.facts, self._labels)
        return merged

    def _configure(self, status: dict[str, Any]) -> None:
        from controller.protocol import load_protocol

        self.facts = {}
        path = status.get("protocol_path")
        if path:
            try:
                self.facts = protocol_facts(load_protocol(path))
            except Exception as exc:  # the live view works without the protocol's facts (no bands, no blocks)
                self.say(f"cannot read the session's protocol {path}: {exc}")
        self._labels = {}
        merged = self._merged(status)
        if self.facts.get("fmri"):
            page = self._fmri_page(merged)
        else:
            page = self._eeg_page(merged)
        self.live_stack.setCurrentWidget(page)
        self._configured = True

    def _eeg_page(self, merged: dict[str, Any]) -> Any:
        from controller.console.live.live_page import LivePage

        if self.live_page is None:
            self.live_page = LivePage()
            self.live_stack.addWidget(self.live_page)
        page = self.live_page
        page.configure(merged)
        outlets = merged.get("outlets") or {}
        inputs = (self.link.status.get("inputs") if self.link is not None else None) or {}
        self._signal_input = next((n for n in (merged.get("channels") or {}) if n in inputs), next(iter(inputs), None))
        signal = inputs.get(self._signal_input) if self._signal_input else None
        names = list(merged.get("feature_names") or [])
        on_data: dict[str, Any] = {}
        if signal:
            on_data[signal["name"]] = page.on_signal
        if outlets:
            on_data[outlets["features"]] = lambda rows, stamps: page.on_features(rows, stamps, names)
            on_data[outlets["markers"]] = page.on_markers
            on_data[outlets["feedback"]] = page.on_feedback
        if self.poller is not None:
            self.poller.stop()
        self.poller = LslPoller(on_data, period_ms=FRAME_MS, parent=self)
        self._signal_follower = self.poller.followers[signal["name"]] if signal else None
        if signal:
            self.poller.timer.timeout.connect(self._maybe_labels)
        return page

    def _maybe_labels(self) -> None:
        """Once the signal stream's labels are read (in the background), the live view starts over with them."""
        follower = self._signal_follower
        if follower is None or self._signal_input in self._labels or follower.labels is None:
            return
        self._labels[self._signal_input] = list(follower.labels)
        if self.live_page is not None and self.link is not None and self.link.status:
            self.live_page.configure(self._merged(self.link.status))

    def _fmri_page(self, merged: dict[str, Any]) -> Any:
        """The operator panel (the session's fmri-qc, feedback and marker outlets) and the newest volume with
        the protocol's ROIs, read from the folder the session watches."""
        from controller.console.fmri_page import FmriLivePage

        if self.fmri_page is not None:
            self.live_stack.removeWidget(self.fmri_page)
            self.fmri_page.deleteLater()
        self.fmri_page = FmriLivePage(stream_base=merged.get("prefix"))
        self.live_stack.addWidget(self.fmri_page)
        inputs = ((merged.get("fmri") or {}).get("inputs") or {})
        name, source = next(((n, i.get("source") or {}) for n, i in inputs.items()), (None, {}))
        folder = source.get("where") if source.get("kind") == "folder" else None
        self.fmri_page.configure(merged["protocol_path"], Path(folder) if folder else None, name)
        if folder and source.get("pattern") and self.fmri_page.reader is not None:
            self.fmri_page.reader.pattern = source["pattern"]
        return self.fmri_page

    def _check_ended(self, link: SessionLink) -> None:
        code = link.exit_code()
        ended = code is not None or (link.process is None and link.status_error is not None and link.polls > 2)
        if ended and not self._ended_reported:
            self._ended_reported = True
            why = f"exit code {code}" if code is not None else link.status_error
            self.say(f"session {link.session_id} ended ({why})")
            for line in link.log_tail(6):
                self.say(f"  | {line}")
            if self.simulator is not None:
                self.simulator.stop()
                self.simulator = None

    # ------------------------------------------------------------------ participant display, review
    def open_participant_display(self) -> None:
        from controller.display.participant import ParticipantWindow

        if self.link is None:
            self.say("participant display: start or attach to a session first")
            return
        status = self.link.status or {}
        prefix = (status.get("outlets") or {}).get("feedback", "")[: -len("-feedback")]
        try:
            window = ParticipantWindow(mode=self.display_mode.currentText(), prefix=prefix)
            if status.get("block"):
                window.join_block(str(status["block"]))
            window.show_on(self.display_screen.value(), fullscreen=len(QtGui.QGuiApplication.screens()) > 1)
        except (ValueError, RuntimeError) as exc:
            self.say(f"participant display: {exc}")
            return
        if self.participant_window is not None:
            self.participant_window.close()
        self.participant_window = window
        self.say(f"participant display ({self.display_mode.currentText()}) on screen {self.display_screen.value()}")

    def open_review(self, folder: Path) -> None:
        page = self._review_page()
        page.open(Path(folder))
        self.tabs.setCurrentWidget(page)

    def _review_page(self) -> Any:
        if self.review_page is None:
            from controller.console.review_page import ReviewPage

            self.review_page = ReviewPage()
            index = self.tabs.count() - 1
            self.tabs.removeTab(index)
            self.tabs.insertTab(index, self.review_page, "Review")
        return self.review_page

    def _tab_changed(self, index: int) -> None:
        if self.tabs.tabText(index) == "Review" and self.review_page is None:
            page = self._review_page()
            folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Session folder", "sessions")
            if folder:
                page.open(Path(folder))

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        """Closing the console leaves the session running (attach again with --attach)."""
        if self.link is not None and self.link.exit_code() is None and self.link.status:
            self.say(f"the session {self.link.session_id} goes on: `neuroreflex console --attach "
                     f"{self.link.session_id}` to follow it again")
        self.frame_timer.stop()
        self.detach()
        if self.participant_window is not None:
            self.participant_window.close()
        super().closeEvent(event)
