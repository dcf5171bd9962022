"""Read recordings for replay; and replay one over LSL, looping, through mne_lsl's PlayerLSL.

``sim eeg --replay`` no longer uses the player: it streams through sim/replay_stream.py, which
stamps every sample itself (exact annotation times, ``--speed``, ``--start``); the recording is
read by sim/recording.py, which comes back here for the formats MNE and pyxdf read.

EDF/BDF/FIF/BrainVision/EEGLAB and anything else ``mne.io.read_raw`` reads go straight
to the player; XDF files are read with pyxdf and one numeric stream is turned into an
``mne.io.RawArray`` first. Channel labels are kept as they are in the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sim.names import DEFAULT_REPLAY_NAME  # re-exported

_UNIT_SCALE = {"v": 1.0, "volt": 1.0, "volts": 1.0, "mv": 1e-3, "millivolt": 1e-3, "millivolts": 1e-3,
               "uv": 1e-6, "µv": 1e-6, "microvolt": 1e-6, "microvolts": 1e-6}  # fmt: skip
_MNE_TYPES = {"eeg", "eog", "ecg", "emg", "misc", "stim", "resp", "bio", "seeg", "ecog", "dbs"}


def _first(value: Any, default: Any = None) -> Any:
    """pyxdf wraps every XML text in a one-element list; unwrap it."""
    if isinstance(value, list):
        return value[0] if value else default
    return default if value is None else value


def _xdf_channels(stream: dict) -> list[dict]:
    desc = _first(stream["info"].get("desc"))
    if not isinstance(desc, dict):
        return []
    channels = _first(desc.get("channels"))
    if not isinstance(channels, dict):
        return []
    return channels.get("channel") or []


def _pick_xdf_stream(streams: list[dict], name: str | None, path: Path) -> dict:
    numeric = [
        s
        for s in streams
        if _first(s["info"]["channel_format"]) != "string"
        and float(_first(s["info"]["nominal_srate"], 0)) > 0
        and len(s["time_stamps"]) > 0
    ]
    if name is not None:
        for s in numeric:
            if _first(s["info"]["name"]) == name:
                return s
        available = [_first(s["info"]["name"]) for s in numeric]
        raise ValueError(f"{path}: no regularly sampled numeric stream named {name!r}; available: {available}")
    if not numeric:
        raise ValueError(f"{path}: no regularly sampled numeric stream with samples to replay")
    eeg = [s for s in numeric if str(_first(s["info"]["type"], "")).lower() == "eeg"]
    return (eeg or numeric)[0]


def xdf_to_raw(path: str | Path, stream_name: str | None = None):  # -> mne.io.RawArray
    """One regularly sampled numeric XDF stream as an MNE Raw (EEG scaled to volts when the unit says so)."""
    import mne
    import pyxdf

    path = Path(path)
    streams, _ = pyxdf.load_xdf(str(path))
    stream = _pick_xdf_stream(streams, stream_name, path)
    info = stream["info"]
    data = np.asarray(stream["time_series"], dtype=float).T
    n_ch = data.shape[0]
    channels = _xdf_channels(stream)
    stype = str(_first(info.get("type"), "misc")).lower()
    names, types = [], []
    for i in range(n_ch):
        ch = channels[i] if i < len(channels) and isinstance(channels[i], dict) else {}
        label = str(_first(ch.get("label"), "") or f"ch{i + 1:03d}")
        names.append(label)
        ctype = str(_first(ch.get("type"), stype)).lower()
        types.append(ctype if ctype in _MNE_TYPES else "misc")
        unit = str(_first(ch.get("unit"), "")).lower()
        if types[-1] != "misc" and unit in _UNIT_SCALE:
            data[i] *= _UNIT_SCALE[unit]
    seen: dict[str, int] = {}
    for i, label in enumerate(names):  # MNE needs unique names
        if label in seen:
            seen[label] += 1
            names[i] = f"{label}-{seen[label]}"
        else:
            seen[label] = 0
    sfreq = float(_first(info["nominal_srate"]))
    raw_info = mne.create_info(names, sfreq, types)
    return mne.io.RawArray(data, raw_info, verbose="error")


def load_recording(path: str | Path, stream_name: str | None = None):  # -> mne.io.BaseRaw
    """Read a recording for replay: XDF via pyxdf, everything else via ``mne.io.read_raw`` (preloaded)."""
    import mne

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recording to replay not found: {path}")
    if path.suffix.lower() in {".xdf", ".xdfz"}:
        return xdf_to_raw(path, stream_name)
    try:
        return mne.io.read_raw(path, preload=True, verbose="error")
    except ValueError as exc:
        raise ValueError(f"{path}: cannot read this recording with mne.io.read_raw: {exc}") from exc


def make_player(
    path: str | Path,
    name: str = DEFAULT_REPLAY_NAME,
    chunk: int = 10,
    source_id: str | None = None,
    stream_name: str | None = None,
):  # -> mne_lsl.player.PlayerLSL
    """A looping PlayerLSL for the recording at ``path`` (not started)."""
    from mne_lsl.player import PlayerLSL

    raw = load_recording(path, stream_name)
    return PlayerLSL(
        raw,
        chunk_size=chunk,
        n_repeat=np.inf,
        name=name,
        source_id=source_id or f"neuroreflex-replay:{Path(path).name}",
        annotations=False,
    )
