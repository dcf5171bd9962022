"""A volume's time is journaled and shown as the stages it is (issue 12, item 4).

Real OpenNFT volumes (74x74x36) go through a real volume source (an LSL volume stream on loopback, or
NIfTI files renamed into a watched folder), the session's own wiring (``wire_volumes``: pipeline ->
engine -> journal event and the ``<prefix>-fmri-qc`` LSL outlet), and the operator panel follows
that QC outlet offscreen. Checked: the journal carries acquisition -> arrival (only when the source
knows the acquisition time), arrival -> feedback and their sum; over LSL, a delivery delay of one TR
(the stamp is set a TR before the push, as a scanner sends a volume once it is complete) is not
counted as pipeline time; the panel plots the journal's pipeline time and its delivery apart. No
speed is asserted: the inequalities below hold by causality (a volume cannot be received before it
was pushed), whatever the machine's load.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

os.environ["QT_QPA_PLATFORM"] = "offscreen"
pytest.importorskip("PySide6", reason="the gui extra is not installed: pip install -e '.[gui,test]'")
pytest.importorskip("pyqtgraph", reason="the gui extra is not installed: pip install -e '.[gui,test]'")
pylsl = pytest.importorskip("pylsl")

from controller import events as ev  # noqa: E402
from controller.clock import now  # noqa: E402
from controller.display.model import DELIVERY, PIPELINE, PanelState  # noqa: E402
from controller.display.qt import application  # noqa: E402
from controller.events import EventBus  # noqa: E402
from controller.fmri.pipeline import VolumePipeline  # noqa: E402
from controller.inputs.volumes.lsl_volumes import LslVolumeSource  # noqa: E402
from controller.inputs.volumes.watch_folder import FolderSource  # noqa: E402
from controller.protocol import loads_protocol  # noqa: E402
from controller.session.fmri_modality import volume_line  # noqa: E402
from drivers.lsl_fmri_qc import LslFmriQcOutput  # noqa: E402
from sim.fmri.folder_out import nifti_bytes  # noqa: E402
from sim.fmri.lsl_out import VolumeOutlet  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT.parent / "shared" / "data" / "fmri" / "opennft"
RUN = DATA / "opennft_psc_run_vols001-048_4d.nii.gz"
TR = 1.97
N = 8
pytestmark = [pytest.mark.lsl, pytest.mark.skipif(not RUN.exists(), reason="../shared/data/fmri/opennft not present")]

PROTOCOL = f"""
protocol: timing-stages
inputs:
  fmri:
    volumes: {{folder: scanner, pattern: "*.nii"}}
    tr: 1.97 s
    detrend: {{drift: 1, motion: true}}
rois:
  lroi: {{mask: {DATA / "lROI_1.nii"}}}
features:
  lroi_mean: {{roi_mean: {{input: fmri, roi: lroi}}}}
timeline:
  - {{baseline: 60 s}}
"""


@pytest.fixture(scope="module")
def run4d() -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    img = nib.load(str(RUN))
    return np.asarray(img.dataobj, dtype=np.float32)[..., :N], np.asarray(img.affine, dtype=float)


@pytest.fixture(scope="module")
def app():
    return application()


class Engine:
    """The engine's side of wire_volumes: takes the feature values (the end of arrival -> feedback)."""

    def __init__(self) -> None:
        self.values: list = []

    def on_features(self, values) -> None:
        self.values.extend(values)

    def set_inhibit(self, key: str, reason: str) -> None:
        raise AssertionError(f"inhibited: {reason}")

    def clear_inhibit(self, key: str) -> None:
        pass


class Rig:
    """A source wired as a session wires it; volume events collected from the bus, the QC outlet open."""

    def __init__(self, tmp_path: Path, prefix: str) -> None:
        protocol = loads_protocol(PROTOCOL, str(tmp_path / "timing.yaml"))
        self.spec = protocol.volume_inputs["fmri"]
        self.pipeline = VolumePipeline(self.spec, list(protocol.features.values()), protocol.rois,
                                       protocol.timeline)
        self.bus = EventBus()
        self.events: list = []
        self._sub = self.bus.subscribe({ev.VOLUME})
        self.qc = LslFmriQcOutput(prefix, f"{prefix}-src")
        self.qc.open()
        self.engine = Engine()

    def count(self) -> int:
        """Volume events published so far (drained from the bus as a journal would)."""
        self.events.extend(self._sub.drain())
        return len(self.events)

    def line(self):
        """The sink the session builds its volume source with."""
        return volume_line("fmri", self.pipeline, self.engine, self.bus, self.qc, lambda t: None)


def _panel(app, prefix: str):
    from controller.display.panel import LslOperatorPanel

    w = LslOperatorPanel(prefix, PanelState(tr_s=TR))
    w.resize(1200, 900)
    w.show()
    return w


def _pump(app, done, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.005)


def _bus_events(rig: Rig) -> list[dict]:
    assert rig.count() == N, f"{rig.count()} of {N} volumes"
    return [e.data for e in sorted(rig.events, key=lambda e: e.data["index"])]


