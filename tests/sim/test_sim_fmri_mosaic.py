"""The simulator's MOSAIC writer and the controller's MOSAIC reader check each other.

The writer reads its template's grid with nibabel (sim/fmri/folder_out.py), the controller with its own
reader (controller/inputs/volumes/dicom.py). Each side is held to a reference the other did not compute: the
template's grid as the simulator reads it equals the NIfTI dcm2niix made of the same run (or the grid a
synthesized header was made for), and the controller reads the simulator's files on that same grid. A
bug in either reader shows here instead of being copied into the files it is tested with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy.spatial.transform import Rotation

from controller.inputs.volumes.dicom import read_dicom
from sim.fmri.folder_out import MosaicTemplate, make_writer, synth_mosaic_dataset

DATA = Path("../shared/data/fmri/opennft")
RUN = DATA / "opennft_psc_run_vols001-048_4d.nii.gz"
MOSAIC = DATA / "001_000007_000006.dcm"  # volume 6 of RUN, as the scanner exported it
needs_data = pytest.mark.skipif(not RUN.exists() or not MOSAIC.exists(),
                                reason="real OpenNFT data not found in ../shared/data/fmri/opennft")
CSA_IMAGE_HEADER = (0x0029, 0x1010)


def oblique(handed: int, voxel=(2.0, 2.5, 3.0)) -> np.ndarray:
    """An oblique grid with anisotropic voxels (row and column spacing told apart), either handedness."""
    a = np.eye(4)
    a[:3, :3] = Rotation.from_euler("xyz", [8, -12, 25], degrees=True).as_matrix() @ np.diag(
        [voxel[0], voxel[1], voxel[2] * handed])
    a[:3, 3] = [10, -20, 5]
    return a


@pytest.fixture(scope="module")
def run4d() -> tuple[np.ndarray, np.ndarray]:
    if not RUN.exists():
        pytest.skip("real OpenNFT run not found in ../shared/data/fmri/opennft")
    import nibabel as nib

    img = nib.load(str(RUN))
    return np.asarray(img.dataobj), np.asarray(img.affine, dtype=float)


@needs_data
def test_real_template_grid_is_the_runs_and_the_controller_reads_it_back(tmp_path, run4d):
    data4, affine = run4d
    template = MosaicTemplate(MOSAIC)
    # the simulator's reading against dcm2niix's (the NIfTI stores its affine in float32: ~4e-6 mm)
    assert template.shape == data4.shape[:3] == (74, 74, 36)
    assert template.per_side == 6 and template.series == 7 and template.tr_s == pytest.approx(1.97)
    assert np.abs(template.affine - affine).max() < 1e-4
    # the controller's reading of what the simulator wrote, against the template's grid
    writer = make_writer(tmp_path, "dicom", affine=affine, shape=data4.shape[:3], tr_s=1.97, template=MOSAIC)
    vol = read_dicom(writer.write(data4[..., 20], 21))
    assert vol.kind == "mosaic" and vol.index == 21 and vol.tr_s == pytest.approx(1.97)
    assert vol.data.shape == template.shape and np.array_equal(vol.data, data4[..., 20])
    assert np.abs(vol.affine - template.affine).max() < 1e-4
    assert np.abs(vol.affine - affine).max() < 1e-4


@pytest.mark.parametrize("handed", [1, -1])
def test_synthesized_template_grid_is_the_requested_one_both_ways(tmp_path, handed):
    shape = (30, 40, 7)  # tiles 40 rows x 30 columns, 3 to a side
    affine = oblique(handed)
    template = MosaicTemplate(dataset=synth_mosaic_dataset(shape, affine, 2.0))
    assert template.shape == shape and template.per_side == 3
    assert (template.rows, template.cols) == (120, 90)
    assert np.abs(template.affine - affine).max() < 1e-5
    x = np.random.default_rng(handed % 3).integers(0, 3000, shape).astype(np.uint16)
    vol = read_dicom(make_writer(tmp_path, "mosaic", affine=affine, shape=shape, tr_s=2.0).write(x, 4))
    assert vol.data.shape == shape and np.array_equal(vol.data, x)
    assert np.abs(vol.affine - template.affine).max() < 1e-5


def test_template_without_csa_header_counts_its_slices(tmp_path):
    """An anonymised template (no CSA header) still gives its grid, the one it had with the header.

    Without the header's slice normal, slices are taken to go along DICOM's row x column, as a
    Siemens series' do: in this layout, a grid of negative handedness (the real run's)."""
    shape, affine = (32, 32, 7), oblique(-1, (2.0, 2.0, 3.0))  # the tile size comes from the square matrix
    x = np.random.default_rng(5).integers(1, 3000, shape).astype(np.uint16)
    full = make_writer(tmp_path / "full", "mosaic", affine=affine, shape=shape, tr_s=2.0).write(x, 1)
    ds = pydicom.dcmread(full)
    del ds[CSA_IMAGE_HEADER]
    anonymised = tmp_path / "anonymised.dcm"
    ds.save_as(anonymised, enforce_file_format=True)
    template = MosaicTemplate(anonymised)
    assert template.shape == shape and template.per_side == 3
    assert np.abs(template.affine - affine).max() < 1e-5
    vol = read_dicom(make_writer(tmp_path / "out", "dicom", affine=affine, shape=shape, template=anonymised)
                     .write(x, 2))
    assert np.array_equal(vol.data, x) and np.abs(vol.affine - affine).max() < 1e-5


def test_template_off_the_volumes_grid_is_refused(tmp_path):
    shape, affine = (30, 40, 7), oblique(1)
    header = tmp_path / "template.dcm"
    header.write_bytes(make_writer(tmp_path / "t", "mosaic", affine=affine, shape=shape).encode(
        np.ones(shape, np.uint16), 1))
    moved = affine.copy()
    moved[:3, 3] += [0.0, 0.0, 0.5]
    with pytest.raises(ValueError, match="affine differs from the DICOM template"):
        make_writer(tmp_path / "x", "dicom", affine=moved, shape=shape, template=header)
    with pytest.raises(ValueError, match="shape"):
        make_writer(tmp_path / "y", "dicom", affine=affine, shape=(30, 40, 8), template=header)
