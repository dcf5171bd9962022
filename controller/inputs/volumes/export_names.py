"""The names scanner export files get, and which names a folder input reads.

Why one module: the simulator and the replay (sim/fmri/folder_out.py) name the files they write
with these functions, and the session checks *before it starts* that the protocol's ``pattern``
reads at least one of them (controller/session/fmri_modality.py). A name changed in one place only
would let a replay write files that no session ever reads, and the session end with nothing
processed.

Conventions: Siemens MOSAIC real-time export ``001_<series:06>_<index:06>.dcm`` (the series of
the template DICOM, 1 when the header is synthesized), enhanced DICOM ``001_000001_<index:06>.dcm``,
NIfTI ``vol_<index:06>.nii[.gz]``.
"""

from __future__ import annotations

import fnmatch

MOSAIC_FORMATS = ("dicom", "mosaic")
FORMATS = ("nifti", "nifti-gz", "dicom", "mosaic", "dicom-enhanced")


def export_file_name(fmt: str, index: int, series: int = 1) -> str:
    """The file name of volume ``index`` written in format ``fmt`` (``series``: MOSAIC only)."""
    if fmt in MOSAIC_FORMATS:
        return f"001_{int(series):06d}_{int(index):06d}.dcm"
    if fmt == "dicom-enhanced":
        return f"001_000001_{int(index):06d}.dcm"
    if fmt == "nifti":
        return f"vol_{int(index):06d}.nii"
    if fmt == "nifti-gz":
        return f"vol_{int(index):06d}.nii.gz"
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def pattern_globs(pattern: str) -> list[str]:
    """The ``;``-separated globs of a folder input's ``pattern`` (ValueError when there are none)."""
    globs = [g.strip() for g in pattern.split(";") if g.strip()]
    if not globs:
        raise ValueError("pattern is empty")
    return globs


def name_matches(name: str, pattern: str) -> bool:
    """Whether a folder input with this ``pattern`` reads a file of this name (hidden files never)."""
    if name.startswith("."):
        return False
    return any(fnmatch.fnmatchcase(name, g) for g in pattern_globs(pattern))
