"""Signal-space projection (SSP): the operator that removes a few known field patterns from every sample.

A projector vector is a spatial pattern over named channels (heartbeat, eye movements, the empty room's
interference, the average EEG reference). Projecting the data onto the space orthogonal to all of them,
``P = I - U U^T`` with ``U`` an orthonormal basis of the vectors, removes those patterns sample by sample:
a fixed matrix, so it is causal and costs one matrix product per chunk.

The operator is built with MNE's arithmetic (``mne._fiff.proj._make_projector``), so the controller projects
exactly what an MNE analysis of the same recording would: each vector is placed on the stream's columns
(channels it names that the stream lacks are dropped), scaled to unit norm, the set orthonormalised by an
SVD, and directions whose singular value is below 1 % of the largest dropped as linearly dependent.

Whether a projector is ``active`` (already applied to the streamed data) does not change the operator:
all projectors are used, as MNE does, because applying the full projector after a part of it gives the
full projector (P_all P_part = P_all: the part's vectors are among all of them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controller.dsp.meg.layout import canonical_label

RANK_TOLERANCE = 1e-2  # MNE's: a direction whose singular value is below 1 % of the largest is dependent


@dataclass(frozen=True, eq=False)
class Projector:
    """One SSP vector over named channels (a multi-vector projector of a file is several of these)."""

    name: str
    active: bool  # already applied to the data it came with
    channels: tuple[str, ...]
    data: np.ndarray  # (len(channels),) float64

    def __post_init__(self) -> None:
        if self.data.shape != (len(self.channels),):
            raise ValueError(f"projector {self.name!r}: {len(self.channels)} channels but data of shape "
                             f"{self.data.shape}")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"projector {self.name!r} names a channel twice")
        if not np.all(np.isfinite(self.data)):
            raise ValueError(f"projector {self.name!r} has a value that is not a finite number")


def _column_map(labels: Sequence[str]) -> tuple[dict[str, int], dict[str, int]]:
    exact = {lab: i for i, lab in enumerate(labels)}
    canonical: dict[str, int] = {}
    clashes: set[str] = set()
    for i, lab in enumerate(labels):
        key = canonical_label(lab)
        if key in canonical:
            clashes.add(key)
        canonical[key] = i
    for key in clashes:  # two columns spelled alike: only their exact names find them
        del canonical[key]
    return exact, canonical


def _placed(projectors: Sequence[Projector], labels: Sequence[str]) -> np.ndarray:
    """The vectors on the stream's columns, ``(len(labels), n_vectors)``, not normalised. A channel matches by
    its exact name, else by its canonical spelling ('MEG0113' for 'MEG 0113'); unknown channels are dropped."""
    exact, canonical = _column_map(labels)
    vecs = np.zeros((len(labels), len(projectors)))
    for k, proj in enumerate(projectors):
        for name, value in zip(proj.channels, proj.data, strict=True):
            col = exact.get(name)
            if col is None:
                col = canonical.get(canonical_label(name))
            if col is not None:
                vecs[col, k] = value
    return vecs


def projector_coverage(projectors: Sequence[Projector], labels: Sequence[str]) -> np.ndarray:
    """For each vector, the fraction of its norm on the stream's channels (1: all there). MNE warns below 0.9
    (the average EEG reference excepted): a projector computed with channels this stream lacks no longer
    removes the pattern it was made for."""
    vecs = _placed(projectors, labels)
    full = np.array([float(np.linalg.norm(p.data)) for p in projectors])
    kept = np.linalg.norm(vecs, axis=0)
    out: np.ndarray = np.divide(kept, full, out=np.zeros_like(kept), where=full > 0)
    return out


def projector_matrix(projectors: Sequence[Projector], labels: Sequence[str]) -> np.ndarray:
    """``P = I - U U^T`` over ``labels`` (stream column order), as MNE's ``make_projector`` builds it.

    Identity when no vector touches the stream's channels. Raises ValueError when the projectors would
    leave no component at all (as many independent vectors as channels)."""
    n = len(labels)
    if n == 0:
        raise ValueError("a projector needs at least one channel")
    vecs = _placed(projectors, labels)
    norms = np.linalg.norm(vecs, axis=0)
    nonzero = norms > 0
    if not np.any(nonzero):
        return np.eye(n)
    vecs = vecs[:, nonzero] / norms[nonzero]
    u, s, _ = np.linalg.svd(vecs, full_matrices=False)
    rank = int(np.sum(s / s[0] > RANK_TOLERANCE))
    if rank >= n:
        raise ValueError(f"{rank} independent projector vectors on {n} channels would leave no signal")
    basis = u[:, :rank]
    out: np.ndarray = np.eye(n) - basis @ basis.T
    return out


# ---- reading projectors ------------------------------------------------------------------------------

def _field(entry: Mapping[str, str], key: str, where: str) -> str:
    value = entry.get(key)
    if value is None or not value.strip():
        raise ValueError(f"{where}: no {key}")
    return value.strip()


def projectors_from_stream(entries: Sequence[Mapping[str, str]]) -> list[Projector]:
    """Projectors from the text fields of a stream's desc/projectors/projector elements (``name``, ``active``
    0/1, ``channels`` comma-separated labels, ``data`` space-separated numbers; see sim/meg/stream_info.py)."""
    out: list[Projector] = []
    for k, entry in enumerate(entries):
        where = f"desc/projectors/projector #{k + 1}"
        name = _field(entry, "name", where)
        where = f"{where} ({name!r})"
        active_text = _field(entry, "active", where)
        if active_text not in ("0", "1"):
            raise ValueError(f"{where}: active must be 0 or 1, got {active_text!r}")
        channels = tuple(c.strip() for c in _field(entry, "channels", where).split(","))
        if not all(channels):
            raise ValueError(f"{where}: an empty channel name in its channels")
        try:
            data = np.array([float(v) for v in _field(entry, "data", where).split()], dtype=np.float64)
        except ValueError:
            raise ValueError(f"{where}: data must be space-separated numbers") from None
        if data.size != len(channels):
            raise ValueError(f"{where}: {len(channels)} channels but {data.size} data values")
        if not all(math.isfinite(v) for v in data):
            raise ValueError(f"{where}: data holds a value that is not a finite number")
        out.append(Projector(name, active_text == "1", channels, data))
    return out


def projectors_from_file(path: str | Path) -> list[Projector]:
    """Every vector of an MNE projection file (``*-proj.fif``, read with ``mne.read_proj``)."""
    import mne  # type: ignore[import-untyped]  # no type information; imported only when a file is read

    out: list[Projector] = []
    for proj in mne.read_proj(str(path), verbose=False):
        channels = tuple(str(c) for c in proj["data"]["col_names"])
        for row in np.atleast_2d(np.asarray(proj["data"]["data"], dtype=np.float64)):
            out.append(Projector(str(proj["desc"]), bool(proj["active"]), channels, row.copy()))
    return out
