"""Stations: the instruments on a bench, what each does, and the cell under test.

A station file (``docs/protocols.md`` is the full reference)::

    [cell]
    name = "coin cell A1"
    chemistry = "NMC811 | Li"
    area_cm2 = 1.539
    nominal_capacity_ah = 0.002

    [simulation]                  # only for address = "sim"
    cell = "../sim/coin_cell.toml"
    time_scale = 1000.0
    seed = 1

    [[instrument]]
    name = "smu1"
    driver = "keithley2450"
    address = "sim"               # or "TCPIP::192.168.0.20::5025::SOCKET", "/dev/ttyUSB0", ...
    roles = ["source"]
    channel = "cell1"

:func:`load_station` checks everything (drivers, roles, channels, addresses, the simulation) and
raises one :class:`StationError` listing every problem with its line. :func:`validate_run`
checks that a protocol can run on a station (an EIS step needs an impedance instrument, a C-rate
needs the cell's nominal capacity...) and returns the protocol resolved against the station's cell.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cellbench.core.schema import Cell, CellBuild
from cellbench.core.units import FREQUENCY, format_quantity
from cellbench.daq import simulated
from cellbench.daq.engine_options import check_engine_table
from cellbench.daq.protocol import (
    CCD,
    EIS,
    Pressure,
    Problem,
    Protocol,
    ProtocolError,
    Temperature,
)
from cellbench.daq.sync_config import check_sync_table
from cellbench.daq.toml_check import (
    Checker,
    TomlFileError,
    did_you_mean,
    parse_toml,
    read_toml_file,
)
from cellbench.daq.toml_lines import key_lines

__all__ = [
    "DRIVER_ROLES",
    "EIS_FREQUENCY_RANGE_HERTZ",
    "ROLES",
    "SIM_ADDRESS",
    "InstrumentSpec",
    "SimulationSpec",
    "Station",
    "StationError",
    "load_station",
    "parse_station",
    "validate_run",
]

#: What an instrument can do for a channel. "resistance" is a fixed-frequency AC resistance meter
#: (Hioki BT3562), an auxiliary reading like temperature and pressure; "press" sets the stack
#: pressure (a motorised press: ``type = "pressure"`` steps).
ROLES = ("source", "impedance", "temperature", "pressure", "resistance", "press")

#: Known drivers and the roles each can fill (cellbench.drivers.registry.DRIVERS holds the code).
DRIVER_ROLES: dict[str, frozenset[str]] = {
    "keithley2450": frozenset({"source"}),
    "e4990a": frozenset({"impedance"}),
    "im3590": frozenset({"impedance"}),
    "bt3562": frozenset({"resistance"}),
    "emstat": frozenset({"source", "impedance"}),
    "espec": frozenset({"temperature"}),
    "mark10": frozenset({"pressure"}),
    "press": frozenset({"press", "pressure"}),
    "maccor": frozenset({"source"}),
    "neware": frozenset({"source"}),
}

#: Frequency range of each impedance-capable driver, Hz (from the drivers' manuals; the E4990A
#: upper limit depends on its option, 120 MHz with option 120).
EIS_FREQUENCY_RANGE_HERTZ: dict[str, tuple[float, float]] = {
    "e4990a": (20.0, 120e6),
    "im3590": (1e-3, 200e3),
    "emstat": (1e-3, 200e3),
}

#: The address that asks for a simulated instrument (started from the station's [simulation]).
SIM_ADDRESS = "sim"

#: Drivers that measure force and need the cell's area for a pressure.
_FORCE_DRIVERS = frozenset({"mark10", "press"})

#: Channel of source/impedance/pressure/resistance instruments that do not name one.
DEFAULT_CHANNEL = "cell1"

# Roles whose instrument, without a channel, serves every channel (one chamber for the bench).
_SHARED_ROLES = frozenset({"temperature"})

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class StationError(TomlFileError):
    """A station file that cannot be used; ``problems`` lists every problem with its line."""


@dataclass(frozen=True)
class InstrumentSpec:
    """One ``[[instrument]]``: how to open it (driver, address, timeout, options) and its job.

    ``channel`` is None for a temperature instrument that serves every channel.
    ``address`` is ``"sim"`` for a simulated instrument. ``line``: its table's line in the file.
    """

    name: str
    driver: str
    address: str
    roles: tuple[str, ...]
    channel: str | None
    timeout_s: float = 2.0
    options: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0

    @property
    def simulated(self) -> bool:
        return self.address == SIM_ADDRESS

    def serves(self, role: str, channel: str) -> bool:
        """True if this instrument fills ``role`` for ``channel``."""
        return role in self.roles and (self.channel is None or self.channel == channel)


@dataclass(frozen=True)
class SimulationSpec:
    """``[simulation]``: the simulated cell (a parameter file or an inline table) and the clock.

    ``time_scale``: simulated seconds per wall-clock second. ``seed``: noise seed.
    """

    cell_params_path: Path | None = None
    cell_params: Mapping[str, Any] | None = None
    time_scale: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class Station:
    """A loaded, checked station. ``raw`` is the parsed TOML (what the simulator bench takes),
    ``text`` the file as written."""

    path: Path | None
    cell: Cell
    instruments: tuple[InstrumentSpec, ...]
    simulation: SimulationSpec | None
    raw: Mapping[str, Any]
    text: str = ""  # the file as written (kept with the run, parsed again on resume)

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths in the file are relative to."""
        return self.path.parent if self.path else Path.cwd()

    def channels(self) -> tuple[str, ...]:
        """Channels with a source or impedance instrument, in the order the file names them."""
        out: list[str] = []
        for spec in self.instruments:
            drives_cell = bool({"source", "impedance"} & set(spec.roles))
            if drives_cell and spec.channel is not None and spec.channel not in out:
                out.append(spec.channel)
        return tuple(out)

    def instrument(self, name: str) -> InstrumentSpec:
        for spec in self.instruments:
            if spec.name == name:
                return spec
        raise KeyError(f"station has no instrument named {name!r}")

    def for_role(self, role: str, channel: str | None = None) -> tuple[InstrumentSpec, ...]:
        """Instruments with ``role`` (for ``channel`` if given, shared ones included)."""
        return tuple(
            s
            for s in self.instruments
            if role in s.roles and (channel is None or s.channel in (None, channel))
        )

    @property
    def simulated(self) -> bool:
        return any(s.simulated for s in self.instruments)

    def to_dict(self) -> dict[str, Any]:
        """What ``run.json`` keeps about the station."""
        return {
            "path": str(self.path) if self.path else None,
            "instruments": [
                {
                    "name": s.name,
                    "driver": s.driver,
                    "address": s.address,
                    "roles": list(s.roles),
                    "channel": s.channel,
                }
                for s in self.instruments
            ],
            "simulated": self.simulated,
            "text": self.text,
        }


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def load_station(path: Path | str) -> Station:
    """Read and check a station file; raises :class:`StationError` listing every problem."""
    path = Path(path)
    text = read_toml_file(path, what="station", error=StationError)
    return parse_station(text, source=str(path), path=path)


