"""Feedback over LSL: any display (PsychoPy, Unity, our own) can follow the loop.

Three outlets per session, all recorded into the session's XDF:
- ``<prefix>-features``: one double channel per feature, irregular rate, stamped with source time;
  a sample carries the features computed at that source sample and NaN for the others (a feature
  with a longer window or a slower rate is not repeated: every number in the stream is fresh);
- ``<prefix>-markers``: strings (block changes, ``reward``, rule markers), stamped with source time
  when a sample caused them;
- ``<prefix>-feedback``: the continuous feedback value in 0..1 (channel 2: the raw feature value).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pylsl

from drivers.base import Command, Output, OutputError


def _describe_channels(info: pylsl.StreamInfo, labels: Sequence[str], unit: str, note: str = "") -> None:
    if note:
        info.desc().append_child_value("note", note)
    channels = info.desc().append_child("channels")
    for label in labels:
        ch = channels.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", unit)
        ch.append_child_value("type", "feature")


class LslFeedbackOutput(Output):
    accepts = frozenset({"features", "marker", "feedback"})

    def __init__(self, prefix: str, feature_names: Sequence[str], source_id: str,
                 session: dict[str, str] | None = None) -> None:
        self.session = dict(session or {})  # written into each outlet's desc (session_id, protocol)
        self.name = f"lsl:{prefix}"
        self.prefix = prefix
        self.feature_names = list(feature_names)
        self.source_id = source_id
        self._features: pylsl.StreamOutlet | None = None
        self._markers: pylsl.StreamOutlet | None = None
        self._feedback: pylsl.StreamOutlet | None = None
        self._row = np.full(max(1, len(self.feature_names)), np.nan)

    @property
    def stream_names(self) -> dict[str, str]:
        return {k: f"{self.prefix}-{k}" for k in ("features", "markers", "feedback")}

    @property
    def source_ids(self) -> dict[str, str]:
        return {k: f"{self.source_id}-{k}" for k in ("features", "markers", "feedback")}

    def open(self) -> None:
        names, ids = self.stream_names, self.source_ids
        try:
            info = pylsl.StreamInfo(names["features"], "Features", len(self._row), pylsl.IRREGULAR_RATE,
                                    "double64", ids["features"])
            _describe_channels(info, self.feature_names or ["none"], "a.u.",
                               "each sample holds the features computed at its source sample; NaN = not computed then")
            self._features = pylsl.StreamOutlet(self._tagged(info))
            info = pylsl.StreamInfo(names["markers"], "Markers", 1, pylsl.IRREGULAR_RATE, "string", ids["markers"])
            self._markers = pylsl.StreamOutlet(self._tagged(info))
            info = pylsl.StreamInfo(names["feedback"], "Feedback", 2, pylsl.IRREGULAR_RATE, "double64",
                                    ids["feedback"])
            _describe_channels(info, ["feedback", "raw"], "a.u.")
            self._feedback = pylsl.StreamOutlet(self._tagged(info))
        except Exception as exc:  # liblsl reports failures as generic exceptions
            raise OutputError(f"{self.name}: cannot create LSL outlets: {exc}") from exc

    def _tagged(self, info: pylsl.StreamInfo) -> pylsl.StreamInfo:
        """The session's identity in the stream description, so a display or recording can tell sessions apart."""
        if self.session:
            node = info.desc().append_child("neuroreflex")
            for key, value in self.session.items():
                node.append_child_value(key, str(value))
        return info

    def send(self, command: Command) -> float:
        if self._markers is None or self._feedback is None or self._features is None:
            raise OutputError(f"{self.name}: send before open")
        kind, payload = command.kind, command.payload
        if kind == "marker":
            self._markers.push_sample([str(payload["text"])], command.t_source)
        elif kind == "feedback":
            self._feedback.push_sample([float(payload["value"]), float(payload["raw"])], command.t_source)
        elif kind == "features":
            values = payload["values"]
            row = self._row
            row.fill(np.nan)  # not computed at this sample: NaN, never the previous value again
            for i, name in enumerate(self.feature_names):
                if name in values:
                    row[i] = values[name]
            self._features.push_sample(row, command.t_source)
        else:
            raise OutputError(f"{self.name}: cannot send a {kind!r} command (accepts {sorted(self.accepts)})")
        return pylsl.local_clock()

    def close(self) -> None:
        self._features = self._markers = self._feedback = None
