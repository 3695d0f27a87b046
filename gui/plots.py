"""Live time plots of one channel: V, I, T and p against test time, drawn from its history.

What is drawn is asked from the channel's :class:`~cellbench.gui.history.History` for the
visible time range, at about two points per pixel column: the whole run when the view follows
(auto range), the zoomed range at full resolution when zoomed in, so a refresh costs the same
after a minute and after a month, and one-sample spikes show at every zoom. The live update
never fights the user: once they zoom or pan, new data extends the curves but does not move the
view; *View all* goes back to following the whole run. A crosshair reads out every quantity at
the mouse position.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer

import cellbench.gui.qt_fixes  # noqa: F401 - before any PySide6 call
from cellbench.gui.history import Window
from cellbench.gui.model import ChannelView, fmt_duration, fmt_si

# Test-time axis unit by the span of the run: (largest span in s, seconds per unit, label).
TIME_UNITS = ((2 * 3600.0, 60.0, "min"), (7 * 86400.0, 3600.0, "h"), (float("inf"), 86400.0, "d"))

TRACE_PENS = {
    "voltage_volt": pg.mkPen("#1f77b4", width=1),
    "current_ampere": pg.mkPen("#d62728", width=1),
    "temperature_celsius": pg.mkPen("#2ca02c", width=1),
    "pressure_megapascal": pg.mkPen("#9467bd", width=1),
}
#: (column, axis label, unit for pyqtgraph's SI prefix or None, unit in the readout)
TIME_ROWS = (
    ("voltage_volt", "voltage", "V", "V"),
    ("current_ampere", "current", "A", "A"),
    ("temperature_celsius", "temperature (°C)", None, "°C"),
    ("pressure_megapascal", "pressure (MPa)", None, "MPa"),
)
#: quantities that may be absent (their plot hides until a value arrives)
OPTIONAL = ("temperature_celsius", "pressure_megapascal")


def time_unit(span_second: float) -> tuple[float, str]:
    """Seconds per unit and its label for a run of ``span_second``: min, h or d."""
    for limit, seconds, label in TIME_UNITS:
        if span_second < limit:
            return seconds, label
    return TIME_UNITS[-1][1], TIME_UNITS[-1][2]  # pragma: no cover - inf above


def style(plot: pg.PlotItem, *, font_px: int = 11) -> None:
    """Dark axes on the white background (whatever pyqtgraph's global foreground), grid."""
    for side in ("left", "bottom"):
        axis = plot.getAxis(side)
        axis.setPen("k")
        axis.setTextPen("k")
    plot.titleLabel.setAttr("color", "k")
    plot.showGrid(x=True, y=True, alpha=0.25)


def readout_value(column: str, value: float) -> str:
    unit = {c: u for c, _, _, u in TIME_ROWS}[column]
    if not math.isfinite(value):
        return "-"
    if unit in ("V", "A"):
        return fmt_si(value, unit)
    return f"{value:.4g} {unit}"


class TimePlots(pg.GraphicsLayoutWidget):
    """Voltage, current, temperature and pressure (when measured) against test time, x linked."""

    def __init__(self, parent=None, *, points_per_pixel: float = 2.0):
        super().__init__(parent)
        self.setBackground("w")
        self.points_per_pixel = points_per_pixel
        self.plots: dict[str, pg.PlotItem] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.cursors: dict[str, pg.InfiniteLine] = {}
        self.readout = pg.LabelItem(justify="left", color="k")
        self.addItem(self.readout, row=0, col=0)
        for row, (column, label, unit, _) in enumerate(TIME_ROWS, start=1):
            plot = self.addPlot(row=row, col=0)
            style(plot)
            plot.setLabel("left", label, units=unit)
            plot.getAxis("left").enableAutoSIPrefix(unit is not None)
            plot.getAxis("left").setWidth(64)
            plot.setDownsampling(auto=False)  # the history hands over what fits the pixels
            plot.setClipToView(False)
            plot.vb.setAutoVisible(y=True)  # y follows the visible time range
            if row > 1:
                plot.setXLink(self.plots["voltage_volt"])
            self.plots[column] = plot
            self.curves[column] = plot.plot([], [], pen=TRACE_PENS[column])
            line = pg.InfiniteLine(
                angle=90, movable=False, pen=pg.mkPen("#888", style=Qt.PenStyle.DashLine)
            )
            line.setVisible(False)
            plot.addItem(line, ignoreBounds=True)
            self.cursors[column] = line
        self.view: ChannelView | None = None
        self.window: Window | None = None
        self.unit_s, self.unit = 60.0, "min"
        self._visible = {c: True for c in self.plots}
        self._setting = False  # our own setData moves the range: not a user zoom
        self._requery = QTimer(self)
        self._requery.setSingleShot(True)
        self._requery.setInterval(40)
        self._requery.timeout.connect(self.refresh)
        self.plots["voltage_volt"].vb.sigXRangeChanged.connect(self._range_changed)
        self.scene().sigMouseMoved.connect(self._mouse_moved)
        for column in OPTIONAL:
            self._set_visible(column, False)
        self._label_time_axis()

    # ------------------------------------------------------------------------------ public

    def show_channel(self, view: ChannelView | None) -> None:
        """Draw ``view`` (a new channel goes back to showing its whole run)."""
        if view is not self.view:
            self.view = view
            self.view_all()
            return
        self.refresh()

    def view_all(self) -> None:
        """Follow the whole run again (auto range on both axes of every plot)."""
        for plot in self.plots.values():
            plot.enableAutoRange()
        self.refresh()

    @property
    def following(self) -> bool:
        """True while the time axis follows the whole run (no user zoom or pan)."""
        return bool(self.plots["voltage_volt"].vb.autoRangeEnabled()[0])

    def refresh(self) -> None:
        """Ask the history for the visible range and draw it."""
        view = self.view
        if view is None or view.trace.span() is None:
            for curve in self.curves.values():
                curve.setData([], [])
            self.window = None
            return
        first, last = view.trace.span()
        seconds, unit = time_unit(last - first)
        if unit != self.unit:
            old = self.unit_s
            self.unit_s, self.unit = seconds, unit
            self._label_time_axis()
            if not self.following:  # the same stretch of the run, in the new unit
                lo, hi = self.plots["voltage_volt"].vb.viewRange()[0]
                self._setting = True
                try:
                    self.plots["voltage_volt"].setXRange(
                        lo * old / seconds, hi * old / seconds, padding=0
                    )
                finally:
                    self._setting = False
        if self.following:
            t0, t1 = None, None
        else:
            lo, hi = self.plots["voltage_volt"].vb.viewRange()[0]
            t0, t1 = lo * self.unit_s, hi * self.unit_s
        width = max(200, int(self.plots["voltage_volt"].vb.width() or 800))
        self.window = win = view.trace.window(t0, t1, points=int(width * self.points_per_pixel))
        self._setting = True
        try:
            for column, curve in self.curves.items():
                x, y = win.x[column], win.y[column]
                if column in OPTIONAL:
                    self._set_visible(column, len(y) > 0 or view.trace.has_values(column))
                curve.setData(x / self.unit_s, y)
        finally:
            self._setting = False

    # ------------------------------------------------------------------------------ private

    def _range_changed(self, *_) -> None:
        if not self._setting and not self.following:
            self._requery.start()  # the user zoomed or panned: fetch that range's detail

    def _set_visible(self, column: str, visible: bool) -> None:
        if visible == self._visible[column]:
            return
        self._visible[column] = visible
        self.plots[column].setVisible(visible)
        self._label_time_axis()

    def _label_time_axis(self) -> None:
        """Time values and label on the lowest visible plot only."""
        shown = [c for c, _, _, _ in TIME_ROWS if self._visible.get(c, True)]
        lowest = shown[-1]
        for column, plot in self.plots.items():
            axis = plot.getAxis("bottom")
            axis.setStyle(showValues=column == lowest)
            plot.setLabel("bottom", f"test time ({self.unit})" if column == lowest else "")

    def _mouse_moved(self, pos) -> None:
        win = self.window
        for plot in self.plots.values():
            if plot.isVisible() and plot.sceneBoundingRect().contains(pos):
                break
        else:
            for line in self.cursors.values():
                line.setVisible(False)
            return
        x = plot.vb.mapSceneToView(pos).x()
        for line in self.cursors.values():
            line.setPos(x)
            line.setVisible(True)
        t = x * self.unit_s
        parts = [f"t = {fmt_duration(t)}"]
        if win is not None:
            for c, _, _, _ in TIME_ROWS:
                xs = win.x[c]
                if not len(xs) or not self._visible[c]:
                    continue
                i = int(np.clip(np.searchsorted(xs, t), 1, len(xs) - 1))
                i = i - 1 if abs(xs[i - 1] - t) <= abs(xs[i] - t) else i
                parts.append(readout_value(c, float(win.y[c][i])))
        self.readout.setText("   ".join(parts), size="10pt")
