"""The preflight as a table: one row per check, its level as a coloured cell, the reason beside it.

Thin on purpose: the checks are run by controller/console/preflight.py (Qt-free, tested there); this
widget only shows a list of them and asks for another run with ``run_again`` (the console runs the
preflight off the GUI thread and calls :meth:`PreflightView.show_checks` with the result).
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6 import QtCore, QtGui, QtWidgets

from controller.console.preflight import Check, overall

LEVEL_COLORS = {"green": "#2e7d32", "amber": "#f9a825", "red": "#c62828"}
COLUMNS = ("Level", "Check", "Reason")


class PreflightView(QtWidgets.QWidget):
    """A summary line, the checks table (reason and detail as tooltip) and a "Run again" button."""

    run_again = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QtWidgets.QLabel("preflight not run")
        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.button = QtWidgets.QPushButton("Run again")
        self.button.clicked.connect(self.run_again.emit)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table)

    def show_checks(self, checks: Sequence[Check]) -> None:
        """Replace the table with ``checks``, red rows first (then amber, then green), each group in order."""
        order = {"red": 0, "amber": 1, "green": 2}
        rows = sorted(checks, key=lambda c: order.get(c.level, 0))
        self.table.setRowCount(len(rows))
        for r, check in enumerate(rows):
            level = QtWidgets.QTableWidgetItem(check.level)
            level.setBackground(QtGui.QColor(LEVEL_COLORS.get(check.level, "#757575")))
            level.setForeground(QtGui.QColor("white" if check.level != "amber" else "black"))
            reason = QtWidgets.QTableWidgetItem(check.reason)
            reason.setToolTip(check.detail or check.reason)
            for c, item in enumerate((level, QtWidgets.QTableWidgetItem(check.name), reason)):
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        counts = {lv: sum(c.level == lv for c in checks) for lv in ("red", "amber", "green")}
        self.summary.setText(f"preflight {overall(checks) if checks else 'empty'}: "
                             f"{counts['red']} red, {counts['amber']} amber, {counts['green']} green")
        self.button.setEnabled(True)

    def running(self) -> None:
        """Say a run is under way (the button is disabled until the next show_checks)."""
        self.summary.setText("preflight running...")
        self.button.setEnabled(False)
