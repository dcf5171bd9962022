"""The participant display the console opens on a second screen: the game, the bar, the fMRI thermometer.

Qt-free parts (smoothing, score, reward flash and sound rate, the tone) are checked with numbers; the
widgets follow real LSL outlets (unique names) offscreen, and what they draw is read back from
screenshots (the rocket's height, its body colour, the gold of the reward flash). The game's animation
timer is off in these tests: each one advances it explicitly, so nothing depends on how fast it runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
import wave
from pathlib import Path

import numpy as np
import pytest

os.environ["QT_QPA_PLATFORM"] = "offscreen"
pytest.importorskip("PySide6", reason="the gui extra is not installed: pip install -e '.[gui,test]'")
pytest.importorskip("pyqtgraph", reason="the gui extra is not installed: pip install -e '.[gui,test]'")
pylsl = pytest.importorskip("pylsl")

from PySide6 import QtGui  # noqa: E402

from controller.display.game_model import DIM, GameState, reward_tone, write_wav  # noqa: E402
from controller.display.model import ThermometerState  # noqa: E402
from controller.display.qt import application  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
WAIT_MS = 30_000  # only against hangs


@pytest.fixture(scope="module")
def app():
    return application()


@pytest.fixture
def session() -> tuple[str, str]:
    """(prefix, session id) of a session of our own: outlets named ``<prefix>-<id>-<kind>``."""
    return "nrtest-participant", uuid.uuid4().hex[:8]


def outlets(prefix: str, sid: str) -> tuple[pylsl.StreamOutlet, pylsl.StreamOutlet]:
    """The session's markers and feedback outlets, laid out as drivers/lsl_outputs.py makes them."""
    base = f"{prefix}-{sid}"
    markers = pylsl.StreamOutlet(pylsl.StreamInfo(f"{base}-markers", "Markers", 1, pylsl.IRREGULAR_RATE, "string",
                                                  f"{base}-markers-src"))
    feedback = pylsl.StreamOutlet(pylsl.StreamInfo(f"{base}-feedback", "Feedback", 2, pylsl.IRREGULAR_RATE,
                                                   "double64", f"{base}-feedback-src"))
    return markers, feedback


class SoundSpy:
    """Stands in for RewardSound: counts play() calls, needs no audio device."""

    def __init__(self) -> None:
        self.calls = 0

    def play(self) -> None:
        self.calls += 1


def window(qtbot, mode: str, prefix: str, sid: str, state: ThermometerState | None = None, sound=None,
           size: tuple[int, int] = (800, 600)):
    from controller.display.participant import ParticipantWindow

    w = ParticipantWindow(mode, prefix, sid, state=state, sound=sound or SoundSpy(), animate=False)
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    return w


def connect(qtbot, markers, feedback, *windows) -> None:
    """Until every window receives both streams: a consumer on an outlet may be another window's, and
    samples pushed before an inlet subscribed never reach it. Probes are stamped long ago, before any
    block: a feedback value acquired before a block started is never shown in it."""
    old = pylsl.local_clock() - 1000.0

    def probed() -> bool:
        markers.push_sample(["probe"], old)
        feedback.push_sample([0.0, 0.0], old)
        qtbot.wait(50)
        return all(w.markers_received > 0 and w.state.feedback.updates > 0 for w in windows)

    qtbot.waitUntil(probed, timeout=WAIT_MS)


def grab(w, path: Path) -> QtGui.QImage:
    image = w.grab().toImage()
    assert image.save(str(path)), path
    assert path.stat().st_size > 2000
    return image


def pixels(image: QtGui.QImage) -> np.ndarray:
    """(h, w, 3) uint8 RGB of a grabbed image."""
    image = image.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    w, h, stride = image.width(), image.height(), image.bytesPerLine()
    raw = np.frombuffer(image.constBits(), np.uint8, count=stride * h).reshape(h, stride)
    return raw[:, : 3 * w].reshape(h, w, 3).copy()


