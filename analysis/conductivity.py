"""Ionic conductivity against temperature: Arrhenius and Vogel-Tammann-Fulcher (VTF) fits.

Models, with ``T`` in kelvin and ``k`` the Boltzmann constant:

* ``arrhenius``:    sigma = sigma0 * exp(-Ea / (k T))
* ``arrhenius_t``:  sigma * T = A * exp(-Ea / (k T))  (the form hopping theory gives; its Ea is
  about ``k T`` lower than the plain form's over the same data)
* ``vtf``:          sigma = A * T**-0.5 * exp(-B / (T - T0)); the pseudo-activation energy
  ``Ea = k B`` is reported like the others.

All fits are least squares on ``ln(sigma)``: conductivity data span decades, and relative
scatter is what a measurement has. Standard errors come from the covariance of the fit, and
confidence intervals use Student's t with ``n - p`` degrees of freedom, so three or four points
give honest, wide intervals. The conductivity at 25 degC carries a confidence interval from the
same covariance (delta method on ``ln sigma``, exact for the Arrhenius forms).

Temperatures are taken in degC unless ``temperature_unit="kelvin"``. Conductivities are in S/cm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import optimize, stats

from cellbench.core.errors import CellbenchError

BOLTZMANN_EV_PER_K = 8.617333262e-5
KJ_PER_MOL_PER_EV = 96.48533212
ZERO_CELSIUS_K = 273.15

Model = Literal["arrhenius", "arrhenius_t", "vtf"]
MODELS: tuple[Model, ...] = ("arrhenius", "arrhenius_t", "vtf")
TemperatureUnit = Literal["celsius", "kelvin"]


class ConductivityError(CellbenchError):
    """The data cannot be fitted (too few points, non-positive conductivity, bad units)."""


@dataclass(frozen=True)
class ConductivityFit:
    """Result of one temperature-dependence fit. Units in the names; intervals are (low, high)."""

    model: str
    parameters: dict[str, float]
    stderr: dict[str, float]
    activation_energy_ev: float
    activation_energy_ev_ci: tuple[float, float]
    activation_energy_kj_per_mol: float
    activation_energy_kj_per_mol_ci: tuple[float, float]
    conductivity_25c_siemens_per_centimeter: float
    conductivity_25c_ci: tuple[float, float]
    confidence: float
    n_points: int
    rss_log: float  # residual sum of squares of ln(sigma), weighted when errors were given
    aic: float  # small-sample corrected (AICc) where n > p + 1, else plain AIC
    temperature_kelvin: np.ndarray = field(repr=False)
    conductivity_siemens_per_centimeter: np.ndarray = field(repr=False)
    residuals_log: np.ndarray = field(repr=False)

    def predict(self, temperature_kelvin: float | np.ndarray) -> np.ndarray:
        """Conductivity in S/cm at the given temperatures (K)."""
        return np.exp(_log_model(self.model, self.parameters, np.asarray(temperature_kelvin)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: parameters, energies with intervals, sigma(25 degC), fit statistics."""
        return {
            "model": self.model,
            "parameters": {
                k: {"value": v, "stderr": self.stderr[k]} for k, v in self.parameters.items()
            },
            "activation_energy_ev": self.activation_energy_ev,
            "activation_energy_ev_ci": list(self.activation_energy_ev_ci),
            "activation_energy_kj_per_mol": self.activation_energy_kj_per_mol,
            "activation_energy_kj_per_mol_ci": list(self.activation_energy_kj_per_mol_ci),
            "conductivity_25c_siemens_per_centimeter": self.conductivity_25c_siemens_per_centimeter,
            "conductivity_25c_ci": list(self.conductivity_25c_ci),
            "confidence": self.confidence,
            "n_points": self.n_points,
            "rss_log": self.rss_log,
            "aic": self.aic,
        }


def _log_model(model: str, p: dict[str, float], t: np.ndarray) -> np.ndarray:
    """ln(sigma) of a model at temperatures ``t`` (K)."""
    if model == "arrhenius":
        return p["ln_sigma0"] - p["ea_ev"] / (BOLTZMANN_EV_PER_K * t)
    if model == "arrhenius_t":
        return p["ln_a"] - p["ea_ev"] / (BOLTZMANN_EV_PER_K * t) - np.log(t)
    if model == "vtf":
        return p["ln_a"] - 0.5 * np.log(t) - p["b_kelvin"] / (t - p["t0_kelvin"])
    raise ConductivityError(f"unknown model {model!r}; expected one of {MODELS}")


