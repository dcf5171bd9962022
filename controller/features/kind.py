"""What a feature kind is: one class that knows everything the controller asks of it.

A kind is declared in the protocol (a pydantic model, hence its JSON Schema), checked at load
time (messages at FILE:LINE:COL), compiled into a ``FeatureSpec``, evaluated online on ring
buffers of the conditioned signal, and recomputed offline on a whole recording as the
yardstick the online values must equal. Keeping all of that in one subclass means a new kind
is one module under ``controller/features/kinds/`` and nothing else: the protocol parser, the
streaming pipeline and the offline reference find it through ``controller.features.registry``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol

import numpy as np

from controller.dsp.features import ChannelSource
from controller.lang.compiled import Band, FeatureSpec
from controller.lang.fields import Decl
from controller.lang.source import Loc


@dataclass(frozen=True)
class Lowpass:
    """A low-passed copy of the conditioned signal (the key of a pipeline filter stage)."""

    hz: float


# The copy of the conditioned signal a feature reads: a band-passed or low-passed one, or None
# for the conditioned signal itself. Features reading the same key share one filter stage.
FilterKey = Band | Lowpass | None


class Evaluator(Protocol):
    """Called when the feature's window is due, after the rings hold every sample up to it.

    Plain kinds return the value; a kind with ``timed = True`` is called with (LSL time, sample
    index) and returns (value, at). Evaluators with state may define ``reset()``.
    """

    def __call__(self, *args: Any) -> Any: ...


class OfflineValues(NamedTuple):
    """A feature over a whole recording: the sample index each value is due at, the values, and
    ``at`` (the pulse time of a timed kind's commits, NaN everywhere else)."""

    index: np.ndarray
    value: np.ndarray
    at: np.ndarray

    @classmethod
    def untimed(cls, index: np.ndarray, value: np.ndarray) -> OfflineValues:
        value = np.asarray(value, dtype=np.float64)
        return cls(np.asarray(index), value, np.full(value.shape, np.nan))


ReportError = Callable[..., None]  # (loc, message, *, key=False): Semantics.error


@dataclass(frozen=True)
class CheckContext:
    """What a kind's load-time checks see besides its own declaration."""

    base: Loc  # ("features", NAME, KIND): prefix the locations of errors with it
    input: Any  # the input's declaration (controller.protocol.raw.InputDecl), None when broken
    error: ReportError

    def fail(self, where: Loc | str, message: str, *, key: bool = False) -> None:
        """Report ``message`` at a field of the declaration (a key or a path below the base)."""
        loc = (where,) if isinstance(where, str) else where
        self.error(self.base + loc, message, key=key)


def window_ends(n_samples: int, window: int, every: int) -> np.ndarray:
    """Sample indices a sliding window is due at: W-1, W-1+S, ... (as ``WindowSchedule`` counts)."""
    return np.arange(window - 1, n_samples, every)


class FeatureKind:
    """Base of every feature kind; subclass it in a module of ``controller/features/kinds``
    and decorate the subclass with ``@register``.

    Class attributes a kind sets: ``name`` (its key in a protocol), ``order`` (where it is
    listed in the schema and in messages), ``declaration`` (its pydantic model), ``summary``
    (one line for the schema), ``unit`` (the unit family its values are compared in:
    ``units.VOLTAGE``, ``units.PERCENT`` or None for a plain number), ``timed`` (its values
    carry a pulse time, see ``FeatureValue.at``) and ``band_fields`` (the declaration's bands,
    checked against the Nyquist frequency by the protocol).
    """

    name: ClassVar[str]
    order: ClassVar[int]
    declaration: ClassVar[type[Decl]]
    summary: ClassVar[str]
    unit: ClassVar[str | None] = None
    timed: ClassVar[bool] = False
    band_fields: ClassVar[tuple[str, ...]] = ("band",)

    # ------------------------------------------------------------------ the protocol language

    def value_unit(self, decl: Any) -> str | None:
        """The unit family of the declared feature's values; a channel vote is a count whatever the kind."""
        if not isinstance(getattr(decl, "reduce", "mean"), str):
            return None
        return self.unit

    def bands(self, decl: Any) -> list[tuple[str, tuple[float, float]]]:
        """(field, band) of every band the declaration gives."""
        return [(f, getattr(decl, f)) for f in self.band_fields if getattr(decl, f, None) is not None]

    def check(self, decl: Any, ctx: CheckContext) -> None:
        """Report what the declaration gets wrong beyond its shape (the common checks, input,
        channels, bands against the stated rate and every <= window, are made by the protocol)."""

    def params(self, decl: Any) -> Any:
        """The compiled, kind-specific parameters (a frozen dataclass), or None."""
        return None

    def compile(self, name: str, decl: Any, input_channels: tuple[str, ...]) -> FeatureSpec:
        """The ``FeatureSpec`` of a validated declaration; ``input_channels``: its input's channels."""
        channels = getattr(decl, "channels", None)
        band = getattr(decl, "band", None)
        return FeatureSpec(
            name=name,
            kind=self.name,
            input=decl.input,
            channels=tuple(channels) if channels is not None else input_channels,
            window_s=decl.window,
            every_s=decl.every,
            band=None if band is None else Band(float(band[0]), float(band[1])),
            params=self.params(decl),
        )

    def rate_problems(self, spec: FeatureSpec, fs: float) -> list[tuple[str, str]]:
        """(protocol key, message) for each reason ``spec`` cannot run at ``fs`` Hz; only what is
        specific to the kind (sample counts and bands against Nyquist are checked for all)."""
        return []

    def stream_problems(self, spec: FeatureSpec, labels: Sequence[str], types: Sequence[str]) -> list[tuple[str, str]]:
        """(protocol key, message) for each reason the found stream cannot serve ``spec`` beyond rate and
        labels: e.g. a channel whose type (from the stream's description; () when it gives none) is not
        the kind the feature reads."""
        return []

    # ------------------------------------------------------------------ online

    def check_spec(self, spec: FeatureSpec, fs: float) -> None:
        """ValueError naming the feature when the compiled spec cannot be evaluated (specs built
        in code rather than loaded are checked here)."""

    def reads(self, spec: FeatureSpec) -> tuple[FilterKey, ...]:
        """The filtered copies the evaluator reads, one ``ChannelSource`` each, in this order."""
        return (spec.band,)

    def ring_capacity(self, spec: FeatureSpec, window: int, every: int) -> int:
        """Samples of each copy the pipeline must keep for this feature."""
        return window

    def warmup_s(self, spec: FeatureSpec) -> float:
        """History the feature needs before it has a value (what a pipeline reset costs)."""
        return spec.window_s

    def evaluator(self, spec: FeatureSpec, sources: Sequence[ChannelSource], fs: float,
                  window: int, every: int) -> Evaluator:
        raise NotImplementedError

    # ------------------------------------------------------------------ offline reference

    def offline(self, x: np.ndarray, fs: float, spec: FeatureSpec, stamps: np.ndarray) -> OfflineValues:
        """The feature over conditioned ``x`` ``(n_samples, len(spec.channels))``, whole-array,
        sharing only definitions with the online evaluator; ``stamps``: each sample's LSL time."""
        raise NotImplementedError
