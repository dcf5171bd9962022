"""The console's live page for an fMRI session: the operator panel as it is (motion / FD, timing and feedback
per TR, from ``<base>-fmri-qc``, ``-feedback`` and ``-markers``) beside a slice view of the newest volume
with the protocol's ROIs over it.

The panel is ``controller.display.panel``'s widget, embedded unchanged: :class:`LslOperatorPanel` when
the page follows a session's outlets (``stream_base`` = ``<prefix>-<session id>``), else
:class:`OperatorPanelView` over a :class:`PanelState` the caller feeds. The slice view reads the scanner
export folder the session reads, read-only, from a timer (``poll_volume``), or takes volumes handed to
it (``on_volume``), e.g. from an LSL volume stream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from controller.console.slice_model import Frame, NewestVolume, ProtocolMasks, SliceModel
from controller.console.slice_view import SliceView
from controller.display.model import PanelState
from controller.display.panel import LslOperatorPanel, OperatorPanelView
from controller.inputs.volumes.volume import Volume
from controller.inputs.volumes.watch_folder import DEFAULT_PATTERN
from controller.lang.compiled import Protocol
from controller.protocol.loader import load_protocol

POLL_MS = 500  # a TR is 0.5-3 s: a volume shows within a quarter to a sixth of a TR, listing the folder 2x/s


class FmriLivePage(QtWidgets.QWidget):
    """Operator panel (left) and slice view (right) of one fMRI session."""

    def __init__(self, stream_base: str | None = None, panel_state: PanelState | None = None,
                 poll_ms: int = POLL_MS, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("neuroreflex console - fMRI")
        state = panel_state or PanelState()
        self.panel: OperatorPanelView = (LslOperatorPanel(stream_base, state) if stream_base
                                         else OperatorPanelView(state))
        self.model = SliceModel()
        self.slices = SliceView(self.model)
        self.protocol: Protocol | None = None
        self.reader: NewestVolume | None = None
        self.split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal, self)
        self.split.addWidget(self.panel)
        self.split.addWidget(self.slices)
        self.split.setStretchFactor(0, 1)
        self.split.setStretchFactor(1, 1)
        self.split.setSizes([700, 900])  # the panel's six traces need width as much as the three planes
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.split)
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(int(poll_ms))
        self.timer.timeout.connect(self.poll_volume)

    def configure(self, protocol: Protocol | str | Path, volumes_folder: str | Path | None = None,
                  input_name: str | None = None) -> None:
        """Follow this protocol's ROIs and its fMRI input's export folder (``volumes_folder`` overrides it,
        as ``--volumes-folder`` does for the session), and start polling the folder.

        Raises ProtocolError / OSError for a protocol that cannot be read, ValueError when it has no fMRI
        input. An input that reads an LSL volume stream has no folder: pass ``volumes_folder`` or feed
        ``on_volume``.
        """
        proto = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
        masks = ProtocolMasks(proto, input_name)
        self.protocol = proto
        self.model.set_masks(masks)
        if self.panel.state.tr_s_option is None:
            self.panel.state.tr_s_option = masks.spec.tr_s
        folder = volumes_folder if volumes_folder is not None else masks.spec.source.folder
        pattern = masks.spec.source.pattern
        if folder is None:
            self.reader = None
            self.timer.stop()
            self.slices.note = "volumes arrive over LSL: no folder to read"
        else:
            # "*" (the default) would list every file; the console reads only what a volume reader can decode
            self.reader = NewestVolume(Path(folder), DEFAULT_PATTERN if pattern == "*" else pattern)
            self.slices.note = ""
            self.timer.start()
        self.slices.refresh()

    def on_volume(self, volume: Volume | Frame) -> None:
        """Show a volume (a session :class:`Volume` or a :class:`Frame`)."""
        if isinstance(volume, Volume):
            volume = Frame(np.asarray(volume.data), volume.affine, volume.index, source=volume.source)
        self.model.set_volume(volume)
        self.slices.refresh()

    def poll_volume(self) -> bool:
        """Read the newest volume of the folder if it is new (True when one was shown)."""
        if self.reader is None:
            return False
        frame = self.reader.poll()
        note = self.reader.error or self.reader.skipped
        if frame is not None:
            self.slices.note = note
            self.on_volume(frame)
            return True
        if note != self.slices.note:
            self.slices.note = note
            self.slices.refresh()
        return False

    def refresh(self) -> None:
        self.panel.refresh()
        self.slices.refresh()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802
        self.timer.stop()
        poller = getattr(self.panel, "poller", None)
        if poller is not None:
            poller.stop()
        super().closeEvent(event)
