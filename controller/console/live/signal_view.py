"""The scrolling multichannel signal view: the last seconds of an input, filtered, stacked.

The model (``SignalViewModel``) keeps every stream channel in a ring buffer after the same causal
high-pass/notch the protocol applies (filter state carried from chunk to chunk, so what the operator
sees is what the features see; only the start differs, see ``DisplayFilter``), and reduces the picked channels to two points (min, max) per screen
column: 64 channels x 10 s x 1 kHz become 64 x ~2000 points per frame, computed with a few numpy
reductions and written into preallocated arrays. The widget (``SignalView``) only hands those arrays
to Qt, as two curves (even and odd lanes, NaN between lanes, ``connect="finite"``): one PlotDataItem
per channel cost 64 setData and 64 path builds per frame, about 30 ms of Python per frame at 64
channels (bench/console_draw.py), over the whole frame budget together with the painting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets
from scipy import signal  # type: ignore[import-untyped]  # scipy: no type stubs installed

from controller.console.live.qtutil import cache_axes
from controller.dsp.design import bandpass_sos, highpass_sos, notch_sos
from controller.dsp.ring import RingBuffer
from controller.lang.compiled import Band

# µV per division, the steps the +/- keys walk through
SCALES_UV = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)
DEFAULT_SCALE_UV = 50.0
DEFAULT_SECONDS = 10.0
DEFAULT_COLUMNS = 1000  # screen columns the window is reduced to (2 points each)
# what one stream unit is in µV (the stream description's unit; unknown: taken as µV)
UNIT_TO_UV = {"v": 1e6, "volt": 1e6, "volts": 1e6, "mv": 1e3, "millivolt": 1e3, "uv": 1.0, "µv": 1.0,
              "μv": 1.0, "microvolt": 1.0, "microvolts": 1.0, "nv": 1e-3}
TRACE_COLORS = ("#e2e8f0", "#90cdf4")  # alternate lanes, so neighbouring traces are told apart


def unit_factor(unit: str | None) -> float:
    """Stream units -> µV (``None`` or an unknown unit: the values are taken as µV already)."""
    if not unit:
        return 1.0
    return UNIT_TO_UV.get(unit.strip().lower(), 1.0)


@dataclass(frozen=True)
class FilterSpec:
    """The display's causal filter: the protocol's input conditioning (high-pass, notch), or a band-pass."""

    highpass_hz: float | None = None
    notch_hz: float | None = None
    band_hz: tuple[float, float] | None = None  # band-pass instead of the high-pass

    def sos(self, fs: float) -> np.ndarray | None:
        """The cascade as second-order sections (None: nothing to filter). Edges beyond Nyquist are dropped."""
        parts = []
        nyq = fs / 2
        if self.band_hz is not None and 0 < self.band_hz[0] < self.band_hz[1] < nyq:
            parts.append(bandpass_sos(fs, Band(float(self.band_hz[0]), float(self.band_hz[1])), what="display band"))
        elif self.highpass_hz is not None and 0 < self.highpass_hz < nyq:
            parts.append(highpass_sos(fs, self.highpass_hz))
        if self.notch_hz is not None and 0 < self.notch_hz < nyq:
            parts.append(notch_sos(fs, self.notch_hz))
        return np.vstack(parts) if parts else None

    def describe(self) -> str:
        parts = []
        if self.band_hz is not None:
            parts.append(f"band {self.band_hz[0]:g}-{self.band_hz[1]:g} Hz")
        elif self.highpass_hz is not None:
            parts.append(f"HP {self.highpass_hz:g} Hz")
        if self.notch_hz is not None:
            parts.append(f"notch {self.notch_hz:g} Hz")
        return ", ".join(parts) or "unfiltered"


def input_filter(entry: Mapping[str, Any], default_highpass_hz: float | None) -> FilterSpec:
    """The filter of one ``status["inputs"][name]`` entry (``highpass_hz``/``notch_hz``/``band_hz`` when the
    session says them); a display high-pass otherwise, so amplifier offsets do not push traces off screen."""
    hp = entry.get("highpass_hz")
    notch = entry.get("notch_hz")
    band = entry.get("band_hz")
    if hp is None and notch is None and band is None:
        return FilterSpec(highpass_hz=default_highpass_hz)
    return FilterSpec(highpass_hz=hp, notch_hz=notch, band_hz=tuple(band) if band is not None else None)


class DisplayFilter:
    """A causal SOS cascade over ``n_channels`` rows with its state kept between chunks, started at steady
    state on the first sample (``sosfilt_zi`` times that sample per channel).

    Not ``controller.dsp.filters.StreamingSOS``: that one starts from zero state, as the features must (to
    match the offline reference), which turns an amplifier's tens of mV of offset into seconds of a
    full-screen transient; a display wants the traces readable from the first frame.
    """

    def __init__(self, sos: np.ndarray, n_channels: int) -> None:
        self.sos = np.asarray(sos, dtype=np.float64)
        self._zi_unit = signal.sosfilt_zi(self.sos)  # (n_sections, 2): steady state for a unit step
        self._zi: np.ndarray | None = None  # (n_sections, n_channels, 2)
        self.n_channels = n_channels

    def reset(self) -> None:
        self._zi = None

    def process(self, block: np.ndarray) -> np.ndarray:
        """``block`` (n_channels, n) -> filtered (n_channels, n)."""
        if block.shape[1] == 0:
            return block
        if self._zi is None:
            self._zi = self._zi_unit[:, None, :] * block[None, :, 0, None]
        y, self._zi = signal.sosfilt(self.sos, block, axis=-1, zi=self._zi)
        return np.asarray(y)


class SignalViewModel:
    """Ring buffer (µV, filtered) of every channel of one input, and its decimated display curves.

    Display coordinates: x in seconds relative to the newest sample (``-seconds .. 0``), y in divisions;
    lane k (k-th picked channel) is centred on ``-k``, one division = ``scale_uv`` µV.
    """

    def __init__(self, labels: Sequence[str], srate: float, *, seconds: float = DEFAULT_SECONDS,
                 unit: str | None = "uV", filt: FilterSpec = FilterSpec(), columns: int = DEFAULT_COLUMNS,
                 scale_uv: float = DEFAULT_SCALE_UV, method: str = "minmax") -> None:
        if srate <= 0:
            raise ValueError(f"the signal view needs a nominal rate > 0 Hz, got {srate}")
        if method not in ("minmax", "stride"):
            raise ValueError(f"decimation method must be 'minmax' or 'stride', got {method!r}")
        self.labels = list(labels)
        self.srate = float(srate)
        self.seconds = float(seconds)
        self.factor = unit_factor(unit)
        self.filt = filt
        self.method = method
        n_ch = len(self.labels)
        self.span = max(1, int(round(seconds * srate)))  # samples shown
        # a tenth more held: the partial column at the newest end never pushes the oldest column out
        self.ring = RingBuffer(n_ch, self.span + self.span // 10 + 1)
        sos = filt.sos(self.srate)
        self._filter = None if sos is None else DisplayFilter(sos, n_ch)
        self.last_stamp: float | None = None
        self.samples_in = 0
        self.scale_uv = float(scale_uv)
        self._picks = np.arange(n_ch)
        self.set_columns(columns)

    # ------------------------------------------------------------------ feeding
    def push(self, samples: np.ndarray, stamps: np.ndarray | None = None) -> None:
        """Append a chunk ``(n_samples, n_channels)`` in stream units; filtered and kept as µV.

        A non-finite sample is filtered as 0 (a NaN would poison the filter state for good) and shown as a gap.
        """
        samples = np.asarray(samples)
        if samples.ndim != 2 or samples.shape[0] == 0:
            return
        if samples.shape[1] != self.ring.n_channels:
            raise ValueError(f"signal chunk has {samples.shape[1]} channels, the view expects {self.ring.n_channels}")
        block = np.array(samples.T, dtype=np.float64, order="C")  # (n_ch, n), ours to filter in place
        if self.factor != 1.0:
            block *= self.factor
        bad = ~np.isfinite(block)
        any_bad = bool(bad.any())
        if any_bad:
            block[bad] = 0.0
        if self._filter is not None:
            block = self._filter.process(block)
        if any_bad:
            block[bad] = np.nan
        self.ring.write(block)
        self.samples_in += block.shape[1]
        if stamps is not None and len(stamps):
            self.last_stamp = float(stamps[-1])

    def reset(self) -> None:
        """A new stream (the next session): forget the samples and the filter state."""
        self.ring.reset()
        if self._filter is not None:
            self._filter.reset()
        self._cols_done = None
        self.samples_in = 0
        self.last_stamp = None

    # ------------------------------------------------------------------ picking and scale
    @property
    def picked(self) -> list[str]:
        return [self.labels[i] for i in self._picks]

    @property
    def pick_indices(self) -> np.ndarray:
        return self._picks

    def pick(self, labels: Sequence[str] | None) -> None:
        """Show these channels, in this order (None: all). Labels match case-insensitively."""
        if labels is None:
            picks = np.arange(len(self.labels))
        else:
            index = {lab.lower(): i for i, lab in enumerate(self.labels)}
            missing = [lab for lab in labels if lab.lower() not in index]
            if missing:
                raise ValueError(f"no channel {', '.join(missing)} in this input ({', '.join(self.labels)})")
            picks = np.array([index[lab.lower()] for lab in labels], dtype=np.intp)
        self._picks = picks
        self._alloc()

    def set_scale(self, uv_per_div: float) -> None:
        if not uv_per_div > 0:
            raise ValueError(f"scale must be > 0 µV/div, got {uv_per_div}")
        self.scale_uv = float(uv_per_div)

    def scale_up(self) -> float:
        """More µV per division (traces shrink): the next step of ``SCALES_UV``."""
        bigger = [s for s in SCALES_UV if s > self.scale_uv * (1 + 1e-9)]
        self.scale_uv = bigger[0] if bigger else self.scale_uv
        return self.scale_uv

    def scale_down(self) -> float:
        """Fewer µV per division (traces grow)."""
        smaller = [s for s in SCALES_UV if s < self.scale_uv * (1 - 1e-9)]
        self.scale_uv = smaller[-1] if smaller else self.scale_uv
        return self.scale_uv

    # ------------------------------------------------------------------ display curves
    def set_columns(self, columns: int) -> None:
        """Reduce the window to about ``columns`` screen columns (the widget's width in pixels)."""
        self.per_column = max(1, self.span // max(10, int(columns)))
        self.columns = self.span // self.per_column
        self._alloc()

    def _alloc(self) -> None:
        n_pts = self.columns * (2 if self.method == "minmax" and self.per_column > 1 else 1)
        self.points_per_column = n_pts // self.columns
        col_t = (np.arange(self.columns) - self.columns + 1) * self.per_column / self.srate
        self.x = np.repeat(col_t, self.points_per_column)
        # one NaN column after each lane: lanes concatenated into one curve are not joined to each other
        self._ybuf = np.full((len(self._picks), n_pts + 1), np.nan)
        self.y = self._ybuf[:, :n_pts]
        self._mm = np.full((len(self._picks), n_pts), np.nan)  # per column min/max in µV, newest on the right
        self._cols_done: int | None = None  # whole columns reduced into ``_mm`` (None: redo all)
        self._xsep = np.append(self.x, np.nan)
        self._xlanes = {parity: np.tile(self._xsep, len(range(parity, len(self._picks), 2))) for parity in (0, 1)}
        self.offsets = -np.arange(len(self._picks), dtype=np.float64)

    def lanes(self, parity: int) -> tuple[np.ndarray, np.ndarray]:
        """Every other lane (``parity`` 0: lanes 0, 2, 4...) as one (x, y) with a NaN between lanes: drawing
        64 channels is then two path builds and two draws per frame instead of 64 of each."""
        return self._xlanes[parity], self._ybuf[parity::2].ravel()

    def window(self, seconds: float | None = None) -> np.ndarray:
        """The newest filtered samples of the picked channels, µV, ``(n_picked, n)`` (a copy)."""
        n = min(self.ring.count, self.span)
        if seconds is not None:
            n = min(n, int(round(seconds * self.srate)))
        if n == 0:
            return np.empty((len(self._picks), 0))
        return self.ring.latest(n)[self._picks]

    def update_curves(self) -> np.ndarray:
        """Update ``self.y`` (picked channels x display points, in divisions, lane offsets added; NaN where
        no sample is held yet) and return it.

        Only whole columns are shown, aligned on the stream's sample count: a column's min/max never changes
        once complete, so a frame reduces only the columns completed since the last one and shifts the rest
        (``_mm``, in µV); the scale and the lane offsets are applied to the whole array, cheaply, each frame.
        """
        ppc, spc, cols = self.points_per_column, self.per_column, self.columns
        count = self.ring.count
        lag = count % spc  # samples of the next, incomplete column
        newest = count // spc  # whole columns written so far
        have = min(cols, newest, (self.ring.capacity - lag) // spc)
        mm, done = self._mm, self._cols_done
        if done is None or newest < done or newest - done >= cols:
            mm.fill(np.nan)
            fresh = have
        else:
            fresh = min(newest - done, have)
            if fresh:
                mm[:, : (cols - fresh) * ppc] = mm[:, fresh * ppc:]  # overlapping: numpy buffers it
        if fresh and len(self._picks):
            n = fresh * spc
            view = self.ring.latest(n + lag)[:, :n]
            if len(self._picks) < self.ring.n_channels:
                view = view[self._picks]
            reduce_columns(view, spc, ppc, mm[:, (cols - fresh) * ppc:])
        self._cols_done = newest
        np.multiply(mm, 1.0 / self.scale_uv, out=self.y)
        self.y += self.offsets[:, None]
        return self.y


def reduce_columns(view: np.ndarray, spc: int, ppc: int, out: np.ndarray) -> None:
    """``view`` (rows, k * spc) -> ``out`` (rows, k * ppc): per column of ``spc`` samples its (min, max), or its
    last sample when ``ppc`` is 1. NaN in a column makes that column NaN (a gap on screen).

    Few samples per column: ``spc`` elementwise passes over whole columns (numpy's reduction along a short
    inner axis costs several times more); many: the reduction itself.
    """
    rows, n = view.shape
    blocks = view.reshape(rows, n // spc, spc)
    if ppc == 1:
        out[...] = blocks[:, :, -1]
        return
    lo, hi = out[:, 0::2], out[:, 1::2]
    if spc > 32:
        np.min(blocks, axis=2, out=lo)
        np.max(blocks, axis=2, out=hi)
        return
    lo[...] = blocks[:, :, 0]
    hi[...] = blocks[:, :, 0]
    for j in range(1, spc):
        np.minimum(lo, blocks[:, :, j], out=lo)
        np.maximum(hi, blocks[:, :, j], out=hi)


class SignalView(QtWidgets.QWidget):
    """Renders a ``SignalViewModel``: stacked traces, channel names on the left axis, scale buttons.

    Keys: ``+``/``Up`` bigger traces (fewer µV per division), ``-``/``Down`` smaller.
    """

    def __init__(self, model: SignalViewModel | None = None, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self.plot = pg.PlotWidget(self)
        p = self.plot.getPlotItem()
        p.setMenuEnabled(False)
        p.hideButtons()
        p.setMouseEnabled(x=False, y=False)
        p.setLabel("bottom", "time (s)")
        p.showGrid(x=True, y=False, alpha=0.15)
        cache_axes(p)  # 64 channel names re-rendered every frame cost several ms
        self.scale_label = QtWidgets.QLabel(self)
        self.scale_label.setStyleSheet("color: #eeeeee; font-family: monospace;")
        self.smaller = QtWidgets.QPushButton("−", self)
        self.bigger = QtWidgets.QPushButton("+", self)
        for b, tip in ((self.smaller, "smaller traces (more µV per division)"),
                       (self.bigger, "bigger traces (fewer µV per division)")):
            b.setFixedWidth(28)
            b.setToolTip(tip)
            b.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
            b.setStyleSheet("color: #eeeeee; background: #333333;")
        self.smaller.clicked.connect(self.scale_up)
        self.bigger.clicked.connect(self.scale_down)
        bar = QtWidgets.QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        bar.addWidget(self.scale_label, 1)
        bar.addWidget(self.smaller)
        bar.addWidget(self.bigger)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(bar)
        layout.addWidget(self.plot, 1)
        self.curves: list[pg.PlotDataItem] = []
        if model is not None:
            self.set_model(model)

    def set_model(self, model: SignalViewModel) -> None:
        self.model = model
        self.fit_columns()
        self.rebuild()

    def rebuild(self) -> None:
        """The two curves (even and odd lanes, in alternating colours) and the channel names as left-axis ticks
        (after a pick change)."""
        p = self.plot.getPlotItem()
        for c in self.curves:
            p.removeItem(c)
        self.curves = []
        m = self.model
        if m is None:
            return
        for color in TRACE_COLORS:
            c = pg.PlotCurveItem(pen=pg.mkPen(color, width=1), antialias=False, connect="finite")
            p.addItem(c)
            self.curves.append(c)
        p.getAxis("left").setTicks([[(float(off), lab) for off, lab in zip(m.offsets, m.picked)], []])
        n = len(m.pick_indices)
        p.setYRange(-n + 0.5, 0.5, padding=0)
        p.setXRange(-m.seconds, 0, padding=0)
        self._scale_text()

    def drawn(self, lane: int) -> tuple[np.ndarray, np.ndarray]:
        """The (x, y) points handed to Qt for one lane (the picked channel at that position)."""
        x, y = self.curves[lane % 2].getData()
        assert self.model is not None and x is not None and y is not None
        width = len(self.model.x) + 1
        i = (lane // 2) * width
        return x[i:i + width - 1], y[i:i + width - 1]

    def pick(self, labels: Sequence[str] | None) -> None:
        assert self.model is not None
        self.model.pick(labels)
        self.rebuild()

    def scale_up(self) -> None:
        if self.model is not None:
            self.model.scale_up()
            self._scale_text()

    def scale_down(self) -> None:
        if self.model is not None:
            self.model.scale_down()
            self._scale_text()

    def _scale_text(self) -> None:
        m = self.model
        if m is not None:
            self.scale_label.setText(f"{m.scale_uv:g} µV/div   {m.filt.describe()}   "
                                     f"{len(m.pick_indices)}/{len(m.labels)} channels")

    def keyPressEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        key = event.key()
        if key in (QtCore.Qt.Key.Key_Plus, QtCore.Qt.Key.Key_Equal, QtCore.Qt.Key.Key_Up):
            self.scale_down()
        elif key in (QtCore.Qt.Key.Key_Minus, QtCore.Qt.Key.Key_Down):
            self.scale_up()
        else:
            super().keyPressEvent(event)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self.fit_columns()

    def fit_columns(self) -> None:
        """Columns follow the plot's width in pixels (two points per column: nothing finer is visible)."""
        if self.model is not None:
            width = max(100, int(self.plot.getPlotItem().vb.width()) or self.plot.width())
            if width != self.model.columns:
                self.model.set_columns(width)

    def refresh(self) -> None:
        m = self.model
        if m is None:
            return
        m.update_curves()
        for parity, c in enumerate(self.curves):
            c.setData(*m.lanes(parity), connect="finite")
