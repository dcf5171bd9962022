"""Feature kinds: what a protocol can compute from a signal or from fMRI volumes, one module per kind.

    kind.py        FeatureKind: the base class a signal kind implements (declaration, checks, unit,
                   what it reads, ring capacity, online evaluator, offline reference)
    volume_kind.py VolumeFeatureKind: the same for an fMRI kind (declaration, checks, unit, the ROIs
                   it reads, its state per volume, offline reference)
    registry.py    the one registry of both, filled from the modules of kinds/
    kinds/         one module per kind (band_power.py, phase.py, alpha_asymmetry.py, roi_psc.py, ...)
    pipeline.py    FeaturePipeline: the streaming evaluation of one input's features
    offline.py     offline_values / offline_feature: the whole-recording reference

Layering: ``controller.dsp`` holds signal processing that knows no kind; the kinds here use
it; the protocol language (``controller.protocol.raw`` / ``semantics``) builds its feature
declarations and checks from the registry. The per-volume fMRI pipeline and its offline
reference (``controller.fmri.pipeline`` / ``offline``, a layer above) run the fMRI kinds.
"""

from .kind import CheckContext, FeatureKind, FilterKey, Lowpass, OfflineValues
from .offline import conditioned, offline_feature, offline_values
from .pipeline import FeaturePipeline
from .registry import find, kind, kinds, names, register, volume_kind, volume_kinds
from .volume_kind import VolumeFeatureKind

__all__ = [
    "CheckContext",
    "FeatureKind",
    "FeaturePipeline",
    "FilterKey",
    "Lowpass",
    "OfflineValues",
    "VolumeFeatureKind",
    "conditioned",
    "find",
    "kind",
    "kinds",
    "names",
    "offline_feature",
    "offline_values",
    "register",
    "volume_kind",
    "volume_kinds",
]
