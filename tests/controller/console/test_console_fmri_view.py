"""The console's fMRI slice view and live page, offscreen: volumes written by the fMRI simulator (MNI-space
phantom) and the real OpenNFT run (../shared/data/fmri/opennft), ROIs built by the session's own loader
from protocols/amygdala_mdd.yaml and protocols/opennft_psc_replay.yaml.

Asserted: overlay pixels are exactly the ROI's voxels on each slice (checked against the loader's voxel
list and, for the real masks, against nibabel's own reorientation of the mask files), the default slice
position is the first ROI's centre of mass, the grey window is the 2nd-98th percentile, a mouse click
moves the crosshair and the other planes, a newest file still being written is skipped and the previous
volume kept. Screenshots go to tmp_path (and to docs/img/console_fmri_slices.png with NEUROREFLEX_WRITE_DOCS_IMG=1).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest

os.environ["QT_QPA_PLATFORM"] = "offscreen"
pytest.importorskip("PySide6", reason="the gui extra is not installed: pip install -e '.[gui,test]'")
pytest.importorskip("pyqtgraph", reason="the gui extra is not installed: pip install -e '.[gui,test]'")

import nibabel as nib  # noqa: E402
from PySide6 import QtCore, QtGui  # noqa: E402

from controller.console.fmri_page import FmriLivePage  # noqa: E402
from controller.console.slice_model import (  # noqa: E402
    PLANE_AXES,
    Frame,
    NewestVolume,
    ProtocolMasks,
    SliceModel,
    window_levels,
)
from controller.console.slice_view import FILL_ALPHA, OUTLINE_ALPHA, SliceView  # noqa: E402
from controller.display.model import PanelState  # noqa: E402
from controller.display.panel import LslOperatorPanel  # noqa: E402
from controller.display.qt import application  # noqa: E402
from controller.display.screenshots import fake_run  # noqa: E402
from controller.fmri.pipeline import build_roi, load_registration  # noqa: E402
from controller.protocol.loader import load_protocol  # noqa: E402
from sim.fmri.folder_out import VolumeFolderWriter, nifti_bytes  # noqa: E402
from sim.fmri.simulator import FmriSimulator  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
AMYGDALA = ROOT / "protocols" / "amygdala_mdd.yaml"
OPENNFT_PROTOCOL = ROOT / "protocols" / "opennft_psc_replay.yaml"
OPENNFT = ROOT.parent / "shared" / "data" / "fmri" / "opennft"
DOCS_PNG = ROOT / "docs" / "img" / "console_fmri_slices.png"
TR = 2.0


@pytest.fixture(scope="module")
def app():
    return application()


@pytest.fixture(scope="module")
def sim_volumes() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Three simulated volumes (MNI grid, 3 mm), their affine and the phantom's left-amygdala label mask."""
    sim = FmriSimulator.build(TR, seed=11)
    vols = [sim.next_volume().data for _ in range(3)]
    return vols, sim.phantom.affine, sim.phantom.roi_mask("amygdala_l")


@pytest.fixture(scope="module")
def amygdala():
    return load_protocol(AMYGDALA)


def sim_model(sim_volumes, amygdala, index: int = 0) -> SliceModel:
    vols, affine, _ = sim_volumes
    model = SliceModel(ProtocolMasks(amygdala))
    model.set_volume(Frame(vols[index], affine, index + 1))
    return model


def loader_roi(protocol, name, shape, affine):
    spec = next(iter(protocol.volume_inputs.values()))
    return build_roi(protocol.rois[name], shape, affine, load_registration(spec))


def pump(app, n: int = 5) -> None:
    for _ in range(n):
        app.processEvents()


def snapshot(widget, path: Path) -> QtGui.QImage:
    image = widget.grab().toImage()
    assert image.save(str(path)), path
    assert path.stat().st_size > 5000
    return image


