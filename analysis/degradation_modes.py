"""Pseudo-OCV curves and the degradation modes of a full cell: loss of lithium inventory (LLI)
and loss of active material of the positive and negative electrodes (LAM_PE, LAM_NE), from the
electrode balance fitted to the pseudo-OCV and its dQ/dV with the electrodes' reference OCPs.

**Pseudo-OCV.** From a slow (C/20 or slower) cycle, :func:`pseudo_ocv_from_cycle` averages the
charge and the discharge voltage at the same state of charge, each half-cycle's capacity
normalised to its own end (so a Coulombic efficiency below one does not shift the curves): the
overpotential, nearly symmetric at low rate, cancels. From GITT the relaxed voltages are the
pseudo-OCV directly (:func:`cellbench.analysis.gitt.pseudo_ocv`, or any SOC/voltage pairs given
to :func:`pseudo_ocv_from_points`).

**Electrode balance** (the "alignment" model of Bloom, Dubarry and Birkl). Each electrode's
reference open-circuit potential is given against its lithiation fraction ``theta`` in [0, 1]
(``U_pe(theta_p)``, falling as the positive fills; ``U_ne(theta_n)``, falling as the negative
fills). Charging the cell by ``Q`` (Ah) moves lithium from the positive to the negative::

    theta_p(Q) = theta_p0 - Q / C_pe        theta_n(Q) = theta_n0 + Q / C_ne
    V(Q) = U_pe(theta_p(Q)) - U_ne(theta_n(Q))

with ``C_pe``, ``C_ne`` the electrodes' capacities (Ah) and ``theta_p0``, ``theta_n0`` their
lithiation at the curve's first point. The cyclable lithium ``n_Li = theta_p C_pe + theta_n C_ne``
is the same at every ``Q``. :func:`fit_electrode_balance` finds the four parameters by least
squares on the voltage (5 mV scale) and on dQ/dV over a voltage grid (``dqdv_weight``; the
peaks of dQ/dV are where the electrodes' plateaus sit, the features the modes move).

**Degradation modes** (:func:`degradation_modes`), each a fraction of the fresh value:
``LAM_PE = 1 - C_pe / C_pe,fresh``, ``LAM_NE = 1 - C_ne / C_ne,fresh``,
``LLI = 1 - n_Li / n_Li,fresh``, beside the loss of the curve's capacity.

Assumptions: the reference OCPs describe the electrodes in the cell (same materials, no
hysteresis beyond what the pseudo-OCV averages out), the pseudo-OCV is close to equilibrium,
no other electrode reaction stores charge, and the measured window reaches the features that
pin each electrode (a window that sees only one plateau leaves the modes correlated: the
standard errors say so).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy.optimize import least_squares

from cellbench.analysis.dqdv import half_cycles
from cellbench.core.errors import CellbenchError

VOLTAGE_SCALE_VOLT = 0.005


class DegradationError(CellbenchError, ValueError):
    """Curves or reference potentials the analysis cannot use."""


# ------------------------------------------------------------------------------- pseudo-OCV


def pseudo_ocv_from_cycle(
    samples: pl.DataFrame,
    cycle: int,
    *,
    points: int = 200,
    rest_current_ampere: float = 1e-9,
) -> pl.DataFrame:
    """Pseudo-OCV of one slow cycle: the mean of charge and discharge voltage at equal state of
    charge. Columns ``soc`` (0..1), ``capacity_ampere_hour`` (soc times the mean of the two
    half-cycle capacities), ``ocv_volt``, ``charge_voltage_volt``, ``discharge_voltage_volt``
    and ``hysteresis_volt`` (charge minus discharge: twice the overpotential plus true
    hysteresis). Needs ``samples`` columns as :func:`cellbench.analysis.dqdv.half_cycles`."""
    hc = half_cycles(samples, rest_current_ampere=rest_current_ampere).filter(
        pl.col("cycle_count") == cycle
    )
    curves = {}
    for direction in ("charge", "discharge"):
        part = hc.filter(pl.col("direction") == direction)
        if part.height < 5:
            raise DegradationError(f"cycle {cycle} has no {direction} half-cycle to average")
        q = part["half_cycle_capacity_ampere_hour"].to_numpy()
        v = part["voltage_volt"].to_numpy()
        soc = q / q[-1] if direction == "charge" else 1 - q / q[-1]
        order = np.argsort(soc, kind="stable")
        curves[direction] = (soc[order], v[order], float(q[-1]))
    grid = np.linspace(0.0, 1.0, points)
    v_ch = np.interp(grid, curves["charge"][0], curves["charge"][1])
    v_dis = np.interp(grid, curves["discharge"][0], curves["discharge"][1])
    q_mean = 0.5 * (curves["charge"][2] + curves["discharge"][2])
    return pl.DataFrame(
        {
            "soc": grid,
            "capacity_ampere_hour": grid * q_mean,
            "ocv_volt": 0.5 * (v_ch + v_dis),
            "charge_voltage_volt": v_ch,
            "discharge_voltage_volt": v_dis,
            "hysteresis_volt": v_ch - v_dis,
        }
    )


def pseudo_ocv_from_points(
    soc: Sequence[float] | np.ndarray,
    voltage_volt: Sequence[float] | np.ndarray,
    capacity_ah: float | None = None,
) -> pl.DataFrame:
    """A pseudo-OCV from relaxed points (GITT, ICI): sorted by SOC, non-finite dropped, with
    ``capacity_ampere_hour`` when the capacity is given."""
    s = np.asarray(soc, dtype=float)
    v = np.asarray(voltage_volt, dtype=float)
    ok = np.isfinite(s) & np.isfinite(v)
    s, v = s[ok], v[ok]
    if s.size < 3:
        raise DegradationError(f"need at least 3 relaxed points with a SOC, got {s.size}")
    order = np.argsort(s, kind="stable")
    out = pl.DataFrame({"soc": s[order], "ocv_volt": v[order]})
    if capacity_ah is not None:
        out = out.with_columns((pl.col("soc") * capacity_ah).alias("capacity_ampere_hour"))
    return out


# ------------------------------------------------------------------------------- electrodes


@dataclass(frozen=True)
class ElectrodeOCP:
    """An electrode's reference open-circuit potential (V vs Li/Li+) against its lithiation
    fraction theta (0..1). Points are sorted; outside the given range the end values hold."""

    theta: np.ndarray
    potential_volt: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        th = np.asarray(self.theta, dtype=float)
        u = np.asarray(self.potential_volt, dtype=float)
        if th.shape != u.shape or th.ndim != 1 or th.size < 3:
            raise DegradationError(f"{self.name or 'OCP'}: theta and potential must be 1-D, >= 3")
        if not (np.all(np.isfinite(th)) and np.all(np.isfinite(u))):
            raise DegradationError(f"{self.name or 'OCP'}: non-finite values")
        if th.min() < -1e-9 or th.max() > 1 + 1e-9:
            raise DegradationError(f"{self.name or 'OCP'}: theta must lie in [0, 1]")
        order = np.argsort(th, kind="stable")
        object.__setattr__(self, "theta", th[order])
        object.__setattr__(self, "potential_volt", u[order])

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        return np.interp(theta, self.theta, self.potential_volt)

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, name: str = "") -> ElectrodeOCP:
        """From a table with ``theta`` (or ``soc``) and ``potential_volt`` (or ``ocv_volt``)."""
        t = next((c for c in ("theta", "soc", "stoichiometry") if c in frame.columns), None)
        u = next(
            (c for c in ("potential_volt", "ocv_volt", "voltage_volt") if c in frame.columns), None
        )
        if t is None or u is None:
            raise DegradationError(
                f"{name or 'OCP table'}: needs theta and potential_volt columns; "
                f"has {frame.columns}"
            )
        return cls(frame[t].cast(pl.Float64).to_numpy(), frame[u].cast(pl.Float64).to_numpy(), name)


def full_cell_ocv(
    capacity_ah: np.ndarray,
    positive: ElectrodeOCP,
    negative: ElectrodeOCP,
    c_pe_ah: float,
    c_ne_ah: float,
    theta_p0: float,
    theta_n0: float,
) -> np.ndarray:
    """V(Q) of the balance model (module doc), V."""
    q = np.asarray(capacity_ah, dtype=float)
    return positive(theta_p0 - q / c_pe_ah) - negative(theta_n0 + q / c_ne_ah)


# ------------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class BalanceFit:
    """Fitted electrode balance. Capacities in Ah; ``stderr`` by parameter name."""

    c_pe_ah: float
    c_ne_ah: float
    theta_p0: float
    theta_n0: float
    lithium_inventory_ah: float
    curve_capacity_ah: float
    rmse_volt: float
    stderr: dict[str, float]
    n_points: int
    success: bool
    q: np.ndarray = field(repr=False)
    v: np.ndarray = field(repr=False)
    v_fit: np.ndarray = field(repr=False)

    @property
    def theta_p_end(self) -> float:
        return self.theta_p0 - self.curve_capacity_ah / self.c_pe_ah

    @property
    def theta_n_end(self) -> float:
        return self.theta_n0 + self.curve_capacity_ah / self.c_ne_ah

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("q", "v", "v_fit")}
        d["theta_p_end"] = self.theta_p_end
        d["theta_n_end"] = self.theta_n_end
        return d


def _dqdv_on_grid(q: np.ndarray, v: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """dQ/dV of a monotonic-in-Q curve on a voltage grid (finite differences of Q(V))."""
    order = np.argsort(v, kind="stable")
    vs, qs = v[order], q[order]
    keep = np.concatenate([[True], np.diff(vs) > 1e-9])
    qg = np.interp(grid, vs[keep], qs[keep])
    return np.gradient(qg, grid)


def _smooth(y: np.ndarray, n: int) -> np.ndarray:
    if n < 2:
        return y
    kernel = np.ones(n) / n
    return np.convolve(np.pad(y, n // 2, mode="edge"), kernel, "valid")[: y.size]


def fit_electrode_balance(
    capacity_ah: Sequence[float] | np.ndarray,
    voltage_volt: Sequence[float] | np.ndarray,
    positive: ElectrodeOCP,
    negative: ElectrodeOCP,
    *,
    initial: Mapping[str, float] | None = None,
    dqdv_weight: float = 0.5,
    grid_step_volt: float = 0.005,
) -> BalanceFit:
    """Fit ``C_pe``, ``C_ne``, ``theta_p0``, ``theta_n0`` to a pseudo-OCV ``V(Q)`` (``Q`` in Ah
    from the discharged end, increasing with charge). ``initial`` (same names) seeds the fit,
    e.g. with the fresh cell's result for an aged one; otherwise several starts are tried."""
    q = np.asarray(capacity_ah, dtype=float)
    v = np.asarray(voltage_volt, dtype=float)
    ok = np.isfinite(q) & np.isfinite(v)
    q, v = q[ok], v[ok]
    if q.size < 10:
        raise DegradationError(f"need at least 10 pseudo-OCV points, got {q.size}")
    order = np.argsort(q, kind="stable")
    q, v = q[order] - q[order][0], v[order]
    q_span = float(q[-1])
    if not q_span > 0:
        raise DegradationError("the pseudo-OCV covers no capacity")
    grid = np.arange(v.min(), v.max(), grid_step_volt)
    use_d = dqdv_weight > 0 and grid.size >= 10
    if use_d:
        d_data = _smooth(_dqdv_on_grid(q, v, grid), 3)
        d_scale = float(np.max(np.abs(d_data))) or 1.0
    q_fine = np.linspace(0.0, q_span, 400)

    def residual(p: np.ndarray) -> np.ndarray:
        c_pe, c_ne, tp0, tn0 = p
        r = (full_cell_ocv(q, positive, negative, c_pe, c_ne, tp0, tn0) - v) / VOLTAGE_SCALE_VOLT
        if not use_d:
            return r
        vm = full_cell_ocv(q_fine, positive, negative, c_pe, c_ne, tp0, tn0)
        d_model = _smooth(_dqdv_on_grid(q_fine, vm, grid), 3)
        scale = dqdv_weight * math.sqrt(q.size / grid.size)
        return np.concatenate([r, scale * (d_model - d_data) / d_scale * 10])

    lo = np.array([q_span * 1.0001, q_span * 1.0001, 0.0, 0.0])
    hi = np.array([q_span * 5, q_span * 5, 1.0, 1.0])
    names = ("c_pe_ah", "c_ne_ah", "theta_p0", "theta_n0")
    if initial is not None:
        starts = [np.array([float(initial[n]) for n in names])]
    else:
        starts = [
            np.array([q_span * a, q_span * b, tp, tn])
            for a, b, tp, tn in (
                (1.1, 1.2, 0.97, 0.03),
                (1.3, 1.1, 0.95, 0.0),
                (1.05, 1.4, 1.0, 0.1),
            )
        ]
    best = None
    for x0 in starts:
        x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)
        res = least_squares(residual, x0, bounds=(lo, hi), x_scale=[q_span, q_span, 0.1, 0.1])
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None
    p = best.x
    v_fit = full_cell_ocv(q, positive, negative, *p)
    rmse = float(np.sqrt(np.mean((v_fit - v) ** 2)))
    # covariance from the voltage residuals' Jacobian, scaled by their scatter
    jac = best.jac[: q.size] * VOLTAGE_SCALE_VOLT
    dof = max(q.size - 4, 1)
    s2 = float(np.sum((v_fit - v) ** 2)) / dof
    try:
        cov = s2 * np.linalg.inv(jac.T @ jac)
        se = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        se = np.full(4, math.inf)
    return BalanceFit(
        c_pe_ah=float(p[0]),
        c_ne_ah=float(p[1]),
        theta_p0=float(p[2]),
        theta_n0=float(p[3]),
        lithium_inventory_ah=float(p[2] * p[0] + p[3] * p[1]),
        curve_capacity_ah=q_span,
        rmse_volt=rmse,
        stderr=dict(zip(names, map(float, se), strict=True)),
        n_points=int(q.size),
        success=bool(best.success),
        q=q,
        v=v,
        v_fit=v_fit,
    )


