"""Calls to one instrument with bounded retries, reconnects, and a limit on how long it may be gone.

Every call the engine makes to a driver goes through :meth:`InstrumentLink.call`. A timeout, a
garbled reply or a lost connection is retried; after ``retries`` failed attempts in a row the
transport is reopened (the driver's ``reconnect()``, or its transport's) and the call tried
again, with a short back-off, until it succeeds or the instrument has been unreachable for
``fault_timeout_s`` — then :class:`InstrumentLost` is raised and the engine aborts the run safely.

The outage is measured in *wall* seconds: a transport comes back in real time whatever the
simulated clock does. The engine records the gap in the data timeline itself (test seconds).

Faults that a retry cannot cure are raised at once: an open interlock, a command the instrument
rejects, an argument out of range.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cellbench.core.errors import CellbenchError
from cellbench.drivers.errors import (
    InstrumentConnectionError,
    InstrumentError,
    InstrumentRangeError,
    InstrumentReplyError,
    InstrumentTimeout,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Faults worth retrying: the link, not the request, is at fault. OSError covers sockets and ttys
# that vanish under a driver that does not wrap them.
TRANSIENT: tuple[type[BaseException], ...] = (
    InstrumentTimeout,
    InstrumentReplyError,
    InstrumentConnectionError,
    InstrumentRangeError,
    OSError,
)


class InstrumentLost(CellbenchError):
    """An instrument stayed unreachable for longer than the configured fault timeout."""


class Cancelled(Exception):
    """The run is stopping; a call waiting for an instrument to come back gave up."""


@dataclass
class Outage:
    """One period during which an instrument did not answer (wall seconds, monotonic)."""

    instrument: str
    started_wall: float
    first_error: str
    attempts: int = 0
    reconnects: int = 0
    ended_wall: float | None = None

    @property
    def duration_wall_second(self) -> float:
        end = self.ended_wall if self.ended_wall is not None else time.monotonic()
        return end - self.started_wall


class InstrumentLink:
    """A driver plus its fault policy. Thread-safe: one call at a time per instrument."""

    def __init__(
        self,
        driver: Any,
        *,
        retries: int = 2,
        fault_timeout_s: float = 60.0,
        backoff_s: float = 0.1,
        max_backoff_s: float = 2.0,
        cancel: threading.Event | None = None,
        on_fault: Callable[[Outage, BaseException], None] | None = None,
        on_recover: Callable[[Outage], None] | None = None,
    ):
        self.driver = driver
        self.name = str(getattr(driver, "name", "") or type(driver).__name__)
        self.retries = max(0, int(retries))
        self.fault_timeout_s = float(fault_timeout_s)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.cancel = cancel or threading.Event()
        self.on_fault = on_fault
        self.on_recover = on_recover
        self.lock = threading.RLock()
        # Output gate: an abort sets ``blocked`` and then takes ``gate``, so no command that turns
        # an output on can slip in after the abort has put the instrument in its safe state.
        self.gate = threading.Lock()
        self.blocked = False
        self.safe_ok = False  # the last safe_state() succeeded and nothing was enabled since
        self._safe_error: str | None = None  # the last safe_state() error logged
        self.outages: list[Outage] = []
        self.calls = 0

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` under the retry/reconnect policy.

        Raises :class:`InstrumentLost` past the fault timeout, :class:`Cancelled` on stop.
        """
        outage: Outage | None = None
        failures = 0
        delay = self.backoff_s
        with self.lock:
            while True:
                self.calls += 1
                started = time.monotonic()
                try:
                    result = fn(*args, **kwargs)
                except TRANSIENT as exc:
                    failures += 1
                    if outage is None:  # the instrument has been silent since this call began
                        outage = Outage(self.name, started, _describe(exc))
                        self.outages.append(outage)
                        log.warning("%s: %s", self.name, outage.first_error)
                        if self.on_fault is not None:
                            self.on_fault(outage, exc)
                    outage.attempts += 1
                    if outage.duration_wall_second > self.fault_timeout_s:
                        raise InstrumentLost(
                            f"instrument {self.name} unreachable for "
                            f"{outage.duration_wall_second:.1f} s (fault timeout "
                            f"{self.fault_timeout_s:g} s); last error: {_describe(exc)}"
                        ) from exc
                    if failures > self.retries:
                        self._wait(delay)
                        delay = min(delay * 2, self.max_backoff_s)
                        if self._reconnect():
                            outage.reconnects += 1
                    continue
                if outage is not None:
                    outage.ended_wall = time.monotonic()
                    log.info("%s: back after %.2f s", self.name, outage.duration_wall_second)
                    if self.on_recover is not None:
                        self.on_recover(outage)
                return result

    def _wait(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise Cancelled(f"instrument {self.name}: run stopping while waiting for it")

    def _reconnect(self) -> bool:
        """Reopen the connection; False if it cannot (yet). Never raises transport faults."""
        target = self.driver if hasattr(self.driver, "reconnect") else None
        if target is None:
            target = getattr(self.driver, "transport", None)
        if target is None or not hasattr(target, "reconnect"):
            return False
        try:
            target.reconnect()
            return True
        except (InstrumentError, OSError) as exc:
            log.info("%s: reconnect failed: %s", self.name, exc)
            return False

    def enable(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A call that may turn the output on: refused (Cancelled) once the link is blocked."""
        with self.gate:
            if self.blocked:
                raise Cancelled(f"instrument {self.name}: output blocked, the run is ending")
            self.safe_ok = False
            return self.call(fn, *args, **kwargs)

    def block(self, wait_s: float = 0.5) -> None:
        """Refuse further :meth:`enable` calls; wait up to ``wait_s`` for one in flight."""
        self.blocked = True
        if self.gate.acquire(timeout=wait_s):
            self.gate.release()

    def safe_state(self) -> BaseException | None:
        """Best effort, bounded: the driver's safe_state(); returns the error instead of raising.

        Does not take the link's lock so that an abort is not held up by a call stuck in retries
        (the transport's own lock still keeps each command atomic).
        """
        try:
            self.driver.safe_state()
            self.safe_ok = True
            self._safe_error = None
            return None
        except Exception as exc:  # report, never mask the reason the run is stopping
            self.safe_ok = False
            if str(exc) != self._safe_error:  # one line per fault, not one per attempt
                log.error("%s: safe_state failed: %s", self.name, exc)
            self._safe_error = str(exc)
            return exc


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