# ---------------------------------------------------------------------------------------------- the model
def test_overlay_voxels_are_the_roi_voxels_on_each_slice(sim_volumes, amygdala):
    vols, affine, phantom_amygdala = sim_volumes
    model = sim_model(sim_volumes, amygdala)
    assert model.roi_names == ["amygdala_l"] and model.mask_error == ""
    roi = loader_roi(amygdala, "amygdala_l", vols[0].shape, affine)
    # each ROI voxel (source grid) -> its display voxel, through world mm (independent of the orientation code)
    to_display = np.linalg.solve(model.grid.affine, affine)
    abc = np.rint(roi.ijk @ to_display[:3, :3].T + to_display[:3, 3]).astype(int)
    assert int(model.masks["amygdala_l"].sum()) == roi.n_voxels
    for name, plane in model.planes().items():
        fixed, au, av = PLANE_AXES[name]
        on_slice = abc[abc[:, fixed] == plane.index]
        assert len(on_slice) > 0, name  # the default position cuts the ROI in every plane
        expected = np.zeros(plane.image.shape, bool)
        expected[on_slice[:, au], on_slice[:, av]] = True
        np.testing.assert_array_equal(plane.masks["amygdala_l"], expected, err_msg=name)
        # the outline: the mask's pixels with a 4-neighbour outside the mask (or off the slice)
        edge = plane.outlines["amygdala_l"]
        nu, nv = expected.shape
        border = {(i, j) for i, j in np.argwhere(expected)
                  if any(not (0 <= i + di < nu and 0 <= j + dj < nv) or not expected[i + di, j + dj]
                         for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)))}
        assert border and {tuple(p) for p in np.argwhere(edge)} == border
    # the protocol's MNI sphere lands on the phantom's left amygdala (both in MNI mm; centres 3.7 mm apart)
    inside = phantom_amygdala[tuple(roi.ijk.T)]
    assert inside.mean() > 0.6


def test_default_position_is_the_first_roi_centre_of_mass(sim_volumes, amygdala):
    vols, affine, _ = sim_volumes
    model = sim_model(sim_volumes, amygdala)
    com = np.argwhere(model.masks["amygdala_l"]).mean(axis=0)
    assert model.position == tuple(int(x) for x in np.rint(com))
    roi = loader_roi(amygdala, "amygdala_l", vols[0].shape, affine)
    # in world mm: within half a voxel (per axis) of the loader's centroid, near the protocol's MNI centre
    half = np.abs(affine[:3, :3]).sum(axis=1) / 2 + 1e-6
    assert np.all(np.abs(model.position_mm - roi.centroid_mm()) <= half)
    assert np.linalg.norm(model.position_mm - np.array([-21.0, -5.0, -16.0])) < 4.0
    planes = model.planes()
    assert [planes[n].index for n in ("sagittal", "coronal", "axial")] == list(model.position)
    assert planes["axial"].cross == model.position[:2]
    assert planes["axial"].sides == ("L", "R", "P", "A")
    # a new volume on the same grid keeps the position; the operator's choice survives new volumes
    model.set_position((10, 20, 5))
    model.set_volume(Frame(vols[1], affine, 2))
    assert model.position == (10, 20, 5)
    model.reset_position()
    assert model.position == tuple(int(x) for x in np.rint(com))


def test_window_is_the_2nd_to_98th_percentile(sim_volumes, amygdala):
    vols, affine, _ = sim_volumes
    model = sim_model(sim_volumes, amygdala)
    lo, hi = np.percentile(vols[0], [2, 98])
    assert model.window == pytest.approx((lo, hi))
    assert window_levels(vols[0]) == pytest.approx((lo, hi))
    axial = model.plane("axial")
    raw = model.volume[:, :, axial.index]
    np.testing.assert_allclose(axial.image, np.clip((raw - lo) / (hi - lo), 0, 1), atol=1e-6)
    # over the whole volume about 2 % of the voxels saturate white (the noise makes values continuous)
    whole = np.clip((vols[0] - lo) / (hi - lo), 0, 1)
    assert 0.015 < np.mean(whole >= 1.0) < 0.025
    assert axial.image.dtype == np.float32 and axial.image.min() >= 0 and axial.image.max() <= 1


