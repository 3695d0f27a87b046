"""Circuit fitting: parameter recovery without initial guesses, scaling, options, real spectra."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cellbench.analysis.eis_fit import FitError, chi2_of, fit_circuit
from cellbench.analysis.eis_synth import (
    SOLID_STATE_CIRCUIT,
    attainable_recovery,
    frequencies,
    noisy_spectrum,
    random_in_band_cell,
    random_solid_state_cell,
)

F = frequencies()  # 1 MHz .. 10 mHz, 10 points per decade
RESISTANCES = ("R0", "R1", "R2", "R3")


def _cells(seed: int, count: int, in_band: bool):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        p = random_solid_state_cell(rng, gb_in_band=in_band)
        out.append((p, noisy_spectrum(SOLID_STATE_CIRCUIT, p, F, noise=0.01, rng=rng)))
    return out


def _apex_hz(p, k):
    return 1 / (2 * math.pi * (p[f"R{k}"] * p[f"CPE{k}.Q"]) ** (1 / p[f"CPE{k}.n"]))


def test_recovery_of_200_cells_with_every_arc_in_band():
    """>= 99 % of 200 random cells (1 % noise, no user guess): every resistance within 3 %.

    The cells are those whose Cramer-Rao bound allows 1 % on every resistance (about 2 % of
    the draws; see random_solid_state_cell): a 3 % miss there is the fitter's fault. Cells the
    data determine less well are the next test's."""
    failures = []
    for i, (p, z) in enumerate(_cells(2024, 200, in_band=True)):
        assert all(F.min() < _apex_hz(p, k) < F.max() for k in (1, 2, 3))
        res = fit_circuit(SOLID_STATE_CIRCUIT, F, z)
        errors = {k: res.values[k] / p[k] - 1 for k in RESISTANCES}
        if any(abs(e) > 0.03 for e in errors.values()):
            failures.append((i, errors))
    assert len(failures) <= 2, failures


def test_unfiltered_in_band_cells_fit_to_the_optimum_and_misses_carry_large_stderr():
    """200 cells with every apex >= 0.5 decade inside the band and >= 1 decade apart, NOT
    filtered by the Cramer-Rao bound. Only about half recover every resistance within 3 % at
    1 % noise: the rest hold too little information (overlapping arcs, an arc half outside the
    band). The fit must then be at the optimum (chi2 no worse than the truth's: what it misses
    the data do not hold) and say so: no resistance off by more than five of its standard
    errors, each missing cell with a relative standard error above 1 % (3 sigma above 3 %),
    and standard errors that are neither too small nor inflated."""
    rng = np.random.default_rng(11)
    z_scores, misses, attainable = [], 0, 0.0
    for i in range(200):
        p = random_in_band_cell(rng)
        attainable += attainable_recovery(SOLID_STATE_CIRCUIT, p, F, RESISTANCES, seed=i)
        z = noisy_spectrum(SOLID_STATE_CIRCUIT, p, F, noise=0.01, rng=rng)
        assert all(10**-1.5 <= _apex_hz(p, k) <= 10**5.5 for k in (1, 2, 3))
        res = fit_circuit(SOLID_STATE_CIRCUIT, F, z)
        assert res.chi2 <= chi2_of(SOLID_STATE_CIRCUIT, p, F, z, weight="modulus"), i
        errors = {k: res.values[k] / p[k] - 1 for k in RESISTANCES}
        rel_sd = {k: res.stderr[k] / res.values[k] for k in RESISTANCES}
        z_scores += [abs(errors[k]) / rel_sd[k] for k in RESISTANCES]
        if any(abs(e) > 0.03 for e in errors.values()):
            misses += 1
            assert max(rel_sd.values()) > 0.01, (i, errors, rel_sd)
    z_scores = np.array(z_scores)
    assert z_scores.max() <= 5
    assert np.mean(z_scores <= 3) >= 0.98
    assert 0.55 <= np.mean(z_scores <= 1) <= 0.8  # Gaussian: 0.68
    assert 20 <= misses <= 150  # the set is hard: the assertions above are exercised
    # The Cramer-Rao bound says how many cells any unbiased fitter could bring within 3 %
    # (about 103 of these 200); the fitter must reach that, within binomial scatter.
    recovered = 200 - misses
    assert recovered >= attainable - 3 * math.sqrt(attainable * (1 - attainable / 200)), (
        recovered,
        attainable,
    )


