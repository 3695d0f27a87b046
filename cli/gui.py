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
            "problem listed before anything touches an instrument), start the run in this "
            "process, watch V/I/T and Nyquist plots and alarms, stop it cleanly. With RUN_DIR, "
            "attach read-only to a run folder that `cellbench run` writes in another process: "
            "the window follows it without writing or locking anything."
        ),
    )
    p.add_argument("run_dir", nargs="?", type=Path, metavar="RUN_DIR", help="run folder to follow")
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


def cmd_gui(args: argparse.Namespace) -> int:
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
    )
