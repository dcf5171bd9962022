"""The MEG LSL stream's description: what a MEG stream from this simulator (or any amplifier app that
follows it) tells the controller about its channels and projectors.

Format
------
Stream: type ``MEG``, ``cf_float32``, nominal rate 1000-5000 Hz, values in SI units (T, T/m, V).
Channels: the .fif's 306 MEG channels (204 planar gradiometers, 102 magnetometers) in the file's order;
with ``--all-channels`` its stim, EEG and EOG channels too, still in the file's order.

``desc/manufacturer``: ``neuroreflex simulator``; ``desc/layout``: the .fif the channels come from.

``desc/channels/channel`` (one per column, in column order):

- ``label``: the file's name, e.g. ``MEG 0113`` (Neuromag: two gradiometers ``...2``/``...3`` and a
  magnetometer ``...1`` share a sensor unit).
- ``type``: MNE's channel type: ``grad``, ``mag``, ``eeg``, ``eog`` or ``stim``.
- ``unit``: ``T/m`` (grad), ``T`` (mag), ``V`` (eeg, eog), ``counts`` (stim: trigger codes).
- ``coil_type``: the .fif's coil type integer (3012 Vectorview planar gradiometer, 3024 Vectorview
  magnetometer, 1 EEG electrode, 0 none).
- ``location``: MNE's ``ch['loc']``, 12 numbers as children ``loc1`` .. ``loc12`` (each ``repr`` of the
  float: exact): loc1-3 the sensor's position in metres (device coordinates for MEG), loc4-12 its
  orientation (for a planar gradiometer loc4-6 is the direction of the gradient it measures, loc10-12
  the coil's normal). Children rather than one string: an XDF reader sees named numbers.

``desc/projectors/projector`` (optional; one element per SSP vector, so a multi-row projector of a file
is several elements with its name):

- ``name``: the projector's description, e.g. ``Average EEG reference``, ``ECG-planar-999--0.200-0.400-PCA-01``.
- ``active``: ``1`` when it is already applied to the streamed data, else ``0``.
- ``channels``: the channel labels it spans, comma-separated (``MEG 0113,MEG 0112,...``), as in its file
  (channels the stream lacks may appear: a reader drops them, as MNE does).
- ``data``: one number per channel, space-separated, ``repr`` precision (read back exactly).

The simulator writes the projectors of the layout file (and of a ``--ssp`` projection file) that span
at least one streamed channel: the sample file's ``Average EEG reference`` appears only with
``--all-channels``. It applies the active ones to the data it streams, so the description is true.

The participant's true alpha is published on ``<name>-state`` (type ``SimState``, irregular, double):
one channel ``alpha``, unit ``T``: the RMS of the alpha source's field at the magnetometer where it is
strongest (see generator.py), at the current amplitude.
"""

from __future__ import annotations

from collections.abc import Sequence

import pylsl

from sim.meg.layout import SensorLayout, SimProjector

STREAM_TYPE = "MEG"
STATE_TYPE = "SimState"


def _exact(x: float) -> str:
    return repr(float(x))


def streamed_projectors(layout: SensorLayout) -> list[SimProjector]:
    """The layout's projectors that span at least one streamed channel."""
    present = set(layout.labels)
    return [p for p in layout.projectors if present.intersection(p.channels)]


def meg_stream_info(name: str, source_id: str, layout: SensorLayout, rate: float,
                    layout_file: str = "") -> pylsl.StreamInfo:
    """The stream's header and description, in the format above."""
    info = pylsl.StreamInfo(name, STREAM_TYPE, layout.n_channels, rate, pylsl.cf_float32, source_id)
    desc = info.desc()
    desc.append_child_value("manufacturer", "neuroreflex simulator")
    if layout_file:
        desc.append_child_value("layout", layout_file)
    channels = desc.append_child("channels")
    for label, kind, unit, coil, loc in zip(layout.labels, layout.types, layout.units, layout.coil_types,
                                            layout.loc, strict=True):
        ch = channels.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("type", kind)
        ch.append_child_value("unit", unit)
        ch.append_child_value("coil_type", str(coil))
        where = ch.append_child("location")
        for k, value in enumerate(loc, start=1):
            where.append_child_value(f"loc{k}", _exact(value))
    describe_projectors(desc, streamed_projectors(layout))
    return info


def describe_projectors(desc: pylsl.XMLElement, projectors: Sequence[SimProjector]) -> None:
    if not projectors:
        return
    node = desc.append_child("projectors")
    for proj in projectors:
        item = node.append_child("projector")
        item.append_child_value("name", proj.name)
        item.append_child_value("active", "1" if proj.active else "0")
        item.append_child_value("channels", ",".join(proj.channels))
        item.append_child_value("data", " ".join(_exact(v) for v in proj.data))


def state_stream_info(name: str, source_id: str) -> pylsl.StreamInfo:
    """Irregular 1-channel stream: the true alpha amplitude (T, RMS at the strongest magnetometer)."""
    info = pylsl.StreamInfo(name, STATE_TYPE, 1, pylsl.IRREGULAR_RATE, pylsl.cf_double64, source_id)
    ch = info.desc().append_child("channels").append_child("channel")
    ch.append_child_value("label", "alpha")
    ch.append_child_value("unit", "T")
    ch.append_child_value("type", STATE_TYPE)
    return info
