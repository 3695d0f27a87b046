"""Pseudo-OCV and degradation modes: loss of lithium inventory and of active material.

**Pseudo-OCV from a slow cycle.** At a low rate (C/20 or slower) the charge and discharge
voltages lie a small overpotential either side of the OCV; their mean at equal charge content
is the pseudo-OCV (:func:`pseudo_ocv_from_cycle`). A GITT's relaxed voltages are another
(:func:`cellbench.analysis.gitt.pseudo_ocv`).

**Electrode balancing** (Bloom et al., J. Power Sources 139 (2005) 295; Dubarry et al., J. Power
Sources 219 (2012) 204; Birkl et al., J. Power Sources 341 (2017) 373). With the half-cell OCVs
of the positive and negative electrode, ``U_p(y)`` and ``U_n(x)`` (x, y: their lithium
fractions), the full cell's OCV at charge content ``Q`` (Ah passed into the cell since the start
of the curve) is::

    V(Q) = U_p(y_0 - Q / C_p) - U_n(x_0 + Q / C_n)

``C_p``, ``C_n``: the electrodes' capacities (Ah for a lithium fraction of 1); ``x_0``, ``y_0``:
their lithium fractions at ``Q = 0``. :func:`fit_electrode_balance` fits the four by least
squares (several starts). The lithium the electrodes hold, ``n_Li = x_0 C_n + y_0 C_p`` (Ah),
is the cyclable inventory. Between a reference fit and an aged one (:func:`degradation_modes`):

* ``LAM_PE = 1 - C_p / C_p,ref``, ``LAM_NE = 1 - C_n / C_n,ref`` (loss of active material),
* ``LLI = 1 - n_Li / n_Li,ref`` (loss of lithium inventory).

Assumptions: the electrode OCVs do not change with ageing (only their capacities and offset);
the pseudo-OCV is close to equilibrium (slow enough, or relaxed); the curve covers enough of
both electrodes' features (staging plateaus, the positive's slope changes) for the four
parameters to be determined — ``rms_volt`` and the parameters' standard errors say how well.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
from scipy.optimize import least_squares

from cellbench.core.errors import CellbenchError

_PARAMS = ("capacity_pe_ah", "capacity_ne_ah", "y0", "x0")


class DegradationError(CellbenchError, ValueError):
    """Inputs the degradation analysis cannot use."""


@dataclass(frozen=True)
class ElectrodeOcv:
    """A half-cell OCV table: lithium fraction (increasing) and potential vs Li/Li+, V."""

    fraction: np.ndarray
    volt: np.ndarray

    def __post_init__(self) -> None:
        x = np.asarray(self.fraction, float)
        v = np.asarray(self.volt, float)
        if x.ndim != 1 or x.shape != v.shape or x.size < 2:
            raise DegradationError("an electrode OCV needs >= 2 (fraction, volt) pairs")
        if np.any(np.diff(x) <= 0) or not (np.all(np.isfinite(x)) and np.all(np.isfinite(v))):
            raise DegradationError("electrode OCV fractions must be finite and increasing")
        object.__setattr__(self, "fraction", x)
        object.__setattr__(self, "volt", v)

    def __call__(self, fraction: np.ndarray) -> np.ndarray:
        """Potential at these fractions; linear extrapolation beyond the table's ends."""
        x, v = self.fraction, self.volt
        f = np.asarray(fraction, float)
        out = np.interp(f, x, v)
        lo_slope = (v[1] - v[0]) / (x[1] - x[0])
        hi_slope = (v[-1] - v[-2]) / (x[-1] - x[-2])
        out = np.where(f < x[0], v[0] + lo_slope * (f - x[0]), out)
        return np.where(f > x[-1], v[-1] + hi_slope * (f - x[-1]), out)


@dataclass(frozen=True)
class ElectrodeBalance:
    """Fitted electrode balance of one pseudo-OCV curve (Ah, fractions, V)."""

    capacity_pe_ah: float
    capacity_ne_ah: float
    y0: float  # positive electrode lithium fraction at Q = 0
    x0: float  # negative electrode lithium fraction at Q = 0
    lithium_inventory_ah: float  # x0 C_n + y0 C_p
    stderr: dict[str, float]
    rms_volt: float
    n_points: int

    def model(self, q_ah: np.ndarray, pe: ElectrodeOcv, ne: ElectrodeOcv) -> np.ndarray:
        q = np.asarray(q_ah, float)
        return pe(self.y0 - q / self.capacity_pe_ah) - ne(self.x0 + q / self.capacity_ne_ah)

    def to_dict(self) -> dict:
        return asdict(self)


