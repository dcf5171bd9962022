"""The console's review page: scrub through a finished session folder.

Why this layout: reviewing means finding a moment (a fault, a threshold change, a reward streak) and
looking at what the signals did then. So the whole session's feedback feature (with its threshold and
the blocks shaded) stays on screen as the map, with a cursor that is the scrub position; the signals
are drawn only for a window around that position (stacked, one row per picked channel, with the
markers sent in it); the journal's events are a table, and clicking one jumps there. The slider, the
cursor and the table all set the same position (``set_position``).

The reading and the slicing are in ``controller.console.review`` (Qt-free); this widget only draws.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from controller.console.colors import block_color
from controller.console.review import ReviewWindow, SessionRecord
from controller.display.qt import pen

SLIDER_STEPS_PER_S = 10  # the slider scrubs in 0.1 s steps
DEFAULT_SPAN_S = 10.0
SIGNAL_COLORS = ("#8fd14f", "#4fc3f7", "#ffb74d", "#f06292", "#ba68c8", "#4db6ac", "#fff176", "#e0e0e0")
CURSOR_COLOR = "#ffd400"
THRESHOLD_COLOR = "#ff6060"
FEATURE_COLOR = "#3fa9f5"


def stack_offsets(data: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-channel centres (median) and one row spacing for a stacked plot of ``data`` (samples x channels).

    One spacing for every row keeps amplitudes comparable between channels; it is four times the median
    of the channels' robust spreads (so a single artifact does not flatten the others)."""
    if data.size == 0:
        return np.zeros(data.shape[1] if data.ndim == 2 else 0), 1.0
    centre = np.nanmedian(data, axis=0)
    spread = np.nanpercentile(np.abs(data - centre), 95, axis=0)
    spread = spread[np.isfinite(spread) & (spread > 0)]
    spacing = float(4 * np.median(spread)) if spread.size else 1.0
    return np.nan_to_num(centre), spacing


def label_levels(t: np.ndarray, gap: float, levels: int = 4) -> list[int]:
    """A height level per marker label: markers closer than ``gap`` to the previous one step down, so
    labels of markers sent together (a block end, a threshold, the next block's start) do not overprint."""
    out: list[int] = []
    level, last = 0, -np.inf
    for x in t:
        level = (level + 1) % levels if x - last < gap else 0
        out.append(level)
        last = x
    return out