def degradation_modes(fresh: BalanceFit, aged: BalanceFit) -> dict[str, float]:
    """LLI, LAM_PE and LAM_NE of ``aged`` against ``fresh`` (fractions; module doc), with the
    loss of the pseudo-OCV's capacity beside them."""
    return {
        "loss_of_lithium_inventory": 1 - aged.lithium_inventory_ah / fresh.lithium_inventory_ah,
        "loss_of_active_material_positive": 1 - aged.c_pe_ah / fresh.c_pe_ah,
        "loss_of_active_material_negative": 1 - aged.c_ne_ah / fresh.c_ne_ah,
        "capacity_loss": 1 - aged.curve_capacity_ah / fresh.curve_capacity_ah,
    }


def degradation_modes_by_cycle(
    curves: Mapping[int, tuple[np.ndarray, np.ndarray]],
    positive: ElectrodeOCP,
    negative: ElectrodeOCP,
    *,
    dqdv_weight: float = 0.5,
) -> pl.DataFrame:
    """Fit every pseudo-OCV (cycle -> (Q / Ah, V / V)); modes relative to the first cycle.
    Each fit starts from the previous one's. One row per cycle with the fitted balance and
    ``loss_of_lithium_inventory``, ``loss_of_active_material_positive``,
    ``loss_of_active_material_negative``, ``capacity_loss``, ``rmse_volt``."""
    if not curves:
        raise DegradationError("no pseudo-OCV curves")
    rows, first, prev = [], None, None
    for cycle in sorted(curves):
        q, v = curves[cycle]
        start = None
        if prev is not None:
            start = {k: getattr(prev, k) for k in ("c_pe_ah", "c_ne_ah", "theta_p0", "theta_n0")}
        fit = fit_electrode_balance(
            q, v, positive, negative, initial=start, dqdv_weight=dqdv_weight
        )
        if start is not None:  # a warm start may sit in a local minimum: try the cold one too
            cold = fit_electrode_balance(q, v, positive, negative, dqdv_weight=dqdv_weight)
            if cold.rmse_volt < 0.9 * fit.rmse_volt:
                fit = cold
        first = first or fit
        prev = fit
        d = fit.to_dict()
        d.pop("stderr")
        rows.append({"cycle_count": cycle, **d, **degradation_modes(first, fit)})
    return pl.DataFrame(rows)
