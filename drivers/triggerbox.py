"""TTL trigger box driver (Brain Products TriggerBox and alike): one byte on a virtual COM port is one trigger.

Protocol (public facts; the box has no replies, no handshake, no CRC):
- The box enumerates as a virtual COM port (USB CDC/FTDI); the baud rate is ignored by
  the USB link, 115200 is what published scripts pass.
- A byte written to the port is put on the 8 parallel output lines and held until the
  next byte. A trigger is therefore the code (1-255), then 0 after the pulse width
  (~10 ms is the customary width). Sources: Brain Products TriggerBox usage in public
  experiment scripts (e.g. ``write(bytes([code])); sleep(0.01); write(bytes([0]))``),
  the project's DESIGN.md "Devices". Uncertain: the official TriggerBox manual was not
  available; nothing here depends on more than "byte = line state, held".

What it drives: any stimulator with a TTL trigger input (Digitimer DS7/DS8R for taVNS or
peripheral stimulation, tES devices). One trigger is one pulse or one train depending on
the stimulator's own settings; trains can also be timed here (``frequency_hz``).

Timing: ``fire``/``start`` write the first rising edge in the caller's thread, so
``t_sent`` is exact and a port failure raises at once; every later edge (the 0 that ends
the pulse, the pulses of a train) is written by one pulse thread against the LSL
(monotonic) clock, scheduled from the train's start so that it never drifts. Two rising
edges are never closer than one period minus min(1 ms, 5 %) (so a late wake-up is caught up
gradually, not by bunching), and a slot more than half a period late is skipped and counted
in ``status().parameters["missed_slots"]``.

Accounting: when a train ends the driver reports what left (``report_trains_to``, a
``drivers.delivery.TrainReport``): the rising edges written (a pulse cut short by stop still
counts), the slots skipped with the time each was due and how late the thread was, and what
ended it (completed, stopped, disarmed, a port fault). Single pulses are not reported: their
only edge is written by ``fire`` itself, which raises if it fails.

Safety: the 0 is never skipped. ``stop``/``disarm`` end a pulse or train at once and write
0 themselves; a failed write of 0 is retried once, then latched as a fault ("line may be
stuck high"): every later command raises DeviceError with that reason, ``status().error``
shows it, and ``on_error(reason)`` is called from the pulse thread at the moment it
happens (the hot path does not wait for the falling edge).
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import pylsl
import serial

from drivers.delivery import COMPLETED, DISARMED, FAULT, STOPPED, MissedSlot, TrainReport
from drivers.serial_port import SerialPort, open_port
from drivers.stimulator import DeviceError, DeviceStatus, NotReady, Stimulator

TRIGGER_WIDTH_S = 0.01  # the customary trigger width
MIN_PULSE_WIDTH_S = 0.001  # one USB frame: a shorter width is not reliably produced by a virtual COM port
TRAIN_DUTY_MAX = 0.4  # in a train, a trigger is high at most this fraction of the period
MAX_PULSE_WIDTH_S = 1.0  # a TTL trigger, not a DC level
MIN_LOW_S = 0.001  # the line must be low at least this long between pulses of a train
JITTER_TOLERANCE_S = 0.001  # a train pulse may follow the previous one this much early (max 5 % of the period)
PARAMETERS = ("code", "pulse_width_s", "frequency_hz", "train_duration_s")


@dataclass(frozen=True)
class _Job:
    """Edges the pulse thread still has to write; pulse 0's rising edge is already on the wire."""

    t_first: float  # LSL time of the first rising edge (the schedule's origin)
    code: int
    width_s: float
    period_s: float | None  # None: a single pulse
    count: int | None  # pulses in the train; None: until stop()


@dataclass
class _Tally:
    """What one train put on the wire so far (the pulse thread's own record, turned into a report)."""

    rises: int = 1  # rising edges written; the first one by fire/start
    missed: list[MissedSlot] = field(default_factory=list)
    ended_by: str = COMPLETED
    uncertain: bool = False  # a write failed: its pulse is counted, but may not have gone out
    detail: str = ""


