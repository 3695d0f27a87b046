"""Per-cycle summary of galvanostatic cycling: capacity, energy, efficiencies, voltages, resistance.

Works on a ``samples`` frame (:mod:`cellbench.core.schema`), eager or lazy, one channel or many.
Two implementations give the same numbers (the tests hold them to each other):
:func:`cycle_summary` runs a cache-blocked, multi-threaded numpy kernel
(:mod:`.cycling_kernel`; ten million rows in a fraction of a second), and
:func:`cycle_summary_lazy` is a pure polars query to compose with scans and filters.

Conventions (stated once, used everywhere):

* Current is positive on charge (BDF). Capacity and energy are integrated with the trapezoidal
  rule over consecutive samples of the same channel. The interval between sample ``i-1`` and
  sample ``i`` belongs to the cycle of sample ``i`` (so no charge is lost or counted twice when the
  cycle number changes) and counts as *charge* when its mean current is positive, *discharge*
  when negative. Charge and discharge capacities and energies are reported as positive numbers.
* Samples must be in time order within each channel (every cellbench run and vendor reader
  delivers them so); intervals with a non-finite time, current or voltage contribute nothing,
  and rows without a cycle number are left out.
* Coulombic efficiency is ``discharge / charge`` by default: the convention for a cell charged
  first (a full cell, or a cathode against lithium). For an anode against lithium, where the
  first half-cycle is a lithiation (negative current, a "discharge"), pass
  ``efficiency="charge/discharge"``. Energy efficiency follows the same convention.
* Mean charge (discharge) voltage is energy over capacity, the charge-weighted mean voltage.
* DC resistance is ``|dV/dI|`` across current steps (consecutive samples whose current differs by
  at least ``dcr_min_step_ampere``), the median over the steps of the cycle. It includes whatever
  polarisation builds within one sampling period, so fast logging at step edges gives the purest
  ohmic value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import polars as pl

from cellbench.analysis.cycling_kernel import run_sums
from cellbench.core.errors import CellbenchError

Efficiency = Literal["discharge/charge", "charge/discharge"]
CapacitySource = Literal["integration", "counters"]

TIME = "test_time_second"
VOLTAGE = "voltage_volt"
CURRENT = "current_ampere"
CYCLE = "cycle_count"
CHANNEL = "channel"

_SECONDS_PER_HOUR = 3600.0
_HALF_HOUR = 0.5 / _SECONDS_PER_HOUR

SUMMARY_COLUMNS: tuple[str, ...] = (
    CYCLE,
    "charge_capacity_ampere_hour",
    "discharge_capacity_ampere_hour",
    "charge_energy_watt_hour",
    "discharge_energy_watt_hour",
    "coulombic_efficiency",
    "energy_efficiency",
    "mean_charge_voltage_volt",
    "mean_discharge_voltage_volt",
    "dc_resistance_ohm",
    "test_time_start_second",
    "test_time_end_second",
    "duration_second",
    "sample_count",
)


#: Summary column <- the per-cycle running total of the ``samples`` schema it can come from.
COUNTERS: dict[str, str] = {
    "charge_capacity_ampere_hour": "charging_capacity_ampere_hour",
    "discharge_capacity_ampere_hour": "discharging_capacity_ampere_hour",
    "charge_energy_watt_hour": "charging_energy_watt_hour",
    "discharge_energy_watt_hour": "discharging_energy_watt_hour",
}


class CyclingError(CellbenchError):
    """The samples cannot be summarised (missing columns, bad options)."""


def _require(columns: Sequence[str], needed: Sequence[str], what: str) -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        raise CyclingError(f"{what}: missing column(s) {missing}; have {list(columns)}")


def _increments(lf: pl.LazyFrame, by_channel: bool) -> pl.LazyFrame:
    """Per-row trapezoid increments of charge (Ah) and energy (Wh), split by sign, and step edges.

    Built in stages of ``with_columns`` so that each shifted column is computed once.
    """

    def prev(name: str) -> pl.Expr:
        e = pl.col(name).shift(1)
        return (e.over(CHANNEL) if by_channel else e).alias(f"_{name}_prev")

    lf = lf.with_columns(prev(TIME), prev(CURRENT), prev(VOLTAGE))
    t0, i0, v0 = (pl.col(f"_{n}_prev") for n in (TIME, CURRENT, VOLTAGE))
    half_h = 0.5 / _SECONDS_PER_HOUR
    lf = lf.with_columns(
        (pl.col(TIME) - t0).alias("_dt"),
        (pl.col(CURRENT) - i0).alias("_di"),
    ).with_columns(
        ((pl.col(CURRENT) + i0) * pl.col("_dt") * half_h).fill_nan(0.0).alias("_q"),
        ((pl.col(CURRENT) * pl.col(VOLTAGE) + i0 * v0) * pl.col("_dt") * half_h)
        .fill_nan(0.0)
        .alias("_e"),
    )
    q, e, di = pl.col("_q"), pl.col("_e"), pl.col("_di")
    return lf.with_columns(
        pl.when(q > 0).then(q).otherwise(0.0).alias("_qc"),
        pl.when(q < 0).then(-q).otherwise(0.0).alias("_qd"),
        pl.when(q > 0).then(e).otherwise(0.0).alias("_ec"),
        pl.when(q < 0).then(-e).otherwise(0.0).alias("_ed"),
        pl.col("_dt").fill_null(0.0).fill_nan(0.0),
        di.abs().alias("_di"),
        pl.when(di.abs() > 0)
        .then(((pl.col(VOLTAGE) - v0) / di).abs())
        .otherwise(None)
        .fill_nan(None)
        .alias("_r"),
    )


def _counter_columns(columns: Sequence[str], source: str) -> list[str]:
    """The running-total columns to take the cycle's capacities and energies from."""
    if source == "integration":
        return []
    if source != "counters":
        raise CyclingError(f"capacity_source must be 'integration' or 'counters', got {source!r}")
    return [c for c in COUNTERS.values() if c in columns]


