"""Galvanostatic intermittent titration (GITT): chemical diffusion coefficient per pulse.

Each titration step is a constant-current pulse of length ``tau`` out of rest, followed by a
rest (pulses found as in :mod:`cellbench.analysis.pulses`). Per step:

* ``delta_es_volt`` (ΔEs): change of the relaxed voltage, the last sample of the rest after the
  pulse less the last sample of the rest before it (the pseudo-OCV step).
* ``delta_et_volt`` (ΔEt): change of the voltage during the pulse without the IR step, the last
  sample of the pulse less its first sample. ``tau`` runs from the pulse's first sample to the
  first sample of the rest (the current's edges); ΔEt is read at the last pulse sample, one log
  interval earlier, and scaled as sqrt(t) to match (:func:`weppner_huggins`).
* **Weppner–Huggins** (J. Electrochem. Soc. 124 (1977) 1569), valid for ``tau << L^2 / D``::

      D = 4 / (pi tau) * L^2 * (ΔEs / ΔEt)^2

  with ``L`` the diffusion length that the geometry gives (:class:`DiffusionGeometry`): a film's
  thickness, ``r / 3`` for spherical particles of radius ``r`` (their volume over surface), or
  ``V_M m / (M S)`` (molar volume, mass, molar mass, electrode area).
* **√t check**: the same short-time solution says ``E(t) = E(0+) + s sqrt(t)`` during the pulse.
  A straight line is fitted to the pulse's samples against ``sqrt(t)`` (the first sample, which
  holds the IR step, excluded); its ``r2_sqrt_t`` is reported and ``sqrt_t_linear`` is False
  below ``min_r2`` (then the Weppner–Huggins value is not to be trusted). The fitted slope gives
  a second estimate with ``ΔEt = s sqrt(tau)``: ``d_sqrt_t_cm2_per_second``.
* **Relaxation** (long-time solution): after the pulse, the slowest diffusion mode decays as
  ``E(t) = E_inf + A exp(-t / tau_r)``; fitted to the rest's samples from ``relax_start_fraction``
  of the rest on. ``D = L^2 / (pi^2 tau_r)`` for a film (no flux at either face once the current
  stops) and ``D = r^2 / (mu_1^2 tau_r)`` for a sphere (``mu_1 = 4.4934``, the first root of
  ``tan mu = mu``). It needs a rest several ``tau_r`` long; a shorter one is flagged.

Units: D in cm^2/s, lengths in cm, voltages in V, times in s; current positive on charge.
Assumptions: one-dimensional diffusion of one species, ``dE/dc`` constant over a step, no phase
transition (a two-phase plateau gives ΔEs near zero and a meaningless D), negligible
double-layer charging; ``sqrt_t_linear`` and the relaxation warning say when the data disagree.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
from scipy.optimize import curve_fit

from cellbench.analysis.pulses import (
    ZERO_CELSIUS,
    PulseError,
    Trace,
    pulse_duration,
    pulse_spans,
    rest_after,
    soc_trace,
)

MU1_SPHERE = 4.493409457909064  # first positive root of tan(mu) = mu


class GittError(PulseError):
    """Bad GITT / ICI input (geometry, options)."""


@dataclass(frozen=True)
class DiffusionGeometry:
    """The electrode's diffusion length, from one of three descriptions (cm, g, mol).

    * ``thickness_cm``: a dense film (planar diffusion through its thickness).
    * ``particle_radius_cm``: spherical particles (``L = r / 3`` in Weppner–Huggins).
    * ``molar_volume_cm3_per_mol``, ``mass_g``, ``molar_mass_g_per_mol``, ``area_cm2``: the
      classic ``L = V_M m / (M S)`` (treated as a film of that thickness).
    """

    thickness_cm: float | None = None
    particle_radius_cm: float | None = None
    molar_volume_cm3_per_mol: float | None = None
    mass_g: float | None = None
    molar_mass_g_per_mol: float | None = None
    area_cm2: float | None = None

    def __post_init__(self) -> None:
        molar = (self.molar_volume_cm3_per_mol, self.mass_g, self.molar_mass_g_per_mol,
                 self.area_cm2)  # fmt: skip
        given = [
            self.thickness_cm is not None,
            self.particle_radius_cm is not None,
            any(v is not None for v in molar),
        ]
        if sum(given) != 1:
            raise GittError(
                "give exactly one geometry: thickness_cm, particle_radius_cm, or "
                "molar_volume_cm3_per_mol with mass_g, molar_mass_g_per_mol and area_cm2"
            )
        if given[2] and any(v is None for v in molar):
            raise GittError(
                "the molar-volume geometry needs molar_volume_cm3_per_mol, mass_g, "
                "molar_mass_g_per_mol and area_cm2"
            )
        for name in ("thickness_cm", "particle_radius_cm", "molar_volume_cm3_per_mol", "mass_g",
                     "molar_mass_g_per_mol", "area_cm2"):  # fmt: skip
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise GittError(f"{name} must be a positive number, got {v!r}")

    @property
    def kind(self) -> str:
        return "sphere" if self.particle_radius_cm is not None else "film"

    @property
    def length_cm(self) -> float:
        """Weppner–Huggins' ``L``: volume over surface of the diffusing phase, cm."""
        if self.thickness_cm is not None:
            return self.thickness_cm
        if self.particle_radius_cm is not None:
            return self.particle_radius_cm / 3.0
        assert self.molar_volume_cm3_per_mol and self.mass_g and self.molar_mass_g_per_mol
        assert self.area_cm2
        return (
            self.molar_volume_cm3_per_mol
            * self.mass_g
            / (self.molar_mass_g_per_mol * self.area_cm2)
        )

    def d_from_relaxation(self, tau_r_second: float) -> float:
        """D / cm^2 s^-1 from the slowest mode's time constant."""
        if self.particle_radius_cm is not None:
            return self.particle_radius_cm**2 / (MU1_SPHERE**2 * tau_r_second)
        return self.length_cm**2 / (math.pi**2 * tau_r_second)

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        out["kind"] = self.kind
        out["diffusion_length_cm"] = self.length_cm
        return out


