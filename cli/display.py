"""What ``cellbench run`` shows while it runs: a live terminal table, or plain log lines.

Both read the engine's channel states (plain attributes) and take events from the live bus; the
engine never waits for them.
"""

from __future__ import annotations

import math
import queue
import sys
import time
from typing import Any, TextIO

from cellbench.daq.engine import Engine
from cellbench.daq.live import LiveMessage

# Events worth a line of their own; step changes are visible in the table / the periodic line.
NOTABLE = ("alarm", "fault", "gap", "reconnect", "note", "run_end", "status")


def fmt_duration(seconds: float | None) -> str:
    """``1d02:03:04`` / ``02:03:04``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = max(0.0, seconds)
    days, rest = divmod(round(seconds), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{days}d" if days else "") + f"{h:02d}:{m:02d}:{s:02d}"


def _num(x: float, fmt: str) -> str:
    return "-" if x is None or not math.isfinite(x) else format(x, fmt)


class _Events:
    """Collects notable events from the bus (thread-safe queue)."""

    def __init__(self, engine: Engine):
        self.queue: queue.Queue[LiveMessage] = queue.Queue(maxsize=10_000)
        self.sub = engine.subscribe(self.queue)

    def drain(self) -> list[dict]:
        out = []
        while True:
            try:
                msg = self.queue.get_nowait()
            except queue.Empty:
                return out
            if msg.kind == "event" and msg.event.get("kind") in NOTABLE:
                out.append(msg.event)


def event_line(event: dict) -> str:
    t = event.get("test_time_second")
    ch = event.get("channel") or "run"
    sev = event.get("severity", "info").upper()
    return f"[{fmt_duration(t)}] {ch} {sev} {event.get('kind')}: {event.get('message')}"


class PlainDisplay:
    """One line per channel every ``every_s`` wall seconds, plus notable events as they come."""

    def __init__(self, engine: Engine, *, every_s: float = 10.0, stream: TextIO | None = None):
        self.engine = engine
        self.every_s = every_s
        self.stream = stream or sys.stdout
        self.events = _Events(engine)
        self._last = -math.inf

    def start(self) -> None:
        print(f"run folder: {self.engine.run_path}", file=self.stream, flush=True)

    def update(self, *, force: bool = False) -> None:
        for ev in self.events.drain():
            print(event_line(ev), file=self.stream, flush=True)
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        for st in self.engine.states.values():
            current_ma = st.current_ampere * 1e3 if math.isfinite(st.current_ampere) else math.nan
            print(
                f"[{fmt_duration(st.test_time_second)}] {st.channel} step {st.step_index} "
                f"{st.step_kind} cycle {st.cycle_count} V={_num(st.voltage_volt, '.4f')} "
                f"I={_num(current_ma, '.4g')}mA "
                f"T={_num(st.temperature_celsius, '.1f')}C "
                f"step_left={fmt_duration(st.step_remaining_second)}",
                file=self.stream,
                flush=True,
            )

    def stop(self) -> None:
        self.update(force=True)
        self.events.sub.close()


class LiveDisplay:
    """A rich table refreshed a few times a second; events scroll above it."""

    def __init__(self, engine: Engine, *, console: Any = None):
        from rich.console import Console
        from rich.live import Live

        self.engine = engine
        self.console = console or Console()
        self.events = _Events(engine)
        self.live = Live(self._table(), console=self.console, refresh_per_second=4, transient=False)

    def _table(self):
        from rich.table import Table

        eng = self.engine
        title = f"{eng.protocol.name} — {eng.run_path}" if eng.run_path else eng.protocol.name
        table = Table(title=title, expand=False)
        for col in ("channel", "step", "cycle", "V", "I / mA", "T / °C", "elapsed", "step left"):
            table.add_column(col, justify="right" if col not in ("channel", "step") else "left")
        for st in eng.states.values():
            current_ma = st.current_ampere * 1e3 if math.isfinite(st.current_ampere) else math.nan
            table.add_row(
                st.channel,
                f"{st.step_index} {st.step_label}"[:48],
                str(st.cycle_count),
                _num(st.voltage_volt, ".4f"),
                _num(current_ma, ".4g"),
                _num(st.temperature_celsius, ".1f"),
                fmt_duration(st.test_time_second),
                fmt_duration(st.step_remaining_second),
            )
        return table

    def start(self) -> None:
        self.live.start()

    def update(self, *, force: bool = False) -> None:
        for ev in self.events.drain():
            style = {"ALARM": "bold red", "ERROR": "bold red", "WARNING": "yellow"}.get(
                ev.get("severity", "info").upper(), ""
            )
            self.live.console.print(event_line(ev), style=style, markup=False, highlight=False)
        self.live.update(self._table())

    def stop(self) -> None:
        self.update(force=True)
        self.live.stop()
        self.events.sub.close()
