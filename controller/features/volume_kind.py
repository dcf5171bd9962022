"""What an fMRI feature kind is: one class that knows everything the controller asks of it.

The counterpart of :class:`controller.features.kind.FeatureKind` for volumes. A volume kind reads
the detrended series of one or more ROIs of an fMRI input (the per-volume pipeline in
``controller.fmri`` realigns, samples the ROIs and removes drift and motion, the same for every
kind) and turns them into one value per volume. The class holds the kind's declaration (a pydantic
model, hence its JSON Schema), its load-time checks (messages at FILE:LINE:COL), its unit, the ROIs
it reads, its online state per volume and its offline reference. Kinds live in
``controller/features/kinds/`` beside the signal kinds and register in the same registry, so a
protocol's ``features:`` has one vocabulary and one place to look names up.

Layering: this module and the kinds import only the protocol language below them; the protocol's
fMRI checks (``controller.protocol.fmri_semantics``) receive the kinds from the registry and hand
them a :class:`VolumeCheckContext` they build themselves, and ``controller.fmri`` (above) runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from controller.lang.compiled import Block, FeatureSpec
from controller.lang.fields import Decl
from controller.lang.source import Loc


class Placed(Protocol):
    """Where a volume sits in the run, by acquisition number (``controller.fmri.design.VolumePlace``)."""

    @property
    def n(self) -> int: ...  # 0-based counted position

    @property
    def block(self) -> Block | None: ...  # None after the timeline's end

    @property
    def position(self) -> int: ...  # 0-based place in its block

    @property
    def label(self) -> str: ...  # the block's label, "" after the end


class VolumeCheckContext(Protocol):
    """What a volume kind's load-time checks see besides its own declaration (the protocol's
    fMRI checks provide it, so the kinds need nothing from the language's internals)."""

    input: Any  # the input's declaration (controller.protocol.fmri_raw.VolumeInputDecl), None when broken
    blocks: tuple[Block, ...]  # the flattened timeline (empty when it is broken)

    def fail(self, where: Loc | str, message: str, *, key: bool = False) -> None:
        """Report ``message`` at a field of the declaration (a key or a path below it)."""

    def unknown_block(self, label: str) -> str | None:
        """``unknown block 'x' (did you mean ...); blocks: ...`` when no block has ``label`` (None when
        it exists, or when the timeline is broken and that cannot be told)."""


class VolumeEvaluator(Protocol):
    """Called once per counted volume with its place and the detrended values of the kind's ROIs
    (in ``rois(spec)`` order); returns the feature's value, or None while it has none yet."""

    def __call__(self, place: Placed, values: Sequence[float]) -> float | None: ...


class VolumeFeatureKind:
    """Base of every fMRI feature kind; subclass it in a module of ``controller/features/kinds``
    and decorate the subclass with ``@register``.

    Class attributes a kind sets: ``name``, ``order``, ``declaration``, ``summary`` and ``unit`` as
    a signal kind does, and ``roi_field``: the declaration's field naming the ROI (a name) or ROIs
    (a list of names) it reads, checked against the protocol's ``rois`` for every kind alike.
    """

    name: ClassVar[str]
    order: ClassVar[int]
    declaration: ClassVar[type[Decl]]
    summary: ClassVar[str]
    unit: ClassVar[str | None] = None
    timed: ClassVar[bool] = False  # values never carry a pulse time (see FeatureKind.timed)
    roi_field: ClassVar[str] = "roi"

    # ------------------------------------------------------------------ the protocol language

    def value_unit(self, decl: Any) -> str | None:
        """The unit family of the declared feature's values (conditions and feedback are checked with it)."""
        return self.unit

    def roi_refs(self, decl: Any) -> tuple[tuple[Loc, str], ...]:
        """(location below the declaration, ROI name) of every ROI the declaration names."""
        value = getattr(decl, self.roi_field)
        if isinstance(value, str):
            return (((self.roi_field,), value),)
        return tuple(((self.roi_field, k), name) for k, name in enumerate(value))

    def check(self, decl: Any, ctx: VolumeCheckContext) -> None:
        """Report what the declaration gets wrong beyond its shape (its input being an fMRI input
        and its ROIs existing are checked by the protocol for every kind)."""

    def params(self, decl: Any) -> Any:
        """The compiled, kind-specific parameters (a frozen dataclass)."""
        raise NotImplementedError

    def compile(self, name: str, decl: Any, tr_s: float) -> FeatureSpec:
        """The ``FeatureSpec`` of a validated declaration: one value per volume, so window and every are one TR."""
        return FeatureSpec(name=name, kind=self.name, input=decl.input, channels=(), window_s=tr_s, every_s=tr_s,
                           params=self.params(decl))

    # ------------------------------------------------------------------ what the pipeline plans

    def rois(self, spec: FeatureSpec) -> tuple[str, ...]:
        """The ROIs whose detrended values the evaluator and the offline reference take, in this order."""
        value = getattr(spec.params, self.roi_field)
        return (value,) if isinstance(value, str) else tuple(value)

    def baselines(self, spec: FeatureSpec) -> frozenset[str]:
        """Block labels the values are referenced to: the GLM does not model them as task and the
        report does not count them as 'on' blocks."""
        return frozenset()

    # ------------------------------------------------------------------ online

    def evaluator(self, spec: FeatureSpec) -> VolumeEvaluator:
        """A fresh callable holding the feature's state for one run."""
        raise NotImplementedError

    # ------------------------------------------------------------------ offline reference

    def offline(self, detrended: np.ndarray, places: Sequence[Placed], spec: FeatureSpec) -> np.ndarray:
        """The feature at every volume of ``detrended`` ``(n_volumes, len(rois(spec)))``, in arrival order
        with each volume's place; NaN where it has no value. Whole-array, sharing only definitions
        with the evaluator."""
        raise NotImplementedError

