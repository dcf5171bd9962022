"""The one registry of feature kinds: the protocol parser, the streaming pipeline, the per-volume
fMRI pipeline and the offline references all look kinds up here.

Kinds are found, as Timeflux finds its nodes, by where they live: every module of
``controller/features/kinds`` is imported once, and each ``FeatureKind`` (signal) or
``VolumeFeatureKind`` (fMRI) subclass decorated with ``@register`` in it becomes available under
its ``name``. Both families share one namespace because a protocol's ``features:`` does: a name
means one kind, and the language lists them all in one order.
"""

from __future__ import annotations

import importlib
import pkgutil

from controller.lang.compiled import FeatureSpec

from .kind import FeatureKind
from .registration import KINDS, AnyKind, register
from .volume_kind import VolumeFeatureKind

__all__ = ["AnyKind", "FeatureKind", "find", "kind", "kinds", "names", "rate_problems", "register", "volume_kind", "volume_kinds"]

def kinds() -> tuple[AnyKind, ...]:
    """Every registered kind, in the order the language lists them."""
    return tuple(sorted(KINDS.values(), key=lambda k: (k.order, k.name)))


def names() -> tuple[str, ...]:
    return tuple(k.name for k in kinds())


def find(name: str) -> AnyKind | None:
    return KINDS.get(name)


def kind(name: str) -> AnyKind:
    """The kind called ``name``; ValueError listing the known ones otherwise."""
    found = KINDS.get(name)
    if found is None:
        raise ValueError(f"unknown feature kind {name!r}; known kinds: {', '.join(names())}")
    return found


def volume_kinds() -> dict[str, VolumeFeatureKind]:
    """The fMRI kinds by name, in the order the language lists them."""
    return {k.name: k for k in kinds() if isinstance(k, VolumeFeatureKind)}


def volume_kind(name: str) -> VolumeFeatureKind:
    """The fMRI kind called ``name``; ValueError when there is none."""
    found = KINDS.get(name)
    if not isinstance(found, VolumeFeatureKind):
        raise ValueError(f"{name!r} is not an fMRI feature kind; fMRI feature kinds: {', '.join(volume_kinds())}")
    return found


def rate_problems(spec: FeatureSpec, fs: float) -> list[tuple[str, str]]:
    """(protocol key, message) for each reason ``spec`` cannot run on a stream at ``fs`` Hz, as far
    as its kind can tell; a window or hop under one sample is left to the callers' own checks."""
    if round(spec.window_s * fs) < 1 or round(spec.every_s * fs) < 1:
        return []
    found = kind(spec.kind)
    return found.rate_problems(spec, fs) if isinstance(found, FeatureKind) else []


def _discover() -> None:
    from . import kinds as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


_discover()
