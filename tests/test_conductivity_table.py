"""Conductivity points from a table (analysis/conductivity_table.py), without the command line."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellbench.analysis.conductivity import ConductivityError, fit_all
from cellbench.analysis.conductivity_table import conductivity_points

T_C = np.array([25.0, 40.0, 60.0, 80.0])
R = np.array([1000.0, 520.0, 230.0, 110.0])


def test_conductivity_column_is_taken_as_is() -> None:
    sigma = 1e-4 * np.arange(1, 5)
    table = pl.DataFrame(
        {
            "temperature_kelvin": T_C + 273.15,
            "conductivity_siemens_per_centimeter": sigma,
            "conductivity_stderr_siemens_per_centimeter": 0.1 * sigma,
        }
    )
    p = conductivity_points(table)
    assert p.temperature_unit == "kelvin"
    assert p.temperature_celsius == pytest.approx(T_C)
    assert p.conductivity_s_per_cm == pytest.approx(sigma)
    assert p.stderr_s_per_cm == pytest.approx(0.1 * sigma)


def test_resistance_with_geometry_gives_sigma_and_its_error() -> None:
    table = pl.DataFrame(
        {"temperature_celsius": T_C, "resistance_ohm": R, "resistance_stderr_ohm": 0.02 * R}
    )
    p = conductivity_points(table, thickness_cm=0.1, area_cm2=0.5)
    assert p.conductivity_s_per_cm == pytest.approx(0.1 / (R * 0.5))
    assert p.stderr_s_per_cm == pytest.approx(0.02 * 0.1 / (R * 0.5))
    # geometry from columns when not given; no stderr column -> None; the points fit
    with_geometry = table.drop("resistance_stderr_ohm").with_columns(
        thickness_cm=pl.lit(0.1), area_cm2=pl.lit(0.5)
    )
    q = conductivity_points(with_geometry)
    assert q.stderr_s_per_cm is None
    assert q.conductivity_s_per_cm == pytest.approx(p.conductivity_s_per_cm)
    assert fit_all(q.temperature, q.conductivity_s_per_cm)


@pytest.mark.parametrize(
    ("table", "kwargs", "message"),
    [
        (pl.DataFrame({"t": [1.0], "resistance_ohm": [1.0]}), {}, "temperature_celsius or"),
        (pl.DataFrame({"temperature_celsius": [1.0], "x": [1.0]}), {}, "resistance_ohm column"),
        (
            pl.DataFrame({"temperature_celsius": [1.0], "resistance_ohm": [1.0]}),
            {},
            "pellet geometry",
        ),
        (
            pl.DataFrame({"temperature_celsius": T_C, "resistance_ohm": [1.0, -5.0, 2.0, None]}),
            {"thickness_cm": 0.1, "area_cm2": 0.5},
            "data row 2: resistance_ohm must be a positive finite number, got -5.0",
        ),
        (
            pl.DataFrame({"temperature_celsius": T_C, "resistance_ohm": R}),
            {"thickness_cm": 0.0, "area_cm2": 0.5},
            "thickness_cm must be a positive",
        ),
    ],
)
def test_bad_tables_say_what_is_wrong(table, kwargs, message) -> None:
    with pytest.raises(ConductivityError, match=message):
        conductivity_points(table, **kwargs)
