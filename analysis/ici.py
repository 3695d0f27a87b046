"""Intermittent current interruption (ICI): resistance and diffusion per interruption.

A constant current is interrupted for a few seconds at regular intervals (Lacey, ChemElectroChem
2 (2015) 1988; Chien et al., J. Phys. Chem. Lett. 14 (2023) 2019). For each interruption, with
``t`` the time since its first sample (logged at the interruption's start), ``V_I``, ``I_I`` the
last sample on current and ``I_0`` the rest current::

    (V(t) - V_I - s_drift t) / (I_0 - I_I) = R + k sqrt(t)

fitted by least squares over the interruption's samples with ``t <= fit_end_second``. ``R`` /
ohm is the resistance whose time constants lie below the first sample; ``k`` / ohm s^-1/2 the
diffusion resistance coefficient. ``s_drift`` (V/s) is the slope of the voltage on current just
before the interruption (``drift_window_second``): the voltage would have kept moving, and
without this correction a slow drift leaks into ``k`` and ``R`` (``drift_correction=False``
turns it off). ``V_I`` was read one log interval before the interruption's first sample; the
drift is extrapolated over that interval too.

With the geometry's diffusion length ``L`` (:class:`~cellbench.analysis.gitt.DiffusionGeometry`)
and the OCV's slope against charge ``dE/dQ`` (V/C; from ``V_I`` of neighbouring interruptions of
one current, against the charge passed between them), the semi-infinite solution gives::

    D = (4 / pi) (L dE/dQ / k)^2          (cm^2/s)

the same physics as Weppner–Huggins (``ΔEs = dE/dQ I tau``, ``ΔEt = k I sqrt(tau)``).
Assumptions: diffusion is semi-infinite over the interruption (``t << L^2 / D``), R's processes
are complete at the first sample, ``dE/dQ`` is constant between neighbouring interruptions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

from cellbench.analysis.gitt import DiffusionGeometry, GittError
from cellbench.analysis.pulses import ZERO_CELSIUS, Trace, soc_trace


@dataclass
class Interruption:
    """One current interruption; NaN where a value could not be formed."""

    step_index: int | None
    cycle_count: int | None
    test_time_second: float  # first sample of the interruption
    current_ampere: float  # on-current before it
    interruption_second: float
    soc: float | None
    temperature_kelvin: float | None
    voltage_on_volt: float  # V_I
    voltage_end_volt: float  # last sample of the interruption
    drift_volt_per_second: float
    r_ohm: float
    k_ohm_per_sqrt_second: float
    r2: float
    fit_points: int
    de_dq_volt_per_coulomb: float
    d_cm2_per_second: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _interruptions(tr: Trace, rest_tol: float, max_s: float) -> list[tuple[int, int]]:
    """(first, last) index of each rest of at most ``max_s`` between two currents of one sign."""
    rest = np.abs(tr.i) <= rest_tol
    out = []
    n = tr.t.size
    k = 1
    while k < n:
        if rest[k] and not rest[k - 1]:
            j = k
            while j + 1 < n and rest[j + 1]:
                j += 1
            length = tr.t[j + 1] - tr.t[k] if j + 1 < n else math.inf
            if j + 1 < n and length <= max_s and np.sign(tr.i[j + 1]) == np.sign(tr.i[k - 1]):
                out.append((k, j))
            k = j + 1
        else:
            k += 1
    return out


def ici(
    samples: pl.DataFrame | pl.LazyFrame,
    geometry: DiffusionGeometry | None = None,
    *,
    capacity_ah: float | None = None,
    initial_soc: float | None = None,
    max_interruption_second: float = 30.0,
    fit_end_second: float | None = None,
    drift_correction: bool = True,
    drift_window_second: float = 30.0,
    rest_fraction: float = 0.02,
    min_r2: float = 0.95,
) -> list[Interruption]:
    """Every interruption of a current (a rest of at most ``max_interruption_second`` with the
    same current sign on both sides), analysed as the module says. Without a geometry, D is NaN
    (R and k need none)."""
    if fit_end_second is not None and not fit_end_second > 0:
        raise GittError(f"fit_end_second must be positive, got {fit_end_second!r}")
    tr = Trace.from_frame(samples, "ICI")
    if tr.t.size < 3:
        return []
    rest_tol = rest_fraction * float(np.max(np.abs(tr.i)))
    soc = soc_trace(tr, capacity_ah, initial_soc)
    charge_c = tr.charge_ah() * 3600.0
    out: list[Interruption] = []
    charges: list[float] = []  # charge passed (C) at each interruption
    for k, j in _interruptions(tr, rest_tol, max_interruption_second):
        warnings: list[str] = []
        v_on, i_on = float(tr.v[k - 1]), float(tr.i[k - 1])
        i_rest = float(np.median(tr.i[k : j + 1]))
        lag = float(tr.t[k] - tr.t[k - 1])  # V_I was read this long before the interruption
        t = tr.t[k : j + 1] - tr.t[k]
        keep = t <= (fit_end_second if fit_end_second is not None else math.inf)
        t, v = t[keep], tr.v[k : j + 1][keep]
        drift = 0.0
        if drift_correction:
            w = (tr.t >= tr.t[k - 1] - drift_window_second) & (np.arange(tr.t.size) < k)
            w &= np.sign(tr.i) == np.sign(i_on)
            # only the samples of this current period
            idx = np.flatnonzero(w)
            idx = idx[idx > (np.flatnonzero(np.abs(tr.i[:k]) <= rest_tol).max(initial=-1))]
            if idx.size >= 3:
                drift = float(np.polyfit(tr.t[idx], tr.v[idx], 1)[0])
            else:
                warnings.append("too few samples on current before it: no drift correction")
        y = (v - v_on - drift * (t + lag)) / (i_rest - i_on)
        if t.size >= 3:
            x = np.sqrt(t)
            k_coef, r = np.polyfit(x, y, 1)
            ss = float(np.sum((y - y.mean()) ** 2))
            resid = y - (k_coef * x + r)
            r2 = 1.0 - float(np.sum(resid**2)) / ss if ss > 0 else math.nan
        else:
            k_coef = r = r2 = math.nan
            warnings.append(f"{t.size} sample(s) in the interruption: no fit (needs 3)")
        if math.isfinite(r2) and r2 < min_r2:
            warnings.append(f"R + k sqrt(t) fits poorly (R^2 {r2:.3g} < {min_r2:g})")
        tc = tr.at(tr.temperature_c, k - 1)
        out.append(
            Interruption(
                step_index=None if tr.step is None else int(tr.step[k]),
                cycle_count=None if tr.cycle is None else int(tr.cycle[k]),
                test_time_second=float(tr.t[k]),
                current_ampere=i_on,
                interruption_second=float(tr.t[j + 1] - tr.t[k]),
                soc=None if soc is None else float(soc[k]),
                temperature_kelvin=None if tc is None else tc + ZERO_CELSIUS,
                voltage_on_volt=v_on,
                voltage_end_volt=float(tr.v[j]),
                drift_volt_per_second=drift,
                r_ohm=float(r),
                k_ohm_per_sqrt_second=float(k_coef),
                r2=r2,
                fit_points=int(t.size),
                de_dq_volt_per_coulomb=math.nan,
                d_cm2_per_second=math.nan,
                warnings=warnings,
            )
        )
        charges.append(float(charge_c[k]))
    _slopes_and_d(out, charges, geometry)
    return out


def _slopes_and_d(
    found: list[Interruption], charges: list[float], geometry: DiffusionGeometry | None
) -> None:
    """dE/dQ from V_I against charge across neighbouring interruptions of one current sign
    (central differences inside, one-sided at the ends), then D where a geometry is given."""
    groups: dict[float, list[tuple[Interruption, float]]] = {}
    for it, q_c in zip(found, charges, strict=True):
        groups.setdefault(float(np.sign(it.current_ampere)), []).append((it, q_c))
    for pairs in groups.values():
        group = [it for it, _ in pairs]
        if len(group) < 2:
            for it in group:
                it.warnings.append("no neighbouring interruption: no dE/dQ, no D")
            continue
        q = np.array([q_c for _, q_c in pairs])
        v = np.array([it.voltage_on_volt for it in group])
        if np.any(np.diff(q) == 0):
            continue
        slopes = np.gradient(v, q)
        for it, s in zip(group, slopes, strict=True):
            it.de_dq_volt_per_coulomb = float(abs(s))
            if geometry is not None and it.k_ohm_per_sqrt_second > 0:
                ratio = geometry.length_cm * it.de_dq_volt_per_coulomb / it.k_ohm_per_sqrt_second
                it.d_cm2_per_second = 4.0 / math.pi * ratio**2
