"""``cellbench sim``: run a station's simulated instruments for other programs to connect to.

``cellbench sim serve STATION.toml`` starts a simulator for every ``address = "sim"`` instrument
(all on one simulated cell, at the station's time scale), prints one line per instrument —
name, driver, address to open — and serves until Ctrl-C or SIGTERM. Any VISA or serial client
(cellbench, PyMeasure, a vendor tool through pyvisa) can then open those addresses.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

CONSOLE_HELP = """fault NAME KIND [count=N | forever] [delay=S] [on=TEXT] [code=N] [message=TEXT]
clear [NAME]
pressure MPA
chamber CELSIUS
truth
quit"""


def console_command(bench: Any, line: str) -> str:
    """Run one console command on a running SimBench; the text to print. Raises ValueError."""
    words = shlex.split(line)
    if not words:
        return ""
    verb, rest = words[0].lower(), words[1:]
    if verb == "help":
        return CONSOLE_HELP
    if verb == "truth":
        return json.dumps(bench.cell.ground_truth(), sort_keys=True)
    if verb == "pressure" and len(rest) == 1:
        bench.cell.pressure_megapascal = float(rest[0])
        return f"stack pressure {float(rest[0]):g} MPa"
    if verb == "chamber" and len(rest) == 1:
        bench.cell.set_chamber_setpoint(float(rest[0]))
        return f"chamber set point {float(rest[0]):g} degC"
    if verb == "clear":
        names = rest or list(bench.simulators)
        for name in names:
            _simulator(bench, name).faults.clear()
        return f"faults cleared on {', '.join(names)}"
    if verb == "fault" and len(rest) >= 2:
        name, kind, options = rest[0], rest[1], dict(_option(word) for word in rest[2:])
        count = options.pop("count", "1")
        kwargs: dict[str, Any] = {
            "count": None if count == "forever" else int(count),
            "delay_s": float(options.pop("delay", 0.0)),
        }
        for key, cast in (("on", str), ("code", int), ("message", str)):
            if key in options:
                kwargs[key] = cast(options.pop(key))
        if options:
            raise ValueError(f"unknown fault option(s) {sorted(options)}")
        fault = _simulator(bench, name).faults.inject(kind, **kwargs)
        times = "until cleared" if fault.remaining is None else f"{fault.remaining} command(s)"
        return f"armed {fault.kind} on {name} ({times})"
    raise ValueError(f"unknown command {line.strip()!r}; commands:\n{CONSOLE_HELP}")


def _option(word: str) -> tuple[str, str]:
    if word.lower() == "forever":
        return "count", "forever"
    key, sep, value = word.partition("=")
    if not sep:
        raise ValueError(f"expected key=value, got {word!r}")
    return key.lower(), value


def _simulator(bench: Any, name: str) -> Any:
    try:
        return bench.simulators[name]
    except KeyError:
        raise ValueError(
            f"no simulated instrument {name!r}; running: {', '.join(bench.simulators)}"
        ) from None


def _console(bench: Any, stop: threading.Event) -> None:
    """Serve console commands from stdin; ``quit`` stops the simulators, end of input does not."""
    for line in sys.stdin:
        if line.strip().lower() in ("quit", "exit"):
            stop.set()
            return
        try:
            reply = console_command(bench, line)
        except ValueError as exc:
            reply = f"error: {exc}"
        if reply:
            print(reply, flush=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    sim = subparsers.add_parser(
        "sim",
        help="simulated instruments",
        description="Simulated instruments that speak the real wire protocols.",
    )
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    serve = sim_sub.add_parser(
        "serve",
        help="start a station's simulated instruments and print their addresses",
        description=(
            'Start a simulator for every instrument whose address is "sim" in STATION.toml, '
            "all sharing one simulated cell, and print one line per instrument: name, driver, "
            "address. SCPI instruments listen on 127.0.0.1 (open as TCPIP::127.0.0.1::PORT::"
            "SOCKET); serial ones sit behind a pseudo-terminal (open the printed path). Runs "
            "until Ctrl-C or SIGTERM."
        ),
    )
    serve.add_argument("station", type=Path, metavar="STATION", help="station file (TOML)")
    serve.add_argument(
        "--time-scale",
        type=float,
        default=None,
        metavar="X",
        help="simulated seconds per wall second (default: the station's [simulation] time_scale)",
    )
    serve.add_argument("--seed", type=int, default=None, help="noise seed (default: station's)")
    serve.add_argument(
        "--json", action="store_true", help="print one JSON object per instrument instead"
    )
    serve.add_argument(
        "--console",
        action="store_true",
        help="read commands from stdin while serving: " + CONSOLE_HELP.replace("\n", "; "),
    )
    serve.set_defaults(func=serve_command)
    sim.set_defaults(func=lambda args: (sim.print_help(), 2)[1])


def serve_command(args: argparse.Namespace) -> int:
    from cellbench.core.clock import ScaledClock
    from cellbench.daq.station import load_station
    from cellbench.drivers.sim.bench import start_simulators

    station = load_station(args.station)
    if not station.simulated:
        print(f'{args.station}: no instrument has address "sim"', file=sys.stderr)
        return 1
    raw = dict(station.raw)
    simulation = dict(raw.get("simulation", {}) or {})
    if args.seed is not None:
        simulation["seed"] = args.seed
    raw["simulation"] = simulation
    scale = args.time_scale if args.time_scale is not None else simulation.get("time_scale", 1.0)
    if not float(scale) > 0:
        raise ValueError(f"--time-scale must be > 0, got {scale!r}")
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with start_simulators(raw, station.base_dir, clock=ScaledClock(float(scale))) as bench:
            for name, address in bench.addresses.items():
                driver = bench.drivers[name]
                if args.json:
                    print(json.dumps({"name": name, "driver": driver, "address": address}))
                else:
                    print(f"{name}\t{driver}\t{address}")
            print(
                f"# {len(bench.simulators)} simulated instrument(s) on cell "
                f"{bench.cell.params.name!r}, time scale {float(scale):g}; Ctrl-C to stop",
                file=sys.stderr,
            )
            sys.stdout.flush()
            if args.console:
                threading.Thread(
                    target=_console, args=(bench, stop), name="sim-console", daemon=True
                ).start()
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
