"""``cellbench protocol check`` and ``cellbench station check``: validate files before a run.

Nothing here opens an instrument: a protocol (and its station) are read, checked and either listed
step by step or answered with every problem as ``file:line: key: message`` (exit code 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cellbench.core import units

if TYPE_CHECKING:  # the protocol loader imports polars: only when a check runs
    from cellbench.daq.protocol import Limits, Problem, Protocol
    from cellbench.daq.station import Station


def register(sub: argparse._SubParsersAction) -> None:
    protocol = sub.add_parser(
        "protocol",
        help="check protocol files",
        description="Check test protocols (TOML) before running them.",
    )
    protocol_sub = protocol.add_subparsers(dest="protocol_command", metavar="COMMAND")
    protocol.set_defaults(func=lambda args: (protocol.print_help(), 2)[1])
    check = protocol_sub.add_parser(
        "check",
        help="validate a protocol (optionally against a station) and list its steps",
        description=(
            "Read PROTOCOL, check every step and limit, and print the expanded step list with "
            "the step indices the run will record. With --station, also check that the station "
            "has what each step needs and resolve C-rates and current densities from its cell. "
            "Problems are printed as file:line: key: message; the exit code is then 1."
        ),
    )
    check.add_argument("protocol", type=Path, metavar="PROTOCOL", help="protocol TOML file")
    check.add_argument(
        "--station", type=Path, metavar="STATION", help="station TOML file to check against"
    )
    check.set_defaults(func=_protocol_check)

    station = sub.add_parser(
        "station",
        help="check station files",
        description="Check station files (instruments, roles, cell) before a run.",
    )
    station_sub = station.add_subparsers(dest="station_command", metavar="COMMAND")
    station.set_defaults(func=lambda args: (station.print_help(), 2)[1])
    s_check = station_sub.add_parser(
        "check",
        help="validate a station file and list its instruments",
        description=(
            "Read STATION, check the cell, the simulation and every instrument (driver, address, "
            "roles, channel), and list them. Problems are printed as file:line: key: message; "
            "the exit code is then 1. No instrument is opened."
        ),
    )
    s_check.add_argument("station", type=Path, metavar="STATION", help="station TOML file")
    s_check.set_defaults(func=_station_check)


def _protocol_check(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from cellbench.daq.protocol import ProtocolError, load_protocol
    from cellbench.daq.station import StationError, load_station, validate_run

    out = out or sys.stdout
    problems: list[Problem] = []
    station: Station | None = None
    if args.station is not None:
        try:
            station = load_station(args.station)
        except StationError as exc:
            problems.extend(exc.problems)
    protocol: Protocol | None = None
    try:
        protocol = load_protocol(args.protocol, cell=station.cell if station else None)
    except ProtocolError as exc:
        problems.extend(exc.problems)
    if protocol is not None and station is not None:
        try:
            protocol = validate_run(protocol, station)
        except ProtocolError as exc:
            problems.extend(exc.problems)
    if problems:
        _print_problems(problems)
        return 1
    assert protocol is not None
    print_protocol(protocol, out)
    if station is not None:
        print(file=out)
        print_station(station, out)
    if protocol.unresolved:
        print(file=out)
        print("needs a station to resolve (check again with --station):", file=out)
        for u in protocol.unresolved:
            print(f"  line {u.line}: {u.key} = {u.text!r} needs the cell's {u.needs}", file=out)
    print(f"\nOK: {args.protocol}" + (f" on {args.station}" if station else ""), file=out)
    return 0


def _station_check(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from cellbench.daq.station import StationError, load_station

    out = out or sys.stdout
    try:
        station = load_station(args.station)
    except StationError as exc:
        _print_problems(list(exc.problems))
        return 1
    print_station(station, out)
    print(f"\nOK: {args.station}", file=out)
    return 0


def _print_problems(problems: list[Problem]) -> None:
    for p in problems:
        print(str(p), file=sys.stderr)
    print(f"cellbench: {len(problems)} problem(s); nothing was run", file=sys.stderr)


def _limits_text(lim: Limits) -> str:
    parts = []
    lo, hi = lim.voltage_min_volt, lim.voltage_max_volt
    if lo is not None and hi is not None:
        parts.append(f"{_fmt(lo, units.VOLTAGE)} ≤ V ≤ {_fmt(hi, units.VOLTAGE)}")
    elif lo is not None:
        parts.append(f"V ≥ {_fmt(lo, units.VOLTAGE)}")
    elif hi is not None:
        parts.append(f"V ≤ {_fmt(hi, units.VOLTAGE)}")
    if lim.current_max_ampere is not None:
        parts.append(f"|I| ≤ {_fmt(lim.current_max_ampere, units.CURRENT)}")
    if lim.temperature_max_celsius is not None:
        parts.append(f"T ≤ {lim.temperature_max_celsius:g} °C")
    if lim.pressure_max_megapascal is not None:
        parts.append(f"p ≤ {lim.pressure_max_megapascal:g} MPa")
    if lim.pressure_min_megapascal is not None:
        parts.append(f"p ≥ {lim.pressure_min_megapascal:g} MPa")
    return ", ".join(parts) if parts else "none"


def _fmt(value: float, dimension: str) -> str:
    return units.format_quantity(value, dimension)


def print_protocol(protocol: Protocol, out: TextIO) -> None:
    """The protocol as a numbered step tree (index = the step_index the run records)."""
    where = protocol.path if protocol.path else "<string>"
    print(f"{where}: {protocol.name!r}", file=out)
    if protocol.description:
        print(f"  {protocol.description}", file=out)
    print(
        f"  {protocol.step_count} steps; a sample every "
        f"{_fmt(protocol.sample_interval_second, units.TIME)}",
        file=out,
    )
    print(f"  safety: {_limits_text(protocol.safety)}", file=out)
    print(f"\n{'step':>5} {'line':>5}  what", file=out)
    for step, depth in protocol.walk():
        summary = step.summary()
        text = summary if step.name == summary else f"{step.name}: {summary}"
        extras = []
        if step.limits is not None and not step.limits.is_empty():
            extras.append(f"limits {_limits_text(step.limits)}")
        if step.record_interval_second is not None:
            extras.append(f"record every {_fmt(step.record_interval_second, units.TIME)}")
        if step.record_dv_volt is not None:
            extras.append(f"record every {_fmt(step.record_dv_volt, units.VOLTAGE)}")
        if extras:
            text += f"  [{'; '.join(extras)}]"
        print(f"{step.index:>5} {step.line:>5}  {'  ' * depth}{text}", file=out)


def print_station(station: Station, out: TextIO) -> None:
    """The station: its cell, simulation and instruments by channel."""
    where = station.path if station.path else "<string>"
    cell = station.cell
    facts = [
        f"{k} {getattr(cell, k):g}"
        for k in ("area_cm2", "thickness_cm", "active_mass_g", "nominal_capacity_ah")
        if getattr(cell, k) is not None
    ]
    print(f"{where}: cell {cell.name or '(unnamed)'!r} {cell.chemistry}".rstrip(), file=out)
    if facts:
        print(f"  {', '.join(facts)}", file=out)
    if station.simulation is not None:
        sim = station.simulation
        source = sim.cell_params_path or "inline [simulation.cell_params]"
        print(f"  simulation: {source}, time x{sim.time_scale:g}, seed {sim.seed}", file=out)
    for spec in station.instruments:
        channel = spec.channel or "all channels"
        print(
            f"  {spec.name:<12} {spec.driver:<13} {', '.join(spec.roles):<20} {channel:<12} "
            f"{spec.address}",
            file=out,
        )
