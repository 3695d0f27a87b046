"""Blocking-electrode fits (bulk, grain boundary, electrode capacitance) on synthetic pellets
with known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cellbench.analysis.blocking import EPSILON0_F_PER_CM, BlockingError, fit_blocking
from cellbench.analysis.eis_synth import frequencies, noisy_spectrum

L_CM, A_CM2 = 0.1, 0.785
TWO_ARCS = "p(R1,CPE1)-p(R2,CPE2)-CPE3"


def _q(r_ohm: float, c_farad: float, n: float) -> float:
    """CPE Q whose p(R, CPE) arc has the effective capacitance ``c_farad`` (Hsu-Mansfeld)."""
    return (c_farad * r_ohm ** ((n - 1) / n)) ** n


def _pellet(r_b=1000.0, c_b=5e-12, r_gb=3000.0, c_gb=1e-9, q_el=2e-6, n_el=0.9):
    return {
        "R1": r_b,
        "CPE1.Q": _q(r_b, c_b, 0.95),
        "CPE1.n": 0.95,
        "R2": r_gb,
        "CPE2.Q": _q(r_gb, c_gb, 0.85),
        "CPE2.n": 0.85,
        "CPE3.Q": q_el,
        "CPE3.n": n_el,
    }


def test_bulk_and_grain_boundary_arcs_in_band():
    p = _pellet()
    f = frequencies(1e7, 1e-1, 10)
    z = noisy_spectrum(
        "p(R1,CPE1)-p(R2,CPE2)-CPE3", p, f, noise=0.005, rng=np.random.default_rng(3)
    )
    res = fit_blocking(f, z, L_CM, A_CM2)
    assert res.template == "bulk_gb_electrode" and not res.bulk_from_series
    assert res.r_bulk_ohm == pytest.approx(1000.0, rel=0.02)
    assert res.r_grain_boundary_ohm == pytest.approx(3000.0, rel=0.02)
    assert res.sigma_bulk_siemens_per_centimeter == pytest.approx(L_CM / (1000 * A_CM2), rel=0.02)
    assert res.sigma_grain_boundary_siemens_per_centimeter == pytest.approx(
        L_CM / (3000 * A_CM2), rel=0.02
    )
    assert res.sigma_total_siemens_per_centimeter == pytest.approx(L_CM / (4000 * A_CM2), rel=0.01)
    assert res.c_bulk_farad == pytest.approx(5e-12, rel=0.1)
    assert res.c_grain_boundary_farad == pytest.approx(1e-9, rel=0.1)
    # brick layer: sigma_gb,specific = sigma_gb,apparent * C_b / C_gb
    assert res.sigma_grain_boundary_specific_siemens_per_centimeter == pytest.approx(
        L_CM / (3000 * A_CM2) * 5e-12 / 1e-9, rel=0.15
    )
    assert res.bulk_relative_permittivity == pytest.approx(
        5e-12 * L_CM / (EPSILON0_F_PER_CM * A_CM2), rel=0.1
    )
    c_el = 2e-6 ** (1 / 0.9) * 4000.0 ** (-0.1 / 0.9)  # Brug, series form
    assert res.c_electrode_farad == pytest.approx(c_el, rel=0.05)
    assert res.electrode_cpe_n == pytest.approx(0.9, abs=0.01)
    assert (
        res.sigma_total_stderr_siemens_per_centimeter
        < 0.01 * res.sigma_total_siemens_per_centimeter
    )
    assert res.warnings == ()
    assert sum(c["chosen"] for c in res.candidates) == 1
    d = res.to_dict()
    assert d["template"] == "bulk_gb_electrode" and d["fit"]["circuit"] == res.circuit


def test_bulk_above_band_reads_as_series_resistance():
    # a sulfide at room temperature: the bulk arc (pF, 100 ohm) apexes near 300 MHz
    p = _pellet(r_b=100.0, c_b=5e-12, r_gb=400.0, c_gb=2e-9)
    f = frequencies(1e6, 1e-1, 10)
    z = noisy_spectrum(
        "p(R1,CPE1)-p(R2,CPE2)-CPE3", p, f, noise=0.005, rng=np.random.default_rng(4)
    )
    res = fit_blocking(f, z, L_CM, A_CM2)
    assert res.template == "series_gb_electrode" and res.bulk_from_series
    assert res.r_bulk_ohm == pytest.approx(100.0, rel=0.05)
    assert res.r_grain_boundary_ohm == pytest.approx(400.0, rel=0.05)
    assert math.isnan(res.c_bulk_farad) and math.isnan(res.bulk_relative_permittivity)
    assert res.sigma_total_siemens_per_centimeter == pytest.approx(L_CM / (500 * A_CM2), rel=0.02)


def test_single_arc_polymer_with_leads_inductance():
    # a polymer film: one arc and the spike; 1 uH of leads
    params = {"L0": 1e-6, "R1": 50.0, "CPE1.Q": _q(50.0, 2e-10, 0.9), "CPE1.n": 0.9}
    params |= {"CPE3.Q": 5e-6, "CPE3.n": 0.88}
    f = frequencies(1e7, 1.0, 10)
    z = noisy_spectrum("L0-p(R1,CPE1)-CPE3", params, f, noise=0.003, rng=np.random.default_rng(5))
    res = fit_blocking(f, z, 0.01, 1.0)
    assert res.circuit.startswith("L0-")
    assert res.template == "bulk_electrode"
    assert res.r_bulk_ohm == pytest.approx(50.0, rel=0.03)
    assert res.sigma_total_siemens_per_centimeter == pytest.approx(0.01 / 50.0, rel=0.03)
    assert math.isnan(res.r_grain_boundary_ohm)


def test_wrong_capacitance_is_warned():
    # a "bulk" arc with 1 nF is a grain-boundary arc: the assignment is flagged
    p = _pellet(r_b=2000.0, c_b=1e-9)
    f = frequencies(1e7, 1e-1, 10)
    z = noisy_spectrum(
        "p(R1,CPE1)-CPE3",
        {k: p[k] for k in ("R1", "CPE1.Q", "CPE1.n", "CPE3.Q", "CPE3.n")},
        f,
        noise=0.003,
        rng=np.random.default_rng(6),
    )
    res = fit_blocking(f, z, L_CM, A_CM2, template="bulk_electrode")
    assert any("reads as grain_boundary" in w for w in res.warnings)


def test_bad_inputs():
    f = frequencies(1e6, 1.0, 5)
    z = noisy_spectrum("R0-CPE3", {"R0": 10.0, "CPE3.Q": 1e-6, "CPE3.n": 0.9}, f, noise=0.0)
    with pytest.raises(BlockingError, match="thickness_cm"):
        fit_blocking(f, z, 0.0, 1.0)
    with pytest.raises(BlockingError, match="unknown template"):
        fit_blocking(f, z, 0.1, 1.0, template="nope")
    with pytest.raises(BlockingError, match="at least 5"):
        fit_blocking(f[:3], z[:3], 0.1, 1.0)


def test_cli_blocking_on_an_eis_file(tmp_path, capsys):
    import json

    from cellbench.cli.main import main

    p = _pellet()
    f = frequencies(1e7, 1e-1, 10)
    z = noisy_spectrum(TWO_ARCS, p, f, noise=0.003, rng=np.random.default_rng(7))
    path = tmp_path / "pellet.csv"  # frequency, Z', Z'' without a header (impedance.py style)
    np.savetxt(path, np.column_stack([f, z.real, z.imag]), delimiter=",")
    args = ["analyze", "blocking", str(path), "--thickness-cm", "0.1", "--area-cm2", "0.785"]
    assert main([*args, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["template"] == "bulk_gb_electrode"
    assert d["sigma_total_siemens_per_centimeter"] == pytest.approx(L_CM / (4000 * A_CM2), rel=0.01)
    assert "fit" not in d
    assert main(args) == 0
    assert "bulk_gb_electrode" in capsys.readouterr().out
    assert main(["analyze", "blocking", str(path)]) == 1
    assert "geometry is unknown" in capsys.readouterr().err
