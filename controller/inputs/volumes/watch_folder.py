"""A scanner's real-time export folder as a volume source (DICOM MOSAIC / enhanced, NIfTI .nii/.nii.gz).

Wake-up: Linux inotify (IN_CLOSE_WRITE, IN_MOVED_TO; IN_CREATE stamps when a file appeared), or
polling (``watch="poll"``, chosen automatically when inotify is unavailable or the folder is on a
network file system, where inotify misses remote writes). Either way a file is only decoded
when it is complete by its own content (NIfTI: ``vox_offset`` + data bytes present; .gz: the
gzip stream ended; DICOM: the pixel data element holds all Rows x Columns x Frames pixels), and
in polling mode also only once its size stopped changing between two looks. A file found
incomplete stays pending and is retried on its next close event or size change.

``pattern`` (globs on the file name, ``;``-separated; default the DICOM and NIfTI extensions)
says which files are volumes, e.g. ``*.dcm`` when the scanner writes DICOM and NIfTI per TR, or
``*_mag.nii`` for magnitude next to phase. Hidden files (``.name``) never match.
The volume index comes from the file: DICOM AcquisitionNumber (``dicom_index="acquisition"``,
default) or InstanceNumber (``"instance"``), NIfTI the last number in the file name, or
``index_regex`` (its first group) for any format.
Files present when the source opens (the scanner already running, or an earlier run left in the
folder) are skipped with a warning (``existing="skip"``, the default: status ``existing`` names
them), read in name order (``"process"``), or refused (``"refuse"``: the source does not open). ``Volume.received`` is when the file appeared (its IN_CREATE /
IN_MOVED_TO event, or the poll that first saw it); ``Volume.arrived`` when it was decoded. A file
does not say when its volume was acquired (its mtime is when the scanner wrote it, after
reconstruction), so ``acquisition_known`` is False and ``acquired`` (the run's timeline stamp) is
the appearance time: the delivery delay of a folder is unknown, not zero.
"""

from __future__ import annotations

import os
import re
import select
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from inotify_simple import INotify  # type: ignore[import-untyped]  # inotify_simple: no types
from inotify_simple import flags as inotify

from controller.clock import now
from controller.inputs.source import Sink
from controller.inputs.volumes.dicom import IncompleteFile, read_dicom
from controller.inputs.volumes.export_names import name_matches, pattern_globs
from controller.inputs.volumes.fs_type import fs_type
from controller.inputs.volumes.nifti import decode_nifti
from controller.inputs.volumes.source import VolumeSource
from controller.inputs.volumes.volume import Volume

_MASK = inotify.CLOSE_WRITE | inotify.MOVED_TO | inotify.CREATE | inotify.DELETE_SELF | inotify.MOVE_SELF


def _inotify_available() -> bool:
    try:
        INotify().close()
    except OSError:
        return False
    return True


def _open_inotify(folder: Path) -> INotify:
    notify = INotify()
    try:
        notify.add_watch(folder, _MASK)
    except OSError:
        notify.close()
        raise
    return notify


DEFAULT_PATTERN = "*.dcm;*.DCM;*.ima;*.IMA;*.nii;*.nii.gz"
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")
_NATURAL = re.compile(r"(\d+)")


EXISTING = ("skip", "process", "refuse")


def existing_text(names: list[str], folder: Path, pattern: str) -> str:
    """'3 file(s) matching P were already in F at start (a .. c)'."""
    span = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"
    return f"{len(names)} file(s) matching {pattern!r} were already in {folder} at start ({span})"


def _natural_key(name: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p for p in _NATURAL.split(name)]


def file_format(name: str, head: bytes = b"") -> str:
    """'nifti' or 'dicom' from the name, else from the first bytes."""
    low = name.lower()
    if low.endswith((".nii", ".nii.gz")):
        return "nifti"
    if low.endswith((".dcm", ".ima", ".dicom")):
        return "dicom"
    if head[:2] == b"\x1f\x8b" or head[:4] in (b"\x5c\x01\x00\x00", b"\x00\x00\x01\x5c"):
        return "nifti"
    return "dicom"


@dataclass
class _Pending:
    first_seen: float
    size: int = -1           # size when last tried (or looked at, when polling)
    stable: bool = False     # polling: same size seen twice
    changed_at: float = 0.0


