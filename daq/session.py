"""A run from files: load and check the protocol and station, start simulators when the station
asks for them, and build the :class:`~cellbench.daq.engine.Engine`.

Order matters for safety: the protocol and the station are read and checked against each other
(every problem listed with file and line) before any simulator starts or any port is opened.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cellbench.core.clock import ScaledClock, WallClock
from cellbench.core.errors import CellbenchError
from cellbench.daq.engine import Engine, EngineOptions
from cellbench.daq.protocol import Protocol, load_protocol
from cellbench.daq.recorder import LatencyLog
from cellbench.daq.runner import Checkpoint
from cellbench.daq.station import SIM_ADDRESS, Station, load_station, validate_run
from cellbench.daq.store import RunWriter

log = logging.getLogger(__name__)


class SessionError(CellbenchError):
    """A run cannot be set up as asked (names the file and the option)."""


class PacedClock(ScaledClock):
    """A :class:`ScaledClock` whose readings never jump by more than ``max_jump_s``.

    At a time scale of 10 000, a 50 ms stall of this process (another program taking the CPU, a
    garbage collection) would be 500 simulated seconds in which the simulated cell goes on
    charging while the engine cannot look — a real PC never stalls for minutes. Here, when no
    thread has read the clock for longer than ``max_jump_s`` of simulated time, the clock
    advances by only ``max_jump_s`` and falls behind by the rest: simulated time waits for a
    stalled process, as the instruments' time would not. Readings are monotonic; the clock
    runs at ``time_scale`` whenever the process keeps up.
    """

    def __init__(self, time_scale: float, *, max_jump_s: float):
        super().__init__(time_scale)
        if not max_jump_s > 0:
            raise ValueError(f"max_jump_s must be > 0, got {max_jump_s!r}")
        self.max_jump_s = float(max_jump_s)
        self.behind_s = 0.0  # simulated seconds the clock has given up to stalls
        self._last = self._sim0
        self._pace = threading.Lock()

    def now(self) -> float:
        with self._pace:
            t = super().now() - self.behind_s
            if t - self._last > self.max_jump_s:
                self.behind_s += t - self._last - self.max_jump_s
                t = self._last + self.max_jump_s
            self._last = max(t, self._last)
            return self._last


@dataclass
class Session:
    """An engine plus the simulators it runs on (if any). Close it to stop the simulators."""

    engine: Engine
    bench: Any = None  # drivers.sim.bench.SimBench for simulated stations
    protocol_path: Path | None = None
    station_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    def run(self) -> str:
        try:
            return self.engine.run()
        finally:
            self.close()

    def close(self) -> None:
        if self.bench is not None:
            self.bench.stop()
            self.bench = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_checked(protocol_path: Path | str, station_path: Path | str) -> tuple[Protocol, Station]:
    """Protocol (resolved with the station's cell) and station; raises listing every problem."""
    station = load_station(station_path)
    protocol = load_protocol(protocol_path, cell=station.cell)
    return validate_run(protocol, station), station


@dataclass(frozen=True)
class SessionOptions:
    """How to set up a run beyond its protocol and station (everything has a default).

    ``time_scale``: simulated seconds per wall second (simulated stations only; None: the
    station's ``[simulation]`` one). ``run_dir_name``: the run folder's name (None: generated).
    ``engine``: :class:`EngineOptions` overrides (keyword -> value; None values are ignored), on
    top of the station's ``[engine]`` table. ``writer``, ``resume`` and ``test_time_offset_s``
    continue an existing run (see :mod:`cellbench.daq.resume`). ``latency``: a per-batch latency
    log (benchmarks). ``meta_extra``: extra keys for ``run.json``.
    """

    time_scale: float | None = None
    run_dir_name: str | None = None
    engine: Mapping[str, Any] | None = None
    writer: RunWriter | None = None
    resume: Mapping[str, Checkpoint] | None = None
    test_time_offset_s: float = 0.0
    latency: LatencyLog | None = None
    meta_extra: Mapping[str, Any] | None = None
    #: simulated stations: a :class:`~cellbench.daq.lockstep.LockstepClock`, so that the data
    #: depend on the protocol and the station's seed only, not on how busy the machine is
    repeatable: bool = False


def _session_options(given: SessionOptions | None, keywords: dict[str, Any]) -> SessionOptions:
    """``given`` (or the defaults) with ``keywords`` replacing fields; ``options=`` is ``engine``.

    The keyword form keeps ``prepare(p, s, out, time_scale=..., options={...})`` working.
    """
    if "options" in keywords:
        if "engine" in keywords:
            raise TypeError("give engine options as engine= or options=, not both")
        keywords["engine"] = keywords.pop("options")
    known = {f.name for f in fields(SessionOptions)}
    unknown = sorted(set(keywords) - known)
    if unknown:
        raise TypeError(f"unknown session option(s) {unknown}; known: {sorted(known)}")
    return replace(given or SessionOptions(), **keywords)


def prepare(
    protocol_path: Path | str,
    station_path: Path | str,
    out_dir: Path | str,
    setup: SessionOptions | None = None,
    /,
    **keywords: Any,
) -> Session:
    """Check everything, then start simulators (a station with ``address = "sim"``) and build
    the engine on their clock.

    ``setup`` holds the :class:`SessionOptions`; its fields may also be given as keywords
    (``time_scale=``, ``run_dir_name=``, ``options=`` for the engine options, ...), which replace
    those of ``setup``.
    """
    protocol, station = load_checked(protocol_path, station_path)
    return build(protocol, station, out_dir, _session_options(setup, keywords))


def build(
    protocol: Protocol,
    station: Station,
    out_dir: Path | str,
    setup: SessionOptions | None = None,
    /,
    **keywords: Any,
) -> Session:
    """:func:`prepare` for a protocol and station already loaded (and checked together)."""
    setup = _session_options(setup, keywords)
    protocol = validate_run(protocol, station)
    engine_options = EngineOptions.from_station(station, **dict(setup.engine or {}))
    missing = missing_hardware_packages(station)
    if missing:
        raise SessionError(
            f"{station.path or 'station'}: its instruments need {', '.join(missing)}, which this "
            "installation lacks: install the hw extra (pip install 'cellbench[hw]')"
        )
    bench = None
    clock: ScaledClock = WallClock()
    addresses: dict[str, str] = {}
    ground_truth = None
    uses_simulators = any(spec.address == SIM_ADDRESS for spec in station.instruments)
    time_scale = setup.time_scale
    if setup.repeatable and not uses_simulators:
        raise SessionError(
            f"{station.path or 'station'}: a repeatable run needs simulated instruments "
            '(address = "sim"); real ones answer in real time'
        )
    if time_scale is not None and not uses_simulators:
        raise SessionError(
            f"{station.path or 'station'}: a time scale applies to simulated instruments only "
            '(address = "sim"); real instruments run in real time'
        )
    if uses_simulators:
        from cellbench.daq import simulated

        scale = time_scale
        if scale is None:
            scale = station.simulation.time_scale if station.simulation else 1.0
        # The engine cannot react faster than a sample; a longer jump of simulated time is a
        # stall of this process, not something a real bench would see.
        interval = engine_options.sample_interval_s or protocol.sample_interval_second
        if setup.repeatable:
            from cellbench.daq.lockstep import WALL_TIMED_SIMULATORS, LockstepClock

            wall_timed = [
                f"{spec.name} ({spec.driver})"
                for spec in station.instruments
                if spec.address == SIM_ADDRESS and spec.driver in WALL_TIMED_SIMULATORS
            ]
            if wall_timed:
                raise SessionError(
                    f"{station.path or 'station'}: a repeatable run cannot use the simulated "
                    f"{', '.join(wall_timed)}: it times its scripts in wall time"
                )
            clock = LockstepClock(scale)
        else:
            clock = PacedClock(scale, max_jump_s=max(2.0 * interval, 1.0))
        bench = simulated.start_bench(dict(station.raw), station.base_dir, clock=clock)
        addresses = dict(bench.addresses)
        ground_truth = bench.cell.ground_truth()
    try:
        engine = Engine(
            protocol,
            station,
            out_dir,
            clock=clock,
            addresses=addresses,
            options=engine_options,
            run_dir_name=setup.run_dir_name,
            ground_truth=ground_truth,
            meta_extra=dict(setup.meta_extra) if setup.meta_extra is not None else None,
            protocol_info=protocol.to_dict(),
            station_info={
                "name": station.path.stem if station.path else "",
                **station.to_dict(),
                "text": _station_text(station),
            },
            writer=setup.writer,
            resume=setup.resume,
            test_time_offset_s=setup.test_time_offset_s,
            latency=setup.latency,
        )
    except BaseException:
        if bench is not None:
            bench.stop()
        raise
    return Session(engine, bench, protocol.path, station.path)


#: Python packages (import names, as pip calls them) each kind of instrument address needs.
_SERIAL_PACKAGES = (("serial", "pyserial"),)
_VISA_PACKAGES = (("pyvisa", "pyvisa"),)
#: Simulated instruments speak over pseudo-terminals (pyserial) and loopback sockets opened
#: through pyvisa's pure-Python backend.
_SIM_PACKAGES = (("serial", "pyserial"), ("pyvisa", "pyvisa"), ("pyvisa_py", "pyvisa-py"))


def missing_hardware_packages(station: Station) -> list[str]:
    """The pip names of the transport packages (the ``hw`` extra) that ``station`` needs and this
    Python lacks; empty when every instrument can be opened."""
    from cellbench.drivers.errors import InstrumentConnectionError
    from cellbench.drivers.transport import parse_address

    needed: dict[str, str] = {}
    for spec in station.instruments:
        if spec.address == SIM_ADDRESS:
            needed.update(_SIM_PACKAGES)
            continue
        try:
            kind = parse_address(spec.address).kind
        except InstrumentConnectionError:
            continue  # the engine reports the address itself when it opens it
        needed.update(_SERIAL_PACKAGES if kind == "serial" else _VISA_PACKAGES)
    return [pip for module, pip in needed.items() if not _importable(module)]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # blocked, or a None left in sys.modules by a failed import
        return False


def _station_text(station: Station) -> str | None:
    """The station file as written (kept in run.json so that a resume uses the same one)."""
    if station.path is None:
        return None
    try:
        return Path(station.path).read_text(encoding="utf-8")
    except OSError:
        return None
