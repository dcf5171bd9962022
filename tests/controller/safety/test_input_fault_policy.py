"""One fault policy for every modality (issue 13): an fMRI stall and a NaN volume inhibit feedback and
stimulation exactly as an EEG stall and a NaN chunk do, and clean data lifts them the same way.

The sinks a session builds its sources with (``signal_line`` for sample streams, ``volume_line`` for volumes:
both an ``InputLine``, the fault policy then the modality's consumer) drive a real governor; the test calls
them as the real sources do.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_safety_governor import SITE, Clock

from controller.event_records import VolumeQC
from controller.events import EventBus
from controller.fmri.design import VolumeDesign
from controller.inputs.source import Chunk
from controller.inputs.volumes.volume import Volume
from controller.lang.compiled import Block
from controller.safety import DoseLedger, Governor, loads_site
from controller.session.fmri_modality import volume_line
from controller.session.input_line import InputLine
from controller.session.signal_modality import signal_line


class Gate:
    """The engine's inhibitions, as the wirings set them."""

    def __init__(self) -> None:
        self.inhibitions: dict[str, str] = {}
        self.values: list = []

    def set_inhibit(self, source: str, reason: str) -> None:
        self.inhibitions[source] = reason

    def clear_inhibit(self, source: str) -> None:
        self.inhibitions.pop(source, None)

    def on_features(self, values) -> None:
        self.values.extend(values)

    def start(self, t: float) -> None:
        pass


class Pipeline:
    """A sample stream's pipeline: counts what reaches it."""

    warmup_s = 0.0

    def __init__(self) -> None:
        self.pushed = self.resets = 0

    def push(self, data, timestamps, arrival):
        self.pushed += 1
        return []

    def reset(self) -> None:
        self.resets += 1

    def restart_windows(self) -> None:
        pass


class VolumePipe:
    """A volume pipeline: the design places volumes; ``push`` counts them."""

    def __init__(self) -> None:
        self.spec = SimpleNamespace(tr_s=2.0, skip=0)
        self.design = VolumeDesign((Block(0, "rest", 20.0), Block(1, "nf", 20.0)), 2.0, 1)
        self.pushed: list[int] = []

    def push(self, volume):
        self.pushed.append(volume.index)
        return SimpleNamespace(values=[], qc=VolumeQC(volume.index))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def governor(tmp_path: Path, clock: Clock):
    site = loads_site(SITE, "test-site.yaml")
    gov = Governor(site, DoseLedger(tmp_path / "ledger.jsonl", tz=site.tzinfo), "s1", clock=clock, wall=clock.wall)
    yield gov
    gov.ledger.close()


def eeg_wiring(governor: Governor) -> tuple[InputLine[Chunk], Gate, Pipeline]:
    """The sink a sample stream's reader is built with in a session."""
    gate, pipe = Gate(), Pipeline()
    return signal_line("eeg", pipe, gate, EventBus(), governor, max_gap_s=2.0), gate, pipe


def fmri_wiring(governor: Governor) -> tuple[InputLine[Volume], Gate, VolumePipe]:
    """The sink a volume source is built with in a session."""
    gate, pipe = Gate(), VolumePipe()
    return volume_line("fmri", pipe, gate, EventBus(), None, gate.start, governor, tr_lsl_s=2.0), gate, pipe


def volume(index: int, nan: bool = False) -> Volume:
    data = np.ones((4, 4, 3), np.float32)
    if nan:
        data[1, 2, 0] = np.nan
    return Volume(index, data, np.eye(4), 2.0, acquired=float(index), arrived=float(index))


