"""Two Qt habits the live views share, both about not redrawing what did not change.

A style sheet set again, even unchanged, makes Qt re-polish and repaint the widget (a few labels at the
4 Hz status rate cost milliseconds); an axis re-renders its tick texts whenever anything near it repaints
unless it is cached as a pixmap.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtWidgets


def restyle(widget: QtWidgets.QWidget, css: str) -> None:
    """``widget.setStyleSheet(css)`` only when it differs from the current one."""
    if widget.styleSheet() != css:
        widget.setStyleSheet(css)


def cache_axes(plot: pg.PlotItem) -> None:
    """Render the plot's axes into pixmaps, redrawn only when their ticks or size change."""
    for name in ("left", "bottom", "right", "top"):
        axis = plot.getAxis(name)
        if axis is not None:
            axis.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