def _use_counters(
    sums: pl.LazyFrame, samples: pl.LazyFrame, keys: list[str], counters: list[str]
) -> pl.LazyFrame:
    """Replace integrated capacities/energies by the cycle's totals from the cycler's own
    running counters, where a cycle has them; never by integration behind the caller's back.

    The schema's counters restart at zero each cycle, so the cycle's total is the counter's
    last (largest) value, also where it does not start at zero: a file that begins inside a
    step (a paused and resumed test's export) shows the step's count as the cycler kept it. A
    counter that runs on over the whole test (each cycle starting at or above the total the one
    before it ended with) gives the cycle's own part: its largest value less that total.
    """
    if not counters:
        return sums
    group = [k for k in keys if k != CYCLE]

    def total(c: str) -> list[pl.Expr]:
        x = pl.col(c).cast(pl.Float64)
        return [x.max().alias(f"_max_{c}"), x.drop_nulls().first().alias(f"_first_{c}")]

    def own_part(c: str) -> pl.Expr:
        top, first = pl.col(f"_max_{c}"), pl.col(f"_first_{c}")
        before = top.shift(1).over(group) if group else top.shift(1)
        runs_on = first >= before - (1e-12 + 1e-6 * before.abs())
        return (top - pl.when(runs_on).then(before).otherwise(0.0)).alias(f"_total_{c}")

    totals = (
        samples.filter(pl.col(CYCLE).is_not_null())
        .group_by(keys)
        .agg(e for c in counters for e in total(c))
        .sort(keys)
        .select(*keys, *(own_part(c) for c in counters))
    )
    by_counter = {v: k for k, v in COUNTERS.items()}
    return (
        sums.join(totals, on=keys, how="left")
        .with_columns(
            pl.coalesce(pl.col(f"_total_{c}"), pl.col(by_counter[c])).alias(by_counter[c])
            for c in counters
        )
        .drop(f"_total_{c}" for c in counters)
    )


