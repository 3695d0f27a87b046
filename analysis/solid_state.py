"""Solid-electrolyte quantities from impedance fits: interfacial ASR, bulk and grain-boundary
assignment, ionic conductivity; each with its propagated standard error.

Arcs are assigned by their effective capacitance (Irvine, Sinclair and West, Adv. Mater. 2 (1990)
132), with the ranges used for sintered and cold-pressed solid electrolytes:

==================  ====================  ===============================================
assignment          C_eff / F             process
==================  ====================  ===============================================
``bulk``            < 5e-11               grain interiors (pF; 1e-12..1e-10)
``grain_boundary``  5e-11 .. 1e-8         grain boundaries (1e-11..1e-8)
``interface``       1e-8 .. 1e-4          electrolyte | electrode interface, surface layers
``electrode``       >= 1e-4               charge transfer, double layer, diffusion
==================  ====================  ===============================================

The bulk and grain-boundary ranges overlap; the boundary between them is put at 5e-11 F, the
geometric middle of their centres. For a ``p(R, CPE)`` arc the effective capacitance is Brug's
(J. Electroanal. Chem. 176 (1984) 275), ``C = Q^(1/n) (1/R_s + 1/R)^((n-1)/n)``; without the
series resistance R_s it reduces to ``Q^(1/n) R^((1-n)/n)`` (Hsu and Mansfeld), which makes the
arc's apex ``omega = 1 / (R C)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from cellbench.analysis.circuits import Circuit, Element, parse_circuit
from cellbench.analysis.eis_fit import FitResult
from cellbench.core.errors import CellbenchError

CAPACITANCE_RANGES_F: tuple[tuple[str, float, float], ...] = (
    ("bulk", 0.0, 5e-11),
    ("grain_boundary", 5e-11, 1e-8),
    ("interface", 1e-8, 1e-4),
    ("electrode", 1e-4, math.inf),
)


class SolidStateError(CellbenchError, ValueError):
    """Inputs that the solid-state helpers cannot use (non-positive area, no arcs, ...)."""


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise SolidStateError(f"{name} must be a positive finite number, got {value!r}")


def interfacial_asr(
    r_interface_ohm: float,
    area_cm2: float,
    *,
    r_stderr_ohm: float = 0.0,
    area_stderr_cm2: float = 0.0,
    interfaces: int = 2,
) -> tuple[float, float]:
    """Area-specific resistance of one interface / ohm cm^2, and its standard error.

    A symmetric cell (Li | SE | Li) has two equal interfaces in series, so
    ``ASR = R_int * area / 2``; pass ``interfaces=1`` for a cell with one.
    """
    _positive("area_cm2", area_cm2)
    if interfaces < 1:
        raise SolidStateError(f"interfaces must be at least 1, got {interfaces}")
    asr = r_interface_ohm * area_cm2 / interfaces
    rel = math.hypot(
        r_stderr_ohm / r_interface_ohm if r_interface_ohm else 0.0, area_stderr_cm2 / area_cm2
    )
    return asr, abs(asr) * rel


def ionic_conductivity(
    r_ohm: float,
    thickness_cm: float,
    area_cm2: float,
    *,
    r_stderr_ohm: float = 0.0,
    thickness_stderr_cm: float = 0.0,
    area_stderr_cm2: float = 0.0,
) -> tuple[float, float]:
    """Ionic conductivity sigma = L / (R A) / S cm^-1 and its standard error (relative errors of
    R, L and A added in quadrature)."""
    for name, v in (("r_ohm", r_ohm), ("thickness_cm", thickness_cm), ("area_cm2", area_cm2)):
        _positive(name, v)
    sigma = thickness_cm / (r_ohm * area_cm2)
    rel = math.sqrt(
        (r_stderr_ohm / r_ohm) ** 2
        + (thickness_stderr_cm / thickness_cm) ** 2
        + (area_stderr_cm2 / area_cm2) ** 2
    )
    return sigma, sigma * rel


def effective_capacitance(
    q: float, n: float, r_parallel_ohm: float, r_series_ohm: float | None = None
) -> float:
    """Effective capacitance / F of a CPE (Q / F s^(n-1), exponent n) in an arc (Brug)."""
    _positive("Q", q)
    _positive("r_parallel_ohm", r_parallel_ohm)
    if not 0 < n <= 1:
        raise SolidStateError(f"CPE exponent n must be in (0, 1], got {n!r}")
    g = 1.0 / r_parallel_ohm
    if r_series_ohm is not None and r_series_ohm > 0:
        g += 1.0 / r_series_ohm
    return q ** (1 / n) * g ** ((n - 1) / n)


def classify_capacitance(c_farad: float) -> str:
    """``bulk``, ``grain_boundary``, ``interface`` or ``electrode`` (module table)."""
    for name, lo, hi in CAPACITANCE_RANGES_F:
        if lo <= c_farad < hi:
            return name
    return "electrode"


@dataclass(frozen=True)
class Arc:
    """One ``p(R, C)`` / ``p(R, CPE)`` block of a fit, with its assignment."""

    resistor: str
    capacitor: str
    r_ohm: float
    r_stderr_ohm: float
    c_eff_farad: float
    apex_hz: float
    assignment: str

    def to_dict(self) -> dict:
        return asdict(self)


def _series_resistors(c: Circuit) -> list[str]:
    """Names of the resistors directly in the top-level series."""
    return [it.name for it in c.series_items if isinstance(it, Element) and it.kind == "R"]


def arcs(result: FitResult, *, series_resistor: str | None = None) -> list[Arc]:
    """The fit's R-C / R-CPE arcs, high frequency first, assigned by effective capacitance.

    ``series_resistor`` names the series resistance used in Brug's formula; by default the
    top-level resistors' sum (none: the Hsu-Mansfeld form).
    """
    c = parse_circuit(result.circuit)
    if series_resistor is not None:
        r_s = result.values[series_resistor]
    else:
        rs = [result.values[name] for name in _series_resistors(c)]
        r_s = sum(rs) if rs else None
    out = []
    for r_el, cap in c.rc_blocks:
        r = result.values[r_el.name]
        cap_name = cap.name
        if cap.kind == "C":
            c_eff = result.values[cap_name]
        else:
            q, n = result.values[f"{cap_name}.Q"], result.values[f"{cap_name}.n"]
            c_eff = effective_capacitance(q, n, r, r_s) if r > 0 and q > 0 and n > 0 else math.nan
        apex = 1 / (2 * math.pi * r * c_eff) if r > 0 and c_eff > 0 else math.nan
        out.append(
            Arc(
                resistor=r_el.name,
                capacitor=cap_name,
                r_ohm=r,
                r_stderr_ohm=result.stderr[r_el.name],
                c_eff_farad=c_eff,
                apex_hz=apex,
                assignment=classify_capacitance(c_eff) if math.isfinite(c_eff) else "unknown",
            )
        )
    out.sort(key=lambda a: -a.apex_hz if math.isfinite(a.apex_hz) else math.inf)
    return out


def bulk_and_grain_boundary(result: FitResult) -> dict[str, float | bool | list[str]]:
    """R_bulk, R_gb and their sum / ohm with standard errors (covariances included).

    Arcs assigned ``bulk`` (``grain_boundary``) add to R_bulk (R_gb). When no arc has a bulk
    capacitance, the bulk arc lies above the band and R_bulk is the series resistance (the
    top-level resistors); ``bulk_from_series`` says so. When the split between the two is not
    determined by the data (either is in the fit's ``poorly_determined``), ``split_determined``
    is False; the total is usually still well determined and is what a conductivity needs.
    """
    found = arcs(result)
    bulk = [a.resistor for a in found if a.assignment == "bulk"]
    gb = [a.resistor for a in found if a.assignment == "grain_boundary"]
    from_series = not bulk
    if from_series:
        bulk = _series_resistors(parse_circuit(result.circuit))
    if not bulk and not gb:
        raise SolidStateError(
            f"circuit {result.circuit!r} has no bulk or grain-boundary resistance"
        )
    r_b, s_b = result.combined(bulk) if bulk else (0.0, 0.0)
    r_g, s_g = result.combined(gb) if gb else (0.0, 0.0)
    r_t, s_t = result.combined(bulk + gb)
    poorly = set(result.poorly_determined)
    return {
        "r_bulk_ohm": r_b,
        "r_bulk_stderr_ohm": s_b,
        "r_grain_boundary_ohm": r_g,
        "r_grain_boundary_stderr_ohm": s_g,
        "r_total_ohm": r_t,
        "r_total_stderr_ohm": s_t,
        "bulk_from_series": from_series,
        "split_determined": not (poorly & set(bulk + gb)),
        "bulk_resistors": bulk,
        "grain_boundary_resistors": gb,
    }
