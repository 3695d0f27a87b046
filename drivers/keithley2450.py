"""Keithley 2450 SourceMeter (SMU) as a single-channel cycler, pulse source and OCV meter.

Follows the *Model 2450 Interactive SourceMeter Instrument Reference Manual* (2450-901-01 Rev. D,
May 2015), native "SCPI" command set (not "SCPI2400" emulation, not TSP), over LAN raw socket
(``TCPIP::host::5025::SOCKET``), VXI-11 or USB-TMC (``USB0::0x05E6::0x2450::SN::INSTR``).

Command table (RM = the reference manual above; PyMeasure = ``pymeasure.instruments.keithley.
Keithley2450`` 0.16; QCoDeS = ``qcodes.instrument_drivers.Keithley.Keithley2450``):

- ``*LANG?`` -> ``SCPI`` (anything else: refused). RM "*LANG"; QCoDeS refuses to run unless it
  reads ``SCPI``.
- ``*CLS``; ``:SYST:ERR?`` -> ``<code>,"<text>"``. RM §6 SYSTem; PyMeasure ``check_errors``.
- ``:OUTP:CURR:SMOD HIMP``, ``:OUTP:VOLT:SMOD HIMP`` (no reply). RM :OUTPut[1]:<function>:SMODe.
- ``:OUTP:INT:TRIP?`` -> ``1`` interlock asserted, ``0`` not asserted. RM
  :OUTPut[1]:INTerlock:TRIPped? (p. 6-33); the same text in the 2461 manual (2461-901-01 Rev. A,
  p. 6-49). The 2450 has no ``:OUTP:INT:STAT?`` (a 2400-series command).
- ``:SENS:VOLT:NPLC``, ``:SENS:CURR:NPLC`` (no reply). RM; QCoDeS ``nplc``.
- ``:SOUR:FUNC CURR|VOLT``, ``:SENS:FUNC "VOLT"|"CURR"``, ``:SENS:<f>:RANG:AUTO ON``,
  ``:SOUR:<f>:READ:BACK ON``, ``:SOUR:CURR:VLIM``, ``:SOUR:VOLT:ILIM``, ``:SOUR:<f> <level>``
  (no reply). RM; PyMeasure ``apply_current``/``source_current``; QCoDeS ``limit``.
- ``:OUTP ON|OFF``; ``:OUTP?`` -> ``1``/``0``. RM; PyMeasure, QCoDeS ``output_enabled``.
- ``:OUTP?;:SOUR:<f>?;:SOUR:<f>:<VLIM|ILIM>?`` -> ``1;<level>;<limit>`` (``;``-joined replies,
  RM "Using the SCPI command reference").
- ``:READ? "defbuffer1", READ, SOUR, REL;:OUTP?`` -> ``<measured>,<source>,<rel. time>;<0|1>``.
  RM :READ? (buffer elements).
- ``:TRAC:ACT? "defbuffer1"`` -> count; ``:TRAC:CLE``; ``:TRAC:DATA? s, e, "defbuffer1", READ,
  SOUR, REL, UNIT`` -> element list. RM TRACe; QCoDeS ``Keithley2450Buffer``.
- ``:SOUR:CURR:VLIM:TRIP?`` / ``:SOUR:VOLT:ILIM:TRIP?`` -> ``1``/``0``. RM; QCoDeS
  ``limit_tripped``.
- Held limits (what the instrument keeps doing when the logger is gone), RM §3 "Trigger model"
  and §6 TRIGger subsystem: ``:TRIG:LOAD "Empty"`` (the "Empty" predefined trigger model clears
  the blocks, RM "Predefined trigger models"), ``:TRIG:BLOC:SOUR:STAT <n>, ON|OFF`` (source
  output block: turns the output on, or off into the selected output-off state, RM
  :TRIGger:BLOCk:SOURce:STATe p. 6-147 of Rev. B), ``:TRIG:BLOC:DEL:CONS <n>, <s>`` (constant
  delay block, RM "Trigger block summary"), ``:INIT`` (start the trigger model), ``:ABOR``
  (stop it; the output stays as it is), ``:TRIG:STAT?`` -> ``<state>;<state>;<block>`` (RM
  :TRIGger:STATe?, e.g. ``IDLE;IDLE;2``). While a trigger model runs, other commands run only
  "if they do not conflict with trigger model actions" (RM "Running the trigger model"); the
  2461 manual (same platform) says the source-measure settings cannot be changed meanwhile. So
  the driver stops it (``:ABOR``) before every change of the source and every reading, and
  starts it again in the same line (see "Held limits" below).

An overflowed reading is ``9.9E37`` (RM, "Overflow"); it is raised as InstrumentRangeError.
Not settled by any source we could read: whether a 2450 that left the factory in TSP mode answers
``*LANG?`` at all in TSP (the manual says ``*LANG`` works in both); the driver treats a missing or
non-``SCPI`` answer alike and refuses to continue, naming the fix (``*LANG SCPI``, power cycle).

Safety: the 2450's default output-off state is NORMal — when the output is turned off the
instrument connects a 0 V voltage source with a small current limit across the terminals, which
slowly **discharges (shorts) a cell**. This driver sets ``:OUTP:CURR:SMOD HIMP`` and
``:OUTP:VOLT:SMOD HIMP`` on connect and again in :meth:`Keithley2450.safe_state`, so "off" opens
the output relay (high impedance).

The safety interlock: ``:OUTP:INT:TRIP?`` answers 1 while the interlock signal is *asserted*
(closed: every range available) and 0 while it is not (the 200 V range is disabled, output
limited to about ±42 V). :attr:`Keithley2450.interlock_engaged` is that reply;
``require_interlock=True`` refuses to turn the output on unless it is 1.

Resting a cell while measuring its open-circuit voltage uses :meth:`Keithley2450.output_off`,
which sources 0 A with a voltage limit (the SMU is then a high-impedance voltmeter); the relay
is opened only by :meth:`Keithley2450.safe_state`.

Held limits (issue 11: a ``kill -9`` of the logger must not leave a cell driven past the
protocol's limits). :meth:`program_safety_limits` (the engine calls it before anything is
sourced) keeps the protocol's ``voltage_min``: a discharge (negative current) is then sourced as
a voltage source at ``voltage_min`` with the step's current as its current limit. While the
cell is above ``voltage_min`` the limit holds the current at the step's (the cell follows the
constant current, as before); the instrument itself never lets the cell below ``voltage_min``,
whatever happens to the PC. (A charge is already held by its voltage limit.) A bounded source
time: when ``watchdog_s`` (station option) or ``max_step_s`` (the engine sets it to what is
left of the step plus a margin) is set, the output is turned on by a trigger model (source
output ON block, delay block, source output OFF block: ``:INIT`` instead of ``:OUTP ON``), so it
is never on without the bound, which is the smaller of the two; each reading renews it (a model
of delay and OFF blocks only, which cannot turn the output on again) with the time left,
so a dead logger leaves the cell sourced at most ``watchdog_s`` after its last reading and not
past the step's own deadline (counted in the instrument's reading timestamps from the first
reading after the setting). A 0 A rest is not bounded (nothing is sourced). Not settled by what
we could read of the manual: the longest constant delay a block takes (the driver never asks for
more than 10,000 s, renewed at every reading), whether ``:READ?`` is refused while a model runs
and with which error (the driver stops the model first, so it works either way; the simulator
refuses with -221).

Readings use ``:READ? "defbuffer1", READ, SOUR, REL`` (measured value, source readback, relative
time), so every reading is also kept in the instrument's reading buffer, and ``;:OUTP?`` in the
same line tells whether the output is still on (an interlock trip turns it off).
"""