def _check_options(columns: list[str], efficiency: str, active_mass_g: float | None) -> None:
    _require(columns, (TIME, VOLTAGE, CURRENT, CYCLE), "cycle summary")
    if efficiency not in ("discharge/charge", "charge/discharge"):
        raise CyclingError(
            f"efficiency must be 'discharge/charge' or 'charge/discharge', got {efficiency!r}"
        )
    if active_mass_g is not None and not active_mass_g > 0:
        raise CyclingError(f"active_mass_g must be positive, got {active_mass_g!r}")


def _finish(
    sums: pl.LazyFrame,
    keys: list[str],
    efficiency: Efficiency,
    active_mass_g: float | None,
) -> pl.LazyFrame:
    """Efficiencies, mean voltages and specific quantities from the per-cycle sums."""
    qc, qd = pl.col("charge_capacity_ampere_hour"), pl.col("discharge_capacity_ampere_hour")
    ec, ed = pl.col("charge_energy_watt_hour"), pl.col("discharge_energy_watt_hour")
    if efficiency == "discharge/charge":
        num_q, den_q, num_e, den_e = qd, qc, ed, ec
    else:
        num_q, den_q, num_e, den_e = qc, qd, ec, ed
    out = sums.with_columns(
        pl.when(den_q > 0).then(num_q / den_q).otherwise(None).alias("coulombic_efficiency"),
        pl.when(den_e > 0).then(num_e / den_e).otherwise(None).alias("energy_efficiency"),
        pl.when(qc > 0).then(ec / qc).otherwise(None).alias("mean_charge_voltage_volt"),
        pl.when(qd > 0).then(ed / qd).otherwise(None).alias("mean_discharge_voltage_volt"),
    )
    ordered = [*([CHANNEL] if CHANNEL in keys else []), *SUMMARY_COLUMNS]
    if active_mass_g is not None:
        per_g = 1000.0 / active_mass_g  # Ah -> mAh, per gram
        out = out.with_columns(
            (qc * per_g).alias("charge_specific_capacity_milliampere_hour_per_gram"),
            (qd * per_g).alias("discharge_specific_capacity_milliampere_hour_per_gram"),
            (ec * per_g).alias("charge_specific_energy_milliwatt_hour_per_gram"),
            (ed * per_g).alias("discharge_specific_energy_milliwatt_hour_per_gram"),
        )
        ordered += [
            "charge_specific_capacity_milliampere_hour_per_gram",
            "discharge_specific_capacity_milliampere_hour_per_gram",
            "charge_specific_energy_milliwatt_hour_per_gram",
            "discharge_specific_energy_milliwatt_hour_per_gram",
        ]
    return out.sort(keys).select(ordered)


