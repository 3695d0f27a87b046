"""Batch fitting of many sweeps, and the solid-state helpers."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from cellbench.analysis.eis_batch import BatchError, fit_spectra, iter_sweeps
from cellbench.analysis.eis_fit import fit_circuit
from cellbench.analysis.eis_synth import frequencies, noisy_spectrum
from cellbench.analysis.solid_state import (
    SolidStateError,
    arcs,
    bulk_and_grain_boundary,
    classify_capacitance,
    effective_capacitance,
    interfacial_asr,
    ionic_conductivity,
)

F = frequencies(1e6, 0.1, 8)
CIRCUIT = "R0-p(R1,CPE1)-p(R2,CPE2)"


def _interface_growth_run(n_sweeps: int = 6) -> tuple[pl.DataFrame, list[float]]:
    """A run in the spectra layout: the interface resistance R2 grows 10 % per sweep."""
    rng = np.random.default_rng(9)
    frames, r2s = [], []
    for k in range(n_sweeps):
        r2 = 500.0 * 1.1**k
        r2s.append(r2)
        p = {"R0": 80.0, "R1": 2000.0, "CPE1.Q": 2.9e-9, "CPE1.n": 0.92, "R2": r2}
        p.update({"CPE2.Q": 3e-6, "CPE2.n": 0.85})
        z = noisy_spectrum(CIRCUIT, p, F, noise=0.005, rng=rng)
        frames.append(
            pl.DataFrame(
                {
                    "channel": "A",
                    "sweep_index": k,
                    "cycle_count": 10 * k + 1,
                    "test_time_second": 3600.0 * k + np.arange(F.size, dtype=float),
                    "frequency_hertz": F,
                    "z_real_ohm": z.real,
                    "z_imag_ohm": z.imag,
                },
                schema_overrides={"sweep_index": pl.Int32, "cycle_count": pl.Int32},
            )
        )
    # stored out of order: the batch must sort sweeps, keeping each sweep's point order
    return pl.concat(frames[::-1]), r2s


def test_batch_fit_returns_one_row_per_sweep_with_uncertainties():
    frame, r2s = _interface_growth_run()
    results = []
    table = fit_spectra(frame, CIRCUIT, results=results)
    assert table.height == 6
    assert table["sweep_index"].to_list() == list(range(6))
    assert table["cycle_count"].to_list() == [1, 11, 21, 31, 41, 51]
    assert table["test_time_second"].to_list() == [3600.0 * k for k in range(6)]
    np.testing.assert_allclose(table["R2"].to_numpy(), r2s, rtol=0.03)
    assert {"R2_stderr", "CPE1.n_stderr", "chi2", "reduced_chi2", "poorly_determined"} <= set(
        table.columns
    )
    assert (table["R2_stderr"] > 0).all() and (table["R2_stderr"] < 0.02 * table["R2"]).all()
    # warm starts: every sweep after the first starts from the previous sweep's parameters
    assert results[1].starts == 1
    assert results[1].initial == pytest.approx(results[0].values)


def test_iter_sweeps_needs_impedance_columns():
    with pytest.raises(BatchError, match="lacks columns"):
        list(iter_sweeps(pl.DataFrame({"frequency_hertz": [1.0]})))
    one = pl.DataFrame(
        {"frequency_hertz": [1.0, 2.0], "z_real_ohm": [1.0, 1.0], "z_imag_ohm": [0.0, -1.0]}
    )
    ((info, f, z),) = list(iter_sweeps(one))
    assert info == {} and f.tolist() == [1.0, 2.0] and z[1] == 1 - 1j


def test_asr_and_conductivity_with_uncertainty():
    asr, sd = interfacial_asr(100.0, 0.5, r_stderr_ohm=2.0, area_stderr_cm2=0.005)
    assert asr == pytest.approx(25.0)  # two interfaces in a symmetric cell
    assert sd == pytest.approx(25.0 * math.hypot(0.02, 0.01))
    assert interfacial_asr(100.0, 0.5, interfaces=1)[0] == pytest.approx(50.0)
    sigma, sd = ionic_conductivity(
        250.0, 0.1, 0.785, r_stderr_ohm=5.0, thickness_stderr_cm=0.002, area_stderr_cm2=0.0
    )
    assert sigma == pytest.approx(0.1 / (250 * 0.785))
    assert sd == pytest.approx(sigma * math.hypot(0.02, 0.02))
    with pytest.raises(SolidStateError, match="thickness_cm must be a positive"):
        ionic_conductivity(250.0, 0.0, 0.785)


def test_effective_capacitance_and_classification():
    # n = 1: the CPE is a capacitor
    assert effective_capacitance(2e-9, 1.0, 1e3) == pytest.approx(2e-9)
    # Hsu-Mansfeld form puts the apex at 1 / (R C)
    q, n, r = 3e-9, 0.8, 1e4
    c = effective_capacitance(q, n, r)
    apex = (r * q) ** (-1 / n)
    assert 1 / (r * c) == pytest.approx(apex, rel=1e-12)
    # Brug with a series resistance: smaller than without
    assert effective_capacitance(q, n, r, 100.0) < c
    assert classify_capacitance(5e-12) == "bulk"
    assert classify_capacitance(1e-9) == "grain_boundary"
    assert classify_capacitance(1e-6) == "interface"
    assert classify_capacitance(1e-2) == "electrode"


def test_arcs_assigned_by_capacitance_and_bulk_from_series():
    p = {"R0": 80.0, "R1": 2000.0, "CPE1.Q": 2.9e-9, "CPE1.n": 0.92, "R2": 500.0}
    p.update({"CPE2.Q": 3e-6, "CPE2.n": 0.85})
    z = noisy_spectrum(CIRCUIT, p, F, noise=0.003, rng=np.random.default_rng(4))
    res = fit_circuit(CIRCUIT, F, z)
    found = arcs(res)
    assert [a.assignment for a in found] == ["grain_boundary", "interface"]
    assert found[0].apex_hz > found[1].apex_hz
    split = bulk_and_grain_boundary(res)
    assert split["bulk_from_series"] is True
    assert split["bulk_resistors"] == ["R0"] and split["grain_boundary_resistors"] == ["R1"]
    assert split["r_total_ohm"] == pytest.approx(2080.0, rel=0.02)
    assert 0 < split["r_total_stderr_ohm"] < 20.0
    assert split["split_determined"] is True
