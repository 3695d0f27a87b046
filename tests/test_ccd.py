"""Critical current density on synthetic Li|SE|Li staircases whose short is known."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from cellbench.analysis.ccd import CCDError, critical_current_density

AREA = 0.785  # cm2, a 10 mm pellet
R_CELL = 40.0  # ohm


def staircase(
    short_level=None, short_after_s=250.0, mechanism="collapse", seed=0, rest_s=60, transient=0.0
):
    """Plating then stripping, 300 s each at 0.1, 0.2, ... 1.0 mA/cm2, 5 s sampling, rest
    between levels. The short happens in the plating step of ``short_level`` (index)."""
    rng = np.random.default_rng(seed)
    t, v, i = [], [], []
    now = 0.0
    truth = {}
    for level in range(10):
        j = 0.1 * (level + 1)
        amp = j * AREA / 1000.0
        for sign in (+1, -1):
            for k in range(61):
                tt = now + 5.0 * k
                # Polarisation grows a little over the step, plus an optional fast transient
                # at its start (charge-transfer and diffusion build-up).
                growth = 1 + 0.1 * k / 60 + transient * (1 - np.exp(-k / 5.0))
                pol = amp * R_CELL * growth
                vv = sign * pol + 5e-5 * rng.standard_normal()
                if short_level == level and sign == 1 and 5.0 * k >= short_after_s:
                    if mechanism == "collapse":
                        vv = sign * 2e-4 + 5e-5 * rng.standard_normal()
                    else:
                        vv += 3e-3 * rng.standard_normal()
                    truth.setdefault("time", tt)
                t.append(tt)
                v.append(vv)
                i.append(sign * amp)
            now = t[-1] + 1.0
        for k in range(rest_s // 10):
            t.append(now + 10.0 * k)
            v.append(1e-5 * rng.standard_normal())
            i.append(0.0)
        now = t[-1] + 1.0
    df = pl.DataFrame({"test_time_second": t, "voltage_volt": v, "current_ampere": i})
    return df, truth


def test_collapse_short_gives_previous_level_as_ccd():
    df, truth = staircase(short_level=5)  # shorts at 0.6 mA/cm2
    res = critical_current_density(df, AREA)
    assert res.shorted and res.mechanism == "collapse"
    assert res.ccd_milliampere_per_square_centimeter == pytest.approx(0.5)
    assert res.short_current_density_milliampere_per_square_centimeter == pytest.approx(0.6)
    assert res.short_step == 10  # two steps per level, 0-based: level 5 plating
    assert res.short_time_second == pytest.approx(truth["time"])
    assert res.steps.height == 11
    assert res.steps["resistance_ohm"][0] == pytest.approx(R_CELL * 1.05, rel=0.02)
    # The file's own step numbers travel into the step table.
    numbered = df.with_columns((pl.col("current_ampere").rle_id() + 1).alias("step_count"))
    res2 = critical_current_density(numbered, AREA)
    shorted = res2.steps.filter(pl.col("shorted"))
    t_short = res2.short_time_second
    want = numbered.filter(pl.col("test_time_second") == t_short)["step_count"][0]
    assert shorted["step_count"][0] == want


def test_noise_signature_soft_short():
    df, truth = staircase(short_level=7, mechanism="noise", seed=3)
    res = critical_current_density(df, AREA)
    assert res.shorted and res.mechanism == "noise"
    assert res.ccd_milliampere_per_square_centimeter == pytest.approx(0.7)
    assert res.short_step == 14
    assert truth["time"] <= res.short_time_second < truth["time"] + 30


def test_smooth_transients_at_high_current_are_not_a_short():
    df, _ = staircase(short_level=None, transient=0.5, seed=5)
    res = critical_current_density(df, AREA)
    assert not res.shorted


def test_no_short_gives_lower_bound_and_json():
    df, _ = staircase(short_level=None)
    res = critical_current_density(df, AREA)
    assert not res.shorted
    assert res.ccd_milliampere_per_square_centimeter == pytest.approx(1.0)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["ccd_is_lower_bound"] is True
    assert d["short_step"] is None
    assert len(d["steps"]) == 20


def test_short_in_first_step_has_no_ccd():
    df, _ = staircase(short_level=0, short_after_s=100)
    res = critical_current_density(df, AREA)
    assert res.shorted and res.ccd_milliampere_per_square_centimeter is None
    assert res.short_step == 0


def test_bad_input():
    df, _ = staircase()
    with pytest.raises(CCDError, match="area"):
        critical_current_density(df, 0.0)
    with pytest.raises(CCDError, match="current_ampere"):
        critical_current_density(df.drop("current_ampere"), AREA)
    with pytest.raises(CCDError, match="no current steps"):
        critical_current_density(df.with_columns(pl.lit(0.0).alias("current_ampere")), AREA)
