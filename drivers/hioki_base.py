"""What Hioki's line-protocol instruments (IM3590, BT3562/BT3563) share: ``*IDN?`` and the
standard event status register ``*ESR?``, whose bits 2-5 say the last commands were refused.

Both manuals ("Communication Instruction Manual", "External control") describe the same IEEE 488.2
common commands; the drivers differ only in their measurement commands.
"""

from __future__ import annotations

from cellbench.drivers.errors import InstrumentCommandError
from cellbench.drivers.line_driver import LineDriver

#: *ESR? bits that mean the last commands were not accepted.
ESR_ERRORS = {
    0x04: "query error",
    0x08: "device-dependent error",
    0x10: "execution error",
    0x20: "command error",
}


class HiokiDriver(LineDriver):
    """A :class:`LineDriver` with Hioki's ``*IDN?`` and ``*ESR?`` error check."""

    def identify(self) -> str:
        """``*IDN?``: ``"HIOKI,<model>,<serial>,<version>"``."""
        return self._query("*IDN?").strip()

    def check_errors(self, after: str) -> None:
        """Read and clear ``*ESR?``; raise InstrumentCommandError naming ``after`` if an error
        bit is set."""
        esr = int(self._number(self._query("*ESR?"), "*ESR?"))
        problems = [text for bit, text in ESR_ERRORS.items() if esr & bit]
        if problems:
            raise InstrumentCommandError(
                f"instrument reports {', '.join(problems)} (*ESR? = {esr})",
                instrument=self.name,
                address=self.address,
                command=after,
            )
