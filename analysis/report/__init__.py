"""Figures and reports: publication-quality matplotlib figures and self-contained HTML reports.

Figure functions (``plot_*``) are pure: frames or analysis results in, a new
:class:`matplotlib.figure.Figure` out. Report functions (``report_*``) write a folder with
``report.html`` (figures embedded, no external references), every figure as PNG, tables as CSV
and Parquet, and fits as JSON. matplotlib (the ``report`` extra) is imported only when a figure
is made.

>>> from cellbench.analysis.report import RunData, report_run
>>> report_run(RunData(samples=samples, spectra=spectra, meta=meta), "report/")  # doctest: +SKIP
"""

from __future__ import annotations

from .document import Report, ReportFiles, jsonable
from .figures_conductivity import plot_arrhenius
from .figures_cycling import plot_capacity, plot_ccd, plot_dqdv, plot_fade, plot_time_series
from .figures_eis import EisCurve, plot_bode, plot_drt, plot_eis_parameters, plot_nyquist
from .figures_pressure import plot_asr_pressure, plot_pressure_time, plot_resistance_pressure
from .reports import (
    EisAnalysis,
    RunData,
    analysis_from_fits,
    ccd_sections,
    choose_circuit,
    conductivity_sections,
    cycling_sections,
    dqdv_with_peaks,
    eis_sections,
    fade_sections,
    fit_sweeps,
    report_ccd,
    report_conductivity,
    report_cycling,
    report_eis,
    report_fade,
    report_run,
    retention_series,
    time_series_sections,
)
from .style import ReportError, png_bytes

__all__ = [
    "EisAnalysis",
    "EisCurve",
    "Report",
    "ReportError",
    "ReportFiles",
    "RunData",
    "analysis_from_fits",
    "ccd_sections",
    "choose_circuit",
    "conductivity_sections",
    "cycling_sections",
    "dqdv_with_peaks",
    "eis_sections",
    "fade_sections",
    "fit_sweeps",
    "jsonable",
    "plot_arrhenius",
    "plot_asr_pressure",
    "plot_bode",
    "plot_capacity",
    "plot_ccd",
    "plot_dqdv",
    "plot_drt",
    "plot_eis_parameters",
    "plot_fade",
    "plot_nyquist",
    "plot_pressure_time",
    "plot_resistance_pressure",
    "plot_time_series",
    "png_bytes",
    "report_ccd",
    "report_conductivity",
    "report_cycling",
    "report_eis",
    "report_fade",
    "report_run",
    "retention_series",
    "time_series_sections",
]
