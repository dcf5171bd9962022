"""The front end of a signal input (controller.dsp.front_end), built from the protocol's input and what
the found stream says about itself: fNIRS (layout from labels, wavelengths and optode positions) or MEG
(signal-space projectors from the stream and/or a file). EEG inputs have none."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from controller.dsp.front_end import FrontEnd
from controller.lang.compiled import InputSpec
from controller.protocol.stream_check import StreamFacts


def front_end_for(spec: InputSpec, facts: StreamFacts, protocol_dir: Path) -> FrontEnd | None:
    """The input's front end, or None; ValueError saying what the stream lacks."""
    if spec.fnirs is not None:
        return nirs_front_end(spec, facts)
    if spec.ssp is not None:
        return ssp_front_end(spec, facts, protocol_dir)
    return None


def nirs_front_end(spec: InputSpec, facts: StreamFacts) -> FrontEnd:
    from controller.dsp.nirs.front_end import NirsFrontEnd
    from controller.dsp.nirs.layout import NirsLayout

    nirs = spec.fnirs
    assert nirs is not None
    if not facts.optodes:
        raise ValueError("the stream's description gives no optode positions (desc/montage/optodes/sources and "
                         "detectors, each with location X, Y, Z in mm): Beer-Lambert needs each pair's distance")
    positions = {label: (x, y, z) for label, x, y, z in facts.optodes}
    measures = {m.strip().casefold() for m in facts.measures if m.strip()}
    if len(measures) > 1:
        raise ValueError(f"the stream mixes measures {sorted(measures)}; one stream sends intensity or od")
    measure = "od" if measures == {"od"} else "intensity"
    layout = NirsLayout.from_labels(list(facts.labels), positions=positions, short_max_m=nirs.short_max_m)
    return NirsFrontEnd(layout, facts.rate, measure=measure, ppf=nirs.ppf, reference_s=nirs.reference_s,
                        short_regression=nirs.short_regression, short_memory_s=nirs.short_memory_s,
                        lowpass_hz=nirs.lowpass_hz, highpass_hz=nirs.highpass_hz, sci_window_s=nirs.sci_window_s,
                        jump_od=nirs.jump_od, jump_hold_s=nirs.jump_hold_s)


def ssp_front_end(spec: InputSpec, facts: StreamFacts, protocol_dir: Path) -> FrontEnd | None:
    """Signal-space projection with the stream's projectors and/or a file's; None when there are none."""
    from controller.dsp.meg.front_end import SspFrontEnd
    from controller.dsp.meg.ssp import Projector, projector_coverage, projectors_from_file

    ssp = spec.ssp
    assert ssp is not None
    projectors: list[Projector] = []
    if ssp.from_stream:
        projectors += [Projector(name, active, channels, np.asarray(vector, dtype=np.float64))
                       for name, active, channels, vector in facts.projectors]
    if ssp.file:
        path = Path(ssp.file) if Path(ssp.file).is_absolute() else protocol_dir / ssp.file
        if not path.exists():
            raise ValueError(f"ssp: file {str(path)!r} does not exist")
        projectors += projectors_from_file(path)
    labels = list(facts.labels)
    if not projectors:
        return None  # nothing to project: the stream carries no projectors and no file was given
    coverage = projector_coverage(projectors, labels)
    low = [p.name for p, c in zip(projectors, coverage) if c < 0.9]
    if low:  # a projector fitted to channels the stream does not have would project the wrong subspace
        raise ValueError(f"the stream has fewer than 90 % of the channels (by weight) of projector(s) "
                         f"{', '.join(repr(n) for n in low)}; record the projectors on this system's channels")
    return SspFrontEnd.from_projectors(labels, list(facts.types or ("",) * len(labels)), projectors)


def describe_front_end(front: FrontEnd) -> str:
    """One line for the operator: what the stream's columns became."""
    describe = getattr(front, "describe", None)
    if callable(describe):
        return str(describe())
    return f"front end {type(front).__name__}: {len(front.labels)} channels"
