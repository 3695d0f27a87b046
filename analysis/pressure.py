"""Stack pressure as an analysis variable: interface ASR against pressure, pressure per cycle.

**Power law.** Solid-state interfaces lose contact area as stack pressure falls; their
area-specific resistance is commonly described by ``ASR = ASR_1 p^-m`` (``ASR_1``: the ASR at
1 MPa; literature reports ``m`` around 0.5 for lithium and sulfide interfaces). The fit is a
weighted least-squares straight line of ``ln ASR`` against ``ln p``: weights ``1 / (s_ASR /
ASR)^2`` where standard errors are given, equal otherwise. Reported: ``m`` and ``ASR_1`` with
standard errors and a confidence interval (Student t with ``n - 2`` degrees of freedom; with
unweighted points the residual scatter sets the errors; with given errors they are scaled by the
reduced chi-square when it exceeds 1), ``ASR`` at a reference pressure, R^2 and n.

**Per cycle.** :func:`pressure_by_cycle` gives each cycle's median, minimum and maximum stack
pressure from the samples' ``pressure_megapascal`` (a force gauge or a press logs it with every
sample), to join to the cycle summary (capacity against pressure).

Units: pressure in MPa, ASR in ohm cm^2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
from scipy import stats

from cellbench.core.errors import CellbenchError

PRESSURE = "pressure_megapascal"
CYCLE = "cycle_count"


class PressureError(CellbenchError, ValueError):
    """Inputs the pressure analyses cannot use."""


@dataclass(frozen=True)
class PowerLawFit:
    """``ASR = asr_1mpa * p^-exponent``, with uncertainties."""

    exponent: float
    exponent_stderr: float
    exponent_interval: tuple[float, float]
    asr_1mpa_ohm_cm2: float
    asr_1mpa_stderr_ohm_cm2: float
    reference_pressure_megapascal: float
    asr_at_reference_ohm_cm2: float
    r2: float
    n: int
    confidence: float
    weighted: bool

    def predict(self, pressure_megapascal: np.ndarray | float) -> np.ndarray:
        """ASR / ohm cm^2 at these pressures."""
        return self.asr_1mpa_ohm_cm2 * np.asarray(pressure_megapascal, float) ** -self.exponent

    def to_dict(self) -> dict:
        return asdict(self)


def fit_asr_pressure(
    pressure_megapascal: Sequence[float] | np.ndarray,
    asr_ohm_cm2: Sequence[float] | np.ndarray,
    *,
    asr_stderr_ohm_cm2: Sequence[float] | np.ndarray | None = None,
    reference_pressure_megapascal: float = 10.0,
    confidence: float = 0.95,
) -> PowerLawFit:
    """Fit ``ASR = ASR_1 p^-m`` (module docstring). Needs at least three points at two or more
    distinct positive pressures."""
    p = np.asarray(pressure_megapascal, dtype=float)
    y = np.asarray(asr_ohm_cm2, dtype=float)
    if p.shape != y.shape or p.ndim != 1:
        raise PressureError(f"pressures ({p.shape}) and ASRs ({y.shape}) must be 1-D, same length")
    if not (np.all(np.isfinite(p)) and np.all(p > 0) and np.all(np.isfinite(y)) and np.all(y > 0)):
        raise PressureError("pressures and ASRs must be positive finite numbers")
    if p.size < 3 or np.unique(p).size < 2:
        raise PressureError(
            f"a power law needs at least 3 points at 2 or more pressures, got {p.size} points at "
            f"{np.unique(p).size} pressure(s)"
        )
    if not 0 < confidence < 1:
        raise PressureError(f"confidence must lie between 0 and 1, got {confidence!r}")
    if not reference_pressure_megapascal > 0:
        raise PressureError("reference_pressure_megapascal must be positive")
    x, ly = np.log(p), np.log(y)
    weighted = asr_stderr_ohm_cm2 is not None
    if weighted:
        s = np.asarray(asr_stderr_ohm_cm2, dtype=float)
        if s.shape != y.shape or not np.all(s > 0):
            raise PressureError("asr_stderr_ohm_cm2 must be positive, one per point")
        w = (y / s) ** 2  # 1 / var(ln ASR)
    else:
        w = np.ones_like(x)
    design = np.column_stack([np.ones_like(x), x])
    wd = design * np.sqrt(w)[:, None]
    wy = ly * np.sqrt(w)
    coef, *_ = np.linalg.lstsq(wd, wy, rcond=None)
    resid = ly - design @ coef
    dof = p.size - 2
    chi2 = float(np.sum(w * resid**2))
    cov = np.linalg.inv(wd.T @ wd)
    if weighted:
        cov = cov * max(1.0, chi2 / dof) if dof > 0 else cov
    else:
        cov = cov * (chi2 / dof if dof > 0 else math.nan)
    intercept, slope = float(coef[0]), float(coef[1])
    se_slope = math.sqrt(cov[1, 1]) if math.isfinite(cov[1, 1]) else math.nan
    se_int = math.sqrt(cov[0, 0]) if math.isfinite(cov[0, 0]) else math.nan
    tq = float(stats.t.ppf(0.5 + confidence / 2, dof)) if dof > 0 else math.nan
    m = -slope
    asr1 = math.exp(intercept)
    ss_tot = float(np.sum(w * (ly - np.average(ly, weights=w)) ** 2))
    return PowerLawFit(
        exponent=m,
        exponent_stderr=se_slope,
        exponent_interval=(m - tq * se_slope, m + tq * se_slope),
        asr_1mpa_ohm_cm2=asr1,
        asr_1mpa_stderr_ohm_cm2=asr1 * se_int,
        reference_pressure_megapascal=float(reference_pressure_megapascal),
        asr_at_reference_ohm_cm2=asr1 * reference_pressure_megapascal**-m,
        r2=1.0 - chi2 / ss_tot if ss_tot > 0 else math.nan,
        n=int(p.size),
        confidence=confidence,
        weighted=weighted,
    )


def pressure_by_cycle(samples: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Per cycle: ``pressure_median_megapascal``, ``pressure_min_megapascal``,
    ``pressure_max_megapascal`` (NaN and null readings left out). Joins to
    :func:`cellbench.analysis.cycling.cycle_summary` on ``cycle_count`` (and ``channel``)."""
    lf = samples.lazy()
    cols = lf.collect_schema().names()
    missing = [c for c in (CYCLE, PRESSURE) if c not in cols]
    if missing:
        raise PressureError(f"pressure by cycle: missing column(s) {missing}; have {cols}")
    keys = [c for c in ("channel", CYCLE) if c in cols]
    p = pl.col(PRESSURE).cast(pl.Float64).fill_nan(None)
    return (
        lf.filter(pl.col(CYCLE).is_not_null())
        .group_by(keys)
        .agg(
            p.median().alias("pressure_median_megapascal"),
            p.min().alias("pressure_min_megapascal"),
            p.max().alias("pressure_max_megapascal"),
        )
        .sort(keys)
        .collect()
    )


