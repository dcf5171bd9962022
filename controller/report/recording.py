"""The session's ``recording.xdf``, read once and shared by every part of the report.

Why one loader: the summary table, the seizure onset (annotation marker stream) and the
phase error (the EEG input) all need the streams; the file can be large, so it is parsed
once. Timestamps are as recorded (clock offsets applied, no dejittering).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyxdf

from controller.lang.compiled import StreamSelector

log = logging.getLogger(__name__)


def first(info: dict[str, Any], key: str, default: str = "") -> str:
    """pyxdf wraps every XML text in a one-element list; unwrap it."""
    v = info.get(key)
    if isinstance(v, list):
        return str(v[0]) if v and v[0] is not None else default
    return default if v is None else str(v)


def channel_labels(info: dict[str, Any]) -> list[str]:
    try:
        channels = info["desc"][0]["channels"][0]["channel"]
        return [str(c["label"][0]) for c in channels]
    except (KeyError, IndexError, TypeError):
        return []


@dataclass
class Recording:
    """The streams of one XDF file, or why there are none (``error``)."""

    path: Path
    streams: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def find(self, selector: StreamSelector) -> list[dict[str, Any]]:
        """Streams matching an input's selector (exact name/source_id; type ignoring case)."""
        out = []
        for s in self.streams:
            info = s["info"]
            if selector.name is not None and first(info, "name") != selector.name:
                continue
            if selector.source_id is not None and first(info, "source_id") != selector.source_id:
                continue
            if selector.type is not None and first(info, "type").casefold() != selector.type.casefold():
                continue
            out.append(s)
        return out

    def marker_streams(self) -> list[dict[str, Any]]:
        return [s for s in self.streams if first(s["info"], "channel_format") == "string"]


def load_recording(path: Path) -> Recording:
    """Parse ``path``; a missing or damaged file gives a Recording with ``error`` set."""
    if not path.is_file():
        return Recording(path, error=f"{path.name} is absent (recording not started or not saved)")
    try:
        streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=True, dejitter_timestamps=False)
    except Exception as exc:  # noqa: BLE001 - a damaged XDF must not stop the report
        log.warning("report: cannot read %s: %s", path, exc)
        return Recording(path, error=f"{path.name} could not be read: {exc}")
    return Recording(path, list(streams))


def marker_texts(stream: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """(times, first-channel strings) of a marker stream."""
    ts = np.asarray(stream["time_stamps"], dtype=float)
    texts = []
    for sample in stream["time_series"]:
        value = sample[0] if isinstance(sample, (list, tuple)) and sample else sample
        texts.append(str(value))
    return ts, texts


def marker_label(text: str) -> str:
    """The label of a marker: the text itself, or the 'text'/'label'/'what' of a JSON object."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError:
            return stripped
        if isinstance(obj, dict):
            for key in ("text", "label", "annotation", "what"):
                if isinstance(obj.get(key), str):
                    return obj[key].strip()
    return stripped
