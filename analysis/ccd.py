"""Critical current density (CCD) of a solid electrolyte from a Li|SE|Li current staircase.

The cell is driven through constant-current steps of increasing magnitude (often a plating step
and a stripping step at each level). While the electrolyte holds, the voltage is the
polarisation ``|V| ~ R |I|``. A lithium filament that bridges the electrolyte shows as

* a **collapse**: at constant current, ``|V|`` falls well below the polarisation the cell had
  (``collapse_fraction`` of the expected ``R_ref |I|``) for ``min_points`` consecutive samples;
  ``R_ref`` is the median ``|V/I|`` of the steps completed so far (or the first samples of the
  step, for the first one);
* a **noise signature** (soft short): the second difference of the voltage (sample-to-sample
  change of its slope, blind to smooth polarisation growth) jumps to more than
  ``noise_factor`` times its median in the healthy steps, for ``min_points`` consecutive
  samples, while the current stays constant.

The CCD is reported as the highest current density (mA/cm2) at which every step completed
without a short; the current density of the step that shorted, its index and the time of the
short are reported beside it. A staircase that ends without a short gives only a lower bound
(``shorted`` is False).

The CCD is also reported as the cumulative areal capacity at failure: the charge passed in
both directions, ``integral |I| dt / A`` (trapezoidal, rest excluded) from the first step to the
short (or to the end of the staircase), in mAh/cm2. It compares staircases of different step
lengths, where the current density alone does not. Each step row carries its own areal capacity
and the running total.

Steps are found from the current itself (a new step wherever the current changes by more than
``step_tolerance_ampere`` or by ``step_tolerance_fraction`` of its value), so files without step
columns work; samples with ``|I|`` below ``rest_current_ampere`` are rest and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from cellbench.core.errors import CellbenchError


class CCDError(CellbenchError):
    """The staircase cannot be analysed (missing columns, no current steps, bad area)."""


@dataclass(frozen=True)
class CCDResult:
    """Outcome of a CCD test. Current densities in mA/cm2, times in s since the run started."""

    ccd_milliampere_per_square_centimeter: float | None  # last level that completed
    shorted: bool
    short_current_density_milliampere_per_square_centimeter: float | None
    short_step: int | None  # index into ``steps`` (0-based, rest excluded); ``steps`` also
    # carries the file's ``step_count``/``step_index`` of each step when the frame has them
    short_time_second: float | None
    mechanism: str | None  # "collapse" or "noise"
    area_cm2: float
    steps: pl.DataFrame = field(repr=False)
    # integral |I| dt / area up to the short (or the end), mAh/cm2; None where not computed
    cumulative_areal_capacity_milliampere_hour_per_square_centimeter: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ccd_milliampere_per_square_centimeter": self.ccd_milliampere_per_square_centimeter,
            "ccd_is_lower_bound": not self.shorted,
            "shorted": self.shorted,
            "short_current_density_milliampere_per_square_centimeter": (
                self.short_current_density_milliampere_per_square_centimeter
            ),
            "short_step": self.short_step,
            "short_time_second": self.short_time_second,
            "mechanism": self.mechanism,
            "area_cm2": self.area_cm2,
            "cumulative_areal_capacity_milliampere_hour_per_square_centimeter": (
                self.cumulative_areal_capacity_milliampere_hour_per_square_centimeter
            ),
            "steps": self.steps.to_dicts(),
        }


def _steps(current: np.ndarray, tol_a: float, tol_frac: float, rest_a: float) -> np.ndarray:
    """Step id per sample (-1 for rest)."""
    ids = np.full(current.size, -1, dtype=np.int64)
    step = -1
    level = 0.0
    for k, i in enumerate(current):
        if abs(i) < rest_a:
            level = 0.0
            continue
        if level == 0.0 or abs(i - level) > max(tol_a, tol_frac * abs(level)):
            step += 1
            level = i
        ids[k] = step
    return ids


def _first_run(mask: np.ndarray, length: int) -> int | None:
    """Index of the first sample that starts ``length`` consecutive True values."""
    if length <= 1:
        hits = np.flatnonzero(mask)
        return int(hits[0]) if hits.size else None
    run = np.convolve(mask.astype(np.int64), np.ones(length, dtype=np.int64), "valid")
    hits = np.flatnonzero(run == length)
    return int(hits[0]) if hits.size else None


def critical_current_density(
    samples: pl.DataFrame,
    area_cm2: float,
    *,
    collapse_fraction: float = 0.3,
    noise_factor: float = 8.0,
    min_points: int = 3,
    reference_points: int = 5,
    step_tolerance_ampere: float = 1e-7,
    step_tolerance_fraction: float = 0.02,
    rest_current_ampere: float = 1e-9,
) -> CCDResult:
    """Find the short in a Li|SE|Li current staircase and report the CCD (see module doc).

    Args:
        samples: ``samples`` frame with ``test_time_second`` (s), ``voltage_volt`` (V),
            ``current_ampere`` (A), in time order; one channel.
        area_cm2: electrode area, cm2 (the current density is ``|I| / area``).
        collapse_fraction: a short is ``|V| < collapse_fraction * R_ref * |I|``.
        noise_factor: a soft short is ``|d2V| > noise_factor *`` the healthy median ``|d2V|``.
        min_points: consecutive samples a signature must last (rejects single glitches).
        reference_points: samples at the start of the first step used for ``R_ref``, and
            samples at the start of every step skipped by the noise test (the step edge itself
            moves the voltage).
    """
    if not (area_cm2 and area_cm2 > 0):
        raise CCDError(f"area_cm2 must be positive, got {area_cm2!r}")
    needed = ("test_time_second", "voltage_volt", "current_ampere")
    missing = [c for c in needed if c not in samples.columns]
    if missing:
        raise CCDError(f"CCD: missing column(s) {missing}; have {samples.columns}")
    if "channel" in samples.columns and samples["channel"].n_unique() > 1:
        raise CCDError("CCD: the frame holds several channels; filter one channel first")
    file_steps = [c for c in ("step_count", "step_index") if c in samples.columns]
    df = (
        samples.select(*needed, *file_steps)
        .drop_nulls(needed)
        .filter(pl.all_horizontal(pl.col(needed).is_finite()))
    )
    file_step_values = {c: df[c].to_numpy() for c in file_steps}
    t = df["test_time_second"].to_numpy()
    v = df["voltage_volt"].to_numpy()
    i = df["current_ampere"].to_numpy()
    ids = _steps(i, step_tolerance_ampere, step_tolerance_fraction, rest_current_ampere)
    n_steps = int(ids.max()) + 1 if ids.size else 0
    if n_steps == 0:
        raise CCDError("CCD: no current steps found (is the current column all zero?)")

    rows: list[dict[str, Any]] = []
    r_ok: list[float] = []
    dv_ok: list[np.ndarray] = []
    short: tuple[int, float, str] | None = None
    cumulative_mah_cm2 = 0.0
    for s in range(n_steps):
        idx = np.flatnonzero(ids == s)
        ts, vs, cs = t[idx], v[idx], i[idx]
        j_ma_cm2 = float(np.median(np.abs(cs))) * 1000.0 / area_cm2
        r_step = np.abs(vs / cs)
        r_ref = (
            float(np.median(r_ok)) if r_ok else float(np.median(r_step[: max(reference_points, 1)]))
        )
        collapse_at = _first_run(r_step < collapse_fraction * r_ref, min_points)
        noise_at = None
        if dv_ok and idx.size > reference_points + min_points:
            dv_typ = float(np.median(np.concatenate(dv_ok)))
            dv = np.abs(np.diff(vs[reference_points:], n=2))
            if dv_typ > 0:
                k = _first_run(dv > noise_factor * dv_typ, min_points)
                # d2[k] spans samples k..k+2 (after the skipped head): the newest carries it.
                noise_at = None if k is None else k + reference_points + 2
        found = ((collapse_at, "collapse"), (noise_at, "noise"))
        hits = [(k, m) for k, m in found if k is not None]
        end = min(hits)[0] + 1 if hits else idx.size  # charge passed up to the short
        q_mah_cm2 = _areal_capacity(ts[:end], cs[:end], area_cm2)
        cumulative_mah_cm2 += q_mah_cm2
        row = {
            "step": s,
            "current_ampere": float(np.median(cs)),
            "current_density_milliampere_per_square_centimeter": j_ma_cm2,
            "test_time_start_second": float(ts[0]),
            "test_time_end_second": float(ts[-1]),
            "median_polarisation_volt": float(np.median(np.abs(vs))),
            "resistance_ohm": float(np.median(r_step)),
            "shorted": bool(hits),
            "areal_capacity_milliampere_hour_per_square_centimeter": q_mah_cm2,
            "cumulative_areal_capacity_milliampere_hour_per_square_centimeter": cumulative_mah_cm2,
        }
        for c, values in file_step_values.items():  # the file's own step numbers, for lookup
            row[c] = int(values[idx[0]])
        rows.append(row)
        if hits:
            k, mech = min(hits)
            short = (s, float(ts[k]), mech)
            break
        r_ok.append(float(np.median(r_step)))
        if idx.size > reference_points + 2:
            dv_ok.append(np.abs(np.diff(vs[reference_points:], n=2)))

    steps = pl.DataFrame(rows)
    completed = steps.filter(~pl.col("shorted"))
    short_j = None
    if short is not None:
        short_j = rows[short[0]]["current_density_milliampere_per_square_centimeter"]
        # A level counts only if it completed below the shorting density (a plating step at
        # the shorting level that passed does not raise the CCD to that level).
        completed = completed.filter(
            pl.col("current_density_milliampere_per_square_centimeter") < short_j * 0.999
        )
    ccd = (
        float(completed["current_density_milliampere_per_square_centimeter"].max())
        if completed.height
        else None
    )
    return CCDResult(
        ccd_milliampere_per_square_centimeter=ccd,
        shorted=short is not None,
        short_current_density_milliampere_per_square_centimeter=short_j,
        short_step=None if short is None else short[0],
        short_time_second=None if short is None else short[1],
        mechanism=None if short is None else short[2],
        area_cm2=float(area_cm2),
        steps=steps,
        cumulative_areal_capacity_milliampere_hour_per_square_centimeter=cumulative_mah_cm2,
    )


def _areal_capacity(t: np.ndarray, i: np.ndarray, area_cm2: float) -> float:
    """integral |I| dt / area over consecutive samples (trapezoidal), mAh/cm2."""
    if t.size < 2:
        return 0.0
    a = np.abs(i)
    return float(np.sum(0.5 * (a[1:] + a[:-1]) * np.diff(t))) / 3.6 / area_cm2