@dataclass(frozen=True)
class OffsetPowerLawFit:
    """``R = r_offset + r_1mpa * p^-exponent``: a pressure-independent part (series, bulk,
    grain boundary) plus an interface that follows the power law; standard errors from the
    Jacobian (scaled by the residual variance)."""

    r_offset_ohm: float
    r_offset_stderr_ohm: float
    exponent: float
    exponent_stderr: float
    r_1mpa_ohm: float
    r_1mpa_stderr_ohm: float
    asr_1mpa_ohm_cm2: float | None  # r_1mpa x area / interfaces, where the area is given
    rms_ohm: float
    n: int

    def predict(self, pressure_megapascal: np.ndarray | float) -> np.ndarray:
        p = np.asarray(pressure_megapascal, float)
        return self.r_offset_ohm + self.r_1mpa_ohm * p**-self.exponent

    def to_dict(self) -> dict:
        return asdict(self)


def fit_resistance_pressure(
    pressure_megapascal: Sequence[float] | np.ndarray,
    resistance_ohm: Sequence[float] | np.ndarray,
    *,
    area_cm2: float | None = None,
    interfaces: int = 1,
) -> OffsetPowerLawFit:
    """Fit ``R = R_0 + R_1 p^-m`` to total resistances (e.g. the ohmic R of pulses at each
    pressure), which need no bulk subtraction: the pressure-independent part is ``R_0``. Needs
    at least four points at three or more pressures (three parameters)."""
    from scipy.optimize import least_squares

    p = np.asarray(pressure_megapascal, dtype=float)
    r = np.asarray(resistance_ohm, dtype=float)
    if p.shape != r.shape or p.ndim != 1:
        raise PressureError("pressures and resistances must be 1-D and of the same length")
    if not (np.all(np.isfinite(p)) and np.all(p > 0) and np.all(np.isfinite(r))):
        raise PressureError("pressures must be positive and resistances finite")
    if p.size < 4 or np.unique(p).size < 3:
        raise PressureError(
            f"R = R_0 + R_1 p^-m needs at least 4 points at 3 or more pressures, got {p.size} "
            f"points at {np.unique(p).size} pressure(s)"
        )
    lp = np.log(p)

    def resid(x: np.ndarray) -> np.ndarray:
        r0, ln_r1, m = x
        return r0 + np.exp(ln_r1 - m * lp) - r

    best = None
    for m0 in (0.3, 0.6, 1.0):
        span = max(float(np.ptp(r)), 1e-12)
        r1_0 = span / max(float(np.ptp(p**-m0)), 1e-12)
        r0_0 = float(np.min(r)) - r1_0 * float(np.max(p)) ** -m0
        sol = least_squares(resid, [r0_0, math.log(r1_0), m0], method="lm")
        if best is None or sol.cost < best.cost:
            best = sol
    assert best is not None
    r0, ln_r1, m = (float(v) for v in best.x)
    dof = p.size - 3
    s2 = float(best.fun @ best.fun) / dof if dof > 0 else math.nan
    try:
        cov = np.linalg.inv(best.jac.T @ best.jac) * s2
        se = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        se = np.full(3, math.inf)
    r1 = math.exp(ln_r1)
    return OffsetPowerLawFit(
        r_offset_ohm=r0,
        r_offset_stderr_ohm=float(se[0]),
        exponent=m,
        exponent_stderr=float(se[2]),
        r_1mpa_ohm=r1,
        r_1mpa_stderr_ohm=r1 * float(se[1]),
        asr_1mpa_ohm_cm2=None if area_cm2 is None else r1 * area_cm2 / interfaces,
        rms_ohm=float(np.sqrt(np.mean(best.fun**2))),
        n=int(p.size),
    )
