"""Shared plumbing of the line-based drivers (serial instruments that answer one line per query).

A :class:`LineDriver` owns one transport, validates arguments before anything reaches the wire
(:func:`check_range` — out of range is an error, never clipped), parses numbers with a typed error
that quotes the reply, and recovers from a lost connection: a command that hits
:class:`InstrumentConnectionError` reopens the port once (the transport backs off) and is sent
again.
Only idempotent commands (queries and settings) go through that retry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentConnectionError,
    InstrumentReplyError,
    InstrumentTimeout,
)
from cellbench.drivers.transport import Transport, open_transport

T = TypeVar("T")

try:  # pyserial's flush() calls tcdrain(), which raises termios.error (EIO) on an unplugged tty
    import termios

    _PORT_LOST: tuple[type[BaseException], ...] = (InstrumentConnectionError, termios.error)
except ImportError:  # Windows
    _PORT_LOST = (InstrumentConnectionError,)


class LineDriver:
    """Base of a driver that talks to one instrument over a line-oriented transport.

    Subclasses set ``read_termination``/``write_termination``/``baud_rate`` as their manual
    prescribes and call :meth:`_query`/:meth:`_write`.

    Args:
        address: serial device, ``ASRL<path>::INSTR`` or any address :func:`open_transport` takes.
        name: the instrument's name in the station (appears in every error).
        timeout_s: bound on each reply, s.
        transport: an already open transport to use instead of opening ``address`` (e.g. a
            :class:`~cellbench.drivers.transport.VisaTransport` for ``ASRL`` through pyvisa).
    """

    read_termination = "\r\n"
    write_termination = "\r\n"
    baud_rate = 9600
    model = "instrument"

    def __init__(
        self,
        address: str,
        *,
        name: str = "",
        timeout_s: float = 2.0,
        transport: Transport | None = None,
        baud_rate: int | None = None,
    ):
        self.name = name or self.model
        self.address = address
        self.timeout_s = float(timeout_s)
        self.transport = transport or open_transport(
            address,
            name=self.name,
            timeout_s=self.timeout_s,
            read_termination=self.read_termination,
            write_termination=self.write_termination,
            baud_rate=baud_rate or self.baud_rate,
        )

    # --- wire ------------------------------------------------------------------------------
    def _retrying(self, action: Callable[[], T]) -> T:
        """Run ``action``; after a lost connection reopen the port once and run it again."""
        try:
            return action()
        except _PORT_LOST:
            self.transport.reconnect()
            return action()

    def _query(self, command: str, *, timeout_s: float | None = None) -> str:
        def once() -> str:
            with self.transport.lock:
                if timeout_s is None:
                    return self.transport.query(command)
                saved = self.transport.timeout_s
                self.transport.timeout_s = max(saved, timeout_s)
                try:
                    return self.transport.query(command)
                finally:
                    self.transport.timeout_s = saved

        try:
            return self._retrying(once)
        except InstrumentReplyError:
            self.drain()  # line noise rarely comes alone: start the next command clean
            raise

    def drain(self, quiet_s: float = 0.05) -> int:
        """Read and drop input until the line is quiet for ``quiet_s``; lines dropped."""
        dropped = 0
        with self.transport.lock:
            saved = self.transport.timeout_s
            self.transport.timeout_s = quiet_s
            try:
                while dropped < 1000:
                    try:
                        self.transport.read_raw()
                    except InstrumentTimeout:
                        break
                    dropped += 1
            finally:
                self.transport.timeout_s = saved
        return dropped

    def _write(self, command: str) -> None:
        self._retrying(lambda: self.transport.write(command))

    # --- errors ----------------------------------------------------------------------------
    def _reply_error(self, message: str, command: str) -> InstrumentReplyError:
        return InstrumentReplyError(
            message, instrument=self.name, address=self.address, command=command
        )

    def _number(self, text: str, command: str) -> float:
        """A finite float from a reply field, or InstrumentReplyError quoting the reply."""
        try:
            value = float(text.strip())
        except ValueError:
            raise self._reply_error(f"expected a number, got {text!r}", command) from None
        if not math.isfinite(value):
            raise self._reply_error(f"non-finite number {text!r}", command)
        return value

    def check_range(
        self, what: str, value: float, low: float, high: float, unit: str, *, command: str = ""
    ) -> float:
        """``value`` as float if ``low <= value <= high``, else ArgumentRangeError (no clipping)."""
        return check_range(
            what,
            value,
            low,
            high,
            unit,
            instrument=self.name,
            address=self.address,
            command=command,
        )

    def check_count(self, what: str, value: int, low: int, high: int) -> int:
        """A whole number in ``[low, high]``; 2.5 points is an error, not 2."""
        number = self.check_range(what, value, low, high, "")
        if number != int(number):
            raise ArgumentRangeError(
                f"{what} must be a whole number, got {value!r}",
                instrument=self.name,
                address=self.address,
            )
        return int(number)

    # --- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.safe_state()
        finally:
            self.close()

    def safe_state(self) -> None:  # pragma: no cover - every driver overrides
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address!r}, name={self.name!r})"


def check_range(
    what: str,
    value: float,
    low: float,
    high: float,
    unit: str,
    *,
    instrument: str = "",
    address: str = "",
    command: str = "",
) -> float:
    """``value`` as float if it lies in ``[low, high]``; otherwise :class:`ArgumentRangeError`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ArgumentRangeError(
            f"{what} must be a number in {unit}, got {value!r}",
            instrument=instrument,
            address=address,
            command=command,
        ) from None
    if not (math.isfinite(number) and low <= number <= high):
        raise ArgumentRangeError(
            f"{what} {value!r} {unit} is outside {low:g}..{high:g} {unit}",
            instrument=instrument,
            address=address,
            command=command,
        )
    return number
