"""A volume's time, split into the stages it is: delivery (acquisition -> arrival) and the pipeline
(arrival -> feedback), and their sum.

Why split: the two have different owners and different budgets. Delivery is the scanner's and
the transport's (a scanner sends a volume once it is reconstructed, about a TR after it started);
the pipeline is the controller's, and the TR budget applies to it alone (it must be done before
the next volume arrives). Adding them and calling the sum "processing time" showed a 5 ms
pipeline as "100 % of the TR".

The acquisition time is only known when the source says it (an LSL stream's timestamp). A folder
file does not: its mtime is when it was written, after reconstruction, and the TR schedule's
start is not on the controller's clock. Then delivery and total are ``None`` in the journal and
"unknown" in words: never guessed.
"""

from __future__ import annotations

import math
from typing import Any

from controller.inputs.volumes.volume import Volume

ACQUISITION_TO_ARRIVAL = "acquisition_to_arrival"  # delivery: scanner -> controller
ARRIVAL_TO_FEEDBACK = "arrival_to_feedback"  # the pipeline: controller received -> feedback values out
TOTAL = "total"  # acquisition -> feedback (their sum; None when the acquisition time is unknown)
PIPELINE_STAGES = ("read", "realign", "roi", "glm", "features")  # inside arrival -> feedback, in order
KNOWN = "known (LSL timestamp)"
UNKNOWN = "unknown (a folder file does not say when its volume was acquired)"


def acquisition_time(volume: Volume) -> str:
    """What the journal says about the volume's acquisition time: known (and from where) or unknown."""
    return KNOWN if volume.acquisition_known else UNKNOWN


def stage_times_ms(volume: Volume, t_feedback: float, stages_ms: dict[str, float]) -> dict[str, float | None]:
    """The journal's ``timing_ms`` of one volume: the pipeline's own stages, then delivery, pipeline and total.

    ``t_feedback``: LSL time when the volume's feature values had been handed to the engine.
    """
    pipeline = 1e3 * (t_feedback - volume.received_at)
    delivery = volume.delivery_s
    out: dict[str, float | None] = {k: float(v) for k, v in stages_ms.items()}
    out[ACQUISITION_TO_ARRIVAL] = None if delivery is None else 1e3 * delivery
    out[ARRIVAL_TO_FEEDBACK] = pipeline
    out[TOTAL] = None if delivery is None else 1e3 * delivery + pipeline
    return out


def qc_times_ms(timing_ms: dict[str, Any]) -> tuple[float, float]:
    """(pipeline ms, delivery ms or NaN) for the QC stream's last two channels."""
    delivery = timing_ms.get(ACQUISITION_TO_ARRIVAL)
    return float(timing_ms[ARRIVAL_TO_FEEDBACK]), math.nan if delivery is None else float(delivery)