def to_kelvin(temperature: Sequence[float] | np.ndarray, unit: TemperatureUnit) -> np.ndarray:
    """Temperatures as kelvin from degC (``unit="celsius"``) or kelvin."""
    t = np.asarray(temperature, dtype=float)
    if unit == "celsius":
        return t + ZERO_CELSIUS_K
    if unit == "kelvin":
        return t
    raise ConductivityError(f"temperature_unit must be 'celsius' or 'kelvin', got {unit!r}")


def conductivity_from_resistance(
    resistance_ohm: float | np.ndarray, thickness_cm: float, area_cm2: float
) -> np.ndarray:
    """sigma = L / (R A) in S/cm, from a bulk (or total) resistance and the pellet geometry."""
    if not (thickness_cm > 0 and area_cm2 > 0):
        raise ConductivityError(
            f"thickness_cm and area_cm2 must be positive, got {thickness_cm!r}, {area_cm2!r}"
        )
    r = np.asarray(resistance_ohm, dtype=float)
    return thickness_cm / (r * area_cm2)


def _weights(s: np.ndarray, stderr: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """Weights of ln(sigma): 1 / relative standard error (ones without standard errors)."""
    if stderr is None:
        return np.ones_like(s)
    se = np.asarray(stderr, dtype=float)
    if se.shape != s.shape or not np.all(np.isfinite(se)) or np.any(se <= 0):
        raise ConductivityError(
            "conductivity standard errors must be positive, finite and one per point"
        )
    return s / se


def _prepare(
    temperature: Sequence[float] | np.ndarray,
    conductivity: Sequence[float] | np.ndarray,
    unit: TemperatureUnit,
    n_min: int,
) -> tuple[np.ndarray, np.ndarray]:
    t = to_kelvin(temperature, unit)
    s = np.asarray(conductivity, dtype=float)
    if t.shape != s.shape or t.ndim != 1:
        raise ConductivityError(
            f"temperature and conductivity must be 1-D of equal length, got {t.shape}, {s.shape}"
        )
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(s))):
        raise ConductivityError("temperature and conductivity must be finite")
    if np.any(t <= 0):
        raise ConductivityError(
            f"temperatures must be above absolute zero (got min {t.min():.2f} K); "
            "are they in the unit given by temperature_unit?"
        )
    if np.any(s <= 0):
        raise ConductivityError("conductivities must be positive (S/cm)")
    if np.unique(t).size < n_min:
        raise ConductivityError(f"need at least {n_min} distinct temperatures, got {t.size}")
    return t, s


def _aic(rss: float, n: int, p: int) -> float:
    rss = max(rss, 1e-300)
    aic = n * math.log(rss / n) + 2 * p
    if n > p + 1:
        aic += 2 * p * (p + 1) / (n - p - 1)
    return aic


def _finish(
    model: str,
    names: Sequence[str],
    popt: np.ndarray,
    pcov: np.ndarray,
    t: np.ndarray,
    s: np.ndarray,
    confidence: float,
    ea_index: int,
    ea_scale: float,
    grad25: np.ndarray,
    w: np.ndarray,
) -> ConductivityFit:
    p = dict(zip(names, map(float, popt), strict=True))
    resid = np.log(s) - _log_model(model, p, t)
    n, k = t.size, len(names)
    dof = n - k
    rss = float(np.sum((w * resid) ** 2))
    stderr = np.sqrt(np.clip(np.diag(pcov), 0, None))
    tq = float(stats.t.ppf(0.5 + confidence / 2, dof)) if dof > 0 else math.inf
    ea = float(popt[ea_index]) * ea_scale
    ea_se = float(stderr[ea_index]) * ea_scale
    ln25 = float(_log_model(model, p, np.array([25 + ZERO_CELSIUS_K]))[0])
    se25 = float(math.sqrt(max(grad25 @ pcov @ grad25, 0.0)))
    return ConductivityFit(
        model=model,
        parameters=p,
        stderr=dict(zip(names, map(float, stderr), strict=True)),
        activation_energy_ev=ea,
        activation_energy_ev_ci=(ea - tq * ea_se, ea + tq * ea_se),
        activation_energy_kj_per_mol=ea * KJ_PER_MOL_PER_EV,
        activation_energy_kj_per_mol_ci=(
            (ea - tq * ea_se) * KJ_PER_MOL_PER_EV,
            (ea + tq * ea_se) * KJ_PER_MOL_PER_EV,
        ),
        conductivity_25c_siemens_per_centimeter=math.exp(ln25),
        conductivity_25c_ci=(math.exp(ln25 - tq * se25), math.exp(ln25 + tq * se25)),
        confidence=confidence,
        n_points=n,
        rss_log=rss,
        aic=_aic(rss, n, k),
        temperature_kelvin=t,
        conductivity_siemens_per_centimeter=s,
        residuals_log=resid,
    )


