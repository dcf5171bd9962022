"""The console's live page (controller/console/live/), fed with arrays as the console feeds it, offscreen.

64 channels at 1 kHz go through the signal view's filter, ring and min/max decimation; the spectrum,
feature traces, timeline and stimulation panel are checked for values, texts and colours.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

os.environ["QT_QPA_PLATFORM"] = "offscreen"
pytest.importorskip("PySide6", reason="the gui extra is not installed: pip install -e '.[gui,test]'")
pytest.importorskip("pyqtgraph", reason="the gui extra is not installed: pip install -e '.[gui,test]'")

from PySide6 import QtCore, QtGui  # noqa: E402

from controller.console.live.feature_view import FeatureView, FeatureViewModel  # noqa: E402
from controller.console.live.live_page import LivePage  # noqa: E402
from controller.console.live.signal_view import FilterSpec, SignalView, SignalViewModel  # noqa: E402
from controller.console.live.spectrum_view import SpectrumModel, SpectrumView  # noqa: E402
from controller.console.live.stim_panel import AMBER, GREY, OK, RED, StimPanel  # noqa: E402
from controller.console.live.timeline_view import MISSING, TimelineView  # noqa: E402
from controller.display.qt import application  # noqa: E402

FS = 1000.0
N_CH = 64
LABELS = ["Cz", "Pz", "Fz", "Oz"] + [f"E{i}" for i in range(5, N_CH + 1)]
FRAME = 40  # samples per 25 fps frame at 1 kHz


@pytest.fixture(scope="module")
def app():
    return application()


def status(**over) -> dict:
    s = {
        "session": "ab12cd34", "protocol": "tbr_adhd", "state": "running", "block": "nf1", "block_index": 2,
        "n_blocks": 5, "time_left_s": 12.3, "total_left_s": 300.0, "elapsed_s": 42.0,
        "blocks": [{"label": "rest", "start_s": 0.0, "duration_s": 20.0},
                   {"label": "base", "start_s": 20.0, "duration_s": 10.0},
                   {"label": "nf1", "start_s": 30.0, "duration_s": 30.0},
                   {"label": "rest", "start_s": 60.0, "duration_s": 20.0},
                   {"label": "nf2", "start_s": 80.0, "duration_s": 30.0}],
        "features": {"tbr": 2.1}, "thresholds": {"target": 2.0},
        "feedback": {"value": "tbr", "lo": 1.0, "hi": 4.0, "direction": "down"},
        "bands": {"theta": [4.0, 8.0], "beta": [13.0, 21.0]},
        "channels": {"eeg": ["Cz"]},
        "reward_rates": [{"block": "base", "frames": 100, "rewarded": 10},
                         {"block": "nf1", "frames": 120, "rewarded": 40}],
        "inhibitions": {},
        "latency_ms": {"median": 1.2, "p99": 3.4, "max": 7.0, "n": 5000},
        "watchdog": {"period_ms": 50.0, "margin_ms": 41.0},
        "inputs": {"eeg": {"stream": "neuroreflex-sim-eeg", "source_id": "x", "srate": FS, "channels": LABELS,
                           "units": "V", "highpass_hz": 1.0, "notch_hz": 50.0}},
    }
    s.update(over)
    return s


def synthetic(seconds: float, t0: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n x 64) in volts: 10 Hz 20 µV on Cz, 50 Hz 40 µV line noise and a 10 mV offset everywhere, 2 µV noise."""
    n = int(round(seconds * FS))
    t = t0 + np.arange(n) / FS
    rng = np.random.default_rng(seed)
    x = 2e-6 * rng.standard_normal((n, N_CH)) + 10e-3 + 40e-6 * np.sin(2 * np.pi * 50 * t)[:, None]
    x[:, 0] += 20e-6 * np.sin(2 * np.pi * 10 * t)
    return x, t


def feed_frames(push, x: np.ndarray, t: np.ndarray) -> None:
    for i in range(0, len(t), FRAME):
        push(x[i:i + FRAME], t[i:i + FRAME])


