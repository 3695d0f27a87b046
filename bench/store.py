"""Benchmark: the cellbench run store beside SQLite in WAL mode, on the same rows, in the same run.

Two workloads, as a logger and a researcher see them:

1. Streaming: 64 channels x 10 Hz arrive as batches of 64 ``samples`` rows; each batch is made
   durable before the next (cellbench: ``append`` + ``flush``, i.e. fsync per batch; SQLite: WAL,
   ``synchronous=FULL``, one transaction per batch). Appended as fast as possible for ``--rows``
   rows: throughput, p50/p99 latency per batch. Also cellbench's default mode (``append`` only,
   the background thread fsyncs each second), and the time to seal the journal into Parquet.
2. Loading: a closed run of ``--load-rows`` rows (10 M by default; built quickly with big
   batches) read into one polars DataFrame, and its size on disk.

Run:  python bench/store.py            (about 1-2 min; the SQLite 10 M load dominates)
      python bench/store.py --rows 64000 --load-rows 1000000   (quick)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from cellbench.core import schema
from cellbench.core.schema import RunMeta
from cellbench.daq.store import create_run, open_run

CHANNELS = 64
COLUMNS = [c.name for c in schema.SAMPLES if c.required] + ["temperature_celsius"]
SQL_TYPES = {pl.String: "TEXT", pl.Float64: "REAL", pl.Int32: "INTEGER"}


def make_rows(first_tick: int, ticks: int, seed: int = 0) -> pl.DataFrame:
    """``ticks`` x 64 channels of samples at 10 Hz, with instrument-like resolution and noise."""
    rng = np.random.default_rng(seed + first_tick)
    tick = np.repeat(np.arange(first_tick, first_tick + ticks), CHANNELS)
    ch = np.tile(np.arange(CHANNELS), ticks)
    t = tick * 0.1
    n = t.size
    names = pl.Series([f"ch{i:02d}" for i in range(CHANNELS)])
    current = np.where((tick // 36000) % 2 == 0, 0.002, -0.002)  # 1 h charge, 1 h discharge
    volt = 3.7 + 0.3 * np.sin(t / 3600 + ch) + rng.normal(0, 2e-4, n)
    return pl.DataFrame(
        {
            "channel": names.gather(ch),
            "test_time_second": t,
            "unix_time_second": 1.767e9 + t,
            "voltage_volt": np.round(volt, 5),  # 10 uV resolution
            "current_ampere": np.round(current + rng.normal(0, 1e-6, n), 7),
            "cycle_count": (tick // 72000 + 1).astype(np.int32),
            "step_count": (tick // 36000 + 1).astype(np.int32),
            "step_index": ((tick // 36000) % 2).astype(np.int32),
            "temperature_celsius": np.round(25 + rng.normal(0, 0.02, n), 2),
        }
    )


def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


# --------------------------------------------------------------------------------- cellbench


def cb_stream(root: Path, batches: list[pl.DataFrame], *, fsync_each: bool) -> dict[str, float]:
    w = create_run(root, RunMeta("stream", "2026-01-01T00:00:00Z"), run_dir_name="stream")
    lat = []
    t0 = time.perf_counter()
    for b in batches:
        t = time.perf_counter()
        w.append("samples", b)
        if fsync_each:
            w.flush()
        lat.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    t = time.perf_counter()
    w.close()
    seal = time.perf_counter() - t
    rows = sum(b.height for b in batches)
    assert open_run(w.path).tables()["samples"] == rows
    out = {"rows_s": rows / total, "p50": pct(lat, 50), "p99": pct(lat, 99), "seal": seal}
    shutil.rmtree(w.path)
    return out


def cb_build(root: Path, n_rows: int) -> Path:
    ticks_per_batch = 1_000_000 // CHANNELS
    with create_run(root, RunMeta("big", "2026-01-01T00:00:00Z"), run_dir_name="big") as w:
        done = 0
        while done < n_rows:
            ticks = min(ticks_per_batch, (n_rows - done) // CHANNELS)
            w.append("samples", make_rows(done // CHANNELS, ticks))
            done += ticks * CHANNELS
    return w.path


def cb_load(path: Path) -> tuple[float, int]:
    t = time.perf_counter()
    df = open_run(path).read("samples")
    return time.perf_counter() - t, df.height


# ------------------------------------------------------------------------------------ sqlite


def sq_connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    cols = ", ".join(f"{c} {SQL_TYPES[type(schema.schema('samples')[c])]}" for c in COLUMNS)
    con.execute(f"CREATE TABLE IF NOT EXISTS samples ({cols})")
    return con


def sq_insert_sql() -> str:
    return f"INSERT INTO samples VALUES ({', '.join('?' * len(COLUMNS))})"


def sq_stream(path: Path, batches: list[list[tuple]]) -> dict[str, float]:
    con = sq_connect(path)
    sql = sq_insert_sql()
    lat = []
    t0 = time.perf_counter()
    for rows in batches:
        t = time.perf_counter()
        con.execute("BEGIN")
        con.executemany(sql, rows)
        con.execute("COMMIT")
        lat.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    n = sum(len(b) for b in batches)
    assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == n
    con.close()
    return {"rows_s": n / total, "p50": pct(lat, 50), "p99": pct(lat, 99)}


def sq_build(path: Path, n_rows: int) -> None:
    con = sq_connect(path)
    sql = sq_insert_sql()
    ticks_per_batch = 1_000_000 // CHANNELS
    done = 0
    while done < n_rows:
        ticks = min(ticks_per_batch, (n_rows - done) // CHANNELS)
        rows = make_rows(done // CHANNELS, ticks).select(COLUMNS).rows()
        con.execute("BEGIN")
        con.executemany(sql, rows)
        con.execute("COMMIT")
        done += ticks * CHANNELS
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def sq_load(path: Path) -> tuple[float, int]:
    t = time.perf_counter()
    con = sqlite3.connect(path)
    df = pl.read_database(
        "SELECT * FROM samples", con, schema_overrides=schema.schema("samples", optional=False)
    )
    con.close()
    return time.perf_counter() - t, df.height


# ------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=320_000, help="rows streamed (64-row batches)")
    ap.add_argument("--load-rows", type=int, default=10_000_000, help="rows of the loaded run")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the cheap measurements")
    ap.add_argument("--sqlite-load-reps", type=int, default=1, help="repetitions of SQLite load")
    ap.add_argument("--dir", type=Path, default=None, help="scratch folder (default: temp)")
    args = ap.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="cellbench-bench-", dir=args.dir))
    try:
        ticks = args.rows // CHANNELS
        frames = [make_rows(i, 1) for i in range(ticks)]
        tuples = [f.select(COLUMNS).rows() for f in frames]

        def med(runs: list[dict[str, float]], key: str) -> float:
            return statistics.median(r[key] for r in runs)

        cb, cb_default, sq = [], [], []
        for i in range(args.reps):  # interleaved, so both see the same disk weather
            cb.append(cb_stream(scratch, frames, fsync_each=True))
            sq.append(sq_stream(scratch / f"stream{i}.sqlite", tuples))
            cb_default.append(cb_stream(scratch, frames, fsync_each=False))

        t = time.perf_counter()
        big = cb_build(scratch, args.load_rows)
        cb_build_s = time.perf_counter() - t
        cb_loads = [cb_load(big) for _ in range(args.reps)]
        n_loaded = cb_loads[0][1]
        t = time.perf_counter()
        sq_path = scratch / "big.sqlite"
        sq_build(sq_path, args.load_rows)
        sq_build_s = time.perf_counter() - t
        sq_loads = [sq_load(sq_path) for _ in range(args.sqlite_load_reps)]
        assert sq_loads[0][1] == n_loaded

        cb_size, sq_size = folder_bytes(big), folder_bytes(sq_path)
        cb_load_s = statistics.median(t for t, _ in cb_loads)
        sq_load_s = statistics.median(t for t, _ in sq_loads)
        rows = [
            ("append rows/s, fsync per 64-row batch (higher better)", med(cb, "rows_s"),
             med(sq, "rows_s"), ""),
            ("append+fsync latency p50, ms", 1e3 * med(cb, "p50"), 1e3 * med(sq, "p50"), ""),
            ("append+fsync latency p99, ms", 1e3 * med(cb, "p99"), 1e3 * med(sq, "p99"), ""),
            ("append rows/s, default (fsync each 1 s)", med(cb_default, "rows_s"), None,
             "sqlite: n/a"),
            ("append latency p99, default mode, ms", 1e3 * med(cb_default, "p99"), None, ""),
            (f"seal {args.rows:,} rows journal->Parquet, s", med(cb, "seal"), None, ""),
            (f"build {n_loaded:,}-row run (1 M-row batches), s", cb_build_s, sq_build_s, ""),
            (f"load {n_loaded:,} rows into polars, s", cb_load_s, sq_load_s, ""),
            (f"disk size of {n_loaded:,} rows, MB", cb_size / 1e6, sq_size / 1e6, ""),
        ]  # fmt: skip
        print(
            f"cellbench run store vs SQLite {sqlite3.sqlite_version} (WAL, synchronous=FULL); "
            f"polars {pl.__version__}; {os.cpu_count()} CPUs; medians of {args.reps} "
            f"(SQLite load: {args.sqlite_load_reps}); {args.rows:,} rows streamed"
        )
        width = max(len(r[0]) for r in rows)
        print(f"{'metric':<{width}} | {'cellbench':>11} | {'sqlite':>11} | ratio cb/sqlite")
        print("-" * (width + 46))
        for name, a, b, note in rows:
            bs = f"{b:11.4g}" if b is not None else f"{'n/a':>11}"
            ratio = f"{a / b:.3g}" if b else note
            print(f"{name:<{width}} | {a:11.4g} | {bs} | {ratio}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
