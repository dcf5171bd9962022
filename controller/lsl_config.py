"""liblsl's own settings, applied once before any other LSL call in the process."""

from __future__ import annotations

import os

import pylsl

_QUIET = "[log]\nlevel = -2\n"  # errors only: liblsl's INFO lines would bury the session's own output


def configure() -> None:
    """Quiet liblsl unless NEUROREFLEX_LSL_VERBOSE is set (or an lsl_api.cfg is named by LSLAPICFG)."""
    if os.environ.get("NEUROREFLEX_LSL_VERBOSE") or os.environ.get("LSLAPICFG"):
        return
    try:
        pylsl.set_config_content(_QUIET)
    except NotImplementedError:  # liblsl older than 1.17.7: keep its default logging
        pass
