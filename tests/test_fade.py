"""Fade models, knee and end of life on synthetic retention with a known truth."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from cellbench.analysis.fade import (
    FadeError,
    analyze_fade,
    detect_knee,
    end_of_life,
    fit_retention,
    resistance_growth,
    retention_from_summary,
)


def knee_data(noise=0.002, seed=1):
    """1 - 5e-5 n until cycle 600, then 8e-4 per cycle: reaches 0.8 at cycle 812.5."""
    n = np.arange(1, 901, dtype=float)
    q = 1.0 - 5e-5 * n - (8e-4 - 5e-5) * np.maximum(0.0, n - 600)
    rng = np.random.default_rng(seed)
    return n, q + noise * rng.standard_normal(n.size)


def sqrt_data(noise=0.002, seed=2, n_max=400):
    """1 - 0.008 sqrt(n): reaches 0.8 at cycle 625."""
    n = np.arange(1, n_max + 1, dtype=float)
    rng = np.random.default_rng(seed)
    return n, 1.0 - 0.008 * np.sqrt(n) + noise * rng.standard_normal(n.size)


def test_knee_found_near_truth_and_eol_interval_contains_truth():
    n, q = knee_data()
    report = analyze_fade(n, q)
    assert report.best.model == "knee"
    knee = report.knee
    assert knee is not None and knee.significant
    assert knee.cycle == pytest.approx(600, abs=15)
    assert knee.confidence_interval[0] < 600 < knee.confidence_interval[1]
    assert knee.slope_before == pytest.approx(-5e-5, rel=0.2)
    assert knee.slope_after == pytest.approx(-8e-4, rel=0.05)
    eol = report.end_of_life
    lo, hi = eol.prediction_interval
    assert lo < 812.5 < hi
    assert hi - lo < 30
    assert not eol.extrapolated


def test_no_knee_in_smooth_fade():
    n, q = sqrt_data()
    knee = detect_knee(n, q)
    assert knee is not None and not knee.significant


def test_first_n_extrapolation_interval_contains_truth():
    """Fit only the first 200 cycles of a sqrt fade and predict the crossing at 625."""
    n, q = sqrt_data(n_max=700)
    report = analyze_fade(n, q, first_n=200)
    assert report.first_n == 200
    assert report.best.model in ("sqrt", "power")
    eol = report.end_of_life
    assert eol.extrapolated
    assert eol.fitted_cycles == 200
    lo, hi = eol.prediction_interval
    assert lo < 625 < hi
    sq = next(f for f in report.fits if f.model == "sqrt")
    eol_sqrt = end_of_life(sq, 0.8)
    assert eol_sqrt.cycles == pytest.approx(625, rel=0.05)
    assert eol_sqrt.confidence_interval[0] < 625 < eol_sqrt.confidence_interval[1]


def test_prediction_interval_coverage():
    """The 95 % interval of the crossing contains the truth in most noisy replicates."""
    hits = 0
    trials = 40
    for seed in range(trials):
        n, q = sqrt_data(noise=0.004, seed=100 + seed, n_max=300)
        fit = fit_retention(n, q, models=["sqrt"])[0]
        lo, hi = end_of_life(fit, 0.8).prediction_interval
        hits += lo < 625 < hi
    assert hits >= 34


def test_each_model_recovers_its_own_parameters():
    n = np.arange(1, 301, dtype=float)
    rng = np.random.default_rng(5)
    cases = {
        "linear": (1.0 - 4e-4 * n, {"a": 1.0, "b": 4e-4}),
        "exponential": (0.99 * np.exp(-7e-4 * n), {"a": 0.99, "k": 7e-4}),
        "power": (1.0 - 2e-3 * n**0.7, {"a": 1.0, "b": 2e-3, "z": 0.7}),
    }
    for model, (q, truth) in cases.items():
        fit = fit_retention(n, q + 5e-4 * rng.standard_normal(n.size), models=[model])[0]
        for k, v in truth.items():
            assert abs(fit.parameters[k] - v) < 4 * fit.stderr[k] + 1e-12, (model, k)


def test_threshold_never_reached_gives_none():
    n = np.arange(1, 51, dtype=float)
    fit = fit_retention(n, 1.0 - 1e-6 * n, models=["linear"])[0]
    eol = end_of_life(fit, 0.8, horizon=1000)
    assert eol.cycles is None
    assert json.loads(json.dumps(eol.to_dict()))["cycles"] is None
    for bad in ({"threshold": 1.2}, {"threshold": 0.0}, {"confidence": 1.5}):
        with pytest.raises(FadeError, match=next(iter(bad))):
            end_of_life(fit, **{"threshold": 0.8, **bad})


def test_retention_from_summary_and_report_to_dict():
    n, q = knee_data()
    summary = pl.DataFrame(
        {"cycle_count": n.astype(np.int32), "discharge_capacity_ampere_hour": 2.5 * q}
    )
    r = retention_from_summary(summary)
    assert r["capacity_retention"][0] == pytest.approx(1.0)
    r_nom = retention_from_summary(summary, reference=2.5)
    assert r_nom["capacity_retention"].to_numpy() == pytest.approx(q)
    with pytest.raises(FadeError, match="reference cycle"):
        retention_from_summary(summary, reference=5000)
    d = json.loads(json.dumps(analyze_fade(n, q, threshold=0.85).to_dict()))
    assert d["best_model"] == "knee"
    assert d["end_of_life"]["threshold"] == 0.85


def test_resistance_growth_sqrt_law_from_batch_eis_frame():
    cycles = np.arange(0, 501, 25, dtype=float)
    r_true = 20.0 + 3.0 * np.sqrt(cycles)
    rng = np.random.default_rng(9)
    se = 0.01 * r_true
    frame = pl.DataFrame(
        {
            "cycle_count": cycles,
            "R2": r_true + se * rng.standard_normal(cycles.size),
            "R2_stderr": se,
        }
    )
    fits = resistance_growth(frame)
    best = fits[0]
    assert best.model in ("sqrt", "power")
    sq = next(f for f in fits if f.model == "sqrt")
    assert abs(sq.parameters["k"] - 3.0) < 4 * sq.stderr["k"]
    assert abs(sq.parameters["r0"] - 20.0) < 4 * sq.stderr["r0"]
    pw = next(f for f in fits if f.model == "power")
    assert pw.parameters["z"] == pytest.approx(0.5, abs=0.1)
    with pytest.raises(FadeError, match="R3"):
        resistance_growth(frame, y="R3")


def test_too_few_points():
    with pytest.raises(FadeError):
        fit_retention([1, 2], [1.0, 0.99])
    with pytest.raises(FadeError, match="first_n"):
        analyze_fade(np.arange(1, 20), np.ones(19), first_n=2)
    assert math.isfinite(fit_retention([1, 2, 3, 4], [1, 0.99, 0.98, 0.97])[0].rss)


def test_last_point_outlier_is_not_a_knee_and_incomplete_cycles_are_dropped():
    n, q = sqrt_data(n_max=60, noise=0.001)
    q[-1] = 0.3  # a cycle cut short
    report = analyze_fade(n, q)
    assert report.knee is None or not report.knee.significant
    assert report.best.model != "knee"
    summary = pl.DataFrame(
        {
            "cycle_count": n.astype(np.int32),
            "charge_capacity_ampere_hour": np.r_[np.ones(59), 0.0],
            "discharge_capacity_ampere_hour": q,
        }
    )
    kept = retention_from_summary(summary)
    assert kept.height == 59
    assert retention_from_summary(summary, drop_incomplete=False).height == 60