def test_lsl_volumes_journal_each_stage_and_delivery_is_not_pipeline_time(app, run4d, tmp_path) -> None:
    data, affine = run4d
    prefix = f"nrtest-stages-{uuid.uuid4().hex[:8]}"
    rig = Rig(tmp_path, prefix)
    outlet = VolumeOutlet(f"{prefix}-volumes", data.shape[:3], affine, TR, f"{prefix}-volumes")
    source = LslVolumeSource("fmri", outlet.name, rig.line(), stall_timeout_s=30)
    source.open(timeout_s=10)
    panel = _panel(app, prefix)
    pushed: dict[int, float] = {}
    stamps: dict[int, float] = {}
    try:
        source.start()
        assert outlet.wait_for_consumers(10)
        _pump(app, lambda: panel.poller.attached(f"{prefix}-fmri-qc"), "the panel's QC inlet")
        for i in range(1, N + 1):
            stamps[i] = pylsl.local_clock() - TR  # acquired a TR ago: a scanner sends a volume once complete
            pushed[i] = now()
            outlet.push(data[..., i - 1], i, stamps[i])
            _pump(app, lambda i=i: rig.count() >= i, f"volume {i}")
        events = _bus_events(rig)
        _pump(app, lambda: panel.state.qc.n == N, "the panel's QC rows")
        app.processEvents()
        panel.grab().toImage().save(str(tmp_path / "panel_lsl.png"))
    finally:
        panel.close()
        source.stop()
        source.join(5)
        outlet.close()
        rig.qc.close()
    assert [v["index"] for v in events] == list(range(1, N + 1))
    by_index = {e.data["index"]: e for e in rig.events}
    for v in events:
        i, t = v["index"], v["timing_ms"]
        assert v["acquisition_time"] == "known (LSL timestamp)"
        assert v["acquired"] == pytest.approx(stamps[i], abs=0.005)  # same host: clock sync ~ 0
        # each stage is there, and they are what their names say
        assert {"read", "realign", "roi", "glm", "features", "acquisition_to_arrival", "arrival_to_feedback",
                "total"} <= set(t)
        assert t["acquisition_to_arrival"] == pytest.approx(1e3 * (v["received"] - v["acquired"]), abs=1e-9)
        assert t["arrival_to_feedback"] == pytest.approx(1e3 * (by_index[i].t - v["received"]), abs=1e-9)
        assert t["total"] == pytest.approx(t["acquisition_to_arrival"] + t["arrival_to_feedback"], abs=1e-9)
        # the volume was received after it was pushed, a TR after its stamp: that TR is delivery ...
        assert v["received"] >= pushed[i] - 0.005
        assert t["acquisition_to_arrival"] >= 1e3 * (pushed[i] - stamps[i]) - 5.0
        # ... and not pipeline time: arrival -> feedback starts at the receipt, after the push
        assert t["arrival_to_feedback"] <= 1e3 * (by_index[i].t - pushed[i]) + 5.0
        staged = sum(t[k] for k in ("read", "realign", "roi", "glm", "features"))
        assert staged <= t["arrival_to_feedback"] + 1e-6
    # the panel draws the journal's pipeline time (against the TR budget) and its delivery apart
    rows = panel.state.qc.rows
    np.testing.assert_array_equal(rows[:, 0], np.arange(1, N + 1))
    np.testing.assert_allclose(rows[:, PIPELINE], [v["timing_ms"]["arrival_to_feedback"] for v in events], rtol=1e-12)
    np.testing.assert_allclose(rows[:, DELIVERY], [v["timing_ms"]["acquisition_to_arrival"] for v in events],
                               rtol=1e-12)
    counts = panel.point_counts()
    assert counts["pipeline"] == N and counts["delivery"] == N
    assert panel.tr_line in panel.p_proc.items and panel.tr_line not in panel.p_delivery.items
    assert "delivery median" in panel.status.text() and "/ TR budget 1970 ms" in panel.status.text()


def test_folder_files_say_acquisition_unknown_and_time_only_the_pipeline(app, run4d, tmp_path) -> None:
    data, affine = run4d
    prefix = f"nrtest-stages-{uuid.uuid4().hex[:8]}"
    rig = Rig(tmp_path, prefix)
    folder, staging = tmp_path / "scanner", tmp_path / "staging"
    folder.mkdir()
    staging.mkdir()
    source = FolderSource("fmri", folder, rig.line(), stall_timeout_s=30, pattern="*.nii", tr_s=TR)
    source.open(timeout_s=5)
    panel = _panel(app, prefix)
    renamed: dict[int, float] = {}
    try:
        source.start()
        _pump(app, lambda: panel.poller.attached(f"{prefix}-fmri-qc"), "the panel's QC inlet")
        for i in range(1, N + 1):
            tmp = staging / f"vol_{i:04d}.nii"
            tmp.write_bytes(nifti_bytes(data[..., i - 1], affine, TR))
            renamed[i] = now()
            os.rename(tmp, folder / tmp.name)  # written elsewhere, renamed in: as a scanner export does
            _pump(app, lambda i=i: rig.count() >= i, f"volume {i}")
        events = _bus_events(rig)
        _pump(app, lambda: panel.state.qc.n == N, "the panel's QC rows")
        app.processEvents()
        panel.grab().toImage().save(str(tmp_path / "panel_folder.png"))
    finally:
        panel.close()
        source.stop()
        source.join(5)
        rig.qc.close()
    by_index = {e.data["index"]: e for e in rig.events}
    for v in events:
        i, t = v["index"], v["timing_ms"]
        assert v["acquisition_time"].startswith("unknown")
        assert t["acquisition_to_arrival"] is None and t["total"] is None  # unknown, not zero, not a guess
        assert v["received"] >= renamed[i] - 0.005  # arrival = the file appeared
        assert t["arrival_to_feedback"] == pytest.approx(1e3 * (by_index[i].t - v["received"]), abs=1e-9)
        assert t["read"] == pytest.approx(1e3 * (v["arrived"] - v["received"]), abs=1e-9)
    rows = panel.state.qc.rows
    np.testing.assert_allclose(rows[:, PIPELINE], [v["timing_ms"]["arrival_to_feedback"] for v in events], rtol=1e-12)
    assert all(math.isnan(x) for x in rows[:, DELIVERY])
    assert panel.point_counts()["delivery"] == 0 and panel.delivery_unknown.isVisible()
    assert "delivery unknown" in panel.status.text()
