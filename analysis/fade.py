"""Capacity fade and end of life; growth of interface resistance.

Retention ``q`` (a fraction of a reference capacity) against cycle number ``n`` is fitted with:

* ``linear``       q = a - b n
* ``sqrt``         q = a - b sqrt(n)              (SEI-like, diffusion-limited growth)
* ``power``        q = a - b n^z
* ``exponential``  q = a exp(-k n)
* ``knee``         q = a - b1 n - (b2 - b1) max(0, n - n_knee)   (two-stage: a continuous
  bilinear model whose breakpoint ``n_knee`` is the knee, as in Diao et al. and Fermín-Cueto et
  al.; found by profiling ``n_knee`` on a grid, then refined with the slopes)

Every fit is nonlinear least squares (scipy ``least_squares``); standard errors come from the
Jacobian, ``cov = s^2 (J^T J)^-1`` with ``s^2 = RSS / (n - p)``. Models are ranked by AIC or BIC.

End of life (cycles to a retention ``threshold``, 0.8 by default) is where the fitted curve
crosses the threshold. Its uncertainty is propagated by the delta method from the parameter
covariance (``Var n* = g Σ g^T`` with ``g = dn*/dθ`` by central differences): that is the
*confidence* interval of the mean curve's crossing. The *prediction* interval adds the scatter
of one measurement, ``s^2 / q'(n*)^2``, and is the range in which the measured retention of this
cell should cross. Both use Student's t with ``n - p`` degrees of freedom. Extrapolating far
beyond the data trusts the model form; the interval cannot cover a change of mechanism (a knee)
that the data have not shown yet.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl
from scipy import optimize, stats

from cellbench.core.errors import CellbenchError

Criterion = Literal["aic", "bic"]


class FadeError(CellbenchError):
    """Fade or growth data cannot be fitted (too few points, bad columns)."""


@dataclass(frozen=True)
class _Model:
    name: str
    params: tuple[str, ...]
    f: Callable[[np.ndarray, np.ndarray], np.ndarray]
    guess: Callable[[np.ndarray, np.ndarray], np.ndarray]
    lower: tuple[float, ...]
    upper: tuple[float, ...]


def _lin(g: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Least squares y = c0 + c1 g; returns (c, rss)."""
    design = np.column_stack([np.ones_like(g), g])
    c, *_ = np.linalg.lstsq(design, y, rcond=None)
    r = y - design @ c
    return c, float(r @ r)


def _power_guess(x: np.ndarray, y: np.ndarray, sign: float) -> np.ndarray:
    best: tuple[float, np.ndarray] | None = None
    for z in np.geomspace(0.2, 4.0, 40):
        c, rss = _lin(x**z, y)
        if best is None or rss < best[0]:
            best = (rss, np.array([c[0], sign * c[1], z]))
    assert best is not None
    return best[1]


def _knee_design(x: np.ndarray, nk: float) -> np.ndarray:
    return np.column_stack([np.ones_like(x), -x, -np.maximum(0.0, x - nk)])


def _knee_range(x: np.ndarray) -> tuple[float, float]:
    """Where a knee may lie: inside the central 90 % of the cycles, with at least three points
    on each side (a knee at the last point is one outlier, not a change of mechanism)."""
    q_lo, q_hi = np.quantile(x, [0.05, 0.95])
    lo, hi = max(float(q_lo), float(x[2])), min(float(q_hi), float(x[-3]))
    return (lo, hi) if hi > lo else (float(x[2]), max(float(x[-3]), float(x[2]) + 1e-9))


