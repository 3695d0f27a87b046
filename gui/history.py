"""A channel's plotted quantities over a whole run, drawn truthfully at any zoom, in bounded memory.

:class:`History` keeps two things per channel:

- the newest ``recent_rows`` rows at full resolution (a ring), and
- a pyramid of levels, each one bucketing the level below by ``fanout`` (16 rows, 256 rows,
  4096 rows, ...) and holding, per bucket and per column, the minimum and the maximum and which
  of the two came first. The coarsest level always reaches back to the first row of the run;
  finer levels keep their newest ``level_buckets`` buckets. A new coarser level is added when
  the coarsest one fills up, so memory stays bounded however long the run goes on.

:meth:`History.window` answers "what to draw between t0 and t1 with at most N points": from the
newest data backwards, the finest level that has at most N/2 buckets in that range (raw rows
when they are few enough), stitched with coarser levels where the finer ones no longer reach.
Each bucket is drawn as two points, its first extreme then its second, so a one-sample spike
in any column survives at every zoom level. The cost of a window does not grow with the run:
a binary search per level and at most N points copied.

:meth:`History.seed` starts a history from min/max buckets computed elsewhere (the run store's
per-segment summaries, :mod:`cellbench.daq.summaries`): attaching to a long run then fills the
coarse levels without reading the rows, and only the recent rows are appended.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Columns every history holds (BDF names); ``test_time_second`` is the x axis.
HISTORY_COLUMNS: tuple[str, ...] = (
    "test_time_second",
    "voltage_volt",
    "current_ampere",
    "temperature_celsius",
    "pressure_megapascal",
)
#: The plotted quantities (every column but time).
VALUE_COLUMNS: tuple[str, ...] = HISTORY_COLUMNS[1:]


@dataclass
class Window:
    """What to draw: per value column, test times ``x[c]`` (s) and values ``y[c]``, time-ordered.

    Each column has its own times: a bucket contributes its minimum and maximum at the times they
    were measured, so a spike is drawn where it happened, at any zoom.
    """

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    level: int  # the finest level used: 0 = raw rows

    def __len__(self) -> int:
        return max((len(v) for v in self.x.values()), default=0)


class _Level:
    """Buckets of one resolution: first/last time; per column min, max and their times."""

    FIELDS = ("lo", "hi", "tlo", "thi")

    def __init__(self, ncol: int, capacity: int):
        self.capacity = capacity
        self.t0 = np.empty(64)
        self.t1 = np.empty(64)
        self.lo = np.empty((ncol, 64))
        self.hi = np.empty((ncol, 64))
        self.tlo = np.empty((ncol, 64))
        self.thi = np.empty((ncol, 64))
        self.n = 0
        self.dropped = 0  # buckets forgotten from the front (finer levels only)
        self.pending = 0  # newest buckets not yet folded into the next level

    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        if need <= len(self.t0):
            return
        size = max(need, 2 * len(self.t0))
        for name in ("t0", "t1"):
            grown = np.empty(size)
            grown[: self.n] = getattr(self, name)[: self.n]
            setattr(self, name, grown)
        for name in self.FIELDS:
            old = getattr(self, name)
            grown = np.empty((old.shape[0], size))
            grown[:, : self.n] = old[:, : self.n]
            setattr(self, name, grown)

    def extend(self, t0, t1, lo, hi, tlo, thi) -> None:
        k = len(t0)
        if not k:
            return
        self._reserve(k)
        s = slice(self.n, self.n + k)
        self.t0[s], self.t1[s] = t0, t1
        self.lo[:, s], self.hi[:, s], self.tlo[:, s], self.thi[:, s] = lo, hi, tlo, thi
        self.n += k

    def part(self, a: int, b: int):
        return (self.t0[a:b], self.t1[a:b], *(getattr(self, f)[:, a:b] for f in self.FIELDS))

    def drop_front(self, k: int) -> None:
        """Forget the oldest ``k`` buckets (memory stays near ``capacity``)."""
        m = self.n - k
        for name in ("t0", "t1"):
            arr = getattr(self, name)
            arr[:m] = arr[k : self.n].copy()
        for name in self.FIELDS:
            arr = getattr(self, name)
            arr[:, :m] = arr[:, k : self.n].copy()
        self.n = m
        self.dropped += k

    def nbytes(self) -> int:
        return sum(getattr(self, n).nbytes for n in ("t0", "t1", *self.FIELDS))


def _reduce(t0, t1, lo, hi, tlo, thi, fanout: int):
    """Fold groups of ``fanout`` consecutive buckets into one (input length a multiple)."""
    nb = len(t0) // fanout
    ncol = lo.shape[0]
    lo_g = lo.reshape(ncol, nb, fanout)
    hi_g = hi.reshape(ncol, nb, fanout)
    # A missing value (NaN) is never an extreme; an all-NaN bucket stays NaN.
    i_lo = np.argmin(np.where(np.isnan(lo_g), np.inf, lo_g), axis=2)[..., None]
    i_hi = np.argmax(np.where(np.isnan(hi_g), -np.inf, hi_g), axis=2)[..., None]

    def pick(a: np.ndarray, i: np.ndarray) -> np.ndarray:
        return np.take_along_axis(a.reshape(ncol, nb, fanout), i, axis=2)[..., 0]

    return (
        t0.reshape(nb, fanout)[:, 0].copy(),
        t1.reshape(nb, fanout)[:, -1].copy(),
        pick(lo, i_lo),
        pick(hi, i_hi),
        pick(tlo, i_lo),
        pick(thi, i_hi),
    )


def _points(tlo, thi, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Buckets of one column as points: each bucket's two extremes, in the order measured."""
    m = len(lo)
    first = tlo <= thi
    x = np.empty(2 * m)
    y = np.empty(2 * m)
    x[0::2], x[1::2] = np.where(first, tlo, thi), np.where(first, thi, tlo)
    y[0::2], y[1::2] = np.where(first, lo, hi), np.where(first, hi, lo)
    return x, y


