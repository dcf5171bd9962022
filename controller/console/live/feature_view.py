"""Feature traces over session time: thresholds as lines, blocks shaded, rewards marked, reward rate per block.

Session time 0 is the start of the session's first block. The features and markers are stamped in LSL
(source) time; the model anchors the two on the first ``block_start:<label>`` marker it sees (the
status says when that block started in session time), and until then on the status's ``elapsed_s``.
Thresholds come from the status and from ``threshold:<name>=<value>`` markers, whichever is newer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from controller.console.colors import block_color
from controller.console.live.qtutil import cache_axes
from controller.display.markers import parse_marker
from controller.display.model import Series

REWARD_MARKERS = frozenset({"reward"})
FEATURE_COLORS = ("#3fa9f5", "#f6ad55", "#68d391", "#fc8181", "#b794f4", "#f6e05e")
THRESHOLD_COLOR = "#ffd400"
REWARD_COLOR = "#48bb78"


@dataclass(frozen=True)
class Span:
    """One block in session seconds (``end`` None while it runs)."""

    label: str
    start: float
    end: float | None


def status_blocks(status: Mapping[str, Any]) -> list[Span]:
    """``status["blocks"]`` as spans; malformed entries are skipped."""
    out = []
    for b in status.get("blocks") or ():
        try:
            start = float(b["start_s"])
            out.append(Span(str(b["label"]), start, start + float(b["duration_s"])))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def reward_rates(status: Mapping[str, Any]) -> list[tuple[str, float]]:
    """``status["reward_rates"]`` -> (block, rewarded/frames); blocks without frames are left out."""
    out = []
    for r in status.get("reward_rates") or ():
        try:
            frames, rewarded = int(r["frames"]), int(r["rewarded"])
        except (KeyError, TypeError, ValueError):
            continue
        if frames > 0:
            out.append((str(r.get("block", "?")), rewarded / frames))
    return out


class FeatureViewModel:
    """Feature rows, markers and the status's thresholds/blocks/rates, in session time."""

    def __init__(self, reward_markers: frozenset[str] = REWARD_MARKERS) -> None:
        self.reward_markers = reward_markers
        self.version = 0  # bumped when anything drawn changes (the widget redraws only then)
        self.shown: list[str] | None = None  # None: the feedback feature, else every feature
        self.clear()

    def clear(self) -> None:
        """Forget everything received (the next session); the version moves on, so the widget redraws."""
        self.names: list[str] = []
        self.series = Series(1)
        self.thresholds: dict[str, float] = {}
        self.threshold_features: dict[str, list[str]] = {}  # threshold -> the features rules compare with it
        self.feedback_feature: str | None = None
        self.t0: float | None = None  # LSL time of session time 0
        self.anchored = False  # t0 from a block marker (exact), not from elapsed_s (estimate)
        self.rewards: list[float] = []  # LSL stamps
        self.marker_blocks: list[list[Any]] = []  # [label, start stamp, end stamp | None]
        self.status_spans: list[Span] = []
        self.rates: list[tuple[str, float]] = []
        self._elapsed: float | None = None
        self._status_index: int | None = None
        self.version += 1

    # ------------------------------------------------------------------ feeding
    def on_features(self, rows: np.ndarray, stamps: np.ndarray, names: Sequence[str]) -> None:
        names = list(names)
        if names != self.names:  # another session's features: start over
            self.names = names
            self.series = Series(max(1, len(names)))
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or len(stamps) == 0:
            return
        self.series.extend(rows[:, : len(names)], np.asarray(stamps, dtype=np.float64))
        if self.t0 is None and self._elapsed is not None:
            self.t0 = float(stamps[-1]) - self._elapsed
        self.version += 1

    def on_markers(self, texts: Sequence[str], stamps: Sequence[float]) -> None:
        for text, t in zip(texts, stamps):
            t = float(t)
            m = parse_marker(text)
            if m.kind == "block_start":
                if self.marker_blocks and self.marker_blocks[-1][2] is None:
                    self.marker_blocks[-1][2] = t
                self.marker_blocks.append([m.label, t, None])
                self._anchor(m.label, t)
            elif m.kind == "block_end":
                if self.marker_blocks and self.marker_blocks[-1][2] is None and self.marker_blocks[-1][0] == m.label:
                    self.marker_blocks[-1][2] = t
            elif m.kind == "threshold" and m.value is not None:
                self.thresholds[m.label] = m.value
            elif text.strip() in self.reward_markers:
                self.rewards.append(t)
        self.version += 1

    def _drawn(self) -> tuple:
        return (dict(self.thresholds), self.feedback_feature, list(self.status_spans), list(self.rates))

    def on_status(self, status: Mapping[str, Any]) -> None:
        before = self._drawn()
        th = status.get("thresholds")
        if isinstance(th, Mapping):
            for k, v in th.items():
                if isinstance(v, int | float) and np.isfinite(v):
                    self.thresholds[str(k)] = float(v)
        tf = status.get("threshold_features")
        if isinstance(tf, Mapping):
            self.threshold_features = {str(k): [str(f) for f in v] for k, v in tf.items()}
        fb = status.get("feedback")
        if isinstance(fb, Mapping) and fb.get("value"):
            self.feedback_feature = str(fb["value"])
        spans = status_blocks(status)
        if spans:
            self.status_spans = spans
        if "reward_rates" in status:
            self.rates = reward_rates(status)
        el = status.get("elapsed_s")
        self._elapsed = float(el) if isinstance(el, int | float) else None
        self._status_index = status.get("block_index")
        if self._drawn() != before:  # most polls change nothing drawn: no redraw then
            self.version += 1

    def _anchor(self, label: str, t: float) -> None:
        if self.anchored:
            return
        spans = self.status_spans
        start = None
        i = self._status_index
        if isinstance(i, int) and 0 <= i < len(spans) and spans[i].label == label:
            start = spans[i].start
        else:
            start = next((s.start for s in spans if s.label == label), None if spans else 0.0)
        if start is not None:
            self.t0 = t - start
            self.anchored = True

    # ------------------------------------------------------------------ derived (session seconds)
    def session_time(self, stamps: np.ndarray) -> np.ndarray:
        return np.asarray(stamps, dtype=np.float64) - (self.t0 if self.t0 is not None else 0.0)

    @property
    def visible(self) -> list[str]:
        if self.shown is not None:
            return [n for n in self.shown if n in self.names]
        if self.feedback_feature in self.names:
            return [self.feedback_feature]  # type: ignore[list-item]
        return list(self.names)

    def shown_thresholds(self) -> dict[str, float]:
        """The thresholds of the features drawn (a threshold no rule compares with a drawn feature would only
        add a line at a meaningless height); all of them when the protocol's pairing is not known."""
        if not self.threshold_features:
            return dict(self.thresholds)
        vis = set(self.visible)
        return {n: v for n, v in self.thresholds.items() if vis & set(self.threshold_features.get(n, ()))}

    def trace(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(session seconds, values) of one feature where it was computed (NaN rows dropped)."""
        if name not in self.names or self.series.n == 0:
            return np.empty(0), np.empty(0)
        y = self.series.rows[:, self.names.index(name)]
        ok = np.isfinite(y)
        return self.session_time(self.series.t[ok]), y[ok]

    def reward_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Rewards placed on the first visible feature's trace (its value at the reward's time)."""
        x = self.session_time(np.asarray(self.rewards))
        vis = self.visible
        tx, ty = self.trace(vis[0]) if vis else (np.empty(0), np.empty(0))
        y = np.interp(x, tx, ty) if tx.size else np.zeros_like(x)
        return x, y

    def spans(self) -> list[Span]:
        """The blocks: the status's timeline if it gave one, else the block markers."""
        if self.status_spans:
            return list(self.status_spans)
        return [Span(lab, float(self.session_time(np.array([s]))[0]),
                     None if e is None else float(self.session_time(np.array([e]))[0]))
                for lab, s, e in self.marker_blocks]


class FeatureView(QtWidgets.QWidget):
    """Renders a ``FeatureViewModel``: the trace plot (left) and the reward-rate bars (right)."""

    def __init__(self, model: FeatureViewModel, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.graphics = pg.GraphicsLayoutWidget(self)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        self.p_feat = self.graphics.addPlot(row=0, col=0)
        self.p_feat.setTitle("features", size="9pt")
        self.p_feat.setLabel("bottom", "session time (s)")
        self.p_feat.setMenuEnabled(False)
        self.p_feat.showGrid(x=True, y=True, alpha=0.2)
        self.p_feat.addLegend(offset=(5, 5), labelTextSize="8pt")
        self.p_rate = self.graphics.addPlot(row=0, col=1)
        self.p_rate.setTitle("reward rate per block (%)", size="9pt")
        self.p_rate.setMenuEnabled(False)
        self.p_rate.setMouseEnabled(x=False, y=False)
        self.p_rate.setYRange(0, 100, padding=0.02)
        cache_axes(self.p_feat)
        cache_axes(self.p_rate)
        self.graphics.ci.layout.setColumnStretchFactor(0, 4)
        self.graphics.ci.layout.setColumnStretchFactor(1, 1)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.lines: dict[str, pg.InfiniteLine] = {}
        self.regions: list[pg.LinearRegionItem] = []
        self.rewards = pg.ScatterPlotItem(size=9, symbol="t1", brush=REWARD_COLOR, pen=None)
        self.rewards.setZValue(10)
        self.p_feat.addItem(self.rewards)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.7, brush="#48bb78")
        self.p_rate.addItem(self.bars)
        self._spans: list[Span] = []
        self._version = -1

    def refresh(self) -> None:
        m = self.model
        if m.version == self._version:
            return
        self._version = m.version
        vis = m.visible
        for name in [n for n in self.curves if n not in vis]:
            self.p_feat.removeItem(self.curves.pop(name))
        for i, name in enumerate(vis):
            if name not in self.curves:
                color = FEATURE_COLORS[i % len(FEATURE_COLORS)]
                self.curves[name] = self.p_feat.plot(pen=pg.mkPen(color, width=1.5), name=name)
            self.curves[name].setData(*m.trace(name))
        self.rewards.setData(*m.reward_points())
        self._thresholds(m.shown_thresholds())
        self._blocks(m.spans())
        self._rates(m.rates)

    def _thresholds(self, values: Mapping[str, float]) -> None:
        for name in [n for n in self.lines if n not in values]:
            self.p_feat.removeItem(self.lines.pop(name))
        for name, v in values.items():
            line = self.lines.get(name)
            if line is None:
                line = pg.InfiniteLine(v, angle=0, movable=False,
                                       pen=pg.mkPen(THRESHOLD_COLOR, width=1.5, style=QtCore.Qt.PenStyle.DashLine),
                                       label=f"{name} {{value:.3g}}", labelOpts={"position": 0.05,
                                                                                "color": THRESHOLD_COLOR})
                self.p_feat.addItem(line)
                self.lines[name] = line
            elif line.value() != v:
                line.setValue(v)

    def _blocks(self, spans: list[Span]) -> None:
        now = float(self.model.session_time(self.model.series.t[-1:])[0]) if self.model.series.n else None

        def end_of(s: Span) -> float:  # a running block reaches the newest feature
            return s.end if s.end is not None else (now if now is not None and now > s.start else s.start + 1.0)

        if spans == self._spans:
            if spans and spans[-1].end is None:
                self.regions[-1].setRegion((spans[-1].start, end_of(spans[-1])))
            return
        self._spans = spans
        for r in self.regions:
            self.p_feat.removeItem(r)
        self.regions = []
        for s in spans:
            end = end_of(s)
            r = pg.LinearRegionItem((s.start, end), movable=False, brush=block_color(s.label, 45),
                                    pen=pg.mkPen(block_color(s.label, 120)))
            r.setZValue(-10)
            r.setToolTip(s.label)
            self.p_feat.addItem(r)
            self.regions.append(r)

    def _rates(self, rates: list[tuple[str, float]]) -> None:
        x = np.arange(len(rates), dtype=np.float64)
        heights = np.array([100.0 * r for _, r in rates])
        self.bars.setOpts(x=x, height=heights, width=0.7)
        self.p_rate.getAxis("bottom").setTicks([[(float(i), lab) for i, (lab, _) in enumerate(rates)], []])
        if len(rates):
            self.p_rate.setXRange(-0.6, len(rates) - 0.4, padding=0)

    def bar_heights(self) -> list[float]:
        """The bars drawn, in % (for tests and the report)."""
        h = self.bars.opts.get("height")
        return [] if h is None else [float(v) for v in h]
