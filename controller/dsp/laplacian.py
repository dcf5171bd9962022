"""Small surface Laplacian by channel label: one electrode minus the mean of its neighbours.

Sensorimotor mu rhythm is local; subtracting the ring of nearest electrodes removes what the
centre shares with them (reference, volume-conducted occipital alpha) and keeps the local
source. The classic montage for phase-triggered TMS of the left motor hand area (Zrenner et al.
2018) is C3 with the 10-10 ring FC1, FC5, CP1, CP5. Caps with only the 10-20 positions
(19 channels) have none of those; their nearest ring around C3 is F3, Cz, P3, T3 (T3 = T7 in
10-10 names), twice as far out, so the filter is spatially broader.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from controller.dsp.labels import resolve_channels

C3_NEIGHBOURS_1010 = ("FC1", "FC5", "CP1", "CP5")  # 5-channel Laplacian of Zrenner et al. 2018
C3_NEIGHBOURS_1020 = ("F3", "Cz", "P3", "T3")  # nearest 10-20 ring, for 19-channel caps


class Laplacian:
    """``x[center] - mean(x[neighbours])`` over stream columns chosen by label.

    ``allow_missing=True`` drops neighbours the stream does not have (listed in ``missing``)
    instead of failing; at least one neighbour must remain.
    """

    __slots__ = ("center", "neighbours", "missing", "columns", "coefficients")

    def __init__(
        self,
        stream_labels: Sequence[str],
        center: str,
        neighbours: Sequence[str],
        *,
        allow_missing: bool = False,
    ) -> None:
        labels = [str(s) for s in stream_labels]
        if not neighbours:
            raise ValueError(f"Laplacian around {center!r} needs at least one neighbour label")
        c = int(resolve_channels([center], labels, where="stream (Laplacian centre)")[0])
        found: list[int] = []
        missing: list[str] = []
        for name in neighbours:
            try:
                col = int(resolve_channels([name], labels, where=f"stream (Laplacian neighbour of {center!r})")[0])
            except ValueError:
                if not allow_missing:
                    raise
                missing.append(name)
                continue
            if col == c or col in found:
                raise ValueError(f"Laplacian around {center!r}: neighbour {name!r} repeats channel {labels[col]!r}")
            found.append(col)
        if not found:
            raise ValueError(
                f"Laplacian around {center!r}: none of the neighbours {', '.join(neighbours)} is in the stream "
                f"(available: {', '.join(labels)})"
            )
        self.center = labels[c]
        self.neighbours = tuple(labels[i] for i in found)  # stream labels actually used
        self.missing = tuple(missing)  # requested labels the stream lacks
        self.columns = np.asarray([c, *found], dtype=np.intp)
        self.coefficients = np.concatenate([[1.0], np.full(len(found), -1.0 / len(found))])

    def weights(self, n_stream_channels: int) -> np.ndarray:
        """The filter as a dense weight vector over all stream columns."""
        w = np.zeros(n_stream_channels)
        w[self.columns] = self.coefficients
        return w

    def apply(self, chunk: np.ndarray) -> np.ndarray:
        """Chunk ``(n_samples, n_stream_channels)`` -> Laplacian signal ``(n_samples,)`` (a new array)."""
        out: NDArray[np.float64] = chunk.take(self.columns, axis=1) @ self.coefficients
        return out
