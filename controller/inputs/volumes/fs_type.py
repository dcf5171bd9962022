"""Which file system a folder is on: inotify does not see writes made by another machine on a network
share (NFS/SMB), so the folder source polls there (:func:`fs_type`, the statfs magic number through ctypes:
``os.statvfs`` does not report the file system type).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from pathlib import Path

# statfs f_type of file systems whose remote writes inotify does not report
_NETWORK_FS = {0x6969: "nfs", 0x517B: "smb", 0xFF534D42: "cifs", 0xFE534D42: "smb2", 0x65735546: "fuse",
               0x564C: "ncp", 0x73757245: "coda", 0x47504653: "gpfs", 0x00C36400: "ceph"}

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return _libc


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

