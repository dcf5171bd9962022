"""The dose ledger: every dose the governor allowed, on disk, surviving any restart.

Append-only JSON Lines, one entry per committed dose, written with one ``write`` call and
``fsync``-ed before the governor lets the command go to the device: whatever was sent is
on disk. A crash can leave only the entry being written incomplete - and that command
was never sent - so an incomplete last line is dropped when the ledger is opened (the
file is cut back to its last complete line, and ``repaired`` says what was removed).
Any other unreadable line stops the ledger from opening: doses that cannot be read
cannot be respected.

Daily totals count an entry on every calendar day (in the site's time zone) its
stimulation touches, from the day it started to the day it ends, and count entries dated
later than today too (a wall clock set back must not hide a dose). One process at a
time: the file is locked while open.

Entry kinds: ``fire``, ``start`` (the whole planned dose), ``extra`` (a parameter change
during continuous stimulation that raised the remaining dose), ``overrun`` (stimulation
stopped after its planned end), ``refund`` (negative: the device confirmed an early stop),
``stop`` (no dose; when continuous stimulation ended), ``delivered`` (a train ended and the
driver said what it delivered: see below).

Planned, then delivered. A train's whole planned dose is written before it starts (so caps
hold while it runs). When it ends, a ``delivered`` entry is appended (history is never
rewritten): its ``delivered`` object holds the facts (pulses and charge the device
delivered in total for train ``ref``, what had been counted for it, whether the driver
confirmed the count, how the train ended and why it was short), and its ``pulses`` /
``charge_c`` are the correction (usually negative) that brings the train's counted dose to
the delivered one. Totals stay plain sums of ``pulses``/``charge_c``; the correction carries
the train's own ``wall`` and ``end_s``, so it falls on the same days as the dose it corrects.

Versions: lines are written as version 2 (which added ``delivered``); version 1 lines, from
older controllers, are read as before. A controller that only knows version 1 refuses a
ledger with version 2 lines (it could not count them), naming the version.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from controller.safety.dose import Totals

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

VERSION = 2
READS = (1, 2)  # ledger versions this controller reads
KINDS = ("fire", "start", "extra", "overrun", "refund", "stop", "delivered")
DOSE_KINDS = ("fire", "start")  # entries that open a train (the ``ref`` of the others)


class LedgerError(RuntimeError):
    """The ledger cannot be used (unreadable entry, locked by another process, I/O error)."""


@dataclass(frozen=True)
class Delivered:
    """The facts of a ``delivered`` entry: what train ``ref`` delivered in total, and how it ended."""

    pulses: float  # delivered in total
    charge_c: float  # delivered in total (C, all phases)
    counted_pulses: float  # what the ledger counted for the train before this entry
    counted_charge_c: float
    planned_pulses: float  # the train's own planned pulses (its fire/start entry)
    confirmed: bool  # False: the driver could not count them (the counted dose stands)
    ended_by: str  # completed | stopped | disarmed | fault | unreported
    reason: str = ""  # why it was short, or why the counted dose was kept

    def to_dict(self) -> dict[str, Any]:
        return {"pulses": self.pulses, "charge_c": self.charge_c, "counted_pulses": self.counted_pulses,
                "counted_charge_c": self.counted_charge_c, "planned_pulses": self.planned_pulses,
                "confirmed": self.confirmed, "ended_by": self.ended_by, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Any) -> Delivered:
        if not isinstance(d, dict):
            raise ValueError(f"delivered must be an object, got {d!r}")
        nums = {}
        for key in ("pulses", "charge_c", "counted_pulses", "counted_charge_c", "planned_pulses"):
            value = d.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"delivered.{key} must be a finite number, got {value!r}")
            nums[key] = value
        if not isinstance(d.get("confirmed"), bool):
            raise ValueError(f"delivered.confirmed must be true or false, got {d.get('confirmed')!r}")
        for key in ("ended_by", "reason"):
            if not isinstance(d.get(key, ""), str):
                raise ValueError(f"delivered.{key} must be text")
        return cls(nums["pulses"], float(nums["charge_c"]), nums["counted_pulses"], float(nums["counted_charge_c"]),
                   nums["planned_pulses"], d["confirmed"], d.get("ended_by", ""), d.get("reason", ""))


@dataclass(frozen=True)
class DoseEntry:
    """One dose (or stop) as recorded; times relative to ``t`` in seconds."""

    device: str
    session: str
    kind: str
    t: float  # governor clock (LSL local_clock) when committed
    wall: datetime  # aware wall-clock time of the start of the stimulation
    pulses: float = 0
    charge_c: float = 0.0
    end_s: float = 0.0  # stimulation ends at t + end_s
    last_pulse_s: float = 0.0
    train: bool = False
    rule: str | None = None
    settings: dict[str, float] = field(default_factory=dict)
    ref: int | None = None  # for stop/refund/extra/overrun/delivered: the entry number (1-based) of the train
    delivered: Delivered | None = None  # for 'delivered' entries: the facts

    def to_json(self) -> str:
        d: dict[str, Any] = {
            "v": VERSION, "device": self.device, "session": self.session, "kind": self.kind, "t": self.t,
            "wall": self.wall.astimezone(UTC).isoformat(), "pulses": self.pulses, "charge_c": self.charge_c,
            "end_s": self.end_s, "last_pulse_s": self.last_pulse_s, "train": self.train,
        }
        if self.rule is not None:
            d["rule"] = self.rule
        if self.settings:
            d["settings"] = self.settings
        if self.ref is not None:
            d["ref"] = self.ref
        if self.delivered is not None:
            d["delivered"] = self.delivered.to_dict()
        return json.dumps(d, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> DoseEntry:
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        version = d.get("v")
        if isinstance(version, bool) or version not in READS:
            raise ValueError(f"unknown ledger version {version!r} (this controller reads {', '.join(map(str, READS))})")
        kind = d.get("kind")
        if kind not in KINDS or (kind == "delivered" and version < 2):
            raise ValueError(f"unknown entry kind {kind!r}")
        for key in ("device", "session"):
            if not isinstance(d.get(key), str):
                raise ValueError(f"{key} must be text")
        nums = {}
        for key in ("t", "pulses", "charge_c", "end_s", "last_pulse_s"):
            value = d.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{key} must be a finite number, got {value!r}")
            nums[key] = value
        wall = datetime.fromisoformat(d["wall"]) if isinstance(d.get("wall"), str) else None
        if wall is None or wall.tzinfo is None:
            raise ValueError("wall must be an ISO time with a UTC offset")
        settings = d.get("settings") or {}
        if not isinstance(settings, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for k, v in settings.items()):
            raise ValueError(f"settings must map names to finite numbers, got {settings!r}")
        ref = d.get("ref")
        delivered = None
        if kind == "delivered":
            if isinstance(ref, bool) or not isinstance(ref, int):
                raise ValueError(f"a delivered entry needs the number of its train (ref), got {ref!r}")
            delivered = Delivered.from_dict(d.get("delivered"))
        return cls(d["device"], d["session"], kind, float(nums["t"]), wall, nums["pulses"], float(nums["charge_c"]),
                   float(nums["end_s"]), float(nums["last_pulse_s"]), bool(d.get("train", False)), d.get("rule"),
                   {k: float(v) for k, v in settings.items()}, ref if isinstance(ref, int) else None, delivered)


def local_date(moment: datetime, tz: tzinfo | None) -> date:
    """The calendar date of ``moment`` in ``tz`` (None: the host's local zone, DST-aware)."""
    return (moment.astimezone(tz) if tz is not None else moment.astimezone()).date()


class DoseLedger:
    """Open (creating if needed), lock and read a ledger file; then append and total.

    ``tz``: the site's time zone for day boundaries (None = host local). ``fsync``: make
    each entry durable before ``append`` returns (the cost is one disk flush per
    stimulation command, 1-13 ms on a virtual machine's disk).

    ``deferred_sync``: an entry is written (one ``write``: in the kernel's page cache, so a
    crash of this process cannot lose it) before ``append`` returns, and made durable on
    disk by a background thread right after (group commit). Only a crash of the whole
    machine within that flush (milliseconds) could lose it, and a failed flush calls
    ``on_sync_error(reason)`` (the governor inhibits stimulation). Sessions use it so that a
    disk flush is not on the stimulation's hot path.
    """

    def __init__(self, path: str | Path, *, tz: tzinfo | None = None, fsync: bool = True,
                 deferred_sync: bool = False, on_sync_error: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.tz = tz
        self.fsync = fsync
        self.deferred_sync = deferred_sync
        self.on_sync_error = on_sync_error
        self.sync_errors = 0
        self._dirty = threading.Event()
        self._io_lock = threading.Lock()
        self._syncer: threading.Thread | None = None
        self.repaired: str | None = None  # what was cut from an incomplete last line, if anything
        self.entries: list[DoseEntry] = []
        self._session: dict[tuple[str, str], Totals] = {}
        self._by_end_day: dict[str, dict[date, Totals]] = {}
        self._train_parts: dict[int, list[int]] = {}  # train entry number -> numbers of entries that refer to it
        self._fd: int | None = None
        created = not self.path.exists()
        try:
            self._fd = fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise LedgerError(f"{self.path}: cannot open the dose ledger: {exc.strerror}") from exc
        try:
            self._lock(fd)
            if created:
                self._sync_dir()
            self._load()
        except BaseException:
            self.close()
            raise
        if deferred_sync:
            self._syncer = threading.Thread(target=self._sync_loop, name="ledger-sync", daemon=True)
            self._syncer.start()

    # ------------------------------------------------------------------ opening

    def _lock(self, fd: int) -> None:
        if fcntl is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise LedgerError(f"{self.path}: the dose ledger is in use by another controller; one session at a time") from None

    def _sync_dir(self) -> None:
        try:
            dfd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)

    def _load(self) -> None:
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, size, 0) if size else b""
        lines = data.split(b"\n")
        tail = lines.pop()  # after the last newline: b"" when the file ends with one
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            self._ingest(self._parse(raw, number))
        if tail:
            number = len(lines) + 1
            try:
                entry = self._parse(tail, number)
            except LedgerError:
                keep = size - len(tail)
                self.repaired = (f"{self.path}:{number}: dropped an incomplete last entry ({len(tail)} bytes): "
                                 f"{tail[:80].decode('utf-8', 'replace')!r}")
                os.ftruncate(self._fd, keep)
                self._flush()
            else:  # complete entry missing only its newline: keep it (never undercount)
                self._ingest(entry)
                os.write(self._fd, b"\n")
                self._flush()

    def _parse(self, raw: bytes, number: int) -> DoseEntry:
        try:
            return DoseEntry.from_json(raw.decode("utf-8"))
        except (ValueError, KeyError, UnicodeDecodeError, TypeError) as exc:
            raise LedgerError(f"{self.path}:{number}: unreadable dose entry ({exc}); the ledger must be repaired by hand "
                              f"before stimulating, since its doses cannot be counted") from None

    # ------------------------------------------------------------------ writing

    def append(self, entry: DoseEntry, *, sync: bool | None = None) -> int:
        """Write one entry (one line, one write call), flushed and fsync'ed; returns its entry number (1-based)."""
        if self._fd is None:
            raise LedgerError(f"{self.path}: the dose ledger is closed")
        try:
            data = (entry.to_json() + "\n").encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise LedgerError(f"{self.path}: cannot record the dose {entry!r}: {exc}") from exc
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(0, f"short write ({written} of {len(data)} bytes)")
            if self.fsync if sync is None else sync:
                if self.deferred_sync:
                    self._dirty.set()
                else:
                    self._flush()
        except OSError as exc:
            raise LedgerError(f"{self.path}: cannot record the dose: {exc.strerror or exc}") from exc
        self._ingest(entry)
        return len(self.entries)

    def _flush(self) -> None:
        with self._io_lock:
            assert self._fd is not None
            (os.fdatasync if hasattr(os, "fdatasync") else os.fsync)(self._fd)

    def _sync_loop(self) -> None:
        while True:
            self._dirty.wait()
            self._dirty.clear()
            if self._fd is None:
                return
            try:
                self._flush()
            except (OSError, AssertionError) as exc:
                if self._fd is None:
                    return
                self.sync_errors += 1
                if self.on_sync_error is not None:
                    self.on_sync_error(f"{self.path}: the dose ledger could not be flushed to disk: {exc}")

    def _ingest(self, entry: DoseEntry) -> None:
        self.entries.append(entry)
        if entry.ref is not None:
            self._train_parts.setdefault(entry.ref, []).append(len(self.entries))
        if entry.kind == "stop":
            return
        add = Totals(entry.pulses, entry.charge_c)
        key = (entry.device, entry.session)
        self._session[key] = self._session.get(key, Totals()) + add
        end_day = local_date(entry.wall + timedelta(seconds=max(0.0, entry.end_s)), self.tz)
        days = self._by_end_day.setdefault(entry.device, {})
        days[end_day] = days.get(end_day, Totals()) + add

    def close(self) -> None:
        """Release the lock and close the file; safe to call twice."""
        if self._fd is not None:
            if self.deferred_sync:
                try:
                    self._flush()
                except OSError:
                    pass
            with self._io_lock:
                fd, self._fd = self._fd, None
                os.close(fd)
            self._dirty.set()  # wakes the sync thread, which sees the ledger closed

    def __enter__(self) -> DoseLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ totals

    def session_totals(self, device: str, session: str) -> Totals:
        return self._session.get((device, session), Totals())

    def day_totals(self, device: str, today: date) -> Totals:
        """Every dose whose stimulation touches ``today`` or a later day (conservative)."""
        total = Totals()
        for end_day, t in self._by_end_day.get(device, {}).items():
            if end_day >= today:
                total = total + t
        return total

    def today(self, now_wall: datetime) -> date:
        return local_date(now_wall, self.tz)

    def train_entries(self, number: int) -> list[DoseEntry]:
        """Train ``number`` (its fire/start entry) and every entry that refers to it (extra, overrun,
        refund, delivered, stop), in order; empty if ``number`` is not a train's entry."""
        if not 1 <= number <= len(self.entries) or self.entries[number - 1].kind not in DOSE_KINDS:
            return []
        return [self.entries[number - 1]] + [self.entries[i - 1] for i in self._train_parts.get(number, [])]

    def device_entries(self, device: str) -> Iterable[tuple[int, DoseEntry]]:
        for i, e in enumerate(self.entries, start=1):
            if e.device == device:
                yield i, e
