"""``--catalog URL RUN_ID`` wherever a command takes a run folder, and ``runs list --catalog``.

A command whose run argument is a folder gains ``--catalog URL``; given it, the argument is a run
id in the lab catalog, assembled as a temporary run folder (archived segments checked against
their SHA-256, the newest rows from the catalog's live window; :mod:`cellbench.daq.catalog_run`)
that the command then reads like any other, so it prints exactly what it prints for the local
folder. The folder is removed when the command returns.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

CATALOG_HELP = (
    "read the run from the lab catalog: the run argument is then a run id (password from "
    "PGPASSFILE or the libpq service file, never here)"
)


def add_catalog_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", metavar="URL", default=None, help=CATALOG_HELP)


def catalog_aware(func: Callable[[argparse.Namespace], int], attr: str) -> Callable:
    """``func`` with its ``attr`` argument resolved from the catalog when ``--catalog`` is set."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        url = getattr(args, "catalog", None)
        if not url:
            return func(args)
        from cellbench.daq.catalog_run import fetch_run

        value = getattr(args, attr)
        run_id = str(value[0] if isinstance(value, list) else value)
        with tempfile.TemporaryDirectory(prefix="cellbench-catalog-") as tmp:
            path = fetch_run(url, run_id, Path(tmp))
            setattr(args, attr, [path] if isinstance(value, list) else type_like(value, path))
            return func(args)

    return wrapper


def type_like(value: Any, path: Path) -> Any:
    return path if isinstance(value, Path) else str(path)


def _iso(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(v)


def catalog_runs(url: str, where: str | None) -> list[dict[str, Any]]:
    """Runs in the catalog as ``runs list --json`` prints them (newest first)."""
    from cellbench.daq.catalog import Catalog

    with Catalog(url) as cat:
        rows = cat.list_runs(where)
    return [
        {
            "run_id": r["run_id"],
            "status": r["status"],
            "rows": {
                "samples": r["samples_rows"],
                "spectra": r["spectra_rows"],
                "events": r["events_rows"],
            },
            "start_time": _iso(r["start_time"]),
            "end_time": _iso(r["end_time"]),
            "cell": r["cell_name"],
            "chemistry": r["chemistry"],
            "station": r["station"],
            "pc": r["pc"],
            "protocol": r["protocol"],
            "archive": r["archive"],
            "synced_at": _iso(r["synced_at"]),
        }
        for r in rows
    ]


def local_runs(folder: Path) -> list[dict[str, Any]]:
    """Runs in a local folder as ``runs list --json`` prints them (oldest first)."""
    from cellbench.daq.store import list_runs

    out = []
    for r in list_runs(folder):
        rows = dict(r.rows)
        problem = getattr(r, "problem", None)
        out.append(
            {
                "run_id": r.meta.run_id,
                "status": r.meta.status,
                "rows": {t: rows.get(t) for t in ("samples", "spectra", "events")},
                "start_time": r.meta.start_time,
                "end_time": r.meta.end_time,
                "cell": r.meta.cell.name,
                "chemistry": r.meta.cell.chemistry,
                "path": str(r.path),
                "writer_active": r.writer_active,
                **({"problem": str(problem)} if problem else {}),
            }
        )
    return out


def cmd_list(args: argparse.Namespace) -> int:
    """``runs list`` with ``--catalog`` and/or ``--json``."""
    from cellbench.core.errors import CellbenchError

    if args.catalog:
        if args.dir is not None:
            raise CellbenchError("runs list: give either DIR or --catalog URL, not both")
        runs = catalog_runs(args.catalog, args.where)
    else:
        if args.where:
            raise CellbenchError("runs list: --where needs --catalog")
        if args.dir is None:
            raise CellbenchError("runs list: give DIR (a folder of runs) or --catalog URL")
        runs = local_runs(args.dir)
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    from cellbench.cli.runs import print_table

    if not runs:
        print("no runs in the catalog")
        return 0
    headers = ("run", "status", "start (UTC)", "end (UTC)", "samples", "spectra", "events", "cell")
    print_table(
        headers,
        [
            (
                r["run_id"],
                r["status"],
                (r["start_time"] or "").replace("T", " ")[:19],
                (r["end_time"] or "").replace("T", " ")[:19],
                r["rows"]["samples"],
                r["rows"]["spectra"],
                r["rows"]["events"],
                ", ".join(p for p in (r["cell"], r["chemistry"], r.get("station", "")) if p),
            )
            for r in runs
        ],
    )
    return 0