def fit_arrhenius(
    temperature: Sequence[float] | np.ndarray,
    conductivity_s_per_cm: Sequence[float] | np.ndarray,
    *,
    temperature_unit: TemperatureUnit = "celsius",
    times_temperature: bool = False,
    confidence: float = 0.95,
    stderr_s_per_cm: Sequence[float] | np.ndarray | None = None,
) -> ConductivityFit:
    """Arrhenius fit; ``times_temperature=True`` fits sigma*T instead of sigma.

    Args:
        temperature: temperatures in degC (default) or K (``temperature_unit="kelvin"``).
        conductivity_s_per_cm: ionic conductivity, S/cm, same length.
        times_temperature: fit ``sigma T = A exp(-Ea/kT)`` (model ``arrhenius_t``).
        confidence: two-sided level of the intervals (0.95: 95 %).
        stderr_s_per_cm: standard errors of the conductivities (S/cm), e.g. from the EIS fits;
            each point is then weighted by 1 / its relative error. The covariance is still
            scaled by the scatter about the fit, so the intervals do not rest on the stated
            errors alone.

    Returns:
        :class:`ConductivityFit` with parameters ``ln_sigma0`` (ln S/cm) or ``ln_a``
        (ln S K/cm), and ``ea_ev``.
    """
    t, s = _prepare(temperature, conductivity_s_per_cm, temperature_unit, 3)
    w = _weights(s, stderr_s_per_cm)
    y = np.log(s) + (np.log(t) if times_temperature else 0.0)
    x = -1.0 / (BOLTZMANN_EV_PER_K * t)
    design = np.column_stack([np.ones_like(x), x]) * w[:, None]
    coef, *_ = np.linalg.lstsq(design, y * w, rcond=None)
    resid = y * w - design @ coef
    dof = t.size - 2
    s2 = float(resid @ resid) / dof if dof > 0 else 0.0
    pcov = s2 * np.linalg.inv(design.T @ design)
    x25 = -1.0 / (BOLTZMANN_EV_PER_K * (25 + ZERO_CELSIUS_K))
    model = "arrhenius_t" if times_temperature else "arrhenius"
    names = ("ln_a", "ea_ev") if times_temperature else ("ln_sigma0", "ea_ev")
    return _finish(model, names, coef, pcov, t, s, confidence, 1, 1.0, np.array([1.0, x25]), w)