@pytest.mark.slow
def test_recovery_of_200_cells_with_the_grain_boundary_arc_above_the_band():
    """gb apex 3..30 MHz: R0 + R1 and the interface resistances within 3 %, and the split between
    R0 and R1 flagged as poorly determined instead of being presented as precise."""
    failures = []
    flagged = 0
    for i, (p, z) in enumerate(_cells(7, 200, in_band=False)):
        assert _apex_hz(p, 1) > 3 * F.max()
        res = fit_circuit(SOLID_STATE_CIRCUIT, F, z)
        total, total_sd = res.combined(["R0", "R1"])
        ok = abs(total / (p["R0"] + p["R1"]) - 1) <= 0.03
        ok &= all(abs(res.values[k] / p[k] - 1) <= 0.03 for k in ("R2", "R3"))
        split_flagged = {"R0", "R1"} & set(res.poorly_determined)
        flagged += bool(split_flagged)
        split_right = all(abs(res.values[k] / p[k] - 1) <= 0.03 for k in ("R0", "R1"))
        # a wrong split must never come without the flag
        ok &= bool(split_flagged) or split_right
        # the sum is what the data fix: its standard error is small even when the parts' are not
        ok &= total_sd < 0.02 * total
        if not ok:
            failures.append((i, {k: res.values[k] / p[k] - 1 for k in RESISTANCES}))
    assert len(failures) <= 2, failures
    assert flagged >= 190


def test_badly_scaled_parameters_converge_without_a_guess():
    # a thin film: R ~ 1 Gohm with C ~ 1 pF
    truth = {"R0": 2e4, "R1": 1.2e9, "C1": 1.5e-12}
    f = np.logspace(7, -1, 57)
    z = noisy_spectrum("R0-p(R1,C1)", truth, f, noise=0.001, rng=np.random.default_rng(1))
    res = fit_circuit("R0-p(R1,C1)", f, z)
    for k, v in truth.items():
        assert res.values[k] == pytest.approx(v, rel=0.01)
    # a low-impedance cell: L ~ 0.1 uH next to milliohm resistances and a farad-scale CPE
    truth = {"L0": 1.2e-7, "R0": 0.012, "R1": 0.03, "CPE1.Q": 2.0, "CPE1.n": 0.85}
    f = np.logspace(5, -2, 71)
    z = noisy_spectrum("L0-R0-p(R1,CPE1)", truth, f, noise=0.001, rng=np.random.default_rng(2))
    res = fit_circuit("L0-R0-p(R1,CPE1)", f, z)
    for k, v in truth.items():
        assert res.values[k] == pytest.approx(v, rel=0.02), k
    assert res.poorly_determined == []


def test_fixed_parameters_bounds_and_user_initial_values():
    truth = {"R0": 50.0, "R1": 400.0, "CPE1.Q": 2e-6, "CPE1.n": 0.9, "W1": 80.0}
    circuit = "R0-p(R1,CPE1)-W1"
    z = noisy_spectrum(circuit, truth, F, noise=0.002, rng=np.random.default_rng(3))
    res = fit_circuit(circuit, F, z, fixed={"R0": 49.0})
    assert res.values["R0"] == 49.0 and res.stderr["R0"] == 0.0
    assert res.fixed == {"R0": 49.0} and "R0" not in res.free
    assert res.covariance.shape == (4, 4)
    assert res.values["R1"] == pytest.approx(401, rel=0.02)
    bounded = fit_circuit(circuit, F, z, bounds={"R1": (None, 300.0)})
    assert bounded.values["R1"] <= 300.0
    assert bounded.chi2 > res.chi2
    started = fit_circuit(circuit, F, z, initial=truth)
    assert started.starts == 1
    assert started.initial == truth
    assert started.values["W1"] == pytest.approx(80, rel=0.02)
    with pytest.raises(FitError, match=r"lower 5\.0 must be below upper 1\.0"):
        fit_circuit(circuit, F, z, bounds={"R1": (5.0, 1.0)})


