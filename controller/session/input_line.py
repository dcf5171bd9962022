"""The one wiring from any input to the engine: the shared fault policy first, then the modality's consumer.

Every source is built with an ``InputLine`` as its sink (controller/inputs/source.py). The line gives
each item and status to ``InputFaults`` (stall, NaN/inf, clock jump, the governor's ``input_seen``),
so an EEG chunk and an fMRI volume are judged by the same rules; only clean items reach the consumer,
which is what differs per modality (a feature pipeline per chunk, a volume pipeline per volume).
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from controller.safety.input_faults import InputFaults

ItemT = TypeVar("ItemT")
ItemT_contra = TypeVar("ItemT_contra", contravariant=True)


class Consumer(Protocol[ItemT_contra]):
    """What a modality does with its clean items and with its source's health."""

    def arrived(self, item: ItemT_contra) -> None:
        """Every item, clean or not, before it is checked (e.g. a volume's index places the run)."""
        ...

    def values(self, item: ItemT_contra) -> NDArray[np.floating]:
        """The numbers checked for NaN/inf."""
        ...

    def describe(self, item: ItemT_contra) -> str:
        """How the fault message names the item ('a chunk of 8 samples', 'volume 12')."""
        ...

    def consume(self, item: ItemT_contra) -> None: ...

    def recovered(self) -> None:
        """Clean data again after NaN/inf: state built from the bad data is dropped."""
        ...

    def on_status(self, status: str, detail: str, gap_s: float | None) -> None:
        """After the fault policy has seen the status (e.g. restart windows after a gap)."""
        ...


class InputLine(Generic[ItemT]):
    """The sink of one input: ``InputFaults`` and then the consumer, in the source's thread."""

    def __init__(self, faults: InputFaults, consumer: Consumer[ItemT]) -> None:
        self.faults = faults
        self.consumer = consumer

    def on_data(self, item: ItemT) -> None:
        faults = self.faults
        faults.data_seen()
        self.consumer.arrived(item)
        was_bad = faults.nonfinite
        if not faults.check_finite(self.consumer.values(item), self.consumer.describe(item)):
            return  # dropped: a NaN would poison every filter state and the GLM
        if was_bad:
            self.consumer.recovered()
        self.consumer.consume(item)

    def on_status(self, status: str, detail: str, gap_s: float | None = None) -> None:
        self.faults.report(status, detail)
        self.consumer.on_status(status, detail, gap_s)
