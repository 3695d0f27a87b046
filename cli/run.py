"""``cellbench run``, ``cellbench resume`` and ``cellbench demo``: the headless logger.

Exit codes (for scripts and systemd):

* 0 — the protocol completed; or the run was stopped by SIGTERM (``systemctl stop`` is a normal
  way to end a run, so systemd's ``Restart=on-failure`` does not restart it);
* 1 — the run was aborted (safety limit, instrument lost, interlock, error) or could not start
  (bad protocol or station: every problem is printed with file and line, no instrument touched);
* 130 — the run was stopped by Ctrl-C (SIGINT);
* 75 (``EX_TEMPFAIL``) — an instrument could not be reached when the run (or a resume) started:
  nothing was sourced; worth retrying (systemd's ``Restart=on-failure`` does, while
  ``RestartPreventExitStatus=1`` keeps an aborted run from restarting);
* 2 — bad command-line usage.

Stopping: the first SIGINT/SIGTERM stops cleanly (every channel ends at its next sample with its
output off; status ``stopped``). Outputs are forced off after ``stop_grace_s`` (10 s) whatever
happens. SIGHUP is ignored: a terminal that closes does not end a run.

Control: while the run goes on, the logger serves its control channel
(:mod:`cellbench.daq.control`): ``cellbench runs stop|pause|continue|status RUN`` from any
terminal of the same user, and the GUI's buttons. A stop over the channel exits 0.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from pathlib import Path
from typing import Any

from cellbench.core.errors import CellbenchError

#: Exit code when an instrument cannot be reached at start (sysexits.h EX_TEMPFAIL).
EXIT_UNREACHABLE = 75

#: ``cellbench demo`` runs about 3.5 simulated days in well under a minute.
DEMO_TIME_SCALE = 20_000.0


def _duration(text: str) -> float:
    from cellbench.core.units import UnitError, parse_duration

    try:
        return parse_duration(text)
    except UnitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _add_display_args(
    p: argparse.ArgumentParser, *, time_scale_default: str = "the station's"
) -> None:
    p.add_argument(
        "--plain",
        action="store_true",
        help=(
            "plain log lines instead of the live table (for services and journald; the default "
            "when the output is not a terminal)"
        ),
    )
    p.add_argument(
        "--log-every",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="with --plain: one status line per channel every SECONDS of wall time (default 10)",
    )
    p.add_argument(
        "--time-scale",
        type=_positive_float,
        metavar="X",
        help=(
            "simulated stations only: simulated seconds per wall second "
            f"(default: {time_scale_default})"
        ),
    )
    p.add_argument(
        "--log",
        type=Path,
        metavar="FILE",
        help=(
            "append all output (progress, errors) to FILE instead of the terminal; once the run "
            "folder exists FILE moves into it as logger.log (how the GUI starts detached loggers)"
        ),
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a protocol on a station (headless logger)",
        description=(
            "Run PROTOCOL on the instruments of STATION and record a new run folder under --out. "
            "The protocol and station are checked together first; nothing touches an instrument "
            "until every problem is fixed. Exit 0: completed (or stopped by SIGTERM); "
            "1: aborted or failed to start; 75: an instrument could not be reached at start; "
            "130: stopped by Ctrl-C."
        ),
    )
    p.add_argument("protocol", type=Path, metavar="PROTOCOL", help="protocol TOML file")
    p.add_argument("--station", "-s", type=Path, required=True, help="station TOML file")
    p.add_argument("--out", "-o", type=Path, default=Path("runs"), help="runs folder (./runs)")
    p.add_argument("--name", help="run folder name (default: <UTC time>-<protocol>-<id>)")
    p.add_argument(
        "--cell",
        action="append",
        metavar="KEY=VALUE",
        help=(
            "this run's cell on top of the station's [cell] (repeat): name, chemistry, notes, "
            "area_cm2, thickness_cm, active_mass_g, nominal_capacity_ah, and the build record "
            "as build.KEY (build.batch, build.relative_density, build.stack_pressure_megapascal, "
            "...; see docs/conductivity-and-replicates.md); kept in run.json"
        ),
    )
    p.add_argument(
        "--continue",
        dest="continue_",
        action="store_true",
        help=(
            "with --name: if that run folder exists, resume it when its process died, or exit "
            "(0 if it completed or was stopped, 1 if it was aborted or closed as interrupted) — "
            "for services that restart"
        ),
    )
    p.add_argument(
        "--max-iterations",
        type=_positive_int,
        metavar="N",
        help="cap every loop at N iterations (a quick trial of a long protocol)",
    )
    p.add_argument(
        "--sample-interval",
        type=_duration,
        metavar="DURATION",
        help='override the protocol\'s sample interval, e.g. "10 s"',
    )
    p.add_argument(
        "--repeatable",
        action="store_true",
        help=(
            "simulated stations only: simulated time waits for every sample, so the data depend "
            "only on the protocol and the station's seed, not on the machine's load (as in "
            "cellbench demo); not with a simulated EmStat"
        ),
    )
    _add_display_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "resume",
        help="continue (or close) a run whose process died",
        description=(
            "Repair RUN (a run folder left 'running' by a crash, kill -9 or "
            "power cut; every acknowledged sample is kept) and continue it: each channel restarts "
            "at the beginning of the rest/OCV/CC/CV/CC-CV/temperature/EIS step it was in, or at "
            "the next loop iteration after a pulse/GITT/CCD sequence. With --close the run is "
            "only repaired and closed as 'interrupted'. Exit codes as for 'run'."
        ),
    )
    p.add_argument("run", type=Path, metavar="RUN", help="run folder")
    p.add_argument(
        "--close", action="store_true", help="do not continue: close the run as interrupted"
    )
    _add_display_args(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser(
        "demo",
        help="a short solid-state cell test on simulated instruments, with its summary",
        description=(
            "Run the example protocol demo.toml on the simulated demo station at accelerated time: "
            "EIS at three temperatures, then 20 cycles with EIS every 5: about 3.5 simulated days "
            f"in under a minute at the default time scale of {DEMO_TIME_SCALE:g}. The simulated "
            "data depend only on the protocol and the station's seed: every demo records the same "
            "samples and spectra, whatever the time scale or the machine's load. "
            "Prints where the run and its summary (per-cycle table, EIS fits) are, and what to "
            "try next."
        ),
    )
    p.add_argument("--out", "-o", type=Path, default=Path("runs"), help="runs folder (./runs)")
    _add_display_args(p, time_scale_default=f"{DEMO_TIME_SCALE:g}")
    p.set_defaults(func=cmd_demo)


# --------------------------------------------------------------------------------- running


class _Signals:
    """SIGINT/SIGTERM → a clean stop; remembers which arrived (exit code). SIGHUP (the
    terminal or the desktop session went away) is ignored: the run goes on."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.received: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        if hasattr(signal, "SIGHUP"):
            self._old[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = name
        self.engine.request_stop(f"{name} received")

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def exit_code(status: str, signal_name: str | None) -> int:
    if status == "completed":
        return 0
    if status == "stopped":
        return 130 if signal_name == "SIGINT" else 0
    return 1


def drive(
    session: Any, *, plain: bool, log_every: float, log: Path | None = None
) -> tuple[str, int]:
    """Start the session's engine, serve its control channel and show progress until it ends;
    (status, exit code). ``log``: the file output goes to, moved into the run folder once the
    run has started."""
    from cellbench.cli.display import LiveDisplay, PlainDisplay
    from cellbench.daq.control import serve
    from cellbench.daq.link import InstrumentLost
    from cellbench.drivers.errors import InstrumentConnectionError, InstrumentTimeout

    engine = session.engine
    try:
        with _Signals(engine) as signals:
            try:
                engine.start()
            except (InstrumentConnectionError, InstrumentTimeout, InstrumentLost) as exc:
                # Temporary by nature (an instrument still booting after a power cut): a
                # service manager may try again, unlike after an abort.
                print(f"cellbench: error: could not start: {exc}", file=sys.stderr, flush=True)
                return "unreachable", EXIT_UNREACHABLE
            if log is not None and engine.run_path is not None:
                _move_log(log, engine.run_path)
            control = serve(engine, engine.run_path)
            if control is not None:
                print(f"control channel: {control.path}", flush=True)
            if engine.run_path is not None:  # station [sync]: upload in a process of its own
                from cellbench.daq.sync_config import start_for_run

                if (uploader := start_for_run(engine.run_path)) is not None:
                    print(f"sync: uploading to the lab catalog (pid {uploader.pid})", flush=True)
            use_plain = plain or not sys.stdout.isatty()
            display = PlainDisplay(engine, every_s=log_every) if use_plain else LiveDisplay(engine)
            end_shown = False
            display.start()
            try:
                status = "running"
                while status == "running":
                    status = engine.wait(timeout=0.25)
                    display.update()
            finally:
                display.stop()
                end_shown = display.end_shown
                if control is not None:
                    control.close()
    finally:
        session.close()
    if not end_shown:  # the display printed the run's end event ("run at …: run completed")
        print(f"run {status}", flush=True)
    return status, exit_code(status, signals.received)


#: Name of the logger's output file inside a run folder (``cellbench run --log``).
LOG_NAME = "logger.log"


def _redirect_output(log: Path | None) -> None:
    """Send stdout and stderr (this process's and its children's) to ``log``, appended."""
    if log is None:
        return
    import os

    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise CellbenchError(f"{log}: cannot open the log file: {exc.strerror}") from None
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _move_log(log: Path, run_path: Path) -> None:
    """Move the log file into the run folder (the open descriptor follows it)."""
    import os

    target = run_path / LOG_NAME
    if log.resolve() == target.resolve():
        return
    try:
        os.replace(log, target)
    except OSError as exc:  # another file system: the log stays where it is
        print(f"log stays at {log}: cannot move it into {run_path}: {exc}", flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from cellbench.cli.run_cell import parse_cell_options, with_cell
    from cellbench.daq.session import SessionOptions, build, prepare

    _redirect_output(args.log)
    if args.continue_:
        if not args.name:
            raise CellbenchError("--continue needs --name (the run folder to continue)")
        existing = args.out / args.name
        if (existing / "run.json").is_file():
            return _continue(existing, args)

    setup = SessionOptions(
        time_scale=args.time_scale,
        repeatable=args.repeatable,
        run_dir_name=args.name,
        engine={
            "max_loop_iterations": args.max_iterations,
            "sample_interval_s": args.sample_interval,
        },
    )
    cell = parse_cell_options(args.cell)
    if cell:
        session = build(*with_cell(args.protocol, args.station, cell), args.out, setup)
    else:
        session = prepare(args.protocol, args.station, args.out, setup)
    _, code = drive(session, plain=args.plain, log_every=args.log_every, log=args.log)
    return code


def _continue(run_path: Path, args: argparse.Namespace) -> int:
    from cellbench.daq.resume import RESUMABLE_STATUSES, prepare_resume
    from cellbench.daq.run_reader import load_meta

    status = load_meta(run_path).status
    if status not in RESUMABLE_STATUSES:
        print(f"run already {status}: {run_path}")
        return exit_code(status, "SIGTERM")
    print(f"resuming {status} run", flush=True)  # the display prints the run folder next
    session = prepare_resume(run_path, time_scale=args.time_scale)
    _, code = drive(session, plain=args.plain, log_every=args.log_every, log=args.log)
    return code


def cmd_resume(args: argparse.Namespace) -> int:
    from cellbench.daq.resume import close_interrupted, prepare_resume

    _redirect_output(args.log)
    if args.close:
        close_interrupted(args.run)
        print(f"run closed as interrupted: {args.run}")
        return 0
    session = prepare_resume(args.run, time_scale=args.time_scale)
    _, code = drive(session, plain=args.plain, log_every=args.log_every, log=args.log)
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    from cellbench.daq.session import SessionOptions, prepare
    from cellbench.fixtures import protocol_path, station_path

    _redirect_output(args.log)
    session = prepare(
        protocol_path("demo"),
        station_path("demo_station"),
        args.out,
        # repeatable: simulated time waits for the engine, so the seed fixes every number
        SessionOptions(time_scale=args.time_scale or DEMO_TIME_SCALE, repeatable=True),
    )
    status, code = drive(session, plain=args.plain, log_every=args.log_every, log=args.log)
    run_path = session.engine.run_path
    if run_path is not None and status == "completed":
        from cellbench.cli.demo_summary import next_steps, summarise

        for line in summarise(run_path) + next_steps(run_path):
            print(line)
    return code
