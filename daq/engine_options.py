"""The engine's tuning: :class:`EngineOptions`, from a station's ``[engine]`` table and overrides.

A station file may tune the acquisition engine::

    [engine]
    fault_timeout_s = 120     # wall s an instrument may stay unreachable before the run aborts
    batch_interval_s = 0.5

The station loader checks the table with the shared checker (:func:`check_engine_table`: unknown
keys with the closest known one, bad values, each with its line); :meth:`EngineOptions.from_station`
adds the overrides a caller gives (the command line's ``--sample-interval``, the GUI's) and checks
them the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from cellbench.daq.toml_check import Checker, KeyPath, Problem, TomlFileError

if TYPE_CHECKING:
    from cellbench.daq.station import Station

__all__ = ["DEFAULT_FAULT_TIMEOUT_S", "EngineOptions", "check_engine_table"]

#: Wall seconds an instrument may stay unreachable (reconnecting) before the run aborts.
DEFAULT_FAULT_TIMEOUT_S = 60.0

# Options that are whole numbers, with their least value; every other option is a positive number.
_WHOLE = {"retries": 0, "max_loop_iterations": 1}


@dataclass(frozen=True)
class EngineOptions:
    """Tuning that a station may override (``[engine]`` table) — defaults suit a lab PC."""

    fault_timeout_s: float = DEFAULT_FAULT_TIMEOUT_S  # wall s an instrument may be unreachable
    retries: int = 2  # immediate retries before reconnecting
    batch_interval_s: float = 0.25  # wall s between appends to the store
    aux_interval_s: float | None = None  # s between auxiliary readings (default: sample interval)
    stop_grace_s: float = 10.0  # wall s channels get to stop before outputs are forced off
    fsync_interval_s: float = 1.0  # wall s between fsyncs (power-cut durability)
    sample_interval_s: float | None = None  # overrides the protocol's (coarser trial runs)
    max_loop_iterations: int | None = None  # caps every loop (a quick trial of a long protocol)
    gap_threshold_s: float = 1.0  # wall s: a reading slower than this leaves a gap event

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_station(cls, station: Station, **overrides: Any) -> EngineOptions:
        """Defaults, then the station's ``[engine]`` table, then ``overrides`` (not None).

        Raises :class:`~cellbench.daq.steps.EngineConfigError` listing every problem: the
        table's with the station file's lines, the overrides' by name.
        """
        from cellbench.daq.steps import EngineConfigError

        raw = station.raw.get("engine")
        checker = Checker(str(station.path or "station"), station.text or "")
        check_engine_table(checker, raw, ("engine",))
        given = {k: v for k, v in overrides.items() if v is not None}
        for key, value in given.items():
            if key not in cls.names():
                raise TypeError(f"unknown engine option {key!r}; known: {', '.join(cls.names())}")
            problem = value_problem(key, value)
            if problem:
                checker.problems.append(Problem("engine options", 0, key, problem))
        if checker.problems:
            raise EngineConfigError(str(TomlFileError(checker.sorted_problems())))
        table = dict(raw) if isinstance(raw, Mapping) else {}
        return cls(**{**table, **given})


def value_problem(key: str, value: Any) -> str | None:
    """Why ``value`` cannot be the engine option ``key`` (a known name), or None."""
    if key in _WHOLE:
        least = _WHOLE[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            return f"must be a whole number >= {least}, got {value!r}"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number of seconds, got {value!r}"
    if not math.isfinite(value) or value <= 0:
        return f"must be a positive number of seconds, got {value!r}"
    return None


def check_engine_table(checker: Checker, data: Any, path: KeyPath) -> None:
    """Check a station's ``[engine]`` table (None: absent) into ``checker``."""
    if data is None:
        return
    if not isinstance(data, Mapping):
        checker.error(path, "must be a table [engine] (the engine's tuning)")
        return
    checker.unknown_keys(data, path, EngineOptions.names())
    for key, value in data.items():
        if key in EngineOptions.names():
            problem = value_problem(key, value)
            if problem:
                checker.error((*path, key), problem)
