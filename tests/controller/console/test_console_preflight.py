"""The console's preflight: signal quality on numpy arrays, and every check against real LSL outlets.

The streams are real EEG (PhysioNet eegmat rest, 500 Hz, in µV as an amplifier sends it, pushed in
blocks of 16 samples at real time; synthetic 1/f + alpha when the shared data is absent), with faults
put in by hand: a flat channel, 50 Hz on one channel, a clipped channel, impedances in the description.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any Qt import (the view test)
pylsl = pytest.importorskip("pylsl")

from controller.console.preflight import (  # noqa: E402
    Check,
    by_name,
    device_checks,
    disk_check,
    dose_checks,
    measured_rate,
    other_streams_check,
    overall,
    read_day_totals,
    run_preflight,
    volume_checks,
)
from controller.console.quality import (  # noqa: E402
    AMBER,
    GREEN,
    RED,
    channel_quality,
    impedance_quality,
    parse_impedance,
)
from controller.inputs.lsl.live_check import with_streams  # noqa: E402
from controller.inputs.lsl.resolve import StreamDescription  # noqa: E402
from controller.lang.compiled import DeviceUse, Protocol, VolumeInputSpec, VolumeSourceSpec  # noqa: E402
from controller.protocol import load_protocol  # noqa: E402
from controller.safety.ledger import DoseEntry, DoseLedger  # noqa: E402
from controller.safety.site import loads_site  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
EEGMAT = ROOT.parent / "shared" / "data" / "eeg" / "physionet_eegmat_Subject00_1_rest.edf"
TBR = ROOT / "protocols" / "tbr_adhd.yaml"
FS = 500.0
UV = 1e-6


def eeg_volts(seconds: float) -> tuple[np.ndarray, list[str]]:
    """Real resting EEG (the 19 10-20 channels of eegmat) in volts; synthetic 1/f + alpha without the data."""
    n = int(seconds * FS)
    if EEGMAT.exists():
        import mne

        raw = mne.io.read_raw_edf(EEGMAT, preload=True, verbose="error")
        labels = [ch.replace("EEG ", "") for ch in raw.ch_names[:19]]
        return raw.get_data()[:19, :n].T.copy(), labels
    labels = ["Fp1", "Fp2", "F3", "F4", "F7", "F8", "T3", "T4", "C3", "C4", "T5", "T6", "P3", "P4", "O1", "O2",
              "Fz", "Cz", "Pz"]
    return synthetic_eeg(n, len(labels)), labels


def synthetic_eeg(n: int, channels: int, seed: int = 0) -> np.ndarray:
    """1/f noise plus a 10 Hz alpha rhythm, ~10 µV SD, in volts."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal((n, channels)), axis=0)
    f = np.fft.rfftfreq(n, 1 / FS)
    spec[1:] /= np.sqrt(f[1:])[:, None]
    spec[0] = 0
    pink = np.fft.irfft(spec, n, axis=0)
    pink *= 8 * UV / pink.std(axis=0)
    t = np.arange(n) / FS
    return pink + 6 * UV * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 6, channels))[:, None] * 1.0


class Amp(threading.Thread):
    """An LSL EEG outlet pushing ``data`` (V) as µV in blocks at real time, looping; labels, types,
    units and optional impedances (kΩ texts) in its description."""

    def __init__(self, name: str, data_volts: np.ndarray, labels: list[str], *, block: int = 16,
                 impedances: list[str] | None = None) -> None:
        super().__init__(name=f"amp:{name}", daemon=True)
        self.data = data_volts / UV
        self.block = block
        info = pylsl.StreamInfo(name, "EEG", len(labels), FS, pylsl.cf_float32, f"{name}-src")
        chans = info.desc().append_child("channels")
        for i, label in enumerate(labels):
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("type", "EEG")
            ch.append_child_value("unit", "microvolts")
            if impedances is not None:
                ch.append_child_value("impedance", impedances[i])
        self.outlet = pylsl.StreamOutlet(info, chunk_size=block)
        self.stopped = threading.Event()

    def run(self) -> None:
        t0, k, n = time.monotonic(), 0, len(self.data)
        while not self.stopped.is_set():
            start = (k * self.block) % (n - self.block)
            due = t0 + (k + 1) * self.block / FS
            delay = due - time.monotonic()
            if delay > 0 and self.stopped.wait(delay):
                return
            self.outlet.push_chunk(self.data[start:start + self.block].astype(np.float32), pylsl.local_clock())
            k += 1

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


