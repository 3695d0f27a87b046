"""Replicate statistics across cells: mean, standard deviation and n of every figure a paper
reports per cell (capacity, Coulombic efficiency, area-specific resistance, conductivity, CCD),
per group of cells (a build batch) and, for cycling, per cycle.

Conventions:

* ``sd`` is the sample standard deviation (``ddof = 1``); with one cell it is undefined (NaN)
  and ``n`` says so. ``sem = sd / sqrt(n)``; the confidence interval of the mean is
  ``mean +/- t(0.975, n-1) sem`` (Student's t, so three cells give an honest, wide interval).
  ``cv`` is ``sd / |mean|``.
* Values that are missing or not finite for a cell (a CCD without a short, a cycle the cell did
  not reach) do not count: ``n`` is the number of cells that contribute, per quantity and per
  cycle, never the number of files given.
* Per-cycle bands (:func:`cycle_bands`) align cells by ``cycle_count``; the ``n`` column shows
  where cells dropped out, so a band does not silently narrow to the survivors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from cellbench.core.errors import CellbenchError

#: The per-cycle quantities :func:`cycle_bands` summarises by default (columns of
#: :func:`cellbench.analysis.cycling.cycle_summary`, plus the ASR :func:`with_asr` adds).
CYCLE_QUANTITIES: tuple[str, ...] = (
    "discharge_capacity_ampere_hour",
    "charge_capacity_ampere_hour",
    "coulombic_efficiency",
    "area_specific_resistance_ohm_square_centimeter",
)


class ReplicateError(CellbenchError, ValueError):
    """Replicates that cannot be summarised (no cells, unknown grouping)."""


@dataclass(frozen=True)
class Stat:
    """Mean, sample SD, n, standard error, 95 % interval of the mean, range, CV of one quantity."""

    quantity: str
    n: int
    mean: float
    sd: float
    sem: float
    ci_low: float
    ci_high: float
    minimum: float
    maximum: float
    cv: float
    cells: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cells"] = list(self.cells)
        return d

    def text(self, digits: int = 4) -> str:
        """``mean ± sd (n = k)``, as a table cell."""
        if self.n == 0:
            return "- (n = 0)"
        sd = f" ± {self.sd:.{digits - 1}g}" if math.isfinite(self.sd) else ""
        return f"{self.mean:.{digits}g}{sd} (n = {self.n})"


def describe(
    quantity: str, values: Mapping[str, float | None], *, confidence: float = 0.95
) -> Stat:
    """Statistics of one quantity over cells (``values``: cell label -> value)."""
    pairs = [(k, float(v)) for k, v in values.items() if v is not None and math.isfinite(float(v))]
    x = np.array([v for _, v in pairs])
    n = x.size
    nan = math.nan
    if n == 0:
        return Stat(quantity, 0, nan, nan, nan, nan, nan, nan, nan, nan, ())
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if n > 1 else nan
    sem = sd / math.sqrt(n) if n > 1 else nan
    tq = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) if n > 1 else nan
    return Stat(
        quantity=quantity,
        n=n,
        mean=mean,
        sd=sd,
        sem=sem,
        ci_low=mean - tq * sem,
        ci_high=mean + tq * sem,
        minimum=float(x.min()),
        maximum=float(x.max()),
        cv=sd / abs(mean) if n > 1 and mean != 0 else nan,
        cells=tuple(k for k, _ in pairs),
    )


def describe_table(
    per_cell: Mapping[str, Mapping[str, float | None]],
    quantities: Sequence[str] | None = None,
    *,
    confidence: float = 0.95,
) -> list[Stat]:
    """One :class:`Stat` per quantity over cells (``per_cell``: label -> {quantity: value});
    ``quantities`` default: every key any cell has, in first-seen order."""
    if not per_cell:
        raise ReplicateError("no cells to summarise")
    if quantities is None:
        seen: dict[str, None] = {}
        for row in per_cell.values():
            seen.update(dict.fromkeys(row))
        quantities = list(seen)
    return [
        describe(q, {c: row.get(q) for c, row in per_cell.items()}, confidence=confidence)
        for q in quantities
    ]


def stats_frame(stats_: Sequence[Stat], *, group: str | None = None) -> pl.DataFrame:
    """The statistics as a table (one row per quantity; ``group`` adds a column)."""
    rows = []
    for s in stats_:
        d = s.to_dict()
        d["cells"] = ", ".join(s.cells)
        if group is not None:
            d = {"group": group, **d}
        rows.append(d)
    return pl.DataFrame(rows)


def with_asr(summary: pl.DataFrame, area_cm2: float | None) -> pl.DataFrame:
    """Adds ``area_specific_resistance_ohm_square_centimeter = dc_resistance_ohm * area``: the
    cell's DC ASR (whole cell, both electrodes). Unchanged without an area or a DC resistance."""
    if area_cm2 is None or "dc_resistance_ohm" not in summary.columns:
        return summary
    if not (math.isfinite(area_cm2) and area_cm2 > 0):
        raise ReplicateError(f"area_cm2 must be a positive number, got {area_cm2!r}")
    return summary.with_columns(
        (pl.col("dc_resistance_ohm") * area_cm2).alias(
            "area_specific_resistance_ohm_square_centimeter"
        )
    )


