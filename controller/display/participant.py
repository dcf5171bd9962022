"""The participant's window the console opens on a second screen: the EEG bar, the EEG game, or
the fMRI thermometer, following one session's ``-feedback`` and ``-markers`` outlets.

    python -m controller.display.participant docs/img/console_participant_game.png

writes a screenshot of the game at a mid feedback value (the documentation's picture).

Modes: ``bar`` (the thermometer, with the score of rewards and the reward sound: EEG),
``game`` (``game.GameView``: a rocket that rises and brightens, EEG) and ``fmri-thermometer``
(the existing thermometer, silent: a chime is inaudible in the scanner and the bar is the
protocol's feedback). All three read one ``GameState`` (around a ``ThermometerState``), so the
blocks that show feedback, the instructions and the target line are the same in every mode.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from controller.display.game import GameView, RewardSound
from controller.display.game_model import GameState
from controller.display.markers import DEFAULT_INSTRUCTIONS
from controller.display.model import ThermometerState
from controller.display.qt import LslPoller
from controller.display.thermometer import ThermometerView

MODES = ("bar", "game", "fmri-thermometer")


class ScreenChoiceError(ValueError):
    """A screen index that does not exist; the message lists the screens there are."""


def stream_base(prefix: str, session: str | None = None) -> str:
    """The outlets' common name start: ``<prefix>-<session>`` (``<prefix>`` alone without an id),
    as ``controller.inputs.lsl.sessions.choose_session`` names a session's outlets."""
    return f"{prefix}-{session}" if session else prefix


def describe_screens() -> list[str]:
    """One line per screen, in ``QGuiApplication.screens()`` order: ``0: name 1920x1080 at (0, 0)``."""
    lines = []
    for i, screen in enumerate(QtGui.QGuiApplication.screens()):
        g = screen.geometry()
        lines.append(f"{i}: {screen.name() or 'screen'} {g.width()}x{g.height()} at ({g.x()}, {g.y()})")
    return lines


