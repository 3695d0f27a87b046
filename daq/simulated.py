"""Start-up of simulated instruments: the only daq module that imports ``cellbench.drivers.sim``.

The engine and the station loader know simulators only through these two functions, so that a
lab PC driving real instruments never imports the simulated cell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def start_bench(station_raw: dict[str, Any], base_dir: Path | None, *, clock: Any) -> Any:
    """Start the simulators a station names (``address = "sim"``); returns the running bench."""
    from cellbench.drivers.sim.bench import start_simulators

    return start_simulators(station_raw, base_dir, clock=clock)


def cell_params_problem(params_path: Path | None, params: dict[str, Any] | None) -> str | None:
    """Why the simulated cell would refuse these parameters (a file or an inline table), or None."""
    from cellbench.drivers.sim import cell as sim_cell

    try:
        if params_path is not None:
            sim_cell.load_cell_params(params_path)
        else:
            sim_cell.CellParams.from_dict(params or {})
    except (sim_cell.CellParamsError, ValueError, TypeError) as exc:
        return str(exc)
    return None