def cycle_bands(
    summaries: Mapping[str, pl.DataFrame],
    quantities: Sequence[str] = CYCLE_QUANTITIES,
) -> pl.DataFrame:
    """Per-cycle mean, SD and n across cells: columns ``cycle_count`` and, per quantity present
    in at least one summary, ``<q>_mean``, ``<q>_sd``, ``<q>_n`` (module doc)."""
    if not summaries:
        raise ReplicateError("no cells to summarise")
    present = [q for q in quantities if any(q in s.columns for s in summaries.values())]
    if not present:
        raise ReplicateError(f"none of {list(quantities)} in the cycle summaries")
    parts = []
    for label, s in summaries.items():
        if "cycle_count" not in s.columns:
            raise ReplicateError(f"{label}: the summary has no cycle_count column")
        cols = [
            pl.col(q).cast(pl.Float64) if q in s.columns else pl.lit(None, pl.Float64).alias(q)
            for q in present
        ]
        parts.append(s.select(pl.col("cycle_count").cast(pl.Int64), *cols))
    long = pl.concat(parts).with_columns(
        [pl.when(pl.col(q).is_finite()).then(pl.col(q)).otherwise(None).alias(q) for q in present]
    )
    aggs = []
    for q in present:
        aggs += [
            pl.col(q).mean().alias(f"{q}_mean"),
            pl.col(q).std(ddof=1).alias(f"{q}_sd"),
            pl.col(q).count().cast(pl.Int64).alias(f"{q}_n"),
        ]
    return long.group_by("cycle_count").agg(aggs).sort("cycle_count")


def group_cells(
    labels: Sequence[str],
    by: str,
    *,
    batches: Mapping[str, str] | None = None,
    chemistries: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """Cells (file or run labels) in groups, in first-seen order.

    ``by``: ``none`` (one group, ``all``), ``cell-batch`` (the run's cell batch: ``batches``
    label -> batch; a cell without one goes to ``(no batch)``), ``chemistry`` (the same with
    ``chemistries``), or ``regex:PATTERN`` (the first capture group of PATTERN searched in the
    label, else the whole match; a label it does not match is an error naming it).
    """
    out: dict[str, list[str]] = {}
    if by == "none":
        return {"all": list(labels)}
    if by in ("cell-batch", "chemistry"):
        table = (batches if by == "cell-batch" else chemistries) or {}
        empty = "(no batch)" if by == "cell-batch" else "(no chemistry)"
        for label in labels:
            out.setdefault(table.get(label) or empty, []).append(label)
        return out
    if by.startswith("regex:"):
        try:
            pattern = re.compile(by[len("regex:") :])
        except re.error as exc:
            raise ReplicateError(f"--group-by {by!r}: not a regular expression: {exc}") from None
        for label in labels:
            m = pattern.search(label)
            if m is None:
                raise ReplicateError(f"--group-by {by!r} does not match {label!r}")
            key = m.group(1) if m.groups() else m.group(0)
            out.setdefault(key, []).append(label)
        return out
    raise ReplicateError(
        f"--group-by {by!r}: expected none, cell-batch, chemistry or regex:PATTERN"
    )
