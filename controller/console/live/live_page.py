"""The console's live page for EEG/stimulation sessions: signal, spectrum, features, timeline, stimulation.

The page pulls nothing itself: the console owns the LSL inlets and the status poll and hands what it got
to ``on_signal``/``on_features``/``on_markers``/``on_feedback``/``on_status``; its frame timer calls
``refresh()``. Feeding only updates models (numpy, no drawing); ``refresh`` draws. So the page is tested by
feeding arrays, and a slow draw never delays a pull.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PySide6 import QtCore, QtWidgets

from controller.console.live.feature_view import FeatureView, FeatureViewModel
from controller.console.live.signal_view import (
    DEFAULT_SCALE_UV,
    DEFAULT_SECONDS,
    SignalView,
    SignalViewModel,
    input_filter,
)
from controller.console.live.spectrum_view import SpectrumModel, SpectrumView, parse_bands
from controller.console.live.stim_panel import StimPanel
from controller.console.live.timeline_view import TimelineView

DISPLAY_HIGHPASS_HZ = 0.5  # when the session's status names no input filter


def signal_input(status: Mapping[str, Any]) -> str | None:
    """Which input the signal view shows: the first with feedback channels, else the first input."""
    inputs = status.get("inputs") or {}
    for name in status.get("channels") or {}:
        if name in inputs:
            return str(name)
    return str(next(iter(inputs))) if inputs else None


class LivePage(QtWidgets.QWidget):
    """Composes the live views; see the module docstring for who calls what."""

    def __init__(self, parent: QtWidgets.QWidget | None = None, *, seconds: float = DEFAULT_SECONDS,
                 display_highpass_hz: float | None = DISPLAY_HIGHPASS_HZ,
                 scale_uv: float = DEFAULT_SCALE_UV) -> None:
        super().__init__(parent)
        self.setWindowTitle("neuroreflex - live")
        self.setStyleSheet("background: #111111;")
        self.seconds = seconds
        self.display_highpass_hz = display_highpass_hz
        self.scale_uv = scale_uv
        self.input: str | None = None
        self.signal_model: SignalViewModel | None = None
        self.spectrum_model: SpectrumModel | None = None
        self.feature_model = FeatureViewModel()
        self.feedback: tuple[float, float | None] | None = None
        self.last_marker = ""
        self.ignored_samples = 0  # signal fed before ``configure`` (nothing to place it in yet)

        self.header = QtWidgets.QLabel("waiting for the session's status", self)
        self.header.setWordWrap(True)
        self.header.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.header.setStyleSheet("color: #eeeeee; font-family: monospace; font-size: 14px; padding: 4px;")
        self.timeline = TimelineView(self)
        self.signal_view = SignalView(parent=self)
        self.spectrum_view = SpectrumView(parent=self)
        self.stim_panel = StimPanel(self)
        self.feature_view = FeatureView(self.feature_model, self)

        right = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical, self)
        right.addWidget(self.spectrum_view)
        right.addWidget(self.stim_panel)
        right.setSizes([400, 250])
        middle = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal, self)
        middle.addWidget(self.signal_view)
        middle.addWidget(right)
        middle.setStretchFactor(0, 3)
        middle.setStretchFactor(1, 1)
        main = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical, self)
        main.addWidget(middle)
        main.addWidget(self.feature_view)
        main.setSizes([650, 250])
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.header)
        layout.addWidget(self.timeline)
        layout.addWidget(main, 1)

    # ------------------------------------------------------------------ feeding (no drawing)
    def configure(self, status: Mapping[str, Any]) -> None:
        """Set up from the session's first status: the signal input's labels, rate, unit and filter, the
        feedback channels and bands for the spectrum, the blocks. Calling it again starts over (a new session)."""
        self.input = signal_input(status)
        entry = (status.get("inputs") or {}).get(self.input) if self.input else None
        if isinstance(entry, Mapping) and entry.get("channels") and entry.get("srate"):
            self.signal_model = SignalViewModel(
                [str(c) for c in entry["channels"]], float(entry["srate"]), seconds=self.seconds,
                unit=entry.get("units"), filt=input_filter(entry, self.display_highpass_hz), scale_uv=self.scale_uv)
            feedback_channels = (status.get("channels") or {}).get(self.input) or None
            self.spectrum_model = SpectrumModel(self.signal_model, feedback_channels, parse_bands(status.get("bands")))
            self.signal_view.set_model(self.signal_model)
            self.spectrum_view.set_model(self.spectrum_model)
        self.feature_model.clear()
        self.feedback = None
        self.on_status(status)

    def on_signal(self, samples: np.ndarray, stamps: np.ndarray) -> None:
        """A pull of the signal input: ``samples`` (n_samples x n_channels) in stream units."""
        if self.signal_model is None:
            self.ignored_samples += len(stamps)
            return
        self.signal_model.push(samples, stamps)

    def on_features(self, rows: np.ndarray, stamps: np.ndarray, names: Sequence[str]) -> None:
        self.feature_model.on_features(rows, stamps, names)

    def on_markers(self, texts: Sequence[str], stamps: Sequence[float]) -> None:
        """Marker strings (``block_start:<label>``, ``block_end:<label>``, ``reward``, ``threshold:<n>=<v>``...)."""
        texts = [t[0] if isinstance(t, list | tuple) else str(t) for t in texts]  # LSL pulls give rows
        self.feature_model.on_markers(texts, stamps)
        if texts:
            self.last_marker = texts[-1]

    def on_feedback(self, rows: np.ndarray, stamps: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim == 2 and len(rows):
            self.feedback = (float(rows[-1, 0]), float(rows[-1, 1]) if rows.shape[1] > 1 else None)

    def on_status(self, status: Mapping[str, Any]) -> None:
        """The polled status (~4 Hz): timeline and stimulation update now (cheap), the plots on refresh."""
        if self.signal_model is None and status.get("inputs"):
            self.configure(status)
            return
        self.feature_model.on_status(status)
        if self.spectrum_model is not None and "bands" in status:
            bands = parse_bands(status.get("bands"))
            if bands != self.spectrum_model.bands:
                self.spectrum_view.set_bands(bands)
        self.timeline.on_status(status)
        self.stim_panel.on_status(status)
        self.header.setText(self._header(status))

    def _header(self, status: Mapping[str, Any]) -> str:
        parts = [f"session {status.get('session') or '—'}", f"protocol {status.get('protocol') or '—'}"]
        fb = status.get("feedback")
        if isinstance(fb, Mapping) and fb.get("value"):
            parts.append(f"feedback {fb['value']} ({fb.get('direction') or '—'})")
        inh = status.get("inhibitions") or {}
        if inh:
            parts.append("INHIBITED: " + "; ".join(f"{k}: {v}" for k, v in inh.items()))
        return "   ".join(parts)

    def pick(self, labels: Sequence[str] | None) -> None:
        """Show these channels of the signal input, in this order (None: all); ValueError for an unknown one."""
        if self.signal_model is not None:
            self.signal_view.pick(labels)

    # ------------------------------------------------------------------ drawing
    def refresh(self) -> None:
        """Redraw from the models (the console's frame timer)."""
        self.signal_view.refresh()
        self.spectrum_view.refresh()
        self.feature_view.refresh()
