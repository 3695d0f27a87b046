"""``cellbench sync``: copy run folders into the lab catalog (PostgreSQL) and archive.

Credentials never go on this command line: the catalog URL names host, database and user (or a
``service=``), and libpq finds the password in ``PGPASSFILE`` / ``~/.pgpass`` (mode 0600) or the
service file. A URL with a password in it is refused.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from cellbench.daq.catalog_schema import LOADERS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sync",
        help="copy runs into the lab catalog and archive (resumable, idempotent)",
        description=(
            "Copy each run (or every run inside a folder) into the PostgreSQL catalog and its "
            "sealed Parquet segments into the archive. Safe to repeat and to interrupt: it resumes "
            "exactly where it stopped. Passwords come from PGPASSFILE or the libpq service file, "
            "never from the command line."
        ),
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="RUN_OR_FOLDER")
    p.add_argument(
        "--catalog",
        required=True,
        metavar="URL",
        help="libpq URL or 'service=NAME' (sslmode and other options pass through)",
    )
    p.add_argument(
        "--archive",
        required=True,
        metavar="LOCATION",
        help="archive folder or fsspec URL (s3://bucket/prefix)",
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help="keep syncing new rows, segments and runs until Ctrl-C / SIGTERM",
    )
    p.add_argument(
        "--until-done",
        action="store_true",
        help="with --follow: stop once every run is closed and fully synced",
    )
    p.add_argument(
        "--interval", type=float, default=0.5, metavar="S", help="--follow poll period, s"
    )
    p.add_argument("--loader", choices=LOADERS, default="copy", help="bulk path (default: copy)")
    p.add_argument("--quiet", action="store_true", help="print only warnings and errors")
    p.set_defaults(func=cmd_sync)


def cmd_sync(args: argparse.Namespace) -> int:
    from cellbench.daq.sync import RunSync, Syncer

    if args.interval <= 0:
        raise ValueError(f"--interval must be positive, got {args.interval}")
    logging.basicConfig(level=logging.WARNING, format="cellbench: %(levelname)s: %(message)s")
    syncer = Syncer(args.catalog, args.archive, loader=args.loader)

    def report(res: RunSync) -> None:
        if not args.quiet:
            print(res.line(), flush=True)

    try:
        if not args.follow:
            for res in syncer.sync_once(args.paths):
                report(res)
                if res.archive_error:
                    print(f"cellbench: warning: {res.archive_error}", file=sys.stderr)
            return 0
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        syncer.follow(
            args.paths,
            interval_s=args.interval,
            stop=stop,
            until_done=args.until_done,
            report=report,
        )
        return 0
    finally:
        syncer.close()