@pytest.mark.parametrize("weight", ["unit", "proportional", "modulus"])
def test_weightings_recover_a_noiseless_spectrum_and_chi2_is_the_minimised_sum(weight):
    truth = {"R0": 20.0, "R1": 300.0, "C1": 1e-7, "R2": 900.0, "CPE2.Q": 3e-5, "CPE2.n": 0.8}
    circuit = "R0-p(R1,C1)-p(R2,CPE2)"
    z = noisy_spectrum(circuit, truth, F, noise=0.0)
    res = fit_circuit(circuit, F, z, weight=weight)
    for k, v in truth.items():
        assert res.values[k] == pytest.approx(v, rel=1e-4), k
    assert res.weight == weight
    assert res.chi2 == pytest.approx(float(res.residuals @ res.residuals))
    assert res.chi2 == pytest.approx(chi2_of(circuit, res.values, F, z, weight=weight), rel=1e-9)
    assert res.reduced_chi2 == pytest.approx(res.chi2 / (2 * F.size - 6))


def test_result_statistics_and_json():
    truth = {"R0": 30.0, "R1": 200.0, "CPE1.Q": 1e-6, "CPE1.n": 0.88}
    circuit = "R0-p(R1,CPE1)"
    z = noisy_spectrum(circuit, truth, F, noise=0.01, rng=np.random.default_rng(4))
    res = fit_circuit(circuit, F, z)
    corr = res.correlation
    assert corr.shape == (4, 4)
    np.testing.assert_allclose(np.diag(corr), 1.0)
    total, sd = res.combined(["R0", "R1"])
    cov = res.covariance[:2, :2]
    assert total == pytest.approx(res.values["R0"] + res.values["R1"])
    assert sd == pytest.approx(math.sqrt(cov.sum()))
    # with 1 % noise the reduced chi2 (modulus weighting) is near 1e-4 (the noise variance)
    assert 0.5e-4 < res.reduced_chi2 < 2e-4
    n = 2 * F.size
    assert res.aic == pytest.approx(n * math.log(res.chi2 / n) + 2 * 4)
    assert res.bic == pytest.approx(n * math.log(res.chi2 / n) + 4 * math.log(n))
    d = json.loads(json.dumps(res.to_dict()))
    assert d["parameters"]["R1"]["value"] == pytest.approx(res.values["R1"])
    assert d["correlation"]["parameters"] == ["R0", "R1", "CPE1.Q", "CPE1.n"]
    np.testing.assert_allclose(res.predict(F), res.z_fit)


def test_too_few_points_and_unknown_names_are_clear_errors():
    f = np.array([1e3, 1e2])
    with pytest.raises(FitError, match="not enough for 4 free parameters"):
        fit_circuit("R0-p(R1,CPE1)", f, np.array([10 - 1j, 12 - 2j]))
    with pytest.raises(ValueError, match="'R7' is not a parameter"):
        fit_circuit("R0-p(R1,C1)", F, np.ones(F.size, complex), fixed={"R7": 1.0})
    with pytest.raises(FitError, match="weight 'abs'"):
        fit_circuit("R0-p(R1,C1)", F, np.ones(F.size, complex), weight="abs")


# ----------------------------------------------------------------------------- real spectra

PUBLISHED_EXAMPLE = {
    "R0": 1.65e-2,
    "R1": 8.68e-3,
    "C1": 3.32,
    "R2": 5.39e-3,
    "Wo1.R": 6.31e-2,
    "Wo1.tau": 233,
    "C2": 0.220,
}
PUBLISHED_DUMMIES = {
    "Circuit1": (29.1, 46.7, 10.4e-6),
    "Circuit2": (150, 502, 31.2e-9),
    "Circuit3": (1510, 4630, 20.2e-9),
}


@pytest.mark.shared_data
def test_example_data_fits_at_least_as_well_as_the_published_fit(shared_data):
    data = np.loadtxt(shared_data / "eis" / "exampleData.csv", delimiter=",")
    f, z = data[:, 0], data[:, 1] + 1j * data[:, 2]
    keep = z.imag < 0  # as impedance.py's documentation did
    f, z = f[keep], z[keep]
    circuit = "R0-p(R1,C1)-p(R2-Wo1,C2)"
    published = chi2_of(circuit, PUBLISHED_EXAMPLE, f, z, weight="unit")
    res = fit_circuit(circuit, f, z, weight="unit")
    assert res.chi2 <= published
    assert res.values["R0"] == pytest.approx(PUBLISHED_EXAMPLE["R0"], rel=0.02)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(PUBLISHED_DUMMIES))