def test_real_run_and_its_mask_files_match_nibabel(app):
    """The real OpenNFT volume (MOSAIC DICOM read from its folder) and its lROI/rROI mask files."""
    if not OPENNFT.is_dir():
        pytest.skip(f"{OPENNFT} is absent (the shared real-data folder)")
    protocol = load_protocol(OPENNFT_PROTOCOL)
    reader = NewestVolume(OPENNFT, protocol.volume_inputs["fmri"].source.pattern)
    frame = reader.poll()
    assert frame is not None and frame.index == 6 and frame.data.shape == (74, 74, 36)
    assert reader.poll() is None  # nothing newer: no second decode
    assert reader.reads == 1
    model = SliceModel(ProtocolMasks(protocol))
    model.set_volume(frame)
    assert model.roi_names == ["lroi", "rroi"]
    template = nib.as_closest_canonical(nib.load(str(OPENNFT / "fanon-0007-00006-000006-01.nii")))
    np.testing.assert_array_equal(model.volume, np.asarray(template.dataobj, dtype=np.float32))
    for name, file in (("lroi", "lROI_1.nii"), ("rroi", "rROI_2.nii")):
        canon = np.asarray(nib.as_closest_canonical(nib.load(str(OPENNFT / file))).dataobj) > 0
        assert int(model.masks[name].sum()) == {"lroi": 83, "rroi": 106}[name]
        for plane_name, plane in model.planes().items():
            fixed = PLANE_AXES[plane_name][0]
            np.testing.assert_array_equal(plane.masks[name], np.take(canon, plane.index, axis=fixed))
    # the mosaic tiles the masks the same way: every ROI voxel on the chosen slices, once
    mosaic = model.mosaic(12, 6)
    assert mosaic.image.shape == (6 * 74, 2 * 74)
    canon_l = np.asarray(nib.as_closest_canonical(nib.load(str(OPENNFT / "lROI_1.nii"))).dataobj) > 0
    assert int(mosaic.masks["lroi"].sum()) == int(canon_l[:, :, list(mosaic.slices)].sum())
    # the run's native masks cannot be laid on another grid: the label says so, the volume still shows
    other = SliceModel(ProtocolMasks(protocol))
    other.set_volume(Frame(frame.data, np.diag([-3.0, 3.0, 3.75, 1.0]), 7))
    assert other.masks == {} and other.volume is not None
    assert "ROI 'lroi'" in other.label() and "does not match the functional grid" in other.label()


