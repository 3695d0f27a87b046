"""Cycle views of one channel: V against capacity per cycle, capacity and CE per cycle, dQ/dV.

All three read the channel's :class:`~cellbench.gui.cycles.CycleTracker`. Curves of many cycles
are overlaid coloured by cycle number (viridis, a colour bar names the range); at most
``max_cycles`` cycles are drawn, evenly picked, so a 2000-cycle run stays readable and fast.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

import cellbench.gui.qt_fixes  # noqa: F401 - before any PySide6 call
from cellbench.analysis.dqdv import DqdvError, dqdv
from cellbench.gui.cycles import CycleTracker
from cellbench.gui.plots import style

CMAP = pg.colormap.get("viridis")


def cycle_color(cycle: int, first: int, last: int):
    frac = 0.0 if last <= first else (cycle - first) / (last - first)
    return CMAP.map(0.9 * frac, mode="qcolor")


def pick_cycles(cycles: list[int], most: int) -> list[int]:
    """At most ``most`` of ``cycles``, evenly spread, always the first and the newest."""
    if len(cycles) <= most:
        return list(cycles)
    idx = np.unique(np.linspace(0, len(cycles) - 1, most).round().astype(int))
    return [cycles[i] for i in idx]


class CapacityVoltagePlot(pg.PlotWidget):
    """Voltage against capacity of each half-cycle, cycles overlaid, coloured by cycle."""

    def __init__(self, parent=None, *, max_cycles: int = 60):
        super().__init__(parent, background="w")
        self.max_cycles = max_cycles
        item = self.getPlotItem()
        style(item)
        item.setLabel("bottom", "capacity", units="Ah")
        item.setLabel("left", "voltage", units="V")
        item.setTitle("V against capacity, by cycle")
        self.bar = pg.ColorBarItem(values=(1, 2), colorMap=CMAP, interactive=False, width=12)
        self.bar.setImageItem([], insert_in=item)
        self.bar.axis.setLabel("cycle")
        self.bar.axis.setPen("k")
        self.bar.axis.setTextPen("k")
        self._key: tuple = ()
        self.curves: list[pg.PlotDataItem] = []

    def show_cycles(self, tracker: CycleTracker | None) -> None:
        key = (id(tracker), tracker.version if tracker else -1)
        if key == self._key:
            return
        self._key = key
        item = self.getPlotItem()
        for curve in self.curves:
            item.removeItem(curve)
        self.curves = []
        if tracker is None or not tracker.cycles():
            return
        cycles = tracker.cycles()
        first, last = cycles[0], cycles[-1]
        self.bar.setLevels((first, max(last, first + 1)))
        for cycle in pick_cycles(cycles, self.max_cycles):
            color = cycle_color(cycle, first, last)
            for half in tracker.curves(cycle):
                q, v = half.arrays()
                if len(q) < 2:
                    continue
                pen = pg.mkPen(color, width=1.5 if half.sign > 0 else 2.0)
                self.curves.append(item.plot(q, v, pen=pen))


class CycleSummaryPlot(pg.GraphicsLayoutWidget):
    """Charge and discharge capacity (Ah) and Coulombic efficiency (%) against cycle."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setBackground("w")
        self.capacity = self.addPlot(row=0, col=0)
        self.efficiency = self.addPlot(row=1, col=0)
        for plot in (self.capacity, self.efficiency):
            style(plot)
            plot.getAxis("left").setWidth(60)
        self.capacity.setLabel("left", "capacity", units="Ah")
        self.efficiency.setLabel("left", "CE (%)")
        self.efficiency.setLabel("bottom", "cycle")
        self.efficiency.setXLink(self.capacity)
        self.capacity.getAxis("bottom").setStyle(showValues=False)
        legend = self.capacity.addLegend(offset=(-10, 10), labelTextColor="k")
        legend.setBrush((255, 255, 255, 200))
        kw = dict(symbol="o", symbolSize=5, symbolPen=None)
        self.charge = self.capacity.plot(
            [], [], pen=pg.mkPen("#d62728", width=1.2), symbolBrush="#d62728", name="charge", **kw
        )
        self.discharge = self.capacity.plot(
            [],
            [],
            pen=pg.mkPen("#1f77b4", width=1.2),
            symbolBrush="#1f77b4",
            name="discharge",
            **kw,
        )
        self.ce = self.efficiency.plot(
            [], [], pen=pg.mkPen("#2ca02c", width=1.2), symbolBrush="#2ca02c", **kw
        )
        self._key: tuple = ()

    def show_cycles(self, tracker: CycleTracker | None) -> None:
        key = (id(tracker), tracker.version if tracker else -1)
        if key == self._key:
            return
        self._key = key
        if tracker is None:
            for curve in (self.charge, self.discharge, self.ce):
                curve.setData([], [])
            return
        table = tracker.table()
        c = table["cycle_count"].to_numpy().astype(float)
        self.charge.setData(c, table["charge_capacity_ampere_hour"].to_numpy())
        self.discharge.setData(c, table["discharge_capacity_ampere_hour"].to_numpy())
        ce = table["coulombic_efficiency_percent"].to_numpy()
        ok = np.isfinite(ce)
        self.ce.setData(c[ok], ce[ok])


class DqdvPlot(pg.PlotWidget):
    """dQ/dV of one cycle (charge and discharge), smoothed (Savitzky-Golay, 10 mV)."""

    def __init__(self, parent=None):
        super().__init__(parent, background="w")
        item = self.getPlotItem()
        style(item)
        item.setLabel("bottom", "voltage", units="V")
        item.setLabel("left", "dQ/dV", units="Ah/V")
        item.getAxis("left").setWidth(70)
        self.legend = item.addLegend(offset=(10, 10), labelTextColor="k")
        self.message = pg.TextItem("", color="#a00")
        item.addItem(self.message, ignoreBounds=True)
        self._key: tuple = ()

    def show_cycle(self, tracker: CycleTracker | None, cycle: int | None) -> None:
        key = (id(tracker), tracker.version if tracker else -1, cycle)
        if key == self._key:
            return
        self._key = key
        item = self.getPlotItem()
        for curve in list(item.listDataItems()):
            item.removeItem(curve)
        self.legend.clear()
        self.message.setText("")
        if tracker is None or cycle is None:
            return
        problems = []
        for half in tracker.curves(cycle):
            q, v = half.arrays()
            name = "charge" if half.sign > 0 else "discharge"
            try:
                curve = dqdv(v, q)
            except DqdvError as exc:
                problems.append(f"{name}: {exc}")
                continue
            color = "#d62728" if half.sign > 0 else "#1f77b4"
            y = curve.y if half.sign > 0 else -np.abs(curve.y)
            item.plot(curve.x, y, pen=pg.mkPen(color, width=1.5), name=f"cycle {cycle} {name}")
        if problems:
            self.message.setText("\n".join(problems))
