"""Linux inotify through ctypes (no dependency), and a check for network file systems.

Why: a file closed after writing (IN_CLOSE_WRITE) or renamed into the folder (IN_MOVED_TO) wakes
the reader at once instead of at the next poll. inotify does not see writes made by another
machine on a network share (NFS/SMB), so :func:`is_network_fs` lets the folder source fall back
to polling there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from pathlib import Path

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ISDIR = 0x40000000
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")

# statfs f_type of file systems whose remote writes inotify does not report
_NETWORK_FS = {0x6969: "nfs", 0x517B: "smb", 0xFF534D42: "cifs", 0xFE534D42: "smb2", 0x65735546: "fuse",
               0x564C: "ncp", 0x73757245: "coda", 0x47504653: "gpfs", 0x00C36400: "ceph"}

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return _libc


def available() -> bool:
    try:
        return hasattr(_lib(), "inotify_init1")
    except OSError:
        return False


def fs_type(path: str | Path) -> str | None:
    """Name of a network file system under ``path`` ('nfs', 'cifs', ...), '' for a local one, None if unknown."""
    try:
        lib = _lib()
        buf = ctypes.create_string_buffer(256)
        if lib.statfs(os.fsencode(str(path)), buf) != 0:
            return None
        magic = struct.unpack_from("l", buf.raw, 0)[0] & 0xFFFFFFFF
    except (OSError, AttributeError):
        return None
    return _NETWORK_FS.get(magic, "")


class Inotify:
    """One inotify instance watching one directory; ``fileno()`` for poll/select."""

    def __init__(self, folder: str | Path, mask: int) -> None:
        lib = _lib()
        self.fd = lib.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        wd = lib.inotify_add_watch(self.fd, os.fsencode(str(folder)), ctypes.c_uint32(mask))
        if wd < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"inotify_add_watch {folder}: {os.strerror(err)}")
        self.wd = wd

    def fileno(self) -> int:
        return self.fd

    def read(self) -> list[tuple[int, str]]:
        """Pending events as (mask, file name); [] if none (non-blocking)."""
        try:
            raw = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        events = []
        pos = 0
        while pos + _EVENT.size <= len(raw):
            _wd, mask, _cookie, length = _EVENT.unpack_from(raw, pos)
            pos += _EVENT.size
            name = raw[pos:pos + length].split(b"\0", 1)[0]
            pos += length
            events.append((mask, os.fsdecode(name)))
        return events

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
