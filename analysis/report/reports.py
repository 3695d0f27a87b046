"""The report of a whole run: everything its data support, per channel.

:func:`report_run` puts together the per-kind sections (:mod:`.reports_cycling`,
:mod:`.reports_eis`, :mod:`.reports_conductivity`; each also makes a one-kind report). The inputs
are frames and analysis results (never paths): loading run folders and vendor files is the
caller's job (:func:`cellbench.cli.report.report_path` does it for the command line). The
per-kind names are re-exported here for the callers that import them from this module.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from cellbench.core.errors import CellbenchError

from .document import Report, ReportFiles
from .reports_common import _write
from .reports_conductivity import conductivity_sections, report_conductivity
from .reports_cycling import (
    ccd_sections,
    cycling_sections,
    dqdv_with_peaks,
    fade_sections,
    report_ccd,
    report_cycling,
    report_fade,
    retention_series,
    time_series_sections,
)
from .reports_eis import (
    EisAnalysis,
    analysis_from_fits,
    choose_circuit,
    eis_sections,
    fit_sweeps,
    report_eis,
)
from .reports_pressure import eis_pressure_sections
from .style import require_matplotlib

if TYPE_CHECKING:
    from cellbench.core.schema import RunMeta

__all__ = [
    "EisAnalysis",
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
    "report_ccd",
    "report_conductivity",
    "report_cycling",
    "report_eis",
    "report_fade",
    "report_run",
    "retention_series",
    "time_series_sections",
]

#: Event kinds listed in a run report (the rest, step starts and ends, are routine).
NOTABLE_EVENTS = ("alarm", "fault", "gap", "reconnect")


@dataclass
class RunData:
    """What a run holds, as frames: any of them may be None or empty."""

    samples: pl.DataFrame | None = None
    spectra: pl.DataFrame | None = None
    events: pl.DataFrame | None = None
    meta: RunMeta | None = None
    source: str = ""  # the folder or file it came from, for the report's header
    notes: list[str] = field(default_factory=list)  # e.g. the reader's warnings, shown first


def _has_ccd_step(meta: RunMeta | None) -> bool:
    text = (meta.protocol or {}).get("text", "") if meta is not None else ""
    return bool(re.search(r'type\s*=\s*"ccd"', text or ""))


def _facts(data: RunData) -> dict[str, str]:
    out: dict[str, str] = {}
    if data.source:
        out["source"] = data.source
    m = data.meta
    if m is not None:
        out["run"] = m.run_id
        if m.protocol.get("name"):
            out["protocol"] = str(m.protocol["name"])
        out["status"] = m.status
        out["started"] = m.start_time + (f", ended {m.end_time}" if m.end_time else "")
        cell = m.cell
        geo = [
            f"{k} {v:g} {unit}"
            for k, v, unit in (
                ("area", cell.area_cm2, "cm²"),
                ("thickness", cell.thickness_cm, "cm"),
                ("active mass", cell.active_mass_g, "g"),
                ("nominal capacity", cell.nominal_capacity_ah, "Ah"),
            )
            if v is not None
        ]
        out["cell"] = ", ".join([x for x in (cell.name, cell.chemistry) if x] + geo) or "–"
        if m.software_version:
            out["software"] = f"cellbench {m.software_version}"
    for name, df in (("samples", data.samples), ("spectra", data.spectra)):
        if df is not None and df.height:
            out[name] = f"{df.height} rows"
    return out


def _channels(df: pl.DataFrame | None) -> list[tuple[str, pl.DataFrame]]:
    if df is None or df.height == 0:
        return []
    if "channel" not in df.columns or df["channel"].n_unique() == 1:
        return [("", df)]
    return [
        (str(c), df.filter(pl.col("channel") == c))
        for c in df["channel"].unique(maintain_order=True).to_list()
    ]


def report_run(
    data: RunData,
    out_dir: Path | str,
    *,
    title: str | None = None,
    circuit: str | None = None,
    threshold: float = 0.8,
    dqdv_cycles: Sequence[int] | None = None,
    efficiency: str = "discharge/charge",
    ccd: bool | None = None,
) -> ReportFiles:
    """Everything the run's data supports, per channel: samples give V/I/T, the cycle summary,
    fade and end of life, dQ/dV (or, when the protocol has a ``ccd`` step or ``ccd=True``,
    V/I/T and the CCD staircase); spectra give circuit fits per sweep, Nyquist and Bode of the
    first and last, parameters against cycle, DRT, and the Arrhenius plot when they span
    temperatures. A part that fails becomes a note in the report instead of stopping it."""
    require_matplotlib()
    meta = data.meta
    cell = meta.cell if meta is not None else None
    if title is None:
        title = f"Run report: {meta.run_id}" if meta is not None else "Report"
    rep = Report(title, _facts(data))
    samples, spectra = _channels(data.samples), _channels(data.spectra)
    if data.notes or (not samples and not spectra):
        rep.section("Data")
        for text in data.notes:
            rep.note(text)
        if not samples and not spectra:
            rep.note("The run holds no samples and no spectra.")
    want_ccd = _has_ccd_step(meta) if ccd is None else ccd
    for tag, df in samples:
        if want_ccd:  # a symmetric cell's staircase: capacity, fade and dQ/dV mean nothing
            _guard(
                rep, "time series", lambda df=df, tag=tag: time_series_sections(rep, df, tag=tag)
            )
        else:
            _guard(
                rep,
                f"cycling{' ' + tag if tag else ''}",
                lambda df=df, tag=tag: cycling_sections(
                    rep,
                    df,
                    efficiency=efficiency,
                    threshold=threshold,
                    dqdv_cycles=dqdv_cycles,
                    active_mass_g=cell.active_mass_g if cell else None,
                    area_cm2=cell.area_cm2 if cell else None,
                    tag=tag,
                ),
            )
        if want_ccd:
            if cell is None or cell.area_cm2 is None:
                rep.note("CCD step in the protocol, but the cell area is unknown: no CCD.")
            else:
                _guard(
                    rep, "CCD", lambda df=df, tag=tag: ccd_sections(rep, df, cell.area_cm2, tag=tag)
                )
    events = data.events
    if events is not None and events.height and "kind" in events.columns:
        notable = events.filter(pl.col("kind").is_in(NOTABLE_EVENTS))
        if notable.height:
            rep.section("Events")
            keep = [
                c
                for c in (
                    "channel",
                    "test_time_second",
                    "kind",
                    "severity",
                    "message",
                    "step_index",
                    "cycle_count",
                    "duration_second",
                )
                if c in notable.columns
            ]
            rep.table(
                "events",
                notable.select(keep),
                "Alarms, faults, gaps and reconnections during the run",
            )
    if meta is not None and meta.ground_truth:
        # A simulated run knows the true parameters: put them beside what the fits found.
        rep.section("Simulated cell: ground truth")
        truth = meta.ground_truth
        rep.fit(
            "ground_truth",
            truth,
            "Parameters of the simulated cell (run.json)",
            _scalars(truth),
        )
    for tag, df in spectra:
        _guard(
            rep,
            f"impedance{' ' + tag if tag else ''}",
            lambda df=df, tag=tag: _impedance(rep, df, data.samples, circuit, cell, tag),
        )
    return _write(rep, out_dir)


def _impedance(
    rep: Report,
    spectra: pl.DataFrame,
    samples: pl.DataFrame | None,
    circuit: str | None,
    cell: Any,
    tag: str,
) -> None:
    """One channel's impedance sections, and its arcs against the stack pressure logged in the
    same channel's samples (when the sweeps were taken at several pressures)."""
    area = cell.area_cm2 if cell else None
    analysis = eis_sections(
        rep,
        spectra,
        circuit=circuit,
        tag=tag,
        thickness_cm=cell.thickness_cm if cell else None,
        area_cm2=area,
    )
    if samples is not None and "channel" in samples.columns and "channel" in spectra.columns:
        channels = spectra["channel"].unique().to_list()
        samples = samples.filter(pl.col("channel").is_in(channels))
    eis_pressure_sections(rep, analysis, samples, area_cm2=area, tag=tag)


def _scalars(d: Mapping[str, Any]) -> dict[str, str]:
    """The scalar entries of a (one level nested) mapping, as text: lists are left out."""
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_scalars(v))
        elif isinstance(v, float):
            out[k] = f"{v:.4g}"
        elif isinstance(v, int | str | bool):
            out[k] = str(v)
    return out


def _guard(rep: Report, what: str, build: Any) -> None:
    """Run one part of a run report; a user-fixable failure becomes a note, not a lost report."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            build()
    except CellbenchError as exc:
        rep.section(f"{what[0].upper()}{what[1:]}: not analysed")
        rep.note(f"{what}: {exc}")
