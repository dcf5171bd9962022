"""The fMRI parts of a protocol file: volume inputs, ROIs and runs.

Kept apart from :mod:`controller.protocol.raw` (which imports this module once its basic
types exist) so the EEG language stays readable. Volume counts are written as ``3 TR`` or
``3 volumes`` (or a bare integer), because fMRI designs are counted in volumes. The per-volume
feature kinds (roi_psc, ...) declare themselves in ``controller.features.kinds``, like every kind.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator

from controller.lang import units
from controller.lang.fields import Decl, Duration, Level, Name, StreamDecl, VolumeCount, fail
from controller.lang.fields import quantity_schema as _quantity_schema


def _length(*, positive: bool):
    def check(value: Any) -> float:
        try:
            q = units.parse_quantity(value, units.LENGTH)
        except units.UnitError as exc:
            fail(str(exc))
        if q.value < 0 or (positive and q.value == 0):
            fail(f"must be above 0, got {units.shown(value)}")
        return q.value * 1000.0  # mm: the unit of NIfTI affines

    return check


LengthMm = Annotated[
    float,
    BeforeValidator(_length(positive=True)),
    WithJsonSchema(_quantity_schema(units.LENGTH, ["7 mm", "6 mm"], "A length with its unit: mm, cm or m.")),
]


def _mm(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        fail(f"expected a coordinate in mm like -24 or '-24 mm', got {units.shown(value)}")
    if isinstance(value, str):
        return _length(positive=False)(value) if value.strip().endswith("m") else float(value)
    return float(value)


CoordinateMm = Annotated[float, BeforeValidator(_mm), WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string"}]})]


class VolumeSourceDecl(Decl):
    """Where volumes come from: a scanner's export folder, or an LSL stream of volumes."""

    folder: str | None = Field(None, description="The scanner's real-time export folder (absolute, or relative to the protocol file). The CLI's --volumes-folder overrides it.")
    pattern: str = Field("*", description="Glob of the files that are volumes, e.g. '*.dcm' (two files per TR: name the one to use).")
    index: str | None = Field(None, description="Regular expression whose first group is the volume number in a NIfTI file name, e.g. 'vol_(\\d+)'. DICOM files carry their own.")
    existing: Literal["skip", "process", "refuse"] = Field(
        "skip", description="Files already in the folder when the session starts (the scanner already running, or "
                            "an earlier run): skip them with a warning (default; the timeline is placed by the "
                            "volumes that come next), process them in name order, or refuse to start.")
    poll: Duration | None = Field(None, description="Poll the folder at this interval instead of waiting for file events (network shares), e.g. 100 ms.")
    stream: StreamDecl | None = Field(None, description="An LSL stream of volumes (docs/lsl_volumes.md), e.g. {type: fMRI}.")

    @model_validator(mode="after")
    def _one_source(self) -> VolumeSourceDecl:
        if (self.folder is None) == (self.stream is None):
            fail("give exactly one of folder (the scanner's export folder) or stream (an LSL stream of volumes)")
        return self


class DetrendDecl(Decl):
    """The cumulative GLM that removes drift and motion from each ROI's series, volume by volume."""

    drift: int = Field(2, ge=0, le=5, strict=True, description="Polynomial drift order (0 = constant only).")
    motion: bool = Field(True, description="Include the 6 realignment parameters as regressors.")
    spikes: bool = Field(False, description="Remove spikes with a Kalman-style outlier filter before the GLM.")


class VolumeInputDecl(Decl):
    """An fMRI input: volumes from a folder or an LSL stream, realigned and detrended per volume."""

    volumes: VolumeSourceDecl = Field(description="The volume source: {folder: ..., pattern: '*.dcm'} or {stream: {type: fMRI}}.")
    tr: Duration = Field(description="Repetition time, e.g. 2 s (checked against the source).")
    skip: VolumeCount = Field(0, description="Dummy volumes at the start that are not used (before steady state), e.g. 5 TR.")
    reference: str = Field("first", description="Realignment reference: 'first' (the first volume after skip) or a NIfTI file (e.g. the EPI template).")
    smoothing: LengthMm | None = Field(None, description="Gaussian smoothing FWHM, e.g. 6 mm (omit for none).")
    registration: str = Field("identity", description="Functional world -> MNI: 'identity' (data already in MNI space) or a text file with a 4x4 affine; used by ROIs with space: mni.")
    detrend: DetrendDecl = Field(default_factory=DetrendDecl, description="Drift/motion removal per ROI series.")
    stall: Duration | None = Field(None, description="No volume for this long means the input stalled (default: 2 TR + 1 s).")
    resolve_timeout: Duration = Field("30 s", validate_default=True, description="How long to wait for the source at start.")


class SphereDecl(Decl):
    center: Annotated[tuple[CoordinateMm, CoordinateMm, CoordinateMm], Field(description="Centre [x, y, z] in mm, e.g. [-24, -4, -18].")]
    radius: LengthMm = Field(description="Radius, e.g. 7 mm.")


class RoiDecl(Decl):
    """A region of interest: a mask file (with an optional atlas label) or a sphere, in native or MNI space."""

    mask: str | None = Field(None, description="NIfTI mask or atlas (relative to the protocol file).")
    label: int | None = Field(None, ge=1, strict=True, description="Atlas label value to take from the mask file, e.g. 4201 (AAL Amygdala_L).")
    sphere: SphereDecl | None = Field(None, description="A sphere {center: [x, y, z], radius: 7 mm}.")
    space: Literal["native", "mni"] = Field("native", description="native: the functional grid's world space; mni: through the input's registration.")
    threshold: float = Field(0.5, gt=0, le=1, description="Partial-volume fraction a voxel needs to belong to a resampled mask.")

    @model_validator(mode="after")
    def _one_shape(self) -> RoiDecl:
        if (self.mask is None) == (self.sphere is None):
            fail("give exactly one of mask (a NIfTI file) or sphere ({center: [x, y, z], radius: 7 mm})")
        if self.label is not None and self.mask is None:
            fail("label selects a value of an atlas given as mask; give mask too")
        return self


class RunDecl(Decl):
    """One run of a multi-run session: what changes from run to run (target level, feedback)."""

    name: Name = Field(description="The run's name, e.g. nf1 or transfer.")
    thresholds: dict[Name, Level] = Field(default_factory=dict, description="Fixed thresholds set for this run, e.g. {target: 1.0}.")
    feedback: bool = Field(True, description="false: no feedback is shown in this run (transfer run).")


RunList = Annotated[list[RunDecl], Field(min_length=1)]
__all__ = ["VolumeInputDecl", "RoiDecl", "RunDecl", "VolumeCount"]