class FolderSource(VolumeSource):
    """Watches one folder and delivers each complete volume file once."""

    kind = "folder"

    def __init__(self, input_name: str, folder: str | Path, sink: Sink[Volume],
                 stall_timeout_s: float = 10.0, pattern: str = DEFAULT_PATTERN, watch: str = "auto",
                 poll_interval_s: float = 0.05, existing: str = "skip", index_regex: str | None = None,
                 tr_s: float | None = None, first_index: int | None = None, rescan_s: float = 1.0,
                 give_up_s: float = 30.0, dicom_index: str = "acquisition") -> None:
        super().__init__(input_name, sink, stall_timeout_s, first_index)
        if watch not in ("auto", "inotify", "poll"):
            raise ValueError(f"watch must be auto, inotify or poll, got {watch!r}")
        if existing not in EXISTING:
            raise ValueError(f"existing must be one of {', '.join(EXISTING)}; got {existing!r}")
        if dicom_index not in ("acquisition", "instance"):
            raise ValueError(f"dicom_index must be 'acquisition' or 'instance', got {dicom_index!r}")
        self.dicom_index = dicom_index
        pattern_globs(pattern)  # an empty pattern is refused here, not at the first file
        if not poll_interval_s > 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s}")
        self.folder = Path(folder)
        self.pattern = pattern
        self.watch_request = watch
        self.watch = watch
        self.poll_interval_s = float(poll_interval_s)
        self.existing = existing
        self.index_regex = re.compile(index_regex) if index_regex else None
        self.tr_option = tr_s
        self.tr_s = tr_s
        self.rescan_s = rescan_s
        self.give_up_s = give_up_s
        self.watch_reason = ""
        self.files_read = 0
        self.incomplete_reads = 0
        self._notify: INotify | None = None
        self._pending: dict[str, _Pending] = {}
        self._done: set[str] = set()
        self._found_at_open: list[str] = []  # files already there when the source opened (name order)
        self._affine: np.ndarray | None = None

    # ------------------------------------------------------------ setup
    def _where(self) -> str:
        return str(self.folder)

    def _connected_detail(self) -> str:
        how = "inotify" if self.watch == "inotify" else f"polling every {self.poll_interval_s * 1000:.0f} ms"
        return f"{self.folder} ({self.pattern}, {how}{'; ' + self.watch_reason if self.watch_reason else ''})"

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(pattern=self.pattern, watch=self.watch, existing=self.existing, dicom_index=self.dicom_index)
        return info

    def _open(self, timeout_s: float) -> None:
        deadline = now() + timeout_s
        while not self.folder.is_dir():
            if now() >= deadline:
                raise FileNotFoundError(f"input {self.input_name!r}: folder {self.folder} does not exist "
                                        f"(waited {timeout_s:g} s)")
            self._halt.wait(0.1)
        self.watch = self._choose_watch()
        if self.watch == "inotify":
            self._notify = _open_inotify(self.folder)
        t = now()
        found = sorted(self._list(), key=_natural_key)
        if found and self.existing == "refuse":
            raise FileExistsError(f"input {self.input_name!r}: {existing_text(found, self.folder, self.pattern)}; "
                                  "existing: refuse stops here (empty the folder for a new run, or set "
                                  "existing: skip or process)")
        self._found_at_open = found
        for name in found:
            if self.existing == "skip":
                self._done.add(name)
            else:
                self._pending[name] = _Pending(first_seen=t, changed_at=t)

    def _choose_watch(self) -> str:
        if self.watch_request == "poll":
            return "poll"
        if not _inotify_available():
            if self.watch_request == "inotify":
                raise OSError("inotify is not available on this system; use watch='poll'")
            self.watch_reason = "inotify unavailable"
            return "poll"
        if self.watch_request == "auto":
            fs = fs_type(self.folder)
            if fs:
                self.watch_reason = f"{fs} network share: inotify misses remote writes"
                return "poll"
        return "inotify"

    def _matches(self, name: str) -> bool:
        return name_matches(name, self.pattern)

    def unmatched_files(self) -> list[str]:
        """Files in the folder that the pattern does not read (to say why nothing arrived), in name order."""
        try:
            with os.scandir(self.folder) as it:
                names = [e.name for e in it if not e.name.startswith(".") and not self._matches(e.name)
                         and e.is_file()]
        except OSError:
            return []
        return sorted(names, key=_natural_key)

    def _list(self) -> list[str]:
        try:
            with os.scandir(self.folder) as it:
                return [e.name for e in it if self._matches(e.name) and e.is_file()]
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"input {self.input_name!r}: folder {self.folder} disappeared") from exc

    # ------------------------------------------------------------ main loop
    def _loop(self) -> None:
        if self._found_at_open:
            done = ("skipped: the run's timeline is placed by the volumes that come next (set existing: process "
                    "to read them, or refuse to stop instead)" if self.existing == "skip"
                    else "read in name order first (existing: process)")
            self.sink.on_status("existing", f"{existing_text(self._found_at_open, self.folder, self.pattern)}; {done}")
        for name in sorted(self._pending, key=_natural_key):  # existing="process": the files found at open
            if self._halt.is_set():
                return
            self._try(name)
        last_scan = now()
        while not self._halt.is_set():
            if self.watch == "inotify":
                ready = self._wait_events()
                t = now()
                if t - last_scan >= self.rescan_s:  # safety net: anything inotify did not tell us
                    last_scan = t
                    self._scan(t, stable_needed=False)
                    ready.extend(self._retry_changed(t))
            else:
                self._halt.wait(self.poll_interval_s)
                ready = self._scan(now(), stable_needed=True)
            if ready:
                for name in sorted(set(ready), key=_natural_key):
                    self._try(name)
            else:
                self._tick()
            self._check_abandoned()

    def _wait_events(self) -> list[str]:
        """Names worth trying now (closed after writing or renamed in); stamps new ones."""
        assert self._notify is not None
        r, _, _ = select.select([self._notify], [], [], self._wait_s())
        if not r:
            return self._retry_changed(now()) if self._pending else []
        t = now()
        ready: list[str] = []
        for event in self._notify.read(timeout=0):
            mask, name = event.mask, event.name
            if mask & (inotify.DELETE_SELF | inotify.MOVE_SELF):
                raise FileNotFoundError(f"input {self.input_name!r}: folder {self.folder} was removed or moved")
            if mask & inotify.Q_OVERFLOW:
                ready.extend(self._scan(t, stable_needed=False))
                continue
            if mask & inotify.ISDIR or not name or name in self._done or not self._matches(name):
                continue
            if name not in self._pending:
                self._pending[name] = _Pending(first_seen=t, changed_at=t)
            if mask & (inotify.CLOSE_WRITE | inotify.MOVED_TO):
                ready.append(name)
        return ready

    def _retry_changed(self, t: float) -> list[str]:
        """Pending files whose size changed since the last try (writers that never close, mmap...)."""
        out = []
        for name, p in self._pending.items():
            size = self._size(name)
            if size is not None and size != p.size and size > 0:
                out.append(name)
        return out

    def _scan(self, t: float, stable_needed: bool) -> list[str]:
        """List the folder; new files become pending. Polling: ready = complete-size files seen twice alike."""
        ready = []
        for name in self._list():
            if name in self._done:
                continue
            p = self._pending.get(name)
            if p is None:
                self._pending[name] = p = _Pending(first_seen=t, changed_at=t)
                if not stable_needed:
                    ready.append(name)
            if stable_needed:
                size = self._size(name)
                if size is None:
                    continue
                if size != p.size:
                    p.size, p.stable, p.changed_at = size, False, t
                elif size > 0 and not p.stable:
                    p.stable = True
                    ready.append(name)
        return ready

    def _size(self, name: str) -> int | None:
        try:
            return os.stat(self.folder / name).st_size
        except FileNotFoundError:
            self._pending.pop(name, None)
            return None

    # ------------------------------------------------------------ reading one file
    def _try(self, name: str) -> None:
        p = self._pending.get(name)
        if p is None or name in self._done:
            return
        path = self.folder / name
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            self._pending.pop(name, None)
            return
        if len(raw) != p.size:
            p.changed_at = now()
        p.size = len(raw)
        try:
            volume = self._decode(name, raw, p.first_seen)
        except IncompleteFile:
            self.incomplete_reads += 1
            p.stable = True  # polling: retried once its size changes (and settles) again
            return
        except ValueError as exc:
            self._drop(name, str(exc))
            return
        self._done.add(name)
        self._pending.pop(name, None)
        self.files_read += 1
        if volume is not None:
            self._deliver(volume)

    def _decode(self, name: str, raw: bytes, acquired: float) -> Volume | None:
        where = str(self.folder / name)
        index: int | None = None
        if file_format(name, raw[:4]) == "nifti":
            vol = decode_nifti(raw, where)
            data, affine, tr = vol.data, vol.affine, vol.tr_s
        else:
            dvol = read_dicom(raw, where)
            data, affine, tr = dvol.data, dvol.affine, dvol.tr_s
            index = dvol.info.get(f"{self.dicom_index}_number")
        if self.index_regex is not None or index is None:
            index = self._index_from_name(name)
        shape = tuple(int(n) for n in data.shape[:3])
        if self.shape is None:
            self.shape = shape  # type: ignore[assignment]
            self._affine = affine
        elif shape != self.shape:
            raise ValueError(f"{where}: shape {shape} differs from this run's {self.shape}")
        if self.tr_s is None and tr:
            self.tr_s = float(tr)
        out = data.astype(np.float32, order="F")
        return Volume(index=index, data=out, affine=affine, tr_s=self.tr_s or 0.0, acquired=acquired,
                      arrived=now(), source=where, received=acquired, acquisition_known=False)

    def _index_from_name(self, name: str) -> int:
        if self.index_regex is not None:
            m = self.index_regex.search(name)
            if not m:
                raise ValueError(f"{self.folder / name}: index_regex {self.index_regex.pattern!r} does not match")
            return int(m.group(1) if m.groups() else m.group(0))
        stem = re.sub(r"\.(nii\.gz|nii|dcm|ima|dicom)$", "", name, flags=re.I)
        m = _LAST_NUMBER.search(stem)
        if not m:
            raise ValueError(f"{self.folder / name}: no number in the file name to use as the volume index "
                             "(set index_regex)")
        return int(m.group(1))

    def _drop(self, name: str, why: str) -> None:
        self._done.add(name)
        self._pending.pop(name, None)
        self.sink.on_status("bad_file", why)

    def _check_abandoned(self) -> None:
        """A file still incomplete long after its last change is reported once and given up."""
        if not self._pending:
            return
        t = now()
        for name, p in list(self._pending.items()):
            if p.size > 0 and t - p.changed_at > self.give_up_s:
                self._drop(name, f"{self.folder / name}: still incomplete {t - p.changed_at:.0f} s after its "
                                 f"last change ({p.size} bytes); skipped")

    def _close(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None
