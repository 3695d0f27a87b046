"""A run from files: load and check the protocol and station, start simulators when the station
asks for them, and build the :class:`~cellbench.daq.engine.Engine`.

Order matters for safety: the protocol and the station are read and checked against each other
(every problem listed with file and line) before any simulator starts or any port is opened.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
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


def prepare(
    protocol_path: Path | str,
    station_path: Path | str,
    out_dir: Path | str,
    *,
    time_scale: float | None = None,
    run_dir_name: str | None = None,
    options: dict[str, Any] | None = None,
    writer: RunWriter | None = None,
    resume: dict[str, Checkpoint] | None = None,
    test_time_offset_s: float = 0.0,
    latency: LatencyLog | None = None,
    meta_extra: dict[str, Any] | None = None,
) -> Session:
    """Check everything, then start simulators (a station with ``address = "sim"``) and build
    the engine on their clock. ``time_scale`` overrides the station's ``[simulation]`` one."""
    protocol, station = load_checked(protocol_path, station_path)
    return build(
        protocol,
        station,
        out_dir,
        time_scale=time_scale,
        run_dir_name=run_dir_name,
        options=options,
        writer=writer,
        resume=resume,
        test_time_offset_s=test_time_offset_s,
        latency=latency,
        meta_extra=meta_extra,
    )


def build(
    protocol: Protocol,
    station: Station,
    out_dir: Path | str,
    *,
    time_scale: float | None = None,
    run_dir_name: str | None = None,
    options: dict[str, Any] | None = None,
    writer: RunWriter | None = None,
    resume: dict[str, Checkpoint] | None = None,
    test_time_offset_s: float = 0.0,
    latency: LatencyLog | None = None,
    meta_extra: dict[str, Any] | None = None,
) -> Session:
    """:func:`prepare` for a protocol and station already loaded (and checked together)."""
    protocol = validate_run(protocol, station)
    engine_options = EngineOptions.from_station(station, **(options or {}))
    bench = None
    clock: ScaledClock = WallClock()
    addresses: dict[str, str] = {}
    ground_truth = None
    uses_simulators = any(spec.address == SIM_ADDRESS for spec in station.instruments)
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
            run_dir_name=run_dir_name,
            ground_truth=ground_truth,
            meta_extra=meta_extra,
            protocol_info=protocol.to_dict(),
            station_info={
                "name": station.path.stem if station.path else "",
                **station.to_dict(),
                "text": _station_text(station),
            },
            writer=writer,
            resume=resume,
            test_time_offset_s=test_time_offset_s,
            latency=latency,
        )
    except BaseException:
        if bench is not None:
            bench.stop()
        raise
    return Session(engine, bench, protocol.path, station.path)


def _station_text(station: Station) -> str | None:
    """The station file as written (kept in run.json so that a resume uses the same one)."""
    if station.path is None:
        return None
    try:
        return Path(station.path).read_text(encoding="utf-8")
    except OSError:
        return None
