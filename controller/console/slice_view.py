"""The console's fMRI slice view: axial, coronal and sagittal slices (or a mosaic of axial slices) of the
newest volume, each ROI of the protocol over them in its colour (a semi-transparent fill and an opaque
outline), a legend naming the ROIs, a crosshair that a click moves, and a label with the volume's index
and time.

A renderer of :class:`controller.console.slice_model.SliceModel` (all geometry is there): call
``refresh()`` after changing the model. Images are placed in millimetres (one pixel = one voxel, sized by
the voxel's edges), so anisotropic voxels keep their true aspect.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from controller.console.slice_model import PLANES, Mosaic, Plane, SliceModel
from controller.display.qt import pen

FILL_ALPHA = 90     # ROI fill over the grey image (0..255)
OUTLINE_ALPHA = 255
CROSS_COLOR = "#ffd400"
MOSAIC = "mosaic"


def roi_rgba(mask: np.ndarray, edge: np.ndarray, color: str) -> np.ndarray:
    """(nu, nv, 4) uint8: ``color`` at FILL_ALPHA inside the mask, opaque on its outline, clear elsewhere."""
    c = QtGui.QColor(color)
    out = np.zeros((*mask.shape, 4), dtype=np.uint8)
    out[..., 0], out[..., 1], out[..., 2] = c.red(), c.green(), c.blue()
    out[..., 3] = np.where(edge, OUTLINE_ALPHA, np.where(mask, FILL_ALPHA, 0)).astype(np.uint8)
    return out


class _PlaneBox:
    """One view box: the grey image, one overlay image per ROI, the crosshair and the side letters."""

    def __init__(self, layout: pg.GraphicsLayout, title: str, col: int) -> None:
        self.box = layout.addViewBox(row=0, col=col, lockAspect=True, enableMouse=False, enableMenu=False,
                                     invertY=False)
        self.title = pg.TextItem(title, color="#dddddd", anchor=(0, 1))
        self.image = pg.ImageItem(axisOrder="col-major")
        self.image.setLevels((0.0, 1.0))
        self.box.addItem(self.image)
        self.overlays: dict[str, pg.ImageItem] = {}
        line = pen(CROSS_COLOR, 1.0, QtCore.Qt.PenStyle.DashLine)
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=line)
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=line)
        self.sides = [pg.TextItem("", color="#bbbbbb", anchor=a) for a in ((0, 0.5), (1, 0.5), (0.5, 1), (0.5, 0))]
        for item in (self.vline, self.hline, self.title, *self.sides):
            item.setZValue(20)
            self.box.addItem(item)
        self.pixel_mm = (1.0, 1.0)
        self.size_px = (0, 0)

    def show(self, image: np.ndarray, masks: dict[str, np.ndarray], outlines: dict[str, np.ndarray],
             colors: dict[str, str], pixel_mm: tuple[float, float], title: str,
             sides: tuple[str, str, str, str] | None) -> None:
        du, dv = pixel_mm
        nu, nv = image.shape
        rect = QtCore.QRectF(0.0, 0.0, nu * du, nv * dv)
        self.image.setImage(image, autoLevels=False, levels=(0.0, 1.0))
        self.image.setRect(rect)
        for name in [n for n in self.overlays if n not in masks]:
            self.box.removeItem(self.overlays.pop(name))
        for z, (name, mask) in enumerate(masks.items()):
            item = self.overlays.get(name)
            if item is None:
                item = self.overlays[name] = pg.ImageItem(axisOrder="col-major")
                item.setZValue(10 + z)
                self.box.addItem(item)
            item.setImage(roi_rgba(mask, outlines[name], colors[name]), autoLevels=False, levels=(0, 255))
            item.setRect(rect)
        self.title.setText(title)
        self.title.setPos(0.0, nv * dv)
        w, h = nu * du, nv * dv
        for item, text, pos in zip(self.sides, sides or ("", "", "", ""),
                                   ((0.0, h / 2), (w, h / 2), (w / 2, 0.0), (w / 2, h))):
            item.setText(text)
            item.setPos(*pos)
        if (nu, nv) != self.size_px or pixel_mm != self.pixel_mm:
            self.box.setRange(xRange=(0, w), yRange=(0, h), padding=0.02)
        self.pixel_mm, self.size_px = pixel_mm, (nu, nv)

    def set_cross(self, u: int | None, v: int | None) -> None:
        du, dv = self.pixel_mm
        self.vline.setVisible(u is not None)
        self.hline.setVisible(v is not None)
        if u is not None:
            self.vline.setValue((u + 0.5) * du)
        if v is not None:
            self.hline.setValue((v + 0.5) * dv)

    def pixel_at(self, scene_pos: QtCore.QPointF) -> tuple[float, float] | None:
        """The (u, v) pixel under a scene point, or None outside this box's image."""
        if not self.box.sceneBoundingRect().contains(scene_pos):
            return None
        p = self.box.mapSceneToView(scene_pos)
        u, v = p.x() / self.pixel_mm[0], p.y() / self.pixel_mm[1]
        if not (0 <= u < self.size_px[0] and 0 <= v < self.size_px[1]):
            return None
        return u, v


