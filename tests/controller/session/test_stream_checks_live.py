"""A live stream checked against a protocol before anything starts (issue 10): `validate --stream` and `run`
report a missing channel, a wrong rate or missing units at the protocol's FILE:LINE:COL and exit 2; a run that
never started leaves no session folder."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from amplifier import BlockAmplifier, loaded_machine_site, run_on_amplifier, watchdog_trips

from controller.cli import main

pytestmark = [pytest.mark.lsl]

PROTOCOL = """\
protocol: live-check
inputs:
  eeg:
    stream: {{type: EEG}}
    channels: [Cz, Fp1, {third}]
    reference: {{average: all EEG}}
    rate: {rate}
features:
  tbr: {{band_ratio: {{input: eeg, channels: [Cz], numerator: [4 Hz, 8 Hz], denominator: [13 Hz, 21 Hz], window: 2 s, every: 100 ms}}}}
timeline: [{{train: 5 s}}]
"""

ROOT = Path(__file__).resolve().parents[3]
LABELS = ["Cz", "Fp1", "Fp2", "TRIG"]
TYPES = ["EEG", "EEG", "EEG", "TRIG"]



@pytest.fixture
def amp():
    name = f"live-amp-{uuid.uuid4().hex[:6]}"
    a = BlockAmplifier(name, np.zeros((10, 4)), 256.0, LABELS, TYPES, ["uV", "uV", "uV", ""], 1e6)
    yield name
    a.stop()


def _protocol(tmp_path, third: str = "Fp2", rate: str = "256 Hz"):
    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL.format(third=third, rate=rate))
    return path


def test_validate_with_the_stream_prints_units_and_passes(tmp_path, amp, capsys):
    path = _protocol(tmp_path)
    assert main(["validate", str(path), "--stream", amp]) == 0
    out = capsys.readouterr().out
    assert f"input eeg: stream '{amp}' (4 ch, 256 Hz" in out
    assert "units Cz, Fp1, Fp2: uV -> V (x1e-06)" in out


def test_validate_with_the_stream_reports_each_problem_at_its_place(tmp_path, amp, capsys):
    path = _protocol(tmp_path, third="Pz", rate="500 Hz")
    assert main(["validate", str(path), "--stream", f"eeg={amp}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"{path}:5:25: stream '{amp}': input 'eeg': channel 'Pz' is not in the stream; its channels: Cz, Fp1, Fp2, TRIG",
        f"{path}:7:11: stream '{amp}': input 'eeg': the protocol expects 500 Hz but the stream runs at 256 Hz",
    ]


def test_validate_names_an_unknown_input_and_a_missing_stream(tmp_path, capsys):
    path = _protocol(tmp_path)
    assert main(["validate", str(path), "--stream", "emg=Nope"]) == 2
    assert "has no input 'emg'; its inputs: eeg" in capsys.readouterr().err
    assert main(["validate", str(path), "--stream", f"absent-{uuid.uuid4().hex[:6]}"]) == 2
    assert "no LSL stream matches" in capsys.readouterr().err


@pytest.mark.slow
def test_run_on_a_stream_without_a_channel_exits_2_and_leaves_no_session(tmp_path, amp, capsys):
    path = _protocol(tmp_path, third="Pz")
    sessions = tmp_path / "sessions"
    assert main(["run", str(path), "--stream", amp, "--session-dir", str(sessions), "--no-report"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:5:25: stream '{amp}': input 'eeg': channel 'Pz' is not in the stream" in err
    assert not sessions.exists() or not any(sessions.iterdir())


STIM = """\
protocol: live-virtual
inputs:
  eeg: {{stream: {{type: EEG}}, channels: [Cz, Fp1, Fp2], reference: {{average: all EEG}}}}
features:
  alpha: {{relative_power: {{input: eeg, channels: [Cz], band: [8 Hz, 12 Hz], window: 1 s, every: 125 ms}}}}
timeline: [{{baseline: 2 s}}, {{stim: 4 s}}]
devices:
  tavns: {{current: 0.5 mA, pulse_width: 250 us, phases: 2, frequency: 25 Hz, pulses: 25}}