def amplitude(y: np.ndarray, f: float) -> float:
    """Amplitude of the ``f`` Hz component of ``y`` (a whole number of cycles at FS)."""
    t = np.arange(len(y)) / FS
    return 2 * abs(np.mean(y * np.exp(-2j * np.pi * f * t)))


# ---------------------------------------------------------------------- signal view model
def test_ring_and_minmax_decimation_values_and_lengths():
    m = SignalViewModel(LABELS, FS, seconds=10.0, unit="uV", filt=FilterSpec(), columns=500, scale_uv=10.0)
    assert (m.per_column, m.columns) == (20, 500)
    assert m.x.shape == (1000,) and m.y.shape == (N_CH, 1000)
    assert m.x[-1] == pytest.approx(0.0) and m.x[0] == pytest.approx(-499 * 0.02)
    ramp = np.arange(2500, dtype=float)[:, None] + 1000.0 * np.arange(N_CH)[None, :]  # µV
    feed_frames(m.push, ramp, np.arange(2500) / FS)
    y = m.update_curves()
    # 2500 samples: 125 whole columns on the right, NaN (not drawn) on the left
    assert np.isnan(y[:, : 2 * 375]).all() and np.isfinite(y[:, 2 * 375:]).all()
    col_min = np.arange(0, 2500, 20, dtype=float)
    lane3 = (y[3, 2 * 375:] + 3) * 10.0  # lane offset -3, 10 µV/div
    np.testing.assert_allclose(lane3[0::2], col_min + 3000.0)
    np.testing.assert_allclose(lane3[1::2], col_min + 19 + 3000.0)
    # the ring keeps the last 10 s only
    more = np.arange(2500, 14010, dtype=float)[:, None] + np.zeros(N_CH)
    feed_frames(m.push, more, np.arange(2500, 14010) / FS)
    y = m.update_curves()
    assert np.isfinite(y).all()
    top = y[0] * 10.0
    assert top[-1] == 13999.0 and top[0] == 4000.0  # whole columns only: 14000..14009 wait for the next frame
    np.testing.assert_allclose(m.window()[0], np.arange(4010, 14010))


def test_stride_decimation_takes_each_columns_last_sample():
    m = SignalViewModel(LABELS[:4], FS, seconds=2.0, filt=FilterSpec(), columns=200, method="stride", scale_uv=1.0)
    m.push(np.tile(np.arange(2000.0)[:, None], (1, 4)))
    y = m.update_curves()
    assert y.shape == (4, 200)
    np.testing.assert_allclose(y[0], np.arange(9, 2000, 10))


def test_picking_orders_lanes_and_rejects_unknown_labels():
    m = SignalViewModel(LABELS, FS, seconds=1.0, unit="uV", filt=FilterSpec(), columns=100, scale_uv=1.0)
    m.push(np.tile(np.arange(N_CH, dtype=float), (1000, 1)))  # channel k holds k µV
    m.pick(["pz", "Cz", "E10"])
    assert m.picked == ["Pz", "Cz", "E10"]
    y = m.update_curves()
    assert y.shape == (3, 200)
    np.testing.assert_allclose(y[:, -1], [1.0 - 0, 0.0 - 1, 9.0 - 2])
    with pytest.raises(ValueError, match="no channel C3"):
        m.pick(["C3"])
    m.pick(None)
    assert len(m.picked) == N_CH


def test_scale_steps_change_the_drawn_amplitude():
    m = SignalViewModel(["Cz"], FS, seconds=1.0, unit="uV", filt=FilterSpec(), columns=100)
    m.push(np.full((1000, 1), 100.0))
    assert m.scale_uv == 50.0
    assert m.update_curves()[0, -1] == pytest.approx(2.0)
    assert m.scale_down() == 20.0
    assert m.update_curves()[0, -1] == pytest.approx(5.0)
    assert m.scale_up() == 50.0 and m.scale_up() == 100.0
    assert m.update_curves()[0, -1] == pytest.approx(1.0)


