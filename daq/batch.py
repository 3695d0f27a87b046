"""Batch reanalysis of many runs, on one machine or a Dask cluster.

One task per run. A task reads its run's samples itself: from the lab archive (the segments the
catalog lists for it, through fsspec, so a worker on another machine needs the archive's
location, not the catalog's credentials) or from a local run folder, computes the per-cycle
summary, and returns it. The client gathers results as they complete, reports progress, stores
the summaries in the catalog (``cycle_summaries``) when it may, and reports a failing run with
its reason without stopping the batch.

``scheduler="tcp://host:8786"`` uses a running Dask cluster (``dask scheduler`` and
``dask worker`` on the lab's machines); ``workers=N`` starts a local cluster of N processes;
neither runs the tasks one after another in this process.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from cellbench.core.errors import CellbenchError

log = logging.getLogger("cellbench.batch")


@dataclass(frozen=True)
class RunTask:
    """What a worker needs to analyse one run: an archived run, or a local run folder."""

    run_id: str
    archive: str | None = None  # archive location
    segments: tuple[tuple[int, int, int, str, str], ...] = ()  # samples segments, in order
    spectra: tuple[tuple[int, int, int, str, str], ...] = ()  # spectra segments, in order
    folder: str | None = None  # local run folder
    rows_total: int | None = None  # samples rows the catalog holds (archived or not)
    spectra_rows: int | None = None  # spectra rows the catalog holds


@dataclass
class RunResult:
    """One run's outcome: its table (per-cycle summary, EIS fits per sweep), or why it failed."""

    run_id: str
    ok: bool
    summary: pl.DataFrame | None = None
    error: str | None = None
    rows: int = 0  # samples rows analysed
    rows_total: int | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "ok": self.ok,
            "error": self.error,
            "rows": self.rows,
            "rows_total": self.rows_total,
            "count": None if self.summary is None else self.summary.height,
            "result": None if self.summary is None else self.summary.to_dicts(),
        }


def read_table(task: RunTask, table: str = "samples") -> pl.DataFrame:
    """A table (``samples`` or ``spectra``) of a task's run: archive segments or local folder."""
    if task.folder is not None:
        from cellbench.daq.run_reader import RunReader

        return RunReader(Path(task.folder)).read(table)
    segments = task.segments if table == "samples" else task.spectra
    if not segments:
        if (task.rows_total if table == "samples" else task.spectra_rows) == 0:
            from cellbench.core import schema

            return schema.empty(table, optional=True)  # the run has none
        raise CellbenchError(f"run {task.run_id}: no archived {table} segments")
    from cellbench.daq.archive import Archive
    from cellbench.daq.catalog_run import read_archived_table

    return read_archived_table(Archive(task.archive or ""), list(segments), table)


def read_samples(task: RunTask) -> pl.DataFrame:
    """The samples of a task's run (archive segments or local folder)."""
    return read_table(task, "samples")


def _failed(task: RunTask, exc: BaseException, t0: float) -> RunResult:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RunResult(
        task.run_id, False, error=text, rows_total=task.rows_total,
        seconds=time.perf_counter() - t0,
    )  # fmt: skip


def fit_run_eis(task: RunTask, circuit: str) -> RunResult:
    """Fit ``circuit`` to every sweep of one run (warm-started sweep to sweep); never raises."""
    t0 = time.perf_counter()
    try:
        from cellbench.analysis.eis_batch import fit_spectra

        spectra = read_table(task, "spectra")
        if spectra.height == 0:
            raise CellbenchError(f"run {task.run_id}: no impedance spectra")
        fits = fit_spectra(spectra, circuit)
        return RunResult(task.run_id, True, fits, rows=spectra.height,
                         seconds=time.perf_counter() - t0)  # fmt: skip
    except Exception as exc:  # reported and skipped: one bad run never stops a batch
        return _failed(task, exc, t0)


def summarise_run(task: RunTask) -> RunResult:
    """Per-cycle summary of one run; never raises (the failure is the result)."""
    t0 = time.perf_counter()
    try:
        from cellbench.analysis.cycling import cycle_summary

        samples = read_samples(task)
        summary = cycle_summary(samples, capacity_source="integration")
        return RunResult(
            task.run_id,
            True,
            summary,
            rows=samples.height,
            rows_total=task.rows_total,
            seconds=time.perf_counter() - t0,
        )
    except Exception as exc:  # reported and skipped: one bad run never stops a batch
        return _failed(task, exc, t0)


