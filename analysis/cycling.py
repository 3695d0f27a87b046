"""Per-cycle summary of galvanostatic cycling: capacity, energy, efficiencies, voltages, resistance.

Works on a ``samples`` frame (:mod:`cellbench.analysis.schema`), eager or lazy, one channel or many.
Everything is one polars query (two passes: per-row increments, then a group-by), so ten million
rows summarise in well under a second on a laptop.

Conventions (stated once, used everywhere):

* Current is positive on charge (BDF). Capacity and energy are integrated with the trapezoidal
  rule over consecutive samples of the same channel. The interval between sample ``i-1`` and
  sample ``i`` belongs to the cycle of sample ``i`` (so no charge is lost or counted twice when the
  cycle number changes) and counts as *charge* when its mean current is positive, *discharge*
  when negative. Charge and discharge capacities and energies are reported as positive numbers.
* Samples must be in time order within each channel (every cellbench run and vendor reader
  delivers them so); intervals with a non-finite time, current or voltage contribute nothing.
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

import polars as pl

from cellbench.analysis.errors import CellbenchError

Efficiency = Literal["discharge/charge", "charge/discharge"]

TIME = "test_time_second"
VOLTAGE = "voltage_volt"
CURRENT = "current_ampere"
CYCLE = "cycle_count"
CHANNEL = "channel"

_SECONDS_PER_HOUR = 3600.0

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


class CyclingError(CellbenchError):
    """The samples cannot be summarised (missing columns, bad options)."""


def _require(columns: Sequence[str], needed: Sequence[str], what: str) -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        raise CyclingError(f"{what}: missing column(s) {missing}; have {list(columns)}")


def _increments(
    lf: pl.LazyFrame, by_channel: bool, dcr_min_step_ampere: float | None
) -> pl.LazyFrame:
    """Per-row trapezoid increments of charge (Ah) and energy (Wh), split by sign, and step edges.

    Built in stages of ``with_columns`` so that each shifted column is computed once.
    """

    def prev(name: str) -> pl.Expr:
        e = pl.col(name).shift(1)
        return (e.over(CHANNEL) if by_channel else e).alias(f"_{name}_prev")

    if dcr_min_step_ampere is None:
        # Half of the largest current magnitude in the cycle: catches CC starts and ends, not
        # the slow taper of a CV step, whatever C-rate each cycle runs at.
        big = pl.col(CURRENT).abs().max()
        threshold = 0.5 * big.over([CHANNEL, CYCLE] if by_channel else CYCLE)
    else:
        threshold = pl.lit(float(dcr_min_step_ampere))
    lf = lf.with_columns(prev(TIME), prev(CURRENT), prev(VOLTAGE), threshold.alias("_thr"))
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
        pl.col("_dt").fill_null(0.0),
        pl.when(di.abs() >= pl.col("_thr"))
        .then(((pl.col(VOLTAGE) - v0) / di).abs())
        .otherwise(None)
        .alias("_r"),
    )


def cycle_summary_lazy(
    samples: pl.DataFrame | pl.LazyFrame,
    *,
    efficiency: Efficiency = "discharge/charge",
    active_mass_g: float | None = None,
    dcr_min_step_ampere: float | None = None,
) -> pl.LazyFrame:
    """The query behind :func:`cycle_summary`, not yet collected (compose it with more work)."""
    lf = samples.lazy()
    columns = lf.collect_schema().names()
    _require(columns, (TIME, VOLTAGE, CURRENT, CYCLE), "cycle summary")
    if efficiency not in ("discharge/charge", "charge/discharge"):
        raise CyclingError(
            f"efficiency must be 'discharge/charge' or 'charge/discharge', got {efficiency!r}"
        )
    if active_mass_g is not None and not active_mass_g > 0:
        raise CyclingError(f"active_mass_g must be positive, got {active_mass_g!r}")
    by_channel = CHANNEL in columns
    single_channel: str | None = None
    if by_channel and isinstance(samples, pl.DataFrame) and samples.height:
        # One channel (the usual case): skip the per-channel windows, which cost ~2x.
        channels = samples.get_column(CHANNEL).unique()
        if channels.len() == 1 and channels[0] is not None:
            single_channel, by_channel = channels[0], False
    keys = [CHANNEL, CYCLE] if by_channel else [CYCLE]
    lf = lf.select([c for c in (CHANNEL, TIME, VOLTAGE, CURRENT, CYCLE) if c in columns])
    if single_channel is not None:
        lf = lf.drop(CHANNEL)
    lf = _increments(lf, by_channel, dcr_min_step_ampere)
    out = lf.group_by(keys).agg(
        pl.col("_qc").sum().alias("charge_capacity_ampere_hour"),
        pl.col("_qd").sum().alias("discharge_capacity_ampere_hour"),
        pl.col("_ec").sum().alias("charge_energy_watt_hour"),
        pl.col("_ed").sum().alias("discharge_energy_watt_hour"),
        pl.col("_r").median().alias("dc_resistance_ohm"),
        pl.col(TIME).min().alias("test_time_start_second"),
        pl.col(TIME).max().alias("test_time_end_second"),
        pl.col("_dt").sum().alias("duration_second"),
        pl.len().cast(pl.Int64).alias("sample_count"),
    )
    qc, qd = pl.col("charge_capacity_ampere_hour"), pl.col("discharge_capacity_ampere_hour")
    ec, ed = pl.col("charge_energy_watt_hour"), pl.col("discharge_energy_watt_hour")
    num_q, den_q, num_e, den_e = (
        (qd, qc, ed, ec)
        if efficiency == "discharge/charge"
        else (
            qc,
            qd,
            ec,
            ed,
        )
    )
    out = out.with_columns(
        pl.when(den_q > 0).then(num_q / den_q).otherwise(None).alias("coulombic_efficiency"),
        pl.when(den_e > 0).then(num_e / den_e).otherwise(None).alias("energy_efficiency"),
        pl.when(qc > 0).then(ec / qc).otherwise(None).alias("mean_charge_voltage_volt"),
        pl.when(qd > 0).then(ed / qd).otherwise(None).alias("mean_discharge_voltage_volt"),
    )
    ordered = [*([CHANNEL] if CHANNEL in columns else []), *SUMMARY_COLUMNS]
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
    out = out.sort(keys)
    if single_channel is not None:
        out = out.with_columns(pl.lit(single_channel, dtype=pl.String).alias(CHANNEL))
    return out.select(ordered)


def cycle_summary(
    samples: pl.DataFrame | pl.LazyFrame,
    *,
    efficiency: Efficiency = "discharge/charge",
    active_mass_g: float | None = None,
    dcr_min_step_ampere: float | None = None,
) -> pl.DataFrame:
    """One row per cycle (and channel, when the frame has a ``channel`` column).

    Args:
        samples: a ``samples`` frame; needs ``test_time_second`` (s), ``voltage_volt`` (V),
            ``current_ampere`` (A, positive on charge) and ``cycle_count``. Where a file has no
            cycle numbers, add them first with :func:`cellbench.analysis.segment.segment`.
        efficiency: ``"discharge/charge"`` (default; cell charged first) or
            ``"charge/discharge"`` (anode against lithium, discharged first).
        active_mass_g: active material mass in g; adds specific capacity (mAh/g) and specific
            energy (mWh/g) columns.
        dcr_min_step_ampere: smallest current change (A) between two samples that counts as a
            step edge for the DC resistance; default half the largest ``|current|`` of the
            cycle.

    Returns:
        Columns (units in the names): ``cycle_count``, ``charge_capacity_ampere_hour``,
        ``discharge_capacity_ampere_hour``, ``charge_energy_watt_hour``,
        ``discharge_energy_watt_hour``, ``coulombic_efficiency`` (fraction),
        ``energy_efficiency`` (fraction), ``mean_charge_voltage_volt``,
        ``mean_discharge_voltage_volt``, ``dc_resistance_ohm``, ``test_time_start_second``,
        ``test_time_end_second``, ``duration_second``, ``sample_count``; specific columns when
        the mass is given; ``channel`` first for multi-channel frames. Efficiencies and mean
        voltages are null where the denominator is zero.
    """
    return cycle_summary_lazy(
        samples,
        efficiency=efficiency,
        active_mass_g=active_mass_g,
        dcr_min_step_ampere=dcr_min_step_ampere,
    ).collect()


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