def cycle_summary_lazy(
    samples: pl.DataFrame | pl.LazyFrame,
    *,
    efficiency: Efficiency = "discharge/charge",
    active_mass_g: float | None = None,
    dcr_min_step_ampere: float | None = None,
    capacity_source: CapacitySource = "integration",
) -> pl.LazyFrame:
    """:func:`cycle_summary` as a polars query, not yet collected (compose it with more work:
    a scan of a large file, a filter, a join). Same results as the eager kernel."""
    lf = samples.lazy()
    columns = lf.collect_schema().names()
    _check_options(columns, efficiency, active_mass_g)
    counters = _counter_columns(columns, capacity_source)
    by_channel = CHANNEL in columns
    keys = [CHANNEL, CYCLE] if by_channel else [CYCLE]
    full_keys = list(keys)
    original = lf
    lf = lf.select([c for c in (CHANNEL, TIME, VOLTAGE, CURRENT, CYCLE) if c in columns])
    single: str | None = None
    if by_channel and isinstance(samples, pl.DataFrame) and samples.height:
        # One channel, the usual case: no per-channel windows or string keys (2-3x faster).
        names = samples.get_column(CHANNEL).unique()
        if names.len() == 1 and names[0] is not None:
            single, by_channel, keys = names[0], False, [CYCLE]
            lf = lf.drop(CHANNEL)
    lf = _increments(lf.filter(pl.col(CYCLE).is_not_null()), by_channel)
    if dcr_min_step_ampere is None:
        # Half of the largest current magnitude in the cycle: catches CC starts and ends, not
        # the slow taper of a CV step, whatever C-rate each cycle runs at.
        threshold = 0.5 * pl.col(CURRENT).abs().max()
    else:
        threshold = pl.lit(float(dcr_min_step_ampere))
    sums = lf.group_by(keys).agg(
        pl.col("_r").filter(pl.col("_di") >= threshold).median().alias("dc_resistance_ohm"),
        pl.col("_qc").sum().alias("charge_capacity_ampere_hour"),
        pl.col("_qd").sum().alias("discharge_capacity_ampere_hour"),
        pl.col("_ec").sum().alias("charge_energy_watt_hour"),
        pl.col("_ed").sum().alias("discharge_energy_watt_hour"),
        pl.col(TIME).min().alias("test_time_start_second"),
        pl.col(TIME).max().alias("test_time_end_second"),
        pl.col("_dt").sum().alias("duration_second"),
        pl.len().cast(pl.Int64).alias("sample_count"),
    )
    if single is not None:
        sums = sums.with_columns(pl.lit(single, dtype=pl.String).alias(CHANNEL))
        keys = [CHANNEL, CYCLE]
    sums = _use_counters(sums, original.select(*full_keys, *counters), full_keys, counters)
    return _finish(sums, keys, efficiency, active_mass_g)


def _kernel_sums(
    df: pl.DataFrame, by_channel: bool, dcr_min_step_ampere: float | None
) -> pl.DataFrame:
    """Per-cycle sums of an eager frame through :mod:`.cycling_kernel`."""
    parts = (
        df.partition_by(CHANNEL, maintain_order=True, as_dict=True) if by_channel else {None: df}
    )
    frames, edge_frames = [], []
    for key, part in parts.items():
        cyc = part.get_column(CYCLE)
        rs = run_sums(
            part.get_column(TIME).cast(pl.Float64).fill_null(float("nan")).to_numpy(),
            part.get_column(CURRENT).cast(pl.Float64).fill_null(float("nan")).to_numpy(),
            part.get_column(VOLTAGE).cast(pl.Float64).fill_null(float("nan")).to_numpy(),
            cyc.to_numpy(),
            fixed_threshold=dcr_min_step_ampere,
        )
        runs = pl.DataFrame(
            {
                CYCLE: pl.Series(rs.cycle).cast(cyc.dtype),
                "charge_capacity_ampere_hour": rs.sums[0] * _HALF_HOUR,
                "discharge_capacity_ampere_hour": rs.sums[1] * _HALF_HOUR,
                "charge_energy_watt_hour": rs.sums[2] * _HALF_HOUR,
                "discharge_energy_watt_hour": rs.sums[3] * _HALF_HOUR,
                "duration_second": rs.sums[4],
                "test_time_start_second": rs.start_time,
                "test_time_end_second": rs.end_time,
                "sample_count": rs.count.astype(np.int64),
                "_imax": rs.max_abs_current,
            }
        )
        edges = pl.DataFrame(
            {
                CYCLE: pl.Series(rs.cycle[rs.edge_run]).cast(cyc.dtype),
                "_di": rs.edge_step_ampere,
                "_r": rs.edge_ohm,
            }
        )
        if by_channel:
            name = key[0] if isinstance(key, tuple) else key
            runs = runs.with_columns(pl.lit(name, dtype=pl.String).alias(CHANNEL))
            edges = edges.with_columns(pl.lit(name, dtype=pl.String).alias(CHANNEL))
        frames.append(runs)
        edge_frames.append(edges)
    keys = [CHANNEL, CYCLE] if by_channel else [CYCLE]
    sum_cols = [
        "charge_capacity_ampere_hour",
        "discharge_capacity_ampere_hour",
        "charge_energy_watt_hour",
        "discharge_energy_watt_hour",
        "duration_second",
        "sample_count",
    ]
    cycles = (
        pl.concat(frames)
        .group_by(keys)
        .agg(
            *[pl.col(c).sum() for c in sum_cols],
            pl.col("test_time_start_second").min(),
            pl.col("test_time_end_second").max(),
            pl.col("_imax").max(),
        )
    )
    threshold = (
        pl.lit(float(dcr_min_step_ampere))
        if dcr_min_step_ampere is not None
        else 0.5 * pl.col("_imax")
    )
    dcr = (
        pl.concat(edge_frames)
        .join(cycles.select(*keys, "_imax"), on=keys, how="inner")
        .filter((pl.col("_di") >= threshold) & (pl.col("_di") > 0))
        .group_by(keys)
        .agg(pl.col("_r").median().alias("dc_resistance_ohm"))
    )
    return cycles.join(dcr, on=keys, how="left").drop("_imax")