def test_filter_removes_the_offset_and_the_line_noise_causally():
    m = SignalViewModel(LABELS, FS, seconds=10.0, unit="V", filt=FilterSpec(highpass_hz=1.0, notch_hz=50.0),
                        columns=500)
    x, t = synthetic(20.0)
    feed_frames(m.push, x, t)
    last = m.window(2.0)  # µV, picked = all
    assert abs(last.mean()) < 0.5  # 10 mV = 10000 µV offset gone
    assert amplitude(last[1], 50.0) < 2.0  # 40 µV line noise notched
    assert amplitude(last[0], 10.0) == pytest.approx(20.0, rel=0.1)  # the 10 Hz rhythm kept
    # chunked filtering with kept state equals one pass over the whole recording, started at steady state
    sos = m.filt.sos(FS)
    whole, _ = signal.sosfilt(sos, 1e6 * x[:, 5], zi=signal.sosfilt_zi(sos) * 1e6 * x[0, 5])
    np.testing.assert_allclose(m.window()[5], whole[-10000:], atol=1e-6)


def test_filter_starts_at_steady_state_so_an_offset_never_shows():
    m = SignalViewModel(["Cz"], FS, seconds=2.0, unit="V", filt=FilterSpec(highpass_hz=0.5), columns=100)
    m.push(np.full((FRAME, 1), 25e-3))  # 25 mV of electrode offset from the first sample
    m.push(np.full((2000 - FRAME, 1), 25e-3))
    assert np.abs(m.window()[0]).max() < 1e-6


def test_nan_samples_are_gaps_and_do_not_poison_the_filter():
    m = SignalViewModel(["Cz"], FS, seconds=2.0, unit="uV", filt=FilterSpec(highpass_hz=1.0), columns=100)
    x = np.ones((2000, 1))
    x[100:110] = np.nan
    m.push(x)
    w = m.window()[0]
    assert np.isnan(w[100:110]).all() and np.isfinite(w[110:]).all()


# ---------------------------------------------------------------------- signal view widget
def test_signal_widget_curves_ticks_keys_and_buttons(app, qtbot):
    m = SignalViewModel(LABELS, FS, seconds=4.0, unit="V", filt=FilterSpec(highpass_hz=1.0), columns=400)
    view = SignalView(m)
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.show()
    qtbot.waitExposed(view)
    assert len(view.curves) == 2  # even and odd lanes
    x, t = synthetic(4.0)
    feed_frames(m.push, x, t)
    view.refresh()
    for lane in (0, 1, 37, 63):
        cx, cy = view.drawn(lane)
        assert len(cx) == len(m.x) == 2 * m.columns
        np.testing.assert_array_equal(cx, m.x)
        np.testing.assert_allclose(cy, m.y[lane])
    assert len(view.curves[1].getData()[0]) == 32 * (2 * m.columns + 1)  # 32 lanes, a NaN after each
    view.pick(["Oz", "Cz"])
    view.refresh()
    np.testing.assert_allclose(view.drawn(1)[1], m.update_curves()[1])
    assert view.drawn(1)[1][-1] == pytest.approx(m.window()[1, -20:].max() / 50.0 - 1, abs=1e-9)
    ticks = view.plot.getPlotItem().getAxis("left")._tickLevels[0]
    assert [label for _, label in ticks] == ["Oz", "Cz"]
    assert m.scale_uv == 50.0
    qtbot.keyClick(view, QtCore.Qt.Key.Key_Plus)
    assert m.scale_uv == 20.0 and view.scale_label.text().startswith("20 µV/div")
    qtbot.keyClick(view, QtCore.Qt.Key.Key_Minus)
    qtbot.mouseClick(view.smaller, QtCore.Qt.MouseButton.LeftButton)
    assert m.scale_uv == 100.0
    qtbot.mouseClick(view.bigger, QtCore.Qt.MouseButton.LeftButton)
    assert m.scale_uv == 50.0


