"""Runs outlive the window: start a run as its own headless logger, find the runs of a folder,
follow and control one; Qt-free.

A run started from the GUI is a ``cellbench run PROTOCOL --station S --out DIR --name NAME
--plain --log ...`` process in its own session (``start_new_session``): no signal meant for the
window — Ctrl-C in its terminal, SIGHUP at logout, SIGTERM, kill -9 — reaches it, and its output
goes to ``logger.log`` in the run folder (the GUI picks the run's name, so it knows the folder
before the logger has made it). The window then follows the folder like any other run
(:class:`~cellbench.gui.poller.AttachFeed`, read-only) and controls it over the logger's control
channel (:class:`~cellbench.gui.run_control.RunControl`) — the same for a run started from a
terminal. Closing or killing the window leaves the logger alone.

:func:`find_runs` lists the runs of a folder that are going (a logger holds the writer lock) or
were left ``running`` by a logger that died (offered *resume* / *close*, which
:func:`resume_run` and :func:`close_run` do by starting ``cellbench resume`` the same way).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellbench.core.errors import CellbenchError
from cellbench.daq.control import ControlError
from cellbench.daq.engine import new_run_id
from cellbench.daq.live import LiveMessage
from cellbench.daq.run_reader import load_meta, writer_active
from cellbench.gui.poller import AttachFeed
from cellbench.gui.run_control import RunControl

log = logging.getLogger(__name__)

LOG_NAME = "logger.log"  # as cellbench run --log names it in the run folder
FINAL = ("completed", "stopped", "aborted", "interrupted")


class LaunchError(CellbenchError):
    """A logger could not be started (names the command and the reason)."""


def cellbench_command() -> list[str]:
    """How to run the ``cellbench`` command with this interpreter."""
    return [sys.executable, "-m", "cellbench.cli"]


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen:
    """Start ``cellbench ARGS`` detached: own session and process group, no terminal, output
    appended to ``log_path`` (the logger moves it into the run folder itself)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log_path, "ab") as out:
            return subprocess.Popen(
                [*cellbench_command(), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # setsid: not in the window's session or process group
                close_fds=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
    except OSError as exc:
        raise LaunchError(f"cannot start cellbench {' '.join(args[:1])}: {exc}") from None


def spawn_run(
    protocol: Path | str,
    station: Path | str,
    out_dir: Path | str,
    *,
    name: str | None = None,
    cell: dict[str, Any] | None = None,
    time_scale: float | None = None,
    extra_args: list[str] | None = None,
) -> tuple[subprocess.Popen, Path, Path]:
    """Start ``cellbench run`` detached; (process, run folder it will write, its log file).

    ``cell``: this run's cell details (``--cell KEY=VALUE``); ``name``: the run folder's name
    (default: a new run id from the protocol's file name)."""
    out = Path(out_dir).absolute()
    name = name or new_run_id(Path(protocol).stem)
    run_path = out / name
    if run_path.exists():
        raise LaunchError(f"{run_path}: a run folder of that name already exists")
    log_path = out / f".{name}.log"
    args = ["run", str(Path(protocol).absolute()), "--station", str(Path(station).absolute())]
    args += ["--out", str(out), "--name", name, "--plain", "--log", str(log_path)]
    for key, value in (cell or {}).items():
        text = f"{value:g}" if isinstance(value, float) else str(value)
        args += ["--cell", f"{key}={text}"]
    if time_scale:
        args += ["--time-scale", f"{time_scale:g}"]
    args += list(extra_args or [])
    return _spawn(args, log_path), run_path, log_path


def resume_run(run_path: Path | str) -> subprocess.Popen:
    """Continue a run whose logger died: ``cellbench resume RUN`` detached (logging into the
    run's logger.log)."""
    path = Path(run_path).absolute()
    log_path = path / LOG_NAME
    return _spawn(["resume", str(path), "--plain", "--log", str(log_path)], log_path)


def close_run(run_path: Path | str, timeout_s: float = 60.0) -> str:
    """Close a run whose logger died as ``interrupted`` (``cellbench resume RUN --close``);
    returns what it printed. Raises :class:`LaunchError` with its message if it failed."""
    path = Path(run_path).absolute()
    done = subprocess.run(
        [*cellbench_command(), "resume", str(path), "--close"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise LaunchError((done.stderr or done.stdout).strip() or f"exit {done.returncode}")
    return done.stdout.strip()


# ---------------------------------------------------------------------------- finding runs


@dataclass(frozen=True)
class FoundRun:
    """A run folder that is going (``live``) or was left running by a logger that died."""

    path: Path
    run_id: str
    start_time: str
    protocol: str
    live: bool  # a process holds the writer lock

    @property
    def crashed(self) -> bool:
        return not self.live


def find_runs(out_dir: Path | str) -> list[FoundRun]:
    """Runs directly under ``out_dir`` whose run.json says ``running``, newest first: those a
    logger writes (attach) and those whose logger died (resume or close). Unreadable folders
    are skipped."""
    root = Path(out_dir)
    found = []
    try:
        children = list(root.iterdir())
    except OSError:
        return []
    for child in children:
        if not (child / "run.json").is_file():
            continue
        try:
            meta = load_meta(child)
        except CellbenchError:
            continue
        if meta.status != "running":
            continue
        protocol = (meta.protocol or {}).get("name", "") if isinstance(meta.protocol, dict) else ""
        found.append(
            FoundRun(child, meta.run_id, meta.start_time, str(protocol), writer_active(child))
        )
    found.sort(key=lambda r: (r.start_time, r.path.name), reverse=True)
    return found


# ------------------------------------------------------------------------- one run, followed


class LoggerRun:
    """The window's handle on one run a logger process writes: its data (an AttachFeed, once
    the folder exists), its control channel, and — when started here — the process.

    ``status``: ``starting`` (started here, no run folder yet), ``running``, a final status
    (``completed``/``stopped``/``aborted``/``interrupted``), ``crashed`` (run.json says running
    but no process writes it) or ``failed`` (the logger exited before its run began; ``error``
    holds the end of its log).
    """

    def __init__(
        self,
        run_path: Path,
        *,
        process: subprocess.Popen | None = None,
        log_path: Path | None = None,
        interval_s: float = 1.0,
    ):
        self.run_path = Path(run_path)
        self.process = process
        self.log_path = log_path
        self.interval_s = float(interval_s)
        self.feed: AttachFeed | None = None
        self.control = RunControl(self.run_path)
        self.error: str | None = None
        self._stop_reason: str | None = None
        self._failed = False
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------------- making one

    @classmethod
    def start(
        cls,
        protocol: Path | str,
        station: Path | str,
        out_dir: Path | str,
        *,
        interval_s: float = 1.0,
        **spawn: Any,
    ) -> LoggerRun:
        """Start ``cellbench run`` detached (see :func:`spawn_run`) and follow it."""
        process, run_path, log_path = spawn_run(protocol, station, out_dir, **spawn)
        run = cls(run_path, process=process, log_path=log_path, interval_s=interval_s)
        run.control.start()
        run.update()
        return run

    @classmethod
    def attach(cls, run_path: Path | str, *, interval_s: float = 1.0) -> LoggerRun:
        """Follow a run folder another process writes (or wrote). Raises if it is not a run."""
        path = Path(run_path)
        if not (path / "run.json").is_file():
            raise CellbenchError(f"{path}: not a cellbench run folder (no run.json)")
        run = cls(path, interval_s=interval_s)
        run.feed = AttachFeed(path, interval_s=interval_s)
        run.feed.start()
        run.control.start()
        return run

    # ---------------------------------------------------------------------------- state

    @property
    def started_here(self) -> bool:
        return self.process is not None

    @property
    def status(self) -> str:
        if self._failed:
            return "failed"
        if self.feed is None:
            return "starting"
        poller = self.feed.poller
        disk = poller.status  # "" until the first poll
        if not disk:
            return "starting"
        if disk == "running" and not poller.writer_alive and not self.control.listening:
            return "crashed" if self._logger_gone() else "running"
        return disk

    def _logger_gone(self) -> bool:
        if self.process is not None:
            return self.process.poll() is not None
        return True

    @property
    def state(self) -> str:
        """``status``, refined by the logger: ``pausing``, ``paused``, ``stopping`` ..."""
        status = self.status
        if status == "running" and self.control.state:
            return self.control.state
        return status

    @property
    def uncontrollable(self) -> bool:
        """A logger writes the run (writer lock held for a while) but its control channel does
        not answer (another user or machine, an older cellbench); :attr:`control` ``.error``
        says why."""
        poller = self.feed.poller if self.feed is not None else None
        return bool(
            poller is not None
            and poller.writer_alive
            and self.status == "running"
            and not self.control.listening
            and self.control.error
            and self.control.polls >= 3  # not just the moment between run.json and the channel
        )

    @property
    def finished(self) -> bool:
        return self.status in (*FINAL, "failed", "crashed")

    @property
    def stop_requested(self) -> bool:
        return self._stop_reason is not None or self.control.state in ("stopping", "aborting")

    def step_left(self, channel: str) -> float | None:
        """Seconds left in ``channel``'s step (from the logger; None if unknown)."""
        value = self.control.channel(channel).get("step_remaining_second")
        return None if value is None else float(value)

    def update(self) -> None:
        """Called on the GUI's timer: once the folder exists, follow it; notice a logger that
        ended before its run began."""
        if self.feed is None and (self.run_path / "run.json").is_file():
            try:
                self.feed = AttachFeed(self.run_path, interval_s=self.interval_s)
            except CellbenchError as exc:  # run.json being written: next tick
                log.debug("not yet: %s", exc)
            else:
                self.feed.start()
        ended = self.process is not None and self.process.poll() is not None  # (reaps it)
        if self.feed is None and ended:
            self._failed = True
            self.error = self.log_tail() or f"the logger exited with code {self.process.returncode}"

    def log_tail(self, lines: int = 12) -> str:
        """The end of the logger's output (its errors when it could not start)."""
        for path in (self.run_path / LOG_NAME, self.log_path):
            if path is not None and path.is_file():
                try:
                    text = path.read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                return "\n".join(text.strip().splitlines()[-lines:])
        return ""

    def drain(self, limit: int = 10_000) -> list[LiveMessage]:
        return self.feed.drain(limit) if self.feed is not None else []

    # ------------------------------------------------------------------------- commands

    def request_stop(self, reason: str = "stopped from the GUI") -> None:
        """Clean stop over the control channel (a logger started here that has not opened
        its channel yet gets SIGTERM: the same clean stop). Raises ControlError if neither
        works."""
        self._stop_reason = reason
        try:
            self.control.stop(reason)
        except ControlError:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                return
            self._stop_reason = None
            raise

    def request_pause(self) -> list[str]:
        return list(self.control.pause().get("channels") or [])

    def request_continue(self) -> list[str]:
        return list(self.control.resume().get("channels") or [])

    def detach(self) -> None:
        """Stop following (the logger and its run go on untouched)."""
        if self._closed:
            return
        self._closed = True
        self.control.close()
        if self.feed is not None:
            self.feed.stop()
        if self.process is not None and self.process.poll() is not None:
            self.process.wait()  # reap an ended logger; a running one is left alone
