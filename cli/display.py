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
    """``1d02:03:04`` / ``02:03:04``; ``-`` when unknown (the live table's columns)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = max(0.0, seconds)
    days, rest = divmod(round(seconds), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{days}d" if days else "") + f"{h:02d}:{m:02d}:{s:02d}"


def fmt_elapsed(seconds: float) -> str:
    """A span of time as a person says it: ``42 s``, ``12 min 05 s``, ``9 h 33 min``,
    ``2 d 9 h 33 min`` (rounded to the second, or to the minute from an hour on)."""
    seconds = max(0.0, float(seconds))
    if round(seconds) < 3600:
        m, s = divmod(round(seconds), 60)
        return f"{m} min {s:02d} s" if m else f"{s} s"
    days, rest = divmod(round(seconds / 60), 24 * 60)
    h, m = divmod(rest, 60)
    return (f"{days} d " if days else "") + f"{h} h {m:02d} min"


def _num(x: float, fmt: str) -> str:
    return "-" if x is None or not math.isfinite(x) else format(x, fmt)


#: SI prefixes for currents, largest first: (factor, unit).
_CURRENT_UNITS = ((1.0, "A"), (1e-3, "mA"), (1e-6, "µA"), (1e-9, "nA"), (1e-12, "pA"))


def fmt_current(ampere: float) -> str:
    """A current with 4 significant digits in the unit that keeps it between 1 and 1000
    (``-1.000 mA``, ``-632.6 pA`` for a source at rest); ``-`` when unknown."""
    if ampere is None or not math.isfinite(ampere):
        return "-"
    ampere = float(f"{ampere:.4g}")  # -0.99999 mA is -1.000 mA, not -1000 µA
    if ampere == 0:
        return "0 A"
    for factor, unit in _CURRENT_UNITS:
        if abs(ampere) >= factor:
            return f"{ampere / factor:#.4g} {unit}".replace(". ", " ")
    factor, unit = _CURRENT_UNITS[-1]
    return f"{ampere / factor:.2g} {unit}"


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
    """One line: where and when (test time), the severity unless it is routine, the message."""
    t = event.get("test_time_second")
    ch = event.get("channel") or "run"
    when = f" at {fmt_elapsed(t)}" if t is not None and math.isfinite(t) else ""
    sev = str(event.get("severity") or "info").lower()
    label = "" if sev == "info" else ("ALARM: " if sev == "alarm" else f"{sev}: ")
    return f"{ch}{when}: {label}{event.get('message')}"


def status_line(st: Any) -> str:
    """A channel's state in one line: where in the protocol, and V, I, T with their units."""
    parts = [f"{st.voltage_volt:.4f} V" if math.isfinite(st.voltage_volt) else "V -"]
    parts.append(fmt_current(st.current_ampere))
    stale = getattr(st, "stale_age_second", None)
    if stale is not None:  # the instrument is not answering: not a live reading
        parts[-1] += f" (STALE: read {stale:.0f} s ago)"
    if math.isfinite(st.temperature_celsius):
        parts.append(f"{st.temperature_celsius:.1f} °C")
    line = (
        f"{st.channel} at {fmt_elapsed(st.test_time_second)}: cycle {st.cycle_count}, "
        f"step {st.step_index} {st.step_label or st.step_kind}: {', '.join(parts)}"
    )
    left = st.step_remaining_second
    if left is not None and math.isfinite(left) and left >= 0.5:
        line += f"; at most {fmt_elapsed(left)} left in the step"
    return line


def _stale(st: Any) -> str:
    """`` (stale N s)`` when the channel's reading is stale (its instrument not answering)."""
    age = getattr(st, "stale_age_second", None)
    return "" if age is None else f" (stale {age:.0f} s)"


class PlainDisplay:
    """One line per channel every ``every_s`` wall seconds, plus notable events, in test-time
    order; the run folder is printed once, first."""

    def __init__(self, engine: Engine, *, every_s: float = 10.0, stream: TextIO | None = None):
        self.engine = engine
        self.every_s = every_s
        self.stream = stream or sys.stdout
        self.events = _Events(engine)
        self._last = -math.inf
        self._held: list[dict] = []  # events printed at the end (the run's end)
        self.end_shown = False  # the run's end was printed (the caller need not say it again)

    def start(self) -> None:
        print(f"run folder: {self.engine.run_path}", file=self.stream, flush=True)

    def update(self, *, force: bool = False) -> None:
        events = self._held + self.events.drain()
        # the run's end is the last line: held back until the final state lines are printed
        self._held = [] if force else [ev for ev in events if ev.get("kind") == "run_end"]
        lines = [(_event_time(ev), 1, event_line(ev)) for ev in events if ev not in self._held]
        now = time.monotonic()
        if force or now - self._last >= self.every_s:
            self._last = now
            for st in self.engine.states.values():
                if st.step_index >= 0:  # nothing to say before the first step
                    lines.append((st.test_time_second, 0, status_line(st)))
        # events of several channels and the status lines in the order they happened; at the
        # same instant the state first, then what happened (the run's end last); sorted is
        # stable, so events of the same instant keep the order they came in
        for _, _, line in sorted(lines, key=lambda tl: tl[:2]):
            print(line, file=self.stream, flush=True)
        self.end_shown = self.end_shown or any(
            ev.get("kind") == "run_end" for ev in events if ev not in self._held
        )

    def stop(self) -> None:
        self.update(force=True)
        self.events.sub.close()


def _event_time(event: dict) -> float:
    t = event.get("test_time_second")
    return float(t) if t is not None and math.isfinite(t) else math.inf


class LiveDisplay:
    """A rich table refreshed a few times a second; events scroll above it."""

    def __init__(self, engine: Engine, *, console: Any = None):
        from rich.console import Console
        from rich.live import Live

        self.engine = engine
        self.console = console or Console()
        self.events = _Events(engine)
        self.live = Live(self._table(), console=self.console, refresh_per_second=4, transient=False)
        self.end_shown = False  # the run's end was printed (the caller need not say it again)

    def _table(self):
        from rich.table import Table

        eng = self.engine
        title = eng.protocol.name  # the run folder is printed once, above the table
        table = Table(title=title, expand=False)
        for col in ("channel", "step", "cycle", "V", "I", "T / °C", "elapsed", "step left"):
            table.add_column(col, justify="right" if col not in ("channel", "step") else "left")
        for st in eng.states.values():
            table.add_row(
                st.channel,
                f"{st.step_index} {st.step_label}"[:48],
                str(st.cycle_count),
                _num(st.voltage_volt, ".4f") + _stale(st),
                fmt_current(st.current_ampere),  # -1.000 mA, -843.9 pA: never -8.4e-07 mA
                _num(st.temperature_celsius, ".1f"),
                fmt_duration(st.test_time_second),
                fmt_duration(st.step_remaining_second),
            )
        return table

    def start(self) -> None:
        self.console.print(f"run folder: {self.engine.run_path}", markup=False, highlight=False)
        self.live.start()

    def update(self, *, force: bool = False) -> None:
        for ev in self.events.drain():
            style = {"ALARM": "bold red", "ERROR": "bold red", "WARNING": "yellow"}.get(
                ev.get("severity", "info").upper(), ""
            )
            self.live.console.print(event_line(ev), style=style, markup=False, highlight=False)
            self.end_shown = self.end_shown or ev.get("kind") == "run_end"
        self.live.update(self._table())

    def stop(self) -> None:
        self.update(force=True)
        self.live.stop()
        self.events.sub.close()
