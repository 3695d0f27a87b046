"""Shared plumbing of the line-based drivers (serial instruments that answer one line per query).

A :class:`LineDriver` owns one transport, validates arguments before anything reaches the wire
(:func:`check_range` — out of range is an error, never clipped), parses numbers with a typed error
that quotes the reply, and recovers from a lost connection: a command that hits
:class:`InstrumentConnectionError` reopens the port once (the transport backs off) and is sent
again.
Only idempotent commands (queries and settings) go through that retry.

:func:`line_property` declares a setting that is one command (PyMeasure's ``control`` in a
line): an explicit name, and a range, a discrete set or a value map checked before the wire.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

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


def _format_number(value: float) -> str:
    """A float as <NRf> text, round-trip exact for the digits that matter."""
    return f"{float(value):.10g}"


def line_property(
    query: str | None,
    write: str | None = None,
    *,
    name: str,
    parse: Callable[[str], Any] = float,
    to_wire: Callable[[Any], str] = _format_number,
    check: tuple[float, float, str] | None = None,
    values: Collection[Any] | None = None,
    mapping: Mapping[Any, str] | None = None,
    send: str = "_write",
    doc: str = "",
) -> property:
    """A setting that is one command: ``query`` on get, ``write.format(wire)`` on set.

    PyMeasure's ``Instrument.control`` in a line, for any :class:`LineDriver`:

    - ``name``: what the setting is called in errors (explicit, never parsed from ``doc``);
    - ``check=(low, high, unit)``: a number in range (out of range raises
      :class:`ArgumentRangeError`; nothing is clipped);
    - ``values``: a discrete set the value must belong to (numbers compare within 1e-9
      relative, strings case-insensitively); the member of the set is what gets sent;
    - ``mapping``: Python value -> wire text (e.g. ``{True: "ON", False: "OFF"}``); the reply is
      mapped back (case-insensitive; for numeric replies, by value);
    - ``send``: the driver method that sends the setting (``"_write"``; a driver whose
      instrument acknowledges settings names its checked sender, e.g. Espec's ``"_set"``).

    Without ``write`` the property is read-only; without ``query``, write-only.
    """

    def fget(self: LineDriver) -> Any:
        assert query is not None
        reply = self._query(query)
        if mapping is not None:
            return _unmap(self, mapping, reply, query)
        try:
            return parse(reply)
        except ValueError:
            raise self._reply_error(f"cannot parse {name} from reply {reply!r}", query) from None

    def fset(self: LineDriver, value: Any) -> None:
        assert write is not None
        if check is not None:
            low, high, unit = check
            value = self.check_range(name, value, low, high, unit, command=write)
        if values is not None:
            value = _member(self, name, value, values, write)
        wire = _map(self, name, value, mapping, write) if mapping is not None else to_wire(value)
        getattr(self, send)(write.format(wire))

    doc_text = doc or name
    return property(
        fget if query is not None else None, fset if write is not None else None, doc=doc_text
    )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return str(a).strip().upper() == str(b).strip().upper()
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
        return a == b
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=0.0)


def _member(driver: LineDriver, name: str, value: Any, allowed: Collection[Any], command: str):
    for candidate in allowed:
        if _same(value, candidate):
            return candidate
    listed = ", ".join(str(a) for a in allowed)
    raise ArgumentRangeError(
        f"{name} {value!r} is not one of {listed}",
        instrument=driver.name,
        address=driver.address,
        command=command,
    )


def _map(driver: LineDriver, name: str, value: Any, mapping: Mapping[Any, str], command: str):
    for key, wire in mapping.items():
        if type(key) is type(value) and _same(key, value):  # True must not match 1.0
            return wire
    for key, wire in mapping.items():
        if not isinstance(key, bool) and not isinstance(value, bool) and _same(key, value):
            return wire
    listed = ", ".join(repr(k) for k in mapping)
    raise ArgumentRangeError(
        f"{name} {value!r} is not one of {listed}",
        instrument=driver.name,
        address=driver.address,
        command=command,
    )


def _unmap(driver: LineDriver, mapping: Mapping[Any, str], reply: str, command: str) -> Any:
    for key, wire in mapping.items():
        if _same(wire, reply):
            return key
    if set(mapping) == {True, False}:  # SCPI booleans answer 1/0 whichever spelling was sent
        word = reply.strip().upper().lstrip("+")  # Keysight signs <NR1>: "+1"
        if word in ("1", "ON", "0", "OFF"):
            return word in ("1", "ON")
    raise driver._reply_error(f"reply {reply!r} is none of {', '.join(mapping.values())}", command)