def test_dummy_cells_fit_at_least_as_well_as_published(shared_data, name):
    from cellbench.analysis.readers import read_spectra

    df = read_spectra(shared_data / "eis" / f"{name}_EIS_1.z")
    f = df["frequency_hertz"].to_numpy()
    z = df["z_real_ohm"].to_numpy() + 1j * df["z_imag_ohm"].to_numpy()
    keep = z.imag < 0
    f, z = f[keep], z[keep]
    r0, r1, c1 = PUBLISHED_DUMMIES[name]
    published = chi2_of("R0-p(R1,C1)", {"R0": r0, "R1": r1, "C1": c1}, f, z, weight="unit")
    res = fit_circuit("R0-p(R1,C1)", f, z, weight="unit")
    assert res.chi2 <= published
    assert res.values["R1"] == pytest.approx(r1, rel=0.01)
    assert res.values["C1"] == pytest.approx(c1, rel=0.03)


@pytest.mark.parametrize("name", ["llzo_symmetric", "sulfide_full_cell"])
def test_simulated_instrument_cell_with_unresolved_bulk_and_grain_boundary(name, fixtures_dir):
    """The shared simulated cell (drivers/sim): its bulk and grain-boundary arcs sit above
    7 MHz, so only R0 + R1 + R2 is identifiable; the interface R3 is in the band."""
    from cellbench.drivers.sim import cell as sim

    cell = sim.SimCell(sim.load_cell_params(fixtures_dir / "sim" / f"{name}.toml"))
    truth = cell.ground_truth()
    p = truth["circuit_parameters"]
    f = frequencies(7e6, 0.01, 10)
    z = cell.impedance(f)
    rng = np.random.default_rng(0)
    z = z + 0.01 * np.abs(z) * (rng.standard_normal(z.size) + 1j * rng.standard_normal(z.size))
    circuit = truth["circuit"]
    if p["Ws1.R"] == 0:  # a symmetric Li cell: no diffusion element to fit
        circuit = circuit.removesuffix("-Ws1")
    res = fit_circuit(circuit, f, z)
    total, sd = res.combined(["R0", "R1", "R2"])
    assert total == pytest.approx(p["R0"] + p["R1"] + p["R2"], rel=0.03)
    assert sd < 0.05 * total  # the sum is determined, its parts are not:
    assert sd < 0.2 * min(res.stderr["R1"], res.stderr["R2"])
    assert res.values["R3"] == pytest.approx(p["R3"], rel=0.03)
    assert {"R1", "R2"} <= set(res.poorly_determined)


_ARC = {"R0": 10, "R1": 100, "CPE1.Q": 1e-5, "CPE1.n": 0.9}
GUESS_CASES = {
    "R0-p(R1,CPE1)-Wo1": {**_ARC, "Wo1.R": 200, "Wo1.tau": 10},
    "R0-p(R1,CPE1)-Ws1": {**_ARC, "Ws1.R": 200, "Ws1.tau": 10},
    "R0-p(R1-Wo1,CPE1)": {**_ARC, "Wo1.R": 200, "Wo1.tau": 10},
    "R0-p(R1,CPE1)-W1": {**_ARC, "W1": 50},
    "R0-p(R1,C1)-CPE2": {"R0": 10, "R1": 100, "C1": 1e-6, "CPE2.Q": 1e-3, "CPE2.n": 0.8},
    "R0-G1": {"R0": 10, "G1.R": 100, "G1.tau": 1e-2},
    "R0-TLM1": {"R0": 5, "TLM1.Rion": 60, "TLM1.Rct": 300, "TLM1.Q": 1e-3, "TLM1.n": 0.9},
    "L0-R0-p(R1,C1)": {"L0": 1e-6, "R0": 1, "R1": 5, "C1": 1e-3},
    "p(R1,C1)": {"R1": 100, "C1": 1e-6},
    "R0-C1": {"R0": 100, "C1": 1e-6},
    "p(R1,C1,L1)": {"R1": 10, "C1": 1e-6, "L1": 1e-4},  # resonant: needs the fallback starts
}  # fmt: skip


@pytest.mark.parametrize("circuit", sorted(GUESS_CASES))
def test_automatic_guesses_for_every_kind_of_element(circuit):
    truth = GUESS_CASES[circuit]
    f = frequencies(1e5, 0.01, 8)
    z = noisy_spectrum(circuit, truth, f, noise=0.002, rng=np.random.default_rng(0))
    res = fit_circuit(circuit, f, z)
    for name, value in truth.items():
        assert res.values[name] == pytest.approx(value, rel=0.03), name
    assert res.poorly_determined == []
