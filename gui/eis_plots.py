"""Impedance views: Nyquist (equal axes, capacitive arcs up) and Bode (|Z| and phase against f).

Both draw any list of :class:`~cellbench.gui.model.Sweep` objects (the live view passes the
sweeps chosen in its list, the analysis panel a measured and a fitted spectrum). Sweeps are
coloured from light (oldest) to dark (newest); the decades of frequency are labelled on the
newest sweep of the Nyquist plot, so a reader can tell which arc is which.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg

import cellbench.gui.qt_fixes  # noqa: F401 - before any PySide6 call
from cellbench.gui.model import Sweep
from cellbench.gui.plots import style


def sweep_colors(n: int) -> list[str]:
    """``n`` colours from light blue (oldest) to dark blue (newest)."""
    light, dark = np.array([158, 202, 225]), np.array([8, 48, 107])
    out = []
    for k in range(n):
        r, g, b = (light + (dark - light) * (k / max(n - 1, 1)) if n > 1 else dark).astype(int)
        out.append(f"#{r:02x}{g:02x}{b:02x}")
    return out


def sweep_name(sweep: Sweep) -> str:
    name = f"sweep {sweep.sweep_index}"
    if np.isfinite(sweep.temperature_celsius):
        name += f", {sweep.temperature_celsius:.0f} °C"
    if sweep.cycle_count is not None:
        name += f", cycle {sweep.cycle_count}"
    return name


def decade_labels(f: np.ndarray) -> list[int]:
    """Indices of the points nearest each decade of frequency (1 Hz, 10 Hz, ...) in ``f``."""
    if not len(f):
        return []
    lf = np.log10(f[f > 0]) if np.any(f > 0) else np.empty(0)
    if not len(lf):
        return []
    out = []
    for d in range(int(np.floor(lf.min())), int(np.ceil(lf.max())) + 1):
        i = int(np.argmin(np.abs(np.log10(np.where(f > 0, f, np.nan)) - d)))
        if abs(np.log10(f[i]) - d) < 0.25 and i not in out:
            out.append(i)
    return out


def fmt_hz(f: float) -> str:
    for factor, prefix in ((1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m")):
        if f >= factor * 0.999:
            return f"{f / factor:.3g} {prefix}Hz"
    return f"{f:.2g} Hz"


class NyquistPlot(pg.PlotWidget):
    """Sweeps as Z′ against −Z″ (capacitive arcs up), equal axes, decades labelled."""

    def __init__(self, parent=None, *, title: str = "Nyquist"):
        super().__init__(parent, background="w")
        item = self.getPlotItem()
        style(item)
        item.setAspectLocked(True)
        item.setLabel("bottom", "Z′", units="Ω")
        item.setLabel("left", "−Z″", units="Ω")
        item.setTitle(title)
        self.legend = item.addLegend(
            offset=(-10, 10), labelTextColor="k", brush=(255, 255, 255, 200)
        )
        self.labels: list[pg.TextItem] = []
        self._shown: tuple = ()

    def show_sweeps(self, sweeps: Sequence[Sweep], *, extra: Sequence[tuple] = ()) -> None:
        """Draw ``sweeps`` (oldest first); ``extra``: (x, y, pen, name) lines such as a fit."""
        key = tuple((s.sweep_index, len(s.frequency_hertz)) for s in sweeps) + tuple(
            (e[3], len(e[0])) for e in extra
        )
        if key == self._shown:
            return
        self._shown = key
        item = self.getPlotItem()
        item.clear()
        self.legend.clear()
        self.labels = []
        shown_in_legend = list(sweeps)[-8:]  # a legend of 50 rows hides the plot
        for sweep, color in zip(sweeps, sweep_colors(len(sweeps)), strict=True):
            item.plot(
                sweep.z_real_ohm,
                -sweep.z_imag_ohm,
                pen=pg.mkPen(color, width=1.5),
                symbol="o",
                symbolSize=5,
                symbolBrush=color,
                symbolPen=None,
                name=sweep_name(sweep) if sweep in shown_in_legend else None,
            )
        for x, y, pen, name in extra:
            item.plot(x, y, pen=pen, name=name)
        if sweeps:
            newest = sweeps[-1]
            x, y = newest.z_real_ohm, -newest.z_imag_ohm
            every_x = np.concatenate([s.z_real_ohm for s in sweeps])
            every_y = np.concatenate([-s.z_imag_ohm for s in sweeps])
            span = max(float(np.ptp(every_x)), float(np.ptp(every_y)), 1e-12)  # the view's size
            middle = float(np.nanmean(x))
            placed: list[tuple[float, float]] = []
            for i in decade_labels(newest.frequency_hertz):
                px, py = float(x[i]), float(y[i])
                if any(abs(px - qx) + abs(py - qy) < 0.08 * span for qx, qy in placed):
                    continue  # too close to a label already placed: it would cover it
                placed.append((px, py))
                right = px > middle  # labels point away from the arc's centre, inside the plot
                label = pg.TextItem(
                    fmt_hz(float(newest.frequency_hertz[i])),
                    color="#333",
                    anchor=(1.1 if right else -0.1, 1.0),
                )
                label.setPos(px, py)
                item.addItem(label)
                self.labels.append(label)
            item.enableAutoRange()


class BodePlot(pg.GraphicsLayoutWidget):
    """|Z| (log) and phase against frequency (log), x linked."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setBackground("w")
        self.mag = self.addPlot(row=0, col=0)
        self.phase = self.addPlot(row=1, col=0)
        for plot in (self.mag, self.phase):
            style(plot)
            plot.setLogMode(x=True, y=False)
            plot.getAxis("left").setWidth(60)
        self.mag.setLogMode(x=True, y=True)
        self.mag.setLabel("left", "|Z| (Ω)")
        self.phase.setLabel("left", "−phase (°)")
        self.phase.setLabel("bottom", "frequency (Hz)")
        self.phase.setXLink(self.mag)
        self.mag.getAxis("bottom").setStyle(showValues=False)
        self._shown: tuple = ()

    def show_sweeps(self, sweeps: Sequence[Sweep], *, extra: Sequence[tuple] = ()) -> None:
        """``extra``: (frequency, Z complex, pen, name) lines such as a fit."""
        key = tuple((s.sweep_index, len(s.frequency_hertz)) for s in sweeps) + tuple(
            (e[3], len(e[0])) for e in extra
        )
        if key == self._shown:
            return
        self._shown = key
        self.mag.clear()
        self.phase.clear()
        mags = [np.abs(s.z_real_ohm + 1j * s.z_imag_ohm) for s in sweeps]
        wide = bool(mags) and np.nanmax([m.max() for m in mags]) > 10 * np.nanmin(
            [m.min() for m in mags]
        )
        self.mag.setLogMode(x=True, y=bool(wide))  # log |Z| only where it spans a decade
        for sweep, color in zip(sweeps, sweep_colors(len(sweeps)), strict=True):
            z = sweep.z_real_ohm + 1j * sweep.z_imag_ohm
            kw = dict(
                pen=pg.mkPen(color, width=1.5),
                symbol="o",
                symbolSize=4,
                symbolBrush=color,
                symbolPen=None,
            )
            self.mag.plot(sweep.frequency_hertz, np.abs(z), **kw)
            self.phase.plot(sweep.frequency_hertz, -np.degrees(np.angle(z)), **kw)
        for f, z, pen, _ in extra:
            self.mag.plot(f, np.abs(z), pen=pen)
            self.phase.plot(f, -np.degrees(np.angle(z)), pen=pen)
