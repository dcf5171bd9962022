"""Continuous-wave fNIRS, online: optical density, Beer-Lambert, short-separation regression, signal quality."""

from .front_end import NirsFrontEnd
from .layout import NirsLayout, NirsPair

__all__ = ["NirsFrontEnd", "NirsLayout", "NirsPair"]