@pytest.fixture(scope="module")
def eeg() -> tuple[np.ndarray, list[str]]:
    return eeg_volts(20.0)


@pytest.fixture
def amp(eeg):
    started: list[Amp] = []

    def make(data: np.ndarray | None = None, **kw) -> str:
        name = f"nrtest-preflight-{uuid.uuid4().hex[:8]}"
        a = Amp(name, eeg[0] if data is None else data, eeg[1], **kw)
        a.start()
        started.append(a)
        return name

    yield make
    for a in started:
        a.stop()


def tbr_on(stream: str) -> Protocol:
    return with_streams(load_protocol(TBR), {"": stream})


def preflight(protocol: Protocol, tmp_path: Path, **kw) -> dict[str, Check]:
    checks = run_preflight(protocol, session_root=tmp_path / "sessions", seconds=2.0, resolve_timeout_s=5.0, **kw)
    names = [c.name for c in checks]
    assert len(names) == len(set(names)), names
    assert all(c.level in (GREEN, AMBER, RED) and c.reason for c in checks)
    return dict(by_name(checks))


def col(labels: list[str], label: str) -> int:
    return labels.index(label)


# ----------------------------------------------------------------------------- quality on arrays


def test_clean_eeg_is_green_on_every_channel(eeg):
    data, labels = eeg
    results = channel_quality(data[:1000] / UV, FS, labels, units="uV")
    assert [q.level for q in results] == [GREEN] * len(labels), [q.reason for q in results if q.level != GREEN]
    cz = results[col(labels, "Cz")]
    assert cz.reason.startswith("Cz: ok (peak-to-peak ")
    assert 10 < cz.metrics["ptp_uv"] < 200
    assert cz.metrics["line50_pct"] < 1.0


def test_each_fault_is_named_with_its_number(eeg):
    data, labels = eeg
    x = data[:1000].copy()
    t = np.arange(1000) / FS
    x[:, col(labels, "Cz")] = 12 * UV  # electrode off: constant
    x[:, col(labels, "Fz")] *= 1e-3  # almost flat
    x[:, col(labels, "Fp1")] += 40 * UV * np.sin(2 * np.pi * 50 * t)
    x[:, col(labels, "O1")] += 25 * UV * np.sin(2 * np.pi * 60 * t) / 4  # a little 60 Hz: amber
    x[300:360, col(labels, "Fp2")] = x[:, col(labels, "Fp2")].max()  # pinned at the rail for 120 ms
    x[:, col(labels, "T3")] *= 12  # several hundred µV
    x[:, col(labels, "T4")] += np.random.default_rng(1).standard_normal(1000) * 30 * UV  # EMG-like
    by = {q.label: q for q in channel_quality(x, FS, labels, scale_to_volts=1.0)}
    assert by["Cz"].level == RED and by["Cz"].reason == "Cz: flat (constant 12 µV)"
    assert by["Fz"].level == RED and by["Fz"].reason.startswith("Fz: flat, peak-to-peak ")
    assert by["Fp1"].level == RED and "Fp1: line noise 50 Hz at " in by["Fp1"].reason
    share = by["Fp1"].metrics["line50_pct"]
    assert 50 < share < 100 and f"at {share:.0f} % of power (> 20 %)" in by["Fp1"].reason
    assert by["O1"].level == AMBER and "O1: line noise 60 Hz" in by["O1"].reason and "(> 5 %)" in by["O1"].reason
    assert by["Fp2"].level == RED and by["Fp2"].reason.startswith("Fp2: saturated, 60 samples in a row")
    assert by["T3"].level == RED and "T3: peak-to-peak" in by["T3"].reason and "(> 500 µV)" in by["T3"].reason
    assert by["T4"].level == RED and "T4: high-frequency noise (> 40 Hz)" in by["T4"].reason
    assert by["Pz"].level == GREEN
    notched = {q.label: q for q in channel_quality(x, FS, labels, scale_to_volts=1.0, notched=(50.0,))}
    assert notched["Fp1"].level == AMBER and "(the protocol notches 50 Hz)" in notched["Fp1"].reason
    assert notched["O1"].level == AMBER and "notches" not in notched["O1"].reason  # 60 Hz is not notched
    assert notched["Cz"].level == RED  # nothing else is softened


