"""The Qt displays (thermometer, operator fMRI panel) fed by real LSL outlets, offscreen.

Widget state is asserted (bar level, text, target, points drawn, missing volumes) and every test
saves a screenshot PNG under pytest's tmp dir. Needs the `gui` extra (pyqtgraph, PySide6).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

os.environ["QT_QPA_PLATFORM"] = "offscreen"
pytest.importorskip("PySide6", reason="the gui extra is not installed: pip install -e '.[gui,test]'")
pytest.importorskip("pyqtgraph", reason="the gui extra is not installed: pip install -e '.[gui,test]'")
pylsl = pytest.importorskip("pylsl")
pytestmark = pytest.mark.lsl

from PySide6 import QtCore, QtGui  # noqa: E402

from controller.display.markers import instruction_for, parse_instructions, parse_marker  # noqa: E402
from controller.display.model import QC_CHANNELS, PanelState, ThermometerState  # noqa: E402
from controller.display.qt import application  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
TR = 2.0


@pytest.fixture(scope="module")
def app():
    return application()


@pytest.fixture
def prefix() -> str:
    return f"nrtest-display-{uuid.uuid4().hex[:8]}"


def outlet(name: str, kind: str, channels: int, fmt: str) -> pylsl.StreamOutlet:
    info = pylsl.StreamInfo(name, kind, channels, pylsl.IRREGULAR_RATE, fmt, f"{name}-src")
    return pylsl.StreamOutlet(info)


def qc_outlet(prefix: str) -> pylsl.StreamOutlet:
    """The QC stream exactly as the controller publishes it (type QC, float64, irregular)."""
    info = pylsl.StreamInfo(f"{prefix}-fmri-qc", "QC", len(QC_CHANNELS), pylsl.IRREGULAR_RATE, "double64",
                            f"{prefix}-fmri-qc-src")
    chans = info.desc().append_child("channels")
    for label in QC_CHANNELS:
        chans.append_child("channel").append_child_value("label", label)
    return pylsl.StreamOutlet(info)


def pump(app, done, what: str, timeout_s: float = 30.0) -> None:
    """Run Qt's event loop (the displays' pull timers) until ``done()``; the timeout only avoids hangs."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.005)


def connected(app, outlets) -> None:
    pump(app, lambda: all(o.have_consumers() for o in outlets), "the display's inlets to connect")


def snapshot(widget, path: Path) -> QtGui.QImage:
    image = widget.grab().toImage()
    assert image.save(str(path)), path
    assert path.stat().st_size > 1000
    return image


def colour_at(view, widget, image: QtGui.QImage, x: float, y: float) -> QtGui.QColor:
    """The colour drawn at view coordinates (x, y) of a thermometer."""
    device = view.mapViewToDevice(QtCore.QPointF(x, y))
    p = widget.graphics.mapTo(widget, QtCore.QPoint(int(device.x()), int(device.y())))
    return image.pixelColor(p.x(), p.y())


# ---------------------------------------------------------------------- markers and state (no Qt)
def test_markers_parse_block_edges_targets_and_ignore_the_rest():
    assert parse_marker("block_start:happy") == parse_marker("block_start:happy")
    m = parse_marker("block_start:happy_transfer")
    assert (m.kind, m.label) == ("block_start", "happy_transfer")
    assert parse_marker("block_end:rest").kind == "block_end"
    assert parse_marker("target:0.65").value == 0.65
    m = parse_marker("threshold:goal=1.25")
    assert (m.kind, m.label, m.value) == ("threshold", "goal", 1.25)
    for other in ("reward", "tms:coil", "target:high", "threshold:goal", "threshold:goal=x"):
        assert parse_marker(other).kind == "other", other


def test_instructions_map_labels_with_defaults_stems_and_options():
    table = parse_instructions(["happy=Think of a holiday", "look=Look at the cross"])
    assert instruction_for("happy", table) == "Think of a holiday"
    assert instruction_for("Happy_transfer", table) == "Think of a holiday"
    assert instruction_for("count", table) == "Count backwards from 300 by 7"
    assert instruction_for("rest", table) == "Rest"
    assert instruction_for("mind_wandering", table) == "Mind wandering"
    assert instruction_for(None, table) == ""
    with pytest.raises(ValueError, match="--instruction 'happy': expected LABEL=TEXT"):
        parse_instructions(["happy"])