class ParticipantWindow(QtWidgets.QWidget):
    """The participant's display in one of ``MODES``.

    ``prefix``/``session`` name the session followed (``stream_base``); ``prefix=None`` follows
    nothing (the state is fed directly: screenshots). ``state`` carries the thermometer options
    (instructions, feedback blocks, target; ``cli._thermometer_state`` builds it from a protocol
    run). ``sound``: default a ``RewardSound`` (off in ``fmri-thermometer``).
    """

    def __init__(self, mode: str = "game", prefix: str | None = "neuroreflex", session: str | None = None, *,
                 state: ThermometerState | None = None, sound: RewardSound | None = None,
                 smoothing_s: float = 0.4, animate: bool = True,
                 parent: QtWidgets.QWidget | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"participant display mode {mode!r}: expected one of {', '.join(MODES)}")
        super().__init__(parent)
        self.mode = mode
        self.state = GameState(feedback=state or ThermometerState(), smoothing_s=smoothing_s)
        self.sound = sound if sound is not None else RewardSound(enabled=mode != "fmri-thermometer")
        self.setWindowTitle("neuroreflex - feedback")
        self.setAutoFillBackground(True)
        palette = self.palette()
        palette.setColor(QtGui.QPalette.ColorRole.Window, QtGui.QColor("black"))
        self.setPalette(palette)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.score_label: QtWidgets.QLabel | None = None
        self.view: GameView | ThermometerView
        if mode == "game":
            self.view = GameView(self.state, self, animate=animate)
        else:
            if mode == "bar":  # the thermometer has no score of its own: a line above it
                self.score_label = QtWidgets.QLabel("", self)
                self.score_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight)
                self.score_label.setStyleSheet("color: white; background: black; font-weight: bold;"
                                               "padding: 8px 16px 0 0;")
                layout.addWidget(self.score_label)
            self.view = ThermometerView(self.state.feedback, self)
        layout.addWidget(self.view, 1)

        self.markers_received = 0  # marker strings received in total (feedback values: state.feedback.updates)
        self.streams: dict[str, str] = {}
        self.poller: LslPoller | None = None
        if prefix is not None:
            self.follow(prefix, session)
        self.refresh()

    # ------------------------------------------------------------------ following a session
    def follow(self, prefix: str, session: str | None = None) -> None:
        """Follow another session's outlets (the console moved on to the next run): the score,
        the block and the feedback value start again; the thermometer options stay."""
        if self.poller is not None:
            self.poller.stop()
            self.poller.deleteLater()
            self._restart()
        base = stream_base(prefix, session)
        self.streams = {"markers": f"{base}-markers", "feedback": f"{base}-feedback"}
        self.poller = LslPoller(
            {self.streams["markers"]: self.on_markers, self.streams["feedback"]: self.on_feedback},
            on_switch=self._switched,
            after_poll=lambda got: got and self.refresh(),
            parent=self,
        )

    def _restart(self) -> None:
        fb = self.state.feedback
        fresh = ThermometerState(instructions=fb.instructions, feedback_blocks=fb.feedback_blocks, target=fb.target,
                                 target_threshold=fb.target_threshold, feedback_range=fb.feedback_range)
        self.state.feedback = fresh
        if isinstance(self.view, ThermometerView):
            self.view.state = fresh
        self.state.reset_score()
        self.state.level = 0.0

    def _switched(self, name: str) -> None:
        if name == self.streams.get("markers"):  # the same session's outlets again: it was restarted
            self.state.reset_score()

    def on_markers(self, texts: list[str], stamps: np.ndarray | None = None) -> None:
        """Marker strings (blocks, targets, ``reward``); plays the reward sound when one is due."""
        self.markers_received += len(texts)
        self.state.on_markers(texts, stamps)
        if self.state.take_sounds():
            self.sound.play()

    def join_block(self, label: str) -> None:
        """Opened mid-session: the block running now (its start marker went out before this window listened),
        so the participant sees its instruction at once rather than a black screen until the next block."""
        import pylsl

        self.on_markers([f"block_start:{label}"], np.array([pylsl.local_clock()]))

    def on_feedback(self, rows: np.ndarray, stamps: np.ndarray | None = None) -> None:
        """Feedback rows (value 0..1, raw feature value)."""
        self.state.on_feedback(rows, stamps)

    def refresh(self) -> None:
        self.view.refresh()
        if self.score_label is not None:
            self.score_label.setText(f"\u2605 {self.state.score}")
            font = self.score_label.font()
            font.setPixelSize(max(14, int(self.height() * 0.05)))
            self.score_label.setFont(font)

    # ------------------------------------------------------------------ placing it
    def show_on(self, screen_index: int, fullscreen: bool = True) -> QtGui.QScreen:
        """Show the window on screen ``screen_index`` of ``QGuiApplication.screens()`` (the
        projector is usually 1), full screen or centred there; ScreenChoiceError for an index that
        does not exist."""
        screens = QtGui.QGuiApplication.screens()
        if not 0 <= screen_index < len(screens):
            listing = "\n  ".join(describe_screens()) or "(none)"
            raise ScreenChoiceError(f"screen {screen_index}: there {'is' if len(screens) == 1 else 'are'} "
                                    f"{len(screens)} screen{'' if len(screens) == 1 else 's'}, numbered from 0:"
                                    f"\n  {listing}")
        screen = screens[screen_index]
        self.setScreen(screen)
        if fullscreen:
            self.setGeometry(screen.geometry())
            self.showFullScreen()
        else:
            area = screen.availableGeometry()
            size = self.size().boundedTo(area.size())
            self.resize(size)
            frame = QtCore.QRect(QtCore.QPoint(0, 0), size)
            frame.moveCenter(area.center())
            self.move(frame.topLeft())
            self.showNormal()
        self.refresh()
        return screen

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        if self.score_label is not None:
            self.refresh()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802
        if self.poller is not None:
            self.poller.stop()
        if isinstance(self.view, GameView):
            self.view.timer.stop()
        super().closeEvent(event)


def demo(mode: str = "game", value: float = 0.55, score: int = 12, size: tuple[int, int] = (1024, 768),
         target: float = 0.7) -> ParticipantWindow:
    """A window in a feedback block at ``value`` (settled), without LSL: for screenshots."""
    instructions = {**DEFAULT_INSTRUCTIONS, "train": "Make the rocket climb" if mode == "game" else "Raise the bar"}
    window = ParticipantWindow(mode, prefix=None, state=ThermometerState(instructions=instructions, target=target),
                               sound=RewardSound(enabled=False), animate=False)
    window.resize(*size)
    window.on_markers(["block_start:train"], np.array([0.0]))
    window.on_feedback(np.array([[value, value]]), np.array([1.0]))
    window.state.score = score
    if isinstance(window.view, GameView):
        window.view.advance(10 * window.state.smoothing_s)  # settled at the value
    window.refresh()
    return window


if __name__ == "__main__":  # python -m controller.display.participant OUT.png [bar|game|fmri-thermometer]
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from controller.display.qt import application

    app = application()
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "console_participant_game.png")
    w = demo(sys.argv[2] if len(sys.argv) > 2 else "game")
    w.show()
    app.processEvents()
    out.parent.mkdir(parents=True, exist_ok=True)
    sys.exit(0 if w.grab().save(str(out)) else 1)
