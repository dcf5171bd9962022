"""Which stream columns an input's re-reference averages: one definition for online and offline.

- ``average``: the common average of the input's own ``channels`` (every stream channel when the
  input takes them all), so AUX, trigger or accelerometer columns of the amplifier never leak in;
- a list of labels (e.g. linked mastoids ``[A1, A2]``);
- ``{average: all EEG}``: every stream channel whose ``type`` in the stream description is EEG.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from controller.dsp.labels import resolve_channels
from controller.lang.compiled import AverageOfType, InputSpec


def reference_columns(spec: InputSpec, labels: Sequence[str], types: Sequence[str] | None = None) -> np.ndarray | None:
    """Column indices to average and subtract, or None to keep the recorded reference.

    ``types``: each stream channel's type from its description (needed for ``AverageOfType``).
    Raises ValueError naming the input and what the stream offers.
    """
    ref = spec.reference
    where = f"reference of input {spec.name!r}"
    if ref is None:
        return None
    if ref == "average":
        if not spec.channels:
            return np.arange(len(labels), dtype=np.intp)
        return resolve_channels(spec.channels, labels, where=where)
    if isinstance(ref, AverageOfType):
        if not types or not any(t.strip() for t in types):
            raise ValueError(f"{where}: average of all {ref.channel_type} channels needs channel types in the "
                             "stream description (desc/channels/channel/type), and this stream gives none; "
                             "list the reference channels instead")
        wanted = ref.channel_type.casefold()
        cols = [i for i, t in enumerate(types) if t.strip().casefold() == wanted]
        if not cols:
            seen = ", ".join(sorted({t for t in types if t.strip()}))
            raise ValueError(f"{where}: the stream has no channel of type {ref.channel_type!r}; its types: {seen}")
        return np.asarray(cols, dtype=np.intp)
    if isinstance(ref, str):
        raise ValueError(f"{where}: must be 'average', a list of channel labels or {{average: all TYPE}}, got {ref!r}")
    return resolve_channels(tuple(ref), labels, where=where)