def test_a_stall_inhibits_feedback_and_stimulation_alike_for_eeg_and_fmri(governor: Governor) -> None:
    eeg, eeg_gate, _ = eeg_wiring(governor)
    fmri, fmri_gate, _ = fmri_wiring(governor)
    eeg.on_status("stalled", "no samples for 0.50 s")
    fmri.on_status("stalled", "no volume for 4.1 s (last: 7)")
    assert set(eeg_gate.inhibitions) == {"input_stall:eeg"} and set(fmri_gate.inhibitions) == {"input_stall:fmri"}
    assert {"input_stall:eeg", "input_stall:fmri"} <= set(governor.inhibitions)
    assert governor.inhibitions["input_stall:fmri"].reason == "input fmri stalled: no volume for 4.1 s (last: 7)"
    eeg.on_status("resumed", "")
    fmri.on_status("resumed", "volume 9")
    assert not eeg_gate.inhibitions and not fmri_gate.inhibitions
    assert not {"input_stall:eeg", "input_stall:fmri"} & set(governor.inhibitions)


def test_nan_data_inhibits_until_clean_data_for_eeg_and_fmri(governor: Governor) -> None:
    eeg, eeg_gate, eeg_pipe = eeg_wiring(governor)
    fmri, fmri_gate, fmri_pipe = fmri_wiring(governor)
    bad = np.ones((8, 4))
    bad[3, 1] = np.inf
    eeg.on_data(Chunk(bad, np.arange(8.0), 0.0))
    fmri.on_data(volume(1, nan=True))
    assert set(eeg_gate.inhibitions) == {"nonfinite:eeg"} and set(fmri_gate.inhibitions) == {"nonfinite:fmri"}
    assert governor.inhibitions["nonfinite:fmri"].reason == "input fmri: 1 NaN/inf value(s) of 48 in volume 1"
    assert governor.inhibitions["nonfinite:eeg"].reason == \
        "input eeg: 1 NaN/inf value(s) of 32 in a chunk of 8 samples"
    assert eeg_pipe.pushed == 0 and fmri_pipe.pushed == []  # the bad data never reaches a filter or the GLM
    eeg.on_data(Chunk(np.ones((8, 4)), np.arange(8.0, 16.0), 0.0))
    fmri.on_data(volume(2))
    assert not eeg_gate.inhibitions and not fmri_gate.inhibitions
    assert not {"nonfinite:eeg", "nonfinite:fmri"} & set(governor.inhibitions)
    assert eeg_pipe.resets == 1 and eeg_pipe.pushed == 1 and fmri_pipe.pushed == [2]


def test_the_governor_checks_an_fmri_inputs_silence_against_its_tr(governor: Governor, clock: Clock) -> None:
    """Volumes tell the governor the input is alive, with its TR: between volumes is not a stall; a scanner
    that stops is one, raised by the governor itself even before the source says 'stalled'."""
    fmri, _, _ = fmri_wiring(governor)
    fmri.on_data(volume(1))
    clock.step(2.9)
    assert governor.poll() == []  # TR 2 s + site input_stall 1 s not yet over
    clock.step(0.2)
    assert [i.source for i in governor.poll()] == ["input_stall:fmri"]
    fmri.on_data(volume(2))  # data flowing again lifts the governor's own stall
    assert "input_stall:fmri" not in governor.inhibitions


def test_every_source_name_the_runtime_raises_is_in_the_vocabulary() -> None:
    """Names as the journal and the status line show them parse back into the one vocabulary; a made-up name
    is refused with the kinds that exist."""
    from controller.safety.faults import FaultKind, FaultSource, source

    for text in ("estop", "clock", "latency", "ledger", "governor", "delivery", "input_stall:eeg", "nonfinite:fmri",
                 "clock_jump:eeg", "volumes:fmri", "artifact:emg", "interlock:emg_high", "device:tms",
                 "watchdog", "output:lsl", "simulator"):
        assert str(FaultSource.parse(text)) == text
    assert source(FaultKind.DEVICE, "tavns") == "device:tavns"
    with pytest.raises(ValueError, match="unknown fault source 'nan:eeg': its kind is one of estop, clock"):
        FaultSource.parse("nan:eeg")
