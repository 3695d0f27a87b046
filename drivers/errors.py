"""Typed instrument errors. Every message names the instrument, its address and the command."""

from __future__ import annotations

from cellbench.core.errors import CellbenchError


class InstrumentError(CellbenchError):
    """Base of instrument faults; carries where it happened."""

    def __init__(self, message: str, *, instrument: str = "", address: str = "", command: str = ""):
        self.instrument = instrument
        self.address = address
        self.command = command
        where = ", ".join(
            part
            for part in (
                instrument and f"instrument {instrument}",
                address and f"at {address}",
                command and f"command {command!r}",
            )
            if part
        )
        super().__init__(f"{message} ({where})" if where else message)


class InstrumentConnectionError(InstrumentError):
    """The port or socket is absent, refused, or was lost."""


class InstrumentTimeout(InstrumentError):
    """No (complete) reply within the bounded timeout."""


class InstrumentReplyError(InstrumentError):
    """A reply arrived but could not be understood (garbled, wrong format)."""


class InstrumentRangeError(InstrumentError):
    """The instrument reported over-range / the value is outside what it can measure."""


class InstrumentCommandError(InstrumentError):
    """The instrument's error queue reports a command or execution error."""


class InterlockError(InstrumentError):
    """A safety interlock is open; the output cannot be (or was) turned on."""


class ArgumentRangeError(InstrumentError, ValueError):
    """An argument is outside the instrument's range; never clipped silently."""
