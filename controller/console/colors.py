"""The console's shared colours: one shade per block label, the same in the live view, the timeline and
the review, in every session (a hash of the label, not its position)."""

from __future__ import annotations

import zlib

from PySide6 import QtGui

BLOCK_COLORS = ("#2b6cb0", "#b7791f", "#4a5568", "#2f855a", "#9b2c2c", "#6b46c1")


def block_color(label: str, alpha: int) -> QtGui.QColor:
    c = QtGui.QColor(BLOCK_COLORS[zlib.crc32(label.encode()) % len(BLOCK_COLORS)])
    c.setAlpha(alpha)
    return c
