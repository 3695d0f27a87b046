"""A run started from the GUI: check the files, then run the engine in-process on a worker thread.

Nothing here imports Qt. :func:`check_files` reads the protocol and the station with the real
loaders and returns every problem (``file:line: key: message``) before any simulator starts or
any port opens. :class:`EngineRun` prepares the session (starting simulators for ``address =
"sim"`` instruments), subscribes a queue to the engine's live bus *before* the engine starts (so
the first event and status reach the view), starts the engine and supervises it until the end —
all on one worker thread, so opening instruments never freezes the window.
"""

from __future__ import annotations

import logging
import queue
import tempfile
import threading
from pathlib import Path
from typing import Any

from cellbench.core.errors import CellbenchError
from cellbench.daq.engine import Engine, EngineOptions
from cellbench.daq.live import LiveMessage
from cellbench.daq.protocol import Problem, Protocol, ProtocolError, load_protocol
from cellbench.daq.session import Session, prepare
from cellbench.daq.station import Station, StationError, load_station, validate_run

log = logging.getLogger(__name__)


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


class EngineRun:
    """One run of ``protocol_path`` on ``station_path`` on a worker thread.

    ``queue`` receives the engine's live messages (bounded: a stalled view drops its oldest
    messages, never the engine's). ``status`` is ``starting``, then the engine's (``running``,
    then ``completed`` / ``stopped`` / ``aborted``), or ``failed`` with ``error`` set when the run
    could not start. ``session`` / ``engine`` are set once prepared.
    """

    def __init__(
        self,
        protocol_path: Path | str,
        station_path: Path | str,
        out_dir: Path | str,
        *,
        time_scale: float | None = None,
        options: dict[str, Any] | None = None,
        queue_size: int = 50_000,
    ):
        self.protocol_path = Path(protocol_path)
        self.station_path = Path(station_path)
        self.out_dir = Path(out_dir)
        self.time_scale = time_scale
        self.options = dict(options or {})
        self.queue: queue.Queue[LiveMessage] = queue.Queue(maxsize=queue_size)
        self.session: Session | None = None
        self.engine: Engine | None = None
        self.status = "starting"
        self.error: str | None = None
        self._stop_reason: str | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="cellbench-gui-run", daemon=True)

    @property
    def run_path(self) -> Path | None:
        return self.engine.run_path if self.engine is not None else None

    @property
    def stop_requested(self) -> bool:
        return self._stop_reason is not None

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "stopped", "aborted", "failed")

    def start(self) -> None:
        self._thread.start()

    def request_stop(self, reason: str = "stopped from the GUI") -> None:
        """Clean stop (every channel ends at its next sample, outputs off; status ``stopped``)."""
        with self._lock:
            self._stop_reason = reason
            engine = self.engine
        if engine is not None:
            engine.request_stop(reason)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker; True once it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def drain(self, limit: int = 10_000) -> list[LiveMessage]:
        out = []
        while len(out) < limit:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return out

    def _run(self) -> None:
        try:
            session = prepare(
                self.protocol_path,
                self.station_path,
                self.out_dir,
                time_scale=self.time_scale,
                options=self.options,
            )
        except Exception as exc:
            self._fail(exc)
            return
        try:
            engine = session.engine
            engine.subscribe(self.queue)
            with self._lock:
                self.session, self.engine = session, engine
                if self._stop_reason is not None:  # Stop pressed while preparing
                    engine.request_stop(self._stop_reason)
            try:
                engine.start()
            except Exception as exc:
                self._fail(exc)
                return
            self.status = "running"
            self.status = engine.wait()
        except Exception as exc:  # the engine closes the run itself; say why here
            self._fail(exc)
        finally:
            session.close()  # stops the simulators (instruments are already safe)

    def _fail(self, exc: BaseException) -> None:
        log.warning("run could not go on: %s", exc)
        plain = isinstance(exc, CellbenchError)  # user-fixable: its message says it all
        self.error = str(exc) if plain else f"{type(exc).__name__}: {exc}"
        self.status = "failed"
