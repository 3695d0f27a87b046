"""The conductivity report card: every figure and condition that inter-laboratory comparisons of
solid-electrolyte conductivity ask to be reported, in one record, with what is missing named.

Round-robin studies of the same powder measured in many labs (thiophosphates, oxides) found
spreads of an order of magnitude in sigma and of 0.1 eV in Ea, traced mostly to conditions that
papers did not report: pellet density, fabrication and stack pressure, contact material,
temperature equilibration, which resistance the conductivity was computed from, and the
temperature range behind Ea. The card carries:

* the result: sigma(25 degC) with its interval (interpolated or extrapolated), Ea in eV and
  kJ/mol with its interval, the temperature-dependence model and the alternatives it beat, the
  number of points and the temperature range;
* what the conductivity is: total (bulk + grain boundary) or bulk, and the impedance model
  (equivalent circuit) the resistances came from, with the band and amplitude;
* the sample: material, name and batch, thickness, area (and diameter for a disc), the
  geometric factor L/A, relative density, fabrication pressure, temperature and time, contacts;
* the conditions: stack pressure during the measurement (recorded, or measured by a gauge),
  the equilibration criteria and the drift actually reached, and the heating / cooling
  hysteresis at a repeated temperature;
* ``missing``: every item above that is not known, so a report says so instead of leaving it
  out.

:func:`conductivity_card` builds it from a :class:`~cellbench.analysis.conductivity.
ConductivityFit` and whatever is known; :func:`card_text` prints it for people.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cellbench.analysis.conductivity import ZERO_CELSIUS_K, ConductivityFit
from cellbench.core.schema import Cell

#: Items a card should carry; each that is None in the card is listed under ``missing``.
REQUIRED = (
    "material",
    "thickness_cm",
    "area_cm2",
    "relative_density",
    "fabrication_pressure_megapascal",
    "stack_pressure_megapascal",
    "electrode_contacts",
    "conductivity_kind",
    "impedance_model",
    "equilibration",
)


def _num(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def hysteresis(
    temperature_celsius: Sequence[float], conductivity_s_per_cm: Sequence[float], *, tol_k=1.0
) -> dict[str, float] | None:
    """The relative change of sigma between the first and the last point measured at the same
    temperature (within ``tol_k``): a heating-then-cooling check. None without a repeat."""
    t = np.asarray(temperature_celsius, dtype=float)
    s = np.asarray(conductivity_s_per_cm, dtype=float)
    for i in range(t.size):
        later = np.flatnonzero(np.abs(t[i + 1 :] - t[i]) <= tol_k)
        if later.size:
            j = i + 1 + int(later[-1])
            return {
                "temperature_celsius": float(t[i]),
                "first_siemens_per_centimeter": float(s[i]),
                "last_siemens_per_centimeter": float(s[j]),
                "relative_change": float(s[j] / s[i] - 1.0),
            }
    return None


def conductivity_card(
    fit: ConductivityFit,
    *,
    alternatives: Sequence[ConductivityFit] = (),
    cell: Cell | None = None,
    thickness_cm: float | None = None,
    area_cm2: float | None = None,
    material: str | None = None,
    relative_density: float | None = None,
    fabrication_pressure_megapascal: float | None = None,
    stack_pressure_megapascal: float | None = None,
    stack_pressure_source: str | None = None,
    electrode_contacts: str | None = None,
    conductivity_kind: str | None = None,
    impedance_model: str | None = None,
    frequency_range_hertz: tuple[float, float] | None = None,
    amplitude: str | None = None,
    equilibration: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """The card as a JSON-ready dict (module doc). Arguments override what ``cell`` (and its
    build record) says; None where unknown."""
    build = cell.build if cell is not None else None
    thickness_cm = thickness_cm if thickness_cm is not None else (cell and cell.thickness_cm)
    if thickness_cm is None and build is not None:
        thickness_cm = build.electrolyte_thickness_cm
    area_cm2 = area_cm2 if area_cm2 is not None else (cell and cell.area_cm2)

    def from_build(value: Any, key: str) -> Any:
        if value is not None:
            return value
        got = getattr(build, key, None) if build is not None else None
        return got if got not in (None, "") else None

    material = from_build(material, "electrolyte")
    relative_density = from_build(relative_density, "relative_density")
    fab_p = from_build(fabrication_pressure_megapascal, "fabrication_pressure_megapascal")
    if stack_pressure_megapascal is None and build is not None:
        stack_pressure_megapascal = build.stack_pressure_megapascal
        stack_pressure_source = "build record" if stack_pressure_megapascal is not None else None
    contacts = from_build(electrode_contacts, "electrode_contacts")
    t_c = fit.temperature_kelvin - ZERO_CELSIUS_K
    lo_c, hi_c = float(t_c.min()), float(t_c.max())
    diameter = 2 * math.sqrt(area_cm2 / math.pi) if area_cm2 else None
    card: dict[str, Any] = {
        "source": source,
        "material": material,
        "sample": (cell.name or None) if cell is not None else None,
        "batch": (build.batch or None) if build is not None else None,
        "conductivity_25c_siemens_per_centimeter": fit.conductivity_25c_siemens_per_centimeter,
        "conductivity_25c_ci": list(fit.conductivity_25c_ci),
        "conductivity_25c_extrapolated": not lo_c - 0.5 <= 25.0 <= hi_c + 0.5,
        "activation_energy_ev": fit.activation_energy_ev,
        "activation_energy_ev_ci": list(fit.activation_energy_ev_ci),
        "activation_energy_kj_per_mol": fit.activation_energy_kj_per_mol,
        "confidence": fit.confidence,
        "temperature_model": fit.model,
        "temperature_model_alternatives": {a.model: a.aic for a in alternatives},
        "n_points": fit.n_points,
        "temperature_range_celsius": [lo_c, hi_c],
        "conductivity_kind": conductivity_kind,
        "impedance_model": impedance_model,
        "frequency_range_hertz": list(frequency_range_hertz) if frequency_range_hertz else None,
        "amplitude": amplitude,
        "thickness_cm": thickness_cm,
        "area_cm2": area_cm2,
        "diameter_cm": diameter,
        "geometric_factor_per_centimeter": thickness_cm / area_cm2
        if thickness_cm and area_cm2
        else None,
        "relative_density": relative_density,
        "fabrication_pressure_megapascal": fab_p,
        "fabrication_temperature_celsius": from_build(None, "fabrication_temperature_celsius"),
        "fabrication_time_second": from_build(None, "fabrication_time_second"),
        "stack_pressure_megapascal": stack_pressure_megapascal,
        "stack_pressure_source": stack_pressure_source,
        "electrode_contacts": contacts,
        "equilibration": dict(equilibration) if equilibration else None,
        "hysteresis": hysteresis(t_c, fit.conductivity_siemens_per_centimeter),
    }
    card = {k: _num(v) for k, v in card.items()}
    card["missing"] = [k for k in REQUIRED if card.get(k) in (None, "")]
    return card


def _fmt(v: Any, unit: str = "", digits: int = 4) -> str:
    if v is None:
        return "not recorded"
    if isinstance(v, float):
        return f"{v:.{digits}g} {unit}".rstrip()
    return f"{v} {unit}".rstrip()


def card_text(card: Mapping[str, Any]) -> str:
    """The card as aligned lines for a lab notebook or a methods section."""
    pct = f"{100 * card['confidence']:g} %"
    s_lo, s_hi = card["conductivity_25c_ci"]
    e_lo, e_hi = card["activation_energy_ev_ci"]
    t_lo, t_hi = card["temperature_range_celsius"]
    extrap = " (extrapolated)" if card["conductivity_25c_extrapolated"] else ""
    lines = [
        ("source", _fmt(card.get("source"))),
        ("material", _fmt(card["material"])),
        ("sample / batch", f"{_fmt(card['sample'])} / {_fmt(card['batch'])}"),
        (
            "σ(25 °C)",
            f"{card['conductivity_25c_siemens_per_centimeter']:.4g} S/cm "
            f"({pct} CI {s_lo:.3g} to {s_hi:.3g}){extrap}",
        ),
        (
            "Ea",
            f"{card['activation_energy_ev']:.4f} eV ({pct} CI {e_lo:.4f} to {e_hi:.4f}) = "
            f"{card['activation_energy_kj_per_mol']:.2f} kJ/mol",
        ),
        (
            "model",
            f"{card['temperature_model']}, {card['n_points']} points, {t_lo:.1f} to {t_hi:.1f} °C",
        ),
        ("conductivity is", _fmt(card["conductivity_kind"])),
        ("impedance model", _fmt(card["impedance_model"])),
        ("band / amplitude", _band(card)),
        (
            "thickness / area",
            f"{_fmt(card['thickness_cm'], 'cm')} / {_fmt(card['area_cm2'], 'cm²')}",
        ),
        ("relative density", _fmt(card["relative_density"])),
        (
            "fabrication",
            f"{_fmt(card['fabrication_pressure_megapascal'], 'MPa')}"
            + _opt(card["fabrication_temperature_celsius"], "°C")
            + _opt(card["fabrication_time_second"], "s"),
        ),
        (
            "stack pressure",
            _fmt(card["stack_pressure_megapascal"], "MPa")
            + (f" ({card['stack_pressure_source']})" if card.get("stack_pressure_source") else ""),
        ),
        ("contacts", _fmt(card["electrode_contacts"])),
        ("equilibration", _equilibration(card.get("equilibration"))),
        ("hysteresis", _hysteresis(card.get("hysteresis"))),
    ]
    width = max(len(k) for k, _ in lines)
    out = [f"{k.ljust(width)}  {v}" for k, v in lines]
    if card["missing"]:
        out.append(f"{'missing'.ljust(width)}  {', '.join(card['missing'])}")
    return "\n".join(out)


def _opt(v: Any, unit: str) -> str:
    return f", {v:.4g} {unit}" if isinstance(v, float) else ""


def _band(card: Mapping[str, Any]) -> str:
    band = card.get("frequency_range_hertz")
    text = f"{band[1]:.3g} Hz to {band[0]:.3g} Hz" if band else "not recorded"
    return text + (f", {card['amplitude']}" if card.get("amplitude") else "")


def _equilibration(eq: Mapping[str, Any] | None) -> str:
    if not eq:
        return "not recorded"
    parts = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in eq.items()]
    return ", ".join(parts)


def _hysteresis(h: Mapping[str, Any] | None) -> str:
    if not h:
        return "no repeated temperature"
    return (
        f"{100 * h['relative_change']:+.1f} % at {h['temperature_celsius']:.1f} °C (last vs first)"
    )
