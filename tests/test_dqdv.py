"""dQ/dV and dV/dQ: peak positions, heights and areas of a synthetic electrode survive noise."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellbench.analysis.dqdv import DqdvError, dqdv, dqdv_by_cycle, dvdq, find_peaks

PEAKS = [(3.60, 0.30, 0.006), (3.80, 0.50, 0.008), (3.95, 0.20, 0.005)]  # V, Ah, width V
BACKGROUND = 0.2  # Ah/V


def q_of_v(v):
    q = BACKGROUND * (v - 3.4)
    for vk, ak, wk in PEAKS:
        q = q + ak / (1 + np.exp(-(v - vk) / wk))
    return q


def charge_curve(noise_v=5e-4, n=6000, seed=0, resolution_v=1e-4):
    """Constant-current charge logged at equal capacity steps, voltage with noise and 0.1 mV
    resolution; returns (V, Q)."""
    fine_v = np.linspace(3.4, 4.1, 200_001)
    fine_q = q_of_v(fine_v)
    q = np.linspace(fine_q[0], fine_q[-1], n)
    v = np.interp(q, fine_q, fine_v)
    rng = np.random.default_rng(seed)
    v = v + noise_v * rng.standard_normal(n)
    if resolution_v:
        v = np.round(v / resolution_v) * resolution_v
    return v, q - q[0]


def test_dqdv_peaks_positions_heights_areas():
    v, q = charge_curve()
    curve = dqdv(v, q)
    peaks = find_peaks(curve)
    assert peaks.height == 3
    for (vk, ak, wk), row in zip(PEAKS, peaks.iter_rows(named=True), strict=True):
        assert row["position"] == pytest.approx(vk, abs=0.003)
        assert row["height"] == pytest.approx(ak / (4 * wk) + BACKGROUND, rel=0.15)
        assert row["area"] == pytest.approx(ak, rel=0.12)


def test_gaussian_smoothing_keeps_positions_and_raw_difference_is_noise():
    v, q = charge_curve()
    gauss = find_peaks(dqdv(v, q, smoothing="gaussian", window_volt=0.008))
    assert gauss.height == 3
    np.testing.assert_allclose(gauss["position"], [p[0] for p in PEAKS], atol=0.003)
    raw = find_peaks(dqdv(v, q, smoothing="none"))
    assert raw.height > 10  # why smoothing is needed at all


def test_dvdq_integrates_to_voltage_span_and_minima_at_plateaus():
    v, q = charge_curve(noise_v=0.0, resolution_v=0.0)
    curve = dvdq(v, q)
    assert np.trapezoid(curve.y, curve.x) == pytest.approx(v.max() - v.min(), rel=0.01)
    minima = find_peaks(curve, sign=-1, prominence=0.2)
    want_q = q_of_v(np.array([p[0] for p in PEAKS])) - q_of_v(np.array(3.4))
    assert minima.height == 3
    np.testing.assert_allclose(minima["position"], want_q, atol=0.01)


def test_dqdv_by_cycle_on_a_samples_frame():
    v, q = charge_curve(n=3000)
    i_a = 0.5
    t = q * 3600 / i_a
    v_dis = v[::-1] - 0.05  # discharge retraces the curve 50 mV lower
    t_all = np.concatenate([t, t[-1] + 10 + t])
    rows = {
        "test_time_second": np.concatenate([t_all, t_all + 2 * t_all[-1] + 20]),
        "voltage_volt": np.tile(np.concatenate([v, v_dis]), 2),
        "current_ampere": np.tile(np.concatenate([np.full(t.size, i_a), np.full(t.size, -i_a)]), 2),
        "cycle_count": np.repeat([1, 2], 2 * t.size).astype(np.int32),
    }
    df = pl.DataFrame(rows)
    out = dqdv_by_cycle(df, direction="discharge")
    assert out["cycle_count"].unique().sort().to_list() == [1, 2]
    c1 = out.filter(pl.col("cycle_count") == 1)
    from cellbench.analysis.dqdv import Curve

    curve = Curve(c1["voltage_volt"].to_numpy(), c1["dqdv_ampere_hour_per_volt"].to_numpy(), "", "")
    pos = find_peaks(curve)["position"].to_numpy()
    np.testing.assert_allclose(pos, [p[0] - 0.05 for p in PEAKS], atol=0.004)


def test_errors():
    with pytest.raises(DqdvError, match="spans no range"):
        dqdv(np.full(10, 3.7), np.arange(10.0))
    with pytest.raises(DqdvError, match="window"):
        dqdv(np.linspace(3.0, 3.01, 20), np.arange(20.0), step_volt=0.001, window_volt=1.0)
    with pytest.raises(DqdvError, match="cycle_count"):
        dqdv_by_cycle(pl.DataFrame({"voltage_volt": [1.0]}))
