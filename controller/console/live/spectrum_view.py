"""The spectrum of the feedback channel(s): Welch over the last seconds, log power, the protocol's bands shaded.

It reads the signal view's ring (the same filtered µV the traces show, hence the same conditioning the
features see) and recomputes a few times a second of *stream* time, not wall time: a paused or stalled
stream leaves the last spectrum standing, and tests get the same updates on every machine.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtGui, QtWidgets
from scipy import signal  # type: ignore[import-untyped]  # scipy: no type stubs installed

from controller.console.live.qtutil import cache_axes
from controller.console.live.signal_view import SignalViewModel

SPECTRUM_SECONDS = 3.0  # Welch over the last 3 s (1 s segments, half overlap: 5 averaged)
UPDATE_HZ = 3.0  # recomputed every 1/3 s of stream time
FMAX_HZ = 60.0
BAND_COLORS = ("#3182ce", "#d69e2e", "#38a169", "#e53e3e", "#805ad5", "#dd6b20")


def band_color(name: str, alpha: int) -> QtGui.QColor:
    """A stable colour per band name."""
    c = QtGui.QColor(BAND_COLORS[zlib.crc32(name.encode()) % len(BAND_COLORS)])
    c.setAlpha(alpha)
    return c


def parse_bands(raw: Mapping[str, Any] | None) -> dict[str, tuple[float, float]]:
    """``status["bands"]`` -> name: (lo, hi) Hz; malformed entries are skipped (a display shows what it can)."""
    out: dict[str, tuple[float, float]] = {}
    for name, edges in (raw or {}).items():
        try:
            lo, hi = float(edges[0]), float(edges[1])
        except (TypeError, ValueError, IndexError, KeyError):
            continue
        if lo < hi:
            out[str(name)] = (lo, hi)
    return out


class SpectrumModel:
    """Log power (dB re 1 µV²/Hz) of the mean PSD over the chosen channels of a ``SignalViewModel``."""

    def __init__(self, signal_model: SignalViewModel, channels: Sequence[str] | None = None,
                 bands: Mapping[str, tuple[float, float]] | None = None, *, seconds: float = SPECTRUM_SECONDS,
                 update_hz: float = UPDATE_HZ, fmax_hz: float = FMAX_HZ) -> None:
        self.signal = signal_model
        self.bands = dict(bands or {})
        self.seconds = min(seconds, signal_model.seconds)
        self.fmax_hz = min(fmax_hz, signal_model.srate / 2)
        self.every = max(1, int(round(signal_model.srate / update_hz)))  # samples between updates
        self.freqs = np.empty(0)
        self.power_db = np.empty(0)
        self.updates = 0
        self._at = -1  # ring count at the last update
        self.set_channels(channels)

    def set_channels(self, channels: Sequence[str] | None) -> None:
        """Which channels are averaged (None or empty: all of the input). Unknown labels are ignored."""
        labels = self.signal.labels
        index = {lab.lower(): i for i, lab in enumerate(labels)}
        idx = [index[c.lower()] for c in (channels or ()) if c.lower() in index]
        self.channel_indices = np.array(idx if idx else range(len(labels)), dtype=np.intp)
        self.channels = [labels[i] for i in self.channel_indices]
        self._at = -1

    def due(self) -> bool:
        return self.signal.ring.count - self._at >= self.every if self._at >= 0 else self.signal.ring.count > 0

    def update(self, force: bool = False) -> bool:
        """Recompute if enough new samples arrived (or ``force``); True if the spectrum changed."""
        if not (force or self.due()):
            return False
        ring = self.signal.ring
        fs = self.signal.srate
        n = min(ring.count, self.signal.span, int(round(self.seconds * fs)))
        if n < max(8, int(fs / 4)):  # under a quarter second: no useful spectrum yet
            return False
        x = ring.latest(n)[self.channel_indices]
        x = np.where(np.isfinite(x), x, 0.0)
        nperseg = min(n, int(round(fs)))
        f, pxx = signal.welch(x, fs=fs, window="hann", nperseg=nperseg, noverlap=nperseg // 2, axis=-1)
        keep = f <= self.fmax_hz
        mean = pxx[:, keep].mean(axis=0)
        self.freqs = f[keep]
        self.power_db = 10.0 * np.log10(np.maximum(mean, 1e-12))
        self._at = ring.count
        self.updates += 1
        return True

    def peak_hz(self, lo: float = 0.5, hi: float | None = None) -> float | None:
        """The frequency of the highest power within [lo, hi] Hz (None before the first spectrum)."""
        if self.freqs.size == 0:
            return None
        hi = self.fmax_hz if hi is None else hi
        m = (self.freqs >= lo) & (self.freqs <= hi)
        if not m.any():
            return None
        return float(self.freqs[m][np.argmax(self.power_db[m])])

    def band_power_db(self) -> dict[str, float]:
        """Mean log power within each band (what the band labels show)."""
        out = {}
        for name, (lo, hi) in self.bands.items():
            m = (self.freqs >= lo) & (self.freqs <= hi)
            out[name] = float(self.power_db[m].mean()) if m.any() else float("nan")
        return out


class SpectrumView(QtWidgets.QWidget):
    """Renders a ``SpectrumModel``: the log spectrum, one shaded region and label per band."""

    def __init__(self, model: SpectrumModel | None = None, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.plot = pg.PlotWidget(self)
        p = self.plot.getPlotItem()
        p.setMenuEnabled(False)
        p.hideButtons()
        p.setLabel("bottom", "frequency (Hz)")
        p.setLabel("left", "power (dB µV²/Hz)")
        p.getAxis("left").enableAutoSIPrefix(False)
        p.showGrid(x=True, y=True, alpha=0.2)
        cache_axes(p)
        self.title = QtWidgets.QLabel("spectrum", self)
        self.title.setStyleSheet("color: #eeeeee; font-family: monospace;")
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.title)
        layout.addWidget(self.plot, 1)
        self.curve = p.plot(pen=pg.mkPen("#f6e05e", width=1.5))
        self.regions: dict[str, pg.LinearRegionItem] = {}
        self.labels: dict[str, pg.TextItem] = {}
        if model is not None:
            self.set_model(model)

    def set_model(self, model: SpectrumModel) -> None:
        self.model = model
        self.set_bands(model.bands)
        self.plot.getPlotItem().setXRange(0, model.fmax_hz, padding=0)

    def set_bands(self, bands: Mapping[str, tuple[float, float]]) -> None:
        """One unmovable region and a name label per band (replacing the previous ones)."""
        p = self.plot.getPlotItem()
        for item in [*self.regions.values(), *self.labels.values()]:
            p.removeItem(item)
        self.regions, self.labels = {}, {}
        if self.model is not None:
            self.model.bands = dict(bands)
        for name, (lo, hi) in bands.items():
            region = pg.LinearRegionItem((lo, hi), movable=False, brush=band_color(name, 60),
                                         pen=pg.mkPen(band_color(name, 160)))
            region.setZValue(-10)
            p.addItem(region)
            label = pg.TextItem(name, color=band_color(name, 255), anchor=(0.5, 0))
            p.addItem(label)
            self.regions[name] = region
            self.labels[name] = label

    def refresh(self) -> None:
        m = self.model
        if m is None or not m.update():
            return
        self.curve.setData(m.freqs, m.power_db)
        self.title.setText(f"spectrum {', '.join(m.channels[:4])}{' …' if len(m.channels) > 4 else ''} "
                           f"(last {m.seconds:g} s)")
        if m.power_db.size:
            top = float(np.max(m.power_db))
            powers = m.band_power_db()
            for name, label in self.labels.items():
                lo, hi = m.bands[name]
                label.setPos((lo + hi) / 2, top)
                label.setText(f"{name}\n{powers[name]:.0f} dB" if np.isfinite(powers[name]) else name)
