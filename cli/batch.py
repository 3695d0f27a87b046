"""``cellbench batch cycling|eis``: per-cycle summaries or EIS fits of many runs, optionally on
a Dask cluster (``--scheduler tcp://HOST:8786``) or a local one (``--workers N``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "batch",
        help="reanalyse many runs (local folders or the lab catalog), on a Dask cluster if asked",
        description="Batch reanalysis: one task per run; a failing run is reported and skipped.",
    )
    bsub = parser.add_subparsers(dest="batch_command", metavar="ANALYSIS")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    p = bsub.add_parser(
        "cycling",
        help="per-cycle summaries of every run",
        description=(
            "Per-cycle summaries of the runs in RUN_OR_FOLDER..., or of the catalog's runs "
            "(--catalog URL [--where SQL]); with --catalog the summaries are stored back in it "
            "(cycle_summaries) unless --no-store. Each task reads its run's segments straight "
            "from the archive."
        ),
    )
    _common(p)
    p.set_defaults(func=cmd_cycling)
    p = bsub.add_parser(
        "eis",
        help="fit an equivalent circuit to every impedance sweep of every run",
        description=(
            "Fit CIRCUIT to each sweep of each run (warm-started from the run's previous sweep); "
            "with --catalog the fits are stored in it (eis_fits) unless --no-store."
        ),
    )
    _common(p)
    p.add_argument("--circuit", default="R0-p(R1,CPE1)", help="circuit (default R0-p(R1,CPE1))")
    p.set_defaults(func=cmd_eis)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", type=Path, metavar="RUN_OR_FOLDER")
    p.add_argument("--catalog", metavar="URL", help="take the runs from the lab catalog")
    p.add_argument("--where", metavar="SQL", help="with --catalog: condition on runs' columns")
    p.add_argument("--archive", metavar="LOCATION", help="archive location as the workers see it")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--scheduler", metavar="tcp://HOST:8786", help="a running Dask cluster")
    group.add_argument("--workers", type=int, metavar="N", help="a local Dask cluster of N")
    p.add_argument("--no-store", action="store_true", help="do not write results to the catalog")
    p.add_argument("--json", action="store_true", help="print results as JSON")


def cmd_cycling(args: argparse.Namespace) -> int:
    from cellbench.daq.batch import store_summaries, summarise_run

    return _run(args, summarise_run, "cycles", store_summaries)


def cmd_eis(args: argparse.Namespace) -> int:
    import functools

    from cellbench.analysis.circuits import parse_circuit
    from cellbench.daq.batch import fit_run_eis, store_eis_fits

    circuit = parse_circuit(args.circuit).text  # a bad circuit fails here, before any task
    return _run(
        args,
        functools.partial(fit_run_eis, circuit=circuit),
        "sweeps",
        functools.partial(store_eis_fits, circuit=circuit),
    )


def _run(args: argparse.Namespace, func, unit: str, store) -> int:
    from cellbench.core.errors import CellbenchError
    from cellbench.daq.batch import RunResult, catalog_tasks, folder_tasks, run_batch

    if bool(args.paths) == bool(args.catalog):
        raise CellbenchError(
            f"batch {args.batch_command}: give run folders or --catalog URL (one of them)"
        )
    if args.workers is not None and args.workers < 1:
        raise CellbenchError(f"--workers must be at least 1, got {args.workers}")
    if args.catalog:
        tasks = catalog_tasks(args.catalog, where=args.where, archive=args.archive)
    else:
        tasks = folder_tasks(args.paths)

    def progress(done: int, total: int, res: RunResult) -> None:
        what = f"{res.summary.height} {unit}" if res.ok and res.summary is not None else res.error
        print(f"[{done}/{total}] {res.run_id}: {'ok' if res.ok else 'FAILED'} ({what})",
              file=sys.stderr, flush=True)  # fmt: skip

    results = run_batch(
        tasks, scheduler=args.scheduler, workers=args.workers, progress=progress, func=func
    )
    failed = [r for r in results if not r.ok]
    if args.catalog and not args.no_store:
        stored = store(args.catalog, results)
        print(f"stored the results of {stored} run(s) in the catalog", file=sys.stderr)
    if args.json:
        order = {t.run_id: i for i, t in enumerate(tasks)}
        results.sort(key=lambda r: order.get(r.run_id, len(order)))
        print(json.dumps([r.to_dict() for r in results], indent=2, default=str, allow_nan=True))
    else:
        ok = len(results) - len(failed)
        print(f"{ok} run(s) done, {len(failed)} failed")
        for r in failed:
            print(f"  {r.run_id}: {r.error}")
    return 1 if failed and len(failed) == len(results) else 0
