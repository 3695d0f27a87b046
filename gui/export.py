"""Export what the window shows: figures as PNG or SVG, tables as CSV.

SVG goes through Qt's own :class:`QSvgGenerator` painting the plot's scene (vector paths and
text), not pyqtgraph's SVG exporter, which fails on PySide6 6.11 (it parses Qt's polyline
points in a format Qt no longer writes). PNG renders the scene at ``scale`` times its size on
screen (2: sharp in a slide or a paper draft).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import QGraphicsView, QTableWidget

from cellbench.core.errors import CellbenchError

FIGURE_FILTER = "PNG image (*.png);;SVG vector image (*.svg)"


class ExportError(CellbenchError):
    """A figure or table could not be written (names the file)."""


def export_figure(view: QGraphicsView, path: Path | str, *, scale: float = 2.0) -> Path:
    """Write the plot widget ``view`` (a pyqtgraph PlotWidget or GraphicsLayoutWidget) to
    ``path``: ``.svg`` as vector graphics, ``.png`` as an image at ``scale`` x its size."""
    path = Path(path)
    scene = view.scene()
    source = QRectF(view.viewport().rect()) if view.viewport() else scene.sceneRect()
    source = view.mapToScene(view.viewport().rect()).boundingRect()
    w, h = max(1, int(source.width())), max(1, int(source.height()))
    suffix = path.suffix.lower()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{path}: {exc.strerror or exc}") from None
    if suffix == ".svg":
        gen = QSvgGenerator()
        gen.setFileName(str(path))
        gen.setSize(QSize(w, h))
        gen.setViewBox(QRectF(0, 0, w, h))
        gen.setTitle(path.stem)
        gen.setDescription("cellbench figure")
        painter = QPainter(gen)
        try:
            painter.fillRect(QRectF(0, 0, w, h), QColor("white"))
            scene.render(painter, QRectF(0, 0, w, h), source)
        finally:
            painter.end()
    elif suffix == ".png":
        image = QImage(int(w * scale), int(h * scale), QImage.Format.Format_ARGB32)
        image.fill(QColor("white"))
        painter = QPainter(image)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
            scene.render(
                painter,
                QRectF(0, 0, w * scale, h * scale),
                source,
                Qt.AspectRatioMode.IgnoreAspectRatio,
            )
        finally:
            painter.end()
        if not image.save(str(path), "PNG"):
            raise ExportError(f"{path}: the image could not be written")
    else:
        raise ExportError(
            f"{path}: a figure is exported as .png or .svg, not {suffix or 'no suffix'}"
        )
    if not path.is_file() or path.stat().st_size == 0:
        raise ExportError(f"{path}: nothing was written")
    return path


def table_frame(table: QTableWidget) -> pl.DataFrame:
    """The cells of a table widget as text columns (header labels as column names)."""
    names = []
    for c in range(table.columnCount()):
        item = table.horizontalHeaderItem(c)
        names.append(item.text() if item is not None else f"column_{c}")
    data = {
        name: [
            (table.item(r, c).text() if table.item(r, c) is not None else "")
            for r in range(table.rowCount())
        ]
        for c, name in enumerate(names)
    }
    return pl.DataFrame(data, schema={n: pl.String for n in names})


def export_table(frame: pl.DataFrame, path: Path | str) -> Path:
    """Write ``frame`` as CSV (list columns joined with ``;``)."""
    path = Path(path)
    flat = frame.with_columns(
        pl.col(c).cast(pl.List(pl.String)).list.join(";")
        for c, t in frame.schema.items()
        if isinstance(t, pl.List)
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        flat.write_csv(path)
    except OSError as exc:
        raise ExportError(f"{path}: {exc.strerror or exc}") from None
    return path