def parse_station(text: str, *, source: str = "<string>", path: Path | None = None) -> Station:
    """Check station TOML text and build the :class:`Station` (see :func:`load_station`)."""
    data = parse_toml(text, source, error=StationError)
    checker = _Checker(source, text, path.parent if path else Path.cwd())
    station = replace(checker.station(data, path), text=text)
    checker.raise_if_any(StationError)
    return station


_TOP_KEYS = ("cell", "simulation", "instrument", "engine", "sync")
_CELL_NUMBERS = ("area_cm2", "thickness_cm", "active_mass_g", "nominal_capacity_ah")
_CELL_KEYS = ("name", "chemistry", "notes", "build", *_CELL_NUMBERS)
_SIM_KEYS = ("cell", "cell_params", "time_scale", "seed")
# "simulator": options for the instrument's simulator (noise, ...) when address = "sim".
_INSTRUMENT_KEYS = (
    "name",
    "driver",
    "address",
    "roles",
    "channel",
    "timeout_s",
    "options",
    "simulator",
)


class _Checker(Checker):
    """The checker of one station file; relative paths in it are relative to ``base_dir``."""

    def __init__(self, source: str, text: str, base_dir: Path):
        super().__init__(source, text)
        self.base_dir = base_dir

    def station(self, data: dict[str, Any], path: Path | None) -> Station:
        self.unknown_keys(data, (), _TOP_KEYS)
        # [engine]: the acquisition engine's tuning, checked here (with lines) and kept in raw.
        check_engine_table(self, data.get("engine"), ("engine",))
        # [sync]: upload to the lab catalog while recording (daq/sync_config.py); kept in raw.
        check_sync_table(self, data.get("sync"), ("sync",))
        cell = self.cell(data.get("cell"))
        simulation = self.simulation(data.get("simulation"))
        instruments = self.instruments(data.get("instrument"), cell)
        if simulation is None and "simulation" not in data:
            for k, spec in enumerate(instruments):
                if spec.simulated:
                    self.error(
                        ("instrument", k, "address"),
                        'address "sim" needs a [simulation] table (the simulated cell and clock)',
                    )
        return Station(path, cell, instruments, simulation, data)

    def cell(self, data: Any) -> Cell:
        if data is None:
            self.error((), "missing [cell] (name, chemistry, area_cm2, nominal_capacity_ah, ...)")
            return Cell()
        if not isinstance(data, dict):
            self.error(("cell",), "must be a table [cell]")
            return Cell()
        self.unknown_keys(data, ("cell",), _CELL_KEYS)
        values: dict[str, Any] = {}
        for key in ("name", "chemistry", "notes"):
            if key in data:
                if isinstance(data[key], str):
                    values[key] = data[key]
                else:
                    self.error(("cell", key), f"must be text in quotes, got {data[key]!r}")
        for key in _CELL_NUMBERS:
            if key not in data:
                continue
            v = data[key]
            unit = key.rsplit("_", 1)[1] if key != "nominal_capacity_ah" else "Ah"
            if isinstance(v, bool) or not isinstance(v, int | float):
                self.error(("cell", key), f"must be a number in {unit} (no quotes), got {v!r}")
            elif not math.isfinite(v) or v <= 0:
                self.error(("cell", key), f"must be a positive number, got {v!r}")
            else:
                values[key] = float(v)
        if "build" in data:  # [cell.build]: how the cell was made (core.schema.CellBuild)
            values["build"], problems = CellBuild.from_mapping(data["build"])
            for key, message in problems:
                self.error(("cell", "build", key) if key else ("cell", "build"), message)
        return Cell(**values)

    def simulation(self, data: Any) -> SimulationSpec | None:
        if data is None:
            return None
        path = ("simulation",)
        if not isinstance(data, dict):
            self.error(path, "must be a table [simulation]")
            return None
        self.unknown_keys(data, path, _SIM_KEYS)
        params_path: Path | None = None
        params: dict[str, Any] | None = None
        if "cell" in data and "cell_params" in data:
            self.error((*path, "cell_params"), "give cell (a file) or [simulation.cell_params]")
        if "cell" in data:
            if isinstance(data["cell"], str):
                params_path = (self.base_dir / data["cell"]).resolve()
                if not params_path.is_file():
                    self.error((*path, "cell"), f"no such cell parameter file: {params_path}")
            elif isinstance(data["cell"], dict):
                params = data["cell"]  # an inline table works as well
            else:
                self.error((*path, "cell"), "must be a file name (relative to this file)")
        elif "cell_params" in data:
            if isinstance(data["cell_params"], dict):
                params = data["cell_params"]
            else:
                self.error((*path, "cell_params"), "must be a table [simulation.cell_params]")
        if params_path is not None and params_path.is_file():
            self.check_cell_params((*path, "cell"), params_path, None)
        elif params is not None:
            key = "cell" if "cell" in data else "cell_params"
            self.check_cell_params((*path, key), None, params)
        scale = data.get("time_scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            self.error((*path, "time_scale"), f"must be a number, got {scale!r}")
            scale = 1.0
        elif not math.isfinite(scale) or scale <= 0:
            self.error((*path, "time_scale"), f"must be positive, got {scale!r}")
            scale = 1.0
        seed = data.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            self.error((*path, "seed"), f"must be a whole number >= 0, got {seed!r}")
            seed = 0
        return SimulationSpec(params_path, params, float(scale), seed)

    def check_cell_params(
        self, path: tuple[str | int, ...], params_path: Path | None, params: dict | None
    ) -> None:
        """Let the simulator read its cell parameters now, so their problems come with a line."""
        problem = simulated.cell_params_problem(params_path, params)
        if problem is not None:
            self.error(path, f"simulated cell parameters: {problem}")

    def instruments(self, data: Any, cell: Cell) -> tuple[InstrumentSpec, ...]:
        if data is None:
            self.error((), "no instruments: add [[instrument]] tables")
            return ()
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            self.error(("instrument",), "instruments are written as [[instrument]] tables")
            return ()
        named = _cell_channels(data)
        default = DEFAULT_CHANNEL if not named else named[0] if len(named) == 1 else None
        specs = [
            self.instrument(d, ("instrument", k), cell, default, named) for k, d in enumerate(data)
        ]
        out = tuple(s for s in specs if s is not None)
        self.cross_check(data, specs)
        return out

    def instrument(
        self,
        data: dict[str, Any],
        path: tuple[str | int, ...],
        cell: Cell,
        default_channel: str | None,
        named_channels: list[str],
    ) -> InstrumentSpec | None:
        """One [[instrument]]; without a channel it joins the bench's only cell channel."""
        self.unknown_keys(data, path, _INSTRUMENT_KEYS)
        ok = True

        def text(key: str, hint: str) -> str | None:
            nonlocal ok
            if key not in data:
                self.error(path, f"missing {key!r} ({hint})")
                ok = False
                return None
            if not isinstance(data[key], str) or not data[key].strip():
                self.error((*path, key), f"must be non-empty text in quotes, got {data[key]!r}")
                ok = False
                return None
            return data[key].strip()

        name = text("name", 'e.g. name = "smu1"')
        if name is not None and not _NAME_RE.fullmatch(name):
            self.error((*path, "name"), "use letters, digits, '_', '-' and '.' only")
            ok = False
        driver = text("driver", "one of " + ", ".join(DRIVER_ROLES))
        if driver is not None and driver not in DRIVER_ROLES:
            hint = did_you_mean(driver, DRIVER_ROLES)
            self.error((*path, "driver"), f"unknown driver {driver!r}; {hint}")
            ok = False
        address = text("address", '"sim" or e.g. "TCPIP::10.0.0.5::5025::SOCKET", "/dev/ttyUSB0"')
        roles = self.roles(data, path, driver)
        if roles is None:
            ok = False
        channel: str | None = None
        if "channel" in data:
            channel = data["channel"] if isinstance(data["channel"], str) else None
            if channel is None or not _NAME_RE.fullmatch(channel):
                self.error((*path, "channel"), 'must be a name in quotes, e.g. "cell1"')
                ok = False
        elif roles and not set(roles) <= _SHARED_ROLES:
            channel = default_channel
            if channel is None:
                self.error(
                    path,
                    "the station has several channels ("
                    + ", ".join(repr(c) for c in named_channels)
                    + "): say which this instrument serves with channel = ...",
                )
                ok = False
        if (
            channel is not None
            and named_channels
            and channel not in named_channels
            and roles
            and not {"source", "impedance"} & set(roles)
        ):
            self.error(
                (*path, "channel") if "channel" in data else path,
                f"no source or impedance instrument is on channel {channel!r} "
                f"(channels: {', '.join(repr(c) for c in named_channels)})",
            )
            ok = False
        timeout = data.get("timeout_s", 2.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            self.error((*path, "timeout_s"), f"must be a number of seconds, got {timeout!r}")
            ok = False
        elif not 0 < timeout <= 600:
            self.error((*path, "timeout_s"), f"must be in (0, 600] s, got {timeout!r}")
            ok = False
        if not isinstance(data.get("simulator", {}), dict):
            self.error((*path, "simulator"), "must be a table [instrument.simulator]")
            ok = False
        options = data.get("options", {})
        if not isinstance(options, dict):
            self.error((*path, "options"), "must be a table [instrument.options]")
            return None
        if (
            driver in _FORCE_DRIVERS
            and "area_cm2" not in options
            and cell.area_cm2 is None
            and roles
            and "pressure" in roles
        ):
            self.error(
                path,
                "a force gauge gives pressure only with an area: set [cell] area_cm2 "
                "or options.area_cm2",
            )
            ok = False
        if not ok:
            return None
        if driver in _FORCE_DRIVERS and "area_cm2" not in options and cell.area_cm2 is not None:
            # Pressure = force / area: the gauge presses on the cell's electrode area.
            options = {**options, "area_cm2": cell.area_cm2}
        assert name is not None and driver is not None and address is not None and roles
        return InstrumentSpec(
            name=name,
            driver=driver,
            address=address,
            roles=roles,
            channel=channel,
            timeout_s=float(timeout),
            options=options,
            line=self.lines.line(path),
        )

    def roles(
        self, data: dict[str, Any], path: tuple[str | int, ...], driver: str | None
    ) -> tuple[str, ...] | None:
        raw = data.get("roles")
        if raw is None:
            if driver in DRIVER_ROLES and len(DRIVER_ROLES[driver]) == 1:
                return tuple(DRIVER_ROLES[driver])  # the only thing it can do
            if driver in DRIVER_ROLES:  # an unknown driver is reported already
                self.error(path, "missing 'roles' (" + ", ".join(ROLES) + ")")
            return None
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not raw or not all(isinstance(r, str) for r in raw):
            self.error((*path, "roles"), 'must be a list like ["source"]')
            return None
        ok = True
        for k, role in enumerate(raw):
            if role not in ROLES:
                hint = did_you_mean(role, ROLES)
                self.error((*path, "roles", k), f"unknown role {role!r}; {hint}")
                ok = False
            elif driver in DRIVER_ROLES and role not in DRIVER_ROLES[driver]:
                can = ", ".join(sorted(DRIVER_ROLES[driver]))
                self.error((*path, "roles", k), f"{driver} cannot take role {role!r} (only: {can})")
                ok = False
        if len(set(raw)) != len(raw):
            self.error((*path, "roles"), "lists a role twice")
        return tuple(dict.fromkeys(raw)) if ok else None

    def cross_check(self, raw: list[dict[str, Any]], specs: list[InstrumentSpec | None]) -> None:
        # Names and addresses are compared as written, whether or not the rest is valid.
        for key, what in (("name", "name"), ("address", "address")):
            seen: dict[str, int] = {}
            for k, data in enumerate(raw):
                value = data.get(key)
                if not isinstance(value, str) or (key == "address" and value == SIM_ADDRESS):
                    continue
                value = value.strip()
                if value in seen:
                    self.error(
                        ("instrument", k, key),
                        f"{value!r} is also the {what} of instrument[{seen[value]}]",
                    )
                else:
                    seen[value] = k
        # One instrument per role and channel: two sources on one cell would fight.
        valid = [(k, s) for k, s in enumerate(specs) if s is not None]
        channels = {s.channel for _, s in valid if s.channel is not None}
        for role in ROLES:
            for channel in sorted(channels):
                serving = [(k, s) for k, s in valid if s.serves(role, channel)]
                if len(serving) > 1:
                    names = ", ".join(repr(s.name) for _, s in serving)
                    self.error(
                        ("instrument", serving[-1][0], "roles"),
                        f"channel {channel!r} has {len(serving)} {role} instruments ({names}); "
                        "it needs exactly one",
                    )
        if valid and not any({"source", "impedance"} & set(s.roles) for _, s in valid):
            self.error(("instrument",), "no instrument is a source or an impedance analyzer")


def _cell_channels(raw: list[dict[str, Any]]) -> list[str]:
    """Channels named by source or impedance instruments, in file order (as written)."""
    out: list[str] = []
    for data in raw:
        channel, roles = data.get("channel"), data.get("roles")
        if roles is None:
            roles = sorted(DRIVER_ROLES.get(data.get("driver"), ()))
        if isinstance(roles, str):
            roles = [roles]
        drives_cell = isinstance(roles, list) and bool({"source", "impedance"} & set(roles))
        if drives_cell and isinstance(channel, str) and channel not in out:
            out.append(channel)
    return out


# --------------------------------------------------------------------------------------------------
# Protocol on a station
# --------------------------------------------------------------------------------------------------

# Step kinds that drive or measure the cell through a source instrument.
_NEEDS_SOURCE = frozenset({"ocv", "cc", "cv", "cccv", "pulse", "hppc", "gitt", "ccd"})


def validate_run(protocol: Protocol, station: Station) -> Protocol:
    """Check that ``protocol`` can run on every channel of ``station``; return it resolved.

    C-rates, current densities and capacity fractions are resolved with the station's cell.
    Raises :class:`ProtocolError` listing every problem (protocol lines for steps, station lines
    for the station) — nothing here touches an instrument.
    """
    problems: list[Problem] = []
    source = str(protocol.path) if protocol.path else "<protocol>"
    station_file = str(station.path) if station.path else "<station>"
    resolved = protocol
    try:
        resolved = protocol.with_cell(station.cell)
    except ProtocolError as exc:
        problems.extend(exc.problems)

    def station_problem(message: str) -> None:
        problems.append(Problem(station_file, 0, "", message))

    channels = station.channels()
    if not channels:
        station_problem("no channel: no instrument is a source or an impedance analyzer")
    for step, _ in protocol.walk():
        for channel in channels:
            missing = None
            if step.kind in _NEEDS_SOURCE and not station.for_role("source", channel):
                missing = "source"
            elif isinstance(step, EIS) and not station.for_role("impedance", channel):
                missing = "impedance"
            elif isinstance(step, Temperature) and not station.for_role("temperature", channel):
                missing = "temperature"
            elif isinstance(step, Pressure) and not station.for_role("press", channel):
                missing = "press"
            if missing:
                problems.append(
                    Problem(
                        source,
                        step.line,
                        f"step {step.index} ({step.kind})",
                        f"needs a {missing} instrument, but station channel {channel!r} "
                        f"has none ({station_file})",
                    )
                )
        if isinstance(step, CCD) and station.cell.area_cm2 is None:
            problems.append(
                Problem(
                    source,
                    step.line,
                    f"step {step.index} (ccd)",
                    f"critical current density needs the cell area: set [cell] area_cm2 in "
                    f"{station_file}",
                )
            )
        if isinstance(step, EIS):
            for channel in channels:
                for analyzer in station.for_role("impedance", channel)[:1]:
                    lo, hi = EIS_FREQUENCY_RANGE_HERTZ.get(analyzer.driver, (0.0, math.inf))
                    top = analyzer.options.get("max_frequency_hertz")  # E4990A option 010..120
                    if isinstance(top, int | float) and not isinstance(top, bool):
                        hi = min(hi, float(top))
                    f_lo = min(step.start_hertz, step.stop_hertz)
                    f_hi = max(step.start_hertz, step.stop_hertz)
                    if f_lo < lo or f_hi > hi:
                        problems.append(
                            Problem(
                                source,
                                step.line,
                                f"step {step.index} (eis)",
                                f"{_hz(f_lo)}-{_hz(f_hi)} is outside what {analyzer.driver} "
                                f"{analyzer.name!r} measures ({_hz(lo)}-{_hz(hi)})",
                            )
                        )
        if isinstance(step, EIS) and step.amplitude_unit == "A":
            for channel in channels:
                analyzers = station.for_role("impedance", channel)
                if analyzers and analyzers[0].driver in ("e4990a",):
                    problems.append(
                        Problem(
                            source,
                            step.line,
                            f"step {step.index} (eis)",
                            f"{analyzers[0].driver} {analyzers[0].name!r} cannot do "
                            "galvanostatic EIS: give the amplitude in volts",
                        )
                    )
    # A limit is only a limit if something measures it.
    safety_lines = {
        "temperature_max": ("temperature", protocol.safety.temperature_max_celsius),
        "pressure_max": ("pressure", protocol.safety.pressure_max_megapascal),
        "pressure_min": ("pressure", protocol.safety.pressure_min_megapascal),
    }
    for key, (role, value) in safety_lines.items():
        if value is None:
            continue
        for channel in channels:
            if not station.for_role(role, channel):
                problems.append(
                    Problem(
                        source,
                        _line_of(protocol, ("safety", key)),
                        f"safety.{key}",
                        f"nothing measures it: station channel {channel!r} has no {role} "
                        f"instrument ({station_file})",
                    )
                )
    if not problems:  # cyclers that run their own schedule: what their step files can say
        from cellbench.daq.cycler_runs import check_fit

        problems.extend(check_fit(resolved, station))
    if problems:
        raise ProtocolError(problems)
    return resolved


def _hz(hertz: float) -> str:
    return format_quantity(hertz, FREQUENCY)


def _line_of(protocol: Protocol, path: tuple[str | int, ...]) -> int:
    return key_lines(protocol.text).line(path)
