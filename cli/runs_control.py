"""``cellbench runs stop|pause|continue|status RUN``: control a running logger from a terminal.

They speak to the logger over its local control channel (:mod:`cellbench.daq.control`), which
only the same user on the same machine can open. When no logger answers, the error says why
(the run already ended; it crashed and wants ``cellbench resume``; it runs elsewhere).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from cellbench.core.errors import CellbenchError


def register_control(runs_sub: argparse._SubParsersAction) -> None:
    """Add the control subcommands to ``cellbench runs``."""
    p = runs_sub.add_parser(
        "stop",
        help="stop a running run cleanly (outputs off, status stopped)",
        description=(
            "Ask the logger of RUN to stop: every channel ends at its next sample with its output "
            "off and the run closes 'stopped'. Waits until it has closed (--no-wait: returns once "
            "the logger has taken the request)."
        ),
    )
    _run_arg(p)
    p.add_argument("--reason", help="why (recorded in the run's events)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the run to close")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="wait at most S s (60)")
    p.set_defaults(func=cmd_stop)

    p = runs_sub.add_parser(
        "pause",
        help="hold a run's channels at their next safe point (between steps, or in a rest)",
        description=(
            "Ask the logger of RUN to pause: each channel holds at its next safe point — at once "
            "in a rest (the rest's clock stops), else when the running step ends — with its "
            "output off, still sampled and checked against the safety limits. "
            "'cellbench runs continue' lets it go on."
        ),
    )
    _run_arg(p)
    _channel_args(p)
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait until every asked channel holds (a charge step may take hours to end)",
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="with --wait: at most S s (60)"
    )
    p.set_defaults(func=cmd_pause)

    p = runs_sub.add_parser(
        "continue",
        help="let a paused run go on",
        description="Ask the logger of RUN to let its paused (or pausing) channels go on.",
    )
    _run_arg(p)
    _channel_args(p)
    p.set_defaults(func=cmd_continue)

    p = runs_sub.add_parser(
        "status",
        help="what a running logger is doing now (state, step, cycle, V, I per channel)",
        description="Ask the logger of RUN for its state and every channel's step, cycle, V, I.",
    )
    _run_arg(p)
    p.set_defaults(func=cmd_status)


def _run_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, metavar="RUN", help="run folder")


def _channel_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--channel",
        action="append",
        metavar="NAME",
        help="only this channel (repeat for several; default: every channel)",
    )


def _request(run: Path, cmd: str, **params: Any) -> dict[str, Any]:
    from cellbench.daq.control import NotListening, diagnose, request

    if not (run / "run.json").is_file():
        raise CellbenchError(f"{run}: not a cellbench run folder (no run.json)")
    try:
        return request(run, cmd, client=f"cellbench runs {cmd}", **params)
    except NotListening:
        raise CellbenchError(diagnose(run)) from None


def cmd_stop(args: argparse.Namespace) -> int:
    from cellbench.daq.control import listening
    from cellbench.daq.run_reader import load_meta

    reply = _request(args.run, "stop", reason=args.reason)
    print(f"{args.run}: stop requested ({reply.get('state')})", flush=True)
    if args.no_wait:
        return 0
    deadline = time.monotonic() + args.timeout
    while listening(args.run):
        if time.monotonic() > deadline:
            raise CellbenchError(f"{args.run}: still stopping after {args.timeout:g} s")
        time.sleep(0.1)
    while (status := load_meta(args.run).status) == "running":  # the logger is closing it
        if time.monotonic() > deadline:
            raise CellbenchError(f"{args.run}: run.json still says running")
        time.sleep(0.1)
    print(f"{args.run}: {status}")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    reply = _request(args.run, "pause", channels=args.channel)
    asked = ", ".join(reply.get("channels") or []) or "no channel not already pausing"
    print(f"{args.run}: pause requested for {asked}; state {reply.get('state')}", flush=True)
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.timeout
    while (state := _request(args.run, "status")["state"]) != "paused":
        if state not in ("pausing", "running"):
            raise CellbenchError(f"{args.run}: the run is {state}")
        if time.monotonic() > deadline:
            raise CellbenchError(f"{args.run}: not paused after {args.timeout:g} s ({state})")
        time.sleep(0.1)
    print(f"{args.run}: paused")
    return 0


def cmd_continue(args: argparse.Namespace) -> int:
    reply = _request(args.run, "continue", channels=args.channel)
    released = ", ".join(reply.get("channels") or []) or "nothing (no channel was paused)"
    print(f"{args.run}: continue requested for {released}; state {reply.get('state')}")
    return 0


def _num(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return format(value, fmt)


def format_duration(seconds: float) -> str:
    """``[Nd ]H:MM:SS`` — days spelled out, so 100 days never wraps."""
    s = round(seconds)
    days, s = divmod(s, 86400)
    text = f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{days}d {text}" if days else text


def cmd_status(args: argparse.Namespace) -> int:
    from cellbench.cli.runs import print_table

    s = _request(args.run, "status")
    elapsed = s.get("test_time_second")
    print(
        f"run {s.get('run_id')}: {s.get('state')} (pid {s.get('pid')}, protocol "
        f"{s.get('protocol')!r}, test time {format_duration(elapsed) if elapsed else '-'})"
    )
    rows = []
    for name, ch in (s.get("channels") or {}).items():
        left = ch.get("step_remaining_second")
        current = ch.get("current_ampere")
        rows.append(
            (
                name,
                ch.get("state"),
                "" if ch.get("step_index", -1) < 0 else ch.get("step_index"),
                ch.get("step_label"),
                ch.get("cycle_count"),
                _num(ch.get("voltage_volt"), ".4f"),
                _num(None if current is None else current * 1e3, ".4g"),
                format_duration(left) if left is not None else "",
            )
        )
    headers = ("channel", "state", "step", "doing", "cycle", "V", "I (mA)", "step left")
    print_table(headers, rows)
    return 0
