"""The sensors a simulated MEG stream has: read from a real Neuromag .fif (names, types, geometry, projectors).

Why from a file: the controller pairs gradiometers by their names, picks MNE's Vectorview selections
and builds projectors over channel names, so the simulator should present a real system's channels,
in its order, with its sensor positions (``ch['loc']``) and its signal-space projectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# next to the repository: ../shared/data (see its MANIFEST.md)
DEFAULT_LAYOUT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "meg" / \
    "sample_audvis_trunc_raw_sss.fif"
MEG_TYPES = ("grad", "mag")
EXTRA_TYPES = ("stim", "eeg", "eog")  # streamed with all_channels=True
UNITS = {"grad": "T/m", "mag": "T", "eeg": "V", "eog": "V", "stim": "counts"}


@dataclass(frozen=True, eq=False)
class SimProjector:
    """One SSP vector over named channels (a multi-row projector of a file is several)."""

    name: str
    active: bool
    channels: tuple[str, ...]
    data: np.ndarray  # (len(channels),)


@dataclass(frozen=True, eq=False)
class SensorLayout:
    """The streamed channels, in the file's order."""

    labels: tuple[str, ...]
    types: tuple[str, ...]  # MNE's channel types: grad, mag, eeg, eog, stim
    coil_types: tuple[int, ...]  # the fif's coil_type
    loc: np.ndarray  # (n, 12): MNE's ch['loc'] (position in m, then the coil's orientation vectors)
    projectors: tuple[SimProjector, ...]  # the file's, then any added

    @property
    def n_channels(self) -> int:
        return len(self.labels)

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(UNITS[t] for t in self.types)

    def indices(self, *types: str) -> np.ndarray:
        return np.array([i for i, t in enumerate(self.types) if t in types], dtype=np.intp)

    def with_projectors(self, extra: Sequence[SimProjector]) -> SensorLayout:
        return SensorLayout(self.labels, self.types, self.coil_types, self.loc, self.projectors + tuple(extra))


def _projectors(projs: Sequence[dict]) -> list[SimProjector]:
    out = []
    for proj in projs:
        channels = tuple(str(c) for c in proj["data"]["col_names"])
        for row in np.atleast_2d(np.asarray(proj["data"]["data"], dtype=np.float64)):
            out.append(SimProjector(str(proj["desc"]), bool(proj["active"]), channels, row.copy()))
    return out


def read_layout(path: str | Path | None = None, all_channels: bool = False) -> SensorLayout:
    """The MEG channels of a .fif (or every MEG, EEG, EOG and stim channel, ``all_channels``), its projectors."""
    path = Path(path) if path is not None else DEFAULT_LAYOUT
    if not path.is_file():
        hint = "" if path != DEFAULT_LAYOUT else " (the default layout: MNE's sample_audvis_trunc_raw_sss.fif)"
        raise FileNotFoundError(f"MEG layout {path} not found{hint}; pass --layout FILE, a Neuromag .fif "
                                "recording whose channels the simulated stream should have")
    import mne  # slow to import: only when a MEG stream is simulated

    info = mne.io.read_info(path, verbose=False)
    kinds = info.get_channel_types()
    wanted = MEG_TYPES + (EXTRA_TYPES if all_channels else ())
    picks = [i for i, kind in enumerate(kinds) if kind in wanted]
    if not any(kinds[i] in MEG_TYPES for i in picks):
        raise ValueError(f"{path} has no MEG channels (types found: {', '.join(sorted(set(kinds)))})")
    chs = [info["chs"][i] for i in picks]
    return SensorLayout(
        labels=tuple(ch["ch_name"] for ch in chs),
        types=tuple(str(kinds[i]) for i in picks),
        coil_types=tuple(int(ch["coil_type"]) for ch in chs),
        loc=np.array([ch["loc"] for ch in chs], dtype=np.float64),
        projectors=tuple(_projectors(info["projs"])),
    )


def read_projectors(path: str | Path) -> list[SimProjector]:
    """Every vector of an MNE projection file (``*-proj.fif``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"projection file {path} not found")
    import mne

    return _projectors(mne.read_proj(path, verbose=False))
