"""pyqtgraph views of a :class:`~cellbench.gui.model.ChannelView`: V/I/T against time, Nyquist.

Drawing stays cheap however long the run: the curves clip to the visible range and downsample
with pyqtgraph's peak mode (min/max per pixel column), on top of the model's bounded buffers.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

import cellbench.gui.qt_fixes  # noqa: F401 - before any PySide6 call
from cellbench.gui.model import ChannelView

# Test-time axis unit by the span of the run: (largest span in s, seconds per unit, label).
TIME_UNITS = ((2 * 3600.0, 60.0, "min"), (7 * 86400.0, 3600.0, "h"), (float("inf"), 86400.0, "d"))


def time_unit(span_second: float) -> tuple[float, str]:
    """Seconds per unit and its label for a run of ``span_second``: min, h or d."""
    for limit, seconds, label in TIME_UNITS:
        if span_second < limit:
            return seconds, label
    return TIME_UNITS[-1][1], TIME_UNITS[-1][2]  # pragma: no cover - inf above


# Newest sweep last; older ones fade.
SWEEP_COLORS = ("#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08306b")
TRACE_PENS = {
    "voltage_volt": pg.mkPen("#1f77b4", width=1.5),
    "current_ampere": pg.mkPen("#d62728", width=1.5),
    "temperature_celsius": pg.mkPen("#2ca02c", width=1.5),
}


def _style(plot: pg.PlotItem) -> None:
    """Dark axes on the white background (whatever pyqtgraph's global foreground), grid."""
    for side in ("left", "bottom"):
        axis = plot.getAxis(side)
        axis.setPen("k")
        axis.setTextPen("k")
    plot.titleLabel.setAttr("color", "k")
    plot.showGrid(x=True, y=True, alpha=0.25)
    plot.setClipToView(True)
    plot.setDownsampling(auto=True, mode="peak")


class TimePlots(pg.GraphicsLayoutWidget):
    """Voltage, current and (when measured) temperature against test time, x axes linked."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setBackground("w")
        self.plots: dict[str, pg.PlotItem] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        rows = (
            ("voltage_volt", "voltage", "V", True),
            ("current_ampere", "current", "A", True),
            ("temperature_celsius", "temperature (°C)", None, False),
        )
        for row, (column, label, unit, si) in enumerate(rows):
            plot = self.addPlot(row=row, col=0)
            _style(plot)
            plot.setLabel("left", label, units=unit)
            plot.getAxis("left").enableAutoSIPrefix(si)
            plot.getAxis("left").setWidth(70)
            if row:
                plot.setXLink(self.plots["voltage_volt"])
            self.plots[column] = plot
            self.curves[column] = plot.plot([], [], pen=TRACE_PENS[column])
        self.unit = "min"
        self.plots["temperature_celsius"].setLabel("bottom", "test time (min)")
        for column in ("voltage_volt", "current_ampere"):
            self.plots[column].getAxis("bottom").setStyle(showValues=False)
        self._has_temperature = True

    def show_channel(self, view: ChannelView | None) -> None:
        """Redraw from the channel's buffer (the temperature row hides when none is measured)."""
        if view is None or not len(view.trace):
            for curve in self.curves.values():
                curve.setData([], [])
            return
        t = view.trace.column("test_time_second")
        seconds, unit = time_unit(float(t[-1] - t[0]))
        if unit != self.unit:
            self.unit = unit
            self._label_time_axis()
        x = t / seconds
        for column, curve in self.curves.items():
            y = view.trace.column(column)
            finite = np.isfinite(y)
            if column == "temperature_celsius":
                self._set_temperature_visible(bool(finite.any()))
            if finite.all():
                curve.setData(x, y)
            else:
                curve.setData(x[finite], y[finite])

    def _set_temperature_visible(self, visible: bool) -> None:
        if visible == self._has_temperature:
            return
        self._has_temperature = visible
        self.plots["temperature_celsius"].setVisible(visible)
        self._label_time_axis()

    def _label_time_axis(self) -> None:
        """Time values and label on the lowest visible plot only."""
        lowest = "temperature_celsius" if self._has_temperature else "current_ampere"
        for column in ("current_ampere", "temperature_celsius"):
            axis = self.plots[column].getAxis("bottom")
            axis.setStyle(showValues=column == lowest)
            text = f"test time ({self.unit})" if column == lowest else ""
            self.plots[column].setLabel("bottom", text)


class NyquistPlot(pg.PlotWidget):
    """The newest sweeps of a channel: Z' against -Z'' (capacitive arcs up), equal aspect."""

    def __init__(self, parent=None):
        super().__init__(parent, background="w")
        item = self.getPlotItem()
        _style(item)
        item.setClipToView(False)  # few points; the aspect lock needs every one
        item.setDownsampling(auto=False)
        item.setAspectLocked(True)
        item.setLabel("bottom", "Z′", units="Ω")
        item.setLabel("left", "−Z″", units="Ω")
        item.setTitle("Nyquist (newest sweeps)")
        self.legend = item.addLegend(
            offset=(-10, 10), labelTextColor="k", brush=(255, 255, 255, 200)
        )
        self._shown: tuple = ()

    def show_channel(self, view: ChannelView | None) -> None:
        sweeps = list(view.sweeps) if view is not None else []
        key = tuple((s.sweep_index, len(s.frequency_hertz)) for s in sweeps)
        if key == self._shown:
            return
        self._shown = key
        item = self.getPlotItem()
        item.clear()
        self.legend.clear()
        colors = SWEEP_COLORS[-len(sweeps) :] if sweeps else ()
        for sweep, color in zip(sweeps, colors, strict=True):
            name = f"sweep {sweep.sweep_index}"
            if np.isfinite(sweep.temperature_celsius):
                name += f", {sweep.temperature_celsius:.0f} °C"
            if sweep.cycle_count is not None:
                name += f", cycle {sweep.cycle_count}"
            item.plot(
                sweep.z_real_ohm,
                -sweep.z_imag_ohm,
                pen=pg.mkPen(color, width=1.5),
                symbol="o",
                symbolSize=5,
                symbolBrush=color,
                symbolPen=None,
                name=name,
            )
        if sweeps:
            item.enableAutoRange()
