"""Benchmark: per-cycle summaries of many runs, three ways, on the same runs in the same run.

Generates ``--runs`` cycling runs (1,000 by default; ``--cycles`` cycles of 2 x ``--points``
samples each), syncs them into a throw-away PostgreSQL catalog and a folder archive, then
computes every run's per-cycle summary:

1. one process: ``cellbench batch cycling --catalog`` without a cluster (each run's segments read
   from the archive, ``analysis.cycling.cycle_summary``),
2. a local Dask cluster of 2 worker processes (``--workers 2``), same tasks,
3. SQL inside the catalog: window functions and GROUP BY over the live ``samples`` table.

Prints seconds, runs/s and the ratio to one process, and how far SQL's capacities are from
cellbench's (SQL integrates the current with the simple left rule).

Run:  python bench/batch.py                 (a few minutes: generating and syncing dominate)
      python bench/batch.py --runs 200      (quick)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from lab_runs import cycling_frame, meta
from pg_server import ADMIN, WRITER, PgServer, _bindir

from cellbench.daq.batch import catalog_tasks, run_batch
from cellbench.daq.catalog_admin import create_login, init_catalog
from cellbench.daq.store import create_run
from cellbench.daq.sync import Syncer

SQL = """
WITH d AS (
    SELECT run_id, channel, cycle_count, current_ampere, voltage_volt,
           test_time_second - lag(test_time_second)
               OVER (PARTITION BY run_id, channel ORDER BY row_no) AS dt
    FROM cellbench.samples
)
SELECT run_id, channel, cycle_count,
       sum(CASE WHEN current_ampere > 0 THEN current_ampere * dt END) / 3600
           AS charge_capacity_ampere_hour,
       sum(CASE WHEN current_ampere < 0 THEN -current_ampere * dt END) / 3600
           AS discharge_capacity_ampere_hour,
       avg(voltage_volt) FILTER (WHERE current_ampere > 0) AS mean_charge_voltage_volt,
       avg(voltage_volt) FILTER (WHERE current_ampere < 0) AS mean_discharge_voltage_volt
FROM d GROUP BY run_id, channel, cycle_count
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--points", type=int, default=100, help="samples per half cycle")
    a = ap.parse_args()
    bindir = _bindir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    server = PgServer(bindir)
    os.environ["PGPASSFILE"] = str(server.passfile)
    tmp = Path(tempfile.mkdtemp(prefix="cellbench-bench-batch-"))
    try:
        init_catalog(server.url(ADMIN))
        create_login(server.url(ADMIN), WRITER, "writer", password=server.passwords[WRITER])
        url = server.url(WRITER)
        t0 = time.perf_counter()
        rng = np.random.default_rng(1)
        for i in range(a.runs):
            df = cycling_frame(a.cycles, a.points, fade=float(rng.uniform(0.001, 0.03)))
            with create_run(tmp / "runs", meta(f"bench-{i:05d}")) as w:
                w.append("samples", df)
        t_gen = time.perf_counter() - t0
        rows = a.runs * a.cycles * 2 * a.points
        t0 = time.perf_counter()
        with Syncer(url, str(tmp / "archive"), summaries=False) as s:
            s.sync_once([tmp / "runs"])
        t_sync = time.perf_counter() - t0
        import psycopg

        with psycopg.connect(url) as conn:
            nseg = conn.execute("SELECT count(*) FROM cellbench.segments").fetchone()[0]
        print(f"{a.runs} runs, {rows:,} samples rows: generated in {t_gen:.1f} s, synced "
              f"(catalog + archive, {nseg} segments) in {t_sync:.1f} s: "
              f"{rows / t_sync:,.0f} rows/s, {nseg / t_sync:,.0f} segments/s")  # fmt: skip

        tasks = catalog_tasks(url)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        one = run_batch(tasks)
        timings["one process"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        two = run_batch(tasks, workers=2)
        timings["local Dask cluster, 2 worker processes (incl. start-up)"] = (
            time.perf_counter() - t0
        )
        from dask.distributed import LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
            run_batch(tasks[:4], scheduler=cluster.scheduler_address)  # warm the workers
            t0 = time.perf_counter()
            warm = run_batch(tasks, scheduler=cluster.scheduler_address)
            timings["running Dask cluster, 2 worker processes (tcp://...)"] = (
                time.perf_counter() - t0
            )
        with psycopg.connect(url) as conn:
            t0 = time.perf_counter()
            sql_rows = conn.execute(SQL).fetchall()
            timings["SQL in the catalog (window + GROUP BY)"] = time.perf_counter() - t0
        assert all(r.ok for r in one + two + warm), "a run failed"
        ours = pl.concat(
            [r.summary.with_columns(pl.lit(r.run_id).alias("run_id")) for r in one]
        ).select("run_id", "cycle_count", "discharge_capacity_ampere_hour")
        theirs = pl.DataFrame(
            [(r[0], r[2], r[4]) for r in sql_rows],
            schema={"run_id": pl.String, "cycle_count": pl.Int32, "sql": pl.Float64},
            orient="row",
        )
        both = ours.join(theirs, on=["run_id", "cycle_count"])
        dev = ((both["sql"] - both["discharge_capacity_ampere_hour"]).abs()
               / both["discharge_capacity_ampere_hour"]).max()  # fmt: skip
        base = timings["one process"]
        print(f"\nper-cycle summaries of {a.runs} runs ({len(sql_rows)} cycles)")
        print("| way | seconds | runs/s | ratio to one process |\n| --- | --- | --- | --- |")
        for way, sec in timings.items():
            print(f"| {way} | {sec:.2f} | {a.runs / sec:,.0f} | {base / sec:.2f} |")
        print(
            f"\nSQL discharge capacities differ from cellbench's by at most {100 * dev:.2f} % "
            "(left-rule integration; cellbench also gives energies, efficiencies, DCR)"
        )
    finally:
        server.destroy()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