def test_amplitude_amber_band_and_unit_scaling():
    t = np.arange(1000) / FS
    x = np.column_stack([150 * np.cos(2 * np.pi * 5 * t), 50 * np.cos(2 * np.pi * 5 * t)])  # whole cycles: no trend
    q_uv = channel_quality(x, FS, ["A", "B"], units=["uV", "uV"])
    assert [q.level for q in q_uv] == [AMBER, GREEN]
    assert q_uv[0].reason.startswith("A: peak-to-peak 30") and q_uv[0].reason.endswith(" µV (> 200 µV)")
    assert q_uv[0].metrics["ptp_uv"] == pytest.approx(300, rel=0.01)
    q_mv = channel_quality(x / 1000, FS, ["A", "B"], units="mV")  # the same signal written in mV
    assert [q.metrics["ptp_uv"] for q in q_mv] == pytest.approx([q.metrics["ptp_uv"] for q in q_uv])
    with pytest.raises(ValueError, match="not a voltage"):
        channel_quality(x, FS, ["A", "B"], units="fT")


def test_clip_value_and_low_rate_skip_line_checks():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 1)) * 20 * UV
    q = channel_quality(x, 100.0, ["C3"], clip_volts=30 * UV)[0]  # 100 Hz: 50 Hz is at Nyquist
    assert q.level == RED and ("clipped at ±30 µV" in q.reason or "saturated" in q.reason)
    assert np.isnan(q.metrics["line50_pct"]) and np.isnan(q.metrics["hf_pct"])


def test_impedance_texts_and_levels():
    assert parse_impedance("5.2") == pytest.approx(5200.0)  # a bare number is kΩ
    assert parse_impedance("5200 Ohm") == pytest.approx(5200.0)
    assert parse_impedance("12kΩ") == pytest.approx(12000.0)
    assert parse_impedance("1.1 MOhm") == pytest.approx(1.1e6)
    assert parse_impedance("") is None and parse_impedance("n/a") is None
    res = impedance_quality(["Cz", "Fp1", "Fp2", "Pz"], ["4", "25 kOhm", 80e3, ""])
    assert [(q.label, q.level) for q in res] == [("Cz", GREEN), ("Fp1", AMBER), ("Fp2", RED)]
    assert res[2].reason == "Fp2: impedance 80 kΩ (> 50 kΩ)"


def test_measured_rate_averages_block_timestamps():
    # blocks of 16 samples stamped at their push time and back-dated at the nominal rate, pushed 3 % slow
    stamps = np.concatenate([k * 16 / 485.0 + (np.arange(16) - 15) / 500.0 for k in range(60)])
    assert measured_rate(stamps) == pytest.approx(485.0, rel=0.003)


# ----------------------------------------------------------------------------- against real outlets


def test_clean_stream_is_green(amp, tmp_path):
    name = amp()
    checks = preflight(tbr_on(name), tmp_path)
    for key in ("stream eeg", "rate eeg", "channels eeg", "units eeg", "XDF recording"):
        assert checks[key].level == GREEN, checks[key]
    assert name in checks["stream eeg"].reason and "19 ch, 500 Hz" in checks["stream eeg"].reason
    assert checks["channels eeg"].reason == f"input eeg: Cz, Fp1, Fp2 present in stream {name!r}"
    signal = {k: c for k, c in checks.items() if k.startswith("signal eeg/")}
    assert len(signal) == 19  # the common average of every EEG channel reaches the features: all judged
    assert all(c.level == GREEN for c in signal.values()), [c.reason for c in signal.values() if c.level != GREEN]
    assert checks["measured rate eeg"].level != RED and "expected 500 Hz" in checks["measured rate eeg"].reason
    assert checks["clock eeg"].level in (GREEN, AMBER) and "clock offset" in checks["clock eeg"].reason
    assert not any(k.startswith("impedance") for k in checks)  # none described
    assert checks["disk session folder"].level in (GREEN, AMBER, RED)
    assert "the session needs about" in checks["disk session folder"].reason