# ---------------------------------------------------------------------- spectrum
def test_spectrum_peak_and_band_regions(app, qtbot):
    m = SignalViewModel(LABELS, FS, seconds=10.0, unit="V", filt=FilterSpec(highpass_hz=1.0, notch_hz=50.0))
    bands = {"theta": (4.0, 8.0), "beta": (13.0, 21.0)}
    spec = SpectrumModel(m, ["Cz"], bands)
    view = SpectrumView(spec)
    qtbot.addWidget(view)
    x, t = synthetic(6.0)
    updates = 0
    for i in range(0, len(t), FRAME):
        m.push(x[i:i + FRAME], t[i:i + FRAME])
        before = spec.updates
        view.refresh()
        updates += spec.updates - before
    assert 15 <= updates <= 20  # every 1/3 s of stream time, not every frame
    assert spec.channels == ["Cz"]
    assert spec.peak_hz() == pytest.approx(10.0, abs=0.5)
    assert spec.peak_hz(11.0, 60.0) != pytest.approx(50.0, abs=1.0)  # the line noise is notched out
    assert {k: r.getRegion() for k, r in view.regions.items()} == {"theta": (4.0, 8.0), "beta": (13.0, 21.0)}
    assert view.labels["theta"].textItem.toPlainText().startswith("theta")
    fx, fy = view.curve.getData()
    np.testing.assert_allclose(fy, spec.power_db)
    view.set_bands({"alpha": (8.0, 12.0)})
    assert list(view.regions) == ["alpha"] and view.regions["alpha"].getRegion() == (8.0, 12.0)


# ---------------------------------------------------------------------- features
def feature_rows(t: np.ndarray) -> np.ndarray:
    """tbr every row, theta only every other row (NaN otherwise), as the features outlet sends."""
    rows = np.column_stack([2.0 + np.sin(t / 5.0), np.full(len(t), np.nan)])
    rows[::2, 1] = 1.0
    return rows


def test_feature_view_thresholds_blocks_rewards_and_rates(app, qtbot):
    fm = FeatureViewModel()
    view = FeatureView(fm)
    qtbot.addWidget(view)
    fm.on_status(status())
    t0 = 1000.0  # LSL time of session time 0
    fm.on_markers(["block_start:rest"], [t0])
    assert fm.t0 == t0 and fm.anchored
    t = t0 + np.arange(0, 45, 0.1)
    fm.on_features(feature_rows(t), t, ["tbr", "theta"])
    fm.on_markers(["block_end:rest", "block_start:base", "reward", "threshold:target=1.8", "reward", "reward"],
                  [t0 + 20, t0 + 20, t0 + 31.0, t0 + 32.0, t0 + 33.0, t0 + 40.0])
    view.refresh()
    assert list(view.curves) == ["tbr"]  # the feedback feature
    cx, cy = view.curves["tbr"].getData()
    np.testing.assert_allclose(cx, t - t0)
    assert fm.trace("theta")[0].size == (len(t) + 1) // 2  # NaN rows dropped
    # the marker is the newest threshold
    assert view.lines["target"].value() == pytest.approx(1.8)
    line = view.lines["target"]
    fm.on_status(status(thresholds={"target": 2.4}))
    view.refresh()
    assert view.lines["target"] is line and line.value() == pytest.approx(2.4)
    # status blocks shaded
    assert [r.getRegion() for r in view.regions] == [(0.0, 20.0), (20.0, 30.0), (30.0, 60.0), (60.0, 80.0),
                                                   (80.0, 110.0)]
    # rewards on the trace at their times
    px, py = view.rewards.getData()
    np.testing.assert_allclose(px, [31.0, 33.0, 40.0])
    np.testing.assert_allclose(py, 2.0 + np.sin((t0 + px) / 5.0), atol=1e-3)
    assert view.bar_heights() == pytest.approx([10.0, 100 * 40 / 120])
    ticks = view.p_rate.getAxis("bottom")._tickLevels[0]
    assert [label for _, label in ticks] == ["base", "nf1"]