def fit_vtf(
    temperature: Sequence[float] | np.ndarray,
    conductivity_s_per_cm: Sequence[float] | np.ndarray,
    *,
    temperature_unit: TemperatureUnit = "celsius",
    confidence: float = 0.95,
    stderr_s_per_cm: Sequence[float] | np.ndarray | None = None,
) -> ConductivityFit:
    """VTF fit ``sigma = A T^-1/2 exp(-B/(T - T0))``; needs at least four temperatures.

    ``T0`` (K) is found by profiling (for fixed ``T0`` the model is linear in ``ln A`` and ``B``),
    then all three are refined together for the covariance. ``T0`` is kept below the lowest
    measured temperature. Parameters: ``ln_a`` (ln S K^0.5/cm), ``b_kelvin``, ``t0_kelvin``;
    the reported activation energy is ``k B``.
    """
    t, s = _prepare(temperature, conductivity_s_per_cm, temperature_unit, 4)
    w = _weights(s, stderr_s_per_cm)
    y = np.log(s) + 0.5 * np.log(t)
    t_min = float(t.min())

    def linear(t0: float) -> tuple[np.ndarray, float]:
        design = np.column_stack([np.ones_like(t), -1.0 / (t - t0)]) * w[:, None]
        coef, *_ = np.linalg.lstsq(design, y * w, rcond=None)
        r = y * w - design @ coef
        return coef, float(r @ r)

    grid = np.linspace(0.0, t_min - 1.0, 400)
    rss = np.array([linear(t0)[1] for t0 in grid])
    t0_start = float(grid[int(np.argmin(rss))])
    coef0, _ = linear(t0_start)

    def f(tk: np.ndarray, ln_a: float, b: float, t0: float) -> np.ndarray:
        return ln_a - b / (tk - t0)

    try:
        popt, pcov = optimize.curve_fit(
            f,
            t,
            y,
            p0=[coef0[0], max(coef0[1], 1.0), t0_start],
            sigma=1.0 / w,
            bounds=([-np.inf, 0.0, 0.0], [np.inf, np.inf, t_min - 1e-3]),
            maxfev=20000,
        )
    except (RuntimeError, ValueError) as exc:
        raise ConductivityError(f"VTF fit did not converge: {exc}") from exc
    if not np.all(np.isfinite(pcov)):
        pcov = np.where(np.isfinite(pcov), pcov, np.inf)
    t25 = 25 + ZERO_CELSIUS_K
    _, b, t0 = popt
    grad25 = np.array([1.0, -1.0 / (t25 - t0), -b / (t25 - t0) ** 2])
    return _finish(
        "vtf",
        ("ln_a", "b_kelvin", "t0_kelvin"),
        popt,
        pcov,
        t,
        s,
        confidence,
        1,
        BOLTZMANN_EV_PER_K,
        grad25,
        w,
    )


def fit_conductivity(
    temperature: Sequence[float] | np.ndarray,
    conductivity_s_per_cm: Sequence[float] | np.ndarray,
    model: Model,
    *,
    temperature_unit: TemperatureUnit = "celsius",
    confidence: float = 0.95,
    stderr_s_per_cm: Sequence[float] | np.ndarray | None = None,
) -> ConductivityFit:
    """Fit one named model (``arrhenius``, ``arrhenius_t`` or ``vtf``)."""
    if model == "vtf":
        return fit_vtf(
            temperature,
            conductivity_s_per_cm,
            temperature_unit=temperature_unit,
            confidence=confidence,
            stderr_s_per_cm=stderr_s_per_cm,
        )
    if model in ("arrhenius", "arrhenius_t"):
        return fit_arrhenius(
            temperature,
            conductivity_s_per_cm,
            temperature_unit=temperature_unit,
            times_temperature=model == "arrhenius_t",
            confidence=confidence,
            stderr_s_per_cm=stderr_s_per_cm,
        )
    raise ConductivityError(f"unknown model {model!r}; expected one of {MODELS}")


def fit_all(
    temperature: Sequence[float] | np.ndarray,
    conductivity_s_per_cm: Sequence[float] | np.ndarray,
    *,
    temperature_unit: TemperatureUnit = "celsius",
    confidence: float = 0.95,
    models: Sequence[Model] = MODELS,
    stderr_s_per_cm: Sequence[float] | np.ndarray | None = None,
) -> list[ConductivityFit]:
    """Every model the data can support (VTF needs four temperatures), best AIC first."""
    n = np.unique(np.asarray(temperature, dtype=float)).size
    fits = []
    for m in models:
        if m == "vtf" and n < 5:  # three parameters on four points leaves no scatter estimate
            continue
        fits.append(
            fit_conductivity(
                temperature,
                conductivity_s_per_cm,
                m,
                temperature_unit=temperature_unit,
                confidence=confidence,
                stderr_s_per_cm=stderr_s_per_cm,
            )
        )
    if not fits:
        raise ConductivityError(f"no model in {list(models)} can be fitted to {n} temperatures")
    return sorted(fits, key=lambda f: f.aic)


def choose_model(fits: Sequence[ConductivityFit], *, min_aic_gain: float = 2.0) -> ConductivityFit:
    """The preferred fit: the lowest AIC, but a model with more parameters must beat the simpler
    one by ``min_aic_gain`` (the usual threshold for a real improvement), else the simpler wins."""
    if not fits:
        raise ConductivityError("no fits to choose from")
    by_size = sorted(fits, key=lambda f: (len(f.parameters), f.aic))
    best = by_size[0]
    for f in by_size[1:]:
        extra = len(f.parameters) > len(best.parameters)
        if f.aic < best.aic - (min_aic_gain if extra else 0.0):
            best = f
    return best