def test_flat_line_noise_saturation_and_impedance_are_reported(amp, eeg, tmp_path):
    data, labels = eeg
    x = data.copy()
    t = np.arange(len(x)) / FS
    x[:, col(labels, "Cz")] = 0.0
    x[:, col(labels, "Fp1")] += 40 * UV * np.sin(2 * np.pi * 60 * t)  # 60 Hz: the protocol notches only 50 Hz
    x[:, col(labels, "T3")] += 40 * UV * np.sin(2 * np.pi * 50 * t)
    fp2 = x[:, col(labels, "Fp2")]
    x[:, col(labels, "Fp2")] = np.clip(fp2, -np.inf, np.percentile(fp2, 70))  # the top 30 % pinned at one value
    imp = ["5"] * len(labels)
    imp[col(labels, "Pz")] = "25 kOhm"
    imp[col(labels, "O2")] = "80"
    checks = preflight(tbr_on(amp(x, impedances=imp)), tmp_path)
    assert checks["signal eeg/Cz"].level == RED and checks["signal eeg/Cz"].reason == "Cz: flat (constant 0 µV)"
    fp1 = checks["signal eeg/Fp1"]
    assert fp1.level == RED and fp1.reason.startswith("Fp1: line noise 60 Hz at ") and "(> 20 %)" in fp1.reason
    t3 = checks["signal eeg/T3"]  # as strong, at the frequency the protocol notches: looked at, not refused
    assert t3.level == AMBER and t3.reason.endswith("(> 20 %) (the protocol notches 50 Hz)")
    fp2c = checks["signal eeg/Fp2"]
    assert fp2c.level == RED and fp2c.reason.startswith("Fp2: saturated, ")
    assert checks["signal eeg/Pz"].level == GREEN
    assert checks["impedance eeg/Pz"].level == AMBER and checks["impedance eeg/Pz"].reason == "Pz: impedance 25 kΩ (> 10 kΩ)"
    assert checks["impedance eeg/O2"].level == RED and checks["impedance eeg/O2"].reason == "O2: impedance 80 kΩ (> 50 kΩ)"
    assert checks["impedance eeg/Cz"].level == GREEN
    assert overall(list(checks.values())) == RED


def test_missing_stream_and_missing_channel_are_red(amp, eeg, tmp_path):
    other = amp()  # on the network, but not the stream asked for
    missing = f"nrtest-preflight-absent-{uuid.uuid4().hex[:6]}"
    checks = run_preflight(tbr_on(missing), session_root=tmp_path, resolve_timeout_s=0.5)
    got = by_name(checks)
    assert got["stream eeg"].level == RED
    assert f"no LSL stream matches [name='{missing}']" in got["stream eeg"].reason
    assert other in got["stream eeg"].detail  # what *is* visible
    assert not any(k.startswith("signal") for k in got)
    assert other in got["other streams"].reason  # listed (no input stream was found to be confused with)

    data, labels = eeg
    renamed = [("Cz2" if lab == "Cz" else lab) for lab in labels]
    a = Amp(f"nrtest-preflight-{uuid.uuid4().hex[:8]}", data, renamed)
    a.start()
    try:
        checks2 = preflight(tbr_on(a.outlet.get_info().name()), tmp_path)
    finally:
        a.stop()
    assert checks2["channels eeg"].level == RED and "'Cz'" in checks2["channels eeg"].reason


def test_declared_rate_mismatch_is_red(amp, tmp_path):
    name = amp()
    text = TBR.read_text().replace("    stall: 1 s", "    stall: 1 s\n    rate: 256 Hz")
    path = tmp_path / "tbr_256.yaml"
    path.write_text(text)
    checks = preflight(with_streams(load_protocol(path), {"": name}), tmp_path)
    assert checks["rate eeg"].level == RED and "256 Hz" in checks["rate eeg"].reason and "500 Hz" in checks["rate eeg"].reason


# ----------------------------------------------------------------------------- devices, doses, disk, fMRI

SITE = """
site: preflight-lab
timezone: UTC
max_loop_latency: 50 ms
input_stall: 1 s
devices:
  tavns:
    driver: triggerbox
    port: {port}
    fixed_settings: {{current: 0.5 mA, pulse_width: 250 us, phases: 2}}
    limits:
      current_max: 5 mA
      frequency_max: 25 Hz
      pulse_width_max: 500 us
      pulses_per_session_max: 1000
      pulses_per_day_max: 2000
      charge_per_day_max: 1 mC
  spare:
    driver: triggerbox
    port: /dev/nrtest-no-such-port
    fixed_settings: {{current: 0.5 mA, pulse_width: 250 us, phases: 2}}
    limits:
      current_max: 5 mA
      frequency_max: 25 Hz
      pulses_per_session_max: 1000
"""