# ---------------------------------------------------------------------------------------------- the widget
def test_view_paints_the_overlay_and_a_click_moves_the_crosshair(app, qtbot, sim_volumes, amygdala, tmp_path):
    vols, affine, _ = sim_volumes
    model = sim_model(sim_volumes, amygdala)
    view = SliceView(model)
    qtbot.addWidget(view)
    view.resize(1200, 520)
    view.show()
    qtbot.waitExposed(view)
    view.refresh()
    pump(app)
    # the legend names the ROI in its colour; the label gives the volume index
    assert view.legend_entries() == [("amygdala_l", "#ff3b30")]
    assert "amygdala_l" in view.legend.text() and "#ff3b30" in view.legend.text()
    assert view.label.text().startswith("volume 1")
    # overlay pixels: opaque on the outline, translucent inside, clear outside, in the ROI's colour
    axial = model.plane("axial")
    rgba = view.boxes["axial"].overlays["amygdala_l"].image
    alpha = rgba[..., 3]
    np.testing.assert_array_equal(alpha > 0, axial.masks["amygdala_l"])
    assert set(np.unique(alpha[axial.outlines["amygdala_l"]])) == {OUTLINE_ALPHA}
    inner = axial.masks["amygdala_l"] & ~axial.outlines["amygdala_l"]
    assert set(np.unique(alpha[inner])) <= {FILL_ALPHA}
    assert tuple(rgba[axial.masks["amygdala_l"]][0, :3]) == (0xff, 0x3b, 0x30)
    np.testing.assert_array_equal(view.boxes["axial"].image.image, axial.image)
    assert tuple(view.boxes["axial"].image.levels) == (0.0, 1.0)
    snapshot(view, tmp_path / "slices_before_click.png")

    # a real mouse click on the axial plane at voxel (u, v): sagittal and coronal slices move there
    a, b, c = model.position
    u, v = a - 9, b + 7
    box = view.boxes["axial"]
    widget_point = view.graphics.mapFromScene(view.scene_point("axial", u + 0.5, v + 0.5))
    qtbot.mouseClick(view.graphics.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=widget_point)
    pump(app)
    assert model.position == (u, v, c) and model.moved
    du, dv = box.pixel_mm
    assert box.vline.value() == pytest.approx((u + 0.5) * du)
    assert box.hline.value() == pytest.approx((v + 0.5) * dv)
    planes = model.planes()
    assert planes["sagittal"].index == u and planes["coronal"].index == v and planes["axial"].index == c
    assert view.boxes["coronal"].vline.value() == pytest.approx((u + 0.5) * du)
    mm = model.position_mm
    assert f"x {mm[0]:.1f} y {mm[1]:.1f} z {mm[2]:.1f} mm" in view.label.text()
    # a click on the sagittal plane moves (b, c) and keeps a
    view.click("sagittal", b + 0.2, c - 3 + 0.7)
    assert model.position == (u, b, c - 3)
    snapshot(view, tmp_path / "slices_after_click.png")

    view.set_mosaic(True)
    pump(app)
    mosaic = model.mosaic(view.mosaic_slices, view.mosaic_columns)
    np.testing.assert_array_equal(view.mosaic_box.image.image, mosaic.image)
    assert (view.mosaic_box.overlays["amygdala_l"].image[..., 3] > 0).sum() == mosaic.masks["amygdala_l"].sum()
    snapshot(view, tmp_path / "slices_mosaic.png")


