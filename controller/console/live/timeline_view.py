"""The session's timeline: blocks as a horizontal bar (the current one highlighted), time left in the block
and in the session, the state, the loop latency and the watchdog margin, all from the status dict.

Older sessions leave keys out: every missing value reads "—", never a zero that looks measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from controller.console.colors import block_color
from controller.console.live.feature_view import Span, status_blocks
from controller.console.live.qtutil import restyle

MISSING = "—"
STATE_COLORS = {"running": "#48bb78", "paused": "#d69e2e", "inhibited": "#e53e3e", "stopped": "#a0aec0",
                "waiting": "#63b3ed", "starting": "#63b3ed"}
OK, AMBER, RED = "#48bb78", "#d69e2e", "#e53e3e"
MARGIN_AMBER = 0.2  # watchdog margin under a fifth of its period: amber; none left: red


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def fmt_duration(seconds: Any) -> str:
    """``75.2`` -> ``1:15``; under a minute with a tenth (``12.3 s``); missing -> "—"."""
    s = _num(seconds)
    if s is None:
        return MISSING
    if s < 60:
        return f"{max(s, 0.0):.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def fmt_ms(v: Any) -> str:
    x = _num(v)
    return MISSING if x is None else f"{x:.1f}"


@dataclass
class TimelineState:
    """What the timeline shows, derived from one status dict (Qt-free)."""

    spans: list[Span] = field(default_factory=list)
    current: int | None = None
    elapsed_s: float | None = None
    state: str = MISSING
    block: str = MISSING
    block_left: str = MISSING
    session_left: str = MISSING
    latency: str = MISSING
    watchdog: str = MISSING
    watchdog_color: str = "#a0aec0"

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> TimelineState:
        s = cls()
        s.spans = status_blocks(status)
        idx = status.get("block_index")
        s.current = idx if isinstance(idx, int) and not isinstance(idx, bool) else None
        s.elapsed_s = _num(status.get("elapsed_s"))
        s.state = str(status.get("state") or MISSING)
        n = status.get("n_blocks")
        if status.get("block"):
            pos = f" ({s.current + 1}/{n})" if s.current is not None and isinstance(n, int) else ""
            s.block = f"{status['block']}{pos}"
        s.block_left = fmt_duration(status.get("time_left_s"))
        s.session_left = fmt_duration(status.get("total_left_s"))
        lat = status.get("latency_ms")
        if isinstance(lat, Mapping) and any(_num(lat.get(k)) is not None for k in ("median", "p99", "max")):
            n_lat = _num(lat.get("n"))
            s.latency = (f"median {fmt_ms(lat.get('median'))} / p99 {fmt_ms(lat.get('p99'))} / "
                         f"max {fmt_ms(lat.get('max'))} ms" + (f" (n {int(n_lat)})" if n_lat is not None else ""))
        wd = status.get("watchdog")
        if isinstance(wd, Mapping):
            # the session's watchdog: worst silence of the loop so far against its timeout
            margin, period = _num(wd.get("margin_ms")), _num(wd.get("timeout_ms", wd.get("period_ms")))
            if margin is not None:
                s.watchdog = f"margin {margin:.1f} ms" + (f" of {period:.0f} ms" if period is not None else "")
                if margin <= 0:
                    s.watchdog_color = RED
                elif period is not None and margin < MARGIN_AMBER * period:
                    s.watchdog_color = AMBER
                else:
                    s.watchdog_color = OK
        return s


class TimelineBar(QtWidgets.QWidget):
    """The blocks side by side, widths by duration; the current block bright and outlined, a cursor at now."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.spans: list[Span] = []
        self.current: int | None = None
        self.elapsed_s: float | None = None
        self.setMinimumHeight(28)

    def set_state(self, spans: list[Span], current: int | None, elapsed_s: float | None) -> None:
        if (spans, current, elapsed_s) != (self.spans, self.current, self.elapsed_s):
            self.spans, self.current, self.elapsed_s = spans, current, elapsed_s
            self.update()

    def rects(self) -> list[QtCore.QRectF]:
        """Each block's rectangle in widget pixels (by session time, so gaps stay gaps)."""
        if not self.spans:
            return []
        t0 = min(s.start for s in self.spans)
        t1 = max((s.end if s.end is not None else s.start) for s in self.spans)
        width = max(1e-9, t1 - t0)
        w, h = self.width() - 2, self.height() - 2
        return [QtCore.QRectF(1 + w * (s.start - t0) / width, 1,
                              w * (((s.end if s.end is not None else s.start) - s.start) / width), h)
                for s in self.spans]

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        p = QtGui.QPainter(self)
        p.fillRect(self.rect(), QtGui.QColor("#111111"))
        rects = self.rects()
        for i, (s, r) in enumerate(zip(self.spans, rects)):
            now = i == self.current
            p.fillRect(r, block_color(s.label, 255 if now else 90))
            p.setPen(QtGui.QPen(QtGui.QColor("#ffffff" if now else "#333333"), 2 if now else 1))
            p.drawRect(r)
            if r.width() > 30:
                p.setPen(QtGui.QColor("#ffffff" if now else "#bbbbbb"))
                p.drawText(r, int(QtCore.Qt.AlignmentFlag.AlignCenter), s.label)
        if self.elapsed_s is not None and rects:
            t0 = min(s.start for s in self.spans)
            t1 = max((s.end if s.end is not None else s.start) for s in self.spans)
            x = 1 + (self.width() - 2) * min(1.0, max(0.0, (self.elapsed_s - t0) / max(1e-9, t1 - t0)))
            p.setPen(QtGui.QPen(QtGui.QColor("#ffd400"), 2))
            p.drawLine(QtCore.QPointF(x, 0), QtCore.QPointF(x, self.height()))
        p.end()


class TimelineView(QtWidgets.QWidget):
    """The bar and one line of values under it."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = TimelineState()
        self.bar = TimelineBar(self)
        style = "color: #eeeeee; font-family: monospace; padding: 1px 6px;"
        self.labels = {k: QtWidgets.QLabel(MISSING, self) for k in
                       ("state", "block", "block_left", "session_left", "latency", "watchdog")}
        for lab in self.labels.values():
            lab.setStyleSheet(style)
        row = QtWidgets.QGridLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setHorizontalSpacing(4)
        for i, (key, title) in enumerate((("state", "state"), ("block", "block"), ("block_left", "block left"),
                                          ("session_left", "session left"), ("latency", "loop"),
                                          ("watchdog", "watchdog"))):
            name = QtWidgets.QLabel(title, self)
            name.setStyleSheet("color: #a0aec0; font-family: monospace;")
            row.addWidget(name, i // 3, 2 * (i % 3))
            row.addWidget(self.labels[key], i // 3, 2 * (i % 3) + 1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.bar)
        layout.addLayout(row)

    def on_status(self, status: Mapping[str, Any]) -> None:
        s = self.state = TimelineState.from_status(status)
        self.bar.set_state(s.spans, s.current, s.elapsed_s)
        for key in ("block", "block_left", "session_left", "latency"):
            self.labels[key].setText(getattr(s, key))
        self.labels["state"].setText(s.state)
        restyle(self.labels["state"], f"color: {STATE_COLORS.get(s.state, '#eeeeee')}; font-weight: bold;"
                                           "font-family: monospace; padding: 1px 6px;")
        self.labels["watchdog"].setText(s.watchdog)
        restyle(self.labels["watchdog"], f"color: {s.watchdog_color}; font-family: monospace;"
                                              "padding: 1px 6px;")

    def texts(self) -> dict[str, str]:
        return {k: lab.text() for k, lab in self.labels.items()}
