"""Set-up: which protocol, whose session, where it goes, simulated or real: checked before anything runs.

The protocol is validated as soon as it is chosen, with the same loader and the same
FILE:LINE:COL messages as ``neuroreflex validate``, each shown with the offending line, so a
protocol author fixing a file sees in the console what the command line would have said.
"""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore, QtWidgets

from controller.console.session_link import SessionSetup
from controller.lang.compiled import Protocol
from controller.lang.errors import ProtocolError

LIBRARY = Path(__file__).resolve().parents[2] / "protocols"
DEFAULT_SITE = Path(__file__).resolve().parents[2] / "config" / "site.yaml"


def validation_text(path: Path, site: Path | None) -> tuple[Protocol | None, str]:
    """The protocol (or None) and what `neuroreflex validate` would say, errors with their lines quoted."""
    from controller.protocol import load_protocol

    try:
        site_obj = None
        if site is not None:
            from controller.safety.site import load_site

            site_obj = load_site(site)
        protocol = load_protocol(path, site=site_obj)
    except ProtocolError as exc:
        out = []
        for issue in exc.issues:
            out.append(str(issue))
            try:
                line = Path(issue.file).read_text(encoding="utf-8", errors="replace").splitlines()[issue.line - 1]
                out.append(f"    {line}\n    {' ' * (issue.col - 1)}^")
            except (OSError, IndexError):
                pass
        return None, "\n".join(out)
    except OSError as exc:
        return None, f"{path}: cannot read: {exc.strerror or exc}"
    n_inputs = len(protocol.inputs) + len(protocol.volume_inputs)
    text = (f"valid protocol {protocol.name!r}: {n_inputs} input(s), {len(protocol.features)} feature(s), "
            f"{len(protocol.thresholds)} threshold(s), {len(protocol.rules)} rule(s), {len(protocol.timeline)} "
            f"blocks, {protocol.duration_s / 60:.1f} min")
    if protocol.devices:
        text += f"\nstimulates {', '.join(protocol.devices)}" + ("" if site else ": choose the site config")
    return protocol, text


class SetupPage(QtWidgets.QWidget):
    """The form; ``setup()`` returns what was chosen, or raises ValueError naming what is missing."""

    changed = QtCore.Signal()
    preflight_requested = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None, *, operator: str = "", participant: str = "",
                 session_root: Path = Path("sessions"), site: Path | None = None) -> None:
        super().__init__(parent)
        self.protocol: Protocol | None = None
        form = QtWidgets.QFormLayout()
        self.protocol_box = QtWidgets.QComboBox()
        self.protocol_box.setEditable(True)
        for path in sorted(LIBRARY.glob("*.yaml")):
            self.protocol_box.addItem(path.stem, str(path))
        self.protocol_box.setCurrentIndex(-1)
        browse = QtWidgets.QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.protocol_box, 1)
        row.addWidget(browse)
        form.addRow("Protocol", row)
        self.site_edit = QtWidgets.QLineEdit(str(site) if site else "")
        self.site_edit.setPlaceholderText(f"site config for stimulation protocols, e.g. {DEFAULT_SITE}")
        form.addRow("Site config", self.site_edit)
        self.participant_edit = QtWidgets.QLineEdit(participant)
        form.addRow("Participant ID", self.participant_edit)
        self.operator_edit = QtWidgets.QLineEdit(operator)
        form.addRow("Operator", self.operator_edit)
        self.folder_edit = QtWidgets.QLineEdit(str(session_root))
        form.addRow("Session folder", self.folder_edit)
        self.simulated = QtWidgets.QRadioButton("Simulated participant (and virtual devices)")
        self.real = QtWidgets.QRadioButton("Real streams on the network")
        self.simulated.setChecked(True)
        source = QtWidgets.QHBoxLayout()
        source.addWidget(self.simulated)
        source.addWidget(self.real)
        form.addRow("Signals", source)
        self.virtual_devices = QtWidgets.QCheckBox("virtual stimulators with real streams (rehearsal)")
        form.addRow("", self.virtual_devices)
        self.streams_edit = QtWidgets.QLineEdit()
        self.streams_edit.setPlaceholderText("optional: [INPUT=]STREAM NAME, comma separated")
        form.addRow("Streams", self.streams_edit)
        self.run_box = QtWidgets.QComboBox()
        form.addRow("fMRI run", self.run_box)
        self.validation = QtWidgets.QPlainTextEdit()
        self.validation.setReadOnly(True)
        self.validation.setMinimumHeight(120)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QtWidgets.QLabel("Validation (as `neuroreflex validate`):"))
        layout.addWidget(self.validation, 1)
        self.preflight_button = QtWidgets.QPushButton("Preflight →")
        self.preflight_button.setObjectName("setup-preflight")
        self.preflight_button.clicked.connect(self.preflight_requested.emit)
        layout.addWidget(self.preflight_button, 0, QtCore.Qt.AlignmentFlag.AlignRight)
        self.protocol_box.currentIndexChanged.connect(self.validate)
        self.protocol_box.lineEdit().editingFinished.connect(self.validate)
        self.site_edit.editingFinished.connect(self.validate)

    def protocol_path(self) -> Path | None:
        data = self.protocol_box.currentData()
        text = data if isinstance(data, str) and self.protocol_box.currentText() == Path(data).stem \
            else self.protocol_box.currentText().strip()
        return Path(text) if text else None

    def choose_protocol(self, path: Path) -> None:
        index = self.protocol_box.findData(str(Path(path).resolve()))
        if index < 0:
            self.protocol_box.addItem(str(path), str(path))
            index = self.protocol_box.count() - 1
        self.protocol_box.setCurrentIndex(index)
        self.validate()

    def _browse(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Protocol", str(LIBRARY), "Protocols (*.yaml *.yml)")
        if path:
            self.choose_protocol(Path(path))

    def site_path(self) -> Path | None:
        text = self.site_edit.text().strip()
        return Path(text) if text else None

    def validate(self) -> Protocol | None:
        path = self.protocol_path()
        if path is None:
            self.protocol = None
            self.validation.setPlainText("choose a protocol")
        else:
            self.protocol, text = validation_text(path, self.site_path())
            self.validation.setPlainText(text)
        self.run_box.clear()
        if self.protocol is not None and self.protocol.runs:
            for run in self.protocol.runs:
                self.run_box.addItem(run.name)
        self.run_box.setEnabled(self.run_box.count() > 0)
        self.changed.emit()
        return self.protocol

    def setup(self) -> SessionSetup:
        path = self.protocol_path()
        if path is None or self.validate() is None:
            raise ValueError(f"the protocol is not valid:\n{self.validation.toPlainText()}")
        streams = [s.strip() for s in self.streams_edit.text().split(",") if s.strip()]
        setup = SessionSetup(protocol=path, operator=self.operator_edit.text().strip(),
                             participant=self.participant_edit.text().strip(),
                             session_root=Path(self.folder_edit.text().strip() or "sessions"), site=self.site_path(),
                             simulated=self.simulated.isChecked(), run=self.run_box.currentText() or None,
                             streams=streams, virtual_devices=self.virtual_devices.isChecked())
        if self.protocol is not None and self.protocol.devices and setup.site is None:
            raise ValueError(f"{path.name} drives stimulators ({', '.join(self.protocol.devices)}): "
                             "choose the site config with their limits")
        problems = setup.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return setup
