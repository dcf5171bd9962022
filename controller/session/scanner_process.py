"""The simulated scanner (``python -m sim fmri``, the simulator or a replay) as a child process of a session.

Why a class of its own: the session needs three things from the process besides its volumes,
and all three come through its standard streams (the controller never imports sim/):

- ``READY {json}`` on stdout once its outlets exist (what it will send, e.g. ``volumes``);
- ``go`` on its stdin (``--wait-go``): volume 1 is sent only after the session's recorder has
  subscribed, so the XDF has every volume (LabRecorder gets only samples pushed after it subscribed);
- ``VOLUME {"index": N, ...}`` on stdout per volume sent: when the process has exited, the session
  waits for exactly these volumes before it stops, and names any that never arrived.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from typing import Any

from controller.clock import now
from controller.fmri.pipeline import VolumePipelineError
from controller.session.child_processes import child_env

READY_TIMEOUT_S = 60.0


class ScannerProcess:
    """A started ``sim fmri`` process: READY read, stdout and stderr drained, sent volumes counted."""

    def __init__(self, cmd: list[str], what: str) -> None:
        self.what = what
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=child_env())
        self.ready: dict[str, Any] = {}
        self.sent: list[int] = []  # acquisition indices, in the order the process reported them
        self.stdout_closed = threading.Event()  # after the process exited: every VOLUME line has been read
        self._stderr: list[str] = []
        self._stderr_done = threading.Event()
        self._went = False

    def await_ready(self, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """Wait for the READY line (the outlets exist); raise naming the process if it never comes."""
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump_stdout, args=(lines,), daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        deadline = now() + timeout_s
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - now()))
            except queue.Empty:
                self.proc.kill()
                raise VolumePipelineError(f"{self.what}: no READY line within {timeout_s:g} s") from None
            if line is None:
                code = self.proc.wait()
                self._stderr_done.wait(2.0)
                raise VolumePipelineError(f"{self.what} exited with code {code}: {self.stderr_tail()}")
            if line.startswith("READY"):
                self.ready = json.loads(line[5:] or "{}")
                return self.ready

    def go(self) -> None:
        """Let the process send volume 1 (it was started with ``--wait-go``); once."""
        if self._went or self.proc.stdin is None:
            return
        self._went = True
        try:
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):  # it exited already: the session sees that
            pass

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def stderr_tail(self, chars: int = 2000) -> str:
        return "".join(self._stderr).strip()[-chars:]

    def _pump_stdout(self, lines: queue.Queue[str | None]) -> None:
        """READY goes to ``lines``; VOLUME lines are counted; the pipe is drained so the process never blocks."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("VOLUME "):
                try:
                    self.sent.append(int(json.loads(line[7:])["index"]))
                except (ValueError, KeyError, TypeError):
                    pass
            elif line.startswith("READY"):
                lines.put(line)
        lines.put(None)
        self.stdout_closed.set()

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)
            if len(self._stderr) > 200:
                del self._stderr[:100]
        self._stderr_done.set()
