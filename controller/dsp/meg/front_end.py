"""The MEG front end: signal-space projection of the columns a projector covers, the rest passed through.

A MEG stream's columns are already its channels (unlike fNIRS light intensities), so labels and types are
the stream's; the one step before features is removing the projectors' field patterns. The operator is
block-diagonal: the columns no projector vector touches (stim, or every column when there are none) are
copied, so a stream with EEG and MEG pays only for the part projected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from controller.dsp.meg.ssp import Projector, projector_matrix


class SspFrontEnd:
    """Implements controller.dsp.front_end.FrontEnd: ``x @ P.T`` on the covered columns. Stateless (a fixed matrix)."""

    __slots__ = ("_labels", "_types", "_matrix", "_covered", "_pt", "_all")

    def __init__(self, labels: Sequence[str], types: Sequence[str], projector: np.ndarray) -> None:
        """``projector``: ``(len(labels), len(labels))``, e.g. from :func:`controller.dsp.meg.ssp.projector_matrix`."""
        self._labels = tuple(labels)
        self._types = tuple(types)
        n = len(self._labels)
        if len(self._types) != n:
            raise ValueError(f"{n} labels but {len(self._types)} types")
        p = np.array(projector, dtype=np.float64)
        if p.shape != (n, n):
            raise ValueError(f"projector must be ({n}, {n}) for {n} channels, got {p.shape}")
        if not np.all(np.isfinite(p)):
            raise ValueError("projector holds a value that is not a finite number")
        off = p != np.eye(n)
        covered = np.flatnonzero(off.any(axis=0) | off.any(axis=1))
        self._matrix = p
        self._covered = covered
        self._all = covered.size == n
        self._pt = np.ascontiguousarray(p[np.ix_(covered, covered)].T)

    @classmethod
    def from_projectors(cls, labels: Sequence[str], types: Sequence[str],
                        projectors: Sequence[Projector]) -> SspFrontEnd:
        """The front end applying every one of ``projectors`` (see controller.dsp.meg.ssp)."""
        return cls(labels, types, projector_matrix(projectors, labels))

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def types(self) -> tuple[str, ...]:
        return self._types

    @property
    def matrix(self) -> np.ndarray:
        """The full ``(n, n)`` operator (a copy)."""
        return self._matrix.copy()

    @property
    def covered(self) -> np.ndarray:
        """Column indices the projection changes (empty: the front end copies its input)."""
        return self._covered.copy()

    def process(self, x: np.ndarray) -> np.ndarray:
        """``(n_samples, n_channels)`` -> projected ``(n_samples, n_channels)`` float64 (a new array)."""
        if x.ndim != 2 or x.shape[1] != len(self._labels):
            raise ValueError(f"expected (n_samples, {len(self._labels)}), got {x.shape}")
        if self._all:
            out: np.ndarray = np.asarray(x, dtype=np.float64) @ self._pt
            return out
        out = np.array(x, dtype=np.float64)
        if self._covered.size:
            cov = self._covered
            out[:, cov] = out[:, cov] @ self._pt
        return out

    def reset(self) -> None:
        """Nothing to forget: the projection holds no state."""
