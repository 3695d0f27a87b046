"""Arrhenius and VTF fits recover known activation energies within their intervals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellbench.analysis.conductivity import (
    BOLTZMANN_EV_PER_K,
    KJ_PER_MOL_PER_EV,
    ConductivityError,
    choose_model,
    conductivity_from_resistance,
    fit_all,
    fit_arrhenius,
    fit_conductivity,
    fit_vtf,
)

T_C = np.arange(-20.0, 101.0, 10.0)  # a usual temperature programme, degC


def arrhenius_data(ea_ev=0.35, sigma0=5e2, noise=0.03, seed=0, times_t=False):
    t_k = T_C + 273.15
    s = sigma0 * np.exp(-ea_ev / (BOLTZMANN_EV_PER_K * t_k))
    if times_t:
        s = s / t_k
    rng = np.random.default_rng(seed)
    return s * np.exp(noise * rng.standard_normal(t_k.size))


def test_arrhenius_recovers_ea_and_sigma25_within_ci():
    sigma = arrhenius_data()
    fit = fit_arrhenius(T_C, sigma)
    lo, hi = fit.activation_energy_ev_ci
    assert lo < 0.35 < hi
    assert hi - lo < 0.02  # 13 points, 3 % scatter: a tight interval, not a vacuous one
    s25 = 5e2 * np.exp(-0.35 / (BOLTZMANN_EV_PER_K * 298.15))
    lo25, hi25 = fit.conductivity_25c_ci
    assert lo25 < s25 < hi25
    assert fit.activation_energy_kj_per_mol == pytest.approx(0.35 * KJ_PER_MOL_PER_EV, rel=0.03)
    assert fit.predict(298.15)[()] == pytest.approx(fit.conductivity_25c_siemens_per_centimeter)


def test_ci_coverage_is_close_to_nominal():
    """Over many noisy data sets the 95 % interval holds the truth about 95 % of the time."""
    hits = 0
    trials = 300
    for seed in range(trials):
        fit = fit_arrhenius(T_C[:5], arrhenius_data(noise=0.05, seed=seed)[:5])
        lo, hi = fit.activation_energy_ev_ci
        hits += lo < 0.35 < hi
    assert 0.91 < hits / trials < 0.99


def test_sigma_t_form_and_kelvin_input():
    sigma = arrhenius_data(ea_ev=0.5, sigma0=1e6, times_t=True, seed=3)
    fit = fit_arrhenius(T_C + 273.15, sigma, temperature_unit="kelvin", times_temperature=True)
    assert fit.model == "arrhenius_t"
    lo, hi = fit.activation_energy_ev_ci
    assert lo < 0.5 < hi
    plain = fit_arrhenius(T_C, sigma)
    assert plain.activation_energy_ev < fit.activation_energy_ev  # the plain form absorbs 1/T


def test_vtf_recovers_pseudo_activation_energy_and_is_chosen_for_curved_data():
    a, b, t0 = 50.0, 900.0, 180.0
    t_k = np.linspace(240.0, 380.0, 15)
    rng = np.random.default_rng(7)
    sigma = a / np.sqrt(t_k) * np.exp(-b / (t_k - t0)) * np.exp(0.01 * rng.standard_normal(15))
    fit = fit_vtf(t_k, sigma, temperature_unit="kelvin")
    ea_true = b * BOLTZMANN_EV_PER_K
    lo, hi = fit.activation_energy_ev_ci
    assert lo < ea_true < hi
    assert fit.parameters["t0_kelvin"] == pytest.approx(t0, abs=15)
    fits = fit_all(t_k, sigma, temperature_unit="kelvin")
    assert choose_model(fits).model == "vtf"
    # Straight Arrhenius data: the two-parameter form is preferred.
    straight = fit_all(T_C, arrhenius_data(seed=11))
    assert choose_model(straight).model in ("arrhenius", "arrhenius_t")


def test_to_dict_is_json_ready():
    fit = fit_conductivity(T_C, arrhenius_data(), "arrhenius")
    d = json.loads(json.dumps(fit.to_dict()))
    assert d["model"] == "arrhenius"
    assert set(d["parameters"]) == {"ln_sigma0", "ea_ev"}
    assert len(d["activation_energy_ev_ci"]) == 2


def test_bad_input():
    with pytest.raises(ConductivityError, match="positive"):
        fit_arrhenius([20, 30, 40], [1e-3, 0.0, 2e-3])
    with pytest.raises(ConductivityError, match="absolute zero"):
        fit_arrhenius([-300, 30, 40], [1e-3, 1e-3, 2e-3])
    with pytest.raises(ConductivityError, match="at least 3"):
        fit_arrhenius([20, 30], [1e-3, 2e-3])
    with pytest.raises(ConductivityError, match="unknown model"):
        fit_conductivity([20, 30, 40], [1e-3, 2e-3, 3e-3], "eyring")  # type: ignore[arg-type]


def test_conductivity_from_resistance():
    # 0.1 cm pellet, 1 cm2, 100 ohm: 1e-3 S/cm.
    assert conductivity_from_resistance(100.0, 0.1, 1.0) == pytest.approx(1e-3)
    with pytest.raises(ConductivityError):
        conductivity_from_resistance(100.0, 0.0, 1.0)


def test_standard_errors_weight_the_fit():
    """A point the EIS fit marked as uncertain (here 30 % off) barely moves a weighted fit."""
    sigma = arrhenius_data(noise=0.01, seed=2)
    stderr = 0.01 * sigma
    sigma[0] *= 1.3
    stderr[0] = 0.3 * sigma[0]
    plain = fit_arrhenius(T_C, sigma)
    weighted = fit_arrhenius(T_C, sigma, stderr_s_per_cm=stderr)
    assert abs(weighted.activation_energy_ev - 0.35) < abs(plain.activation_energy_ev - 0.35)
    lo, hi = weighted.activation_energy_ev_ci
    assert lo < 0.35 < hi
    vtf = fit_conductivity(T_C, sigma, "vtf", stderr_s_per_cm=stderr)
    assert vtf.n_points == T_C.size
    with pytest.raises(ConductivityError, match="standard errors"):
        fit_arrhenius(T_C, sigma, stderr_s_per_cm=np.zeros_like(sigma))