class History:
    """Full-resolution recent rows plus min/max levels back to the start of the run.

    ``recent_rows``: rows kept at full resolution; ``level_buckets``: buckets each finer level
    keeps; ``fanout``: rows (or buckets) per bucket of the next level. Memory per channel is
    about ``recent_rows`` x 40 B + levels x ``level_buckets`` x 100 B (defaults: 100 000 rows and
    8192 buckets, about 4 MB + 0.8 MB per level; 4 levels reach 100 M rows).
    """

    def __init__(self, recent_rows: int = 100_000, level_buckets: int = 8192, fanout: int = 16):
        if recent_rows < 2 * fanout or level_buckets < 2 * fanout or fanout < 2:
            raise ValueError(
                f"recent_rows and level_buckets must be at least 2 x fanout ({fanout}), "
                f"got {recent_rows} and {level_buckets}"
            )
        self.fanout = int(fanout)
        self.recent_rows = int(recent_rows)
        self.level_buckets = int(level_buckets)
        ncol = len(VALUE_COLUMNS)
        self._raw = np.empty((len(HISTORY_COLUMNS), min(self.recent_rows, 4096)))
        self._n = 0  # raw rows held
        self.rows_seen = 0  # every row ever appended
        self._levels: list[_Level] = [_Level(ncol, self.level_buckets)]
        # rows not yet folded into a level-1 bucket (at most fanout - 1 rows)
        self._carry = np.empty((len(HISTORY_COLUMNS), 0))
        self._first: np.ndarray | None = None  # the run's first row (always drawn)

    # ------------------------------------------------------------------------------ feeding

    def __len__(self) -> int:
        """Rows held at full resolution."""
        return self._n

    @property
    def levels(self) -> int:
        return len(self._levels)

    def set_recent_rows(self, rows: int) -> None:
        """Change how many rows stay at full resolution (older ones live on in the levels)."""
        self.recent_rows = max(int(rows), 2 * self.fanout)
        if self._n > self.recent_rows:
            drop = self._n - self.recent_rows
            self._raw[:, : self.recent_rows] = self._raw[:, drop : self._n].copy()
            self._n = self.recent_rows
        if self._raw.shape[1] > self.recent_rows:
            self._raw = self._raw[:, : self.recent_rows].copy()

    def append(self, columns: np.ndarray) -> None:
        """Append rows: ``columns`` of shape (5, n), :data:`HISTORY_COLUMNS` order, time rising."""
        columns = np.asarray(columns, dtype=np.float64)
        if columns.ndim != 2 or columns.shape[0] != len(HISTORY_COLUMNS):
            raise ValueError(f"expected shape ({len(HISTORY_COLUMNS)}, n), got {columns.shape}")
        n = columns.shape[1]
        if not n:
            return
        if self._first is None:
            self._first = columns[:, 0].copy()
        self.rows_seen += n
        self._append_raw(columns)
        rows = np.concatenate([self._carry, columns], axis=1) if self._carry.shape[1] else columns
        whole = rows.shape[1] // self.fanout * self.fanout
        self._carry = rows[:, whole:].copy()
        if whole:
            self._feed_level(0, *_reduce(*_row_buckets(rows[:, :whole]), self.fanout))

    def seed(
        self,
        buckets: tuple[np.ndarray, ...],
        first: np.ndarray,
        rows: int,
        bucket_rows: int,
    ) -> None:
        """Start an empty history from min/max buckets of its oldest ``rows`` rows, without them.

        ``buckets`` = (t0, t1, lo, hi, tlo, thi): per bucket its first and last test time (s),
        and per value column (shape (4, m), :data:`VALUE_COLUMNS` order) its minimum, maximum and
        the times they were measured; ``first`` the run's first row (5 values,
        :data:`HISTORY_COLUMNS` order). The buckets (of about ``bucket_rows`` rows each: a
        store's per-segment summaries) enter the level of that resolution (4096 rows: level 2
        at fanout 16) and everything coarser is built from them; rows appended afterwards must
        follow the seeded ones. Finer levels then start with those rows: zooming into the seeded
        stretch shows it at ``bucket_rows`` resolution, every extreme still in place.
        """
        if self.rows_seen:
            raise ValueError("only an empty history can be seeded")
        m = len(buckets[0])
        if not m:
            return
        k = max(0, round(math.log(max(bucket_rows, self.fanout), self.fanout)) - 1)
        ncol = len(VALUE_COLUMNS)
        while len(self._levels) <= k:
            self._levels.append(_Level(ncol, self.level_buckets))
        self._first = np.asarray(first, dtype=np.float64).copy()
        self.rows_seen = int(rows)
        self._feed_level(k, *(np.asarray(b, dtype=np.float64) for b in buckets))

    def _append_raw(self, columns: np.ndarray) -> None:
        n = columns.shape[1]
        if n >= self.recent_rows:
            if self._raw.shape[1] < self.recent_rows:
                self._raw = np.empty((len(HISTORY_COLUMNS), self.recent_rows))
            self._raw[:, :] = columns[:, -self.recent_rows :]
            self._n = self.recent_rows
            return
        if self._n + n > self._raw.shape[1]:
            if self._raw.shape[1] < self.recent_rows:
                size = min(max(2 * self._raw.shape[1], self._n + n), self.recent_rows)
                grown = np.empty((len(HISTORY_COLUMNS), size))
                grown[:, : self._n] = self._raw[:, : self._n]
                self._raw = grown
            if self._n + n > self._raw.shape[1]:  # full: forget the oldest quarter at once
                drop = max(self._n + n - self._raw.shape[1], self.recent_rows // 4)
                keep = self._n - drop
                self._raw[:, :keep] = self._raw[:, drop : self._n].copy()
                self._n = keep
        self._raw[:, self._n : self._n + n] = columns
        self._n += n

    def _feed_level(self, k: int, *buckets: np.ndarray) -> None:
        level = self._levels[k]
        level.extend(*buckets)
        level.pending += len(buckets[0])
        if k + 1 == len(self._levels):  # the coarsest level reaches back to the start
            if level.n <= level.capacity:
                return
            # full: a coarser level takes over reaching the start, built from all of this one
            self._levels.append(_Level(level.lo.shape[0], self.level_buckets))
            level.pending = level.n
        whole = level.pending // self.fanout * self.fanout
        if whole:
            start = level.n - level.pending
            up = _reduce(*level.part(start, start + whole), self.fanout)
            level.pending -= whole
            self._feed_level(k + 1, *up)
        if level.n > level.capacity:  # a finer level keeps only its newest buckets
            drop = min(level.n - level.capacity // 2, level.n - level.pending)
            drop = drop // self.fanout * self.fanout  # keep coarser buckets' boundaries
            if drop > 0:
                level.drop_front(drop)

    # ------------------------------------------------------------------------------ reading

    def column(self, name: str) -> np.ndarray:
        """The full-resolution recent rows of one column (a view, valid until the next append)."""
        return self._raw[HISTORY_COLUMNS.index(name), : self._n]

    def last(self) -> dict[str, float]:
        if not self._n:
            return {}
        return {name: float(self._raw[i, self._n - 1]) for i, name in enumerate(HISTORY_COLUMNS)}

    def span(self) -> tuple[float, float] | None:
        """(first, last) test time of the run in s, or None when empty."""
        if self._first is None or not self._n:
            return None
        return float(self._first[0]), float(self._raw[0, self._n - 1])

    def has_values(self, name: str) -> bool:
        """Whether ``name`` was ever measured (any finite value held at any level)."""
        i = VALUE_COLUMNS.index(name)
        if self._n and np.isfinite(self._raw[i + 1, : self._n]).any():
            return True
        return any(np.isfinite(lv.hi[i, : lv.n]).any() for lv in self._levels)

    def nbytes(self) -> int:
        return self._raw.nbytes + sum(lv.nbytes() for lv in self._levels)

    def window(
        self, t0: float | None = None, t1: float | None = None, points: int = 4000
    ) -> Window:
        """At most about ``points`` points per column over test time [t0, t1] (None: all).

        Newest first: raw rows where they reach and are few enough, else the finest level with at
        most ``points / 2`` buckets in the range, then coarser levels for what finer ones no
        longer hold. One row or bucket beyond each end is included so lines reach the edges.
        """
        span = self.span()
        if span is None:
            empty = np.empty(0)
            return Window({c: empty for c in VALUE_COLUMNS}, {c: empty for c in VALUE_COLUMNS}, 0)
        lo_t = span[0] if t0 is None else float(t0)
        hi_t = span[1] if t1 is None else float(t1)
        if hi_t < lo_t:
            lo_t, hi_t = hi_t, lo_t
        budget = max(int(points), 4 * self.fanout)
        # newest first: (buckets, None for raw rows or the time where finer pieces take over)
        pieces: list[tuple[tuple[np.ndarray, ...], float | None]] = []
        upper = np.inf  # what lies at or after this time is drawn already
        finest: int | None = None
        if self._n:  # raw rows
            t_raw = self._raw[0, : self._n]
            reaches_start = self.rows_seen == self._n
            a = max(int(np.searchsorted(t_raw, lo_t, "left")) - 1, 0)
            b = min(int(np.searchsorted(t_raw, hi_t, "right")) + 1, self._n)
            if b - a <= budget or (reaches_start and not self._levels[0].n):
                pieces.append((_row_buckets(self._raw[:, a:b]), None))
                finest = 0
                upper = -np.inf if reaches_start else t_raw[0]
        for k, level in enumerate(self._levels):
            if upper <= lo_t:
                break
            n = level.n
            tail = self._partial(k) if np.isinf(upper) else None
            if not n and tail is None:
                continue
            coarsest = k + 1 == len(self._levels)
            start = level.t0[0] if n else tail[0][0]
            if start >= upper and not coarsest:
                continue  # finer sources reach further back than this level
            seg_hi = min(hi_t, upper)
            a = max(int(np.searchsorted(level.t1[:n], lo_t, "left")) - 1, 0)
            b = min(int(np.searchsorted(level.t0[:n], seg_hi, "right")) + 1, n)
            count = 2 * max(b - a, 0)
            if count > budget and not coarsest:
                continue
            part = level.part(a, b)
            if count > budget:  # even the coarsest level is too fine here: fold it further
                part = _fold(part, -(-count // budget))
            if tail is not None and tail[0][0] <= hi_t:
                part = tuple(
                    np.concatenate([p, q], axis=-1) for p, q in zip(part, tail, strict=True)
                )
            if np.isfinite(upper):  # only what finer sources did not draw
                cut = int(np.searchsorted(part[0], upper, "left"))
                part = tuple(p[..., :cut] for p in part)
            pieces.append((part, upper))
            finest = k + 1 if finest is None else finest
            upper = -np.inf if coarsest else min(upper, start)
        if pieces and pieces[0][1] is not None and hi_t >= span[1]:  # end at the newest row
            pieces.insert(0, (_row_buckets(self._raw[:, self._n - 1 : self._n]), None))
        if self._first is not None and lo_t <= self._first[0] and self.rows_seen > self._n:
            pieces.append((_row_buckets(self._first[:, None]), None))  # where the run began
        pieces.reverse()
        xs: dict[str, np.ndarray] = {}
        ys: dict[str, np.ndarray] = {}
        for i, name in enumerate(VALUE_COLUMNS):
            px, py = [], []
            for (_t0, _t1, lo, hi, tlo, thi), until in pieces:
                if until is None:  # raw rows
                    px.append(tlo[i])
                    py.append(lo[i])
                    continue
                x, y = _points(tlo[i], thi[i], lo[i], hi[i])
                if np.isfinite(until):  # a bucket straddling the seam: its part before it
                    before = x < until
                    x, y = x[before], y[before]
                px.append(x)
                py.append(y)
            x = np.concatenate(px) if px else np.empty(0)
            y = np.concatenate(py) if py else np.empty(0)
            keep = np.isfinite(y)
            if not keep.all():
                x, y = x[keep], y[keep]
            xs[name], ys[name] = x, y
        return Window(xs, ys, finest or 0)

    def _partial(self, k: int) -> tuple[np.ndarray, ...] | None:
        """Level ``k``'s newest, incomplete bucket: the carry and finer levels' pending buckets."""
        parts = [
            self._levels[j].part(lv.n - lv.pending, lv.n)
            for j, lv in reversed(list(enumerate(self._levels[:k])))
            if lv.pending
        ]
        if self._carry.shape[1]:
            parts.append(_row_buckets(self._carry))
        if not parts:
            return None
        joined = tuple(np.concatenate(p, axis=-1) for p in zip(*parts, strict=True))
        return _reduce(*joined, len(joined[0]))


def _row_buckets(rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rows (time first) as one-row buckets: t0 = t1 = tlo = thi = t, lo = hi = value."""
    t = rows[0]
    vals = rows[1:]
    tt = np.broadcast_to(t, vals.shape)
    return t, t, vals, vals, tt, tt


def _fold(part: tuple[np.ndarray, ...], factor: int) -> tuple[np.ndarray, ...]:
    """Buckets folded ``factor`` at a time (the remainder kept as it is)."""
    n = len(part[0])
    whole = n // factor * factor
    if whole < factor:
        return part
    folded = _reduce(*(p[..., :whole] for p in part), factor)
    return tuple(
        np.concatenate([f, p[..., whole:]], axis=-1) for f, p in zip(folded, part, strict=True)
    )
