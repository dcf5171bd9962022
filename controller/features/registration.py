"""Where a feature kind registers itself (``@register``): the table the registry looks kinds up in.

Apart from the registry so that the kind modules, which import ``register``, and the registry, which
imports every kind module to find them, do not import each other.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

from .kind import FeatureKind
from .volume_kind import VolumeFeatureKind

AnyKind = FeatureKind | VolumeFeatureKind
KINDS: dict[str, AnyKind] = {}  # name -> the one instance of its kind; read through the registry
K = TypeVar("K", bound=type[FeatureKind] | type[VolumeFeatureKind])


def register(cls: K) -> K:
    """Class decorator: make the kind known under ``cls.name``."""
    for attr in ("name", "order", "declaration", "summary"):
        if not hasattr(cls, attr):
            raise TypeError(f"feature kind {cls.__name__} does not set {attr!r}")
    if not (isinstance(cls.declaration, type) and issubclass(cls.declaration, BaseModel)):
        raise TypeError(f"feature kind {cls.name!r}: declaration must be a pydantic model, got {cls.declaration!r}")
    known = KINDS.get(cls.name)
    if known is not None and type(known) is not cls:
        raise ValueError(f"feature kind {cls.name!r} is registered twice ({type(known).__name__}, {cls.__name__})")
    KINDS[cls.name] = cls()
    return cls
