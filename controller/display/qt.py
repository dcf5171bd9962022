"""Qt set-up shared by the displays: the application, colours, and the non-blocking LSL pull timer."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from controller.display.follow import StreamFollower

PULL_PERIOD_MS = 50  # the GUI reads LSL 20 times a second; feedback arrives once per TR


def application() -> QtWidgets.QApplication:
    """The process's QApplication (created once); pyqtgraph antialiased, black on white off."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication(sys.argv[:1])
    pg.setConfigOptions(antialias=True, background="k", foreground="w")
    return app


def offscreen() -> bool:
    return os.environ.get("QT_QPA_PLATFORM", "") == "offscreen"


def pen(color: str, width: float = 2.0, style: QtCore.Qt.PenStyle = QtCore.Qt.PenStyle.SolidLine) -> QtGui.QPen:
    """A cosmetic pen: ``width`` in screen pixels whatever the view's scale."""
    p = QtGui.QPen(QtGui.QColor(color))
    p.setWidthF(width)
    p.setCosmetic(True)
    p.setStyle(style)
    return p


class LslPoller(QtCore.QObject):
    """Pulls named streams from a QTimer and hands each non-empty pull to its callback.

    ``on_data[name](samples, stamps)``; ``on_switch(name)`` when a stream is replaced by a newer
    one of the same name (the next session). Every pull is ``timeout=0``: the GUI never waits.
    """

    def __init__(self, on_data: dict[str, Callable], on_switch: Callable[[str], None] | None = None,
                 after_poll: Callable[[bool], None] | None = None, period_ms: int = PULL_PERIOD_MS,
                 parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.followers = {name: StreamFollower(name) for name in on_data}
        self._on_data = on_data
        self._on_switch = on_switch
        self._after = after_poll
        self._switches = {name: 0 for name in on_data}
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(period_ms)
        self.timer.timeout.connect(self.poll)
        self.timer.start()

    def poll(self) -> bool:
        """One pull of every stream; True if anything arrived."""
        got = False
        for name, follower in self.followers.items():
            samples, stamps = follower.poll()
            if follower.switches != self._switches[name]:
                self._switches[name] = follower.switches
                if self._on_switch is not None:
                    self._on_switch(name)
            if len(stamps):
                got = True
                self._on_data[name](samples, stamps)
        if self._after is not None:
            self._after(got)
        return got

    def attached(self, name: str) -> bool:
        return self.followers[name].attached

    def stop(self) -> None:
        self.timer.stop()
        for follower in self.followers.values():
            follower.close()