def catalog_tasks(
    catalog_url: str,
    *,
    where: str | None = None,
    run_ids: Iterable[str] | None = None,
    archive: str | None = None,
) -> list[RunTask]:
    """A task per catalog run (``where`` filters ``runs``; ``run_ids`` picks)."""
    from cellbench.daq.catalog import Catalog
    from cellbench.daq.catalog_run import archived_cover

    tasks = []
    with Catalog(catalog_url) as cat:
        runs = cat.list_runs(where)
        wanted = set(run_ids) if run_ids is not None else None
        for r in runs:
            if wanted is not None and r["run_id"] not in wanted:
                continue
            try:
                segs = archived_cover(cat, r["run_id"])
            except CellbenchError as exc:  # the task fails with "no archived ... segments"
                log.warning("%s: %s", r["run_id"], exc)
                segs = {"samples": [], "spectra": []}
            tasks.append(
                RunTask(
                    r["run_id"],
                    archive=archive or r["archive"],
                    segments=tuple(segs["samples"]),
                    spectra=tuple(segs["spectra"]),
                    rows_total=int(r["samples_rows"]),
                    spectra_rows=int(r["spectra_rows"]),
                )
            )
    return tasks


def folder_tasks(paths: Iterable[Path]) -> list[RunTask]:
    """A task per local run folder among ``paths`` (folders of runs are expanded)."""
    from cellbench.daq.run_reader import load_meta
    from cellbench.daq.sync import find_runs

    return [RunTask(load_meta(p).run_id, folder=str(p)) for p in find_runs(paths)]


def run_batch(
    tasks: list[RunTask],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    processes: bool = True,
    progress: Callable[[int, int, RunResult], None] | None = None,
    func: Callable[[RunTask], RunResult] = summarise_run,
    chunk_size: int | None = None,
) -> list[RunResult]:
    """Run ``func`` over ``tasks``; results in completion order.

    On a cluster, runs travel in chunks of ``chunk_size`` (default: about four chunks per
    worker thread, at most 32 runs each); each run still succeeds or fails on its own.
    """
    if scheduler and workers:
        raise CellbenchError("give either a scheduler address or a number of local workers")
    results: list[RunResult] = []
    total = len(tasks)
    if not scheduler and not workers:
        for task in tasks:
            results.append(func(task))
            if progress:
                progress(len(results), total, results[-1])
        return results
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout="20s")
        else:
            cluster = LocalCluster(
                n_workers=int(workers or 1),
                threads_per_worker=1,
                processes=processes,
                dashboard_address=None,
            )
            client = Client(cluster)
    except OSError as exc:
        raise CellbenchError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
    try:
        # A few runs per task: a run's summary takes milliseconds, a task's round trip about
        # as long, so one run per task would leave the workers waiting on the scheduler.
        slots = max(1, sum(client.nthreads().values()))
        size = chunk_size or max(1, min(32, math.ceil(total / (slots * 4))))
        chunks = [tasks[i : i + size] for i in range(0, total, size)]
        futures = client.map(_run_chunk, chunks, [func] * len(chunks), pure=False)
        pending = {fut.key: chunk for fut, chunk in zip(futures, chunks, strict=True)}
        for fut in as_completed(futures):
            try:
                got = fut.result()
            except Exception as exc:  # a worker died under the task: report and go on
                got = [RunResult(t.run_id, False, error=f"worker: {exc}") for t in pending[fut.key]]
            for res in got:
                results.append(res)
                if progress:
                    progress(len(results), total, res)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return results


def _run_chunk(chunk: list[RunTask], func: Callable[[RunTask], RunResult]) -> list[RunResult]:
    return [func(task) for task in chunk]


def store_eis_fits(catalog_url: str, results: list[RunResult], circuit: str) -> int:
    """Put the EIS fits of the successful runs into the catalog; returns runs stored."""
    from cellbench.daq.catalog import Catalog

    n = 0
    with Catalog(catalog_url) as cat:
        for res in results:
            if res.ok and res.summary is not None and res.summary.height:
                cat.upsert_eis_fits(res.run_id, circuit, res.summary)
                n += 1
    return n


def store_summaries(catalog_url: str, results: list[RunResult]) -> int:
    """Put the summaries of the successful runs into the catalog; returns runs stored."""
    from cellbench.daq.catalog import Catalog

    n = 0
    with Catalog(catalog_url) as cat:
        for res in results:
            if res.ok and res.summary is not None and res.summary.height:
                cat.upsert_cycle_summaries(res.run_id, res.summary)
                n += 1
    return n