def pseudo_ocv_from_cycle(
    charge_q_ah: np.ndarray,
    charge_v: np.ndarray,
    discharge_q_ah: np.ndarray,
    discharge_v: np.ndarray,
    *,
    points: int = 200,
) -> pl.DataFrame:
    """Mean of a slow charge and discharge at equal charge content: columns
    ``charge_content_ampere_hour`` (0 at the discharged end) and ``ocv_volt``.

    ``charge_q_ah``: charge passed since the start of the charge (increasing); ``discharge_q_ah``:
    charge passed since the start of the discharge (increasing; the discharge starts full).
    The common range is the smaller of the two capacities, measured from the discharged end.
    """
    qc, vc = np.asarray(charge_q_ah, float), np.asarray(charge_v, float)
    qd, vd = np.asarray(discharge_q_ah, float), np.asarray(discharge_v, float)
    for name, q in (("charge", qc), ("discharge", qd)):
        if q.size < 2 or np.any(np.diff(q) < 0):
            raise DegradationError(f"the {name} charge must have >= 2 increasing values")
    q_max = min(qc[-1] - qc[0], qd[-1] - qd[0])
    if not q_max > 0:
        raise DegradationError("no charge passed: no pseudo-OCV")
    grid = np.linspace(0.0, q_max, points)
    v_ch = np.interp(grid, qc - qc[0], vc)
    # the discharge runs from full to empty: its content is its capacity less what it passed
    content_d = (qd[-1] - qd[0]) - (qd - qd[0])
    v_dis = np.interp(grid, content_d[::-1], vd[::-1])
    return pl.DataFrame({"charge_content_ampere_hour": grid, "ocv_volt": 0.5 * (v_ch + v_dis)})


def fit_electrode_balance(
    q_ah: np.ndarray,
    ocv_volt: np.ndarray,
    pe: ElectrodeOcv,
    ne: ElectrodeOcv,
    *,
    starts: int = 3,
) -> ElectrodeBalance:
    """Fit ``V(Q) = U_p(y0 - Q/C_p) - U_n(x0 + Q/C_n)`` to a pseudo-OCV (module docstring)."""
    q = np.asarray(q_ah, float)
    v = np.asarray(ocv_volt, float)
    ok = np.isfinite(q) & np.isfinite(v)
    q, v = q[ok], v[ok]
    if q.size < 8:
        raise DegradationError(f"a pseudo-OCV needs >= 8 points, got {q.size}")
    span = float(np.ptp(q))
    if not span > 0:
        raise DegradationError("the pseudo-OCV covers no charge")

    def resid(p: np.ndarray) -> np.ndarray:
        cp, cn, y0, x0 = p
        return pe(y0 - q / cp) - ne(x0 + q / cn) - v

    lo = [0.5 * span, 0.5 * span, 0.0, -0.2]
    hi = [20 * span, 20 * span, 1.2, 1.0]
    best = None
    grid = itertools.product((1.05, 1.3, 1.8)[:starts], (1.05, 1.3, 1.8)[:starts], (0.95, 0.8))
    for fp, fn, y0 in grid:
        p0 = np.array([fp * span, fn * span, y0, 0.02])
        sol = least_squares(resid, p0, bounds=(lo, hi), x_scale="jac", method="trf")
        if best is None or sol.cost < best.cost:
            best = sol
    assert best is not None
    cp, cn, y0, x0 = (float(x) for x in best.x)
    r = best.fun
    dof = max(q.size - 4, 1)
    s2 = float(r @ r) / dof
    try:
        cov = np.linalg.inv(best.jac.T @ best.jac) * s2
        se = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        se = np.full(4, math.inf)
    return ElectrodeBalance(
        capacity_pe_ah=cp,
        capacity_ne_ah=cn,
        y0=y0,
        x0=x0,
        lithium_inventory_ah=x0 * cn + y0 * cp,
        stderr=dict(
            zip(("capacity_pe_ah", "capacity_ne_ah", "y0", "x0"), se.tolist(), strict=True)
        ),
        rms_volt=float(np.sqrt(np.mean(r**2))),
        n_points=int(q.size),
    )


def degradation_modes(reference: ElectrodeBalance, aged: ElectrodeBalance) -> dict[str, float]:
    """``lam_pe``, ``lam_ne``, ``lli`` (fractions lost since ``reference``)."""
    return {
        "lam_pe": 1.0 - aged.capacity_pe_ah / reference.capacity_pe_ah,
        "lam_ne": 1.0 - aged.capacity_ne_ah / reference.capacity_ne_ah,
        "lli": 1.0 - aged.lithium_inventory_ah / reference.lithium_inventory_ah,
    }
