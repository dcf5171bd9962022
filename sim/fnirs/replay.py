"""Replay a real fNIRS recording (SNIRF file or NIRx folder, read with MNE) as a NIRS stream.

The samples are streamed as MNE holds them (continuous-wave amplitudes, or optical densities),
with the file's channel names, wavelengths and optode positions (``info['chs'][i]['loc']``: [3:6]
the source, [6:9] the detector, metres -> mm) in the description of sim/fnirs/stream_info.py; the
file's column order is kept (MNE's SNIRF reader gives wavelength-major). Timing, ``--speed``,
``--start``, looping and the annotations on ``<name>-annotations`` are sim/replay_stream.py's: each
annotation is a marker stamped with exactly its sample's time, and desc/replay states the rule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pylsl

from sim.fnirs.stream_info import NirsColumn, NirsLayout, nirs_stream_info, parse_label
from sim.recording import Annotation, Recording
from sim.replay_stream import ReplayStreamer

MNE_MEASURES = {"fnirs_cw_amplitude": "intensity", "fnirs_od": "od"}


def read_raw_fnirs(path: str | Path):  # -> mne.io.BaseRaw
    """A SNIRF file (``.snirf``) or a NIRx folder (or its header file), preloaded."""
    import mne

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"fNIRS recording to replay not found: {path}")
    if path.is_dir() or path.suffix.lower() == ".hdr":
        return mne.io.read_raw_nirx(path, preload=True, verbose="error")
    if path.suffix.lower() == ".snirf":
        return mne.io.read_raw_snirf(path, preload=True, verbose="error")
    raise ValueError(f"{path}: expected a .snirf file or a NIRx folder")


def _position_mm(ch: dict, index: slice) -> tuple[float, float, float]:
    """An optode's position from a channel's ``loc`` (metres) in mm."""
    xyz = np.asarray(ch["loc"][index], dtype=float) * 1000.0
    if not np.all(np.isfinite(xyz)):
        raise ValueError(f"channel {ch['ch_name']}: no optode position in the file")
    return (float(xyz[0]), float(xyz[1]), float(xyz[2]))


def load_fnirs(path: str | Path) -> tuple[Recording, NirsLayout]:
    """The recording's fNIRS columns as a :class:`Recording` and their layout (positions in mm)."""
    raw = read_raw_fnirs(path)
    types = raw.get_channel_types()
    kinds = {t for t in types if t in MNE_MEASURES}
    if not kinds:
        raise ValueError(f"{path}: no continuous-wave amplitude or optical density channels "
                         f"(channel types: {sorted(set(types))})")
    if len(kinds) > 1:
        raise ValueError(f"{path}: both amplitude and optical density channels; replay one kind")
    kind = kinds.pop()
    picks = [i for i, t in enumerate(types) if t == kind]
    measure = MNE_MEASURES[kind]
    chs = raw.info["chs"]
    columns, sources, detectors = [], {}, {}
    for i in picks:
        ch = chs[i]
        source, detector, _ = parse_label(ch["ch_name"])
        wavelength = float(ch["loc"][9])
        columns.append(NirsColumn(source, detector, wavelength, measure))
        sources.setdefault(source, _position_mm(ch, slice(3, 6)))
        detectors.setdefault(detector, _position_mm(ch, slice(6, 9)))
    layout = NirsLayout(tuple(columns), dict(sorted(sources.items(), key=lambda kv: int(kv[0][1:]))),
                        dict(sorted(detectors.items(), key=lambda kv: int(kv[0][1:]))))
    data = raw.get_data(picks=picks).T
    rec = Recording(data, float(raw.info["sfreq"]), tuple(raw.ch_names[i] for i in picks),
                    tuple(c.unit for c in columns), tuple("NIRS" for _ in columns), str(path))
    if len(raw.annotations):
        onsets = raw.time_as_index(raw.annotations.onset, use_rounding=True)
        for sample, label in zip(onsets, raw.annotations.description, strict=True):
            if 0 <= sample < rec.n_samples:
                rec.annotations.append(Annotation(int(sample), str(label), "file annotation"))
    return rec, layout


class FnirsReplayStreamer(ReplayStreamer):
    """sim/replay_stream.py's streamer with the NIRS stream type and description."""

    def __init__(self, recording: Recording, layout: NirsLayout, name: str, **kwargs) -> None:
        super().__init__(recording, name, **kwargs)
        self.layout = layout

    def _stream_info(self) -> pylsl.StreamInfo:
        rec = self.recording
        return nirs_stream_info(self.name, self.source_id, rec.rate, self.layout,
                                manufacturer=f"neuroreflex replay of {Path(rec.source).name}")
