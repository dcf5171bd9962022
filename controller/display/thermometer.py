"""The participant's thermometer: a large vertical bar showing the feedback value every TR, the
target line, and the block's instruction; in blocks without feedback, the instruction alone.

High contrast for a scanner projector: white on black, a thick outline, the fill turning from
blue to green when it reaches the target line, text sized from the window height.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from controller.display.model import ThermometerState
from controller.display.qt import LslPoller, pen

BAR_X, BAR_W = 0.36, 0.28  # bar position and width in view units (the view spans 0..1 both ways)
FILL_BELOW = "#3fa9f5"
FILL_REACHED = "#2fd26b"
TARGET = "#ffd400"


class ThermometerView(QtWidgets.QWidget):
    """Renders a ``ThermometerState``; call ``refresh()`` after changing the state."""

    def __init__(self, state: ThermometerState, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.setWindowTitle("neuroreflex - feedback")
        self.setAutoFillBackground(True)
        palette = self.palette()
        palette.setColor(QtGui.QPalette.ColorRole.Window, QtGui.QColor("black"))
        self.setPalette(palette)

        self.label = QtWidgets.QLabel("", self)
        self.label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.label.setWordWrap(True)
        self.label.setStyleSheet("color: white; background: black;")

        self.graphics = pg.GraphicsLayoutWidget(self)
        self.graphics.setBackground("k")
        self.view = self.graphics.addViewBox()
        self.view.setMouseEnabled(False, False)
        self.view.setMenuEnabled(False)
        self.view.disableAutoRange()
        self.view.setRange(xRange=(0, 1), yRange=(-0.03, 1.03), padding=0)

        self.fill = QtWidgets.QGraphicsRectItem(BAR_X, 0, BAR_W, 0)
        self.fill.setPen(QtGui.QPen(QtCore.Qt.PenStyle.NoPen))
        self.fill.setBrush(QtGui.QColor(FILL_BELOW))
        self.outline = QtWidgets.QGraphicsRectItem(BAR_X, 0, BAR_W, 1)
        self.outline.setPen(pen("white", 5))
        self.ticks = pg.PlotCurveItem(connect="pairs", pen=pen("#bbbbbb", 2))
        ys = [0.25, 0.5, 0.75]
        self.ticks.setData([x for _ in ys for x in (BAR_X - 0.04, BAR_X)], [y for y in ys for _ in (0, 1)])
        self.target_line = pg.PlotCurveItem(pen=pen(TARGET, 7))
        for item in (self.fill, self.outline, self.ticks, self.target_line):
            self.view.addItem(item)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(20, 20, 20, 20)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.graphics, 5)
        self.refresh()

    # ------------------------------------------------------------------ rendering
    @property
    def bar_level(self) -> float:
        """The fill's top in bar units (0..1), as drawn."""
        return float(self.fill.rect().height())

    @property
    def target_level(self) -> float | None:
        x, y = self.target_line.getData()
        return None if y is None or len(y) == 0 or not self.target_line.isVisible() else float(y[0])

    def refresh(self) -> None:
        s = self.state
        self.label.setText(s.text)
        show = s.bar_visible
        self.graphics.setVisible(show)
        value = s.value if (show and s.value is not None) else 0.0
        self.fill.setRect(BAR_X, 0, BAR_W, value)
        reached = s.target is not None and s.value is not None and s.value >= s.target
        self.fill.setBrush(QtGui.QColor(FILL_REACHED if reached else FILL_BELOW))
        if s.target is not None:
            self.target_line.setData([BAR_X - 0.06, BAR_X + BAR_W + 0.06], [s.target, s.target])
            self.target_line.setVisible(True)
        else:
            self.target_line.setVisible(False)
        self._fit_text()

    def _fit_text(self) -> None:
        font = self.label.font()
        size = max(16, int(self.height() * (0.07 if self.state.bar_visible else 0.1)))
        if font.pixelSize() != size:
            font.setPixelSize(size)
            font.setBold(True)
            self.label.setFont(font)

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._fit_text()


class LslThermometer(ThermometerView):
    """The thermometer following ``<prefix>-markers`` and ``<prefix>-feedback`` over LSL."""

    def __init__(self, prefix: str, state: ThermometerState | None = None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(state or ThermometerState(), parent)
        self.prefix = prefix
        self.streams = {"markers": f"{prefix}-markers", "feedback": f"{prefix}-feedback"}
        self.poller = LslPoller(
            {self.streams["markers"]: self.state.on_markers,
             self.streams["feedback"]: self.state.on_feedback},
            after_poll=lambda got: got and self.refresh(),
            parent=self,
        )

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802
        self.poller.stop()
        super().closeEvent(event)