def test_feature_blocks_from_markers_without_status_timeline(app, qtbot):
    fm = FeatureViewModel()
    view = FeatureView(fm)
    qtbot.addWidget(view)
    fm.on_markers(["block_start:rest", "block_end:rest", "block_start:nf", "block_end:nf", "block_start:rest"],
                  [500.0, 510.0, 510.0, 530.0, 530.0])
    t = np.arange(500.0, 535.0, 0.5)
    fm.on_features(feature_rows(t), t, ["tbr", "theta"])
    view.refresh()
    assert len(view.regions) == 3
    assert [r.getRegion() for r in view.regions][:2] == [(0.0, 10.0), (10.0, 30.0)]
    assert view.regions[2].getRegion() == pytest.approx((30.0, 34.5))  # running: up to the newest feature
    assert list(view.curves) == ["tbr", "theta"]  # no feedback feature known: all of them


# ---------------------------------------------------------------------- timeline
def test_timeline_texts_highlight_and_missing_values(app, qtbot):
    view = TimelineView()
    qtbot.addWidget(view)
    view.resize(800, 80)
    view.show()
    qtbot.waitExposed(view)
    view.on_status(status())
    texts = view.texts()
    assert texts == {"state": "running", "block": "nf1 (3/5)", "block_left": "12.3 s", "session_left": "5:00",
                     "latency": "median 1.2 / p99 3.4 / max 7.0 ms (n 5000)",
                     "watchdog": "margin 41.0 ms of 50 ms"}
    assert OK_COLOR in view.labels["watchdog"].styleSheet()
    assert view.bar.current == 2
    image = view.bar.grab().toImage()
    rects = view.bar.rects()
    assert len(rects) == 5
    ratio = image.devicePixelRatio()

    def lightness(i: int) -> int:
        r = rects[i]
        return QtGui.QColor(image.pixel(int((r.left() + 4) * ratio), int((r.top() + 4) * ratio))).lightness()
    assert lightness(2) > max(lightness(i) for i in (0, 1, 3, 4))
    view.on_status(status(watchdog={"period_ms": 50.0, "margin_ms": 4.0}))
    assert AMBER in view.labels["watchdog"].styleSheet()
    view.on_status({"session": "x", "state": "waiting"})
    assert view.texts() == {"state": "waiting", "block": MISSING, "block_left": MISSING, "session_left": MISSING,
                            "latency": MISSING, "watchdog": MISSING}
    assert view.bar.rects() == []


OK_COLOR = OK


# ---------------------------------------------------------------------- stimulation
def stim_status(**over) -> dict:
    s = status(
        devices={"stim1": {"armed": True, "running": False, "connected": True, "kind": "triggerbox",
                           "last": "pulse 2.0 mA 1 ms at 12:01:03", "keepalive_age_s": 0.3},
                 "stim2": {"armed": False}},
        interlocks={"estop": "E-STOP (from console ana)"},
        dose={"stim1": {"pulses_today": 510, "pulses_cap": 600, "charge_today_uC": 100.0, "charge_cap_uC": 100.0},
              "stim2": {"pulses_today": 10, "pulses_cap": 600}})
    s.update(over)
    return s


