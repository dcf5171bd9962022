"""Stimulation at a glance: one row per device (connected, armed, last pulse or setting, keep-alive age),
the dose used against its caps (amber past 80 %, red at the cap), and the active interlocks with their cause.

Everything comes from the status dict (``devices``, ``dose``, ``interlocks``); a session without stimulation
has none of them and the panel says so. A missing value reads "—".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PySide6 import QtCore, QtWidgets

from controller.console.live.qtutil import restyle

MISSING = "—"
OK, AMBER, RED, GREY = "#48bb78", "#d69e2e", "#e53e3e", "#a0aec0"
AMBER_FRACTION = 0.8
KEEPALIVE_STALE_S = 2.0  # a keep-alive older than this is shown amber (the device may time out)


def level_color(fraction: float | None) -> str:
    """Dose colour: red at (or over) the cap, amber over 80 %, green below, grey when unknown."""
    if fraction is None:
        return GREY
    if fraction >= 1.0:
        return RED
    if fraction > AMBER_FRACTION:
        return AMBER
    return OK


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _flag(v: Any, yes: str, no: str) -> str:
    return MISSING if not isinstance(v, bool) else (yes if v else no)


@dataclass(frozen=True)
class DeviceRow:
    name: str
    connected: str
    armed: str
    running: str
    last: str
    keepalive: str
    armed_color: str
    connected_color: str
    keepalive_color: str


@dataclass(frozen=True)
class DoseBar:
    device: str
    what: str  # "pulses", "charge_uC", ...
    used: float | None
    cap: float | None
    fraction: float | None
    color: str

    @property
    def text(self) -> str:
        u = MISSING if self.used is None else f"{self.used:g}"
        c = MISSING if self.cap is None else f"{self.cap:g}"
        pct = "" if self.fraction is None else f" ({100 * self.fraction:.0f} %)"
        return f"{self.what} {u} / {c}{pct}"


def device_rows(status: Mapping[str, Any]) -> list[DeviceRow]:
    rows = []
    for name, d in sorted((status.get("devices") or {}).items()):
        d = d if isinstance(d, Mapping) else {}
        armed, connected = d.get("armed"), d.get("connected")
        age = _num(d.get("keepalive_age_s"))
        rows.append(DeviceRow(
            name=str(name),
            connected=_flag(connected, "connected", "DISCONNECTED"),
            armed=_flag(armed, "ARMED", "disarmed"),
            running=_flag(d.get("running"), "running", "idle"),
            last=str(d["last"]) if d.get("last") else MISSING,
            keepalive=MISSING if age is None else f"{age:.1f} s",
            armed_color=RED if armed is True else GREY,  # armed: it can stimulate now
            connected_color=OK if connected is True else RED if connected is False else GREY,
            keepalive_color=GREY if age is None else (AMBER if age > KEEPALIVE_STALE_S else OK)))
    return rows


def dose_bars(status: Mapping[str, Any]) -> list[DoseBar]:
    """Each ``<what>_today<unit>`` with its ``<what>_cap<unit>`` (e.g. ``pulses_today``/``pulses_cap``,
    ``charge_today_uC``/``charge_cap_uC``), and each ``<what>_session<unit>`` with ``<what>_session_cap<unit>``."""
    bars = []
    for device, d in sorted((status.get("dose") or {}).items()):
        if not isinstance(d, Mapping):
            continue
        for key in d:
            if "_today" in key:
                what, cap_key = key.replace("_today", ""), key.replace("_today", "_cap")  # the day's: the plain name
            elif "_session" in key and "_cap" not in key:
                what, cap_key = key.replace("_session", "") + " (session)", key.replace("_session", "_session_cap")
            else:
                continue
            used, cap = _num(d.get(key)), _num(d.get(cap_key))
            fraction = used / cap if used is not None and cap is not None and cap > 0 else None
            bars.append(DoseBar(str(device), what, used, cap, fraction, level_color(fraction)))
    return bars


def interlock_lines(status: Mapping[str, Any]) -> list[str]:
    return [f"{src}: {why}" for src, why in sorted((status.get("interlocks") or {}).items())]


class StimPanel(QtWidgets.QWidget):
    """Renders the three lists; rows are rebuilt only when the set of devices or doses changes."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet("StimPanel { background: #111111; } QLabel { color: #eeeeee; font-family: monospace; }")
        self.none = QtWidgets.QLabel("no stimulation in this session", self)
        self.devices_box = QtWidgets.QGridLayout()
        self.dose_box = QtWidgets.QGridLayout()
        self.interlocks = QtWidgets.QLabel(MISSING, self)
        self.interlocks.setWordWrap(True)
        self.interlocks.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.none)
        layout.addLayout(self.devices_box)
        layout.addLayout(self.dose_box)
        layout.addWidget(self.interlocks)
        layout.addStretch(1)
        self.device_labels: dict[str, dict[str, QtWidgets.QLabel]] = {}
        self.dose_widgets: dict[tuple[str, str], tuple[QtWidgets.QLabel, QtWidgets.QProgressBar]] = {}
        self.rows: list[DeviceRow] = []
        self.bars: list[DoseBar] = []
        self.locks: list[str] = []

    def on_status(self, status: Mapping[str, Any]) -> None:
        self.rows, self.bars, self.locks = device_rows(status), dose_bars(status), interlock_lines(status)
        stim = any(k in status for k in ("devices", "dose", "interlocks"))
        self.none.setVisible(not stim)
        self._devices()
        self._doses()
        if self.locks:
            self.interlocks.setText("INTERLOCKS\n" + "\n".join(self.locks))
            restyle(self.interlocks, f"color: {RED}; font-weight: bold;")
        else:
            self.interlocks.setText("interlocks: none" if stim else MISSING)
            restyle(self.interlocks, f"color: {GREY};")

    @staticmethod
    def _clear(grid: QtWidgets.QGridLayout) -> None:
        while grid.count():
            item = grid.takeAt(0)
            w = item.widget() if item is not None else None
            if w is not None:
                w.deleteLater()

    def _devices(self) -> None:
        if [r.name for r in self.rows] != list(self.device_labels):
            self._clear(self.devices_box)
            self.device_labels = {}
            for i, r in enumerate(self.rows):
                labels = {k: QtWidgets.QLabel(self) for k in ("name", "connected", "armed", "running", "last",
                                                              "keepalive")}
                for j, lab in enumerate(labels.values()):
                    self.devices_box.addWidget(lab, i, j)
                # a refusal's reason can be long: it wraps in its cell (whole text as tooltip) instead of
                # widening the console beyond the screen
                labels["last"].setWordWrap(True)
                labels["last"].setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored,
                                             QtWidgets.QSizePolicy.Policy.Preferred)
                self.devices_box.setColumnStretch(4, 1)
                self.device_labels[r.name] = labels
        for r in self.rows:
            labels = self.device_labels[r.name]
            labels["name"].setText(r.name)
            for key, color in (("connected", r.connected_color), ("armed", r.armed_color),
                               ("keepalive", r.keepalive_color), ("running", None), ("last", None)):
                text = getattr(r, key)
                labels[key].setText(f"keep-alive {text}" if key == "keepalive" else text)
                if key == "last":
                    labels[key].setToolTip(text)
                if color is not None:
                    restyle(labels[key], f"color: {color};" + (" font-weight: bold;" if color != GREY else ""))

    def _doses(self) -> None:
        keys = [(b.device, b.what) for b in self.bars]
        if keys != list(self.dose_widgets):
            self._clear(self.dose_box)
            self.dose_widgets = {}
            for i, key in enumerate(keys):
                label, bar = QtWidgets.QLabel(self), QtWidgets.QProgressBar(self)
                bar.setRange(0, 1000)
                bar.setTextVisible(False)
                bar.setFixedHeight(12)
                self.dose_box.addWidget(label, i, 0)
                self.dose_box.addWidget(bar, i, 1)
                self.dose_widgets[key] = (label, bar)
        for b in self.bars:
            label, bar = self.dose_widgets[(b.device, b.what)]
            label.setText(f"{b.device} {b.text}")
            restyle(label, f"color: {b.color};")
            bar.setValue(int(round(1000 * min(1.0, b.fraction or 0.0))))
            restyle(bar, f"QProgressBar {{ background: #222222; border: 1px solid #444444; }}"
                         f"QProgressBar::chunk {{ background: {b.color}; }}")

    def dose_color(self, device: str, what: str) -> str:
        """The colour the bar of ``device``'s ``what`` is drawn in (for tests)."""
        return next(b.color for b in self.bars if (b.device, b.what) == (device, what))
