"""What the simulated scanner will write into a session's scanner folder, checked before the session starts.

Why: a folder input reads only files matching its protocol's ``pattern``. A replay whose files
match none (e.g. MOSAICs named after a synthesized series 1, ``001_000001_*.dcm``, for a protocol
reading ``001_000007_*.dcm``) would run to the end having processed nothing. The names come from
the same convention the writers use (controller/inputs/volumes/export_names.py), so the check is exact,
and it runs before the session folder exists: a session that cannot read its scanner never starts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from controller.inputs.volumes.export_names import export_file_name, name_matches
from controller.lang.compiled import Protocol, VolumeInputSpec

_LAST_NUMBER = re.compile(r"\d+(?!.*\d)")


class ExportMismatch(ValueError):
    """The simulated scanner's files can never match the input's pattern (the message names both)."""


@dataclass(frozen=True)
class ReplayExport:
    """How a replay writes a protocol's scanner export: formats, the template DICOM reused, its series."""

    formats: tuple[str, ...]
    template: Path | None = None
    series: int = 1  # MOSAIC file names carry it: the template's SeriesNumber, 1 when synthesized

    def args(self) -> list[str]:
        """The replay's command-line options for this export."""
        out = ["--format", ",".join(self.formats)]
        if self.template is not None:
            out += ["--dicom-template", str(self.template)]
        return out

    def names(self, indices: range) -> list[str]:
        """Every file name written for these acquisition indices, format by format."""
        return [export_file_name(fmt, i, self.series) for fmt in self.formats for i in indices]


def replay_export(pattern: str, replay: Path) -> ReplayExport:
    """Write what the protocol's scanner writes: MOSAIC DICOMs for a '*.dcm' pattern (reusing a DICOM of
    the same run found beside the replayed file, one matching the pattern first), else NIfTI; DICOM and
    NIfTI both for DICOM, as scanners exporting two files per TR do, so the pattern has to pick."""
    if not pattern.lower().endswith(".dcm"):
        return ReplayExport(("nifti",))
    found = sorted(replay.parent.glob("*.dcm"))
    if not found:
        return ReplayExport(("dicom", "nifti"))
    template = next((p for p in found if name_matches(p.name, pattern)), found[0])
    return ReplayExport(("dicom", "nifti"), template, dicom_series(template))


def dicom_series(path: Path) -> int:
    """A DICOM file's SeriesNumber (1 when absent, as the writer then uses)."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["SeriesNumber"])
        return int(ds.get("SeriesNumber") or 1)
    except Exception as exc:  # pydicom's errors share no base class beyond Exception
        raise ValueError(f"{path}: not a readable DICOM ({type(exc).__name__}: {exc})") from exc


def nifti_volumes(path: Path) -> int:
    """Volumes in a 4D NIfTI (1 for 3D), from its header alone."""
    import nibabel as nib

    shape = nib.load(str(path)).shape
    return int(shape[3]) if len(shape) > 3 else 1


def check_export(names: list[str], pattern: str, *, what: str, where: str, input_name: str,
                 pattern_at: str, hint: str = "") -> None:
    """Raise :class:`ExportMismatch` when no name in ``names`` matches ``pattern``."""
    if any(name_matches(n, pattern) for n in names):
        return
    raise ExportMismatch(
        f"{what} would write {_name_span(names)} into {where}, but input {input_name!r} reads only files "
        f"matching the protocol's pattern {pattern!r} ({pattern_at}): not one volume would be read. {hint}".strip())


def _name_span(names: list[str]) -> str:
    """'a1 .. a48 and b1 .. b48' for the per-format runs of names (in order)."""
    runs: list[list[str]] = []
    for n in names:
        if runs and _same_kind(runs[-1][-1], n):
            runs[-1].append(n)
        else:
            runs.append([n])
    parts = [r[0] if len(r) == 1 else f"{r[0]} .. {r[-1]}" for r in runs]
    return " and ".join(parts)


def _same_kind(a: str, b: str) -> bool:
    return _LAST_NUMBER.sub("#", a) == _LAST_NUMBER.sub("#", b)


def planned_volumes(protocol: Protocol, spec: VolumeInputSpec, replay: Path | None, volumes: int | None) -> int:
    """How many volumes the simulator or the replay will send: ``--volumes``, else the file's count (replay)
    or the dummies plus the timeline (simulator)."""
    if replay is not None:
        n = nifti_volumes(replay)
    else:
        n = spec.skip + math.ceil(sum(b.duration_s for b in protocol.timeline) / spec.tr_s - 1e-9)
    return min(n, volumes) if volumes else n


def check_sim_export(protocol: Protocol, protocol_path: Path, spec: VolumeInputSpec, pattern: str,
                     replay: Path | None, volumes: int | None, where: str) -> None:
    """Refuse (ExportMismatch) a replay (or the simulator, ``replay`` None) whose files ``pattern`` never reads."""
    n = planned_volumes(protocol, spec, replay, volumes)
    at = pattern_position(protocol_path, spec.name)
    if replay is None:
        names = [export_file_name("nifti", i) for i in range(1, n + 1)]
        check_export(names, pattern, what="the fMRI simulator", where=where, input_name=spec.name, pattern_at=at)
        return
    export = replay_export(pattern, replay)
    hint = ""
    if "dicom" in export.formats:
        beside = (f"{export.template.name}: series {export.series}" if export.template is not None
                  else f"none in {replay.parent.absolute()}: series 1")
        hint = (f"The replay names its DICOMs 001_<series>_<volume>.dcm after the series of a DICOM found beside "
                f"{replay.name} ({beside}): put one of the run's DICOMs there, or change the pattern.")
    check_export(export.names(range(1, n + 1)), pattern, what=f"--replay {replay}", where=where,
                 input_name=spec.name, pattern_at=at, hint=hint)


def pattern_position(protocol_path: Path, input_name: str) -> str:
    """FILE:LINE:COL of an input's ``volumes.pattern`` (of ``volumes`` when the pattern is the default)."""
    from controller.lang.errors import read_utf8
    from controller.lang.source import Source

    try:
        line, col = Source(read_utf8(protocol_path)[0], str(protocol_path)).position(
            ("inputs", input_name, "volumes", "pattern"))
    except (OSError, ValueError):
        return str(protocol_path)
    return f"{protocol_path}:{line}:{col}"