def _jitter_tolerance(period_s: float) -> float:
    """How much closer than one period two rising edges may be, so that a late wake-up is caught up
    gradually instead of accumulating (the instantaneous rate exceeds the set one by at most 5 %)."""
    return min(JITTER_TOLERANCE_S, 0.05 * period_s)


def _check_parameters(code: Any, width: Any, frequency: Any, duration: Any) -> None:
    if isinstance(code, bool) or not isinstance(code, int) or not 1 <= code <= 255:
        raise ValueError(f"trigger code must be an integer 1-255 (0 is the idle level), got {code!r}")
    if not isinstance(width, (int, float)) or not MIN_PULSE_WIDTH_S <= width <= MAX_PULSE_WIDTH_S:
        raise ValueError(f"pulse_width_s must be {MIN_PULSE_WIDTH_S}-{MAX_PULSE_WIDTH_S} s, got {width!r}")
    if frequency is not None:
        if not isinstance(frequency, (int, float)) or not math.isfinite(frequency) or frequency <= 0:
            raise ValueError(f"frequency_hz must be > 0 (None = no train), got {frequency!r}")
        if width + MIN_LOW_S + _jitter_tolerance(1.0 / frequency) > 1.0 / frequency:
            raise ValueError(
                f"pulse_width_s={width} s does not fit a {frequency} Hz train: the period is {1.0 / frequency:.4f} s "
                f"and the line must be low at least {MIN_LOW_S} s between pulses"
            )
    if duration is not None and (not isinstance(duration, (int, float)) or not math.isfinite(duration)
                                 or duration <= 0):
        raise ValueError(f"train_duration_s must be > 0 (None = no timed train), got {duration!r}")


