"""Conductivity against temperature from a table: the points an Arrhenius or VTF fit takes.

A table (a CSV kept beside the impedance files, a frame of batch fits) has a temperature column,
``temperature_celsius`` or ``temperature_kelvin``, and either

* the conductivity: ``conductivity_siemens_per_centimeter`` (S/cm), optionally with
  ``conductivity_stderr_siemens_per_centimeter`` to weight the fit; or
* the resistance: ``resistance_ohm``, optionally ``resistance_stderr_ohm``, with the pellet
  geometry (arguments, else ``thickness_cm`` and ``area_cm2`` columns): sigma = L / (R A), its
  standard error sigma * se(R) / R.

:func:`conductivity_points` reads such a frame; :func:`cellbench.analysis.conductivity.fit_all`
fits what it returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from cellbench.analysis.conductivity import ConductivityError, TemperatureUnit

__all__ = ["ConductivityPoints", "conductivity_points"]

SIGMA = "conductivity_siemens_per_centimeter"
SIGMA_STDERR = "conductivity_stderr_siemens_per_centimeter"
RESISTANCE = "resistance_ohm"
RESISTANCE_STDERR = "resistance_stderr_ohm"


@dataclass(frozen=True)
class ConductivityPoints:
    """Temperatures (in ``temperature_unit``) and conductivities / S cm^-1, with their standard
    errors / S cm^-1 when the table gives them (else None)."""

    temperature: np.ndarray
    temperature_unit: TemperatureUnit
    conductivity_s_per_cm: np.ndarray
    stderr_s_per_cm: np.ndarray | None

    @property
    def temperature_celsius(self) -> np.ndarray:
        if self.temperature_unit == "kelvin":
            return self.temperature - 273.15
        return self.temperature


def conductivity_points(
    table: pl.DataFrame, *, thickness_cm: float | None = None, area_cm2: float | None = None
) -> ConductivityPoints:
    """The points of ``table`` (see the module docstring); ``thickness_cm`` / ``area_cm2``
    override the table's geometry columns. Raises :class:`ConductivityError` naming the missing
    column or the first bad data row (1-based)."""
    if "temperature_celsius" in table.columns:
        t_col, unit = "temperature_celsius", "celsius"
    elif "temperature_kelvin" in table.columns:
        t_col, unit = "temperature_kelvin", "kelvin"
    else:
        raise ConductivityError(
            f"needs a temperature_celsius or temperature_kelvin column; has {table.columns}"
        )
    temperature = table[t_col].cast(pl.Float64).to_numpy()
    if SIGMA in table.columns:
        sigma = table[SIGMA].cast(pl.Float64).to_numpy()
        stderr = (
            table[SIGMA_STDERR].cast(pl.Float64).to_numpy()
            if SIGMA_STDERR in table.columns
            else None
        )
    elif RESISTANCE in table.columns:
        sigma, stderr = _from_resistance(table, thickness_cm, area_cm2)
    else:
        raise ConductivityError(f"needs a {SIGMA} or {RESISTANCE} column; has {table.columns}")
    return ConductivityPoints(temperature, unit, sigma, stderr)


def _from_resistance(
    table: pl.DataFrame, thickness_cm: float | None, area_cm2: float | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """sigma = L / (R A) per row and, with ``resistance_stderr_ohm``, its standard error."""
    if thickness_cm is None and "thickness_cm" in table.columns:
        thickness_cm = float(table["thickness_cm"][0])
    if area_cm2 is None and "area_cm2" in table.columns:
        area_cm2 = float(table["area_cm2"][0])
    if thickness_cm is None or area_cm2 is None:
        raise ConductivityError(
            "resistance_ohm needs the pellet geometry: give the thickness and area "
            "(--thickness-cm and --area-cm2, or thickness_cm and area_cm2 columns)"
        )
    for name, value in (("thickness_cm", thickness_cm), ("area_cm2", area_cm2)):
        if not (math.isfinite(value) and value > 0):
            raise ConductivityError(f"{name} must be a positive finite number, got {value!r}")
    r = table[RESISTANCE].cast(pl.Float64).to_numpy()
    bad = ~(np.isfinite(r) & (r > 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = float(r[row])
        raise ConductivityError(
            f"data row {row + 1}: resistance_ohm must be a positive finite number, got {value!r}"
        )
    sigma = thickness_cm / (r * area_cm2)
    if RESISTANCE_STDERR not in table.columns:
        return sigma, None
    r_se = table[RESISTANCE_STDERR].cast(pl.Float64).fill_null(0.0).to_numpy()
    return sigma, sigma * np.abs(r_se) / r
