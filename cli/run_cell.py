"""``cellbench run --cell KEY=VALUE``: this run's cell details on top of the station's ``[cell]``.

A technician mounts a new cell on the same station for every run; its name, chemistry, area,
thickness, active mass and notes belong in that run's ``run.json``, not in the station file.
The overrides are checked like the station's own ``[cell]`` table. A protocol written in C-rates
or current densities resolves its currents with the cell; a ``cellbench resume`` re-reads the
cell from the station file kept in ``run.json``, so an override that would change any current of
the protocol is refused (put such a cell in the station file) — a resumed run never sources
different currents from the ones it started with.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from cellbench.core.errors import CellbenchError
from cellbench.core.schema import Cell, CellBuild

TEXT_KEYS = ("name", "chemistry", "notes")
NUMBER_KEYS = ("area_cm2", "thickness_cm", "active_mass_g", "nominal_capacity_ah")
CELL_KEYS = (*TEXT_KEYS, *NUMBER_KEYS)


class CellOptionError(CellbenchError):
    """A ``--cell`` option cannot be used (names the option)."""


def parse_cell_options(items: list[str] | None) -> dict[str, Any]:
    """``["name=A7", "area_cm2=0.785"]`` → ``{"name": "A7", "area_cm2": 0.785}``; numbers must be
    positive and finite, keys known."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if sep and key.startswith("build."):  # the build record: build.batch=B7 ...
            out.setdefault("build", {}).update(_build_option(item, key[6:], value))
            continue
        if not sep or key not in CELL_KEYS:
            raise CellOptionError(
                f"--cell {item!r}: expected KEY=VALUE with KEY one of {', '.join(CELL_KEYS)}"
            )
        if key in TEXT_KEYS:
            out[key] = value
            continue
        try:
            number = float(value)
        except ValueError:
            raise CellOptionError(f"--cell {item!r}: {key} must be a number") from None
        if not (math.isfinite(number) and number > 0):
            raise CellOptionError(f"--cell {item!r}: {key} must be a positive number")
        out[key] = number
    return out


def _build_option(item: str, key: str, value: str) -> dict[str, Any]:
    """One ``build.KEY=VALUE`` option, checked as the station's ``[cell.build]``."""
    kind = CellBuild.__dataclass_fields__.get(key)
    typed: Any = value
    if kind is not None and kind.type != "str":
        try:
            typed = float(value)
        except ValueError:
            raise CellOptionError(f"--cell {item!r}: build.{key} must be a number") from None
    _, problems = CellBuild.from_mapping({key: typed})
    if problems:
        raise CellOptionError(f"--cell {item!r}: build.{key} {problems[0][1]}")
    return {key: typed}


def with_cell(protocol_path: Path, station_path: Path, overrides: dict[str, Any]) -> tuple:
    """(protocol, station) with the station's cell replaced by ``overrides``, checked as
    :func:`cellbench.daq.session.load_checked` checks; refuses overrides that move a current."""
    from cellbench.daq.protocol import load_protocol
    from cellbench.daq.station import load_station, validate_run

    station = load_station(station_path)
    base: Cell = station.cell if isinstance(station.cell, Cell) else Cell()
    if "build" in overrides:  # on top of the station's [cell.build]
        start = base.build.recorded() if base.build is not None else {}
        overrides = {**overrides, "build": CellBuild(**{**start, **overrides["build"]})}
    cell = replace(base, **overrides)
    as_filed = validate_run(load_protocol(protocol_path, cell=base), station)
    station = replace(station, cell=cell)
    protocol = validate_run(load_protocol(protocol_path, cell=cell), station)
    if _currents(protocol) != _currents(as_filed):
        changed = ", ".join(k for k in overrides if k in NUMBER_KEYS)
        raise CellOptionError(
            f"--cell {changed}: the protocol {protocol_path} resolves its currents with the cell, "
            "and these values change them; a resume would use the station's cell again. Put "
            f"this cell in the station file ({station_path}) instead"
        )
    return protocol, station


def _currents(protocol: Any) -> str:
    """The protocol's steps and limits as resolved (everything a current depends on)."""
    return repr((protocol.steps, protocol.safety, protocol.unresolved))
