"""Ionic conductivity of a pellet between ion-blocking electrodes: bulk, grain boundary and
electrode capacitance from one impedance spectrum.

A solid electrolyte between blocking metal electrodes (Au, Pt, stainless steel, carbon) shows,
from high to low frequency, a bulk arc (grain interiors, C ~ pF), a grain-boundary arc
(C ~ 0.1-10 nF) and a capacitive spike of the blocked double layer (C ~ uF/cm2). Which of them
a sweep shows depends on the conductivity and the band: a fast conductor at room temperature
puts its bulk arc above 1 MHz, so the bulk reads as a series resistance. The templates:

==========================  ================================  ==================================
template                    circuit                           for
==========================  ================================  ==================================
``bulk_gb_electrode``       ``p(R1,CPE1)-p(R2,CPE2)-CPE3``    both arcs in the band
``bulk_electrode``          ``p(R1,CPE1)-CPE3``               one arc (glass, polymer, single
                                                              crystal: no separate grain arc)
``series_gb_electrode``     ``R0-p(R2,CPE2)-CPE3``            bulk arc above the band
``series_electrode``        ``R0-CPE3``                       only the spike (bulk and grain
                                                              boundary above the band)
==========================  ================================  ==================================

``L0-`` is prepended to each when the highest frequencies are inductive (leads). The template is
chosen by BIC among those whose resistances are determined (relative standard error below
10 %); the simpler template wins unless the richer one lowers BIC by more than 2.

Conductivities (S/cm) from the pellet thickness L / cm and electrode area A / cm2:

* ``sigma_bulk = L / (R_bulk A)``;
* ``sigma_gb`` (apparent, or "total-geometry" grain-boundary conductivity) ``= L / (R_gb A)``;
* ``sigma_gb_specific = (L / (R_gb A)) (C_bulk / C_gb)`` (brick-layer model; only where both arcs
  are in the band, so both capacitances are known);
* ``sigma_total = L / ((R_bulk + R_gb) A)``, the figure inter-laboratory studies compare.

Effective capacitances use Brug's formula (:func:`cellbench.analysis.solid_state.
effective_capacitance`); the spike's effective capacitance is the series form
``C = Q^(1/n) R_s^((1-n)/n)`` with ``R_s`` the total resistance in series. The bulk relative
permittivity ``eps_r = C_bulk L / (eps0 A)`` is a check on the bulk assignment (tens for
oxides and sulfides; a value in the thousands says the "bulk" arc is a grain-boundary arc).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cellbench.analysis.eis_fit import FitError, FitResult, clean_spectrum, fit_circuit
from cellbench.analysis.solid_state import (
    SolidStateError,
    classify_capacitance,
    effective_capacitance,
)

EPSILON0_F_PER_CM = 8.8541878128e-14


@dataclass(frozen=True)
class Template:
    """A blocking-electrode circuit and the role of each of its elements."""

    name: str
    circuit: str
    bulk: tuple[str, str | None]  # (resistor, its CPE or None when the bulk is a series R)
    gb: tuple[str, str] | None  # (resistor, CPE) of the grain-boundary arc
    electrode: str  # the blocking double-layer CPE


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            "bulk_gb_electrode",
            "p(R1,CPE1)-p(R2,CPE2)-CPE3",
            ("R1", "CPE1"),
            ("R2", "CPE2"),
            "CPE3",
        ),
        Template("bulk_electrode", "p(R1,CPE1)-CPE3", ("R1", "CPE1"), None, "CPE3"),
        Template("series_gb_electrode", "R0-p(R2,CPE2)-CPE3", ("R0", None), ("R2", "CPE2"), "CPE3"),
        Template("series_electrode", "R0-CPE3", ("R0", None), None, "CPE3"),
    )
}
BIC_GAIN = 2.0
DETERMINED_REL_STDERR = 0.1


class BlockingError(SolidStateError):
    """A spectrum or geometry the blocking-electrode analysis cannot use."""


@dataclass(frozen=True)
class BlockingFit:
    """Result of :func:`fit_blocking`. Resistances / ohm, capacitances / F, conductivities /
    S cm^-1, each value with its standard error (``nan`` where not defined)."""

    template: str
    circuit: str
    thickness_cm: float
    area_cm2: float
    r_bulk_ohm: float
    r_bulk_stderr_ohm: float
    r_grain_boundary_ohm: float
    r_grain_boundary_stderr_ohm: float
    r_total_ohm: float
    r_total_stderr_ohm: float
    c_bulk_farad: float
    c_grain_boundary_farad: float
    c_electrode_farad: float
    electrode_cpe_q: float
    electrode_cpe_n: float
    sigma_bulk_siemens_per_centimeter: float
    sigma_bulk_stderr_siemens_per_centimeter: float
    sigma_grain_boundary_siemens_per_centimeter: float
    sigma_grain_boundary_stderr_siemens_per_centimeter: float
    sigma_grain_boundary_specific_siemens_per_centimeter: float
    sigma_total_siemens_per_centimeter: float
    sigma_total_stderr_siemens_per_centimeter: float
    bulk_relative_permittivity: float
    bulk_from_series: bool
    warnings: tuple[str, ...]
    candidates: tuple[dict[str, Any], ...]
    fit: FitResult = field(repr=False)

    @property
    def electrode_capacitance_farad_per_square_centimeter(self) -> float:
        return self.c_electrode_farad / self.area_cm2

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite numbers become None); the fit itself under ``fit``."""

        def num(x: Any) -> Any:
            return x if not isinstance(x, float) or math.isfinite(x) else None

        out = {
            k: num(getattr(self, k))
            for k in self.__dataclass_fields__
            if k not in ("fit", "warnings", "candidates")
        }
        out["electrode_capacitance_farad_per_square_centimeter"] = num(
            self.electrode_capacitance_farad_per_square_centimeter
        )
        out["warnings"] = list(self.warnings)
        out["candidates"] = [dict(c) for c in self.candidates]
        out["fit"] = self.fit.to_dict()
        return out