def test_stim_panel_rows_colours_doses_and_interlocks(app, qtbot):
    panel = StimPanel()
    qtbot.addWidget(panel)
    panel.on_status(stim_status())
    one, two = panel.device_labels["stim1"], panel.device_labels["stim2"]
    assert [one[k].text() for k in ("name", "connected", "armed", "running", "last", "keepalive")] == [
        "stim1", "connected", "ARMED", "idle", "pulse 2.0 mA 1 ms at 12:01:03", "keep-alive 0.3 s"]
    assert RED in one["armed"].styleSheet() and OK in one["connected"].styleSheet()
    assert [two[k].text() for k in ("connected", "armed", "running", "last", "keepalive")] == [
        MISSING, "disarmed", MISSING, MISSING, f"keep-alive {MISSING}"]
    assert GREY in two["armed"].styleSheet()
    assert panel.dose_color("stim1", "pulses") == AMBER  # 85 %
    assert panel.dose_color("stim1", "charge_uC") == RED  # at the cap
    assert panel.dose_color("stim2", "pulses") == OK
    label, bar = panel.dose_widgets[("stim1", "pulses")]
    assert label.text() == "stim1 pulses 510 / 600 (85 %)" and bar.value() == 850 and AMBER in bar.styleSheet()
    label, bar = panel.dose_widgets[("stim1", "charge_uC")]
    assert bar.value() == 1000 and RED in bar.styleSheet()
    assert panel.interlocks.text() == "INTERLOCKS\nestop: E-STOP (from console ana)"
    assert RED in panel.interlocks.styleSheet()
    assert not panel.none.isVisibleTo(panel)
    # the same rows are updated, not rebuilt, when the values change
    panel.on_status(stim_status(interlocks={}, devices={"stim1": {"armed": False, "connected": False},
                                                        "stim2": {"armed": False}}))
    assert panel.device_labels["stim1"] is one
    assert one["armed"].text() == "disarmed" and one["connected"].text() == "DISCONNECTED"
    assert RED in one["connected"].styleSheet()
    assert panel.interlocks.text() == "interlocks: none"
    # an EEG session without stimulation
    panel.on_status(status())
    assert panel.none.isVisibleTo(panel) and panel.device_labels == {} and panel.dose_widgets == {}
    assert panel.interlocks.text() == MISSING


# ---------------------------------------------------------------------- the page
def test_live_page_fed_like_the_console_and_screenshot(app, qtbot, tmp_path):
    page = LivePage()
    qtbot.addWidget(page)
    page.resize(1400, 900)
    page.show()
    qtbot.waitExposed(page)
    x, t = synthetic(0.2)
    page.on_signal(x, t)
    assert page.ignored_samples == 200  # before the first status there is nowhere to draw it
    st = stim_status()
    page.configure(st)
    sm = page.signal_model
    assert sm is not None and sm.labels == LABELS and sm.srate == FS and sm.factor == 1e6
    assert sm.filt == FilterSpec(highpass_hz=1.0, notch_hz=50.0)
    assert page.spectrum_model.channels == ["Cz"]
    assert page.signal_view.model is sm and len(sm.picked) == N_CH
    t0 = 2000.0
    page.on_markers([["block_start:rest"]], [t0])  # LSL pulls give one-element rows
    x, t = synthetic(12.0, t0=t0)
    ft = t0 + np.arange(0, 12, 0.25)
    page.on_features(feature_rows(ft), ft, ["tbr", "theta"])
    page.on_markers(["reward", "reward"], [t0 + 5, t0 + 6])
    page.on_feedback(np.array([[0.4, 2.2], [0.6, 2.1]]), np.array([t0 + 11.5, t0 + 11.75]))
    for i in range(0, len(t), FRAME):
        page.on_signal(x[i:i + FRAME], t[i:i + FRAME])
        if i % (10 * FRAME) == 0:
            page.on_status(st)
        page.refresh()
    assert page.feedback == (0.6, 2.1)
    assert page.last_marker == "reward"
    _, cy = page.signal_view.drawn(63)
    assert len(cy) == 2 * sm.columns and np.isfinite(cy).all()
    assert page.spectrum_model.peak_hz() == pytest.approx(10.0, abs=0.5)
    assert len(page.feature_view.regions) == 5 and page.feature_view.rewards.getData()[0].size == 2
    assert page.timeline.texts()["block"] == "nf1 (3/5)"
    assert page.stim_panel.dose_color("stim1", "pulses") == AMBER
    assert "session ab12cd34" in page.header.text()
    page.pick(["Cz", "Oz"])
    page.refresh()
    assert page.signal_model.picked == ["Cz", "Oz"] and len(page.signal_view.drawn(1)[1]) == 2 * sm.columns
    page.pick(None)
    page.refresh()
    app.processEvents()  # rows added to the stimulation panel are laid out by the event loop
    path = tmp_path / "live_page.png"
    image = page.grab().toImage()
    assert image.save(str(path))
    assert path.stat().st_size > 20_000
    small = image.scaled(160, 100)
    colours = {small.pixel(i, j) for i in range(small.width()) for j in range(small.height())}
    assert len(colours) > 50  # traces, regions, bars and text, not a blank window


