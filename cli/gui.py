"""``cellbench gui``: the technician's window (start a run, or attach to one read-only)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cellbench.core.errors import CellbenchError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gui",
        help="open the window: start a protocol, or attach to a running run, watch it live",
        description=(
            "Open the cellbench window. Choose a protocol and a station (checked with every "
            "problem listed before anything touches an instrument), start the run — as its own "
            "`cellbench run` logger process, which outlives the window — watch V/I/T and "
            "Nyquist plots and alarms, pause, continue or stop it. With RUN_DIR, attach to a run "
            "folder (read-only; stop/pause/continue over its logger's control channel); with "
            "--catalog URL RUN_ID, follow a run of the lab catalog read-only. With "
            "PROTOCOL --station STATION, start that run at once (scripted use)."
        ),
    )
    p.add_argument(
        "run_dir",
        nargs="?",
        type=Path,
        metavar="RUN_DIR|PROTOCOL",
        help=(
            "run folder to follow, or a protocol file to start at once (needs --station), or "
            "with --catalog the catalog run id to follow"
        ),
    )
    p.add_argument(
        "--catalog",
        metavar="URL",
        default=None,
        help=(
            "follow a run of the lab catalog: RUN_DIR is then its run id (read-only; history "
            "from the archive, newest rows from the catalog; password from PGPASSFILE or the "
            "libpq service file, never here)"
        ),
    )
    p.add_argument("--protocol", type=Path, metavar="FILE", help="protocol TOML to preselect")
    p.add_argument("--station", type=Path, metavar="FILE", help="station TOML to preselect")
    p.add_argument("--out", "-o", type=Path, default=Path("runs"), help="runs folder (./runs)")
    p.add_argument(
        "--time-scale",
        type=float,
        metavar="X",
        help="simulated stations only: simulated seconds per wall second",
    )
    p.set_defaults(func=cmd_gui)


def _catalog_run(url: str, run_id: Path | None, args: argparse.Namespace) -> tuple[str, str]:
    """``(url, run_id)`` checked before the window opens: the URL holds no password, the
    catalog answers and has the run (each failure one clear error)."""
    if run_id is None:
        raise CellbenchError("cellbench gui --catalog URL: give the RUN_ID to follow")
    if args.station is not None or args.protocol is not None:
        raise CellbenchError(
            "cellbench gui --catalog: a catalog run is followed read-only; --protocol and "
            "--station start runs here, give them without --catalog"
        )
    from cellbench.daq.catalog import Catalog

    with Catalog(url) as cat:
        cat.run_meta(str(run_id))  # CatalogError naming the run and the server if it is not
    return url, str(run_id)


def cmd_gui(args: argparse.Namespace) -> int:
    start = False
    catalog = None
    if args.catalog:
        catalog = _catalog_run(args.catalog, args.run_dir, args)
        args.run_dir = None
    if args.run_dir is not None and args.run_dir.is_file():  # a protocol: start it at launch
        if args.station is None:
            raise CellbenchError(
                f"cellbench gui {args.run_dir}: starting a protocol needs --station STATION"
            )
        args.protocol, args.run_dir, start = args.run_dir, None, True
    if args.run_dir is not None and not (args.run_dir / "run.json").is_file():
        raise CellbenchError(f"{args.run_dir}: not a cellbench run folder (no run.json)")
    try:
        from cellbench.gui.app import main
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("PySide6", "pyqtgraph", "shiboken6"):
            raise  # a broken cellbench module is a bug to show, not a missing extra
        raise CellbenchError(
            f"the GUI needs PySide6 and pyqtgraph ({exc}); install cellbench[gui]"
        ) from None
    return main(
        args.run_dir,
        protocol=args.protocol,
        station=args.station,
        out_dir=args.out,
        time_scale=args.time_scale,
        start=start,
        catalog=catalog,
    )
