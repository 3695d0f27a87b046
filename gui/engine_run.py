"""What the engine will say about a run, asked before the window starts it; Qt-free.

:func:`check_files` reads the protocol and the station with the real loaders and returns every
problem (``file:line: key: message``) before any simulator starts or any port opens. The run
itself is not run here: the window starts it as its own ``cellbench run`` process
(:mod:`cellbench.gui.launcher`), which outlives the window.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from cellbench.core.errors import CellbenchError
from cellbench.daq.engine import Engine, EngineOptions
from cellbench.daq.protocol import Problem, Protocol, ProtocolError, load_protocol
from cellbench.daq.station import Station, StationError, load_station, validate_run


def check_files(protocol_path: Path | str, station_path: Path | str) -> list[str]:
    """Every problem of a protocol and station together, one line each; ``[]`` when they can run.

    Same checks as ``cellbench protocol check --station`` plus what the engine checks at start
    (``[engine]`` options, steps the station's channels cannot serve). Touches no instrument.
    """
    problems: list[Problem | str] = []
    station: Station | None = None
    try:
        station = load_station(station_path)
    except StationError as exc:
        problems.extend(exc.problems)
    except CellbenchError as exc:
        problems.append(str(exc))
    protocol: Protocol | None = None
    try:
        protocol = load_protocol(protocol_path, cell=station.cell if station else None)
    except ProtocolError as exc:
        problems.extend(exc.problems)
    except CellbenchError as exc:
        problems.append(str(exc))
    if protocol is not None and station is not None:
        try:
            protocol = validate_run(protocol, station)
            with tempfile.TemporaryDirectory() as nowhere:  # validate() creates nothing there
                options = EngineOptions.from_station(station)
                Engine(protocol, station, nowhere, options=options).validate()
        except ProtocolError as exc:
            problems.extend(exc.problems)
        except CellbenchError as exc:
            problems.extend(line for line in str(exc).splitlines() if line.strip())
    return [str(p) for p in problems]
