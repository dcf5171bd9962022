"""The participant's game: a rocket over a night sky that rises and brightens with the feedback,
a target line to reach, a score of rewards, a short burst and a chime at each reward.

A plain QPainter scene (no pyqtgraph): a few shapes redrawn at ~30 frames a second from a
``GameState``. Outside feedback blocks the rocket and the target are hidden and the block's
instruction fills the screen, as with the thermometer.

``RewardSound`` plays the chime. PySide6-Essentials has no QtMultimedia, so there it falls back
to the system beep; with QtMultimedia (the full PySide6) it plays a generated WAV through
QSoundEffect. Either way a missing audio device never stops the display: it is said once.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from controller.display.game_model import GameState, reward_tone, write_wav

FRAME_MS = 33
SKY_TOP, SKY_BOTTOM = "#040818", "#16224f"
GROUND = "#1c3320"
TARGET = "#ffd400"  # as the thermometer's target line
REACHED = "#2fd26b"  # as the thermometer's fill at the target
BODY_HUE, BODY_SAT = 0.07, 0.9  # orange
TEXT_BAND, GROUND_BAND = 0.16, 0.08  # fractions of the height: instruction text on top, ground below
ROCKET_H = 0.17  # of the play field's height
_STARS = np.random.default_rng(11).random((60, 3))  # x, y (fractions of the sky), size


class RewardSound:
    """Plays the reward chime without ever blocking or raising.

    ``backend`` is ``"qsoundeffect"`` (QtMultimedia, a generated WAV), ``"beep"`` (the platform's
    beep: PySide6-Essentials) or ``"off"`` (disabled, or the audio failed); ``note`` says why the
    chime is not the WAV, once, through ``say`` (default: stderr). ``played`` counts calls.
    """

    def __init__(self, enabled: bool = True, volume: float = 0.6,
                 say: Callable[[str], object] | None = None) -> None:
        self.say = say or (lambda text: print(f"neuroreflex display: {text}", file=sys.stderr))
        self.played = 0
        self.note: str | None = None
        self._effect = None
        self._dir: tempfile.TemporaryDirectory | None = None
        if not enabled:
            self.backend = "off"
            return
        self.backend = "beep"
        try:
            from PySide6 import QtMultimedia  # type: ignore[attr-defined]  # not in PySide6-Essentials
        except ImportError:
            self._tell("reward sound: QtMultimedia is not installed (PySide6-Essentials); using the system beep")
            return
        try:
            if not QtMultimedia.QMediaDevices.audioOutputs():
                self._tell("reward sound: no audio output device; using the system beep")
                return
            self._dir = tempfile.TemporaryDirectory(prefix="neuroreflex-sound-")
            wav = write_wav(Path(self._dir.name) / "reward.wav", reward_tone())
            effect = QtMultimedia.QSoundEffect()
            effect.setSource(QtCore.QUrl.fromLocalFile(str(wav)))
            effect.setVolume(float(np.clip(volume, 0.0, 1.0)))
            self._effect, self.backend = effect, "qsoundeffect"
        except Exception as exc:  # a broken audio stack: fall back, say it once
            self._tell(f"reward sound: audio unavailable ({exc}); using the system beep")

    def _tell(self, text: str) -> None:
        if self.note is None:
            self.note = text
            self.say(text)

    def play(self) -> None:
        """Start the chime and return at once (QSoundEffect and beep are asynchronous)."""
        self.played += 1
        if self.backend == "off":
            return
        try:
            if self._effect is not None:
                self._effect.play()
            else:
                QtWidgets.QApplication.beep()
        except Exception as exc:  # never let the sound take the display down
            self.backend = "off"
            self._tell(f"reward sound off: {exc}")


class GameView(QtWidgets.QWidget):
    """Renders a ``GameState``; its timer advances the animation (``advance(dt)``) and repaints."""

    def __init__(self, state: GameState, parent: QtWidgets.QWidget | None = None,
                 animate: bool = True) -> None:
        super().__init__(parent)
        self.state = state
        self.setWindowTitle("neuroreflex - feedback")
        self.setMinimumSize(320, 240)
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._clock = QtCore.QElapsedTimer()
        self._clock.start()
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(FRAME_MS)
        self.timer.timeout.connect(self._frame)
        if animate:
            self.timer.start()

    # ------------------------------------------------------------------ animation
    def _frame(self) -> None:
        self.advance(self._clock.restart() / 1000.0)

    def advance(self, dt_s: float) -> None:
        """Step the state by ``dt_s`` seconds and repaint (tests and screenshots call it directly)."""
        self.state.step(dt_s)
        self.update()

    def refresh(self) -> None:
        self.update()

    # ------------------------------------------------------------------ geometry (widget pixels)
    def _field(self) -> QtCore.QRectF:
        """The play field: below the instruction band, above the ground."""
        h, w = float(self.height()), float(self.width())
        top = h * TEXT_BAND
        return QtCore.QRectF(0.0, top, w, h * (1.0 - GROUND_BAND) - top)

    def rocket_size(self) -> tuple[float, float]:
        field = self._field()
        height = field.height() * ROCKET_H
        return height * 0.42, height

    def level_to_y(self, level: float) -> float:
        """The y (pixels) of the rocket's centre at ``level`` (0: on the ground, 1: at the top)."""
        field = self._field()
        _, rh = self.rocket_size()
        return field.bottom() - rh / 2 - level * (field.height() - rh)

    def object_center(self) -> QtCore.QPointF:
        """Where the rocket's centre is drawn now."""
        return QtCore.QPointF(self.width() / 2, self.level_to_y(self.state.level))

    @property
    def object_visible(self) -> bool:
        return self.state.visible

    def body_color(self) -> QtGui.QColor:
        """The rocket body's colour: brighter the higher it flies, whiter during a reward flash."""
        s = self.state
        return QtGui.QColor.fromHsvF(BODY_HUE, BODY_SAT * (1.0 - 0.5 * s.flash), s.brightness)

    @property
    def object_brightness(self) -> float:
        return self.body_color().valueF()

    @property
    def target_y(self) -> float | None:
        t = self.state.target
        return None if t is None or not self.state.visible else self.level_to_y(t)

    # ------------------------------------------------------------------ painting
    def paintEvent(self, event: QtGui.QPaintEvent) -> None:  # noqa: N802 (Qt's name)
        p = QtGui.QPainter(self)
        try:
            p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
            if self.state.visible:
                self._sky(p)
                self._target(p)
                self._rocket(p)
                self._burst(p)
                band = QtCore.QRectF(self.width() * 0.15, 0, self.width() * 0.7, self.height() * TEXT_BAND)
                self._text(p, band, 0.06)  # clear of the score on the right
            else:
                p.fillRect(self.rect(), QtGui.QColor("black"))
                self._text(p, QtCore.QRectF(self.rect()), 0.1)
            self._score(p)
        finally:
            p.end()

    def _sky(self, p: QtGui.QPainter) -> None:
        w, h = float(self.width()), float(self.height())
        sky = QtGui.QLinearGradient(0, 0, 0, h)
        sky.setColorAt(0.0, QtGui.QColor(SKY_TOP))
        sky.setColorAt(1.0, QtGui.QColor(SKY_BOTTOM))
        p.fillRect(self.rect(), sky)
        p.setPen(QtCore.Qt.PenStyle.NoPen)
        p.setBrush(QtGui.QColor(220, 225, 255, 170))
        field = self._field()
        r = max(1.0, h / 400)
        for x, y, size in _STARS:
            p.drawEllipse(QtCore.QPointF(x * w, field.top() + y * field.height() * 0.9), r * (0.6 + size),
                          r * (0.6 + size))
        p.fillRect(QtCore.QRectF(0, field.bottom(), w, h - field.bottom()), QtGui.QColor(GROUND))

    def _target(self, p: QtGui.QPainter) -> None:
        y = self.target_y
        if y is None:
            return
        color = QtGui.QColor(REACHED if self.state.reached else TARGET)
        pen = QtGui.QPen(color, max(3.0, self.height() / 130), QtCore.Qt.PenStyle.DashLine)
        p.setPen(pen)
        p.drawLine(QtCore.QPointF(self.width() * 0.12, y), QtCore.QPointF(self.width() * 0.88, y))

    def _rocket(self, p: QtGui.QPainter) -> None:
        s = self.state
        c = self.object_center()
        rw, rh = self.rocket_size()
        x0, top, bottom = c.x() - rw / 2, c.y() - rh / 2, c.y() + rh / 2
        # glow: a halo that grows with the level and the reward flash
        glow = min(1.0, 0.15 + 0.6 * s.level + 0.5 * s.flash)
        halo = QtGui.QRadialGradient(c, rh * 1.1)
        halo.setColorAt(0.0, QtGui.QColor.fromHsvF(BODY_HUE, 0.6, 1.0, 0.55 * glow))
        halo.setColorAt(1.0, QtGui.QColor(0, 0, 0, 0))
        p.setPen(QtCore.Qt.PenStyle.NoPen)
        p.setBrush(halo)
        p.drawEllipse(c, rh * 1.1, rh * 1.1)
        # flame: longer the higher (the rocket works harder), flickering a little
        flame_len = rh * (0.25 + 0.45 * s.level) * (1.0 + 0.12 * np.sin(s.phase * 31.0))
        flame = QtGui.QPolygonF([QtCore.QPointF(x0 + rw * 0.2, bottom - rh * 0.05),
                                 QtCore.QPointF(c.x(), bottom + flame_len),
                                 QtCore.QPointF(x0 + rw * 0.8, bottom - rh * 0.05)])
        p.setBrush(QtGui.QColor(255, 200, 60, int(120 + 135 * s.brightness)))
        p.drawPolygon(flame)
        # fins, body, nose, window
        fins = QtGui.QColor.fromHsvF(0.0, 0.8, 0.4 + 0.5 * s.brightness)
        p.setBrush(fins)
        for side in (-1, 1):
            edge = c.x() + side * rw / 2
            p.drawPolygon(QtGui.QPolygonF([QtCore.QPointF(edge, bottom - rh * 0.35),
                                           QtCore.QPointF(edge + side * rw * 0.45, bottom),
                                           QtCore.QPointF(edge, bottom)]))
        body = QtCore.QRectF(x0, top + rh * 0.22, rw, rh * 0.78)
        p.setBrush(self.body_color())
        p.drawRoundedRect(body, rw * 0.25, rw * 0.25)
        p.setBrush(fins)
        p.drawPolygon(QtGui.QPolygonF([QtCore.QPointF(x0, top + rh * 0.26), QtCore.QPointF(c.x(), top),
                                       QtCore.QPointF(x0 + rw, top + rh * 0.26)]))
        p.setBrush(QtGui.QColor.fromHsvF(0.55, 0.5, 0.5 + 0.5 * s.brightness))
        p.drawEllipse(QtCore.QPointF(c.x(), top + rh * 0.42), rw * 0.2, rw * 0.2)

    def _burst(self, p: QtGui.QPainter) -> None:
        """The reward animation: a ring and sparks flying out from the rocket while the flash fades."""
        f = self.state.flash
        if f <= 0.0:
            return
        c = self.object_center()
        _, rh = self.rocket_size()
        spread = 1.0 - f
        radius = rh * (0.6 + 0.9 * spread)
        gold = QtGui.QColor(255, 230, 90, int(255 * f))
        p.setPen(QtGui.QPen(gold, max(2.0, rh / 25)))
        p.setBrush(QtCore.Qt.BrushStyle.NoBrush)
        p.drawEllipse(c, radius, radius)
        p.setPen(QtCore.Qt.PenStyle.NoPen)
        p.setBrush(gold)
        angles = np.linspace(0.0, 2 * np.pi, 10, endpoint=False) + 0.3
        xs = c.x() + np.cos(angles) * radius * 1.2
        ys = c.y() + np.sin(angles) * radius * 1.2
        for x, y in zip(xs, ys):
            p.drawEllipse(QtCore.QPointF(x, y), rh / 22, rh / 22)

    def _text(self, p: QtGui.QPainter, rect: QtCore.QRectF, size: float) -> None:
        font = QtGui.QFont(self.font())
        font.setPixelSize(max(16, int(self.height() * size)))
        font.setBold(True)
        p.setFont(font)
        p.setPen(QtGui.QColor("white"))
        p.drawText(rect.adjusted(20, 10, -20, -10),
                   int(QtCore.Qt.AlignmentFlag.AlignCenter | QtCore.Qt.TextFlag.TextWordWrap), self.state.text)

    def _score(self, p: QtGui.QPainter) -> None:
        """The score, top right; it swells and turns gold for a moment at each reward."""
        f = self.state.flash
        font = QtGui.QFont(self.font())
        font.setPixelSize(max(14, int(self.height() * 0.05 * (1.0 + 0.3 * f))))
        font.setBold(True)
        p.setFont(font)
        p.setPen(QtGui.QColor(255, 230, 90) if f > 0 else QtGui.QColor("white"))
        rect = QtCore.QRectF(0, 10, self.width() - 18, self.height() * TEXT_BAND)
        p.drawText(rect, int(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignTop),
                   f"\u2605 {self.state.score}")
