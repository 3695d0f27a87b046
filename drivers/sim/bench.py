"""Start the simulated instruments a station asks for, all on one simulated cell.

A station instrument whose ``address`` is ``"sim"`` gets a simulator of its driver; the rest are
left alone. Simulators are registered in :data:`SIMULATORS` as ``"module:Class"`` strings (imported
on use); each class is called as ``Class(cell, *, name=..., faults=..., **simulator_options)``
(plus ``link_dir=`` when it accepts one: serial simulators put their stable pty symlinks there)
and must offer ``start() -> self``, ``stop()`` and ``address``. ``simulator_options`` come from
the station's ``[instrument.simulator]`` table (e.g. ``noise_relative = 1e-3``).

Station keys used (the raw parsed TOML; see ``fixtures/stations/sim_pellet.toml``)::

    [simulation]
    cell = "../sim/llzo_symmetric.toml"   # relative to the station file, or:
    # [simulation.cell_params] ...        # inline table of CellParams fields
    time_scale = 1000.0                   # simulated seconds per wall second
    seed = 1
"""

from __future__ import annotations

import contextlib
import inspect
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cellbench.core.clock import ScaledClock
from cellbench.core.errors import CellbenchError
from cellbench.drivers.registry import UnknownDriverError, resolve
from cellbench.drivers.sim.cell import CellParams, SimCell, load_cell_params
from cellbench.drivers.sim.faults import FaultInjector

SIM_ADDRESS = "sim"

SIMULATORS: dict[str, str] = {
    "keithley2450": "cellbench.drivers.sim.keithley2450_sim:Keithley2450Simulator",
    "e4990a": "cellbench.drivers.sim.e4990a_sim:E4990ASimulator",
    "im3590": "cellbench.drivers.sim.hioki:IM3590Simulator",
    "bt3562": "cellbench.drivers.sim.hioki:BT3562Simulator",
    "emstat": "cellbench.drivers.sim.emstat:EmStatSimulator",
    "espec": "cellbench.drivers.sim.chamber_gauge:EspecSimulator",
    "mark10": "cellbench.drivers.sim.chamber_gauge:Mark10Simulator",
    "press": "cellbench.drivers.sim.press:PressSimulator",
    "maccor": "cellbench.drivers.sim.maccor_sim:MaccorSimulator",
    "neware": "cellbench.drivers.sim.neware_sim:NewareSimulator",
}


class StationSimulationError(CellbenchError):
    """The station's [simulation] section or an instrument's simulator cannot be set up."""


def load_simulator(driver: str) -> Any:
    """The simulator class registered for ``driver``."""
    try:
        spec = SIMULATORS[driver]
    except KeyError:
        raise UnknownDriverError(
            f"no simulator for driver {driver!r}; simulated drivers: "
            f"{', '.join(sorted(SIMULATORS))}"
        ) from None
    return resolve(spec)


def cell_params_for(station: Mapping[str, Any], base_dir: Path) -> CellParams:
    """The simulated cell's parameters from ``[simulation]`` (file or inline table)."""
    simulation = station.get("simulation", {}) or {}
    if "cell_params" in simulation:
        table = dict(simulation["cell_params"])
        return CellParams.from_dict(table, source="[simulation.cell_params]")
    if "cell" in simulation:
        return load_cell_params(Path(base_dir) / str(simulation["cell"]))
    raise StationSimulationError(
        'station has simulated instruments but no [simulation] cell: set cell = "file.toml" '
        "or an inline [simulation.cell_params] table"
    )


class SimBench:
    """Running simulators on one cell. Use as a context manager or call :meth:`stop`."""

    def __init__(self, cell: SimCell, clock: ScaledClock, link_dir: Path):
        self.cell = cell
        self.clock = clock
        self.link_dir = link_dir
        self.addresses: dict[str, str] = {}
        self.simulators: dict[str, Any] = {}
        self.drivers: dict[str, str] = {}

    def faults(self, name: str) -> FaultInjector:
        """The fault injector of instrument ``name``'s simulator."""
        return self.simulators[name].faults

    def address_of(self, instrument: Mapping[str, Any]) -> str:
        """The address to open for a station instrument: its simulator's, or its own."""
        name = str(instrument.get("name", ""))
        return self.addresses.get(name, str(instrument.get("address", "")))

    def stop(self) -> None:
        for simulator in reversed(list(self.simulators.values())):
            with contextlib.suppress(Exception):
                simulator.stop()
        self.simulators.clear()
        shutil.rmtree(self.link_dir, ignore_errors=True)

    def __enter__(self) -> SimBench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_simulators(
    station: Mapping[str, Any],
    base_dir: Path | str,
    *,
    clock: ScaledClock | None = None,
) -> SimBench:
    """Start a simulator for every ``address = "sim"`` instrument of ``station`` (raw TOML dict).

    ``base_dir`` resolves the cell file path. ``clock`` defaults to a :class:`ScaledClock` with
    the station's ``time_scale``. If a simulator fails to start, the ones started are stopped.
    """
    simulation = station.get("simulation", {}) or {}
    params = cell_params_for(station, Path(base_dir))
    if clock is None:
        clock = ScaledClock(float(simulation.get("time_scale", 1.0)))
    cell = SimCell(params, clock=clock, seed=int(simulation.get("seed", 0)))
    bench = SimBench(cell, clock, Path(tempfile.mkdtemp(prefix="cellbench-sim-")))
    try:
        for index, instrument in enumerate(station.get("instrument", []) or []):
            if str(instrument.get("address", "")).strip().lower() != SIM_ADDRESS:
                continue
            name = str(instrument.get("name") or f"instrument{index + 1}")
            driver = str(instrument.get("driver", ""))
            factory = load_simulator(driver)
            kwargs: dict[str, Any] = dict(instrument.get("simulator", {}) or {})
            with contextlib.suppress(TypeError, ValueError):
                if "link_dir" in inspect.signature(factory).parameters:
                    kwargs.setdefault("link_dir", bench.link_dir)
            try:
                simulator = factory(cell, name=name, faults=FaultInjector(), **kwargs)
            except TypeError as exc:
                raise StationSimulationError(
                    f"instrument {name!r}: bad [instrument.simulator] options for {driver}: {exc}"
                ) from None
            simulator.start()
            bench.simulators[name] = simulator
            bench.addresses[name] = simulator.address
            bench.drivers[name] = driver
    except BaseException:
        bench.stop()
        raise
    return bench