class ReviewPage(QtWidgets.QWidget):
    """Open a session folder with :meth:`open`; scrub with :meth:`set_position` (or the slider, cursor, table)."""

    positionChanged = QtCore.Signal(float)

    def __init__(self, parent: QtWidgets.QWidget | None = None, span_s: float = DEFAULT_SPAN_S) -> None:
        super().__init__(parent)
        self.setWindowTitle("neuroreflex - review")
        self.record: SessionRecord | None = None
        self.position = 0.0
        self.span_s = span_s
        self.current: ReviewWindow | None = None
        self.channels: list[tuple[str, str]] = []  # (input, label) shown, in order
        self.signal_curves: dict[str, pg.PlotDataItem] = {}
        self.block_regions: list[pg.LinearRegionItem] = []
        self._window_items: list[pg.GraphicsObject] = []
        self._overview_items: list[pg.GraphicsObject] = []

        self.identity_label = QtWidgets.QLabel("no session open", self)
        self.identity_label.setStyleSheet("color: #eeeeee; background: #111111; padding: 6px; font-size: 14px;")
        self.identity_label.setWordWrap(True)
        self.reason_label = QtWidgets.QLabel("", self)  # why signals are absent, what could not be read
        self.reason_label.setStyleSheet("color: #ffb74d; background: #111111; padding: 2px 6px;")
        self.reason_label.setWordWrap(True)
        self.reason_label.setVisible(False)
        self.position_label = QtWidgets.QLabel("—", self)
        self.position_label.setStyleSheet("font-family: monospace;")

        self.feature_box = QtWidgets.QComboBox(self)
        self.feature_box.currentTextChanged.connect(self._draw_overview)
        self.span_box = QtWidgets.QDoubleSpinBox(self)
        self.span_box.setRange(1.0, 120.0)
        self.span_box.setSuffix(" s")
        self.span_box.setValue(span_s)
        self.span_box.valueChanged.connect(self._set_span)
        self.channel_list = QtWidgets.QListWidget(self)
        self.channel_list.setMaximumWidth(160)
        self.channel_list.itemChanged.connect(self._channels_picked)

        self.graphics = pg.GraphicsLayoutWidget(self)
        self.signal_plot = self.graphics.addPlot(row=0, col=0)
        self.signal_plot.setTitle("signals", size="10pt")
        self.signal_plot.setLabel("bottom", "session time (s)")
        self.signal_plot.setMenuEnabled(False)
        self.signal_plot.setMouseEnabled(x=False, y=False)
        self.signal_plot.setDownsampling(auto=True, mode="peak")
        self.signal_plot.setClipToView(True)
        self.signal_plot.showGrid(x=True, alpha=0.2)
        self.window_cursor = pg.InfiniteLine(0.0, angle=90, movable=False, pen=pen(CURSOR_COLOR, 1.0))
        self.signal_plot.addItem(self.window_cursor)
        self.no_signals = pg.TextItem("", color="#bbbbbb", anchor=(0.5, 0.5))
        self.no_signals.setVisible(False)
        self.signal_plot.addItem(self.no_signals)
        self.feature_plot = self.graphics.addPlot(row=1, col=0)
        self.feature_plot.setLabel("bottom", "session time (s)")
        self.feature_plot.setMenuEnabled(False)
        self.feature_plot.showGrid(x=True, y=True, alpha=0.2)
        self.feature_curve = self.feature_plot.plot(pen=pen(FEATURE_COLOR, 1.5))
        self.threshold_curve = self.feature_plot.plot(pen=pen(THRESHOLD_COLOR, 1.5, QtCore.Qt.PenStyle.DashLine),
                                                      stepMode="center")
        self.cursor_line = pg.InfiniteLine(0.0, angle=90, movable=True, pen=pen(CURSOR_COLOR, 2.0),
                                      hoverPen=pen("#ffffff", 3.0))
        self.cursor_line.setZValue(10)
        self.cursor_line.sigPositionChanged.connect(lambda line: self.set_position(float(line.value())))
        self.feature_plot.addItem(self.cursor_line)
        self.graphics.ci.layout.setRowStretchFactor(0, 3)
        self.graphics.ci.layout.setRowStretchFactor(1, 2)

        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal, self)
        self.slider.setRange(0, 0)
        self.slider.valueChanged.connect(lambda v: self.set_position(v / SLIDER_STEPS_PER_S))

        self.events_table = QtWidgets.QTableWidget(0, 3, self)
        self.events_table.setHorizontalHeaderLabels(["time (s)", "kind", "event"])
        self.events_table.horizontalHeader().setStretchLastSection(True)
        self.events_table.verticalHeader().setVisible(False)
        self.events_table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.events_table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.events_table.cellClicked.connect(self.scrub_to_event)

        controls = QtWidgets.QHBoxLayout()
        controls.addWidget(QtWidgets.QLabel("feature", self))
        controls.addWidget(self.feature_box)
        controls.addWidget(QtWidgets.QLabel("window", self))
        controls.addWidget(self.span_box)
        controls.addWidget(self.position_label, 1)
        plots = QtWidgets.QHBoxLayout()
        plots.addWidget(self.channel_list)
        plots.addWidget(self.graphics, 1)
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical, self)
        top = QtWidgets.QWidget(split)
        top_layout = QtWidgets.QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addLayout(plots, 1)
        top_layout.addWidget(self.slider)
        split.addWidget(top)
        split.addWidget(self.events_table)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.identity_label)
        layout.addWidget(self.reason_label)
        layout.addLayout(controls)
        layout.addWidget(split, 1)

    # ------------------------------------------------------------------------------------ opening

    def open(self, folder: Path | str) -> SessionRecord:
        """Read ``folder`` (raises ``ReviewError`` when it is not a session) and show it at its start."""
        record = SessionRecord.load(folder)
        self.show_record(record)
        return record

    def show_record(self, record: SessionRecord) -> None:
        """Show an already loaded session (at its start)."""
        self.record = record
        self.identity_label.setText(record.identity.text())
        reasons = []
        if record.xdf_error is not None:
            reasons.append(f"journal only - no signals: {record.xdf_error}")
        reasons += record.problems
        self.reason_label.setText("\n".join(reasons))
        self.reason_label.setVisible(bool(reasons))
        self.channels = [(name, label) for name, s in record.signals.items() for label in s.default_channels]
        self._fill_channel_list()
        self.feature_box.blockSignals(True)
        self.feature_box.clear()
        self.feature_box.addItems(list(record.features))
        if record.feedback_feature in record.features:
            self.feature_box.setCurrentText(record.feedback_feature)
        self.feature_box.blockSignals(False)
        self._fill_events()
        self.slider.blockSignals(True)
        self.slider.setRange(0, int(np.ceil(record.duration * SLIDER_STEPS_PER_S)))
        self.slider.blockSignals(False)
        self.no_signals.setText("" if record.signals else
                                f"no signals: {record.xdf_error or 'no input stream in the recording'}")
        self.no_signals.setVisible(not record.signals)
        self._draw_overview()
        self.position = -1.0  # so that set_position draws
        self.set_position(0.0)

    def _fill_channel_list(self) -> None:
        assert self.record is not None
        many = len(self.record.signals) > 1
        self.channel_list.blockSignals(True)
        self.channel_list.clear()
        shown = set(self.channels)
        for name, s in self.record.signals.items():
            for label in s.labels:
                item = QtWidgets.QListWidgetItem(f"{name}: {label}" if many else label)
                item.setData(QtCore.Qt.ItemDataRole.UserRole, (name, label))
                item.setFlags(item.flags() | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(QtCore.Qt.CheckState.Checked if (name, label) in shown
                                   else QtCore.Qt.CheckState.Unchecked)
                self.channel_list.addItem(item)
        self.channel_list.blockSignals(False)

    def _fill_events(self) -> None:
        assert self.record is not None
        events = self.record.events
        self.events_table.setRowCount(len(events))
        for row, e in enumerate(events):
            for col, text in enumerate((f"{e.t:.2f}", e.kind, e.text)):
                item = QtWidgets.QTableWidgetItem(text)
                item.setToolTip(f"journal line {e.line}: {e.text}")
                self.events_table.setItem(row, col, item)
        self.events_table.resizeColumnsToContents()
        self.events_table.horizontalHeader().setStretchLastSection(True)

    # ------------------------------------------------------------------------------------ scrubbing

    def set_position(self, t: float) -> None:
        """Scrub to ``t`` (session s, clamped to the session): moves the slider and the cursor, redraws the window."""
        if self.record is None:
            return
        t = float(min(max(t, 0.0), self.record.duration))
        if t == self.position:
            return
        self.position = t
        self.slider.blockSignals(True)
        self.slider.setValue(int(round(t * SLIDER_STEPS_PER_S)))
        self.slider.blockSignals(False)
        if float(self.cursor_line.value()) != t:
            self.cursor_line.blockSignals(True)
            self.cursor_line.setValue(t)
            self.cursor_line.blockSignals(False)
        self._draw_window()
        self.positionChanged.emit(t)

    def scrub_to_event(self, row: int, _column: int = 0) -> None:
        """Scrub to the time of the event in table row ``row``."""
        if self.record is not None and 0 <= row < len(self.record.events):
            self.set_position(self.record.events[row].t)

    def set_channels(self, channels: list[tuple[str, str]]) -> None:
        """Show these (input, channel label) rows, in this order."""
        if self.record is None:
            return
        known = {(n, lab) for n, s in self.record.signals.items() for lab in s.labels}
        self.channels = [c for c in channels if c in known]
        self._fill_channel_list()
        self._draw_window()

    def _channels_picked(self, _item: QtWidgets.QListWidgetItem) -> None:
        picked = []
        for k in range(self.channel_list.count()):
            item = self.channel_list.item(k)
            if item.checkState() == QtCore.Qt.CheckState.Checked:
                picked.append(tuple(item.data(QtCore.Qt.ItemDataRole.UserRole)))
        self.channels = picked
        self._draw_window()

    def _set_span(self, span: float) -> None:
        self.span_s = float(span)
        self._draw_window()

    # ------------------------------------------------------------------------------------ drawing

    def _draw_window(self) -> None:
        record = self.record
        if record is None:
            return
        p = self.signal_plot
        for item in self._window_items:
            p.removeItem(item)
        self._window_items.clear()
        self.signal_curves.clear()
        w = record.around(self.position, self.span_s)
        self.current = w
        self.window_cursor.setValue(self.position)
        block = record.block_at(self.position)
        self.position_label.setText(f"t = {self.position:.1f} s of {record.duration:.1f} s · "
                                    f"block {block.label if block else '—'}")
        for b in w.blocks:
            region = pg.LinearRegionItem((max(b.start, w.t0), min(b.end, w.t1)), movable=False,
                                         brush=block_color(b.label, 40), pen=pg.mkPen(None))
            region.setZValue(-20)
            self._add(p, region)
        rows = [(name, label) for name, label in self.channels if name in w.signals]
        ticks = []
        if rows:
            columns = [w.signals[name].channel(label) for name, label in rows]
            data = np.column_stack(columns) if columns[0].size else np.empty((0, len(rows)))
            centre, spacing = stack_offsets(data)
            many = len(record.signals) > 1
            for k, (name, label) in enumerate(rows):
                s = w.signals[name]
                y0 = -k * spacing
                curve = pg.PlotDataItem(s.times, s.channel(label) - centre[k] + y0,
                                        pen=pen(SIGNAL_COLORS[k % len(SIGNAL_COLORS)], 1.0))
                self._add(p, curve)
                key = f"{name}: {label}" if many else label
                self.signal_curves[key] = curve
                ticks.append((y0, key))
            p.setYRange(-(len(rows) - 0.5) * spacing, 0.5 * spacing, padding=0)
        p.getAxis("left").setTicks([ticks, []])
        for t, text, level in zip(w.markers.t, w.markers.texts, label_levels(w.markers.t, self.span_s / 15)):
            line = pg.InfiniteLine(float(t), angle=90, movable=False,
                                   pen=pen("#aaaaaa", 1.0, QtCore.Qt.PenStyle.DotLine),
                                   label=text, labelOpts={"position": 0.97 - 0.07 * level, "color": "#cccccc"})
            self._add(p, line)
        p.setXRange(w.t0, w.t1, padding=0)
        if not record.signals:
            self.no_signals.setPos((w.t0 + w.t1) / 2, 0.0)
            p.setYRange(-1, 1, padding=0)

    def _add(self, plot: pg.PlotItem, item: pg.GraphicsObject) -> None:
        plot.addItem(item)
        self._window_items.append(item)

    def _draw_overview(self, *_args: object) -> None:
        record = self.record
        if record is None:
            return
        p = self.feature_plot
        for item in self._overview_items:
            p.removeItem(item)
        self._overview_items.clear()
        self.block_regions.clear()
        name = self.feature_box.currentText()
        track = record.features.get(name)
        if track is not None:
            self.feature_curve.setData(track.t, track.value, connect="finite")
        else:
            self.feature_curve.setData([], [])
        p.setTitle(f"{name or 'no feature'} over the session", size="10pt")
        compared = [th for th, feat in record.threshold_features.items() if feat == name and th in record.thresholds]
        if compared:
            th = record.thresholds[compared[0]]
            # a step line held to the session's end: a threshold stays until it is changed
            x = np.append(th.t, max(record.duration, th.t[-1] if len(th) else 0.0))
            self.threshold_curve.setData(x, th.value, stepMode="center")
        else:
            self.threshold_curve.setData([], [], stepMode=None)
        for b in record.blocks:
            region = pg.LinearRegionItem((b.start, b.end), movable=False, brush=block_color(b.label, 60),
                                         pen=pg.mkPen(None))
            region.setZValue(-20)
            p.addItem(region)
            self._overview_items.append(region)
            self.block_regions.append(region)
            text = pg.TextItem(b.label, color="#dddddd", anchor=(0, 0))
            text.setPos(b.start, 0)
            p.addItem(text)
            self._overview_items.append(text)
        p.setXRange(0.0, record.duration, padding=0.01)
        self.cursor_line.setBounds((0.0, record.duration))
        finite = track.value[np.isfinite(track.value)] if track is not None else np.array([])
        if finite.size:
            lo, hi = np.percentile(finite, [1, 99])
            pad = 0.1 * (hi - lo or abs(hi) or 1.0)
            p.setYRange(lo - pad, hi + pad, padding=0)
            for item in self._overview_items:
                if isinstance(item, pg.TextItem):
                    item.setPos(item.pos().x(), hi + pad)

    def block_labels(self) -> list[str]:
        """The labels drawn over the overview's block regions, in order (for tests and accessibility)."""
        return [item.toPlainText() for item in self._overview_items if isinstance(item, pg.TextItem)]