def test_live_page_status_before_inputs_and_new_bands(app, qtbot):
    page = LivePage()
    qtbot.addWidget(page)
    page.on_status({"session": "x", "state": "starting"})
    assert page.signal_model is None and page.timeline.texts()["state"] == "starting"
    page.on_status(status())  # the first status that names the inputs configures the page
    assert page.signal_model is not None and set(page.spectrum_view.regions) == {"theta", "beta"}
    page.on_status(status(bands={"alpha": [8, 12]}))
    assert set(page.spectrum_view.regions) == {"alpha"}
    no_filter = status()
    no_filter["inputs"]["eeg"] = {k: v for k, v in no_filter["inputs"]["eeg"].items()
                                  if k not in ("highpass_hz", "notch_hz")}
    page.on_markers(["block_start:rest"], [10.0])
    page.on_features(np.array([[2.0], [2.1]]), np.array([10.5, 11.0]), ["tbr"])
    page.refresh()
    assert len(page.feature_view.curves["tbr"].getData()[0]) == 2
    page.configure(no_filter)  # the next session
    assert page.signal_model.filt == FilterSpec(highpass_hz=0.5)  # the display's own high-pass
    page.refresh()
    assert page.feature_model.names == [] and page.feature_view.curves == {}  # the old trace is gone


def test_a_long_refusal_or_interlock_wraps_and_never_widens_the_page(app, qtbot):
    """A governor's reason can run to hundreds of characters; the operator's window must stay on the screen."""
    reason = "rns fire, but stimulation is inhibited: " + "latency: rns controller delay 5.67 ms > site limit 5 ms " * 8
    page = LivePage()
    qtbot.addWidget(page)
    page.configure(status(devices={"rns": {"armed": True, "connected": True, "running": False,
                                           "last": f"fire REFUSED 3.6 s ago: {reason}"}},
                          interlocks={"latency": reason}, inhibitions={"latency": reason}))
    page.resize(1400, 900)
    page.show()
    qtbot.waitExposed(page)
    assert page.minimumSizeHint().width() < 1400
    assert page.width() == 1400
    last = page.stim_panel.device_labels["rns"]["last"]
    assert last.toolTip().endswith(reason) and last.wordWrap()


def test_only_the_thresholds_compared_with_drawn_features_get_a_line(app, qtbot):
    from controller.console.protocol_view import protocol_facts
    from controller.protocol import load_protocol

    facts = protocol_facts(load_protocol(Path(__file__).resolve().parents[3] / "protocols" / "tbr_demo.yaml"))
    assert facts["threshold_features"]["goal"] == ["tbr"] and "blink" in facts["threshold_features"]["blink_max"]
    model = FeatureViewModel()
    model.on_features(np.array([[2.0, 1e-5]]), np.array([1.0]), ["tbr", "blink"])
    model.on_status(status(thresholds={"goal": 2.5, "blink_max": 1.5e-4},
                           threshold_features=facts["threshold_features"]))
    assert model.visible == ["tbr"] and model.shown_thresholds() == {"goal": 2.5}  # the feedback feature alone
    model.shown = ["tbr", "blink"]
    assert model.shown_thresholds() == {"goal": 2.5, "blink_max": 1.5e-4}
    bare = FeatureViewModel()  # no pairing known (an older session): every threshold is drawn
    bare.on_status(status(thresholds={"goal": 2.5, "blink_max": 1.5e-4}))
    assert set(bare.shown_thresholds()) == {"goal", "blink_max"}