def test_partial_newest_file_is_skipped_and_the_previous_volume_kept(app, qtbot, sim_volumes, amygdala, tmp_path):
    vols, affine, _ = sim_volumes
    folder = tmp_path / "scanner_export"
    writer = VolumeFolderWriter(folder, "nifti", affine=affine, tr_s=TR)
    writer.write(vols[0], 1)
    page = FmriLivePage(poll_ms=60_000)  # polled by hand here
    qtbot.addWidget(page)
    page.configure(AMYGDALA, folder)
    assert page.reader is not None and page.reader.pattern == "*.dcm"  # the protocol's own pattern...
    page.reader.pattern = "*.nii"  # ...and the simulator wrote NIfTI here
    assert page.poll_volume() and page.model.frame.index == 1
    assert page.poll_volume() is False  # nothing new: the file is not decoded again
    assert page.reader.reads == 1

    raw = nifti_bytes(vols[1], affine, TR)
    partial = folder / "vol_000002.nii"
    partial.write_bytes(raw[: len(raw) // 2])  # the scanner is still writing it
    assert page.poll_volume() is False
    assert page.model.frame.index == 1
    np.testing.assert_array_equal(page.model.frame.data, vols[0].astype(np.float32))
    assert "vol_000002.nii: still being written" in page.slices.label.text()
    assert page.poll_volume() is False and page.reader.reads == 2  # same partial file: not read again

    partial.write_bytes(raw)
    assert page.poll_volume() is True
    assert page.model.frame.index == 2 and "still being written" not in page.slices.label.text()
    np.testing.assert_allclose(page.model.frame.data, vols[1], atol=1e-4)

    # a console started while the newest file is incomplete shows the one before it
    (folder / "vol_000003.nii").write_bytes(nifti_bytes(vols[2], affine, TR)[:1000])
    fresh = NewestVolume(folder, "*.nii")
    frame = fresh.poll()
    assert frame is not None and frame.index == 2 and "vol_000003.nii" in fresh.skipped


def test_page_embeds_the_operator_panel_and_the_slices(app, qtbot, sim_volumes, amygdala, tmp_path):
    """The page as the console shows it; its screenshot is the one in docs/img."""
    vols, affine, _ = sim_volumes
    folder = tmp_path / "scanner_export"
    VolumeFolderWriter(folder, "nifti", affine=affine, tr_s=TR).write(vols[2], 3)
    run = fake_run()
    state = PanelState(fd_threshold_mm=0.5)
    state.target = run.target
    state.on_markers(run.markers, run.markers_t)
    state.on_qc(run.qc, run.qc_t)
    state.on_feedback(run.feedback, run.feedback_t)
    page = FmriLivePage(panel_state=state, poll_ms=60_000)
    qtbot.addWidget(page)
    page.configure(amygdala, folder)
    page.reader.pattern = "*.nii"
    assert page.poll_volume()
    assert page.panel.state is state and page.panel.state.tr_s_option == 2.0  # the protocol's TR for the budget
    page.resize(1800, 900)
    page.show()
    qtbot.waitExposed(page)
    page.refresh()
    pump(app, 10)
    counts = page.panel.point_counts()
    assert counts["tx"] == len(run.qc) and counts["feedback"] == len(run.feedback)
    assert page.slices.label.text().startswith("volume 3  |  written ")
    image = snapshot(page, tmp_path / "console_fmri_slices.png")
    if os.environ.get("NEUROREFLEX_WRITE_DOCS_IMG"):  # refreshing the README's picture is a deliberate act
        DOCS_PNG.parent.mkdir(parents=True, exist_ok=True)
        assert image.save(str(DOCS_PNG))
    # the ROI's red is on screen in the slice half of the page
    slice_half = image.copy(image.width() // 2, 0, image.width() // 2, image.height())
    ptr = slice_half.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    pixels = np.frombuffer(ptr.constBits(), np.uint8).reshape(ptr.height(), ptr.bytesPerLine())[:, :ptr.width() * 3]
    rgb = pixels.reshape(ptr.height(), ptr.width(), 3).astype(int)
    reddish = (rgb[..., 0] > 180) & (rgb[..., 1] < 110) & (rgb[..., 2] < 110)
    assert reddish.sum() > 50


def test_page_follows_the_sessions_qc_outlet(app, qtbot):
    """With a stream base the page embeds the LSL panel unchanged: QC rows pushed on a real outlet show."""
    pylsl = pytest.importorskip("pylsl")
    base = f"nrtest-console-fmri-{uuid.uuid4().hex[:8]}"
    info = pylsl.StreamInfo(f"{base}-fmri-qc", "QC", 10, pylsl.IRREGULAR_RATE, "double64", f"{base}-qc-src")
    outlet = pylsl.StreamOutlet(info)
    page = FmriLivePage(stream_base=base, poll_ms=60_000)
    qtbot.addWidget(page)
    assert isinstance(page.panel, LslOperatorPanel)
    # resolving by name on a loopback crowded with other test sessions' streams took > 30 s once in CI (2 CPUs,
    # two workers); the wait says what was visible if it ever runs out
    try:
        qtbot.waitUntil(outlet.have_consumers, timeout=90_000)
    except Exception:
        seen = sorted(i.name() for i in pylsl.resolve_streams(2.0))
        raise AssertionError(f"the panel never connected to {base}-fmri-qc; {len(seen)} streams visible: "
                             f"{seen[:20]}") from None
    t0 = pylsl.local_clock()
    for i in range(4):
        outlet.push_sample([i + 1, 0.1 * i, 0, 0, 0, 0, 0, 0.2, 30.0, float("nan")], t0 + 2.0 * i)
    qtbot.waitUntil(lambda: page.panel.state.qc.n == 4, timeout=30_000)
    assert page.panel.point_counts()["tx"] == 4
    assert "volume 4" in page.panel.status.text()
    page.close()