def test_thermometer_state_bar_only_in_feedback_blocks_and_not_from_the_previous_block():
    s = ThermometerState()
    s.on_markers(["block_start:happy"], [100.0])
    assert s.text == "Recall a happy memory" and not s.bar_visible  # no feedback yet in this block
    s.on_feedback(np.array([[0.4, 0.8]]), np.array([102.0]))
    assert s.bar_visible and s.value == 0.4
    s.on_markers(["block_end:happy", "block_start:rest"], [140.0, 140.0])
    s.on_feedback(np.array([[0.9, 1.8]]), np.array([139.5]))  # acquired in happy, arrives in rest
    assert s.text == "Rest" and not s.bar_visible and s.value is None
    # the feedback link can be faster than the marker link: a value acquired after the next block began,
    # arriving before that block's start marker, is the new block's (the bar shows at once, not a TR later)
    s.on_feedback(np.array([[0.7, 1.4]]), np.array([182.0]))
    s.on_markers(["block_end:rest", "block_start:happy"], [180.0, 180.0])
    assert s.text == "Recall a happy memory" and s.bar_visible and s.value == 0.7
    fixed = ThermometerState(feedback_blocks=frozenset({"happy"}), target_threshold="goal", feedback_range=(0.0, 2.0))
    fixed.on_markers(["block_start:happy", "threshold:goal=1.5", "threshold:other=0.1"], [0.0, 0.0, 0.0])
    assert fixed.bar_visible and fixed.target == 0.75


def test_thermometer_options_from_a_protocol_run():
    """The target rises from run to run (the run's fixed threshold on the feedback range); the
    transfer run shows no bar."""
    import argparse

    from controller.display import cli

    path = ROOT / "protocols" / "amygdala_mdd.yaml"
    if not path.exists():
        pytest.skip(f"{path} not present")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    targets = []
    for run in ("nf1", "nf2", "nf3"):
        s = cli._thermometer_state(parser.parse_args(["thermometer", "--protocol", str(path), "--run", run]))
        assert s.feedback_blocks == frozenset({"happy"}) and s.target_threshold == "target"
        targets.append(s.target)
    assert targets == sorted(targets) and len(set(targets)) == 3
    s = cli._thermometer_state(parser.parse_args(["thermometer", "--protocol", str(path), "--run", "transfer"]))
    s.on_markers(["block_start:happy"], [0.0])
    s.on_feedback(np.array([[0.5, 1.0]]), np.array([1.0]))
    assert s.text == "Recall a happy memory" and not s.bar_visible
    with pytest.raises(ValueError, match="has no run 'nine'"):
        cli._thermometer_state(parser.parse_args(["thermometer", "--protocol", str(path), "--run", "nine"]))


# ---------------------------------------------------------------------- thermometer over LSL
def test_thermometer_follows_markers_and_feedback(app, prefix, tmp_path):
    from controller.display.thermometer import BAR_W, BAR_X, FILL_REACHED, LslThermometer

    markers = outlet(f"{prefix}-markers", "Markers", 1, "string")
    feedback = outlet(f"{prefix}-feedback", "Feedback", 2, "double64")
    w = LslThermometer(prefix)
    w.resize(800, 900)
    w.show()
    try:
        connected(app, [markers, feedback])
        t = pylsl.local_clock()
        markers.push_sample(["block_start:rest"], t)
        pump(app, lambda: w.state.block == "rest", "the rest block")
        assert w.label.text() == "Rest" and not w.graphics.isVisible()
        snapshot(w, tmp_path / "thermometer_rest.png")

        markers.push_sample(["block_end:rest"], t + 40)
        markers.push_sample(["block_start:happy"], t + 40)
        markers.push_sample(["target:0.6"], t + 40)
        feedback.push_sample([0.72, 1.44], t + 42)
        pump(app, lambda: w.state.updates == 1 and w.state.target == 0.6, "the first feedback value")
        assert w.label.text() == "Recall a happy memory"
        assert w.graphics.isVisible() and w.state.bar_visible
        assert w.bar_level == pytest.approx(0.72)
        assert w.target_level == pytest.approx(0.6)
        assert w.fill.brush().color().name() == FILL_REACHED
        image = snapshot(w, tmp_path / "thermometer_happy.png")
        mid = BAR_X + BAR_W / 2
        assert colour_at(w.view, w, image, mid, 0.3).name() == FILL_REACHED  # filled below the level
        assert colour_at(w.view, w, image, mid, 0.9).name() == "#000000"  # empty above it

        markers.push_sample(["block_end:happy"], t + 80)
        markers.push_sample(["block_start:count"], t + 80)
        feedback.push_sample([0.95, 1.9], t + 79)  # the last happy volume, arriving after the edge
        pump(app, lambda: w.state.block == "count" and w.state.updates == 2, "the count block")
        app.processEvents()
        assert w.label.text() == "Count backwards from 300 by 7"
        assert not w.graphics.isVisible()
        snapshot(w, tmp_path / "thermometer_count.png")
    finally:
        w.close()


