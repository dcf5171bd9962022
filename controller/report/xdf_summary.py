"""What the XDF recording holds: one row per stream (samples, duration, rate, gaps)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyxdf

from controller.report.recording import channel_labels as _labels
from controller.report.recording import first as _first

log = logging.getLogger(__name__)

GAP_FACTOR = 2.5  # a regular stream has a gap where two samples are > 2.5 sample periods apart


def summarize_xdf(path: Path | str) -> list[dict[str, Any]]:
    """One dict per stream of an XDF file, in file order.

    Timestamps are read as recorded (clock offsets applied, no dejittering), so gaps
    are those the recorder actually saw.
    """
    streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=True, dejitter_timestamps=False)
    return summarize_streams(streams)


def summarize_streams(streams: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per stream already read by pyxdf (see :func:`summarize_xdf`)."""
    rows = []
    for s in streams:
        info = s["info"]
        ts = np.asarray(s["time_stamps"], dtype=float)
        srate = float(_first(info, "nominal_srate", "0") or 0)
        n = int(ts.size)
        duration = float(ts[-1] - ts[0]) if n > 1 else 0.0
        gaps = np.array([])
        if srate > 0 and n > 1:
            d = np.diff(ts)
            gaps = d[d > GAP_FACTOR / srate]
        rows.append({
            "name": _first(info, "name"),
            "type": _first(info, "type"),
            "channel_count": int(_first(info, "channel_count", "0") or 0),
            "channel_format": _first(info, "channel_format"),
            "nominal_srate": srate,
            "n_samples": n,
            "first_t": float(ts[0]) if n else None,
            "last_t": float(ts[-1]) if n else None,
            "duration_s": duration,
            "effective_srate": (n - 1) / duration if duration > 0 else None,
            "gaps": int(gaps.size),
            "max_gap_s": float(gaps.max()) if gaps.size else None,
            "labels": _labels(info),
        })
    return rows
