"""The MEG front end: signal-space projection of the columns a projector covers, the rest passed through.

A MEG stream's columns are already its channels (unlike fNIRS light intensities), so labels and types are
the stream's; the one step before features is removing the projectors' field patterns. The operator is
block-diagonal: the columns no projector vector touches (stim, or every column when there are none) are
copied, so a stream with EEG and MEG pays only for the part projected.

An SSP operator removes a few directions (``P = I - U U^T``, ``U`` with a handful of columns), so it is
applied as ``x - (x U) U^T``: 2 x 306 x r multiply-adds per sample instead of 306 x 306 (a (5, 306)
chunk with three vectors: 12-21 us instead of ~80 on a 2-core development VM). A matrix that is not an orthogonal projector
(symmetric, eigenvalues 0 and 1) is applied as given, densely.

Channels of different kinds are projected separately: the operator is split into the groups of columns
its entries connect (an EEG reference and MEG projectors make two), entries below ``STRUCTURAL_ZERO``
counting as none. Why: an SVD over EEG (1e-5 V) and MEG (1e-13 T) vectors leaves cross terms of ~1e-19
(MNE's matrix has them too); a low-rank product across both kinds would mix volts into teslas at the
round-off of the larger (1e-21 T, a relative error of 1e-8 on magnetometers); per group it is 1e-16.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse.csgraph import connected_components  # type: ignore[import-untyped]  # scipy: no type stubs installed

from controller.dsp.meg.ssp import Projector, projector_matrix

STRUCTURAL_ZERO = 1e-14  # |P - I| entries below this are round-off (a projector's entries are at most 1)


class SspFrontEnd:
    """Implements controller.dsp.front_end.FrontEnd: ``x @ P.T`` on the covered columns. Stateless (a fixed matrix)."""

    __slots__ = ("_labels", "_types", "_matrix", "_covered", "_low_cols", "_basis", "_dense", "_whole")

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
        self._matrix = p
        off = np.abs(p - np.eye(n)) > STRUCTURAL_ZERO
        covered = np.flatnonzero(off.any(axis=0) | off.any(axis=1))
        self._covered = covered
        # groups that are orthogonal projectors: one basis over their columns, zero outside each group's own
        # rows (exact zeros: no group's values reach another's); the others: their block, densely
        low: list[tuple[np.ndarray, np.ndarray]] = []
        self._dense: list[tuple[np.ndarray, np.ndarray]] = []  # (columns, block.T)
        if covered.size:
            n_groups, which = connected_components(off[np.ix_(covered, covered)], directed=False)
            for g in range(int(n_groups)):
                cols = covered[which == g]
                block = p[np.ix_(cols, cols)]
                basis = _removed_basis(block)
                if basis is None:
                    self._dense.append((cols, np.ascontiguousarray(block.T)))
                else:
                    low.append((cols, basis))
        self._low_cols = np.sort(np.concatenate([c for c, _ in low])) if low else np.empty(0, dtype=np.intp)
        self._basis = np.zeros((self._low_cols.size, sum(u.shape[1] for _, u in low)))
        col = 0
        for cols, u in low:
            self._basis[np.searchsorted(self._low_cols, cols), col:col + u.shape[1]] = u
            col += u.shape[1]
        self._whole = not self._dense and np.array_equal(self._low_cols, np.arange(n))

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
        """The full ``(n, n)`` operator as given (a copy)."""
        return self._matrix.copy()

    @property
    def covered(self) -> np.ndarray:
        """Column indices the projection changes (empty: the front end copies its input)."""
        return self._covered.copy()

    def process(self, x: np.ndarray) -> np.ndarray:
        """``(n_samples, n_channels)`` -> projected ``(n_samples, n_channels)`` float64 (a new array)."""
        if x.ndim != 2 or x.shape[1] != len(self._labels):
            raise ValueError(f"expected (n_samples, {len(self._labels)}), got {x.shape}")
        u = self._basis
        if self._whole:
            x = np.asarray(x, dtype=np.float64)
            whole: np.ndarray = x - (x @ u) @ u.T
            return whole
        out = np.array(x, dtype=np.float64)
        if self._low_cols.size:
            part = out[:, self._low_cols]
            out[:, self._low_cols] = part - (part @ u) @ u.T
        for cols, pt in self._dense:
            out[:, cols] = out[:, cols] @ pt
        return out

    def reset(self) -> None:
        """Nothing to forget: the projection holds no state."""


def _removed_basis(block: np.ndarray, tol: float = 1e-9) -> np.ndarray | None:
    """``U`` with ``block = I - U U^T`` when ``block`` is an orthogonal projector removing few directions, else None."""
    n = block.shape[0]
    if not np.allclose(block, block.T, rtol=0, atol=tol):
        return None
    w, v = np.linalg.eigh(np.eye(n) - block)
    if not np.all((np.abs(w) < tol) | (np.abs(w - 1.0) < tol)):
        return None
    removed = w > 0.5
    if 4 * int(removed.sum()) > n:  # removing many directions: the dense product is as cheap
        return None
    basis: np.ndarray = np.ascontiguousarray(v[:, removed])
    return basis
