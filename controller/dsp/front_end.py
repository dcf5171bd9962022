"""A front end turns a stream's columns into the channels features read, before anything else.

EEG needs none: its columns are the channels. A continuous-wave fNIRS device streams light
intensities per source-detector pair and wavelength, and features read haemoglobin
concentrations per pair (``controller.dsp.nirs``); a MEG system's columns may need signal-space
projection first (``controller.dsp.meg``). Keeping that one step behind one interface lets the
feature pipeline stay the same for every modality: it resolves feature channels against the
front end's ``labels`` and conditions what the front end puts out.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class FrontEnd(Protocol):
    """Causal, stateful: stream columns (already scaled to SI) in, derived channels out."""

    @property
    def labels(self) -> tuple[str, ...]:
        """The derived channels' labels (what protocols name), in output-column order."""
        ...

    @property
    def types(self) -> tuple[str, ...]:
        """Each derived channel's type (e.g. 'hbo', 'hbr', 'sci', 'grad', 'mag')."""
        ...

    def process(self, x: np.ndarray) -> np.ndarray:
        """``x`` ``(n_samples, n_stream_columns)`` -> ``(n_samples, len(labels))``, state kept."""
        ...

    def reset(self) -> None:
        """Forget every state, as if no sample had been seen (after a reconnect or a long gap)."""
        ...