def _positive(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise BlockingError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _determined(res: FitResult, names: list[str]) -> bool:
    for n in names:
        v, s = res.values[n], res.stderr[n]
        if not (math.isfinite(s) and v > 0 and s / v <= DETERMINED_REL_STDERR):
            return False
    return True


def _resistors(t: Template) -> list[str]:
    return [t.bulk[0]] + ([t.gb[0]] if t.gb else [])


def _choose(fits: list[tuple[Template, FitResult]]) -> int:
    """Index of the chosen fit: lowest BIC among determined ones, the simpler winning unless
    the richer gains more than BIC_GAIN; the lowest BIC overall when none is determined."""
    ok = [k for k, (t, r) in enumerate(fits) if _determined(r, _resistors(t))]
    pool = ok or list(range(len(fits)))
    pool.sort(key=lambda k: (len(fits[k][1].free), fits[k][1].bic))
    best = pool[0]
    for k in pool[1:]:
        gain = BIC_GAIN if len(fits[k][1].free) > len(fits[best][1].free) else 0.0
        if fits[k][1].bic < fits[best][1].bic - gain:
            best = k
    return best


def _arc_capacitance(res: FitResult, resistor: str, cpe: str) -> float:
    r, q, n = res.values[resistor], res.values[f"{cpe}.Q"], res.values[f"{cpe}.n"]
    if not (r > 0 and q > 0 and 0 < n <= 1):
        return math.nan
    return effective_capacitance(q, n, r)


def fit_blocking(
    frequency_hz: np.ndarray,
    z: np.ndarray,
    thickness_cm: float,
    area_cm2: float,
    *,
    template: str = "auto",
    inductance: bool | None = None,
    weight: str = "modulus",
) -> BlockingFit:
    """Fit a blocking-electrode template to one spectrum and derive the conductivities.

    Args:
        frequency_hz: frequencies / Hz.
        z: complex impedance / ohm (Z'' negative for capacitive).
        thickness_cm: pellet thickness L / cm.
        area_cm2: electrode area A / cm2.
        template: a name of :data:`TEMPLATES`, or ``auto`` (every template, chosen as the
            module doc says).
        inductance: prepend ``L0-`` (None: when the three highest frequencies are inductive).
        weight: the fit weighting (:mod:`cellbench.analysis.eis_fit`).
    """
    thickness_cm = _positive("thickness_cm", thickness_cm)
    area_cm2 = _positive("area_cm2", area_cm2)
    f, zz = clean_spectrum(frequency_hz, z)
    if f.size < 5:
        raise BlockingError(f"need at least 5 finite points, got {f.size}")
    if template == "auto":
        chosen = list(TEMPLATES.values())
    elif template in TEMPLATES:
        chosen = [TEMPLATES[template]]
    else:
        raise BlockingError(
            f"unknown template {template!r}; expected auto or one of {list(TEMPLATES)}"
        )
    if inductance is None:
        inductance = bool(np.any(zz[:3].imag > 0))
    fits: list[tuple[Template, FitResult]] = []
    for t in chosen:
        circuit = f"L0-{t.circuit}" if inductance else t.circuit
        try:
            fits.append((t, fit_circuit(circuit, f, zz, weight=weight)))
        except FitError:
            continue
    if not fits:
        raise BlockingError(f"no template could be fitted to {f.size} points")
    best = _choose(fits)
    t, res = fits[best]
    candidates = tuple(
        {
            "template": tt.name,
            "circuit": rr.circuit,
            "bic": rr.bic if math.isfinite(rr.bic) else None,
            "resistances_determined": _determined(rr, _resistors(tt)),
            "chosen": k == best,
        }
        for k, (tt, rr) in enumerate(fits)
    )
    return _derive(t, res, thickness_cm, area_cm2, candidates)


def _derive(
    t: Template,
    res: FitResult,
    thickness_cm: float,
    area_cm2: float,
    candidates: tuple[dict[str, Any], ...],
) -> BlockingFit:
    warnings: list[str] = []
    r_b, s_b = res.combined([t.bulk[0]])
    r_g, s_g = res.combined([t.gb[0]]) if t.gb else (0.0, 0.0)
    r_t, s_t = res.combined(_resistors(t))
    c_b = _arc_capacitance(res, *t.bulk) if t.bulk[1] else math.nan
    c_g = _arc_capacitance(res, *t.gb) if t.gb else math.nan
    q, n = res.values[f"{t.electrode}.Q"], res.values[f"{t.electrode}.n"]
    ok = q > 0 and 0 < n <= 1 and r_t > 0
    c_el = q ** (1 / n) * r_t ** ((n - 1) / n) if ok else math.nan  # Brug, series form
    geom = thickness_cm / area_cm2

    def sigma(r: float, s: float) -> tuple[float, float]:
        if not r > 0:
            return math.nan, math.nan
        return geom / r, geom / r * (s / r)

    sig_b, sig_b_se = sigma(r_b, s_b)
    sig_g, sig_g_se = sigma(r_g, s_g) if t.gb else (math.nan, math.nan)
    sig_t, sig_t_se = sigma(r_t, s_t)
    sig_g_spec = sig_g * c_b / c_g if t.gb and c_b > 0 and c_g > 0 else math.nan
    eps_r = c_b * thickness_cm / (EPSILON0_F_PER_CM * area_cm2) if c_b > 0 else math.nan
    for what, c, expect in (("bulk", c_b, "bulk"), ("grain-boundary", c_g, "grain_boundary")):
        if math.isfinite(c) and classify_capacitance(c) != expect:
            warnings.append(
                f"the {what} arc's effective capacitance {c:.3g} F reads as "
                f"{classify_capacitance(c)} (Irvine-Sinclair-West ranges); check the assignment"
            )
    if math.isfinite(c_el) and not 1e-8 <= c_el / area_cm2 <= 1e-3:
        warnings.append(
            f"electrode capacitance {c_el / area_cm2:.3g} F/cm2 is outside 1e-8..1e-3 F/cm2: "
            "the low-frequency spike may not be a blocking double layer"
        )
    if not _determined(res, _resistors(t)):
        warnings.append("the resistances are not determined to 10 % by these data")
    return BlockingFit(
        template=t.name,
        circuit=res.circuit,
        thickness_cm=thickness_cm,
        area_cm2=area_cm2,
        r_bulk_ohm=r_b,
        r_bulk_stderr_ohm=s_b,
        r_grain_boundary_ohm=r_g if t.gb else math.nan,
        r_grain_boundary_stderr_ohm=s_g if t.gb else math.nan,
        r_total_ohm=r_t,
        r_total_stderr_ohm=s_t,
        c_bulk_farad=c_b,
        c_grain_boundary_farad=c_g,
        c_electrode_farad=c_el,
        electrode_cpe_q=q,
        electrode_cpe_n=n,
        sigma_bulk_siemens_per_centimeter=sig_b,
        sigma_bulk_stderr_siemens_per_centimeter=sig_b_se,
        sigma_grain_boundary_siemens_per_centimeter=sig_g,
        sigma_grain_boundary_stderr_siemens_per_centimeter=sig_g_se,
        sigma_grain_boundary_specific_siemens_per_centimeter=sig_g_spec,
        sigma_total_siemens_per_centimeter=sig_t,
        sigma_total_stderr_siemens_per_centimeter=sig_t_se,
        bulk_relative_permittivity=eps_r,
        bulk_from_series=t.bulk[1] is None,
        warnings=tuple(warnings),
        candidates=candidates,
        fit=res,
    )