def stim_protocol(*devices: str) -> Protocol:
    return Protocol("stim-test", {}, {}, {}, (), (), devices={d: DeviceUse(d) for d in devices})


def test_devices_connected_missing_or_virtual():
    master, slave = os.openpty()
    try:
        site = loads_site(SITE.format(port=os.ttyname(slave)))
        checks = by_name(device_checks(stim_protocol("tavns", "spare"), site, "site"))
        assert checks["device tavns"].level == GREEN and "connected" in checks["device tavns"].reason
        assert checks["device spare"].level == RED
        assert "/dev/nrtest-no-such-port does not exist" in checks["device spare"].reason
        virtual = by_name(device_checks(stim_protocol("spare"), site, "virtual"))
        assert virtual["device spare"].level == GREEN and "virtual triggerbox" in virtual["device spare"].reason
        assert device_checks(stim_protocol("tavns"), None, "site")[0].level == RED
    finally:
        os.close(master)
        os.close(slave)


def test_dose_used_today_against_the_caps(tmp_path):
    site = loads_site(SITE.format(port="loop://x"))
    path = tmp_path / "preflight-lab-p01.jsonl"
    now = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    with DoseLedger(path, tz=site.tzinfo) as ledger:
        ledger.append(DoseEntry("tavns", "s0", "fire", 0.0, datetime(2026, 3, 3, 12, 0, tzinfo=UTC), 1900, 0.0))  # yesterday
        ledger.append(DoseEntry("tavns", "s1", "fire", 0.0, now, 1700, 0.2e-3))
        ledger.append(DoseEntry("tavns", "s1", "stop", 1.0, now, 0, 0.0, ref=2))
    totals, note = read_day_totals(path, site.tzinfo, now)
    assert totals["tavns"].pulses == 1700 and note == ""
    amber = by_name(dose_checks(stim_protocol("tavns"), site, path, now))["dose tavns"]
    assert amber.level == AMBER
    assert amber.reason == "device tavns: 1700 of 2000 pulses today; 200 µC of 1 mC today (85 % of the daily cap, > 80 %)"
    with DoseLedger(path, tz=site.tzinfo) as ledger:
        ledger.append(DoseEntry("tavns", "s2", "fire", 0.0, now, 300, 0.0))
    red = by_name(dose_checks(stim_protocol("tavns"), site, path, now))["dose tavns"]
    assert red.level == RED and "2000 of 2000 pulses today" in red.reason and "daily cap reached" in red.reason
    fresh = dose_checks(stim_protocol("tavns"), site, tmp_path / "none.jsonl", now)[0]
    assert fresh.level == GREEN and fresh.reason.endswith("0 of 2000 pulses today; 0 µC of 1 mC today (0 % of the daily cap)")
    path.write_bytes(path.read_bytes() + b'{"v": 2, "device": "tav')  # a torn last line: a session drops it
    assert read_day_totals(path, site.tzinfo, now)[1].startswith("an incomplete last entry")
    path.write_bytes(b"garbage\n" + path.read_bytes())
    broken = dose_checks(stim_protocol("tavns"), site, path, now)[0]
    assert broken.level == RED and ":1: unreadable dose entry" in broken.reason


def test_preflight_of_a_stimulation_protocol_reads_the_participants_ledger(tmp_path):
    site = loads_site(SITE.format(port="loop://x"))
    ledger_dir = tmp_path / "ledgers"
    ledger_dir.mkdir()
    with DoseLedger(ledger_dir / "preflight-lab-p07.jsonl", tz=site.tzinfo) as ledger:
        ledger.append(DoseEntry("tavns", "s1", "fire", 0.0, datetime.now(UTC), 2000, 0.0))
    checks = by_name(run_preflight(stim_protocol("tavns"), site=site, ledger_dir=ledger_dir, participant="p07",
                                   session_root=tmp_path, devices="virtual", record_xdf=False))
    assert checks["device tavns"].level == GREEN
    assert checks["dose tavns"].level == RED and "daily cap reached" in checks["dose tavns"].reason
    assert "other streams" not in checks  # no signal inputs: no LSL look-up