def weppner_huggins(
    tau_second: float,
    length_cm: float,
    delta_es_volt: float,
    delta_et_volt: float,
    et_at_second: float | None = None,
) -> float:
    """``D = 4 / (pi tau) L^2 (ΔEs / ΔEt)^2`` in cm^2/s (NaN where ΔEt is zero).

    ``et_at_second``: when ΔEt was read before the pulse's end (its last logged sample, one log
    interval before the current stopped), the time it was read at; ΔEt grows as sqrt(t), so
    ``D = 4 L^2 ΔEs^2 t_Et / (pi tau^2 ΔEt^2)``, which is the classic form for ``t_Et = tau``.
    """
    if delta_et_volt == 0 or not tau_second > 0:
        return math.nan
    t_et = tau_second if et_at_second is None else et_at_second
    ratio = delta_es_volt / delta_et_volt
    return 4.0 * length_cm**2 * ratio**2 * t_et / (math.pi * tau_second**2)


@dataclass
class GittStep:
    """One titration step. NaN where a value could not be formed (see ``warnings``)."""

    step_index: int | None
    cycle_count: int | None
    test_time_second: float
    current_ampere: float
    pulse_second: float
    rest_second: float
    soc: float | None  # before the pulse
    soc_after: float | None  # at the end of the rest
    temperature_kelvin: float | None
    relaxed_voltage_before_volt: float
    relaxed_voltage_after_volt: float  # the GITT pseudo-OCV point
    ir_drop_volt: float
    delta_es_volt: float
    delta_et_volt: float
    sqrt_t_slope_volt_per_sqrt_second: float
    r2_sqrt_t: float
    sqrt_t_linear: bool
    d_weppner_huggins_cm2_per_second: float
    d_sqrt_t_cm2_per_second: float
    relaxation_tau_second: float
    d_relaxation_cm2_per_second: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _sqrt_t_fit(t: np.ndarray, v: np.ndarray) -> tuple[float, float, float]:
    """Slope, intercept and R^2 of ``v`` against ``sqrt(t)`` (NaN with fewer than 3 points)."""
    if t.size < 3:
        return math.nan, math.nan, math.nan
    x = np.sqrt(t)
    slope, intercept = np.polyfit(x, v, 1)
    resid = v - (slope * x + intercept)
    ss = float(np.sum((v - v.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss if ss > 0 else math.nan
    return float(slope), float(intercept), r2


def _relaxation_tau(t: np.ndarray, v: np.ndarray) -> float:
    """Time constant of ``v = v_inf + a exp(-t / tau)`` (s), NaN if the fit fails."""
    if t.size < 5 or not np.ptp(v) > 0:
        return math.nan
    t = t - t[0]
    span = float(t[-1]) if t[-1] > 0 else 1.0
    v_end = float(v[-1])
    a0 = float(v[0] - v_end)
    try:
        popt, _ = curve_fit(
            lambda x, v_inf, a, tau: v_inf + a * np.exp(-x / tau),
            t,
            v,
            p0=(v_end, a0 if a0 else 1e-6, span / 3),
            bounds=([-np.inf, -np.inf, span * 1e-3], [np.inf, np.inf, span * 1e3]),
            maxfev=5000,
        )
    except (RuntimeError, ValueError):
        return math.nan
    return float(popt[2])


def gitt(
    samples: pl.DataFrame | pl.LazyFrame,
    geometry: DiffusionGeometry,
    *,
    capacity_ah: float | None = None,
    initial_soc: float | None = None,
    min_r2: float = 0.98,
    relax_start_fraction: float = 0.2,
    max_pulse_second: float = math.inf,
    rest_fraction: float = 0.02,
) -> list[GittStep]:
    """Every titration step (a pulse out of rest followed by a rest), analysed as the module
    says. ``capacity_ah`` adds the SOC at the start of each pulse (``initial_soc`` as in
    :func:`cellbench.analysis.pulses.find_pulses`). A pulse without a rest after it (the last
    one of an interrupted test) is skipped."""
    if not 0 <= relax_start_fraction < 1:
        raise GittError(f"relax_start_fraction must be in [0, 1), got {relax_start_fraction!r}")
    tr = Trace.from_frame(samples, "GITT")
    soc = soc_trace(tr, capacity_ah, initial_soc)
    length = geometry.length_cm
    out: list[GittStep] = []
    spans = pulse_spans(tr, max_duration_second=max_pulse_second, rest_fraction=rest_fraction)
    for k, end in spans:
        rest = rest_after(tr, end, rest_fraction)
        if rest is None:
            continue
        r0, r1 = rest
        warnings: list[str] = []
        tau = pulse_duration(tr, k, end)
        last = float(tr.t[end] - tr.t[k])
        # the pulse's own time runs from its edge; t_k is the first sample of the new current
        t_p = tr.t[k : end + 1] - tr.t[k]
        v_p = tr.v[k : end + 1]
        v_before, v_after = float(tr.v[k - 1]), float(tr.v[r1])
        d_es = v_after - v_before
        d_et = float(v_p[-1] - v_p[0])
        slope, _, r2 = _sqrt_t_fit(t_p[1:], v_p[1:])
        linear = bool(math.isfinite(r2) and r2 >= min_r2)
        if not linear:
            warnings.append(
                f"E against sqrt(t) during the pulse is not linear (R^2 {r2:.3g} < {min_r2:g}): "
                "the short-time solution does not hold; Weppner-Huggins D is not reliable"
            )
        rest_s = float(tr.t[r1] - tr.t[r0])
        t_r = tr.t[r0 : r1 + 1] - tr.t[r0]
        v_r = tr.v[r0 : r1 + 1]
        sel = t_r >= relax_start_fraction * rest_s
        tau_r = _relaxation_tau(t_r[sel], v_r[sel])
        if math.isfinite(tau_r) and tau_r > rest_s / 3:
            warnings.append(
                f"relaxation time constant {tau_r:.3g} s is not short against the rest "
                f"({rest_s:.3g} s): the relaxation D is uncertain"
            )
        tc = tr.at(tr.temperature_c, k - 1)
        out.append(
            GittStep(
                step_index=None if tr.step is None else int(tr.step[k]),
                cycle_count=None if tr.cycle is None else int(tr.cycle[k]),
                test_time_second=float(tr.t[k]),
                current_ampere=float(np.median(tr.i[k : end + 1])),
                pulse_second=tau,
                rest_second=rest_s,
                soc=None if soc is None else float(soc[k - 1]),
                soc_after=None if soc is None else float(soc[r1]),
                temperature_kelvin=None if tc is None else tc + ZERO_CELSIUS,
                relaxed_voltage_before_volt=v_before,
                relaxed_voltage_after_volt=v_after,
                ir_drop_volt=float(v_p[0] - v_before),
                delta_es_volt=d_es,
                delta_et_volt=d_et,
                sqrt_t_slope_volt_per_sqrt_second=slope,
                r2_sqrt_t=r2,
                sqrt_t_linear=linear,
                d_weppner_huggins_cm2_per_second=weppner_huggins(tau, length, d_es, d_et, last),
                d_sqrt_t_cm2_per_second=weppner_huggins(tau, length, d_es, slope * math.sqrt(tau)),
                relaxation_tau_second=tau_r,
                d_relaxation_cm2_per_second=(
                    geometry.d_from_relaxation(tau_r) if math.isfinite(tau_r) else math.nan
                ),
                warnings=warnings,
            )
        )
    return out


def pseudo_ocv(steps: list[GittStep]) -> pl.DataFrame:
    """The relaxed voltage after each titration step against SOC (where known): the GITT
    pseudo-OCV. Columns ``test_time_second`` (end of the rest), ``soc``, ``ocv_volt``."""
    return pl.DataFrame(
        {
            "test_time_second": [
                s.test_time_second + s.pulse_second + s.rest_second for s in steps
            ],
            "soc": [s.soc_after for s in steps],
            "ocv_volt": [s.relaxed_voltage_after_volt for s in steps],
        },
        schema={"test_time_second": pl.Float64, "soc": pl.Float64, "ocv_volt": pl.Float64},
    )
