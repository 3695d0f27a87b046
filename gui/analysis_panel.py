"""The Analysis tab: a recorded run or a vendor file, fitted and exported without a terminal.

*Open…* reads a run folder or any file ``cellbench inspect`` reads. Then, per channel:

- *EIS fit*: any sweep, a typed circuit or ``auto`` (the lowest BIC among the candidates whose
  values the data determine), the fit over the data in Nyquist, the relative residuals against
  frequency, the parameter table with standard errors;
- *Interface R*: every sweep fitted with one circuit, a resistance against cycle with its
  standard error;
- *Fade*: retention against cycle, the chosen fade model, end of life with its prediction
  interval;
- *Arrhenius*: conductivity from the first sweep at each temperature (σ = L / (R·A)), the
  Arrhenius fit and Ea with its interval;
- *CCD*: the current staircase and where the cell shorted.

Every figure exports as PNG or SVG, every table as CSV, and *HTML report…* writes the full
report of :mod:`cellbench.analysis.report`. Fits run on a worker thread; the window stays live.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

import cellbench.gui.qt_fixes  # noqa: F401 - before any PySide6 call
from cellbench.analysis.report import RunData
from cellbench.gui import analysis_data as ad
from cellbench.gui.eis_plots import NyquistPlot
from cellbench.gui.export import FIGURE_FILTER, export_figure, export_table
from cellbench.gui.plots import style

CIRCUITS = (
    ad.AUTO,
    "R0-p(R1,CPE1)",
    "R0-p(R1,CPE1)-CPE2",
    "R0-p(R1,CPE1)-W1",
    "R0-p(R1,CPE1)-p(R2,CPE2)",
    "R0-p(R1,CPE1)-p(R2,CPE2)-CPE3",
)
FIT_PEN = pg.mkPen("#d62728", width=2)


def fmt_value(value: float, err: float | None = None) -> str:
    """``12.31 ± 0.05``-style text: the error with 2 significant digits, the value to match."""
    if value is None or not math.isfinite(value):
        return "-"
    if err is None or not math.isfinite(err) or err <= 0:
        return f"{value:.4g}"
    digits = max(0, 1 - math.floor(math.log10(err)))
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.3e} ± {err:.2e}"
    return f"{value:.{digits}f} ± {err:.{digits}f}" if digits <= 8 else f"{value:.3e} ± {err:.2e}"


def fill_table(table: QTableWidget, frame: pl.DataFrame, *, digits: int = 5) -> None:
    table.clear()
    table.setColumnCount(frame.width)
    table.setRowCount(frame.height)
    table.setHorizontalHeaderLabels(frame.columns)
    for r, row in enumerate(frame.iter_rows()):
        for c, value in enumerate(row):
            if isinstance(value, float):
                text = f"{value:.{digits}g}" if math.isfinite(value) else str(value)
            elif isinstance(value, list):
                text = ", ".join(map(str, value))
            else:
                text = "" if value is None else str(value)
            table.setItem(r, c, QTableWidgetItem(text))
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)


def _plot_widget(xlabel: str, ylabel: str, *, xunits=None, yunits=None) -> pg.PlotWidget:
    w = pg.PlotWidget(background="w")
    item = w.getPlotItem()
    style(item)
    item.setLabel("bottom", xlabel, units=xunits)
    item.setLabel("left", ylabel, units=yunits)
    item.addLegend(offset=(-10, 10), labelTextColor="k", brush=(255, 255, 255, 200))
    return w


class _Section(QWidget):
    """One analysis: controls on top, figure(s) and a table; export buttons."""

    def __init__(self, panel: AnalysisPanel, name: str):
        super().__init__()
        self.panel, self.name = panel, name
        self.controls = QHBoxLayout()
        self.result = QLabel("")
        self.result.setWordWrap(True)
        self.table = QTableWidget(0, 0)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.figures: list[pg.GraphicsView] = []
        self.frame: pl.DataFrame | None = None
        self.export_figure_button = QPushButton("Export figure…")
        self.export_figure_button.clicked.connect(self.ask_export_figure)
        self.export_table_button = QPushButton("Export table…")
        self.export_table_button.clicked.connect(self.ask_export_table)
        self.body = QSplitter()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(self.controls)
        layout.addWidget(self.result)
        split = QSplitter()
        split.setOrientation(pg.QtCore.Qt.Orientation.Vertical)
        split.addWidget(self.body)
        split.addWidget(self.table)
        split.setSizes([420, 140])
        layout.addWidget(split, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.export_figure_button)
        row.addWidget(self.export_table_button)
        layout.addLayout(row)

    def add_figure(self, widget: pg.GraphicsView) -> None:
        self.figures.append(widget)
        self.body.addWidget(widget)

    def set_frame(self, frame: pl.DataFrame | None) -> None:
        self.frame = frame
        if frame is None:
            self.table.setRowCount(0)
        else:
            fill_table(self.table, frame)

    def export_figures(self, path: Path | str) -> list[Path]:
        """Every figure of this section: ``path`` itself for the first, ``<stem>-2`` ... after."""
        path = Path(path)
        out = []
        for k, fig in enumerate(self.figures):
            target = path if k == 0 else path.with_name(f"{path.stem}-{k + 1}{path.suffix}")
            out.append(export_figure(fig, target))
        return out

    def ask_export_figure(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export figure", f"{self.name}.svg", FIGURE_FILTER
        )
        if path:
            self._guard(lambda: self.export_figures(path), f"figure written: {path}")

    def ask_export_table(self) -> None:
        if self.frame is None:
            self.result.setText("nothing to export yet")
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Export table", f"{self.name}.csv", "CSV (*.csv)"
        )
        if path:
            self._guard(lambda: export_table(self.frame, path), f"table written: {path}")

    def _guard(self, action: Callable[[], Any], done: str) -> None:
        try:
            action()
        except Exception as exc:
            self.result.setText(f"{type(exc).__name__}: {exc}")
        else:
            self.panel.message.setText(done)


class AnalysisPanel(QWidget):
    """Open a run or file; EIS fit, interface R, fade, Arrhenius, CCD; export; HTML report."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.data: RunData | None = None
        self.sweeps: list[ad.SweepData] = []
        self.fit: ad.SpectrumFit | None = None
        self.open_button = QPushButton("Open run or file…")
        self.open_button.clicked.connect(self.ask_open)
        self.catalog_button = QPushButton("Open from catalog…")  # a run in the lab catalog
        self.catalog_button.clicked.connect(self.ask_open_catalog)
        self.source = QLabel("nothing open: a run folder or a vendor file (.mpr, .nda, .csv …)")
        self.source.setWordWrap(True)
        self.channel_box = QComboBox()
        self.channel_box.setMinimumContentsLength(6)
        self.channel_box.currentIndexChanged.connect(lambda _: self._channel_changed())
        self.report_button = QPushButton("HTML report…")
        self.report_button.clicked.connect(self.ask_report)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(self.open_button)
        top.addWidget(self.catalog_button)
        top.addWidget(self.source, 1)
        top.addWidget(QLabel("channel"))
        top.addWidget(self.channel_box)
        top.addWidget(self.report_button)
        self.tabs = QTabWidget()
        self._build_eis()
        self._build_interface()
        self._build_fade()
        self._build_arrhenius()
        self._build_ccd()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.message)
        self._job: threading.Thread | None = None
        self._job_result: tuple | None = None
        self._job_done: Callable[[Any], None] | None = None
        self._poll = QTimer(self)
        self._poll.setInterval(50)
        self._poll.timeout.connect(self._check_job)

    # ------------------------------------------------------------------------------ sections

    def _build_eis(self) -> None:
        s = self.eis = _Section(self, "eis-fit")
        self.sweep_list = QListWidget()
        self.sweep_list.setMaximumWidth(200)
        self.sweep_list.currentRowChanged.connect(lambda _: self._show_sweep())
        self.circuit_box = QComboBox()
        self.circuit_box.setEditable(True)
        self.circuit_box.addItems(CIRCUITS)
        self.circuit_box.setMinimumContentsLength(22)
        self.circuit_box.setToolTip("a circuit such as R0-p(R1,CPE1)-W1, or auto (chosen by BIC)")
        self.fit_button = QPushButton("Fit")
        self.fit_button.clicked.connect(self.fit_selected)
        s.controls.addWidget(QLabel("circuit"))
        s.controls.addWidget(self.circuit_box, 1)
        s.controls.addWidget(self.fit_button)
        self.fit_nyquist = NyquistPlot(title="data and fit")
        self.residuals = _plot_widget("frequency (Hz)", "residual (%)")
        self.residuals.getPlotItem().setLogMode(x=True, y=False)
        for side in ("left", "bottom"):  # no SI prefix on % or on a log axis in Hz
            self.residuals.getPlotItem().getAxis(side).enableAutoSIPrefix(False)
        s.body.addWidget(self.sweep_list)
        s.add_figure(self.fit_nyquist)
        s.add_figure(self.residuals)
        s.body.setSizes([150, 450, 350])
        self.tabs.addTab(s, "EIS fit")

    def _build_interface(self) -> None:
        s = self.interface = _Section(self, "interface-resistance")
        self.resistance_box = QComboBox()
        self.resistance_box.setEditable(True)
        self.resistance_box.addItems(["R1", "R0", "R2"])
        self.batch_button = QPushButton("Fit every sweep")
        self.batch_button.clicked.connect(self.fit_batch)
        s.controls.addWidget(QLabel("resistance"))
        s.controls.addWidget(self.resistance_box)
        s.controls.addWidget(self.batch_button)
        s.controls.addStretch(1)
        self.r_plot = _plot_widget("cycle", "resistance", yunits="Ω")
        s.add_figure(self.r_plot)
        self.tabs.addTab(s, "Interface R")

    def _build_fade(self) -> None:
        s = self.fade = _Section(self, "fade")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(50, 99)
        self.threshold.setValue(80)
        self.threshold.setSuffix(" %")
        button = QPushButton("Fit fade")
        button.clicked.connect(self.fit_fade)
        s.controls.addWidget(QLabel("end of life at"))
        s.controls.addWidget(self.threshold)
        s.controls.addWidget(button)
        s.controls.addStretch(1)
        self.fade_plot = _plot_widget("cycle", "retention (%)")
        s.add_figure(self.fade_plot)
        self.tabs.addTab(s, "Fade")

    def _build_arrhenius(self) -> None:
        s = self.arr = _Section(self, "arrhenius")
        self.thickness = QDoubleSpinBox()
        self.thickness.setRange(0, 1e5)
        self.thickness.setDecimals(1)
        self.thickness.setSuffix(" µm")
        self.area = QDoubleSpinBox()
        self.area.setRange(0, 1e4)
        self.area.setDecimals(4)
        self.area.setSuffix(" cm²")
        self.bulk_box = QComboBox()
        self.bulk_box.setEditable(True)
        self.bulk_box.addItems(["R0", "R1"])
        button = QPushButton("Fit Arrhenius")
        button.clicked.connect(self.fit_arrhenius)
        for w in (
            QLabel("thickness"),
            self.thickness,
            QLabel("area"),
            self.area,
            QLabel("resistance"),
            self.bulk_box,
            button,
        ):
            s.controls.addWidget(w)
        s.controls.addStretch(1)
        self.arr_plot = _plot_widget("1000 / T (1/K)", "log10 σ (S/cm)")
        s.add_figure(self.arr_plot)
        self.tabs.addTab(s, "Arrhenius")

    def _build_ccd(self) -> None:
        s = self.ccd = _Section(self, "ccd")
        self.ccd_area = QDoubleSpinBox()
        self.ccd_area.setRange(0, 1e4)
        self.ccd_area.setDecimals(4)
        self.ccd_area.setSuffix(" cm²")
        button = QPushButton("Find CCD")
        button.clicked.connect(self.find_ccd)
        s.controls.addWidget(QLabel("area"))
        s.controls.addWidget(self.ccd_area)
        s.controls.addWidget(button)
        s.controls.addStretch(1)
        self.ccd_plot = _plot_widget("test time", "voltage", xunits="s", yunits="V")
        s.add_figure(self.ccd_plot)
        self.tabs.addTab(s, "CCD")

    # ------------------------------------------------------------------------------ opening

    def ask_open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a vendor file or a run's run.json")
        if path:
            p = Path(path)
            self.open(p.parent if p.name == "run.json" else p)

    def ask_open_catalog(self) -> None:
        from cellbench.gui.catalog_open import ask_open_from_catalog

        ask_open_from_catalog(self)

    def open(self, path: Path | str) -> bool:
        """Read ``path`` (run folder or vendor file); False with the reason shown if it fails."""
        try:
            data = ad.open_data(path)
        except Exception as exc:
            self.message.setText(f"cannot open {path}: {exc}")
            return False
        self.data = data
        n_s = data.samples.height if data.samples is not None else 0
        n_z = data.spectra.height if data.spectra is not None else 0
        self.source.setText(f"{data.source}: {n_s} samples, {n_z} impedance points")
        self.message.setText("; ".join(data.notes))
        cell = data.meta.cell if data.meta is not None else None
        if cell is not None:
            self.thickness.setValue((cell.thickness_cm or 0) * 1e4)
            self.area.setValue(cell.area_cm2 or 0)
            self.ccd_area.setValue(cell.area_cm2 or 0)
        self.channel_box.blockSignals(True)
        self.channel_box.clear()
        for name in ad.channels_of(data) or ["(all)"]:
            self.channel_box.addItem(name)
        self.channel_box.blockSignals(False)
        self._channel_changed()
        return True

    def channel(self) -> str | None:
        text = self.channel_box.currentText()
        return None if text in ("", "(all)") else text

    def samples(self) -> pl.DataFrame | None:
        return ad.one_channel(self.data.samples, self.channel()) if self.data else None

    def spectra(self) -> pl.DataFrame | None:
        return ad.one_channel(self.data.spectra, self.channel()) if self.data else None

    def _channel_changed(self) -> None:
        self.sweeps = ad.sweeps_of(self.spectra())
        self.sweep_list.clear()
        self.sweep_list.addItems([s.label for s in self.sweeps])
        if self.sweeps:
            self.sweep_list.setCurrentRow(0)
        self.fit = None

    def _show_sweep(self) -> None:
        row = self.sweep_list.currentRow()
        if 0 <= row < len(self.sweeps):
            self._draw_fit(self.sweeps[row], None)

    # ------------------------------------------------------------------------------ jobs

    @property
    def busy(self) -> bool:
        return self._job is not None

    def _run(self, what: str, work: Callable[[], Any], done: Callable[[Any], None]) -> None:
        if self._job is not None:
            self.message.setText("an analysis is running: wait for it")
            return
        self.message.setText(f"{what} …")

        def target() -> None:
            try:
                self._job_result = (True, work())
            except Exception as exc:
                self._job_result = (False, f"{what}: {exc}")

        self._job_done = done
        self._job_result = None
        self._job = threading.Thread(target=target, name="cellbench-analysis", daemon=True)
        self._job.start()
        self._poll.start()

    def _check_job(self) -> None:
        if self._job is None or self._job.is_alive():
            return
        self._job = None
        self._poll.stop()
        ok, value = self._job_result or (False, "no result")
        if not ok:
            self.message.setText(str(value))
            return
        self.message.setText("")
        try:
            self._job_done(value)
        except Exception as exc:  # a drawing problem must not leave the panel half updated
            self.message.setText(f"{type(exc).__name__}: {exc}")

    def wait(self, timeout_s: float = 60.0) -> None:
        """Block until the running analysis has finished and been drawn (scripts and tests)."""
        if self._job is not None:
            self._job.join(timeout_s)
            self._check_job()

    # ------------------------------------------------------------------------------ EIS

    def fit_selected(self) -> None:
        row = self.sweep_list.currentRow()
        if not 0 <= row < len(self.sweeps):
            self.message.setText("open a run or file with impedance sweeps first")
            return
        sweep = self.sweeps[row]
        circuit = self.circuit_box.currentText().strip() or ad.AUTO
        self._run(
            f"fitting {sweep.label}",
            lambda: ad.fit_sweep(sweep, circuit),
            lambda fit: self._fitted(sweep, fit),
        )

    def _fitted(self, sweep: ad.SweepData, fit: ad.SpectrumFit) -> None:
        self.fit = fit
        res = fit.result
        self._draw_fit(sweep, fit)
        table = fit.table()
        self.eis.set_frame(table)
        chosen = " (chosen automatically by BIC)" if fit.candidates else ""
        poor = (
            f"; poorly determined: {', '.join(res.poorly_determined)}"
            if res.poorly_determined
            else ""
        )
        self.eis.result.setText(
            f"{sweep.label}: {res.circuit}{chosen}; χ²/dof = {res.reduced_chi2:.3g}, "
            f"{res.n_points} points{poor}"
        )
        names = [n for n in res.values if n.startswith("R")]
        if names:
            self.resistance_box.setCurrentText(names[min(1, len(names) - 1)])

    def _draw_fit(self, sweep: ad.SweepData, fit: ad.SpectrumFit | None) -> None:
        from cellbench.gui.model import Sweep

        data = Sweep(
            int(sweep.info.get("sweep_index", 0) or 0),
            0.0,
            sweep.frequency_hz,
            sweep.z.real,
            sweep.z.imag,
        )
        extra = []
        rp = self.residuals.getPlotItem()
        rp.clear()
        if fit is not None:
            res = fit.result
            f = np.logspace(
                np.log10(sweep.frequency_hz.min()), np.log10(sweep.frequency_hz.max()), 300
            )
            zf = res.predict(f)
            extra.append((zf.real, -zf.imag, FIT_PEN, f"fit {res.circuit}"))
            rel = res.relative_residuals
            rp.plot(
                res.frequency_hz,
                100 * rel.real,
                pen=None,
                symbol="o",
                symbolSize=5,
                symbolBrush="#1f77b4",
                symbolPen=None,
                name="Z′",
            )
            rp.plot(
                res.frequency_hz,
                100 * rel.imag,
                pen=None,
                symbol="t",
                symbolSize=6,
                symbolBrush="#d62728",
                symbolPen=None,
                name="Z″",
            )
            rp.addLine(y=0, pen=pg.mkPen("#888"))
        self.fit_nyquist.show_sweeps([data], extra=extra)

    # ------------------------------------------------------------------------------ batch

    def fit_batch(self) -> None:
        spectra = self.spectra()
        if spectra is None or spectra.height == 0:
            self.message.setText("no impedance sweeps in what is open")
            return
        circuit = self.circuit_box.currentText().strip()
        if circuit.lower() == ad.AUTO:
            if self.fit is None:
                self.message.setText("fit one sweep first (auto) or type a circuit")
                return
            circuit = self.fit.result.circuit
        name = self.resistance_box.currentText().strip()
        self._run(
            f"fitting every sweep with {circuit}",
            lambda: ad.interface_resistance(ad.batch_fits(spectra, circuit), name),
            self._batch_done,
        )

    def _batch_done(self, frame: pl.DataFrame) -> None:
        self.interface.set_frame(frame)
        x, r, e = (frame[c].to_numpy() for c in frame.columns[:3])
        item = self.r_plot.getPlotItem()
        item.clear()
        item.setLabel("bottom", frame.columns[0].replace("_count", "").replace("_", " "))
        ok = np.isfinite(e)
        item.addItem(pg.ErrorBarItem(x=x[ok], y=r[ok], height=2 * e[ok], pen=pg.mkPen("#555")))
        item.plot(
            x,
            r,
            pen=pg.mkPen("#1f77b4", width=1.5),
            symbol="o",
            symbolSize=6,
            symbolBrush="#1f77b4",
            symbolPen=None,
            name=frame.columns[1],
        )
        self.interface.result.setText(f"{frame.height} sweeps; error bars: ± 1 standard error")

    # ------------------------------------------------------------------------------ fade

    def fit_fade(self) -> None:
        samples = self.samples()
        if samples is None or samples.height == 0:
            self.message.setText("no cycling samples in what is open")
            return
        threshold = self.threshold.value() / 100
        self._run("fitting capacity fade", lambda: ad.fade(samples, threshold), self._fade_done)

    def _fade_done(self, result) -> None:
        x, y, rep = result
        item = self.fade_plot.getPlotItem()
        item.clear()
        item.plot(
            x,
            100 * y,
            pen=None,
            symbol="o",
            symbolSize=5,
            symbolBrush="#1f77b4",
            symbolPen=None,
            name="measured",
        )
        eol = rep.end_of_life
        hi = max(float(x.max()), (eol.cycles or 0) * 1.1)
        xf = np.linspace(float(x.min()), hi, 300)
        item.plot(xf, 100 * rep.best.predict(xf), pen=FIT_PEN, name=f"fit: {rep.best.model}")
        item.addLine(
            y=100 * eol.threshold, pen=pg.mkPen("#888", style=pg.QtCore.Qt.PenStyle.DashLine)
        )
        text = f"model {rep.best.model}; "
        if eol.cycles is not None:
            item.addLine(x=eol.cycles, pen=pg.mkPen("#2ca02c", width=1.5))
            if eol.prediction_interval is not None:
                lo, hi_ = eol.prediction_interval
                region = pg.LinearRegionItem((lo, hi_), movable=False, brush=(44, 160, 44, 40))
                item.addItem(region)
                text += (
                    f"end of life ({100 * eol.threshold:.0f} %) at cycle {eol.cycles:.0f}, "
                    f"{100 * eol.confidence:.0f} % prediction interval {lo:.0f} to {hi_:.0f}"
                )
            else:
                text += f"end of life at cycle {eol.cycles:.0f}"
            if eol.extrapolated:
                text += " (extrapolated)"
        else:
            text += f"retention stays above {100 * eol.threshold:.0f} % within the horizon"
        self.fade.result.setText(text)
        rows = [
            {
                "model": f.model,
                "bic": f.bic,
                "aic": f.aic,
                "residual_std": f.residual_std,
                **{f"{k}": v for k, v in f.parameters.items()},
                **{f"{k}_stderr": v for k, v in f.stderr.items()},
            }
            for f in rep.fits
        ]
        self.fade.set_frame(pl.DataFrame(rows, infer_schema_length=None))

    # ------------------------------------------------------------------------------ Arrhenius

    def fit_arrhenius(self) -> None:
        spectra = self.spectra()
        if spectra is None or spectra.height == 0:
            self.message.setText("no impedance sweeps in what is open")
            return
        thickness, area = self.thickness.value() * 1e-4, self.area.value()
        if thickness <= 0 or area <= 0:
            self.message.setText("enter the electrolyte's thickness and area")
            return
        circuit = self.circuit_box.currentText().strip()
        if circuit.lower() == ad.AUTO:
            circuit = self.fit.result.circuit if self.fit is not None else "R0-p(R1,CPE1)-CPE2"
        name = self.bulk_box.currentText().strip()
        self._run(
            "fitting Arrhenius",
            lambda: ad.arrhenius(ad.batch_fits(spectra, circuit), thickness, area, name),
            self._arrhenius_done,
        )

    def _arrhenius_done(self, result) -> None:
        t, sigma, fit = result
        tk = t + 273.15
        item = self.arr_plot.getPlotItem()
        item.clear()
        item.plot(
            1000 / tk,
            np.log10(sigma),
            pen=None,
            symbol="o",
            symbolSize=7,
            symbolBrush="#1f77b4",
            symbolPen=None,
            name="measured",
        )
        grid = np.linspace(tk.min(), tk.max(), 100)
        item.plot(1000 / grid, np.log10(fit.predict(grid)), pen=FIT_PEN, name="Arrhenius fit")
        lo, hi = fit.activation_energy_ev_ci
        self.arr.result.setText(
            f"Ea = {fit.activation_energy_ev:.3f} eV ({100 * fit.confidence:.0f} % interval "
            f"{lo:.3f} to {hi:.3f} eV), {fit.activation_energy_kj_per_mol:.1f} kJ/mol; "
            f"σ(25 °C) = {fit.conductivity_25c_siemens_per_centimeter:.3g} S/cm; "
            f"{fit.n_points} temperatures"
        )
        self.arr.set_frame(
            pl.DataFrame({"temperature_celsius": t, "conductivity_siemens_per_centimeter": sigma})
        )

    # ------------------------------------------------------------------------------ CCD

    def find_ccd(self) -> None:
        samples = self.samples()
        if samples is None or samples.height == 0:
            self.message.setText("no samples in what is open")
            return
        area = self.ccd_area.value()
        if area <= 0:
            self.message.setText("enter the electrode area")
            return
        self._run("finding the CCD", lambda: (samples, ad.ccd(samples, area)), self._ccd_done)

    def _ccd_done(self, result) -> None:
        samples, res = result
        item = self.ccd_plot.getPlotItem()
        item.clear()
        t = samples["test_time_second"].to_numpy()
        item.plot(
            t,
            samples["voltage_volt"].to_numpy(),
            pen=pg.mkPen("#1f77b4", width=1.2),
            name="voltage",
        )
        if res.short_time_second is not None:
            item.addLine(x=res.short_time_second, pen=pg.mkPen("#d62728", width=2))
        ccd = res.ccd_milliampere_per_square_centimeter
        self.ccd.result.setText(
            (f"CCD {ccd:.3g} mA/cm²" if ccd is not None else "no level completed")
            + (
                f"; shorted at {res.short_current_density_milliampere_per_square_centimeter:.3g} "
                f"mA/cm² ({res.mechanism})"
                if res.shorted
                else "; no short"
            )
        )
        self.ccd.set_frame(res.steps)

    # ------------------------------------------------------------------------------ report

    def ask_report(self) -> None:
        if self.data is None:
            self.message.setText("open a run or file first")
            return
        folder = QFileDialog.getExistingDirectory(self, "Write the HTML report into")
        if folder:
            self.write_report(folder)

    def write_report(self, folder: Path | str) -> None:
        """The full HTML report of what is open (on the worker thread)."""
        from cellbench.analysis.report import report_run

        data = self.data
        if data is None:
            return
        self._run(
            f"writing the report to {folder}",
            lambda: report_run(data, folder),
            lambda files: self.message.setText(f"report written: {files.html}"),
        )