def cycle_summary(
    samples: pl.DataFrame | pl.LazyFrame,
    *,
    efficiency: Efficiency = "discharge/charge",
    active_mass_g: float | None = None,
    dcr_min_step_ampere: float | None = None,
    capacity_source: CapacitySource = "integration",
    step_resistance_delays_second: Sequence[float] | None = None,
) -> pl.DataFrame:
    """One row per cycle (and channel, when the frame has a ``channel`` column).

    Args:
        samples: a ``samples`` frame; needs ``test_time_second`` (s), ``voltage_volt`` (V),
            ``current_ampere`` (A, positive on charge) and ``cycle_count``. Where a file has no
            cycle numbers, add them first with :func:`cellbench.analysis.segment.segment`.
            A lazy frame has its four (five) columns collected first.
        efficiency: ``"discharge/charge"`` (default; cell charged first) or
            ``"charge/discharge"`` (anode against lithium, discharged first).
        active_mass_g: active material mass in g; adds specific capacity (mAh/g) and specific
            energy (mWh/g) columns.
        dcr_min_step_ampere: smallest current change (A) between two samples that counts as a
            step edge for the DC resistance; default half the largest ``|current|`` of the
            cycle.
        capacity_source: ``"integration"`` (default) integrates the logged I and V*I;
            ``"counters"`` takes each cycle's capacities (and energies, where present) from the
            frame's running totals ``charging_capacity_ampere_hour`` etc. — a cycler's own
            counters, integrated at its internal rate, so what its software shows (a vendor
            reader keeps them). Cycles without counter values stay integrated.
        step_resistance_delays_second: adds the step resistance at every current step edge
            (:func:`cellbench.analysis.pulses.step_resistance_by_cycle`: the cycle's median of
            ``(V - V_rest) / (I - I_rest)`` at the first sample after the edge and at these
            delays, s): ``step_edge_count``, ``step_resistance_ohmic_ohm``,
            ``step_resistance_<d>s_ohm``, ``step_resistance_end_ohm``.

    Where the frame carries the cycler's own resistance (``internal_resistance_ohm``, the BDF
    ``dc_internal_resistance_ohm``), its per-cycle median is added as
    ``dc_internal_resistance_ohm``.

    Returns:
        Columns (units in the names): ``cycle_count``, ``charge_capacity_ampere_hour``,
        ``discharge_capacity_ampere_hour``, ``charge_energy_watt_hour``,
        ``discharge_energy_watt_hour``, ``coulombic_efficiency`` (fraction),
        ``energy_efficiency`` (fraction), ``mean_charge_voltage_volt``,
        ``mean_discharge_voltage_volt``, ``dc_resistance_ohm``, ``test_time_start_second``,
        ``test_time_end_second``, ``duration_second``, ``sample_count``; specific columns when
        the mass is given; ``channel`` first when the frame has one. Efficiencies and mean
        voltages are null where the denominator is zero.
    """
    lf = samples.lazy()
    columns = lf.collect_schema().names()
    _check_options(columns, efficiency, active_mass_g)
    counters = _counter_columns(columns, capacity_source)
    wanted = [c for c in (CHANNEL, TIME, VOLTAGE, CURRENT, CYCLE, *counters) if c in columns]
    lazy_input = isinstance(samples, pl.LazyFrame)
    df = lf.select(wanted).collect() if lazy_input else samples.select(wanted)
    if df.get_column(CYCLE).null_count():
        df = df.filter(pl.col(CYCLE).is_not_null())
    by_channel = CHANNEL in columns
    keys = [CHANNEL, CYCLE] if by_channel else [CYCLE]
    if df.height == 0:
        return cycle_summary_lazy(df, efficiency=efficiency, active_mass_g=active_mass_g).collect()
    sums = _kernel_sums(df, by_channel, dcr_min_step_ampere).lazy()
    sums = _use_counters(sums, df.lazy(), keys, counters)
    out = _finish(sums, keys, efficiency, active_mass_g).collect()
    return _with_resistances(out, lf, columns, keys, step_resistance_delays_second)


