"""A brain-shaped EPI phantom in MNI space with labelled regions of interest.

Why analytic: the simulator needs a volume whose geometry is known exactly (so that MNI
coordinates in a protocol land on the right voxels and simulated head motion can be checked
against realignment), with the contrasts realignment locks on to (grey/white/CSF edges, a
bright rim of CSF around the brain) and intensities like the real run in
../shared/data/fmri/opennft (brain ~600, max ~1300 on a uint16 scale).

Geometry. The voxel grid is axial, x flipped like Siemens NIfTI exports (voxel i grows
toward the participant's right-to-left, i.e. negative x in RAS+), centred on the MNI point
(0, -18, 8) mm; ``tilt_deg`` rotates the slices about x (pitch) as an oblique AC-PC
acquisition would (the real run is tilted ~17 deg). Defaults:

- ``voxel_mm=3``: 74 x 74 x 36 voxels of 3 x 3 x 3.75 mm (like the real run);
- ``voxel_mm=2``: 104 x 104 x 72 voxels of 2 x 2 x 2 mm (a multiband-sized grid).

The affine maps voxel (i, j, k) to MNI mm (RAS+); ``world_to_voxel`` is its inverse.

Tissue model (MNI mm): the cerebrum is an ellipsoid centred (0, -18, 12) with semi-axes
(68, 88, 64), flattened below z = -40; the cerebellum an ellipsoid at (0, -62, -34) with
semi-axes (50, 28, 22). Cortex is the outer 5 mm-equivalent shell, its inner boundary folded
by a 3D sinusoid (gyri); lateral ventricles are two ellipsoids at (+-12, -10, 16); deep grey
(thalamus / striatum) two ellipsoids at (+-14, -10, 4); a 3 mm CSF rim surrounds the brain.
Partial-volume tissue fractions come from 2 x 2 x 2 supersampling. EPI T2* contrast:
CSF 1.45, grey 1.0, white 0.78 (x ``scale`` = 600), times a smooth coil-sensitivity field,
blurred by a Gaussian point spread function of 0.6 voxel SD (EPI's k-space truncation; it also
keeps the image smooth enough that motion resampling and realignment are accurate to ~0.01 mm).

Regions of interest (MNI mm centre, radius mm; label value in the atlas, network):

====  ===========  =================  ======  ==========================================
 id   name         centre (x, y, z)   radius  notes
====  ===========  =================  ======  ==========================================
  1   amygdala_l   (-24,  -4, -18)     7      left amygdala (OpenNFT / MDD target)
  2   amygdala_r   ( 24,  -4, -18)     7      right amygdala
  3   acc          (  0,  38,  10)     7      pregenual / rostral ACC (CBT protocols)
  4   dacc         (  0,  20,  36)     7      dorsal ACC, salience network node
  5   sgacc        (  0,  22,  -8)     6      subgenual ACC (Fox et al. 2012)
  6   pcc          (  0, -52,  28)     8      posterior cingulate, default-mode node
  7   mpfc         (  0,  54,   0)     8      medial prefrontal, default-mode node
  8   dlpfc_l      (-44,  36,  20)     8      left DLPFC, central-executive node
  9   dlpfc_r      ( 44,  36,  20)     8      right DLPFC, central-executive node
 10   ppc_l        (-40, -56,  46)     8      left posterior parietal, central-executive
 11   ppc_r        ( 40, -56,  46)     8      right posterior parietal, central-executive
 12   insula_l     (-36,  18,   2)     7      left anterior insula, salience network node
 13   insula_r     ( 36,  18,   2)     7      right anterior insula, salience network node
====  ===========  =================  ======  ==========================================

Inside a ROI sphere the tissue is grey matter. ``write_atlas`` writes ``sim_fmri_atlas.nii.gz``
(the label map), ``sim_fmri_anatomy.nii.gz`` (the noise-free reference volume) and
``sim_fmri_labels.tsv`` (id, name, network, x, y, z, radius_mm, voxels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Roi:
    """A labelled sphere in MNI space."""

    label: int
    name: str
    centre_mm: tuple[float, float, float]
    radius_mm: float
    network: str


ROIS: tuple[Roi, ...] = (
    Roi(1, "amygdala_l", (-24.0, -4.0, -18.0), 7.0, "limbic"),
    Roi(2, "amygdala_r", (24.0, -4.0, -18.0), 7.0, "limbic"),
    Roi(3, "acc", (0.0, 38.0, 10.0), 7.0, "cingulate"),
    Roi(4, "dacc", (0.0, 20.0, 36.0), 7.0, "salience"),
    Roi(5, "sgacc", (0.0, 22.0, -8.0), 6.0, "cingulate"),
    Roi(6, "pcc", (0.0, -52.0, 28.0), 8.0, "dmn"),
    Roi(7, "mpfc", (0.0, 54.0, 0.0), 8.0, "dmn"),
    Roi(8, "dlpfc_l", (-44.0, 36.0, 20.0), 8.0, "cen"),
    Roi(9, "dlpfc_r", (44.0, 36.0, 20.0), 8.0, "cen"),
    Roi(10, "ppc_l", (-40.0, -56.0, 46.0), 8.0, "cen"),
    Roi(11, "ppc_r", (40.0, -56.0, 46.0), 8.0, "cen"),
    Roi(12, "insula_l", (-36.0, 18.0, 2.0), 7.0, "salience"),
    Roi(13, "insula_r", (36.0, 18.0, 2.0), 7.0, "salience"),
)
ROI_BY_NAME = {r.name: r for r in ROIS}
NETWORKS = ("dmn", "cen", "salience")

GRIDS = {  # voxel_mm -> (shape, voxel sizes mm)
    3.0: ((74, 74, 36), (3.0, 3.0, 3.75)),
    2.0: ((104, 104, 72), (2.0, 2.0, 2.0)),
}
GRID_CENTRE_MM = (0.0, -18.0, 8.0)
INTENSITY = {"csf": 1.45, "grey": 1.0, "white": 0.78}
SCALE = 600.0
PSF_SIGMA_VOX = 0.6  # Gaussian point spread (voxels; FWHM 1.4 voxels)

ATLAS_NAME = "sim_fmri_atlas.nii.gz"
ANATOMY_NAME = "sim_fmri_anatomy.nii.gz"
LABELS_NAME = "sim_fmri_labels.tsv"


@dataclass(frozen=True)
class Phantom:
    """The noise-free head: intensity, tissue fractions and ROI labels on one voxel grid."""

    affine: np.ndarray  # voxel -> MNI mm (4x4)
    intensity: np.ndarray  # float32 (nx, ny, nz), the baseline EPI image
    grey: np.ndarray  # float32 grey-matter fraction
    white: np.ndarray  # float32 white-matter fraction
    csf: np.ndarray  # float32 CSF fraction (ventricles and the rim around the brain)
    labels: np.ndarray  # int16 ROI label per voxel (0 = none); see ROIS
    rois: tuple[Roi, ...] = field(default=ROIS)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.intensity.shape)  # type: ignore[return-value]

    @property
    def brain(self) -> np.ndarray:
        """Boolean mask of voxels that are mostly tissue (grey + white > 0.5)."""
        return (self.grey + self.white) > 0.5

    def roi_mask(self, name: str) -> np.ndarray:
        return self.labels == ROI_BY_NAME[name].label

    def world_to_voxel(self, xyz_mm: np.ndarray) -> np.ndarray:
        """MNI mm points (..., 3) -> continuous voxel coordinates (..., 3)."""
        inv = np.linalg.inv(self.affine)
        pts = np.asarray(xyz_mm, dtype=float)
        return pts @ inv[:3, :3].T + inv[:3, 3]

    def voxel_to_world(self, ijk: np.ndarray) -> np.ndarray:
        pts = np.asarray(ijk, dtype=float)
        return pts @ self.affine[:3, :3].T + self.affine[:3, 3]

    def crop_slices(self, pad: int) -> Phantom:
        """The phantom without ``pad`` slices at each end of k (the acquired slab inside a taller head)."""
        if pad <= 0:
            return self
        shift = np.eye(4)
        shift[2, 3] = pad
        cut = (slice(None), slice(None), slice(pad, -pad))
        return Phantom(affine=self.affine @ shift, intensity=self.intensity[cut], grey=self.grey[cut],
                       white=self.white[cut], csf=self.csf[cut], labels=self.labels[cut], rois=self.rois)


def grid_affine(voxel_mm: float = 3.0, tilt_deg: float = 0.0,
                pad_slices: int = 0) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and voxel->MNI affine of the default grid for ``voxel_mm`` (3 or 2), x flipped, tilted about x.

    ``pad_slices`` adds that many slices at both ends (same centre): the head beyond the slab.
    """
    key = float(voxel_mm)
    if key not in GRIDS:
        raise ValueError(f"voxel size must be one of {sorted(GRIDS)} mm, got {voxel_mm}")
    shape, sizes = GRIDS[key]
    shape = (shape[0], shape[1], shape[2] + 2 * int(pad_slices))
    t = np.deg2rad(tilt_deg)
    rot = np.array([[1.0, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    lin = rot @ np.diag([-sizes[0], sizes[1], sizes[2]])
    centre_vox = (np.array(shape) - 1) / 2.0
    affine = np.eye(4)
    affine[:3, :3] = lin
    affine[:3, 3] = np.array(GRID_CENTRE_MM) - lin @ centre_vox
    return shape, affine


def _ellipsoid_r(p: np.ndarray, centre: tuple[float, ...], axes: tuple[float, ...]) -> np.ndarray:
    """Normalised ellipsoid radius (1 on the surface) of points (..., 3)."""
    q = (p - np.asarray(centre)) / np.asarray(axes)
    return np.sqrt((q * q).sum(axis=-1))


def _tissue_at(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indicator (grey, white, csf) of MNI points (..., 3) as float32 arrays."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    r_cer = _ellipsoid_r(p, (0.0, -18.0, 12.0), (68.0, 88.0, 64.0))
    r_cer = np.where(z < -40.0, np.maximum(r_cer, 1.0 + (-40.0 - z) / 8.0), r_cer)  # flat temporal base
    r_cb = _ellipsoid_r(p, (0.0, -62.0, -34.0), (50.0, 28.0, 22.0))
    r = np.minimum(r_cer, r_cb)
    inside = r < 1.0
    folds = np.sin(x / 7.0) * np.sin(y / 8.0 + 1.0) * np.sin(z / 6.5 + 2.0)
    cortex_depth = 0.09 + 0.07 * folds  # inner boundary of the cortex, in normalised radius
    grey = inside & (r > 1.0 - cortex_depth)
    sulci = grey & (np.abs(np.sin(x / 9.0 + 0.5 * np.sin(y / 13.0)) * np.sin(y / 11.0 + 0.5 * np.sin(z / 10.0))) > 0.93)
    fissure = inside & (np.abs(x) < 1.5) & (z > 4.0 + 0.2 * np.abs(y + 18.0)) & (r_cer > 0.45)
    # cerebellum: mostly grey with a white core
    grey |= (r_cb < 1.0) & (r_cb > 0.55)
    vent = np.minimum(_ellipsoid_r(p, (-12.0, -10.0, 16.0), (6.0, 26.0, 9.0)),
                      _ellipsoid_r(p, (12.0, -10.0, 16.0), (6.0, 26.0, 9.0))) < 1.0
    deep = np.minimum(_ellipsoid_r(p, (-14.0, -10.0, 4.0), (9.0, 14.0, 9.0)),
                      _ellipsoid_r(p, (14.0, -10.0, 4.0), (9.0, 14.0, 9.0))) < 1.0
    grey |= inside & deep & ~vent
    csf = (inside & (vent | sulci | fissure)) | ((r >= 1.0) & (r < 1.0 + 3.0 / 70.0))
    grey &= ~csf
    white = inside & ~grey & ~csf
    return grey.astype(np.float32), white.astype(np.float32), csf.astype(np.float32)


def make_phantom(voxel_mm: float = 3.0, tilt_deg: float = 0.0, scale: float = SCALE,
                 supersample: int = 2, pad_slices: int = 0, psf_sigma_vox: float = PSF_SIGMA_VOX) -> Phantom:
    """Build the phantom on the default grid for ``voxel_mm`` (see the module docstring).

    ``pad_slices`` > 0 builds a taller head (that many extra slices above and below); the
    simulator moves that and samples the slab from it, so motion brings real tissue into the
    top and bottom slices instead of empty space. ``crop_slices`` gives the slab itself.
    """
    shape, affine = grid_affine(voxel_mm, tilt_deg, pad_slices)
    s = max(1, int(supersample))
    offsets = (np.arange(s) + 0.5) / s - 0.5
    ii, jj, kk = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    grey = np.zeros(shape, np.float32)
    white = np.zeros(shape, np.float32)
    csf = np.zeros(shape, np.float32)
    lin, off = affine[:3, :3].astype(np.float32), affine[:3, 3].astype(np.float32)
    for a in offsets:
        for b in offsets:
            for c in offsets:
                vox = np.stack([ii + a, jj + b, kk + c], axis=-1)
                g, w, f = _tissue_at(vox @ lin.T + off)
                grey += g
                white += w
                csf += f
    n = float(s**3)
    grey /= n
    white /= n
    csf /= n
    centres = np.stack([ii, jj, kk], axis=-1) @ lin.T + off
    labels = np.zeros(shape, np.int16)
    for roi in ROIS:
        d = np.linalg.norm(centres - np.asarray(roi.centre_mm, np.float32), axis=-1)
        inside = d <= roi.radius_mm
        labels[inside] = roi.label
        tissue = grey[inside] + white[inside]
        grey[inside] = tissue  # ROI spheres are grey matter
        white[inside] = 0.0
    # smooth receive-coil sensitivity: brighter toward the back and the top, +-12 %
    rel = (centres - np.asarray(GRID_CENTRE_MM, np.float32)) / 100.0
    bias = 1.0 + 0.08 * rel[..., 1] * -1.0 + 0.06 * rel[..., 2] + 0.04 * rel[..., 0] ** 2
    intensity = scale * bias * (INTENSITY["grey"] * grey + INTENSITY["white"] * white + INTENSITY["csf"] * csf)
    if psf_sigma_vox > 0:  # the EPI point spread function: k-space truncation blurs edges over ~1.4 voxels
        intensity = ndimage.gaussian_filter(intensity, psf_sigma_vox, mode="nearest")
    return Phantom(affine=affine, intensity=intensity.astype(np.float32), grey=grey, white=white, csf=csf,
                   labels=labels)


def roi_table(phantom: Phantom) -> list[dict[str, object]]:
    """One row per ROI: id, name, network, MNI centre, radius and voxel count on this grid."""
    counts = np.bincount(phantom.labels.ravel(), minlength=len(ROIS) + 1)
    return [{"id": r.label, "name": r.name, "network": r.network, "x": r.centre_mm[0], "y": r.centre_mm[1],
             "z": r.centre_mm[2], "radius_mm": r.radius_mm, "voxels": int(counts[r.label])} for r in phantom.rois]


def write_atlas(phantom: Phantom, folder: str | Path) -> dict[str, Path]:
    """Write the label map, the noise-free anatomy and the labels TSV into ``folder``; returns the paths."""
    import nibabel as nib

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"atlas": out / ATLAS_NAME, "anatomy": out / ANATOMY_NAME, "labels": out / LABELS_NAME}
    nib.save(nib.Nifti1Image(phantom.labels, phantom.affine), paths["atlas"])
    nib.save(nib.Nifti1Image(phantom.intensity, phantom.affine), paths["anatomy"])
    rows = roi_table(phantom)
    cols = list(rows[0])
    lines = ["\t".join(cols)] + ["\t".join(f"{row[c]:g}" if isinstance(row[c], float) else str(row[c])
                                           for c in cols) for row in rows]
    paths["labels"].write_text("\n".join(lines) + "\n")
    return paths
