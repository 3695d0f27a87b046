"""Per-cycle summary against capacities and energies computed by hand."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from cellbench.analysis import cycling_kernel
from cellbench.analysis.cycling import (
    CyclingError,
    cycle_summary,
    cycle_summary_lazy,
    gravimetric_energy_density,
)

R_OHM = 0.1  # every current step of the synthetic cell jumps the voltage by I * R


def _cccv_cycle(
    t0: float, cycle: int, i_cc: float, cc_s: float, cv_s: float, i_end: float, dis_s: float
) -> tuple[list[float], list[float], list[float], list[int], dict[str, float]]:
    """One CC-CV charge, rest, CC discharge, rest; piecewise linear so the trapezoid is exact.

    Step edges are logged twice at the same time (old and new current), as cyclers do, so the
    ohmic jump I*R shows in dV/dI and no interval straddles two steps.
    """
    t: list[float] = []
    v: list[float] = []
    i: list[float] = []

    def seg(duration: float, n: int, v_a: float, v_b: float, i_a: float, i_b: float) -> None:
        start = t[-1] if t else t0
        for k in range(n + 1):
            f = k / n
            t.append(start + f * duration)
            v.append(v_a + f * (v_b - v_a))
            i.append(i_a + f * (i_b - i_a))

    seg(60, 6, 3.45, 3.45, 0.0, 0.0)  # rest at OCV 3.45 V
    seg(cc_s, 36, 3.45 + i_cc * R_OHM, 4.2, i_cc, i_cc)  # CC charge
    t.append(t[-1])  # CV: same time, same voltage and current: a new step, no jump
    v.append(4.2)
    i.append(i_cc)
    seg(cv_s, 18, 4.2, 4.2, i_cc, i_end)  # CV, current tapers linearly
    seg(600, 6, 4.2 - i_end * R_OHM, 4.2 - i_end * R_OHM, 0.0, 0.0)  # rest
    v_rest = 4.2 - i_end * R_OHM
    seg(dis_s, 30, v_rest - i_cc * R_OHM, 3.0, -i_cc, -i_cc)  # CC discharge
    seg(600, 6, 3.0 + i_cc * R_OHM, 3.0 + i_cc * R_OHM, 0.0, 0.0)  # rest
    truth = {
        "charge_capacity_ampere_hour": (i_cc * cc_s + 0.5 * (i_cc + i_end) * cv_s) / 3600,
        "discharge_capacity_ampere_hour": i_cc * dis_s / 3600,
        "charge_energy_watt_hour": (
            i_cc * cc_s * 0.5 * (3.45 + i_cc * R_OHM + 4.2) + 4.2 * 0.5 * (i_cc + i_end) * cv_s
        )
        / 3600,
        "discharge_energy_watt_hour": i_cc * dis_s * 0.5 * (v_rest - i_cc * R_OHM + 3.0) / 3600,
        "duration_second": t[-1] - t0,
    }
    return t, v, i, [cycle] * len(t), truth


def cccv_frame(channel: str = "ch1") -> tuple[pl.DataFrame, list[dict[str, float]]]:
    """Three CC-CV cycles with different currents and durations, and their true summaries."""
    params = [
        (0.5, 3600, 1800, 0.05, 3000),
        (0.4, 3000, 1200, 0.04, 2700),
        (1.0, 900, 600, 0.1, 800),
    ]
    cols: dict[str, list] = {"t": [], "v": [], "i": [], "c": []}
    truths = []
    t0 = 0.0
    for n, p in enumerate(params, start=1):
        t, v, i, c, truth = _cccv_cycle(t0, n, *p)
        cols["t"] += t
        cols["v"] += v
        cols["i"] += i
        cols["c"] += c
        t0 = t[-1]
        truths.append(truth)
    df = pl.DataFrame(
        {
            "channel": [channel] * len(cols["t"]),
            "test_time_second": cols["t"],
            "voltage_volt": cols["v"],
            "current_ampere": cols["i"],
            "cycle_count": pl.Series(cols["c"], dtype=pl.Int32),
        }
    )
    return df, truths


def _check(summary: pl.DataFrame, truths: list[dict[str, float]]) -> None:
    assert summary["cycle_count"].to_list() == list(range(1, len(truths) + 1))
    for row, truth in zip(summary.iter_rows(named=True), truths, strict=True):
        for key, want in truth.items():
            got = row[key]
            assert got == pytest.approx(want, rel=1e-9), key
        ce = truth["discharge_capacity_ampere_hour"] / truth["charge_capacity_ampere_hour"]
        assert row["coulombic_efficiency"] == pytest.approx(ce, rel=1e-9)
        ee = truth["discharge_energy_watt_hour"] / truth["charge_energy_watt_hour"]
        assert row["energy_efficiency"] == pytest.approx(ee, rel=1e-9)
        assert row["mean_charge_voltage_volt"] == pytest.approx(
            truth["charge_energy_watt_hour"] / truth["charge_capacity_ampere_hour"], rel=1e-9
        )
        assert row["dc_resistance_ohm"] == pytest.approx(R_OHM, rel=1e-6)


def test_cccv_summary_matches_hand_computed_values():
    df, truths = cccv_frame()
    summary = cycle_summary(df)
    assert summary.columns[:7] == [
        "channel",
        "cycle_count",
        "charge_capacity_ampere_hour",
        "discharge_capacity_ampere_hour",
        "charge_energy_watt_hour",
        "discharge_energy_watt_hour",
        "coulombic_efficiency",
    ]
    assert summary["channel"].to_list() == ["ch1"] * 3
    _check(summary, truths)
    # The first cycle of the first truth: 0.5 A for 1 h plus a linear taper to 0.05 A over 0.5 h.
    assert summary["charge_capacity_ampere_hour"][0] == pytest.approx(0.6375, rel=1e-12)


def test_lazy_and_channelless_frames_agree():
    df, truths = cccv_frame()
    _check(cycle_summary(df.lazy()), truths)
    _check(cycle_summary(df.drop("channel")), truths)
    lazy = cycle_summary_lazy(df.lazy())
    assert isinstance(lazy, pl.LazyFrame)
    _check(lazy.collect(), truths)
    _check(cycle_summary_lazy(df.drop("channel")).collect(), truths)


def test_interleaved_channels_are_summarised_separately():
    a, truths = cccv_frame("a")
    b, _ = cccv_frame("b")
    # A second channel whose currents are twice as large: capacities and energies double.
    b = b.with_columns(pl.col("current_ampere") * 2, pl.col("test_time_second") + 0.5)
    both = pl.concat([a, b]).sort("test_time_second", maintain_order=True)
    summary = cycle_summary(both)
    assert summary.height == 6
    _check(summary.filter(pl.col("channel") == "a"), truths)
    sb = summary.filter(pl.col("channel") == "b")
    for row, truth in zip(sb.iter_rows(named=True), truths, strict=True):
        assert row["charge_capacity_ampere_hour"] == pytest.approx(
            2 * truth["charge_capacity_ampere_hour"], rel=1e-9
        )


def test_specific_capacity_and_anode_convention():
    df, truths = cccv_frame()
    s = cycle_summary(df, active_mass_g=0.004, efficiency="charge/discharge")
    want = truths[0]["discharge_capacity_ampere_hour"] * 1000 / 0.004
    assert s["discharge_specific_capacity_milliampere_hour_per_gram"][0] == pytest.approx(want)
    ce = truths[0]["charge_capacity_ampere_hour"] / truths[0]["discharge_capacity_ampere_hour"]
    assert s["coulombic_efficiency"][0] == pytest.approx(ce)


def test_non_finite_samples_contribute_nothing_and_rest_only_cycle_has_null_efficiency():
    df, truths = cccv_frame()
    rest = pl.DataFrame(
        {
            "channel": ["ch1"] * 3,
            "test_time_second": [1e6, 1e6 + 10, 1e6 + 20],
            "voltage_volt": [3.1, float("nan"), 3.1],
            "current_ampere": [0.0, float("nan"), 0.0],
            "cycle_count": pl.Series([4, 4, 4], dtype=pl.Int32),
        }
    )
    s = cycle_summary(pl.concat([df, rest]))
    _check(s.head(3), truths)
    no_cycle = rest.with_columns(pl.lit(None, dtype=pl.Int32).alias("cycle_count"))
    for fn in (cycle_summary, lambda f: cycle_summary_lazy(f).collect()):
        with_nulls = fn(pl.concat([df, no_cycle]))
        assert with_nulls.height == 3
        _check(with_nulls, truths)
    last = s.row(3, named=True)
    assert last["charge_capacity_ampere_hour"] == 0.0
    assert last["coulombic_efficiency"] is None
    assert last["mean_discharge_voltage_volt"] is None


def test_bad_input_is_named():
    df, _ = cccv_frame()
    with pytest.raises(CyclingError, match="cycle_count"):
        cycle_summary(df.drop("cycle_count"))
    with pytest.raises(CyclingError, match="efficiency"):
        cycle_summary(df, efficiency="both")  # type: ignore[arg-type]
    with pytest.raises(CyclingError, match="active_mass_g"):
        cycle_summary(df, active_mass_g=0.0)


def test_gravimetric_energy_density():
    # 1 Ah at 3.7 V in a 20 g cell: 185 Wh/kg.
    assert gravimetric_energy_density(1.0, 3.7, 20.0) == pytest.approx(185.0)
    parts = {"cathode": 8.0, "separator": 4.0, "anode": 3.0, "collectors": 5.0}
    assert gravimetric_energy_density(1.0, 3.7, parts) == pytest.approx(185.0)
    with pytest.raises(CyclingError):
        gravimetric_energy_density(1.0, 3.7, {})


def _hms_to_s(col: str) -> pl.Expr:
    parts = pl.col(col).str.split(":")
    return (
        parts.list.get(0).cast(pl.Float64) * 3600
        + parts.list.get(1).cast(pl.Float64) * 60
        + parts.list.get(2).cast(pl.Float64)
    )


@pytest.mark.shared_data
def test_neware_export_capacities_match_the_cycler(shared_data):
    """The Neware export logs per-step capacities; our integration of I(t) must agree within 1 %."""
    raw = pl.read_csv(shared_data / "cycling" / "neware_uio.csv", infer_schema_length=None)
    samples = raw.select(
        _hms_to_s("Cumulative Time").alias("test_time_second"),
        pl.col("Voltage(V)").alias("voltage_volt"),
        pl.col("Current(A)").alias("current_ampere"),
        pl.col("Cycle Index").cast(pl.Int32).alias("cycle_count"),
    )
    vendor = (
        raw.group_by("Cycle Index", "Step Index")
        .agg(pl.col("Chg. Cap.(Ah)").max(), pl.col("DChg. Cap.(Ah)").max())
        .group_by("Cycle Index")
        .agg(pl.col("Chg. Cap.(Ah)").sum(), pl.col("DChg. Cap.(Ah)").sum())
        .sort("Cycle Index")
    )
    ours = cycle_summary(samples)
    assert ours["cycle_count"].to_list() == vendor["Cycle Index"].to_list()
    np.testing.assert_allclose(ours["charge_capacity_ampere_hour"], vendor["Chg. Cap.(Ah)"], 0.01)
    np.testing.assert_allclose(
        ours["discharge_capacity_ampere_hour"], vendor["DChg. Cap.(Ah)"], 0.01
    )
    # A silicon half-cell: lithiation (discharge) comes first, so CE is charge / discharge;
    # the last cycle of the export is cut short.
    anode = cycle_summary(samples, efficiency="charge/discharge")
    assert all(0.8 < ce <= 1.0 for ce in anode["coulombic_efficiency"].head(3))


def _random_cycling(n: int, seed: int) -> pl.DataFrame:
    """Two interleaved channels of piecewise-constant current with noise, jitter, a cycle
    number that revisits an earlier value, and a few NaN samples."""
    rng = np.random.default_rng(seed)
    frames = []
    for ch in ("a", "b"):
        levels = rng.choice([-2.0, -1.0, 0.0, 0.5, 1.0], size=n // 500 + 1)
        current = np.repeat(levels, 500)[:n] + 1e-3 * rng.standard_normal(n)
        t = np.cumsum(rng.uniform(0.5, 1.5, n))
        v = 3.7 + 0.05 * current + 0.01 * np.sin(t / 500) + 1e-4 * rng.standard_normal(n)
        cycle = (np.arange(n) // 7000 + 1).astype(np.int32)
        cycle[n // 2 : n // 2 + 3000] = 1  # a cycle number seen again later
        v[rng.integers(0, n, 5)] = np.nan
        current[rng.integers(0, n, 5)] = np.nan
        frames.append(
            pl.DataFrame(
                {
                    "channel": [ch] * n,
                    "test_time_second": t,
                    "voltage_volt": v,
                    "current_ampere": current,
                    "cycle_count": cycle,
                }
            )
        )
    return pl.concat(frames).sort("test_time_second", maintain_order=True)


def test_kernel_and_polars_query_agree_on_messy_multichannel_data():
    df = _random_cycling(150_000, seed=4)
    fast = cycle_summary(df)
    query = cycle_summary_lazy(df).collect()
    assert fast.columns == query.columns
    assert fast.select("channel", "cycle_count").equals(query.select("channel", "cycle_count"))
    for col in fast.columns[2:]:
        np.testing.assert_allclose(
            fast[col].to_numpy().astype(float),
            query[col].to_numpy().astype(float),
            rtol=1e-9,
            atol=1e-12,
            err_msg=col,
        )
    assert fast["dc_resistance_ohm"].drop_nulls().len() > 0
    fixed = cycle_summary(df, dcr_min_step_ampere=0.4)
    fixed_q = cycle_summary_lazy(df, dcr_min_step_ampere=0.4).collect()
    np.testing.assert_allclose(fixed["dc_resistance_ohm"], fixed_q["dc_resistance_ohm"], 1e-9)


def test_kernel_threads_give_identical_sums():
    from cellbench.analysis.cycling_kernel import run_sums

    df = _random_cycling(200_000, seed=8).filter(pl.col("channel") == "a")
    args = [df[c].to_numpy() for c in ("test_time_second", "current_ampere", "voltage_volt")]
    one = run_sums(*args, df["cycle_count"].to_numpy(), threads=1)
    two = run_sums(*args, df["cycle_count"].to_numpy(), threads=3)
    np.testing.assert_allclose(one.sums, two.sums, rtol=1e-12)
    np.testing.assert_array_equal(one.max_abs_current, two.max_abs_current)
    assert sorted(one.edge_ohm.tolist()) == sorted(two.edge_ohm.tolist())


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=80),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
    block=st.sampled_from([1, 2, 3, 7, 64]),
    channels=st.sampled_from([1, 2]),
)
def test_kernel_equals_query_on_random_frames(n, seed, block, channels):
    """Any frame, any block size (blocks of 1 to 64 rows exercise every block edge)."""
    rng = np.random.default_rng(seed)
    frames = []
    for ch in range(channels):
        current = rng.choice([-1.0, 0.0, 0.25, 1.0], size=n) * rng.uniform(0.5, 1.5)
        current[rng.random(n) < 0.05] = np.nan
        frames.append(
            pl.DataFrame(
                {
                    "channel": [f"c{ch}"] * n,
                    "test_time_second": np.cumsum(rng.choice([0.0, 0.5, 1.0, 2.0], size=n)),
                    "voltage_volt": 3.5 + 0.1 * rng.standard_normal(n),
                    "current_ampere": current,
                    "cycle_count": pl.Series(np.sort(rng.integers(1, 4, size=n)), dtype=pl.Int32),
                }
            )
        )
    df = pl.concat(frames).sort("test_time_second", maintain_order=True)
    with patch.object(cycling_kernel, "BLOCK_ROWS", block):
        fast = cycle_summary(df)
    query = cycle_summary_lazy(df).collect()
    assert fast.select("channel", "cycle_count").equals(query.select("channel", "cycle_count"))
    for col in fast.columns[2:]:
        np.testing.assert_allclose(
            fast[col].to_numpy().astype(float),
            query[col].to_numpy().astype(float),
            rtol=1e-9,
            atol=1e-12,
            err_msg=col,
        )


def test_capacities_from_the_cyclers_counters():
    df, truths = cccv_frame()
    # running totals as a cycler counts them: restart each cycle, 1 % above the logged integral,
    # and cycle 3 has no counter values (a gap in the export): it stays integrated
    scale = {1: 1.01, 2: 1.01, 3: None}
    counted = []
    for (cycle,), part in df.group_by(["cycle_count"], maintain_order=True):
        i = part["current_ampere"].to_numpy()
        t = part["test_time_second"].to_numpy()
        dq = np.concatenate([[0.0], (i[1:] + i[:-1]) / 2 * np.diff(t) / 3600])
        k = scale[cycle]
        chg = np.cumsum(np.where(dq > 0, dq, 0.0)) * (k or 0)
        dchg = np.cumsum(np.where(dq < 0, -dq, 0.0)) * (k or 0)
        counted.append(
            part.with_columns(
                pl.Series("charging_capacity_ampere_hour", chg if k else [None] * len(chg)),
                pl.Series("discharging_capacity_ampere_hour", dchg if k else [None] * len(dchg)),
            )
        )
    frame = pl.concat(counted)
    integrated = cycle_summary(frame)
    _check(integrated, truths)
    counters = cycle_summary(frame, capacity_source="counters")
    lazy = cycle_summary_lazy(frame, capacity_source="counters").collect()
    assert_frame_equal(counters, lazy, check_exact=False, rel_tol=1e-9)
    for col in ("charge_capacity_ampere_hour", "discharge_capacity_ampere_hour"):
        ratio = (counters[col] / integrated[col]).to_list()
        assert ratio == pytest.approx([1.01, 1.01, 1.0], rel=1e-9)
    ce = counters["discharge_capacity_ampere_hour"] / counters["charge_capacity_ampere_hour"]
    assert counters["coulombic_efficiency"].to_list() == pytest.approx(ce.to_list(), rel=1e-12)
    # no energy counters: energies stay integrated, the mean voltage uses the counted capacity
    assert counters["charge_energy_watt_hour"].equals(integrated["charge_energy_watt_hour"])
    v = integrated["mean_charge_voltage_volt"].to_list()
    assert counters["mean_charge_voltage_volt"].to_list() == pytest.approx(
        [v[0] / 1.01, v[1] / 1.01, v[2]], rel=1e-9
    )
    with pytest.raises(CyclingError, match="capacity_source"):
        cycle_summary(frame, capacity_source="vendor")


def test_counters_carried_over_from_earlier_cycles_are_not_used():
    """A total that runs on over the whole test (not the schema's per-cycle one) would give
    cycle n the charge of cycles 1..n; such cycles stay integrated."""
    df, truths = cccv_frame()
    i = df["current_ampere"].to_numpy()
    t = df["test_time_second"].to_numpy()
    dq = np.concatenate([[0.0], (i[1:] + i[:-1]) / 2 * np.diff(t) / 3600])
    frame = df.with_columns(
        pl.Series("charging_capacity_ampere_hour", np.cumsum(np.where(dq > 0, dq, 0.0))),
        pl.Series("discharging_capacity_ampere_hour", np.cumsum(np.where(dq < 0, -dq, 0.0))),
    )
    _check(cycle_summary(frame, capacity_source="counters"), truths)
