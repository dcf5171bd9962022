"""The operator's controls: start, pause, resume, skip, stop; arm (two steps, named); threshold; note.

No modal dialogs: every act is a row of plain widgets, so the E-STOP is never behind a dialog
and a test clicks exactly what an operator clicks. Each button emits a request; the window sends
it over the control channel and shows the session's answer (taken, or refused and why).
Arming takes two clicks within ``ARM_CONFIRM_S`` with the operator's name filled in: the first
names what will be armed and by whom, the second sends it.
"""

from __future__ import annotations

import math
import time
from typing import Any

from PySide6 import QtCore, QtWidgets

ARM_CONFIRM_S = 8.0


class Controls(QtWidgets.QWidget):
    act = QtCore.Signal(str, dict)  # command, args (the operator's name is added by the window)
    start_requested = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.buttons: dict[str, QtWidgets.QPushButton] = {}
        session = QtWidgets.QHBoxLayout()
        for name, text in (("start", "Start"), ("pause", "Pause"), ("resume", "Resume"), ("skip", "Skip block"),
                           ("stop", "Stop")):
            button = QtWidgets.QPushButton(text)
            button.setObjectName(f"control-{name}")
            self.buttons[name] = button
            session.addWidget(button)
        self.buttons["start"].clicked.connect(self.start_requested.emit)
        for name in ("pause", "resume", "skip", "stop"):
            self.buttons[name].clicked.connect(lambda _=False, n=name: self.act.emit(n, {}))

        self.device_box = QtWidgets.QComboBox()
        self.arm_button = QtWidgets.QPushButton("Arm…")
        self.arm_button.setObjectName("control-arm")
        self.disarm_button = QtWidgets.QPushButton("Disarm all")
        self.disarm_button.setObjectName("control-disarm")
        self.clear_button = QtWidgets.QPushButton("Clear E-STOP")
        self.clear_button.setObjectName("control-clear-estop")
        self.arm_button.clicked.connect(self._arm_clicked)
        self.disarm_button.clicked.connect(lambda: self.act.emit("disarm", {"device": self.device_box.currentText()
                                                                            or None, "reason": "console disarm"}))
        self.clear_button.clicked.connect(lambda: self.act.emit("clear_estop", {}))
        self._arm_pending: tuple[str, float] | None = None
        stim = QtWidgets.QHBoxLayout()
        stim.addWidget(QtWidgets.QLabel("Device"))
        stim.addWidget(self.device_box, 1)
        stim.addWidget(self.arm_button)
        stim.addWidget(self.disarm_button)
        stim.addWidget(self.clear_button)
        self.stim_row = QtWidgets.QWidget()
        self.stim_row.setLayout(stim)

        self.threshold_box = QtWidgets.QComboBox()
        self.threshold_value = QtWidgets.QLineEdit()
        self.threshold_value.setPlaceholderText("new value")
        self.threshold_reason = QtWidgets.QLineEdit()
        self.threshold_reason.setPlaceholderText("reason (journaled)")
        self.threshold_button = QtWidgets.QPushButton("Set threshold")
        self.threshold_button.setObjectName("control-threshold")
        self.threshold_button.clicked.connect(self._threshold_clicked)
        thresholds = QtWidgets.QHBoxLayout()
        thresholds.addWidget(QtWidgets.QLabel("Threshold"))
        thresholds.addWidget(self.threshold_box)
        thresholds.addWidget(self.threshold_value)
        thresholds.addWidget(self.threshold_reason, 1)
        thresholds.addWidget(self.threshold_button)

        self.note_edit = QtWidgets.QLineEdit()
        self.note_edit.setPlaceholderText("note for the journal and the recording")
        self.note_button = QtWidgets.QPushButton("Add note")
        self.note_button.setObjectName("control-note")
        self.note_button.clicked.connect(self._note_clicked)
        self.note_edit.returnPressed.connect(self._note_clicked)
        notes = QtWidgets.QHBoxLayout()
        notes.addWidget(QtWidgets.QLabel("Note"))
        notes.addWidget(self.note_edit, 1)
        notes.addWidget(self.note_button)

        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(session)
        layout.addWidget(self.stim_row)
        layout.addLayout(thresholds)
        layout.addLayout(notes)
        layout.addWidget(self.message)

    # ------------------------------------------------------------------ state from the session
    def update_from(self, status: dict[str, Any], *, linked: bool, operator: str) -> None:
        state = status.get("state")
        running = state in ("running", "inhibited")
        self.buttons["start"].setEnabled(not linked)
        self.buttons["pause"].setEnabled(linked and running)
        self.buttons["resume"].setEnabled(linked and state == "paused")
        self.buttons["skip"].setEnabled(linked and state in ("running", "inhibited", "paused"))
        self.buttons["stop"].setEnabled(linked and state not in (None, "stopped"))
        devices = sorted(status.get("devices") or {})
        self.stim_row.setVisible(bool(devices))
        if [self.device_box.itemText(i) for i in range(self.device_box.count())] != devices:
            self.device_box.clear()
            self.device_box.addItems(devices)
        names = sorted(status.get("thresholds") or {})
        if [self.threshold_box.itemText(i) for i in range(self.threshold_box.count())] != names:
            self.threshold_box.clear()
            self.threshold_box.addItems(names)
        for widget in (self.threshold_button, self.note_button):
            widget.setEnabled(linked)
        self.arm_button.setEnabled(linked and bool(operator.strip()) and bool(devices))
        if self._arm_pending and time.monotonic() - self._arm_pending[1] > ARM_CONFIRM_S:
            self._reset_arm("arming not confirmed in time: nothing was armed")

    # ------------------------------------------------------------------ acts
    def _arm_clicked(self) -> None:
        device = self.device_box.currentText()
        if not device:
            return
        pending = self._arm_pending
        if pending and pending[0] == device and time.monotonic() - pending[1] <= ARM_CONFIRM_S:
            self._reset_arm("")
            self.act.emit("arm", {"device": device})
            return
        self._arm_pending = (device, time.monotonic())
        self.arm_button.setText(f"Confirm: ARM {device}")
        self.arm_button.setStyleSheet("background:#b36b00; color:white; font-weight:bold")
        self.message.setText(f"Arming {device}: click 'Confirm' within {ARM_CONFIRM_S:g} s; it is journaled "
                             "with your name.")

    def _reset_arm(self, text: str) -> None:
        self._arm_pending = None
        self.arm_button.setText("Arm…")
        self.arm_button.setStyleSheet("")
        if text:
            self.message.setText(text)

    def _threshold_clicked(self) -> None:
        name = self.threshold_box.currentText()
        try:
            value = float(self.threshold_value.text().replace(",", "."))
        except ValueError:
            self.message.setText(f"threshold: {self.threshold_value.text()!r} is not a number")
            return
        if not math.isfinite(value):
            self.message.setText("threshold: the value must be finite")
            return
        reason = self.threshold_reason.text().strip()
        if not name or not reason:
            self.message.setText("threshold: choose the threshold and give the reason (it is journaled)")
            return
        self.act.emit("threshold", {"name": name, "value": value, "reason": reason})

    def _note_clicked(self) -> None:
        text = self.note_edit.text().strip()
        if not text:
            return
        self.act.emit("note", {"text": text})
        self.note_edit.clear()
