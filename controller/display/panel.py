"""The operator's fMRI panel: head motion and framewise displacement per volume, the pipeline's
time per volume (arrival -> feedback) against the TR budget, the delivery delay (acquisition ->
arrival) apart, the feedback series with the blocks shaded, and a status line (last volume index,
missing volumes, FD and timing summaries).

The TR budget applies to the pipeline only: delivery is the scanner's and the transport's (about a
TR when a scanner sends a volume once it is complete), and a folder source does not know it at
all ("unknown", never drawn as zero).

All plots share one x axis: seconds since the first stamp the panel holds (volumes are stamped
with their acquisition time, so motion, timing and feedback line up with the block edges).
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from controller.display.model import DELIVERY, PIPELINE, PanelState
from controller.display.qt import LslPoller, pen

AXES = ("x", "y", "z")
AXIS_COLORS = ("#ff5555", "#55dd55", "#5599ff")
PROC_TICKS_MS = (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
BLOCK_COLORS = ("#2b6cb0", "#b7791f", "#4a5568", "#2f855a", "#9b2c2c", "#6b46c1")


def block_color(label: str, alpha: int) -> QtGui.QColor:
    """A stable colour per block label (same label, same shade in every plot and session)."""
    c = QtGui.QColor(BLOCK_COLORS[zlib.crc32(label.encode()) % len(BLOCK_COLORS)])
    c.setAlpha(alpha)
    return c


def feedback_runs(t: np.ndarray) -> np.ndarray:
    """Which consecutive feedback points to join: not across a pause longer than 1.5 typical steps
    (feedback stops outside feedback blocks; a line through a Rest block would be misleading)."""
    if len(t) < 2:
        return np.ones(len(t), bool)
    dt = np.diff(t)
    joined = np.ones(len(t), bool)
    joined[:-1] = dt <= 1.5 * np.median(dt)
    return joined


def timing_text(pipeline_ms: np.ndarray, delivery_ms: np.ndarray, tr_s: float | None) -> list[str]:
    """Status-line parts: the pipeline against the TR budget, then delivery and the total (or 'unknown')."""
    budget = f" / TR budget {tr_s * 1000:.0f} ms" if tr_s else ""
    parts = [f"pipeline {pipeline_ms[-1]:.0f} ms (median {np.median(pipeline_ms):.0f}, "
             f"max {pipeline_ms.max():.0f}){budget}"]
    known = np.isfinite(delivery_ms)
    if not known.any():
        parts.append("delivery unknown")
    else:
        total = delivery_ms[known] + pipeline_ms[known]
        parts.append(f"delivery median {np.median(delivery_ms[known]):.0f} ms, "
                     f"total median {np.median(total):.0f} ms")
    return parts


class OperatorPanelView(QtWidgets.QWidget):
    """Renders a ``PanelState``; call ``refresh()`` after changing it."""

    def __init__(self, state: PanelState, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.setWindowTitle("neuroreflex - fMRI operator panel")
        self.status = QtWidgets.QLabel("waiting for data", self)
        self.status.setStyleSheet("color: #eeeeee; background: #111111; padding: 6px;"
                                  "font-family: monospace; font-size: 15px;")
        self.status.setWordWrap(True)
        self.graphics = pg.GraphicsLayoutWidget(self)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.status)
        layout.addWidget(self.graphics, 1)

        g = self.graphics
        self.p_trans = self._plot(g, "translation", "mm")
        self.p_rot = self._plot(g, "rotation", "deg")
        self.p_fd = self._plot(g, "framewise displacement", "mm")
        self.p_proc = self._plot(g, "pipeline time per volume (arrival -> feedback)", "ms")
        self.p_delivery = self._plot(g, "delivery per volume (acquisition -> arrival; not the pipeline's)", "ms")
        self.p_feedback = self._plot(g, "feedback", "0..1", last=True)
        self.plots = (self.p_trans, self.p_rot, self.p_fd, self.p_proc, self.p_delivery, self.p_feedback)
        for p in self.plots[:-1]:
            p.setXLink(self.p_feedback)

        self.p_trans.addLegend(offset=(5, 5), labelTextSize="8pt")
        self.p_rot.addLegend(offset=(5, 5), labelTextSize="8pt")
        self.trans = [self.p_trans.plot(pen=pen(c), name=f"t{a}") for a, c in zip(AXES, AXIS_COLORS)]
        self.rot = [self.p_rot.plot(pen=pen(c), name=f"r{a}") for a, c in zip(AXES, AXIS_COLORS)]
        self.fd = self.p_fd.plot(pen=pen("#dddddd"))
        self.fd_over = self.p_fd.plot(pen=None, symbol="o", symbolSize=7, symbolBrush="#ff3030", symbolPen=None)
        self.fd_line = pg.InfiniteLine(state.fd_threshold_mm, angle=0,
                                       pen=pen("#ff3030", 1.5, QtCore.Qt.PenStyle.DashLine),
                                       label=f"{state.fd_threshold_mm:g} mm", labelOpts={"position": 0.03,
                                                                                         "color": "#ff6060"})
        self.p_fd.addItem(self.fd_line)
        self.p_proc.setLogMode(y=True)  # a 5 ms pipeline and a 2000 ms TR on one readable axis
        self.p_proc.getAxis("left").setTicks([[(math.log10(v), f"{v:g}") for v in PROC_TICKS_MS], []])
        self.proc = self.p_proc.plot(pen=pen("#ffaa33"), symbol="o", symbolSize=4, symbolBrush="#ffaa33",
                                     symbolPen=None)
        self.delivery = self.p_delivery.plot(pen=pen("#999999"), symbol="o", symbolSize=4, symbolBrush="#999999",
                                             symbolPen=None)
        self.delivery_unknown = pg.TextItem("acquisition time unknown (the source does not say it)",
                                            color="#bbbbbb", anchor=(0, 0))
        self.delivery_unknown.setVisible(False)
        self.p_delivery.addItem(self.delivery_unknown)
        self.tr_line = pg.InfiniteLine(0, angle=0, pen=pen("#ff3030", 1.5, QtCore.Qt.PenStyle.DashLine),
                                       label="TR", labelOpts={"position": 0.1, "color": "#ff6060"})
        self.tr_line.setVisible(False)
        self.p_proc.addItem(self.tr_line)
        self.feedback = self.p_feedback.plot(pen=pen("#3fa9f5", 2.5), symbol="o", symbolSize=5,
                                             symbolBrush="#3fa9f5", symbolPen=None)
        self.target_line = pg.InfiniteLine(0, angle=0, pen=pen("#ffd400", 1.5, QtCore.Qt.PenStyle.DashLine),
                                           label="target", labelOpts={"position": 0.97, "color": "#ffd400"})
        self.target_line.setVisible(False)
        self.p_feedback.addItem(self.target_line)
        self.p_feedback.setYRange(0, 1.05, padding=0)
        self._regions: list[list[pg.LinearRegionItem]] = []  # per block: one region per plot
        self._block_labels: list[pg.TextItem] = []
        self.refresh()

    @staticmethod
    def _plot(g: pg.GraphicsLayoutWidget, title: str, unit: str, last: bool = False) -> pg.PlotItem:
        p = g.addPlot(row=g.ci.layout.rowCount(), col=0)
        p.setTitle(title, size="10pt")
        p.setLabel("left", unit)
        p.getAxis("left").enableAutoSIPrefix(False)  # mm stay mm (no "x0.001")
        p.showGrid(x=True, y=True, alpha=0.2)
        p.setMenuEnabled(False)
        if last:
            p.setLabel("bottom", "time (s)")
        else:
            p.getAxis("bottom").setStyle(showValues=False)
        return p

    # ------------------------------------------------------------------ rendering
    def point_counts(self) -> dict[str, int]:
        """Points drawn per trace (for tests and the status line)."""
        def n(item: pg.PlotDataItem) -> int:
            x, _ = item.getData()
            return 0 if x is None else len(x)
        return {"tx": n(self.trans[0]), "rx": n(self.rot[0]), "fd": n(self.fd), "fd_over": n(self.fd_over),
                "pipeline": n(self.proc), "delivery": n(self.delivery), "feedback": n(self.feedback),
                "blocks": len(self._regions)}

    def refresh(self) -> None:
        s = self.state
        t0 = s.t0
        qc = s.qc.rows
        if s.qc.n and t0 is not None:
            x = s.qc.t - t0
            for i in range(3):
                self.trans[i].setData(x, qc[:, 1 + i])
                self.rot[i].setData(x, qc[:, 4 + i])
            self.fd.setData(x, qc[:, 7])
            over = qc[:, 7] > s.fd_threshold_mm
            self.fd_over.setData(x[over], qc[over, 7])
            ok = qc[:, PIPELINE] > 0  # log axis: a zero or negative time cannot be drawn
            self.proc.setData(x[ok], qc[ok, PIPELINE])
            known = np.isfinite(qc[:, DELIVERY]) & (qc[:, DELIVERY] > 0)  # NaN: unknown, not drawn
            self.delivery.setData(x[known], qc[known, DELIVERY])
            self.delivery_unknown.setVisible(not known.any())
            if not known.any():  # an empty plot with a fixed range and the reason in it
                self.p_delivery.setYRange(0.0, 1.0, padding=0)
                self.delivery_unknown.setPos(float(x[0]), 0.8)
            else:
                self.p_delivery.enableAutoRange(axis="y")
        else:
            for item in (*self.trans, *self.rot, self.fd, self.fd_over, self.proc, self.delivery):
                item.setData([], [])
            self.delivery_unknown.setVisible(False)
        tr = s.tr_s
        if tr:
            self.tr_line.setValue(math.log10(tr * 1000.0))
            self.tr_line.label.setFormat(f"TR budget {tr * 1000:.0f} ms")
            self.tr_line.setVisible(True)
        if s.feedback.n and t0 is not None:
            self.feedback.setData(s.feedback.t - t0, s.feedback.rows[:, 0], connect=feedback_runs(s.feedback.t))
        else:
            self.feedback.setData([], [])
        if s.target is not None:
            self.target_line.setValue(s.target)
        self.target_line.setVisible(s.target is not None)
        self._refresh_blocks(t0)
        self.status.setText(self.status_text())

    def _refresh_blocks(self, t0: float | None) -> None:
        blocks = self.state.blocks
        if len(blocks) < len(self._regions):  # cleared (new session)
            for regions, text in zip(self._regions, self._block_labels):
                for p, r in zip(self.plots, regions):
                    p.removeItem(r)
                self.p_feedback.removeItem(text)
            self._regions, self._block_labels = [], []
        if t0 is None:
            return
        now = self.state.last_time
        for i, b in enumerate(blocks):
            if i == len(self._regions):
                regions = []
                for p in self.plots:
                    alpha = 90 if p is self.p_feedback else 45
                    r = pg.LinearRegionItem(movable=False, brush=block_color(b.label, alpha),
                                            pen=pg.mkPen(None))
                    r.setZValue(-10)
                    p.addItem(r)
                    regions.append(r)
                text = pg.TextItem(b.label, color="#dddddd", anchor=(0, 0))
                self.p_feedback.addItem(text)
                self._regions.append(regions)
                self._block_labels.append(text)
            end = b.end if b.end is not None else max(now or b.start, b.start)
            for r in self._regions[i]:
                r.setRegion((b.start - t0, end - t0))
            self._block_labels[i].setPos(b.start - t0, 1.05)

    def status_text(self) -> str:
        s = self.state
        parts = []
        last = s.last_index
        parts.append(f"volume {last}" if last is not None else "volume --")
        parts.append(f"missing {s.missing}")
        if s.qc.n:
            qc = s.qc.rows
            parts.append(f"FD {qc[-1, 7]:.2f} mm ({s.fd_over} > {s.fd_threshold_mm:g} mm)")
            parts.extend(timing_text(qc[:, PIPELINE], qc[:, DELIVERY], s.tr_s))
        n, label = s.block_position()
        if n:
            parts.append(f"block {n}: {label}" if label else f"block {n} ended")
        if s.feedback.n:
            parts.append(f"feedback {s.feedback.rows[-1, 0]:.2f} (raw {s.feedback.rows[-1, 1]:.3g})")
        return "  |  ".join(parts)


class LslOperatorPanel(OperatorPanelView):
    """The panel following ``<prefix>-fmri-qc``, ``<prefix>-feedback`` and ``<prefix>-markers``."""

    def __init__(self, prefix: str, state: PanelState | None = None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(state or PanelState(), parent)
        self.prefix = prefix
        self.error = ""
        self.streams = {k: f"{prefix}-{k}" for k in ("fmri-qc", "feedback", "markers")}
        self._kinds = {v: ("qc" if k == "fmri-qc" else k) for k, v in self.streams.items()}
        self.poller = LslPoller(
            {self.streams["fmri-qc"]: self._on_qc,
             self.streams["feedback"]: self.state.on_feedback,
             self.streams["markers"]: self.state.on_markers},
            on_switch=lambda name: self.state.clear(self._kinds[name]),
            after_poll=self._after_poll,
            parent=self,
        )

    def _on_qc(self, rows: np.ndarray, stamps: np.ndarray) -> None:
        try:
            self.state.on_qc(rows, stamps)
        except ValueError as exc:  # a stream of that name but another layout: say so, keep running
            self.error = str(exc)

    def _after_poll(self, got: bool) -> None:
        if got:
            self.refresh()
            if self.error:
                self.status.setText(f"ERROR {self.error}  |  {self.status.text()}")
        elif not self.state.qc.n:
            waiting = [n for n in self.streams.values() if not self.poller.attached(n)]
            if waiting:
                self.status.setText("waiting for LSL stream(s): " + ", ".join(waiting))

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802
        self.poller.stop()
        super().closeEvent(event)