def _knee_profile(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RSS of the bilinear model for each candidate knee on a grid inside the data."""
    lo, hi = _knee_range(x)
    grid = np.linspace(lo, hi, 200)
    rss = np.empty_like(grid)
    for k, nk in enumerate(grid):
        design = _knee_design(x, nk)
        c, *_ = np.linalg.lstsq(design, y, rcond=None)
        r = y - design @ c
        rss[k] = r @ r
    return grid, rss


def _knee_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    grid, rss = _knee_profile(x, y)
    nk = float(grid[int(np.argmin(rss))])
    c, *_ = np.linalg.lstsq(_knee_design(x, nk), y, rcond=None)
    # parameters a, b1, b2, n_knee  (b2 = b1 + c[2])
    return np.array([c[0], c[1], c[1] + c[2], nk])


_INF = math.inf

RETENTION_MODELS: dict[str, _Model] = {
    m.name: m
    for m in (
        _Model(
            "linear",
            ("a", "b"),
            lambda x, p: p[0] - p[1] * x,
            lambda x, y: (lambda c: np.array([c[0], -c[1]]))(_lin(x, y)[0]),
            (-_INF, -_INF),
            (_INF, _INF),
        ),
        _Model(
            "sqrt",
            ("a", "b"),
            lambda x, p: p[0] - p[1] * np.sqrt(x),
            lambda x, y: (lambda c: np.array([c[0], -c[1]]))(_lin(np.sqrt(x), y)[0]),
            (-_INF, -_INF),
            (_INF, _INF),
        ),
        _Model(
            "power",
            ("a", "b", "z"),
            lambda x, p: p[0] - p[1] * np.power(x, p[2]),
            lambda x, y: _power_guess(x, y, -1.0),
            (-_INF, -_INF, 0.05),
            (_INF, _INF, 10.0),
        ),
        _Model(
            "exponential",
            ("a", "k"),
            lambda x, p: p[0] * np.exp(-p[1] * x),
            lambda x, y: (lambda c: np.array([math.exp(c[0]), -c[1]]))(
                _lin(x, np.log(np.clip(y, 1e-9, None)))[0]
            ),
            (0.0, -_INF),
            (_INF, _INF),
        ),
        _Model(
            "knee",
            ("a", "b1", "b2", "n_knee"),
            lambda x, p: p[0] - p[1] * x - (p[2] - p[1]) * np.maximum(0.0, x - p[3]),
            _knee_guess,
            (-_INF, -_INF, -_INF, -_INF),
            (_INF, _INF, _INF, _INF),
        ),
    )
}

GROWTH_MODELS: dict[str, _Model] = {
    m.name: m
    for m in (
        _Model(
            "linear",
            ("r0", "k"),
            lambda x, p: p[0] + p[1] * x,
            lambda x, y: _lin(x, y)[0],
            (-_INF, -_INF),
            (_INF, _INF),
        ),
        _Model(
            "sqrt",
            ("r0", "k"),
            lambda x, p: p[0] + p[1] * np.sqrt(x),
            lambda x, y: _lin(np.sqrt(x), y)[0],
            (-_INF, -_INF),
            (_INF, _INF),
        ),
        _Model(
            "power",
            ("r0", "k", "z"),
            lambda x, p: p[0] + p[1] * np.power(x, p[2]),
            lambda x, y: _power_guess(x, y, 1.0),
            (-_INF, -_INF, 0.05),
            (_INF, _INF, 10.0),
        ),
    )
}


@dataclass(frozen=True)
class CurveFit:
    """One fitted model: parameter values, standard errors, covariance and information criteria."""

    model: str
    kind: str  # "retention" or "growth"
    parameters: dict[str, float]
    stderr: dict[str, float]
    covariance: np.ndarray = field(repr=False)
    n_points: int = 0
    rss: float = math.nan
    residual_std: float = math.nan  # s = sqrt(RSS / (n - p)) in units of y
    aic: float = math.nan
    bic: float = math.nan
    x_max: float = math.nan  # largest x fitted: predictions beyond it extrapolate

    @property
    def dof(self) -> int:
        return self.n_points - len(self.parameters)

    def predict(self, x: float | np.ndarray) -> np.ndarray:
        m = (RETENTION_MODELS if self.kind == "retention" else GROWTH_MODELS)[self.model]
        return m.f(np.asarray(x, dtype=float), np.array(list(self.parameters.values())))

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "parameters": {
                k: {"value": v, "stderr": self.stderr[k]} for k, v in self.parameters.items()
            },
            "n_points": self.n_points,
            "rss": self.rss,
            "residual_std": self.residual_std,
            "aic": self.aic,
            "bic": self.bic,
        }


def _check_xy(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, what: str):
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise FadeError(f"{what}: x and y must be 1-D of equal length, got {xa.shape}, {ya.shape}")
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    order = np.argsort(xa, kind="stable")
    return xa[order], ya[order]


def _fit(
    m: _Model, kind: str, x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None
) -> CurveFit:
    n, p = x.size, len(m.params)
    if n < p + 1:
        raise FadeError(f"{m.name} model needs at least {p + 1} points, got {n}")
    w = np.ones_like(y) if w is None else w
    p0 = np.asarray(m.guess(x, y), dtype=float)
    p0 = np.clip(p0, np.array(m.lower) + 1e-9, np.array(m.upper) - 1e-9)
    lower, upper = list(m.lower), list(m.upper)
    if m.name == "knee":
        lower[3], upper[3] = _knee_range(x)
        p0[3] = float(np.clip(p0[3], lower[3], upper[3]))

    def resid(theta: np.ndarray) -> np.ndarray:
        return (m.f(x, theta) - y) * w

    with np.errstate(over="ignore", invalid="ignore"):
        sol = optimize.least_squares(
            resid, p0, bounds=(lower, upper), x_scale="jac", method="trf", max_nfev=2000
        )
        theta = sol.x
        if m.name == "knee":
            # The breakpoint's derivative is piecewise: polish by re-profiling near the optimum.
            theta = _refine_knee(x, y, w, theta)
        r = resid(theta)
        jac = _jacobian(resid, theta)
    rss = float(r @ r)
    dof = n - p
    s2 = rss / dof
    cov = s2 * _inv_normal(jac)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    ll_term = n * math.log(max(rss, 1e-300) / n)
    return CurveFit(
        model=m.name,
        kind=kind,
        parameters=dict(zip(m.params, map(float, theta), strict=True)),
        stderr=dict(zip(m.params, map(float, se), strict=True)),
        covariance=cov,
        n_points=n,
        rss=rss,
        residual_std=math.sqrt(s2),
        aic=ll_term + 2 * p,
        bic=ll_term + p * math.log(n),
        x_max=float(x.max()),
    )


def _refine_knee(x: np.ndarray, y: np.ndarray, w: np.ndarray, theta: np.ndarray) -> np.ndarray:
    best = theta
    best_rss = float(np.sum(((RETENTION_MODELS["knee"].f(x, theta) - y) * w) ** 2))
    span = (x.max() - x.min()) / 100
    lo, hi = _knee_range(x)
    for nk in np.clip(np.linspace(theta[3] - span, theta[3] + span, 41), lo, hi):
        design = _knee_design(x, nk) * w[:, None]
        c, *_ = np.linalg.lstsq(design, y * w, rcond=None)
        cand = np.array([c[0], c[1], c[1] + c[2], nk])
        rss = float(np.sum(((RETENTION_MODELS["knee"].f(x, cand) - y) * w) ** 2))
        if rss < best_rss:
            best, best_rss = cand, rss
    return best


def _inv_normal(jac: np.ndarray) -> np.ndarray:
    """(J^T J)^-1 with the columns equilibrated first: parameters of very different size (a
    power-law prefactor of 1e-14 beside an exponent of 4) otherwise lose all precision."""
    scale = np.linalg.norm(jac, axis=0)
    scale[scale == 0] = 1.0
    js = jac / scale
    try:
        inv = np.linalg.inv(js.T @ js)
    except np.linalg.LinAlgError:
        return np.full((jac.shape[1],) * 2, np.inf)
    return inv / np.outer(scale, scale)


def _jacobian(fun: Callable[[np.ndarray], np.ndarray], theta: np.ndarray) -> np.ndarray:
    cols = []
    for j in range(theta.size):
        h = 1e-6 * max(abs(theta[j]), 1e-3)
        tp, tm = theta.copy(), theta.copy()
        tp[j] += h
        tm[j] -= h
        cols.append((fun(tp) - fun(tm)) / (2 * h))
    return np.column_stack(cols)


def fit_retention(
    cycles: Sequence[float] | np.ndarray,
    retention: Sequence[float] | np.ndarray,
    *,
    models: Sequence[str] = tuple(RETENTION_MODELS),
    criterion: Criterion = "bic",
) -> list[CurveFit]:
    """Fit retention (fraction) against cycle number with each model; best ``criterion`` first.

    Models that need more points than given are skipped; the knee model needs at least 8.
    """
    x, y = _check_xy(cycles, retention, "retention")
    if x.size < 3:
        raise FadeError(f"need at least 3 cycles with finite retention, got {x.size}")
    fits = []
    for name in models:
        if name not in RETENTION_MODELS:
            raise FadeError(f"unknown retention model {name!r}; one of {list(RETENTION_MODELS)}")
        m = RETENTION_MODELS[name]
        if x.size < max(len(m.params) + 2, 8 if name == "knee" else 0):
            continue
        fits.append(_fit(m, "retention", x, y))
    if not fits:
        raise FadeError(f"too few cycles ({x.size}) for the models {list(models)}")
    return _rank(fits, criterion)


def _rank(fits: list[CurveFit], criterion: Criterion) -> list[CurveFit]:
    if criterion not in ("aic", "bic"):
        raise FadeError(f"criterion must be 'aic' or 'bic', got {criterion!r}")
    return sorted(fits, key=lambda f: getattr(f, criterion))


@dataclass(frozen=True)
class EndOfLife:
    """Cycles until the fitted retention reaches ``threshold``, with intervals (None: not
    reached within ``horizon`` cycles)."""

    model: str
    threshold: float
    cycles: float | None
    confidence_interval: tuple[float, float] | None
    prediction_interval: tuple[float, float] | None
    confidence: float
    fitted_cycles: int  # the number of cycles the fit used
    extrapolated: bool  # the crossing lies beyond the last fitted cycle

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "threshold": self.threshold,
            "cycles": self.cycles,
            "confidence_interval": list(self.confidence_interval)
            if self.confidence_interval
            else None,
            "prediction_interval": list(self.prediction_interval)
            if self.prediction_interval
            else None,
            "confidence": self.confidence,
            "fitted_cycles": self.fitted_cycles,
            "extrapolated": self.extrapolated,
        }


def _crossing(f: Callable[[np.ndarray], np.ndarray], level: float, lo: float, hi: float):
    """First x in [lo, hi] where f falls to ``level`` (f decreasing there), else None."""
    grid = np.unique(
        np.concatenate([np.linspace(lo, hi, 200), np.geomspace(max(lo, 1.0), hi, 400)])
    )
    with np.errstate(over="ignore", invalid="ignore"):
        vals = f(grid) - level
    below = np.nonzero(vals <= 0)[0]
    if below.size == 0:
        return None
    k = int(below[0])
    if k == 0:
        return float(grid[0])
    root = optimize.brentq(lambda t: float(f(np.array([t]))[0] - level), grid[k - 1], grid[k])
    return float(root)


def end_of_life(
    fit: CurveFit,
    threshold: float = 0.8,
    *,
    confidence: float = 0.95,
    horizon: float | None = None,
) -> EndOfLife:
    """Cycles to ``threshold`` retention from a retention fit, by the delta method (see module).

    Args:
        fit: a ``retention`` :class:`CurveFit`.
        threshold: retention fraction that ends life (0.8: 80 % of the reference capacity).
        confidence: two-sided level of the intervals.
        horizon: largest cycle number searched (default 100 times the last fitted cycle).
    """
    if fit.kind != "retention":
        raise FadeError("end_of_life needs a retention fit")
    if not 0 < threshold < 1:
        raise FadeError(f"threshold is a retention fraction in (0, 1), got {threshold!r}")
    if not 0 < confidence < 1:
        raise FadeError(f"confidence must lie in (0, 1), got {confidence!r}")
    m = RETENTION_MODELS[fit.model]
    theta = np.array(list(fit.parameters.values()))
    hi = float(horizon) if horizon else 100.0 * max(fit.x_max, 1.0)
    lo = 0.0

    def solve(th: np.ndarray) -> float | None:
        return _crossing(lambda x: m.f(x, th), threshold, lo, hi)

    n_star = solve(theta)
    base = dict(
        model=fit.model,
        threshold=threshold,
        confidence=confidence,
        fitted_cycles=fit.n_points,
    )
    if n_star is None:
        return EndOfLife(
            cycles=None,
            confidence_interval=None,
            prediction_interval=None,
            extrapolated=True,
            **base,
        )
    grad = np.zeros(theta.size)
    ok = True
    for j in range(theta.size):
        h = 1e-4 * max(abs(theta[j]), 1e-4)
        tp, tm = theta.copy(), theta.copy()
        tp[j] += h
        tm[j] -= h
        a, b = solve(tp), solve(tm)
        if a is None or b is None:
            ok = False
            break
        grad[j] = (a - b) / (2 * h)
    dq = 1e-3 * max(n_star, 1.0)
    slope = float((m.f(np.array([n_star + dq]), theta) - m.f(np.array([n_star - dq]), theta))[0])
    slope /= 2 * dq
    tq = float(stats.t.ppf(0.5 + confidence / 2, max(fit.dof, 1)))
    if ok and np.all(np.isfinite(fit.covariance)):
        var_mean = float(grad @ fit.covariance @ grad)
        var_pred = var_mean + (fit.residual_std / slope) ** 2 if slope else math.inf
        ci = (n_star - tq * math.sqrt(var_mean), n_star + tq * math.sqrt(var_mean))
        pi = (n_star - tq * math.sqrt(var_pred), n_star + tq * math.sqrt(var_pred))
    else:  # the crossing vanishes for nearby parameters: the interval is unbounded
        ci = pi = (0.0, math.inf)
    return EndOfLife(
        cycles=n_star,
        confidence_interval=(max(ci[0], 0.0), ci[1]),
        prediction_interval=(max(pi[0], 0.0), pi[1]),
        extrapolated=n_star > fit.x_max,
        **base,
    )


@dataclass(frozen=True)
class Knee:
    """The knee of a two-stage fade: where the fade rate changes from ``slope_before`` to
    ``slope_after`` (retention per cycle, negative for fade)."""

    cycle: float
    stderr: float
    confidence_interval: tuple[float, float]
    slope_before: float
    slope_after: float
    significant: bool  # the two-stage model beats every one-stage model and the fade speeds up

    def to_dict(self) -> dict[str, Any]:
        return {
            "cycle": self.cycle,
            "stderr": self.stderr,
            "confidence_interval": list(self.confidence_interval),
            "slope_before": self.slope_before,
            "slope_after": self.slope_after,
            "significant": self.significant,
        }


def detect_knee(
    cycles: Sequence[float] | np.ndarray,
    retention: Sequence[float] | np.ndarray,
    *,
    criterion: Criterion = "bic",
    confidence: float = 0.95,
    fits: Sequence[CurveFit] | None = None,
) -> Knee | None:
    """The knee from the two-stage fit; None with fewer than 8 cycles.

    ``significant`` is True when the knee model has the best ``criterion`` of all retention
    models, the fade after the knee is faster than before it, the knee's position is
    determined (finite standard error), and all of that still holds without the last cycle
    (one low last point, a test cut short, is not a change of mechanism).
    """
    x, y = _check_xy(cycles, retention, "retention")
    fits = list(fits) if fits is not None else fit_retention(x, y, criterion=criterion)
    knee = next((f for f in fits if f.model == "knee"), None)
    if knee is None:
        return None
    best = min(fits, key=lambda f: getattr(f, criterion))
    p, se = knee.parameters, knee.stderr
    tq = float(stats.t.ppf(0.5 + confidence / 2, max(knee.dof, 1)))
    significant = best.model == "knee" and p["b2"] > p["b1"] and math.isfinite(se["n_knee"])
    if significant and x.size > 9:
        again = fit_retention(x[:-1], y[:-1], models=[f.model for f in fits], criterion=criterion)
        refit = again[0].parameters
        significant = again[0].model == "knee" and refit["b2"] > refit["b1"]
    return Knee(
        cycle=p["n_knee"],
        stderr=se["n_knee"],
        confidence_interval=(p["n_knee"] - tq * se["n_knee"], p["n_knee"] + tq * se["n_knee"]),
        slope_before=-p["b1"],
        slope_after=-p["b2"],
        significant=bool(significant),
    )


@dataclass(frozen=True)
class FadeReport:
    """Everything :func:`analyze_fade` found: ranked fits, the chosen one, knee and end of life."""

    fits: list[CurveFit]
    best: CurveFit
    criterion: str
    knee: Knee | None
    end_of_life: EndOfLife
    first_n: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "best_model": self.best.model,
            "first_n": self.first_n,
            "fits": [f.to_dict() for f in self.fits],
            "knee": self.knee.to_dict() if self.knee else None,
            "end_of_life": self.end_of_life.to_dict(),
        }


def analyze_fade(
    cycles: Sequence[float] | np.ndarray,
    retention: Sequence[float] | np.ndarray,
    *,
    threshold: float = 0.8,
    first_n: int | None = None,
    criterion: Criterion = "bic",
    confidence: float = 0.95,
    models: Sequence[str] = tuple(RETENTION_MODELS),
) -> FadeReport:
    """Fit every model, pick the best by ``criterion``, find the knee, predict end of life.

    Args:
        cycles: cycle numbers.
        retention: capacity retention as a fraction (see :func:`retention_from_summary`).
        threshold: end-of-life retention fraction.
        first_n: use only the first N cycles (early prediction of life).
        criterion: ``"bic"`` (default; penalises the four-parameter knee model more) or ``"aic"``.
    """
    x, y = _check_xy(cycles, retention, "retention")
    if first_n is not None:
        if first_n < 3:
            raise FadeError(f"first_n must be at least 3, got {first_n}")
        x, y = x[:first_n], y[:first_n]
    fits = fit_retention(x, y, models=models, criterion=criterion)
    knee = detect_knee(x, y, criterion=criterion, confidence=confidence, fits=fits)
    best = fits[0]
    if best.model == "knee" and not (knee and knee.significant):
        # A knee model that wins only on a fluke (a knee the fit cannot place) is not trusted
        # for extrapolation: the best one-stage model is.
        best = next((f for f in fits if f.model != "knee"), best)
    return FadeReport(
        fits=fits,
        best=best,
        criterion=criterion,
        knee=knee,
        end_of_life=end_of_life(best, threshold, confidence=confidence),
        first_n=first_n,
    )


def retention_from_summary(
    summary: pl.DataFrame,
    *,
    capacity_column: str = "discharge_capacity_ampere_hour",
    reference: Literal["first", "max"] | int | float = "first",
    drop_incomplete: bool = True,
) -> pl.DataFrame:
    """Add ``capacity_retention`` (fraction) to a per-cycle summary.

    ``reference``: ``"first"`` (first cycle with capacity > 0), ``"max"`` (largest capacity),
    an ``int`` cycle number, or a ``float`` capacity in Ah (e.g. the nominal capacity).
    ``drop_incomplete``: drop cycles without both a charge and a discharge (a test cut short
    mid-cycle, a formation step), when the summary has both capacity columns.
    """
    if capacity_column not in summary.columns or "cycle_count" not in summary.columns:
        raise FadeError(
            f"summary needs columns 'cycle_count' and {capacity_column!r}; has {summary.columns}"
        )
    halves = ("charge_capacity_ampere_hour", "discharge_capacity_ampere_hour")
    if drop_incomplete and all(c in summary.columns for c in halves):
        summary = summary.filter((pl.col(halves[0]) > 0) & (pl.col(halves[1]) > 0))
    cap = summary[capacity_column]
    if isinstance(reference, str):
        positive = summary.filter(pl.col(capacity_column) > 0)
        if positive.is_empty():
            raise FadeError(f"no cycle has {capacity_column} > 0")
        ref = float(positive[capacity_column][0] if reference == "first" else cap.max())
    elif isinstance(reference, int):
        rows = summary.filter(pl.col("cycle_count") == reference)
        if rows.is_empty():
            raise FadeError(f"reference cycle {reference} is not in the summary")
        ref = float(rows[capacity_column][0])
    else:
        ref = float(reference)
    if not ref > 0:
        raise FadeError(f"reference capacity must be positive, got {ref}")
    return summary.with_columns((pl.col(capacity_column) / ref).alias("capacity_retention"))


def fit_growth(
    x: Sequence[float] | np.ndarray,
    resistance: Sequence[float] | np.ndarray,
    stderr: Sequence[float] | np.ndarray | None = None,
    *,
    models: Sequence[str] = tuple(GROWTH_MODELS),
    criterion: Criterion = "aic",
) -> list[CurveFit]:
    """Growth laws R(x) = r0 + k x, r0 + k sqrt(x), r0 + k x^z; best ``criterion`` first.

    ``x`` is a cycle number or a time (any unit; the parameters carry it). With ``stderr`` (the
    standard errors of each R from the EIS fits) the fit is weighted by 1/stderr.
    """
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(resistance, dtype=float)
    wa = None if stderr is None else np.asarray(stderr, dtype=float)
    keep = np.isfinite(xa) & np.isfinite(ya)
    if wa is not None:
        keep &= np.isfinite(wa) & (wa > 0)
    xa, ya = xa[keep], ya[keep]
    w = None if wa is None else 1.0 / wa[keep]
    if xa.size < 3:
        raise FadeError(f"need at least 3 finite resistances, got {xa.size}")
    fits = []
    for name in models:
        if name not in GROWTH_MODELS:
            raise FadeError(f"unknown growth model {name!r}; one of {list(GROWTH_MODELS)}")
        m = GROWTH_MODELS[name]
        if xa.size >= len(m.params) + 1:
            fits.append(_fit(m, "growth", xa, ya, w))
    return _rank(fits, criterion)


def resistance_growth(
    frame: pl.DataFrame,
    *,
    x: str = "cycle_count",
    y: str = "R2",
    y_stderr: str | None = "R2_stderr",
    models: Sequence[str] = tuple(GROWTH_MODELS),
    criterion: Criterion = "aic",
) -> list[CurveFit]:
    """Growth-law fits of an interface resistance from a frame of batch EIS fit parameters.

    Args:
        frame: one row per spectrum, e.g. the batch-fit output, with columns ``x`` (e.g.
            ``cycle_count`` or ``test_time_second``), ``y`` (ohm, or ohm cm2) and optionally
            ``y_stderr``; a missing stderr column means an unweighted fit.
    """
    missing = [c for c in (x, y) if c not in frame.columns]
    if missing:
        raise FadeError(f"resistance frame lacks column(s) {missing}; has {frame.columns}")
    se = frame[y_stderr].to_numpy() if y_stderr and y_stderr in frame.columns else None
    return fit_growth(
        frame[x].cast(pl.Float64).to_numpy(),
        frame[y].cast(pl.Float64).to_numpy(),
        se,
        models=models,
        criterion=criterion,
    )