def test_disk_levels_follow_free_space_and_need(tmp_path):
    ok = disk_check(tmp_path / "not-yet" / "sessions", 10 << 20, "session folder")
    assert "free, the session needs about 10.0 MB" in ok.reason
    huge = disk_check(tmp_path, 1 << 60, "session folder")
    assert huge.level == RED and huge.reason.endswith("needs about 1048576.0 TB (< 1048576.0 TB)")


def test_fmri_volume_folder_checks(tmp_path):
    spec = VolumeInputSpec("bold", VolumeSourceSpec(folder=str(tmp_path / "export"), pattern="*.nii"), tr_s=2.0)
    missing = volume_checks("bold", spec, None, None)
    assert missing[0].level == RED and "does not exist" in missing[0].reason
    (tmp_path / "export").mkdir()
    ok = volume_checks("bold", spec, None, None)
    assert [c.level for c in ok] == [GREEN] and "exists and is writable" in ok[0].reason
    (tmp_path / "export" / "vol001.nii").write_bytes(b"x")
    refuse = VolumeInputSpec("bold", VolumeSourceSpec(folder=str(tmp_path / "export"), pattern="*.nii",
                                                      existing="refuse"), tr_s=2.0)
    got = by_name(volume_checks("bold", refuse, None, None))
    assert got["existing volumes bold"].level == RED and "1 file already match '*.nii'" in got["existing volumes bold"].reason
    protocol = Protocol("fmri", {}, {}, {}, (), (), volume_inputs={"bold": spec})
    checks = by_name(run_preflight(protocol, session_root=tmp_path, record_xdf=False))
    assert set(checks) == {"volumes bold", "existing volumes bold", "disk session folder", "disk volume folder of bold"}
    assert checks["existing volumes bold"].level == AMBER  # skip: they will be skipped
    simulated = by_name(run_preflight(protocol, session_root=tmp_path, record_xdf=False, simulated_scanner=True))
    assert set(simulated) == {"volumes bold", "disk session folder"}  # --sim: the export folder is not used
    assert simulated["volumes bold"].level == GREEN and "simulated scanner" in simulated["volumes bold"].reason


def test_other_streams_listing():
    mine = StreamDescription("amp", "EEG", "amp-1", 8, 500.0, "h")
    others = [StreamDescription(f"s{i}", "Markers", f"id{i}", 1, 0.0, "h") for i in range(3)]
    check = other_streams_check([mine, *others], [mine])
    assert check.level == GREEN and check.reason.startswith("3 other streams visible: 's0' (Markers)")
    assert other_streams_check([mine], [mine]).level == GREEN
    rival = StreamDescription("amp2", "EEG", "amp-2", 8, 500.0, "h")  # another session's amplifier: same type
    check = other_streams_check([mine, rival, *others], [mine])
    assert check.level == AMBER and "'amp2' shares a used stream's name or type" in check.reason


def test_view_lists_checks_red_first_with_coloured_levels(qtbot):
    pytest.importorskip("PySide6", reason="the gui extra is not installed: pip install -e '.[gui,test]'")
    from controller.console.preflight_view import LEVEL_COLORS, PreflightView

    view = PreflightView()
    qtbot.addWidget(view)
    checks = [Check("stream eeg", GREEN, "input eeg: stream 'amp'"),
              Check("signal eeg/Cz", RED, "Cz: flat (constant 0 µV)", "ptp_uv 0"),
              Check("other streams", AMBER, "2 other streams visible: 'a' (EEG), 'b' (Markers)")]
    view.show_checks(checks)
    table = view.table
    assert table.rowCount() == 3
    assert [table.item(r, 1).text() for r in range(3)] == ["signal eeg/Cz", "other streams", "stream eeg"]
    assert table.item(0, 0).text() == RED
    assert table.item(0, 0).background().color().name() == LEVEL_COLORS[RED]
    assert table.item(1, 0).background().color().name() == LEVEL_COLORS[AMBER]
    assert table.item(0, 2).text() == "Cz: flat (constant 0 µV)" and table.item(0, 2).toolTip() == "ptp_uv 0"
    assert view.summary.text() == "preflight red: 1 red, 1 amber, 1 green"
    view.running()
    assert not view.button.isEnabled()
    with qtbot.waitSignal(view.run_again, timeout=2000):
        view.button.setEnabled(True)
        view.button.click()
