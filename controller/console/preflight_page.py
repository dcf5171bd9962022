"""The preflight tab: the checks of controller/console/preflight.py run off the GUI thread, shown as a table.

Resolving streams and judging seconds of signal takes seconds; the GUI (and its E-STOP) must stay
responsive meanwhile, so the run happens on a worker thread and its result comes back through a
queued Qt signal.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from PySide6 import QtCore, QtWidgets

from controller.console.preflight import Check, overall, run_preflight
from controller.console.preflight_view import PreflightView
from controller.console.session_link import SessionSetup
from controller.lang.compiled import Protocol


def with_setup_streams(protocol: Protocol, setup: SessionSetup) -> Protocol:
    """The protocol as the session will resolve it: the set-up's stream names (and the console's simulator)."""
    from controller.inputs.lsl.live_check import parse_stream_options, with_streams

    names = list(setup.streams) + ([setup.sim_stream] if setup.sim_stream else [])
    return with_streams(protocol, parse_stream_options(names)) if names else protocol


class PreflightPage(QtWidgets.QWidget):
    run_requested = QtCore.Signal()
    finished = QtCore.Signal(object)  # list[Check], delivered on the GUI thread

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = PreflightView()
        self.view.run_again.connect(self.run_requested.emit)
        self.checks: list[Check] = []
        self.runs = 0
        self._worker: threading.Thread | None = None
        self.finished.connect(self._show, QtCore.Qt.ConnectionType.QueuedConnection)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.view)

    @property
    def busy(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def start(self, protocol: Protocol, setup: SessionSetup, **options: Any) -> None:
        if self.busy:
            return
        self.view.running()
        simulated = setup.simulated or setup.virtual_devices or setup.sim_stream is not None

        def work() -> None:
            try:
                checks = run_preflight(with_setup_streams(protocol, setup), site=setup.site,
                                       participant=setup.participant, session_root=setup.session_root,
                                       devices="virtual" if simulated else "site",
                                       simulated_scanner=setup.simulated and bool(protocol.volume_inputs),
                                       **options)
            except Exception as exc:  # a preflight that cannot run is itself a red check, never a crash
                checks = [Check("preflight", "red", f"the preflight could not run: {exc}")]
            self.finished.emit(checks)

        self._worker = threading.Thread(target=work, name="console-preflight", daemon=True)
        self._worker.start()

    def _show(self, checks: Sequence[Check]) -> None:
        self.checks = list(checks)
        self.runs += 1
        self.view.show_checks(self.checks)

    def level(self) -> str | None:
        return overall(self.checks) if self.checks else None
