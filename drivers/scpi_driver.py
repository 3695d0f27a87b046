"""Shared plumbing of SCPI drivers: error queue, number lists, one-line SCPI properties.

:class:`ScpiDriver` is a :class:`~cellbench.drivers.line_driver.LineDriver` (one transport,
arguments validated before they reach the wire, one reconnect-and-retry after a lost connection)
with the IEEE 488.2 / SCPI conventions: ``*IDN?``, ``*RST``, ``*CLS`` and the ``:SYSTem:ERRor?``
queue, which :meth:`ScpiDriver.check_errors` drains into one :class:`InstrumentCommandError`.

:func:`scpi_property` declares a setting in one line, PyMeasure-style::

    nplc = scpi_property(":SENS:VOLT:NPLC?", ":SENS:VOLT:NPLC {}", check=(0.01, 10, "PLC"))
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from cellbench.drivers.errors import InstrumentCommandError
from cellbench.drivers.line_driver import LineDriver

_ERROR = re.compile(r'^\s*([+-]?\d+)\s*,\s*"?(.*?)"?\s*$')


def _format_number(value: float) -> str:
    """A float as SCPI <NRf> text, round-trip exact for the digits that matter."""
    return f"{float(value):.10g}"


def scpi_property(
    query: str,
    write: str | None = None,
    *,
    parse: Callable[[str], Any] = float,
    to_wire: Callable[[Any], str] = _format_number,
    check: tuple[float, float, str] | None = None,
    doc: str = "",
) -> property:
    """A property that queries ``query`` on get and writes ``write.format(value)`` on set.

    ``check = (low, high, unit)`` validates numbers before anything is sent (out of range raises
    :class:`ArgumentRangeError`; nothing is clipped). Without ``write`` the property is read-only.
    """

    def fget(self: ScpiDriver) -> Any:
        reply = self._query(query)
        try:
            return parse(reply)
        except ValueError:
            raise self._reply_error(f"cannot parse reply {reply!r}", query) from None

    def fset(self: ScpiDriver, value: Any) -> None:
        assert write is not None
        if check is not None:
            low, high, unit = check
            value = self.check_range(doc.split(",")[0] or query, value, low, high, unit,
                                     command=write)  # fmt: skip
        self._write(write.format(to_wire(value)))

    return property(fget, fset if write is not None else None, doc=doc)


def parse_bool(text: str) -> bool:
    """SCPI boolean reply (``1``/``0``/``ON``/``OFF``)."""
    word = text.strip().upper()
    if word in ("1", "ON"):
        return True
    if word in ("0", "OFF"):
        return False
    raise ValueError(text)


class ScpiDriver(LineDriver):
    """Base of the SCPI drivers (LAN raw socket, USB-TMC, GPIB through VISA; ``\\n`` lines)."""

    read_termination = "\n"
    write_termination = "\n"
    #: how many entries :meth:`check_errors` reads at most (the queue is finite)
    max_errors = 32

    def identify(self) -> str:
        """``*IDN?``: manufacturer, model, serial number, firmware."""
        return self._query("*IDN?")

    def clear_status(self) -> None:
        """``*CLS``: empty the error queue and the event registers."""
        self._write("*CLS")

    def errors(self) -> list[tuple[int, str]]:
        """Drain the error queue: ``[(code, message), ...]`` (empty if none)."""
        found: list[tuple[int, str]] = []
        for _ in range(self.max_errors):
            reply = self._query(":SYST:ERR?")
            match = _ERROR.match(reply)
            if match is None:
                raise self._reply_error(f"malformed error-queue entry {reply!r}", ":SYST:ERR?")
            code = int(match.group(1))
            if code == 0:
                break
            found.append((code, match.group(2)))
        return found

    def check_errors(self, command: str = "") -> None:
        """Raise :class:`InstrumentCommandError` listing the error queue, if it holds any."""
        found = self.errors()
        if found:
            listed = "; ".join(f"{code} {text}" for code, text in found)
            raise InstrumentCommandError(
                f"instrument reported {len(found)} error(s): {listed}",
                instrument=self.name,
                address=self.address,
                command=command,
            )

    def _numbers(self, reply: str, command: str, *, separator: str = ",") -> list[float]:
        """Comma-separated numbers from a reply (InstrumentReplyError quoting it otherwise)."""
        fields = [f for f in reply.split(separator) if f.strip()]
        if not fields:
            raise self._reply_error(f"expected numbers, got {reply!r}", command)
        values = []
        for field in fields:
            try:
                values.append(float(field))
            except ValueError:
                raise self._reply_error(f"expected numbers, got {reply[:80]!r}", command) from None
        return values