class TriggerBoxDriver(Stimulator):
    """A TTL trigger output on a virtual COM port; arm/disarm are software states."""

    counts_pulses = True  # it writes every edge itself

    def __init__(self, port: str, code: int = 1, pulse_width_s: float = TRIGGER_WIDTH_S, baudrate: int = 115200,
                 frequency_hz: float | None = None, train_duration_s: float | None = None,
                 write_timeout_s: float = 0.2, on_error: Callable[[str], None] | None = None,
                 name: str | None = None) -> None:
        _check_parameters(code, pulse_width_s, frequency_hz, train_duration_s)
        self.name = name or f"triggerbox:{port}"
        self.port = port
        self.baudrate = baudrate
        self.write_timeout_s = write_timeout_s
        self.on_error = on_error
        self._code = code
        self._width = float(pulse_width_s)
        self._frequency = None if frequency_hz is None else float(frequency_hz)
        self._duration = None if train_duration_s is None else float(train_duration_s)
        self._serial: SerialPort | None = None
        self._armed = False
        self._fault: str | None = None
        self._line = 0  # last byte written (the driver's view of the output lines)
        self._state_lock = threading.RLock()  # arm/disarm/fire/start/stop/set transitions
        self._io_lock = threading.Lock()  # one write at a time on the port
        self._cancel = threading.Event()  # ends the running pulse/train now
        self._cancel_by = STOPPED  # who set _cancel: stop() or disarm() (for the train's report)
        self._idle = threading.Event()
        self._idle.set()
        self._job: _Job | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._pulses = 0  # completed pulses (falling edge written) since connect
        self._missed = 0  # train slots skipped because the thread woke too late

    # ------------------------------------------------------------------ what the controller asks
    @classmethod
    def from_site(cls, name: str, port: str, options: Mapping[str, Any],
                  on_error: Callable[[str], None]) -> TriggerBoxDriver:
        """A stuck line is found by the pulse thread, after fire() has returned: ``on_error`` hears it."""
        return cls(port, **{"name": name, **options, "on_error": on_error})

    def command_parameters(self, settings: Mapping[str, float],
                           changed: Collection[str] | None = None) -> dict[str, Any]:
        """Only the trigger's timing: current, pulse width and phases of the stimulator it triggers are
        set on that stimulator's front panel (the site's fixed settings). A train (n pulses at f) is
        timed here; its triggers are the customary width, narrowed to fit a fast train's period."""
        n = int(round(settings["n_pulses"])) if "n_pulses" in settings else None
        f = settings.get("frequency_hz")
        train_s = n / f if n is not None and n > 1 and f is not None else None
        width = TRIGGER_WIDTH_S if f is None else max(MIN_PULSE_WIDTH_S, min(TRIGGER_WIDTH_S, TRAIN_DUTY_MAX / f))
        return {
            "pulse_width_s": width,
            "frequency_hz": f if train_s is not None else None,
            "train_duration_s": train_s,
        }

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> None:
        """Open the port and put the lines low; the driver starts disarmed."""
        if self._serial is not None:
            return
        try:
            self._serial = open_port(self.port, baudrate=self.baudrate, timeout=0,
                                     write_timeout=self.write_timeout_s)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceError(f"{self.name}: cannot open {self.port}: {exc}") from exc
        self._fault = None
        self._armed = False
        self._pulses = self._missed = 0
        self._worker = threading.Thread(target=self._run_jobs, name=f"pulses:{self.name}", daemon=True)
        self._worker.start()
        try:
            self._write(0)  # a known idle level, whatever the previous user left on the lines
        except DeviceError:
            self.close()
            raise

    def close(self) -> None:
        """Disarm (line low), stop the pulse thread, close the port. Raises DeviceError after
        closing if the line could not be brought low (the operator must know)."""
        if self._serial is None:
            return
        error: DeviceError | None = None
        try:
            self.disarm()
        except DeviceError as exc:
            error = exc
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join(timeout=2)
            self._worker = None
        with self._io_lock:
            try:
                self._serial.close()
            except (serial.SerialException, OSError):
                pass
            self._serial = None
        if error is not None:
            raise error

    # ------------------------------------------------------------------ commands
    def arm(self) -> float:
        with self._state_lock:
            self._require_port()
            self._armed = True
            return pylsl.local_clock()

    def disarm(self) -> float:
        """E-STOP path: disarmed at once, any pulse/train ended, the line written low."""
        with self._state_lock:
            self._armed = False
            self._end_train(DISARMED)
        if self._serial is None:
            return pylsl.local_clock()
        return self._write_low("disarm")

    def set_parameters(self, **params: Any) -> float:
        """code (1-255), pulse_width_s, frequency_hz (None: no train), train_duration_s (None: untimed)."""
        unknown = sorted(set(params) - set(PARAMETERS))
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {unknown}; accepted: {list(PARAMETERS)}")
        with self._state_lock:
            if not self._idle.is_set():
                raise NotReady(f"{self.name}: a pulse or train is running; stop() it before changing parameters")
            new = {"code": self._code, "pulse_width_s": self._width, "frequency_hz": self._frequency,
                   "train_duration_s": self._duration, **params}
            _check_parameters(new["code"], new["pulse_width_s"], new["frequency_hz"], new["train_duration_s"])
            self._code = new["code"]
            self._width = float(new["pulse_width_s"])
            self._frequency = None if new["frequency_hz"] is None else float(new["frequency_hz"])
            self._duration = None if new["train_duration_s"] is None else float(new["train_duration_s"])
            return pylsl.local_clock()  # nothing goes on the wire: the box has no settings

    def fire(self) -> float:
        """One trigger; a timed train instead when both frequency_hz and train_duration_s are set."""
        if self._frequency is not None and self._duration is not None:
            count = max(1, math.ceil(self._duration * self._frequency - 1e-9))
            return self._begin(1.0 / self._frequency, count)
        return self._begin(None, 1)

    def start(self) -> float:
        """A continuous train at frequency_hz until stop() (or disarm/close)."""
        if self._frequency is None:
            raise NotReady(f"{self.name}: no train frequency set; set_parameters(frequency_hz=...) first")
        return self._begin(1.0 / self._frequency, None)

    def stop(self) -> float:
        """End the pulse/train at once (the current pulse is cut short) and leave the line low."""
        self._end_train(STOPPED)
        if self._serial is None:
            return pylsl.local_clock()
        self._idle.wait(timeout=1.0)
        return self._write_low("stop")

    def status(self) -> DeviceStatus:
        connected = self._serial is not None
        job = self._job
        busy = not self._idle.is_set()
        ready_at = None
        if busy and job is not None and job.period_s is None:
            ready_at = job.t_first + job.width_s
        return DeviceStatus(
            t=pylsl.local_clock(), connected=connected, remote=connected, armed=self._armed,
            ready=connected and self._armed and not busy and self._fault is None,
            ready_at=ready_at, error=self._fault,
            parameters={"code": self._code, "pulse_width_s": self._width, "frequency_hz": self._frequency,
                        "train_duration_s": self._duration, "line": self._line,
                        "train_running": busy and job is not None and job.period_s is not None,
                        "pulses": self._pulses, "missed_slots": self._missed},
        )

    def wait_idle(self, timeout: float) -> bool:
        """True once the last pulse/train has ended with the line low (for tests and sequencing)."""
        return self._idle.wait(timeout)

    # ------------------------------------------------------------------ internals
    def _end_train(self, by: str) -> None:
        """Cancel the running pulse/train; the first of stop/disarm names the ending in its report."""
        if not self._cancel.is_set():
            self._cancel_by = by
        self._cancel.set()

    def _sleep_until(self, t: float, pulse: int, edge: str) -> bool:
        """Wait until LSL time ``t`` for ``edge`` ("rise"/"fall") of pulse ``pulse`` (1-based); True if
        stop/disarm came first. The only place the pulse thread sleeps: a test makes a wake-up late
        here, as a loaded machine does, to see a slot skipped and reported."""
        return self._cancel.wait(max(0.0, t - pylsl.local_clock()))

    def _require_port(self) -> None:
        if self._serial is None:
            raise DeviceError(f"{self.name}: not connected (call connect())")
        if self._fault is not None:
            raise DeviceError(f"{self.name}: {self._fault}")

    def _begin(self, period_s: float | None, count: int | None) -> float:
        with self._state_lock:
            self._require_port()
            if not self._armed:
                raise NotReady(f"{self.name}: disarmed; arm() first")
            if not self._idle.is_set():
                job = self._job
                if job is not None and job.period_s is None:
                    raise NotReady(f"{self.name}: previous pulse still high until t={job.t_first + job.width_s:.4f}")
                raise NotReady(f"{self.name}: a train is running; stop() it first")
            self._cancel.clear()
            self._cancel_by = STOPPED
            self._idle.clear()
            code, width = self._code, self._width
            t_try = pylsl.local_clock()
            try:
                t = self._write(code)
            except DeviceError as exc:
                failure = exc
                self._latch(f"port failed writing trigger code {code}: {exc}")
                try:
                    self._write_low("failed trigger")
                except DeviceError:
                    pass
            else:
                self._job = _Job(t, code, width, period_s, count)
                self._jobs.put(self._job)
                return t
        try:
            if period_s is not None:  # a train whose first edge failed: at most that one pulse left
                self._report_train(TrainReport(t_try, pylsl.local_clock(), count, 1, FAULT, confirmed=False,
                                               detail=f"the first trigger's write failed: {failure}"))
        finally:
            self._idle.set()
        raise failure

    def _write(self, value: int, unless_cancelled: bool = False) -> float:
        """Write one byte; returns the LSL time it left. With ``unless_cancelled`` a rising edge is
        dropped if stop/disarm came first (checked under the port lock, so no edge follows their 0)."""
        with self._io_lock:
            if unless_cancelled and self._cancel.is_set():
                return -1.0
            if self._serial is None:
                raise DeviceError(f"{self.name}: port closed")
            # Stamped just before the syscall: once os.write releases the GIL, getting it back can
            # take a switch interval, so a stamp taken after the write can be late by milliseconds.
            t = pylsl.local_clock()
            try:
                written = self._serial.write(bytes((value,)))
            except (serial.SerialException, OSError) as exc:  # includes write timeouts
                raise DeviceError(f"{self.name}: write of {value} to {self.port} failed: {exc}") from exc
            if written not in (None, 1):
                raise DeviceError(f"{self.name}: write of {value} to {self.port} wrote {written} bytes")
            self._line = value
            return t

    def _write_low(self, context: str) -> float:
        """The 0 that ends a pulse: retried once, then latched as a stuck-high fault."""
        try:
            return self._write(0)
        except DeviceError:
            pass
        try:
            return self._write(0)
        except DeviceError as exc:
            reason = f"{context}: the write of 0 failed twice, the trigger line may be stuck high ({exc})"
            self._latch(reason)
            raise DeviceError(f"{self.name}: {reason}") from exc

    def _latch(self, reason: str) -> None:
        if self._fault is not None:
            # Already latched and reported: the fault is sticky until connect(). Reporting again
            # would recurse when the listener disarms (a disarm on a dead port latches again).
            return
        self._fault = reason
        callback = self.on_error
        if callback is not None:
            try:
                callback(f"{self.name}: {reason}")
            except Exception:  # a faulty listener must not kill the pulse thread
                pass

    def _run_jobs(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            tally = _Tally()
            try:
                self._run(job, tally)
            except DeviceError as exc:  # latched by _write_low / _latch; the next command raises it
                tally.ended_by, tally.detail = FAULT, str(exc)
            finally:
                try:
                    if job.period_s is not None:  # before idle: stop() returns, and the next train starts, after it
                        self._report_train(TrainReport(
                            job.t_first, pylsl.local_clock(), job.count, tally.rises, tally.ended_by,
                            tuple(tally.missed), not tally.uncertain, tally.detail))
                finally:
                    self._idle.set()

    def _run(self, job: _Job, tally: _Tally) -> None:
        """Write the job's remaining edges, recording in ``tally`` what went out and how it ended."""
        k, t_rise = 0, job.t_first
        while True:
            self._sleep_until(t_rise + job.width_s, k + 1, "fall")
            t_fall = self._write_low(f"pulse {k + 1}")
            self._pulses += 1
            k += 1
            if job.period_s is None or (job.count is not None and k >= job.count):
                return  # every pulse went out (a stop during the last one cut only its width)
            if self._cancel.is_set():
                tally.ended_by = self._cancel_by
                return
            # Next rising edge: on the grid t_first + k*period (no drift), but never closer to the
            # previous one than period - tolerance, never less than MIN_LOW_S after the falling edge,
            # and a slot more than half a period late is skipped (pulses are never bunched).
            earliest = max(t_rise + job.period_s - _jitter_tolerance(job.period_s), t_fall + MIN_LOW_S)
            target = max(job.t_first + k * job.period_s, earliest)
            while target - (job.t_first + k * job.period_s) > 0.5 * job.period_s:
                due = job.t_first + k * job.period_s
                self._missed += 1
                tally.missed.append(MissedSlot(k + 1, due, earliest - due))
                k += 1
                target = max(job.t_first + k * job.period_s, earliest)
            if job.count is not None and k >= job.count:
                return
            if self._sleep_until(target, k + 1, "rise"):
                tally.ended_by = self._cancel_by
                return
            try:
                t_rise = self._write(job.code, unless_cancelled=True)
            except DeviceError as exc:
                tally.rises += 1  # the byte may have left before the failure: counted, not confirmed
                tally.uncertain, tally.ended_by, tally.detail = True, FAULT, f"port failed in a train: {exc}"
                self._latch(f"port failed writing trigger code {job.code} in a train: {exc}")
                self._write_low("failed train pulse")
                return
            if t_rise < 0:  # cancelled between the wait and the write
                tally.ended_by = self._cancel_by
                return
            tally.rises += 1