from __future__ import annotations

import math
import time

from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentCommandError,
    InstrumentRangeError,
    InstrumentTimeout,
    InterlockError,
)
from cellbench.drivers.roles import Reading
from cellbench.drivers.scpi_driver import ScpiDriver, parse_bool, scpi_property
from cellbench.drivers.transport import Transport

#: largest source/measure magnitudes of the 2450 (ranges 10 nA..1 A, 20 mV..200 V, 5 % over)
MAX_CURRENT_AMPERE = 1.05
MAX_VOLTAGE_VOLT = 210.0
#: power envelope: above 105 mA the voltage may not exceed 21 V (and vice versa)
HIGH_CURRENT_AMPERE = 0.105
HIGH_CURRENT_MAX_VOLT = 21.0
MIN_CURRENT_LIMIT_AMPERE = 1e-9
MIN_VOLTAGE_LIMIT_VOLT = 0.02
#: the 2450 reports an overflowed reading as +9.9E37 (and "no reading" as 9.91E37)
OVERFLOW = 9.9e37
BUFFER = '"defbuffer1"'
#: output-off states (RM :OUTPut[1]:<function>:SMODe)
OFF_MODES = ("HIMP", "NORM", "ZERO", "GUAR")
#: the longest delay the driver programs in one trigger-model delay block, s; the watchdog is
#: renewed at every reading, long before such a delay could run out
MAX_DELAY_BLOCK_S = 10_000.0
#: the shortest delay programmed once the bound has run out (the instrument turns off at once)
MIN_DELAY_BLOCK_S = 1e-3