class SliceView(QtWidgets.QWidget):
    """Renders a :class:`SliceModel`: three orthogonal planes, or a mosaic of axial slices."""

    moved = QtCore.Signal(tuple)  # the new display voxel (a, b, c) after a click

    def __init__(self, model: SliceModel | None = None, mosaic_slices: int = 12, mosaic_columns: int = 6,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model or SliceModel()
        self.mosaic_slices = mosaic_slices
        self.mosaic_columns = mosaic_columns
        self.note = ""  # appended to the label (e.g. a file skipped while being written)
        self.label = QtWidgets.QLabel("no volume yet", self)
        self.label.setStyleSheet("color: #eeeeee; background: #111111; padding: 4px;"
                                 "font-family: monospace; font-size: 13px;")
        self.label.setWordWrap(True)
        self.legend = QtWidgets.QLabel("", self)
        self.legend.setStyleSheet("background: #111111; padding: 2px 4px; font-size: 13px;")
        self.legend.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.mode = QtWidgets.QComboBox(self)
        self.mode.addItems(["orthogonal", MOSAIC])
        self.mode.currentTextChanged.connect(lambda _: self.refresh())
        top = QtWidgets.QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.legend, 1)
        top.addWidget(self.mode)
        self.graphics = pg.GraphicsLayoutWidget()
        self.mosaic_graphics = pg.GraphicsLayoutWidget()
        self.stack = QtWidgets.QStackedWidget(self)
        for g in (self.graphics, self.mosaic_graphics):
            g.setBackground("k")
            self.stack.addWidget(g)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.label)
        layout.addLayout(top)
        layout.addWidget(self.stack, 1)
        self.boxes = {name: _PlaneBox(self.graphics.ci, name, col) for col, name in enumerate(PLANES)}
        self.mosaic_box = _PlaneBox(self.mosaic_graphics.ci, MOSAIC, 0)
        self.graphics.scene().sigMouseClicked.connect(self._on_click)
        self.refresh()

    # ------------------------------------------------------------------ rendering
    @property
    def showing_mosaic(self) -> bool:
        return self.mode.currentText() == MOSAIC

    def set_mosaic(self, on: bool) -> None:
        self.mode.setCurrentText(MOSAIC if on else "orthogonal")

    def legend_entries(self) -> list[tuple[str, str]]:
        """(ROI name, colour) in the order drawn."""
        return [(name, self.model.roi_color(name)) for name in self.model.roi_names]

    def refresh(self) -> None:
        m = self.model
        text = m.label()
        self.label.setText(f"{text}  |  {self.note}" if self.note else text)
        entries = self.legend_entries()
        self.legend.setText("&nbsp;&nbsp;".join(
            f'<span style="color:{c}">&#9632; {name}</span>' for name, c in entries)
            or '<span style="color:#999999">no ROI</span>')
        mosaic = self.showing_mosaic
        self.stack.setCurrentWidget(self.mosaic_graphics if mosaic else self.graphics)
        if m.volume is None:
            return
        colors = {name: c for name, c in entries}
        if mosaic:
            self._show_mosaic(m.mosaic(self.mosaic_slices, self.mosaic_columns), colors)
            return
        for name, plane in m.planes().items():
            self._show_plane(self.boxes[name], plane, colors)

    def _show_plane(self, box: _PlaneBox, plane: Plane, colors: dict[str, str]) -> None:
        box.show(plane.image, plane.masks, plane.outlines, colors, plane.pixel_mm,
                 f"{plane.name} {plane.index}", plane.sides)
        box.set_cross(*plane.cross)

    def _show_mosaic(self, mosaic: Mosaic, colors: dict[str, str]) -> None:
        ks = ", ".join(str(k) for k in mosaic.slices)
        self.mosaic_box.show(mosaic.image, mosaic.masks, mosaic.outlines, colors, mosaic.pixel_mm,
                             f"axial slices {ks}", None)
        self.mosaic_box.set_cross(None, None)

    # ------------------------------------------------------------------ interaction
    def _on_click(self, event: object) -> None:
        if self.showing_mosaic or self.model.volume is None:
            return
        pos = event.scenePos()  # type: ignore[attr-defined]  # pyqtgraph's MouseClickEvent
        for name, box in self.boxes.items():
            uv = box.pixel_at(pos)
            if uv is not None:
                self.click(name, *uv)
                return

    def click(self, plane: str, u: float, v: float) -> None:
        """Move the crosshair to pixel (u, v) of ``plane`` (what a mouse click there does)."""
        self.model.click(plane, u, v)
        self.refresh()
        self.moved.emit(self.model.position)

    def scene_point(self, plane: str, u: float, v: float) -> QtCore.QPointF:
        """Where pixel (u, v) of a plane is in the scene (the inverse of a click, for tests and tools)."""
        box = self.boxes[plane]
        point: QtCore.QPointF = box.box.mapViewToScene(QtCore.QPointF(u * box.pixel_mm[0], v * box.pixel_mm[1]))
        return point
