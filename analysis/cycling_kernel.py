"""The per-cycle integrals of :mod:`cellbench.analysis.cycling`, as a blocked numpy kernel.

Same arithmetic as the polars query in ``cycling.cycle_summary_lazy`` (the tests hold the two to
each other), organised for speed on eager frames of many millions of rows:

* the rows are processed in blocks of 64 Ki rows, so the dozen temporaries of a block stay in
  the CPU cache instead of streaming a dozen full columns through memory;
* blocks are shared out to worker threads (numpy releases the GIL inside ufuncs);
* a block reduces to sums per *run* (a stretch of rows with one cycle number) with
  ``np.add.reduceat``; runs are summed per cycle at the end, so cycles need not be contiguous;
* step edges for the DC resistance are shortlisted inside the block with a threshold that can
  only be lower than the final one (half the largest ``|I|`` of the run's part in the block),
  then filtered exactly once the largest ``|I|`` of every cycle is known.

Rows of one channel, in time order. The interval ending at row ``k`` belongs to row ``k``'s
cycle; its charge is ``(I[k] + I[k-1]) / 2 * dt`` (Ah after scaling) and counts as charge when
positive, discharge when negative; non-finite contributions count as zero.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

BLOCK_ROWS = 1 << 16
_PARALLEL_MIN_ROWS = 1 << 20
_HALF_HOUR = 0.5 / 3600.0
_SUMS = 5  # charge Ah, discharge Ah, charge Wh, discharge Wh, duration s


@dataclass
class RunSums:
    """Per-run results: ``cycle[r]`` and the sums of run ``r``; edges as (row, run, ohm)."""

    cycle: np.ndarray
    sums: np.ndarray  # shape (5, runs)
    start_time: np.ndarray
    end_time: np.ndarray
    count: np.ndarray
    max_abs_current: np.ndarray
    edge_run: np.ndarray
    edge_step_ampere: np.ndarray
    edge_ohm: np.ndarray


def _block(
    lo: int,
    hi: int,
    t: np.ndarray,
    i: np.ndarray,
    v: np.ndarray,
    run_starts: np.ndarray,
    sums: np.ndarray,
    imax: np.ndarray,
    edges: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    fixed_threshold: float | None,
) -> None:
    a = lo - 1 if lo > 0 else 0
    tt, ii, vv = t[a:hi], i[a:hi], v[a:hi]
    if lo == 0:  # the channel's first row has no interval before it
        tt = np.concatenate(([tt[0]], tt))
        ii = np.concatenate(([0.0], ii))
        vv = np.concatenate(([0.0], vv))
    dt = tt[1:] - tt[:-1]
    if lo == 0:
        dt[0] = 0.0
    q = ii[1:] + ii[:-1]
    q *= dt
    p = vv * ii
    e = p[1:] + p[:-1]
    e *= dt
    pos = q > 0
    neg = q < 0
    cols = (np.where(pos, q, 0.0), np.where(neg, -q, 0.0), np.where(pos, e, 0.0),
            np.where(neg, -e, 0.0), dt)  # fmt: skip

    k0 = int(np.searchsorted(run_starts, lo, side="right")) - 1
    k1 = int(np.searchsorted(run_starts, hi, side="left"))
    seg = run_starts[k0:k1] - lo
    seg[0] = 0
    ids = np.arange(k0, k1)
    for j, col in enumerate(cols):
        part = np.add.reduceat(col, seg)
        if not np.all(np.isfinite(part)):
            part = np.add.reduceat(np.nan_to_num(col, nan=0.0, posinf=0.0, neginf=0.0), seg)
        np.add.at(sums[j], ids, part)
    cur = ii[1:]
    abs_i = np.abs(cur)
    seg_max = np.fmax.reduceat(abs_i, seg)
    np.fmax.at(imax, ids, seg_max)

    # Step edges: shortlist with a threshold no higher than the final one.
    di = cur - ii[:-1]
    if lo == 0:
        di[0] = 0.0
    if fixed_threshold is None:
        lengths = np.diff(np.append(seg, cur.size))
        floor = 0.5 * np.repeat(seg_max, lengths)
        cand = np.flatnonzero((np.abs(di) >= floor) & (np.abs(di) > 0))
    else:
        cand = np.flatnonzero(np.abs(di) >= fixed_threshold)
    if cand.size:
        dv = vv[1:][cand] - vv[:-1][cand]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.abs(dv / di[cand])
        ok = np.isfinite(r)
        run_of = ids[np.searchsorted(seg, cand, side="right") - 1]
        edges.append((run_of[ok], np.abs(di[cand][ok]), r[ok]))


def run_sums(
    t: np.ndarray,
    i: np.ndarray,
    v: np.ndarray,
    cycle: np.ndarray,
    *,
    fixed_threshold: float | None = None,
    threads: int | None = None,
) -> RunSums:
    """Sums per run of one channel's rows (see module doc). Arrays must be equally long."""
    n = t.size
    t = np.ascontiguousarray(t, dtype=np.float64)
    i = np.ascontiguousarray(i, dtype=np.float64)
    v = np.ascontiguousarray(v, dtype=np.float64)
    if n == 0:
        none, no_int = np.empty(0), np.empty(0, np.int64)
        return RunSums(no_int, np.zeros((_SUMS, 0)), none, none, no_int, none, no_int, none, none)
    run_starts = np.concatenate(([0], np.flatnonzero(cycle[1:] != cycle[:-1]) + 1))
    n_runs = run_starts.size
    blocks = [(lo, min(lo + BLOCK_ROWS, n)) for lo in range(0, n, BLOCK_ROWS)]
    workers = threads or (min(os.cpu_count() or 1, 8) if n >= _PARALLEL_MIN_ROWS else 1)
    workers = max(1, min(workers, len(blocks)))
    sums = [np.zeros((_SUMS, n_runs)) for _ in range(workers)]
    imax = [np.zeros(n_runs) for _ in range(workers)]
    edges: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(workers)]

    def work(w: int) -> None:
        for lo, hi in blocks[w::workers]:
            _block(lo, hi, t, i, v, run_starts, sums[w], imax[w], edges[w], fixed_threshold)

    if workers == 1:
        work(0)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, range(workers)))
    all_edges = [e for per in edges for e in per]
    if all_edges:
        e_run, e_di, e_r = (np.concatenate(x) for x in zip(*all_edges, strict=True))
    else:
        e_run, e_di, e_r = np.empty(0, np.int64), np.empty(0), np.empty(0)
    run_ends = np.append(run_starts[1:], n)
    return RunSums(
        cycle=np.asarray(cycle)[run_starts].astype(np.int64),
        sums=np.sum(sums, axis=0),
        start_time=t[run_starts],
        end_time=t[run_ends - 1],
        count=run_ends - run_starts,
        max_abs_current=np.max(imax, axis=0),
        edge_run=e_run,
        edge_step_ampere=e_di,
        edge_ohm=e_r,
    )