class Keithley2450(ScpiDriver):
    """Keithley 2450 SMU driver (a :class:`~cellbench.drivers.roles.SourceMeter`).

    Args:
        address: VISA resource (LAN socket, VXI-11, USB-TMC).
        name: instrument name in the station.
        timeout_s: bound on each reply, s.
        transport: an open transport to use instead of opening ``address``.
        nplc: integration time in power-line cycles (0.01..10).
        rest_voltage_limit_volt: voltage limit while resting at 0 A (:meth:`output_off`).
        require_interlock: refuse to turn the output on unless the safety interlock is engaged.
        watchdog_s: the instrument turns the output off when no reading has renewed it for this
            long (instrument seconds; None: no watchdog). Longer than the sample interval.
        max_step_s: the longest the present output setting may last (instrument seconds; None:
            unbounded); the engine sets it before each setting to what is left of the step.
        hold_voltage_min: source discharges so that the instrument holds the protocol's
            ``voltage_min`` (:meth:`program_safety_limits`). Each change between a rest or a
            charge and a discharge then passes through output off (a change of source
            function), which cycles the output relay; False keeps plain constant current.
    """

    model = "Keithley 2450"

    def __init__(
        self,
        address: str,
        *,
        name: str = "",
        timeout_s: float = 2.0,
        transport: Transport | None = None,
        nplc: float = 1.0,
        rest_voltage_limit_volt: float = 21.0,
        require_interlock: bool = False,
        watchdog_s: float | None = None,
        max_step_s: float | None = None,
        hold_voltage_min: bool = True,
    ):
        super().__init__(address, name=name, timeout_s=timeout_s, transport=transport)
        self.watchdog_s = (
            None
            if watchdog_s is None
            else self.check_range("watchdog_s", watchdog_s, 0.01, MAX_DELAY_BLOCK_S, "s")
        )
        self.max_step_s = max_step_s
        self.hold_voltage_min = bool(hold_voltage_min)
        #: the protocol's voltage_min, held by the instrument on discharge (program_safety_limits)
        self.voltage_floor_volt: float | None = None
        self._armed = False  # a trigger model that turns the output off is running
        self._left_s: float | None = None  # instrument s left of max_step_s
        self._last_rel_s: float | None = None  # instrument time of the last renewing reading
        self.rest_voltage_limit_volt = self.check_range(
            "rest voltage limit",
            rest_voltage_limit_volt,
            MIN_VOLTAGE_LIMIT_VOLT,
            MAX_VOLTAGE_VOLT,
            "V",
        )
        self.require_interlock = require_interlock
        self._function: str | None = None  # "CURR" or "VOLT" while the output is on
        self._output_on = False
        self._configured: tuple[str, float] | None = None  # (function, limit) last set up
        self._configure(nplc)

    def _configure(self, nplc: float) -> None:
        nplc = self.check_range("nplc", nplc, 0.01, 10.0, "PLC")
        with self.transport.lock:
            self.check_language()
            self._write("*CLS")
            # a trigger model left running (a watchdog of a logger that died) locks the source
            # settings; this connection takes over (the output stays as it is)
            self._write(":ABOR")
            self._write(":OUTP:CURR:SMOD HIMP")
            self._write(":OUTP:VOLT:SMOD HIMP")
            self._write(f":SENS:VOLT:NPLC {nplc:g}")
            self._write(f":SENS:CURR:NPLC {nplc:g}")
            self.check_errors(":OUTP:CURR:SMOD HIMP")
            self._output_on = self.output_enabled
            if self._output_on:  # e.g. reconnecting after a crash: keep reading it right
                self._function = self.source_function

    def check_language(self) -> None:
        """``*LANG?`` must read ``SCPI``: in the TSP or SCPI2400 command set every command this
        driver sends fails (QCoDeS refuses to run likewise). Raises InstrumentCommandError."""
        try:
            language = self._query("*LANG?").strip().strip('"').upper()
        except InstrumentTimeout:
            language = "no answer"
        if language != "SCPI":
            raise InstrumentCommandError(
                f"the 2450 is in the {language!r} command set, not SCPI; select SCPI on the "
                "front panel (System > Settings > Command Set) or send *LANG SCPI, then power "
                "cycle the instrument",
                instrument=self.name,
                address=self.address,
                command="*LANG?",
            )

    # -- one-line settings ------------------------------------------------------------------
    language = scpi_property("*LANG?", name="command set", parse=lambda s: s.strip().upper())
    output_enabled = scpi_property(
        ":OUTP?", name="output", mapping={True: "1", False: "0"}, doc="output on (relay closed)"
    )
    source_function = scpi_property(
        ":SOUR:FUNC?",
        name="source function",
        parse=lambda s: s.strip().upper()[:4],
        doc="source function, 'CURR' or 'VOLT'",
    )
    interlock_engaged = scpi_property(
        ":OUTP:INT:TRIP?",
        name="interlock",
        mapping={True: "1", False: "0"},
        doc="interlock signal asserted (1): every range available; 0: not asserted, output "
        "limited to about ±42 V (RM :OUTPut[1]:INTerlock:TRIPped?)",
    )
    voltage_limit_tripped = scpi_property(
        ":SOUR:CURR:VLIM:TRIP?",
        name="voltage limit tripped",
        mapping={True: "1", False: "0"},
        doc="current source is in voltage compliance",
    )
    current_limit_tripped = scpi_property(
        ":SOUR:VOLT:ILIM:TRIP?",
        name="current limit tripped",
        mapping={True: "1", False: "0"},
        doc="voltage source is in current compliance",
    )
    output_off_mode_current = scpi_property(
        ":OUTP:CURR:SMOD?",
        ":OUTP:CURR:SMOD {}",
        name="output-off state (current)",
        values=OFF_MODES,
        parse=lambda s: s.strip().upper(),
        to_wire=str,
        doc="output-off state in current mode (HIMP)",
    )
    output_off_mode_voltage = scpi_property(
        ":OUTP:VOLT:SMOD?",
        ":OUTP:VOLT:SMOD {}",
        name="output-off state (voltage)",
        values=OFF_MODES,
        parse=lambda s: s.strip().upper(),
        to_wire=str,
        doc="output-off state in voltage mode (HIMP)",
    )
    nplc = scpi_property(
        ":SENS:VOLT:NPLC?",
        ":SENS:VOLT:NPLC {0};:SENS:CURR:NPLC {0}",
        name="nplc",
        check=(0.01, 10.0, "PLC"),
        doc="integration time in power-line cycles",
    )

    @property
    def interlock_tripped(self) -> bool:
        """The interlock signal is not asserted (``:OUTP:INT:TRIP?`` answered 0)."""
        return not self.interlock_engaged

    # -- validation -------------------------------------------------------------------------
    def _check_envelope(self, current: float, voltage: float, command: str) -> None:
        if abs(current) > HIGH_CURRENT_AMPERE and abs(voltage) > HIGH_CURRENT_MAX_VOLT:
            raise ArgumentRangeError(
                f"{abs(current):g} A with {abs(voltage):g} V is outside the 2450's power "
                f"envelope (above {HIGH_CURRENT_AMPERE:g} A at most {HIGH_CURRENT_MAX_VOLT:g} V)",
                instrument=self.name,
                address=self.address,
                command=command,
            )

    def _ensure_interlock(self, command: str) -> None:
        if self.require_interlock and not self.interlock_engaged:
            raise InterlockError(
                "safety interlock is not engaged; output not turned on",
                instrument=self.name,
                address=self.address,
                command=command,
            )

    def _switch_on(self, function: str, setup: list[str], level: float, limit: float) -> None:
        """Configure and turn the output on, then read back state, level and limit in one
        query (a setting lost on the wire must not go unnoticed). A change of function passes
        through output off."""
        command = setup[-1]
        self._ensure_interlock(command)
        lim = "VLIM" if function == "CURR" else "ILIM"
        check = f":OUTP?;:SOUR:{function}?;:SOUR:{function}:{lim}?"
        with self.transport.lock:
            self._disarm()  # the source settings cannot change while the trigger model runs
            if self._output_on and self._function != function:
                self._write(":OUTP OFF")  # HIMP: relay opens while the function changes
                self._output_on = False
            if self._output_on and self._configured == (function, limit):
                setup = setup[-1:]  # same function and limit: only the level changes (pulses)
            self._configured = None
            for line in setup:
                self._write(line)
            if not (function == "CURR" and level == 0.0) and self._arm():
                # the trigger model turned the output on itself: it is never on unbounded
                fields = self._query(check).split(";")
                if fields[0].strip() == "0":  # INIT overlaps: give its first block a moment
                    time.sleep(0.05)
                    fields = self._query(check).split(";")
            else:
                if not self._output_on:
                    self._write(":OUTP ON")
                fields = self._query(check).split(";")
            if len(fields) != 3:
                raise self._reply_error(f"expected 3 fields, got {';'.join(fields)!r}", check)
            try:
                on = parse_bool(fields[0])
            except ValueError:
                raise self._reply_error(f"bad output state {fields[0]!r}", check) from None
            if not on:
                tripped = self.interlock_tripped
                queued = "; ".join(f"{code} {text}" for code, text in self.errors())
                raise InterlockError(
                    "output did not turn on"
                    + (" (safety interlock tripped)" if tripped else "")
                    + (f"; instrument errors: {queued}" if queued else ""),
                    instrument=self.name,
                    address=self.address,
                    command=":OUTP ON",
                )
            self._function, self._output_on = function, True
            self._configured = (function, limit)
            held_level, held_limit = (self._number(f, check) for f in fields[1:])
            try:
                self.check_errors(command)
                if not (
                    math.isclose(held_level, level, rel_tol=1e-6, abs_tol=1e-12)
                    and math.isclose(held_limit, limit, rel_tol=1e-6, abs_tol=1e-12)
                ):
                    raise InstrumentCommandError(
                        f"instrument holds level {held_level:g} limit {held_limit:g}, "
                        f"not {level:g} / {limit:g} as sent",
                        instrument=self.name,
                        address=self.address,
                        command=check,
                    )
            except InstrumentCommandError:
                # a rejected or lost setting leaves the source in an unknown state: open the relay
                self.safe_state()
                raise

    # -- held limits ------------------------------------------------------------------------
    def program_safety_limits(
        self,
        *,
        voltage_min_volt: float | None,
        voltage_max_volt: float | None,
        current_max_ampere: float | None,
    ) -> None:
        """Keep the protocol's ``voltage_min`` (V) for discharges (see the module's "Held
        limits"). ``voltage_max`` is held by each charge's voltage limit and ``current_max`` by
        the step's own current, so neither needs programming here."""
        self.voltage_floor_volt = (
            None
            if voltage_min_volt is None or not self.hold_voltage_min
            else self.check_range(
                "voltage_min", voltage_min_volt, -MAX_VOLTAGE_VOLT, MAX_VOLTAGE_VOLT, "V"
            )
        )

    def _bound_s(self) -> float | None:
        """Instrument seconds the output may stay on from now without a renewal, or None."""
        bounds = [b for b in (self.watchdog_s, self._left_s) if b is not None]
        return min(bounds) if bounds else None

    def _delay_s(self) -> float:
        bound = self._bound_s()
        return min(max(bound if bound is not None else 0.0, MIN_DELAY_BLOCK_S), MAX_DELAY_BLOCK_S)

    def _off_program(self) -> str:
        """A trigger model that turns the output off after the bound: renewing it."""
        return (
            f':TRIG:LOAD "Empty";:TRIG:BLOC:DEL:CONS 1, {self._delay_s():.6g};'
            ":TRIG:BLOC:SOUR:STAT 2, OFF;:INIT"
        )

    def _arm(self) -> bool:
        """Turn the output on through a trigger model that turns it off again after the bound
        (source output ON block, delay, source output OFF block), so the output is never on
        without it; False (nothing sent) when nothing bounds the setting. A 0 A rest is never
        bounded (nothing is sourced)."""
        self._left_s = None if self.max_step_s is None else float(self.max_step_s)
        self._last_rel_s = None
        if self._bound_s() is None:
            return False
        self._armed = True  # from here on, stop it before any change or reading
        self._write(
            f':TRIG:LOAD "Empty";:TRIG:BLOC:SOUR:STAT 1, ON;'
            f":TRIG:BLOC:DEL:CONS 2, {self._delay_s():.6g};:TRIG:BLOC:SOUR:STAT 3, OFF;:INIT"
        )
        return True

    def _spent(self, rel_time_s: float) -> None:
        """Count the instrument time since the last reading (``rel_time_s``: this reading's
        timestamp) against ``max_step_s``, from the first reading after the setting (the engine
        reads at once); a cleared buffer restarts the timestamps, and that interval is not
        counted."""
        if self._left_s is not None and self._last_rel_s is not None:
            self._left_s -= max(0.0, rel_time_s - self._last_rel_s)
        self._last_rel_s = rel_time_s

    def _disarm(self) -> None:
        if self._armed:
            self._write(":ABOR")
            self._armed = False

    # -- SourceMeter role -------------------------------------------------------------------
    def source_current(self, current_ampere: float, *, voltage_limit_volt: float) -> None:
        """Output on, constant current (A, positive charges the cell), |V| limited (V)."""
        command = ":SOUR:CURR"
        i = self.check_range(
            "source current",
            current_ampere,
            -MAX_CURRENT_AMPERE,
            MAX_CURRENT_AMPERE,
            "A",
            command=command,
        )
        v = self.check_range(
            "voltage limit",
            voltage_limit_volt,
            MIN_VOLTAGE_LIMIT_VOLT,
            MAX_VOLTAGE_VOLT,
            "V",
            command=":SOUR:CURR:VLIM",
        )
        self._check_envelope(i, v, command)
        floor = self.voltage_floor_volt
        if i < 0 and floor is not None and -i >= MIN_CURRENT_LIMIT_AMPERE:
            # discharge with voltage_min held by the instrument: a voltage source at the floor,
            # current-limited to the step's current (constant current while above the floor)
            self._check_envelope(i, floor, command)
            self._switch_on(
                "VOLT",
                [
                    ":SOUR:FUNC VOLT",
                    ':SENS:FUNC "CURR"',
                    ":SENS:CURR:RANG:AUTO ON",
                    ":SOUR:VOLT:READ:BACK ON",
                    f":SOUR:VOLT:ILIM {-i:.10g}",
                    f":SOUR:VOLT {floor:.10g}",
                ],
                level=floor,
                limit=-i,
            )
            return
        self._switch_on(
            "CURR",
            [
                ":SOUR:FUNC CURR",
                ':SENS:FUNC "VOLT"',
                ":SENS:VOLT:RANG:AUTO ON",
                ":SOUR:CURR:READ:BACK ON",
                f":SOUR:CURR:VLIM {v:.10g}",
                f":SOUR:CURR {i:.10g}",
            ],
            level=i,
            limit=v,
        )

    def source_voltage(self, voltage_volt: float, *, current_limit_ampere: float) -> None:
        """Output on, constant voltage (V), |I| limited (A)."""
        command = ":SOUR:VOLT"
        v = self.check_range(
            "source voltage",
            voltage_volt,
            -MAX_VOLTAGE_VOLT,
            MAX_VOLTAGE_VOLT,
            "V",
            command=command,
        )
        i = self.check_range(
            "current limit",
            current_limit_ampere,
            MIN_CURRENT_LIMIT_AMPERE,
            MAX_CURRENT_AMPERE,
            "A",
            command=":SOUR:VOLT:ILIM",
        )
        self._check_envelope(i, v, command)
        self._switch_on(
            "VOLT",
            [
                ":SOUR:FUNC VOLT",
                ':SENS:FUNC "CURR"',
                ":SENS:CURR:RANG:AUTO ON",
                ":SOUR:VOLT:READ:BACK ON",
                f":SOUR:VOLT:ILIM {i:.10g}",
                f":SOUR:VOLT {v:.10g}",
            ],
            level=v,
            limit=i,
        )

    def output_off(self) -> None:
        """Rest the cell: source 0 A (voltage-limited), so :meth:`measure` reads its OCV."""
        self.source_current(0.0, voltage_limit_volt=self.rest_voltage_limit_volt)

    def measure(self) -> Reading:
        """Voltage (V) and current (A) now; also stored in ``defbuffer1``.

        With the output relay open (after :meth:`safe_state`) nothing can be measured: the
        reading is ``voltage_volt = nan, current_ampere = 0``. Raises :class:`InterlockError` if
        the output turned off by itself, :class:`InstrumentRangeError` on an overflowed reading.
        """
        command = f":READ? {BUFFER}, READ, SOUR, REL;:OUTP?"
        with self.transport.lock:
            if not self._output_on:
                return Reading(math.nan, 0.0, None)
            armed = self._armed
            sent = self._off_program()
            if armed:
                # no reading while the trigger model runs: stop it, read, and start it again in
                # the same line, so that no moment is left without it (with the time left as of
                # the previous reading; corrected below once this one's time is known). The
                # renewing model only turns the output off, never on again.
                command = f":ABOR;{command};{sent}"
            reply = self._query(command)
            values_text, _, state = reply.rpartition(";")
            values = self._numbers(values_text, command)
            if len(values) != 3:
                raise self._reply_error(f"expected 3 values, got {reply!r}", command)
            try:
                on = parse_bool(state)
            except ValueError:
                raise self._reply_error(f"bad output state in {reply!r}", command) from None
            if not on:
                self._output_on = False  # (_armed stays: the next change stops the model)
                tripped = self.interlock_tripped
                bound = self._bound_s() if armed else None
                raise InterlockError(
                    "output turned off by the instrument"
                    + (" (safety interlock tripped)" if tripped else "")
                    + (
                        f" (its source-time bound ran out: not renewed within {bound:.4g} s)"
                        if bound is not None and not tripped
                        else ""
                    ),
                    instrument=self.name,
                    address=self.address,
                    command=command,
                )
            if armed:
                self._spent(values[2])
                program = self._off_program()
                if program != sent:  # the step's deadline came closer: one line, no gap
                    self._write(f":ABOR;{program}")
        measured, sourced, rel_time = values
        if abs(measured) >= OVERFLOW or abs(sourced) >= OVERFLOW:
            raise InstrumentRangeError(
                f"reading overflowed the measure range ({measured:g})",
                instrument=self.name,
                address=self.address,
                command=command,
            )
        if self._function == "VOLT":
            return Reading(voltage_volt=sourced, current_ampere=measured, timestamp_second=rel_time)
        return Reading(voltage_volt=measured, current_ampere=sourced, timestamp_second=rel_time)

    # -- reading buffer ---------------------------------------------------------------------
    def clear_buffer(self) -> None:
        """Empty ``defbuffer1`` (its relative timestamps restart at 0); returns once done."""
        with self.transport.lock:
            self._write(f":TRAC:CLE {BUFFER}")
            if self.buffer_count != 0:  # the query also waits for the clear to be executed
                raise InstrumentCommandError(
                    "reading buffer not empty after :TRAC:CLE",
                    instrument=self.name,
                    address=self.address,
                    command=":TRAC:CLE",
                )

    @property
    def buffer_count(self) -> int:
        """Readings held in ``defbuffer1``."""
        return int(self._number(self._query(f":TRAC:ACT? {BUFFER}"), ":TRAC:ACT?"))

    def read_buffer(self, start: int = 1, end: int | None = None) -> list[Reading]:
        """Readings ``start..end`` (1-based, inclusive; default: all) from ``defbuffer1``."""
        end = self.buffer_count if end is None else end
        if end < start:
            return []
        if start < 1:
            raise ArgumentRangeError(
                f"buffer index {start} < 1", instrument=self.name, address=self.address
            )
        command = f":TRAC:DATA? {start}, {end}, {BUFFER}, READ, SOUR, REL, UNIT"
        fields = [f.strip() for f in self._query(command).split(",")]
        if len(fields) != 4 * (end - start + 1):
            raise self._reply_error(
                f"expected {4 * (end - start + 1)} fields, got {len(fields)}", command
            )
        readings = []
        for k in range(0, len(fields), 4):
            measured, sourced, rel_time = self._numbers(",".join(fields[k : k + 3]), command)
            if fields[k + 3].upper().startswith("AMP"):  # measured current: voltage source
                readings.append(Reading(sourced, measured, rel_time))
            else:
                readings.append(Reading(measured, sourced, rel_time))
        return readings

    # -- safety -----------------------------------------------------------------------------
    def safe_state(self) -> None:
        """Output off with the relay open (HIMP). Safe to call at any time, repeatedly."""
        with self.transport.lock:
            self._write(":ABOR")  # a running trigger model would refuse the lines below
            self._armed = False
            self._write(":OUTP:CURR:SMOD HIMP")
            self._write(":OUTP:VOLT:SMOD HIMP")
            self._write(":OUTP OFF")
            self._output_on = False
            self._function = None
            self._configured = None
            # the query also waits until the instrument has executed the lines above
            if self.output_enabled:
                raise InstrumentCommandError(
                    "output is still on after :OUTP OFF",
                    instrument=self.name,
                    address=self.address,
                    command=":OUTP OFF",
                )
