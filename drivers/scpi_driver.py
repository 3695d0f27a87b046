"""Shared plumbing of SCPI drivers: error queue, number lists, one-line SCPI properties.

:class:`ScpiDriver` is a :class:`~cellbench.drivers.line_driver.LineDriver` (one transport,
arguments validated before they reach the wire, one reconnect-and-retry after a lost connection)
with the IEEE 488.2 / SCPI conventions: ``*IDN?``, ``*RST``, ``*CLS`` and the ``:SYSTem:ERRor?``
queue, which :meth:`ScpiDriver.check_errors` drains into one :class:`InstrumentCommandError`.

:func:`scpi_property` declares a setting in one line, PyMeasure-style::

    nplc = scpi_property(":SENS:VOLT:NPLC?", ":SENS:VOLT:NPLC {}", name="nplc",
                         check=(0.01, 10, "PLC"))
    off_mode = scpi_property(":OUTP:CURR:SMOD?", ":OUTP:CURR:SMOD {}", name="off mode",
                             values=("HIMP", "NORM", "ZERO", "GUAR"))
    output = scpi_property(":OUTP?", ":OUTP {}", name="output",
                           mapping={True: "ON", False: "OFF"})
"""

from __future__ import annotations

import re

from cellbench.drivers.errors import InstrumentCommandError
from cellbench.drivers.line_driver import LineDriver, line_property

_ERROR = re.compile(r'^\s*([+-]?\d+)\s*,\s*"?(.*?)"?\s*$')


#: one-command SCPI settings: :func:`~cellbench.drivers.line_driver.line_property` (the same
#: factory serves the serial instruments' line protocols)
scpi_property = line_property


def parse_bool(text: str) -> bool:
    """SCPI boolean reply (``1``/``0``/``ON``/``OFF``, also signed ``+1``/``+0`` as Keysight
    instruments send <NR1>)."""
    word = text.strip().upper().lstrip("+")
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
