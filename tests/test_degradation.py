"""Pseudo-OCV and degradation modes on synthetic electrodes with known capacities and lithium
inventory: the balance fit recovers them and LLI / LAM follow."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.analysis.degradation import (
    DegradationError,
    ElectrodeOcv,
    degradation_modes,
    fit_electrode_balance,
    pseudo_ocv_from_cycle,
)

FR = np.linspace(0.0, 1.0, 401)
# graphite-like negative: steep start, two staging plateaus; layered-oxide-like positive
NE = ElectrodeOcv(FR, 0.08 + 0.9 * np.exp(-25 * FR) + 0.04 * np.tanh(12 * (0.5 - FR))
                  + 0.03 * np.tanh(25 * (0.2 - FR)))  # fmt: skip
PE = ElectrodeOcv(FR, 4.35 - 0.9 * FR - 0.08 * np.tanh(10 * (FR - 0.55)) - 0.3 * FR**8)


def cell_ocv(q, cp, cn, y0, x0):
    return PE(y0 - q / cp) - NE(x0 + q / cn)


def curve(cp, cn, y0, x0, q_max, noise=0.0, seed=0):
    q = np.linspace(0.0, q_max, 300)
    v = cell_ocv(q, cp, cn, y0, x0)
    return q, v + np.random.default_rng(seed).normal(0, noise, q.size)


def test_balance_and_modes_are_recovered():
    fresh = dict(cp=1.00, cn=1.10, y0=0.97, x0=0.02)
    aged = dict(cp=0.92, cn=0.95, y0=0.93, x0=0.01)  # LAM_PE 8 %, LAM_NE 13.6 %
    ref = fit_electrode_balance(*curve(**fresh, q_max=0.85, noise=5e-4), PE, NE)
    old = fit_electrode_balance(*curve(**aged, q_max=0.78, noise=5e-4, seed=1), PE, NE)
    assert ref.capacity_pe_ah == pytest.approx(1.00, rel=0.02)
    assert ref.capacity_ne_ah == pytest.approx(1.10, rel=0.02)
    assert ref.rms_volt < 1e-3
    modes = degradation_modes(ref, old)
    n_li = lambda p: p["x0"] * p["cn"] + p["y0"] * p["cp"]  # noqa: E731
    assert modes["lam_pe"] == pytest.approx(0.08, abs=0.015)
    assert modes["lam_ne"] == pytest.approx(1 - 0.95 / 1.10, abs=0.015)
    assert modes["lli"] == pytest.approx(1 - n_li(aged) / n_li(fresh), abs=0.015)


def test_pseudo_ocv_is_the_mean_of_slow_charge_and_discharge():
    q = np.linspace(0.0, 0.8, 500)
    ocv = cell_ocv(q, 1.0, 1.1, 0.97, 0.02)
    eta = 0.01  # V either side at C/20
    charge_v = ocv + eta
    # the discharge starts full and passes charge: its content runs from 0.8 down to 0
    discharge_v = (ocv - eta)[::-1]
    out = pseudo_ocv_from_cycle(q, charge_v, q, discharge_v)
    back = np.interp(out["charge_content_ampere_hour"].to_numpy(), q, ocv)
    assert out["ocv_volt"].to_numpy() == pytest.approx(back, abs=1e-6)
    with pytest.raises(DegradationError, match="increasing"):
        pseudo_ocv_from_cycle(q[::-1], charge_v, q, discharge_v)


def test_bad_inputs():
    with pytest.raises(DegradationError, match="increasing"):
        ElectrodeOcv(np.array([0.0, 0.0, 1.0]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(DegradationError, match=">= 8 points"):
        fit_electrode_balance(np.arange(3.0), np.arange(3.0), PE, NE)
