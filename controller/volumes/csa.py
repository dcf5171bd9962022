"""Siemens CSA header (DICOM private tag 0029,xx10): the few fields a MOSAIC reader needs.

Why our own parser: the format is tiny (SV10 magic, then named tags each holding a list of
string items) and only NumberOfImagesInMosaic and SliceNormalVector are needed.
"""

from __future__ import annotations

import struct


def parse_csa(raw: bytes) -> dict[str, list[str]]:
    """Tag name -> its non-empty string items (CSA2 'SV10' or the older CSA1 layout)."""
    if not raw:
        return {}
    if raw[:4] == b"SV10":
        n_tags, = struct.unpack_from("<I", raw, 8)
        pos = 16
    else:
        n_tags, = struct.unpack_from("<I", raw, 0)
        pos = 8
    if not 0 < n_tags <= 1000:
        raise ValueError(f"CSA header: implausible tag count {n_tags}")
    out: dict[str, list[str]] = {}
    for _ in range(n_tags):
        name = raw[pos:pos + 64].split(b"\0", 1)[0].decode("latin-1")
        n_items, = struct.unpack_from("<i", raw, pos + 76)
        pos += 84
        items: list[str] = []
        for _ in range(n_items):
            item_len, = struct.unpack_from("<i", raw, pos + 4)
            pos += 16
            if item_len > 0:
                text = raw[pos:pos + item_len].split(b"\0", 1)[0].decode("latin-1").strip()
                if text:
                    items.append(text)
            pos += (item_len + 3) // 4 * 4
        out[name] = items
    return out


def csa_float(csa: dict[str, list[str]], name: str) -> list[float] | None:
    items = csa.get(name)
    return [float(v) for v in items] if items else None
