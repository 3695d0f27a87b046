"""Step and cycle segmentation from current and voltage alone."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from test_cycling import cccv_frame

from cellbench.analysis.cycling import cycle_summary
from cellbench.analysis.segment import SegmentError, Thresholds, segment


def _runs(df: pl.DataFrame) -> list[str]:
    """Step types in order, one entry per step."""
    return (
        df.group_by("step_count", maintain_order=True)
        .agg(pl.col("step_type").first())["step_type"]
        .to_list()
    )


def test_cccv_steps_and_cycles_recovered():
    df, _ = cccv_frame()
    seg = segment(df.drop("cycle_count"))
    one_cycle = ["rest", "cc_charge", "cv_charge", "rest", "cc_discharge", "rest"]
    # The rest before each charge joins the cycle before it (a cycle starts at the charge),
    # and it merges with the rest that ended that cycle.
    assert _runs(seg) == ["rest", *(one_cycle[1:] * 3)]
    assert seg["step_count"].min() == 1
    assert seg["cycle_count"].unique().sort().to_list() == [1, 2, 3]
    first_charge = seg.filter(pl.col("step_type") == "cc_charge")
    assert first_charge.group_by("cycle_count").len().height == 3
    ours = cycle_summary(seg)
    theirs = cycle_summary(df)
    for col in ("charge_capacity_ampere_hour", "discharge_energy_watt_hour"):
        np.testing.assert_allclose(ours[col], theirs[col], rtol=1e-12)
    assert seg["step_index"].dtype == pl.Int32


def _frame(currents_and_durations, dt=1.0, v_of=None):
    t, i = [], []
    now = 0.0
    for amp, dur in currents_and_durations:
        for k in range(int(dur / dt)):
            t.append(now + k * dt)
            i.append(amp)
        now += dur
    t = np.array(t)
    i = np.array(i)
    v = 3.7 + 0.05 * i + 1e-4 * t if v_of is None else v_of(t, i)
    return pl.DataFrame({"test_time_second": t, "current_ampere": i, "voltage_volt": v})


def test_pulses_and_staircase():
    df = _frame(
        [(0, 60), (-1.0, 10), (0, 40), (1.0, 10), (0, 40), (0.1, 100), (0.2, 100), (0.3, 100)]
    )
    seg = segment(df)
    assert _runs(seg) == [
        "rest",
        "pulse_discharge",
        "rest",
        "pulse_charge",
        "rest",
        "cc_charge",
        "cc_charge",
        "cc_charge",
    ]
    assert seg["cycle_count"].unique().to_list() == [1]  # pulses never make a cycle


def test_sparse_cv_taper_is_one_step():
    """A voltage hold logged every minute: the current falls 30 % per sample."""
    cur = [(0.5, 600)] + [(0.5 * 0.7**k, 60) for k in range(1, 10)]
    df = _frame(cur, dt=60.0, v_of=lambda t, i: np.where(t < 600, 3.9 + t / 6000, 4.0))
    seg = segment(df)
    assert _runs(seg) == ["cc_charge", "cv_charge"]


def test_interleaved_channels_and_discharge_first():
    a = _frame([(-1.0, 100), (0, 50), (1.0, 100), (-1.0, 100), (1.0, 100)]).with_columns(
        pl.lit("a").alias("channel")
    )
    b = a.with_columns(pl.lit("b").alias("channel"), pl.col("test_time_second") + 0.5)
    both = pl.concat([a, b]).sort("test_time_second")
    seg = segment(both, first="discharge", thresholds=Thresholds(pulse_max_second=5))
    for ch in ("a", "b"):
        one = seg.filter(pl.col("channel") == ch)
        assert one["cycle_count"].unique(maintain_order=True).to_list() == [1, 2]
        assert _runs(one) == ["cc_discharge", "rest", "cc_charge", "cc_discharge", "cc_charge"]
    # Charge first: the opening discharge comes before any charge, so it joins cycle 1; the
    # charge after the next discharge opens cycle 2.
    seg_c = segment(a, thresholds=Thresholds(pulse_max_second=5))
    per_step = seg_c.group_by("step_count", maintain_order=True).agg(pl.col("cycle_count").first())
    assert per_step["cycle_count"].to_list() == [1, 1, 1, 1, 2]


def test_errors():
    with pytest.raises(SegmentError, match="voltage_volt"):
        segment(pl.DataFrame({"test_time_second": [0.0], "current_ampere": [0.0]}))
    df = _frame([(0, 5)])
    with pytest.raises(SegmentError, match="first"):
        segment(df, first="both")  # type: ignore[arg-type]


@pytest.mark.shared_data
def test_neware_steps_match_the_cyclers_own(shared_data):
    """The Neware export logs its step types; segmenting I and V alone must find the same."""
    from test_cycling import _hms_to_s

    raw = pl.read_csv(shared_data / "cycling" / "neware_uio.csv", infer_schema_length=None)
    df = raw.select(
        _hms_to_s("Cumulative Time").alias("test_time_second"),
        pl.col("Voltage(V)").alias("voltage_volt"),
        pl.col("Current(A)").alias("current_ampere"),
        pl.col("Step Type").alias("vendor_type"),
        pl.col("Step Index").rle_id().alias("vendor_step"),
    )
    seg = segment(df, first="discharge")
    assert seg["step_count"].to_list() == (seg["vendor_step"] + 1).to_list()
    names = {"Rest": "rest", "CC Chg": "cc_charge", "CC DChg": "cc_discharge"}
    assert seg["step_type"].to_list() == [names[v] for v in seg["vendor_type"]]