def _with_resistances(
    out: pl.DataFrame,
    lf: pl.LazyFrame,
    columns: list[str],
    keys: list[str],
    delays: Sequence[float] | None,
) -> pl.DataFrame:
    """The summary with the cycler's DC resistance (where logged) and, when ``delays`` is given,
    the step resistance at every edge (:mod:`cellbench.analysis.pulses`)."""
    ir = "internal_resistance_ohm"
    if ir in columns:
        dcir = (
            lf.filter(pl.col(CYCLE).is_not_null())
            .group_by(keys)
            .agg(
                pl.col(ir)
                .cast(pl.Float64)
                .fill_nan(None)
                .median()
                .alias("dc_internal_resistance_ohm")
            )
            .collect()
        )
        if dcir.get_column("dc_internal_resistance_ohm").null_count() < dcir.height:
            out = out.join(
                dcir.with_columns(pl.col(k).cast(out.schema[k]) for k in keys), on=keys, how="left"
            )
    if delays is None:
        return out
    from cellbench.analysis.pulses import step_resistance_by_cycle

    wanted = [c for c in (CHANNEL, TIME, VOLTAGE, CURRENT, CYCLE, "step_index") if c in columns]
    df = lf.select(wanted).filter(pl.col(CYCLE).is_not_null()).collect()
    parts = df.partition_by(CHANNEL, as_dict=True) if CHANNEL in keys else {(None,): df}
    frames = []
    for (name, *_), part in parts.items():
        per = step_resistance_by_cycle(part, delays_second=delays)
        if name is not None:
            per = per.with_columns(pl.lit(name, dtype=pl.String).alias(CHANNEL))
        frames.append(per.with_columns(pl.col(CYCLE).cast(out.schema[CYCLE])))
    return out.join(pl.concat(frames), on=keys, how="left")


def gravimetric_energy_density(
    capacity_ah: float,
    mean_voltage_v: float,
    masses_g: float | Mapping[str, float],
) -> float:
    """Energy per mass of a cell, in Wh/kg.

    Args:
        capacity_ah: the cell's (discharge) capacity, Ah.
        mean_voltage_v: mean discharge voltage, V (see ``mean_discharge_voltage_volt``).
        masses_g: total mass in g, or the masses of the components (cathode composite,
            electrolyte separator, anode, current collectors, casing...) in g, summed.
    """
    total = float(sum(masses_g.values())) if isinstance(masses_g, Mapping) else float(masses_g)
    if not total > 0:
        raise CyclingError(f"the masses must sum to a positive value in g, got {masses_g!r}")
    if capacity_ah < 0 or mean_voltage_v < 0:
        raise CyclingError("capacity_ah and mean_voltage_v must not be negative")
    return capacity_ah * mean_voltage_v / (total / 1000.0)
