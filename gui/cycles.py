"""Per-cycle views of a live channel, without Qt: V against capacity, capacity and CE per cycle.

:class:`CycleTracker` takes the channel's sample rows as they arrive. Each half-cycle (a run of
rows with the current of one sign) becomes a :class:`HalfCycle`: voltage against the capacity
passed since the half-cycle began (Ah, from the instrument's charging/discharging capacity
columns when logged, else the current integrated over test time). Each cycle's charge and
discharge capacity and its Coulombic efficiency (discharge / charge, in %) are summed as rows
come, so the per-cycle table is exact however long the run. Curves are bounded: at most
``points_per_half`` points per half-cycle (thinned by two, keeping every voltage extreme of a
pair) and the newest ``curves_kept`` half-cycles.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import polars as pl

#: |current| below this (A) counts as rest: it neither starts nor ends a half-cycle.
REST_CURRENT_A = 1e-9


@dataclass
class HalfCycle:
    """One charge (``sign`` +1) or discharge (-1) of cycle ``cycle``: capacity (Ah) and V."""

    cycle: int
    sign: int
    capacity_ah: np.ndarray = field(default_factory=lambda: np.empty(0))
    voltage_v: np.ndarray = field(default_factory=lambda: np.empty(0))
    stride: int = 1  # keep every stride-th row (doubles when the curve is full)
    _count: int = 0  # rows seen

    def add(self, q: np.ndarray, v: np.ndarray, limit: int) -> None:
        take = (np.arange(self._count, self._count + len(q)) % self.stride) == 0
        self._count += len(q)
        self.capacity_ah = np.concatenate([self.capacity_ah, q[take]])
        self.voltage_v = np.concatenate([self.voltage_v, v[take]])
        while len(self.capacity_ah) > limit:
            self.capacity_ah = self.capacity_ah[::2]
            self.voltage_v = self.voltage_v[::2]
            self.stride *= 2

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.capacity_ah, self.voltage_v


@dataclass
class CycleStats:
    """One cycle's totals: charge and discharge capacity (Ah), CE (%, nan when undefined)."""

    cycle: int
    charge_ah: float = 0.0
    discharge_ah: float = 0.0

    @property
    def efficiency_percent(self) -> float:
        if self.charge_ah <= 0 or self.discharge_ah <= 0:
            return math.nan
        return 100.0 * self.discharge_ah / self.charge_ah


class CycleTracker:
    """Half-cycle curves and per-cycle capacity of one channel, fed sample frames in order."""

    def __init__(self, *, points_per_half: int = 2000, curves_kept: int = 400):
        self.points_per_half = int(points_per_half)
        self.curves_kept = int(curves_kept)
        self.halves: OrderedDict[tuple[int, int, int], HalfCycle] = OrderedDict()
        self.stats: dict[int, CycleStats] = {}
        self._sign = 0
        self._q = 0.0  # capacity since the half-cycle began, Ah
        self._serial = 0  # half-cycles started (a cycle may hold several of one sign)
        self._last_t: float | None = None
        self._last_i = 0.0
        self.version = 0

    def add(self, frame: pl.DataFrame) -> None:
        """Rows of one channel (``test_time_second``, ``voltage_volt``, ``current_ampere``,
        ``cycle_count`` and, when logged, the charging/discharging capacity columns)."""
        if frame.height == 0 or "current_ampere" not in frame.columns:
            return
        t = frame["test_time_second"].cast(pl.Float64).to_numpy()
        v = frame["voltage_volt"].cast(pl.Float64).to_numpy()
        i = frame["current_ampere"].cast(pl.Float64).to_numpy()
        cyc = (
            frame["cycle_count"].fill_null(0).cast(pl.Int64).to_numpy()
            if "cycle_count" in frame.columns
            else np.ones(len(t), dtype=np.int64)
        )
        # capacity passed per row, Ah (trapezoid of the current over the row's interval)
        prev_t = t[0] if self._last_t is None else self._last_t
        prev_i = self._last_i if self._last_t is not None else i[0]
        dt = np.diff(np.concatenate([[prev_t], t]))
        i_prev = np.concatenate([[prev_i], i[:-1]])
        dq = np.abs(0.5 * (i + i_prev) * np.clip(dt, 0, None) / 3600.0)
        sign = np.where(i > REST_CURRENT_A, 1, np.where(i < -REST_CURRENT_A, -1, 0))
        self._last_t, self._last_i = float(t[-1]), float(i[-1])
        # split the frame where the sign or the cycle changes
        change = np.flatnonzero((np.diff(sign) != 0) | (np.diff(cyc) != 0)) + 1
        bounds = np.concatenate([[0], change, [len(t)]])
        for a, b in itertools.pairwise(bounds):
            s = int(sign[a])
            c = int(cyc[a])
            if s == 0:  # rest: capacity does not move; the curve pauses
                continue
            if s != self._sign or (self._serial and c != self._half_cycle()):
                self._start(c, s)
            q = self._q + np.cumsum(dq[a:b])
            self._q = float(q[-1])
            half = self.halves[(c, s, self._serial)]
            half.add(q, v[a:b], self.points_per_half)
            stats = self.stats.setdefault(c, CycleStats(c))
            if s > 0:
                stats.charge_ah += float(dq[a:b].sum())
            else:
                stats.discharge_ah += float(dq[a:b].sum())
        self.version += 1

    def _half_cycle(self) -> int:
        return next(reversed(self.halves))[0] if self.halves else -1

    def _start(self, cycle: int, sign: int) -> None:
        self._serial += 1
        self._sign = sign
        self._q = 0.0
        self.halves[(cycle, sign, self._serial)] = HalfCycle(cycle, sign)
        while len(self.halves) > self.curves_kept:
            self.halves.popitem(last=False)

    def cycles(self) -> list[int]:
        """Cycles with a curve held, oldest first."""
        return sorted({key[0] for key in self.halves})

    def curves(self, cycle: int) -> list[HalfCycle]:
        return [h for key, h in self.halves.items() if key[0] == cycle]

    def table(self) -> pl.DataFrame:
        """cycle, charge and discharge capacity (Ah), Coulombic efficiency (%)."""
        rows = [self.stats[c] for c in sorted(self.stats)]
        return pl.DataFrame(
            {
                "cycle_count": [r.cycle for r in rows],
                "charge_capacity_ampere_hour": [r.charge_ah for r in rows],
                "discharge_capacity_ampere_hour": [r.discharge_ah for r in rows],
                "coulombic_efficiency_percent": [r.efficiency_percent for r in rows],
            },
            schema={
                "cycle_count": pl.Int64,
                "charge_capacity_ampere_hour": pl.Float64,
                "discharge_capacity_ampere_hour": pl.Float64,
                "coulombic_efficiency_percent": pl.Float64,
            },
        )
