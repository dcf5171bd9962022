"""Per-volume fMRI quality over LSL: head motion, framewise displacement and the volume's time in stages.

One outlet ``<prefix>-fmri-qc`` (type ``QC``, float64, irregular rate), one sample per volume
stamped with the volume's acquisition time, channels in :data:`QC_CHANNELS` order. The
operator panel follows it and the session's XDF records it. Time is two channels because it is
two stages with different owners: ``pipeline_ms`` (arrival -> feedback, the controller's; the TR
budget applies to it) and ``delivery_ms`` (acquisition -> arrival, the scanner's and the
transport's; NaN when the source does not know the acquisition time, e.g. a folder).
"""

from __future__ import annotations

from collections.abc import Sequence

import pylsl

from drivers.base import Command, Output, OutputError

QC_CHANNELS: tuple[tuple[str, str], ...] = (
    ("index", "volume"), ("tx_mm", "mm"), ("ty_mm", "mm"), ("tz_mm", "mm"),
    ("rx_deg", "deg"), ("ry_deg", "deg"), ("rz_deg", "deg"), ("fd_mm", "mm"), ("pipeline_ms", "ms"),
    ("delivery_ms", "ms"),
)


class LslFmriQcOutput(Output):
    accepts = frozenset({"fmri_qc"})

    def __init__(self, prefix: str, source_id: str) -> None:
        self.name = f"lsl:{prefix}-fmri-qc"
        self.stream_name = f"{prefix}-fmri-qc"
        self.source_id = f"{source_id}-fmri-qc"
        self._outlet: pylsl.StreamOutlet | None = None

    def open(self) -> None:
        try:
            info = pylsl.StreamInfo(self.stream_name, "QC", len(QC_CHANNELS), pylsl.IRREGULAR_RATE, "double64",
                                    self.source_id)
            channels = info.desc().append_child("channels")
            for label, unit in QC_CHANNELS:
                ch = channels.append_child("channel")
                ch.append_child_value("label", label)
                ch.append_child_value("unit", unit)
            self._outlet = pylsl.StreamOutlet(info)
        except Exception as exc:  # liblsl reports failures as generic exceptions
            raise OutputError(f"{self.name}: cannot create the LSL outlet: {exc}") from exc

    def send(self, command: Command) -> float:
        if self._outlet is None:
            raise OutputError(f"{self.name}: send before open")
        if command.kind != "fmri_qc":
            raise OutputError(f"{self.name}: cannot send a {command.kind!r} command")
        row: Sequence[float] = command.payload["row"]
        if len(row) != len(QC_CHANNELS):
            raise OutputError(f"{self.name}: a QC row has {len(QC_CHANNELS)} values, got {len(row)}")
        self._outlet.push_sample([float(x) for x in row], command.t_source)
        return pylsl.local_clock()

    def close(self) -> None:
        self._outlet = None