# ---------------------------------------------------------------------- operator panel over LSL
def test_operator_panel_follows_qc_feedback_and_blocks(app, prefix, tmp_path):
    from controller.display.panel import LslOperatorPanel

    qc = qc_outlet(prefix)
    markers = outlet(f"{prefix}-markers", "Markers", 1, "string")
    feedback = outlet(f"{prefix}-feedback", "Feedback", 2, "double64")
    w = LslOperatorPanel(prefix, PanelState(fd_threshold_mm=0.5))
    w.resize(1200, 900)
    w.show()
    try:
        connected(app, [qc, markers, feedback])
        t0 = pylsl.local_clock() - 100
        indices = [i for i in range(6, 26) if i != 12]  # volume 12 never arrives
        markers.push_sample(["block_start:rest"], t0)
        for i in indices:
            t = t0 + (i - 6) * TR
            if i == 16:
                markers.push_sample(["block_end:rest"], t - 0.01)
                markers.push_sample(["block_start:happy"], t - 0.01)
            fd = 0.9 if i in (18, 19) else 0.05
            qc.push_sample([i, 0.01 * i, -0.02, 0.03, 0.1, 0.0, -0.05, fd, 25.0 + i, 1990.0 + i], t)
            if i >= 17:
                feedback.push_sample([0.1 * (i - 16), 0.2 * (i - 16)], t)
        pump(app, lambda: w.state.qc.n == len(indices) and w.state.feedback.n == 9 and len(w.state.blocks) == 2,
             "19 volumes, 9 feedback values and 2 blocks")
        app.processEvents()
        counts = w.point_counts()
        assert counts == {"tx": 19, "rx": 19, "fd": 19, "fd_over": 2, "pipeline": 19, "delivery": 19, "feedback": 9,
                          "blocks": 2}
        assert w.state.last_index == 25 and w.state.missing == 1
        assert w.state.tr_s == pytest.approx(TR, rel=1e-6)
        assert w.tr_line.isVisible() and 10 ** w.tr_line.value() == pytest.approx(TR * 1000)
        status = w.status.text()
        for part in ("volume 25", "missing 1", "2 > 0.5 mm", "pipeline 50 ms (median 41, max 50) / TR budget 2000 ms",
                     "delivery median 2006 ms, total median 2047 ms", "block 2: happy", "feedback 0.90"):
            assert part in status, (part, status)
        # the TR budget line is on the pipeline's plot; the delivery has its own, without a budget
        _, pipe = w.proc.getData()  # log axes: the data as displayed are log10(ms)
        assert w.tr_line in w.p_proc.items and 10 ** max(pipe) == pytest.approx(50.0)
        _, delivery = w.delivery.getData()
        assert min(delivery) == pytest.approx(1996.0) and not w.delivery_unknown.isVisible()  # a linear axis
        x, y = w.trans[0].getData()
        assert x[0] == pytest.approx(0.0) and y[-1] == pytest.approx(0.25)
        snapshot(w, tmp_path / "operator_panel.png")
    finally:
        w.close()