def rocket_pixels(rgb: np.ndarray) -> int:
    """Pixels of the rocket's orange body or red fins (the night sky, stars, text and ground have none)."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return int(np.count_nonzero((r > 110) & (r > g + 40) & (b < 80)))


def gold_pixels(rgb: np.ndarray) -> int:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return int(np.count_nonzero((r > 230) & (g > 200) & (b < 140)))


def distinct_colours(rgb: np.ndarray) -> int:
    packed = rgb.astype(np.uint32)
    return len(np.unique((packed[..., 0] << 16) | (packed[..., 1] << 8) | packed[..., 2]))


# ---------------------------------------------------------------------- Qt-free model
def test_game_state_smooths_toward_the_value_and_hides_outside_feedback_blocks():
    s = GameState(smoothing_s=0.5)
    s.on_markers(["block_start:train"], [10.0])
    s.step(0.1)
    assert not s.visible and s.level == 0.0 and s.brightness == DIM  # no feedback in this block yet
    s.on_feedback(np.array([[0.8, 2.0]]), np.array([10.5]))
    s.step(0.5)  # one time constant: 1 - 1/e of the way
    assert s.visible and s.level == pytest.approx(0.8 * (1 - np.exp(-1)))
    levels = []
    for _ in range(20):
        s.step(0.1)
        levels.append(s.level)
    assert np.all(np.diff(levels) > 0) and levels[-1] == pytest.approx(0.8, abs=0.02)
    s.step(10.0)
    assert s.level == pytest.approx(0.8) and s.brightness == pytest.approx(DIM + (1 - DIM) * 0.8)
    s.on_markers(["target:0.6"], [11.0])
    assert s.reached
    s.on_feedback(np.array([[0.3, 0.5]]), np.array([12.0]))
    s.step(10.0)
    assert s.level == pytest.approx(0.3) and not s.reached
    s.on_markers(["block_end:train", "block_start:rest"], [20.0, 20.0])
    s.step(0.05)
    assert not s.visible and s.level == 0.0 and s.text == "Rest"
    unsmoothed = GameState(smoothing_s=0.0)
    unsmoothed.on_markers(["block_start:train"], [0.0])
    unsmoothed.on_feedback(np.array([[0.45, 1.0]]), np.array([1.0]))
    unsmoothed.step(0.001)
    assert unsmoothed.level == 0.45


def test_game_state_scores_rewards_flashes_and_rate_limits_the_sound():
    s = GameState(flash_s=0.6, sound_gap_s=0.5)
    s.on_markers(["block_start:train", "reward", "reward", "tms:coil"], [0.0, 1.0, 1.1, 1.2])
    assert s.score == 2 and s.flash == 1.0 and s.take_sounds() == 1  # 0.1 s apart: one chime
    assert s.take_sounds() == 0
    s.step(0.3)
    assert s.flash == pytest.approx(0.5)
    s.on_markers(["reward"], [1.4])  # 0.4 s after the last chime: counted, flashed, silent
    assert s.score == 3 and s.flash == 1.0 and s.take_sounds() == 0
    s.on_markers(["reward", "reward"], [1.6, 2.2])
    assert s.score == 5 and s.take_sounds() == 2
    s.step(1.0)
    assert s.flash == 0.0
    s.reset_score()
    assert (s.score, s.flash, s.take_sounds()) == (0, 0.0, 0)


def test_reward_tone_is_short_click_free_and_written_as_wav(tmp_path):
    rate = 22050
    tone = reward_tone(rate=rate, notes_hz=(880.0, 1318.5), note_s=0.09, amplitude=0.35)
    assert len(tone) == 2 * round(0.09 * rate)
    assert np.max(np.abs(tone)) <= 0.35 and np.max(np.abs(tone)) > 0.2
    assert abs(tone[0]) < 1e-9 and abs(tone[-1]) < 1e-9  # starts and ends at rest: no click
    spectrum = np.abs(np.fft.rfft(tone[: len(tone) // 2]))
    assert np.fft.rfftfreq(len(tone) // 2, 1 / rate)[np.argmax(spectrum)] == pytest.approx(880.0, abs=15)
    path = write_wav(tmp_path / "reward.wav", tone, rate)
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()) == (1, 2, rate, len(tone))
        pcm = np.frombuffer(wav.readframes(len(tone)), "<i2")
    assert np.abs(pcm / 32767 - tone).max() < 1e-4


def test_reward_sound_never_fails_without_audio_and_says_why_once(app):
    from controller.display.game import RewardSound

    said: list[str] = []
    sound = RewardSound(say=said.append)
    for _ in range(3):
        sound.play()  # offscreen, no audio device: still returns
    assert sound.played == 3 and sound.backend in ("qsoundeffect", "beep", "off")
    if sound.backend != "qsoundeffect":
        assert len(said) == 1 and said[0] == sound.note and "reward sound" in said[0]
    off = RewardSound(enabled=False, say=said.append)
    off.play()
    assert off.backend == "off" and off.played == 1


# ---------------------------------------------------------------------- the game over LSL
def test_game_rocket_rises_and_brightens_with_the_streamed_feedback(app, qtbot, session, tmp_path):
    prefix, sid = session
    markers, feedback = outlets(prefix, sid)
    w = window(qtbot, "game", prefix, sid)
    assert w.streams == {"markers": f"{prefix}-{sid}-markers", "feedback": f"{prefix}-{sid}-feedback"}
    connect(qtbot, markers, feedback, w)
    t = pylsl.local_clock()
    markers.push_sample(["block_start:train"], t)
    markers.push_sample(["target:0.6"], t)
    qtbot.waitUntil(lambda: w.state.target == 0.6, timeout=WAIT_MS)
    view = w.view
    ys, brightness, drawn, rockets = [], [], [], []
    for i, value in enumerate((0.2, 0.5, 0.8)):
        feedback.push_sample([value, 10 * value], t + 1 + i)
        qtbot.waitUntil(lambda v=value: w.state.value == v, timeout=WAIT_MS)
        view.advance(5.0)  # settled (smoothing 0.4 s)
        assert w.state.level == pytest.approx(value, abs=1e-4)
        c = view.object_center()
        ys.append(c.y())
        brightness.append(view.object_brightness)
        rgb = pixels(grab(w, tmp_path / f"game_{value:.1f}.png"))
        _, rh = view.rocket_size()
        body = rgb[int(c.y() + rh * 0.25), int(c.x())]  # the lower body, below the porthole
        expected = view.body_color()
        assert np.abs(body.astype(int) - [expected.red(), expected.green(), expected.blue()]).max() <= 3
        drawn.append(QtGui.QColor(*map(int, body)).valueF())
        rockets.append(rocket_pixels(rgb))
        assert w.state.reached == (value >= 0.6)
    assert ys[0] > ys[1] > ys[2]  # higher on the screen (pixel y grows downwards)
    field = view.level_to_y(0.0) - view.level_to_y(1.0)
    assert np.diff(ys) == pytest.approx([-0.3 * field, -0.3 * field], abs=0.01)  # linear in the value
    assert brightness == pytest.approx([DIM + (1 - DIM) * v for v in (0.2, 0.5, 0.8)], abs=1e-3)
    assert drawn[0] < drawn[1] < drawn[2]
    assert all(n > 500 for n in rockets)
    assert view.target_y == pytest.approx(view.level_to_y(0.6))


def test_reward_markers_score_flash_and_sound(app, qtbot, session, tmp_path):
    prefix, sid = session
    markers, feedback = outlets(prefix, sid)
    spy = SoundSpy()
    w = window(qtbot, "game", prefix, sid, sound=spy)
    connect(qtbot, markers, feedback, w)
    t = pylsl.local_clock()
    markers.push_sample(["block_start:train"], t)
    feedback.push_sample([0.5, 1.0], t + 0.5)
    qtbot.waitUntil(lambda: w.state.visible, timeout=WAIT_MS)
    w.view.advance(5.0)
    top_right = (slice(0, int(600 * 0.16)), slice(600, 800))
    assert gold_pixels(pixels(grab(w, tmp_path / "game_no_reward.png"))[top_right]) == 0
    markers.push_sample(["reward"], t + 1.0)
    markers.push_sample(["reward"], t + 1.1)  # 0.1 s after the first: scored, not sounded again
    qtbot.waitUntil(lambda: w.state.score == 2, timeout=WAIT_MS)
    assert spy.calls == 1
    markers.push_sample(["reward"], t + 2.0)
    qtbot.waitUntil(lambda: w.state.score == 3, timeout=WAIT_MS)
    assert spy.calls == 2 and w.state.flash == 1.0
    rgb = pixels(grab(w, tmp_path / "game_reward.png"))
    assert gold_pixels(rgb[top_right]) > 20  # the score, gold while the flash lasts
    assert gold_pixels(rgb) > gold_pixels(rgb[top_right]) + 100  # and the burst around the rocket
    w.view.advance(0.3)
    assert 0.0 < w.state.flash < 1.0
    w.view.advance(1.0)
    assert w.state.flash == 0.0
    assert gold_pixels(pixels(grab(w, tmp_path / "game_after_reward.png"))[top_right]) == 0


def test_outside_feedback_blocks_the_rocket_hides_like_the_bar(app, qtbot, session, tmp_path):
    prefix, sid = session
    markers, feedback = outlets(prefix, sid)
    blocks = frozenset({"train"})
    game = window(qtbot, "game", prefix, sid, state=ThermometerState(feedback_blocks=blocks))
    bar = window(qtbot, "bar", prefix, sid, state=ThermometerState(feedback_blocks=blocks))
    connect(qtbot, markers, feedback, game, bar)
    t = pylsl.local_clock()
    markers.push_sample(["block_start:rest"], t)
    feedback.push_sample([0.9, 2.0], t + 1)  # a value in a block without feedback: not shown
    for w in (game, bar):
        qtbot.waitUntil(lambda w=w: w.state.feedback.block == "rest" and w.state.feedback.raw == 2.0,
                        timeout=WAIT_MS)
    game.view.advance(1.0)
    assert not game.view.object_visible and game.state.level == 0.0 and game.state.text == "Rest"
    assert not bar.view.graphics.isVisible() and bar.view.label.text() == "Rest"
    assert rocket_pixels(pixels(grab(game, tmp_path / "game_rest.png"))) == 0

    markers.push_sample(["block_end:rest"], t + 10)
    markers.push_sample(["block_start:train"], t + 10)
    feedback.push_sample([0.7, 1.5], t + 11)
    for w in (game, bar):
        qtbot.waitUntil(lambda w=w: w.state.feedback.block == "train" and w.state.feedback.value == 0.7,
                        timeout=WAIT_MS)
    game.view.advance(5.0)
    bar.refresh()
    assert game.view.object_visible and game.state.level == pytest.approx(0.7, abs=1e-4)
    assert bar.view.graphics.isVisible() and bar.view.bar_level == pytest.approx(0.7)
    assert rocket_pixels(pixels(grab(game, tmp_path / "game_train.png"))) > 500

    markers.push_sample(["block_end:train"], t + 20)
    markers.push_sample(["block_start:rest"], t + 20)
    for w in (game, bar):
        qtbot.waitUntil(lambda w=w: w.state.feedback.block == "rest", timeout=WAIT_MS)
    game.view.advance(0.05)
    bar.refresh()
    assert not game.view.object_visible and game.state.level == 0.0
    assert not bar.view.graphics.isVisible()
    assert rocket_pixels(pixels(grab(game, tmp_path / "game_rest_again.png"))) == 0


def test_bar_mode_shows_the_thermometer_with_the_score(app, qtbot, session, tmp_path):
    prefix, sid = session
    markers, feedback = outlets(prefix, sid)
    spy = SoundSpy()
    w = window(qtbot, "bar", prefix, sid, state=ThermometerState(target=0.6), sound=spy, size=(800, 900))
    fmri = window(qtbot, "fmri-thermometer", prefix, sid, sound=SoundSpy())
    connect(qtbot, markers, feedback, w, fmri)
    t = pylsl.local_clock()
    markers.push_sample(["block_start:train"], t)
    feedback.push_sample([0.72, 1.44], t + 1)
    markers.push_sample(["reward"], t + 1)
    qtbot.waitUntil(lambda: w.state.score == 1 and w.state.feedback.value == 0.72, timeout=WAIT_MS)
    assert w.view.bar_level == pytest.approx(0.72) and w.view.target_level == pytest.approx(0.6)
    assert w.score_label is not None and w.score_label.text() == "\u2605 1" and spy.calls == 1
    assert w.view.label.text() == "Raise the bar"
    rgb = pixels(grab(w, tmp_path / "bar.png"))
    fill = np.count_nonzero(np.all(rgb == [0x2F, 0xD2, 0x6B], axis=-1))  # FILL_REACHED: 0.72 >= 0.6
    assert fill > 0.05 * rgb.shape[0] * rgb.shape[1] and distinct_colours(rgb) > 10
    qtbot.waitUntil(lambda: fmri.state.feedback.value == 0.72, timeout=WAIT_MS)
    assert fmri.score_label is None and fmri.view.bar_level == pytest.approx(0.72)
    rgb = pixels(grab(fmri, tmp_path / "fmri_thermometer.png"))
    assert distinct_colours(rgb) > 10


def test_follow_moves_to_the_next_session_and_starts_the_score_again(app, qtbot, session):
    prefix, sid = session
    markers, feedback = outlets(prefix, sid)
    w = window(qtbot, "game", prefix, sid, state=ThermometerState(target=0.6))
    connect(qtbot, markers, feedback, w)
    t = pylsl.local_clock()
    markers.push_sample(["block_start:train"], t)
    feedback.push_sample([0.8, 1.0], t + 1)
    markers.push_sample(["reward"], t + 1)
    qtbot.waitUntil(lambda: w.state.score == 1 and w.state.visible, timeout=WAIT_MS)
    nxt = uuid.uuid4().hex[:8]
    markers2, feedback2 = outlets(prefix, nxt)
    w.follow(prefix, nxt)
    assert w.streams["feedback"] == f"{prefix}-{nxt}-feedback"
    assert w.state.score == 0 and not w.state.visible and w.state.target == 0.6  # the options stay
    w.markers_received = 0
    connect(qtbot, markers2, feedback2, w)
    qtbot.waitUntil(lambda: not markers.have_consumers() and not feedback.have_consumers(),  # left behind
                    timeout=WAIT_MS)
    t = pylsl.local_clock()
    markers2.push_sample(["block_start:train"], t)
    feedback2.push_sample([0.3, 0.6], t + 1)
    markers2.push_sample(["reward"], t + 1)
    qtbot.waitUntil(lambda: w.state.score == 1 and w.state.value == 0.3, timeout=WAIT_MS)


def test_mid_value_game_screenshot_for_the_docs(app, qtbot, tmp_path):
    """The documentation's picture (docs/img/console_participant_game.png) comes from ``demo``:
    ``python -m controller.display.participant docs/img/console_participant_game.png``."""
    from controller.display.participant import demo

    w = demo("game", value=0.55, score=12)
    qtbot.addWidget(w)
    w.show()
    rgb = pixels(grab(w, tmp_path / "console_participant_game.png"))
    assert w.state.level == pytest.approx(0.55, abs=1e-3) and w.state.score == 12
    assert rocket_pixels(rgb) > 500 and distinct_colours(rgb) > 100
    assert (ROOT / "docs" / "img" / "console_participant_game.png").stat().st_size > 10_000


# ---------------------------------------------------------------------- modes and screens
def test_screen_choice_places_the_window_or_says_which_screens_exist(app, qtbot):
    from controller.display.participant import ParticipantWindow, ScreenChoiceError, describe_screens

    with pytest.raises(ValueError, match="mode 'pong': expected one of bar, game, fmri-thermometer"):
        ParticipantWindow("pong", prefix=None)
    w = ParticipantWindow("game", prefix=None, sound=SoundSpy(), animate=False)
    qtbot.addWidget(w)
    assert w.poller is None and w.streams == {}
    screens = QtGui.QGuiApplication.screens()
    n = len(screens)
    with pytest.raises(ScreenChoiceError, match=rf"screen {n}: there (is|are) {n} screens?, numbered from 0") as err:
        w.show_on(n, fullscreen=True)
    assert describe_screens()[0] in str(err.value) and describe_screens()[0].startswith("0: ")
    with pytest.raises(ScreenChoiceError, match="screen -1"):
        w.show_on(-1, fullscreen=False)
    assert not w.isVisible()
    w.resize(640, 480)
    assert w.show_on(0, fullscreen=False) is screens[0]
    assert w.isVisible() and not w.isFullScreen() and w.screen() is screens[0]
    assert screens[0].availableGeometry().contains(w.geometry().center())
    assert w.show_on(n - 1, fullscreen=True) is screens[n - 1]
    assert w.isFullScreen() and w.screen() is screens[n - 1]
    qtbot.waitUntil(lambda: w.size() == screens[n - 1].geometry().size(), timeout=WAIT_MS)


def test_cli_offers_the_game_with_the_thermometer_options():
    import argparse

    from controller.display import cli

    assert "game" in cli.WHICH
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["game", "--target", "0.4", "--feedback-blocks", "train"])
    state = cli._thermometer_state(args)
    assert state.target == 0.4 and state.feedback_blocks == frozenset({"train"})


@pytest.mark.slow
def test_cli_game_runs_in_its_own_process(session, tmp_path):
    prefix, sid = session
    markers, feedback = outlets(prefix, sid)
    png = tmp_path / "cli_game.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "display", "game", "--prefix", prefix, "--session", sid,
         "--target", "0.5", "--size", "640x480", "--quit-after", "6", "--screenshot", str(png)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert markers.wait_for_consumers(30) and feedback.wait_for_consumers(30), "the display never connected"
        markers.push_sample(["block_start:train"])
        feedback.push_sample([0.8, 1.0])
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"following {prefix}-{sid}-*" in err
    rgb = pixels(QtGui.QImage(str(png)))
    assert rgb.shape[:2] == (480, 640) and rocket_pixels(rgb) > 100
