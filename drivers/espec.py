"""Espec temperature chambers over their serial (RS-232/RS-485) command set.

Follows the ESPEC "Communication Instruction Manual" for SU/SH/PL series controllers (the same
ASCII commands over RS-232C, RS-485 and GPIB): 9600 baud 8-N-1, commands and replies end in CR+LF.

=====================  =========================================  ======================
command                reply                                      meaning
=====================  =========================================  ======================
``ROM?``               ``"P5.01 ..."``                            controller firmware
``TYPE?``              ``"SCP220,T,S2,..."``                      controller / chamber type
``TEMP?``              ``"23.5,25.0,100.0,-40.0"``                measured, set point,
                                                                  upper, lower limit (degC)
``TEMP, S25.0``        ``"OK: TEMP, S25.0"``                      new set point
``MODE?``              ``"CONSTANT"`` / ``"STANDBY"`` / ``"OFF"``  operating mode
``MODE, CONSTANT``     ``"OK: MODE, CONSTANT"``                   run at the set point
``MODE, STANDBY``      ``"OK: MODE, STANDBY"``                    stop temperature control
``ALARM?``             ``"0"`` / ``"2,12,15"``                   number of active alarms, codes
``ALARM, CLEAR``       ``"OK: ALARM, CLEAR"``                     reset alarms (cause removed)
=====================  =========================================  ======================

Sources: the command set and replies above are the ESPEC communication manual's (SU/SH/PL
series controllers); the issue review that checked the drivers against public sources found
this driver in agreement with them. No third-party driver was run against the simulator. Not
settled without hardware: whether every controller firmware pads ``TEMP?`` fields with blanks
(the number parser strips them) and the exact set-point limits per model (the driver reads them
from ``TEMP?``).

A refused command is answered ``NA:<reason>`` (``NA:COMMAND ERR``, ``NA:PARAMETER ERR``,
``NA:DATA NOT READY``...), raised here as :class:`InstrumentCommandError`. An active alarm (the
chamber's over-temperature protector or another safety device tripped) stops temperature control;
starting control then raises :class:`InterlockError` with the alarm codes.
"""

from __future__ import annotations

from cellbench.drivers.errors import InstrumentCommandError, InterlockError
from cellbench.drivers.line_driver import LineDriver, line_property


class EspecChamber(LineDriver):
    """An Espec temperature chamber: a :class:`~cellbench.drivers.roles.TemperatureController`.

    ``safe_state()`` puts the chamber in STANDBY (no heating or cooling; it drifts to ambient),
    which is what a chamber should do when a run stops on a fault.
    """

    model = "espec"
    read_termination = "\r\n"
    write_termination = "\r\n"
    baud_rate = 9600
    #: Range of the set point the controller accepts, degC (SU/SH series: -40..+150; PL: -70..+180).
    SETPOINT_RANGE_CELSIUS = (-70.0, 180.0)

    # -- one-command settings (each answered "OK: <command>") -----------------------------
    setpoint_celsius = line_property(
        None,
        "TEMP, S{}",
        name="set point",
        check=(*SETPOINT_RANGE_CELSIUS, "degC"),
        to_wire=lambda v: f"{float(v):.1f}",
        send="_set",
    )
    mode = line_property(
        "MODE?",
        "MODE, {}",
        name="mode",
        values=("CONSTANT", "STANDBY", "OFF"),
        to_wire=str,
        parse=lambda s: s.strip().upper(),
        send="_set",
    )

    def _checked(self, command: str) -> str:
        reply = self._query(command).strip()
        if reply.startswith("NA"):
            reason = reply[3:].strip() if len(reply) > 2 else ""
            raise InstrumentCommandError(
                f"chamber refused the command: {reason or reply}",
                instrument=self.name,
                address=self.address,
                command=command,
            )
        return reply

    def _set(self, command: str) -> None:
        reply = self._checked(command)
        if not reply.startswith("OK"):
            raise self._reply_error(f"expected 'OK: ...', got {reply!r}", command)

    def identify(self) -> str:
        """``"ESPEC <TYPE?> <ROM?>"``, e.g. ``"ESPEC SCP220,T,S2 P5.01"``."""
        return f"ESPEC {self._checked('TYPE?')} {self._checked('ROM?')}"

    def read_status(self) -> tuple[float, float, float, float]:
        """(measured, set point, upper limit, lower limit), degC, from ``TEMP?``."""
        command = "TEMP?"
        fields = self._checked(command).split(",")
        if len(fields) != 4:
            raise self._reply_error(f"expected 4 fields, got {','.join(fields)!r}", command)
        measured, setpoint, upper, lower = (self._number(f, command) for f in fields)
        return measured, setpoint, upper, lower

    def read_temperature_celsius(self) -> float:
        """Chamber air temperature, degC."""
        return self.read_status()[0]

    def read_mode(self) -> str:
        """``CONSTANT``, ``STANDBY``, ``OFF`` or ``RUN`` (program)."""
        return self.mode

    def set_temperature_celsius(self, setpoint_celsius: float) -> None:
        """New set point, degC, and CONSTANT mode (the chamber starts controlling to it).

        The set point must lie within the controller's range and within the chamber's own
        upper/lower temperature limits read from ``TEMP?``; otherwise ArgumentRangeError.
        """
        low, high = self.SETPOINT_RANGE_CELSIUS
        value = self.check_range("set point", setpoint_celsius, low, high, "degC")
        _, _, upper, lower = self.read_status()
        self.check_range("set point (chamber limits)", value, lower, upper, "degC")
        self.setpoint_celsius = value
        try:
            self.mode = "CONSTANT"
        except InstrumentCommandError:
            alarms = self.read_alarms()
            if alarms:
                raise InterlockError(
                    f"chamber alarm(s) {', '.join(map(str, alarms))} active: temperature control "
                    "cannot start; remove the cause and clear the alarm at the chamber",
                    instrument=self.name,
                    address=self.address,
                    command="MODE, CONSTANT",
                ) from None
            raise

    def read_alarms(self) -> list[int]:
        """Codes of the active alarms (empty: none), from ``ALARM?``."""
        command = "ALARM?"
        fields = [f for f in self._checked(command).split(",") if f.strip()]
        numbers = [int(self._number(f, command)) for f in fields]
        if not numbers or numbers[0] != len(numbers) - 1:
            raise self._reply_error(f"expected count,codes...; got {','.join(fields)!r}", command)
        return numbers[1:]

    def standby(self) -> None:
        """Stop temperature control (fan only)."""
        self.mode = "STANDBY"

    def safe_state(self) -> None:
        self.standby()