rules:
  - {{during: stim, when: alpha > 0, do: {{stimulate: {{device: tavns}}}}, per_session: 1}}
"""


@pytest.mark.slow
@pytest.mark.parametrize("block", [1, 8, 32])
def test_virtual_devices_on_an_external_stream_in_blocks(tmp_path, capsys, block):
    """Issue 11: virtual stimulators without the simulated participant (the input is an amplifier
    streaming µV in blocks, as a g.USBamp sends 8 at a time), under the example site's limits with
    max_loop_latency 50 ms (amplifier.loaded_machine_site: CI runs beside the rest of the suite).
    The limit bounds the controller's delay (the chunk's arrival -> command bytes); a sample early in a
    block of 32 at 256 Hz is 121 ms old when its block arrives, and that is the amplifier's delay: the
    journal reports both latencies."""
    from controller.recording.journal import read_journal
    from controller.report.device_logs import read_device_logs

    name = f"live-stim-{uuid.uuid4().hex[:6]}"
    rng = np.random.default_rng(0)
    data = rng.normal(0, 10e-6, (256 * 30, 4))
    sessions = tmp_path / "sessions"
    path = tmp_path / "p.yaml"
    path.write_text(STIM.format())
    code = run_on_amplifier(["run", str(path), "--stream", name, "--virtual-devices", "--arm", "--site",
                             str(loaded_machine_site(tmp_path)), "--no-report"], sessions,
                            dict(name=name, data_volts=data, fs=256.0, labels=LABELS, types=TYPES,
                                 units=["uV", "uV", "uV", ""], scale=1e6, block=block))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "virtual triggerbox for 'tavns'" in out
    [session] = [p for p in sessions.iterdir() if p.is_dir() and p.name != "ledger"]
    events = read_journal(session / "journal.jsonl")
    blocks = [e["data"]["detail"] for e in events if e["kind"] == "input" and e["data"]["status"] == "blocks"]
    assert blocks and blocks[0].startswith(f"{block} sample(s) per chunk")
    fires = [e["data"] for e in events if e["kind"] == "command" and e["data"]["kind"] == "fire"]
    # a fire may be refused when the machine itself is overloaded (CI): then only for the controller's own
    # delay (never the block's age, what this test is about) or after a starved control loop tripped the
    # watchdog (everything disarmed); the rule tries again while it may
    trips = watchdog_trips(events)
    for refused in [f for f in fires if not f["ok"]]:
        assert ("latency" in refused["reason"] or (trips and "not armed" in refused["reason"])) and \
            "acquisition" not in refused["reason"], refused
    ok = [f for f in fires if f["ok"]]
    if not ok:
        assert trips, fires  # only a starved control loop may leave the rule without a fire
        return
    [start] = ok
    assert 0 <= start["controller_latency_s"] <= start["latency_s"]
    logs, problems = read_device_logs(session)
    assert not problems
    pulses = [m for m in logs["tavns"].meaning if m.startswith("pulse code")]
    # the 25 Hz train reached the virtual box whole, or (a loaded machine: the pulse thread woke too late for a
    # slot) exactly as many pulses as the governor says were delivered, the short train journaled with why
    [delivery] = [e["data"] for e in events if e["kind"] == "delivery" and e["data"]["device"] == "tavns"]
    assert delivery["planned"] == 25 and len(pulses) == delivery["delivered"], (delivery, logs["tavns"].meaning)
    if delivery["delivered"] < 25:
        assert delivery["short"] and delivery["missed"] and [e for e in events if e["kind"] == "short_train"]


def test_hardware_and_virtual_devices_exclude_each_other(tmp_path, capsys):
    path = _protocol(tmp_path)
    assert main(["run", str(path), "--sim", "--hardware", "--virtual-devices", "--no-report",
                 "--session-dir", str(tmp_path / "s")]) == 2
    assert "--hardware (the site's real ports) and --virtual-devices exclude each other" in capsys.readouterr().err
