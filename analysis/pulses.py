"""Resistance from current pulses and current step edges: HPPC / DCIR per pulse, step resistance.

Definitions (stated once, used everywhere; current positive on charge):

* A **step edge** is a sample ``k`` whose current differs from the sample before by at least a
  threshold (``min_step_ampere``; default half the largest ``|current|`` of the data).
  ``V_rest``, ``I_rest`` are the last sample *before* the edge (``k - 1``); the edge's time is
  ``t_k``, the first sample of the new current (a cycler logs the first point of a step at the
  step's start).
* ``R(t) = (V(t) - V_rest) / (I(t) - I_rest)`` where ``V(t)``, ``I(t)`` are the first sample at or
  after ``t_k + t`` that still belongs to the same current level. So the **ohmic** resistance is
  ``R(0)``, the first sample after the edge; ``R(2 s)`` the charge-transfer value and ``R(end)``
  the last sample of the pulse (polarisation). No OCV correction is made unless asked for; the
  corrected value is then a separate key.
* A first sample taken ``dt`` after the true edge holds whatever polarisation built up within
  ``dt``: a 1 s log cannot give a 1 ms ohmic value. Every result states the log's interval at the
  edge (``edge_interval_second``: ``t_k - t_{k-1}``) and its interval during the pulse
  (``sampling_interval_second``), and a warning when these are coarser than
  ``ohmic_resolution_second`` (default 10 ms).
* A **pulse** is an edge out of rest (``|I_rest|`` at most ``rest_fraction`` of the largest
  current) into a constant current that lasts at most ``max_duration_second``; it ends at the
  last sample before the current leaves that level (within ``level_tolerance``). For pulses
  the edge threshold defaults to twice that rest tolerance (HPPC pulses are often smaller than
  the test's charge current), for step resistances to half the largest current.
* **SOC** (where a capacity is given) is ``initial_soc + Q(t) / capacity`` with ``Q`` the
  trapezoidal integral of the current since the first sample; without ``initial_soc`` the most
  charged point of the data is taken as SOC 1 (HPPC tests start from a full cell).
* **OCV correction** (``ocv_correction=True``): the open-circuit voltage moves during the pulse
  by ``dOCV = V_relaxed_after - V_rest`` (``V_relaxed_after`` is the last sample of the rest that
  follows the pulse); assuming it moves linearly with the charge passed,
  ``R_corr(t) = (V(t) - V_rest - dOCV * t / duration) / (I - I_rest)``, reported as
  ``r_end_ocv_corrected_ohm``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

from cellbench.core.errors import CellbenchError

TIME = "test_time_second"
VOLTAGE = "voltage_volt"
CURRENT = "current_ampere"
CYCLE = "cycle_count"
STEP = "step_index"
TEMPERATURE = "temperature_celsius"
PRESSURE = "pressure_megapascal"
ZERO_CELSIUS = 273.15

#: first-sample delay (s) beyond which an "ohmic" value is called polarisation-contaminated
OHMIC_RESOLUTION_SECOND = 0.01


class PulseError(CellbenchError, ValueError):
    """The samples cannot be analysed for pulses (missing columns, bad options)."""


def _require(df: pl.DataFrame, needed: Sequence[str], what: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise PulseError(f"{what}: missing column(s) {missing}; have {df.columns}")


@dataclass(frozen=True)
class Trace:
    """The arrays an edge analysis needs, finite rows only, in time order."""

    t: np.ndarray
    v: np.ndarray
    i: np.ndarray
    cycle: np.ndarray | None
    step: np.ndarray | None
    temperature_c: np.ndarray | None
    pressure_mpa: np.ndarray | None

    @classmethod
    def from_frame(cls, samples: pl.DataFrame | pl.LazyFrame, what: str) -> Trace:
        df = samples.lazy().collect() if isinstance(samples, pl.LazyFrame) else samples
        _require(df, (TIME, VOLTAGE, CURRENT), what)
        if "channel" in df.columns and df.get_column("channel").n_unique() > 1:
            raise PulseError(f"{what}: several channels; analyse one channel at a time")

        def col(name: str) -> np.ndarray | None:
            if name not in df.columns:
                return None
            return df.get_column(name).cast(pl.Float64).fill_null(math.nan).to_numpy()

        t, v, i = col(TIME), col(VOLTAGE), col(CURRENT)
        assert t is not None and v is not None and i is not None
        keep = np.isfinite(t) & np.isfinite(v) & np.isfinite(i)

        def sub(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[keep]

        t = t[keep]
        if t.size > 1 and np.any(np.diff(t) < 0):
            raise PulseError(f"{what}: samples are not in time order")
        return cls(
            t=t,
            v=v[keep],
            i=i[keep],
            cycle=sub(col(CYCLE)),
            step=sub(col(STEP)),
            temperature_c=sub(col(TEMPERATURE)),
            pressure_mpa=sub(col(PRESSURE)),
        )

    def charge_ah(self) -> np.ndarray:
        """Cumulative charge since the first sample, Ah (trapezoid)."""
        if self.t.size < 2:
            return np.zeros_like(self.t)
        inc = 0.5 * (self.i[1:] + self.i[:-1]) * np.diff(self.t) / 3600.0
        return np.concatenate(([0.0], np.cumsum(inc)))

    def at(self, a: np.ndarray | None, k: int) -> float | None:
        if a is None or not math.isfinite(a[k]):
            return None
        return float(a[k])


def _level_end(tr: Trace, k: int, stop: int, tolerance: float) -> int:
    """Last index (``< stop``) of the current level that starts at edge ``k``.

    The level is the median current of the first few samples after the edge; it ends before
    the first sample that leaves it by more than ``tolerance`` times the larger of the level
    and the edge's step (so a step into rest has a level too).
    """
    head = tr.i[k : min(stop, k + 5)]
    level = float(np.median(head))
    scale = max(abs(level), abs(float(tr.i[k] - tr.i[k - 1])))
    seg = tr.i[k:stop]
    off = np.abs(seg - level) > tolerance * scale
    off[0] = False  # the first sample may be caught on the source's ramp
    bad = np.flatnonzero(off)
    return k + (int(bad[0]) - 1 if bad.size else seg.size - 1)


def _r_at(tr: Trace, k: int, end: int, delay: float, v0: float, i0: float) -> float:
    """R at ``t_k + delay`` (first sample at or after it, within k..end); NaN past the end."""
    target = tr.t[k] + delay - 1e-9
    j = k + int(np.searchsorted(tr.t[k : end + 1], target, side="left"))
    if j > end:
        return math.nan
    di = tr.i[j] - i0
    return float((tr.v[j] - v0) / di) if di != 0 else math.nan


@dataclass
class PulseResult:
    """One pulse. Resistances in ohm (NaN where the pulse is too short for the delay)."""

    step_index: int | None
    cycle_count: int | None
    test_time_second: float  # time of the first sample of the pulse
    current_ampere: float  # median current of the pulse
    rest_current_ampere: float
    rest_voltage_volt: float
    duration_second: float
    soc: float | None
    temperature_kelvin: float | None
    pressure_megapascal: float | None
    r_ohmic_ohm: float
    r_2s_ohm: float
    r_end_ohm: float
    r_end_at_second: float  # time of the pulse's last sample after its first
    edge_interval_second: float  # t_k - t_{k-1}
    sampling_interval_second: float  # median interval inside the pulse
    r_at_ohm: dict[str, float] = field(default_factory=dict)  # extra delays, "10s" -> R
    r_end_ocv_corrected_ohm: float | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _coarse_warning(edge_dt: float, samp_dt: float, resolution: float) -> str | None:
    worst = max(edge_dt, samp_dt)
    if not worst > resolution:
        return None
    return (
        f"log interval {worst:.3g} s at the edge is coarser than {resolution:g} s: r_ohmic_ohm "
        f"includes polarisation built within up to {worst:.3g} s, it is not a pure ohmic value"
    )


def soc_trace(tr: Trace, capacity_ah: float | None, initial_soc: float | None) -> np.ndarray | None:
    if capacity_ah is None:
        return None
    if not capacity_ah > 0:
        raise PulseError(f"capacity_ah must be positive, got {capacity_ah!r}")
    q = tr.charge_ah()
    start = (1.0 - float(np.max(q)) / capacity_ah) if initial_soc is None else initial_soc
    return start + q / capacity_ah


def _edges(tr: Trace, min_step_ampere: float | None) -> np.ndarray:
    if tr.t.size < 2:
        return np.zeros(0, dtype=np.int64)
    imax = float(np.max(np.abs(tr.i)))
    thr = 0.5 * imax if min_step_ampere is None else float(min_step_ampere)
    if not thr > 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.abs(np.diff(tr.i)) >= thr) + 1


def pulse_spans(
    tr: Trace,
    *,
    max_duration_second: float = math.inf,
    min_step_ampere: float | None = None,
    rest_fraction: float = 0.02,
    level_tolerance: float = 0.05,
) -> list[tuple[int, int]]:
    """(first, last) sample index of every pulse out of rest (module rules): the sample before
    ``first`` is at rest, ``first..last`` hold one constant current for at most
    ``max_duration_second``."""
    if tr.t.size < 3:
        return []
    rest_tol = rest_fraction * float(np.max(np.abs(tr.i)))
    # out of rest, a step of twice the rest tolerance is an edge (not half the largest current:
    # HPPC pulses are often smaller than the test's charge current)
    edges = _edges(tr, 2 * rest_tol if min_step_ampere is None else min_step_ampere)
    n = tr.t.size
    out = []
    for e_pos, k in enumerate(edges):
        k = int(k)
        if abs(tr.i[k - 1]) > rest_tol or abs(tr.i[k]) <= rest_tol:
            continue
        stop = int(edges[e_pos + 1]) if e_pos + 1 < edges.size else n
        end = _level_end(tr, k, stop, level_tolerance)
        if end <= k or tr.t[end] - tr.t[k] > max_duration_second:
            continue
        out.append((k, end))
    return out


def pulse_duration(tr: Trace, k: int, end: int) -> float:
    """How long the current of the pulse ``k..end`` flowed, s: from its first sample to the
    first sample of the next level (a cycler logs a step's first point at its start); to its
    last sample where none follows."""
    nxt = end + 1 if end + 1 < tr.t.size else end
    return float(tr.t[nxt] - tr.t[k])


def rest_after(tr: Trace, end: int, rest_fraction: float = 0.02) -> tuple[int, int] | None:
    """(first, last) index of the rest that follows sample ``end`` (None if none follows)."""
    rest_tol = rest_fraction * float(np.max(np.abs(tr.i)))
    first = end + 1
    if first >= tr.t.size or abs(tr.i[first]) > rest_tol:
        return None
    last = first
    while last + 1 < tr.t.size and abs(tr.i[last + 1]) <= rest_tol:
        last += 1
    return first, last


def find_pulses(
    samples: pl.DataFrame | pl.LazyFrame,
    *,
    capacity_ah: float | None = None,
    initial_soc: float | None = None,
    delays_second: Sequence[float] = (),
    max_duration_second: float = 120.0,
    min_step_ampere: float | None = None,
    rest_fraction: float = 0.02,
    level_tolerance: float = 0.05,
    ohmic_resolution_second: float = OHMIC_RESOLUTION_SECOND,
    ocv_correction: bool = False,
) -> list[PulseResult]:
    """Every pulse out of rest (HPPC, DCIR), with its resistances; see the module for the rules.

    Args:
        samples: a ``samples`` frame (one channel): ``test_time_second`` (s), ``voltage_volt``
            (V), ``current_ampere`` (A, positive on charge); ``cycle_count``, ``step_index``,
            ``temperature_celsius`` and ``pressure_megapascal`` are used where present.
        capacity_ah: capacity for the SOC (None: ``soc`` is None).
        initial_soc: SOC of the first sample (None: the most charged point is SOC 1).
        delays_second: extra delays (s) at which R is reported in ``r_at_ohm``.
        max_duration_second: longer constant-current periods are not pulses (SOC adjustments,
            full discharges).
        min_step_ampere: smallest current change that makes an edge (default twice the rest
            tolerance).
        rest_fraction: ``|I|`` at most this fraction of the largest ``|current|`` is rest.
        level_tolerance: relative deviation from the pulse's current that ends it.
        ohmic_resolution_second: edge interval above which a warning says the ohmic value is
            not one.
        ocv_correction: add ``r_end_ocv_corrected_ohm`` (module docstring).
    """
    tr = Trace.from_frame(samples, "pulses")
    soc = soc_trace(tr, capacity_ah, initial_soc)
    out: list[PulseResult] = []
    spans = pulse_spans(
        tr,
        max_duration_second=max_duration_second,
        min_step_ampere=min_step_ampere,
        rest_fraction=rest_fraction,
        level_tolerance=level_tolerance,
    )
    for k, end in spans:
        i0, v0 = float(tr.i[k - 1]), float(tr.v[k - 1])
        duration = pulse_duration(tr, k, end)
        last = float(tr.t[end] - tr.t[k])
        level = float(np.median(tr.i[k : end + 1]))
        edge_dt = float(tr.t[k] - tr.t[k - 1])
        samp_dt = float(np.median(np.diff(tr.t[k : end + 1])))
        res = PulseResult(
            step_index=None if tr.step is None else int(tr.step[k]),
            cycle_count=None if tr.cycle is None else int(tr.cycle[k]),
            test_time_second=float(tr.t[k]),
            current_ampere=level,
            rest_current_ampere=i0,
            rest_voltage_volt=v0,
            duration_second=duration,
            soc=None if soc is None else float(soc[k - 1]),
            temperature_kelvin=(
                None if (tc := tr.at(tr.temperature_c, k - 1)) is None else tc + ZERO_CELSIUS
            ),
            pressure_megapascal=tr.at(tr.pressure_mpa, k - 1),
            r_ohmic_ohm=_r_at(tr, k, end, 0.0, v0, i0),
            r_2s_ohm=_r_at(tr, k, end, 2.0, v0, i0),
            r_end_ohm=_r_at(tr, k, end, last, v0, i0),
            r_end_at_second=last,
            edge_interval_second=edge_dt,
            sampling_interval_second=samp_dt,
            r_at_ohm={f"{d:g}s": _r_at(tr, k, end, float(d), v0, i0) for d in delays_second},
        )
        if (w := _coarse_warning(edge_dt, samp_dt, ohmic_resolution_second)) is not None:
            res.warnings.append(w)
        if last < 2.0:
            res.warnings.append(f"pulse logged for {last:.3g} s: no 2 s value")
        if ocv_correction:
            res.r_end_ocv_corrected_ohm = _ocv_corrected(tr, end, v0, i0, rest_fraction, res)
        out.append(res)
    return out


def _ocv_corrected(
    tr: Trace, end: int, v0: float, i0: float, rest_fraction: float, res: PulseResult
) -> float | None:
    """R at the pulse end less the OCV drift across it (the following rest's last voltage)."""
    rest = rest_after(tr, end, rest_fraction)
    if rest is None:
        res.warnings.append("no rest after the pulse: no OCV correction")
        return None
    last = rest[1]
    d_ocv = float(tr.v[last] - v0)
    di = tr.i[end] - i0
    return float((tr.v[end] - v0 - d_ocv) / di) if di != 0 else None


def step_resistances(
    samples: pl.DataFrame | pl.LazyFrame,
    *,
    delays_second: Sequence[float] = (2.0,),
    min_step_ampere: float | None = None,
    level_tolerance: float = 0.05,
) -> pl.DataFrame:
    """R at every current step edge (not only out of rest): one row per edge.

    Columns: ``cycle_count`` and ``step_index`` (where present), ``test_time_second``,
    ``current_before_ampere``, ``current_after_ampere``, ``r_ohmic_ohm`` (first sample after the
    edge), ``r_<d>s_ohm`` per delay (first sample at or after it, null if the level ends first),
    ``r_end_ohm`` (last sample of the level), ``level_duration_second``,
    ``edge_interval_second``. Resistances are ``(V - V_rest) / (I - I_rest)`` (module rules).
    """
    for d in delays_second:
        if not (math.isfinite(d) and d > 0):
            raise PulseError(f"step resistance delays must be positive seconds, got {d!r}")
    tr = Trace.from_frame(samples, "step resistance")
    edges = _edges(tr, min_step_ampere)
    n = tr.t.size
    rows: dict[str, list] = {
        CYCLE: [],
        STEP: [],
        TIME: [],
        "current_before_ampere": [],
        "current_after_ampere": [],
        "r_ohmic_ohm": [],
        **{_delay_key(d): [] for d in delays_second},
        "r_end_ohm": [],
        "level_duration_second": [],
        "edge_interval_second": [],
    }
    for e_pos, k in enumerate(edges):
        k = int(k)
        stop = int(edges[e_pos + 1]) if e_pos + 1 < edges.size else n
        end = _level_end(tr, k, stop, level_tolerance)
        i0, v0 = float(tr.i[k - 1]), float(tr.v[k - 1])
        rows[CYCLE].append(None if tr.cycle is None else int(tr.cycle[k]))
        rows[STEP].append(None if tr.step is None else int(tr.step[k]))
        rows[TIME].append(float(tr.t[k]))
        rows["current_before_ampere"].append(i0)
        rows["current_after_ampere"].append(float(tr.i[k]))
        rows["r_ohmic_ohm"].append(_r_at(tr, k, end, 0.0, v0, i0))
        for d in delays_second:
            rows[_delay_key(d)].append(_r_at(tr, k, end, float(d), v0, i0))
        rows["r_end_ohm"].append(_r_at(tr, k, end, float(tr.t[end] - tr.t[k]), v0, i0))
        rows["level_duration_second"].append(float(tr.t[end] - tr.t[k]))
        rows["edge_interval_second"].append(float(tr.t[k] - tr.t[k - 1]))
    schema = {k: pl.Float64 for k in rows}
    schema[CYCLE] = schema[STEP] = pl.Int32
    out = pl.DataFrame(rows, schema=schema).with_columns(pl.selectors.float().fill_nan(None))
    drop = [c for c, a in ((CYCLE, tr.cycle), (STEP, tr.step)) if a is None]
    return out.drop(drop)


def _delay_key(d: float) -> str:
    return f"r_{d:g}s_ohm".replace(".", "p")


def step_resistance_by_cycle(
    samples: pl.DataFrame | pl.LazyFrame,
    *,
    delays_second: Sequence[float] = (2.0,),
    min_step_ampere: float | None = None,
) -> pl.DataFrame:
    """Per cycle: the median over its step edges of the ohmic, delayed and end resistances.

    Columns ``cycle_count``, ``step_edge_count``, ``step_resistance_ohmic_ohm``,
    ``step_resistance_<d>s_ohm`` per delay, ``step_resistance_end_ohm``. Needs ``cycle_count``.
    """
    df = samples.lazy().collect() if isinstance(samples, pl.LazyFrame) else samples
    _require(df, (CYCLE,), "step resistance by cycle")
    edges = step_resistances(df, delays_second=delays_second, min_step_ampere=min_step_ampere)
    keys = [_delay_key(d) for d in delays_second]
    return (
        edges.group_by(CYCLE)
        .agg(
            pl.len().cast(pl.Int64).alias("step_edge_count"),
            pl.col("r_ohmic_ohm").abs().median().alias("step_resistance_ohmic_ohm"),
            *[pl.col(k).abs().median().alias("step_resistance" + k[1:]) for k in keys],
            pl.col("r_end_ohm").abs().median().alias("step_resistance_end_ohm"),
        )
        .sort(CYCLE)
    )
