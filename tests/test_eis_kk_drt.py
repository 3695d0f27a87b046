"""Lin-KK validation and the distribution of relaxation times."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.analysis.circuits import parse_circuit
from cellbench.analysis.drt import DRTError, drt
from cellbench.analysis.eis_synth import SOLID_STATE_CIRCUIT, frequencies, noisy_spectrum
from cellbench.analysis.kk import KKError, lin_kk

F = frequencies()
CELL = {
    "L0": 3e-7,
    "R0": 120.0,
    "R1": 150.0,
    "CPE1.Q": 1e-9,
    "CPE1.n": 0.9,
    "R2": 800.0,
    "CPE2.Q": 5e-6,
    "CPE2.n": 0.85,
    "R3": 1500.0,
    "CPE3.Q": 1e-3,
    "CPE3.n": 0.85,
}


def _drifting(rng, growth: float) -> np.ndarray:
    """The cell's R2 and R3 grow by ``growth`` over the sweep (3 periods per point, high to
    low frequency), so each point sees a different cell: not a stationary system."""
    c = parse_circuit(SOLID_STATE_CIRCUIT)
    elapsed = np.cumsum(3 / F)
    frac = elapsed / elapsed[-1]
    z = np.array(
        [
            c.impedance(
                {**CELL, "R2": CELL["R2"] * (1 + growth * x), "R3": CELL["R3"] * (1 + growth * x)},
                [f],
            )[0]
            for f, x in zip(F, frac, strict=True)
        ]
    )
    return z + 0.002 * np.abs(z) * (rng.standard_normal(z.size) + 1j * rng.standard_normal(z.size))


def test_lin_kk_passes_a_valid_spectrum_and_fails_a_drifting_one():
    rng = np.random.default_rng(5)
    valid = noisy_spectrum(SOLID_STATE_CIRCUIT, CELL, F, noise=0.002, rng=rng)
    ok = lin_kk(F, valid, rms_limit=0.005)
    assert ok.passed
    assert ok.rms < 0.003  # the noise level
    assert ok.mu <= 0.85 or ok.m == 50
    assert ok.residual_real.shape == F.shape
    bad = lin_kk(F, _drifting(rng, 0.5), rms_limit=0.005)
    assert not bad.passed
    assert bad.rms > 2 * ok.rms
    # the drift shows where the slow points are: largest residuals below 10 Hz
    worst = F[np.argmax(np.abs(bad.residual_real) + np.abs(bad.residual_imag))]
    assert worst < 10
    assert bad.to_dict()["passed"] is False


def test_lin_kk_noiseless_spectrum_is_fitted_to_round_off():
    z = parse_circuit(SOLID_STATE_CIRCUIT).impedance(CELL, F)
    res = lin_kk(F, z)
    assert res.passed and res.rms < 1e-4


def test_lin_kk_rejects_tiny_spectra():
    with pytest.raises(KKError, match="at least 5 points"):
        lin_kk([1.0, 2.0], [1 - 1j, 2 - 1j])


def test_drt_finds_both_relaxations_of_two_rc_elements():
    truth = {"R0": 10.0, "R1": 100.0, "C1": 1e-6, "R2": 300.0, "C2": 1e-3}
    z = noisy_spectrum("R0-p(R1,C1)-p(R2,C2)", truth, F, noise=0.002, rng=np.random.default_rng(8))
    res = drt(F, z)
    assert len(res.peaks) == 2
    hf, lf = res.peaks
    assert np.log10(hf.tau_s) == pytest.approx(np.log10(1e-4), abs=0.15)  # R1 C1
    assert np.log10(lf.tau_s) == pytest.approx(np.log10(0.3), abs=0.15)  # R2 C2
    assert hf.r_ohm == pytest.approx(100, rel=0.1)
    assert lf.r_ohm == pytest.approx(300, rel=0.1)
    assert res.r_inf_ohm == pytest.approx(10, rel=0.1)
    assert res.residual_rms < 0.004
    assert hf.frequency_hz == pytest.approx(1 / (2 * np.pi * hf.tau_s))


def test_drt_sees_inductance_and_a_fixed_lambda():
    truth = {"L0": 1e-6, "R0": 5.0, "R1": 50.0, "C1": 1e-5}
    z = noisy_spectrum("L0-R0-p(R1,C1)", truth, F, noise=0.0)
    res = drt(F, z, lam=1e-4)
    assert res.lam == 1e-4
    assert res.inductance_henry == pytest.approx(1e-6, rel=0.05)
    assert len(res.peaks) == 1 and res.peaks[0].r_ohm == pytest.approx(50, rel=0.05)
    with pytest.raises(DRTError, match="at least 5"):
        drt(F[:3], z[:3])


def test_drt_with_the_l_curve_finds_the_same_relaxations():
    truth = {"R0": 10.0, "R1": 100.0, "C1": 1e-6, "R2": 300.0, "C2": 1e-3}
    z = noisy_spectrum("R0-p(R1,C1)-p(R2,C2)", truth, F, noise=0.002, rng=np.random.default_rng(8))
    res = drt(F, z, method="lcurve")
    assert 1e-8 < res.lam < 1
    taus = sorted(p.tau_s for p in res.peaks if p.r_ohm > 20)
    assert len(taus) == 2
    np.testing.assert_allclose(np.log10(taus), np.log10([1e-4, 0.3]), atol=0.2)
    with pytest.raises(DRTError, match="'aic'"):
        drt(F, z, method="aic")