def test_operator_panel_says_delivery_unknown_for_a_folder_source(app, prefix, tmp_path):
    """A folder source does not know when a volume was acquired: its QC rows carry NaN delivery; the panel
    plots the pipeline against the TR budget and says 'unknown' for delivery instead of drawing zeros."""
    from controller.display.panel import LslOperatorPanel

    qc = qc_outlet(prefix)
    w = LslOperatorPanel(prefix, PanelState(tr_s=TR))
    w.resize(1200, 900)
    w.show()
    try:
        connected(app, [qc])
        t0 = pylsl.local_clock() - 100
        for i in range(1, 6):
            qc.push_sample([i, 0, 0, 0, 0, 0, 0, 0.05, 6.0 + i, float("nan")], t0 + i * TR)
        pump(app, lambda: w.state.qc.n == 5, "5 volumes")
        app.processEvents()
        counts = w.point_counts()
        assert counts["pipeline"] == 5 and counts["delivery"] == 0
        assert w.delivery_unknown.isVisible()
        status = w.status.text()
        assert "pipeline 11 ms (median 9, max 11) / TR budget 2000 ms" in status and "delivery unknown" in status
        snapshot(w, tmp_path / "operator_panel_folder.png")
    finally:
        w.close()


def test_operator_panel_reports_a_qc_stream_of_the_wrong_layout(app, prefix):
    from controller.display.panel import LslOperatorPanel

    bad = outlet(f"{prefix}-fmri-qc", "QC", 3, "double64")
    w = LslOperatorPanel(prefix)
    try:
        connected(app, [bad])
        bad.push_sample([1.0, 2.0, 3.0])
        pump(app, lambda: bool(w.error), "the layout error")
        assert "3 channels, expected 10" in w.error and w.state.qc.n == 0
        assert w.status.text().startswith("ERROR fmri-qc stream")
    finally:
        w.close()


@pytest.mark.slow
def test_panel_switches_to_the_next_session_of_the_same_name(app, prefix):
    """A display left running across runs follows the new session's stream and drops the old data."""
    from controller.display.panel import LslOperatorPanel

    first = qc_outlet(prefix)
    w = LslOperatorPanel(prefix)
    try:
        connected(app, [first])
        first.push_sample([6, 0, 0, 0, 0, 0, 0, 0.1, 20.0, 1970.0])
        first.push_sample([7, 0, 0, 0, 0, 0, 0, 0.1, 20.0, 1970.0])
        pump(app, lambda: w.state.qc.n == 2, "the first run's volumes")
        del first  # the run ends
        info = pylsl.StreamInfo(f"{prefix}-fmri-qc", "QC", len(QC_CHANNELS), pylsl.IRREGULAR_RATE, "double64",
                                f"{prefix}-fmri-qc-run2")
        second = pylsl.StreamOutlet(info)
        pump(app, lambda: w.state.qc.n == 0, "the switch to the second run")
        connected(app, [second])
        second.push_sample([6, 0, 0, 0, 0, 0, 0, 0.2, 21.0, float("nan")])
        pump(app, lambda: w.state.qc.n == 1, "the second run's first volume")
        assert w.state.qc.rows[0, 7] == pytest.approx(0.2)
    finally:
        w.close()


# ---------------------------------------------------------------------- CLI and screenshot script
@pytest.mark.slow
def test_cli_display_runs_in_its_own_process_and_follows_the_session(prefix, tmp_path):
    markers = outlet(f"{prefix}-markers", "Markers", 1, "string")
    feedback = outlet(f"{prefix}-feedback", "Feedback", 2, "double64")
    png = tmp_path / "cli_thermometer.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "display", "thermometer", "--prefix", prefix,
         "--target", "0.5", "--size", "640x480", "--quit-after", "6", "--screenshot", str(png)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert markers.wait_for_consumers(30) and feedback.wait_for_consumers(30), "the display never connected"
        markers.push_sample(["block_start:happy"])
        feedback.push_sample([0.8, 1.6])
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert png.stat().st_size > 1000


def test_cli_rejects_bad_options_before_opening_a_window():
    from controller.cli import main

    assert main(["display", "thermometer", "--target", "1.5"]) == 2
    assert main(["display", "thermometer", "--target-threshold", "goal"]) == 2
    assert main(["display", "thermometer", "--size", "big"]) == 2


def test_screenshot_script_writes_both_pngs(app, tmp_path):
    from controller.display.screenshots import render

    paths = render(tmp_path)
    sizes = {p.name: QtGui.QImage(str(p)).size() for p in paths}
    assert sizes["fmri_thermometer.png"] == QtCore.QSize(1024, 768)
    assert sizes["fmri_operator_panel.png"] == QtCore.QSize(1400, 1000)
