"""Simulated Keithley 2450 SMU on the shared cell, serving its native SCPI on a loopback socket.

Implements the subset of the 2450 reference manual's command set that cellbench and typical
third-party drivers (e.g. PyMeasure's ``Keithley2450``) use: source function, levels and limits,
limit-tripped queries, sense function and NPLC, output state and output-off mode (HIMP, NORMal,
ZERO, GUARd), ``:OUTPut:INTerlock:TRIPped?`` (1 = interlock asserted, manual p. 6-33),
``*LANG?`` (other command sets refuse the SCPI commands), ``:READ?`` /
``:MEASure:<function>?`` with buffer elements, and the reading buffer (``:TRACe:ACTual?
:TRACe:CLEar :TRACe:DATA? :TRACe:POINts``).

What reaches the cell depends on the output state, as on the instrument: output on sources the
programmed level with its limit; output off in HIMP (and GUARd) opens the cell; the default
NORMal and ZERO off states hold 0 V across the cell with a small current limit — they slowly
discharge it, which is why the driver selects HIMP.

Faults: ``over_range`` makes the next reading 9.9E37; ``interlock`` opens the interlock, which
turns the output off (and refuses ``:OUTP ON``) until :meth:`Keithley2450Simulator.close_interlock`.
"""

from __future__ import annotations

from collections import deque
from itertools import islice

import numpy as np

from cellbench.drivers.sim.cell import SimCell
from cellbench.drivers.sim.faults import FaultInjector
from cellbench.drivers.sim.scpi_server import (
    ScpiError,
    ScpiServer,
    parse_bool,
    parse_choice,
    parse_number,
)

OVERFLOW_TEXT = "9.9E+37"
FUNCTIONS = {"CURR": "CURR", "CURRENT": "CURR", "VOLT": "VOLT", "VOLTAGE": "VOLT"}
OFF_MODES = {
    "HIMP": "HIMP",
    "HIMPEDANCE": "HIMP",
    "NORM": "NORM",
    "NORMAL": "NORM",
    "ZERO": "ZERO",
    "GUAR": "GUAR",
    "GUARD": "GUAR",
}
ELEMENTS = ("READ", "READING", "SOUR", "SOURCE", "REL", "RELATIVE", "SEC", "SECONDS", "UNIT")
BUFFERS = ("DEFBUFFER1", "DEFBUFFER2")


def _fmt(value: float) -> str:
    return f"{value:+.7E}"


class Keithley2450Simulator(ScpiServer):
    """A 2450 on the cell. ``noise_relative`` (of reading) plus absolute floors, Gaussian."""

    idn = "KEITHLEY INSTRUMENTS,MODEL 2450,04412345,1.7.12b"
    ignored_prefixes = (":DISP", ":SYST:BEEP", ":SYST:LOC", ":SYST:REM")

    def __init__(
        self,
        cell: SimCell,
        *,
        name: str = "keithley2450",
        faults: FaultInjector | None = None,
        noise_relative: float = 2e-5,
        noise_voltage_volt: float = 2e-6,
        noise_current_ampere: float = 1e-9,
        seed: int | None = None,
        buffer_points: int = 100_000,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        super().__init__(name=name, faults=faults, host=host, port=port)
        self.cell = cell
        self.noise_relative = float(noise_relative)
        self.noise_voltage_volt = float(noise_voltage_volt)
        self.noise_current_ampere = float(noise_current_ampere)
        self.rng = np.random.default_rng(seed) if seed is not None else cell.rng
        self.buffer_capacity = int(buffer_points)
        # (reading, source readback, relative time s, measured function)
        self.buffer: deque[tuple[float, float, float, str]] = deque(maxlen=self.buffer_capacity)
        self.interlock_closed = True
        self.interlock_was_tripped = False
        #: the command set the instrument answers in (``*LANG?``); see :meth:`power_cycle`
        self.language = "SCPI"
        self.pending_language = "SCPI"
        self.reset()
        self._register()

    # -- state ------------------------------------------------------------------------------
    def reset(self) -> None:
        """``*RST`` defaults (reference manual): output off in NORMal, source V 0 V, 105 uA."""
        with self.lock:
            self.output = False
            self.source_function = "VOLT"
            self.sense_function = "CURR"
            self.level = {"CURR": 0.0, "VOLT": 0.0}
            self.limit = {"CURR": 21.0, "VOLT": 105e-6}  # VLIM for CURR, ILIM for VOLT
            self.off_mode = {"CURR": "NORM", "VOLT": "NORM"}
            self.readback = {"CURR": True, "VOLT": True}
            self.nplc = {"CURR": 1.0, "VOLT": 1.0}
            self.buffer_t0 = self.cell.clock.now()
            self.buffer.clear()
            self._apply()

    def _apply(self) -> None:
        """Put the cell in the state the output terminals impose."""
        fn = self.source_function
        if self.output:
            if fn == "CURR":
                self.cell.set_current(self.level["CURR"], voltage_limit_volt=self.limit["CURR"])
            else:
                self.cell.set_voltage(self.level["VOLT"], current_limit_ampere=self.limit["VOLT"])
            return
        mode = self.off_mode[fn]
        if mode in ("HIMP", "GUAR"):
            self.cell.open_circuit()
        else:
            # NORMal/ZERO: a 0 V source with a small current limit stays across the terminals
            self.cell.set_voltage(0.0, current_limit_ampere=max(1e-6, 0.005 * self.limit["VOLT"]))

    def close_interlock(self) -> None:
        """Re-engage the interlock (the tripped flag stays until queried)."""
        with self.lock:
            self.interlock_closed = True

    def trip_interlock(self) -> None:
        with self.lock:
            self.interlock_closed = False
            if self.output:
                self.interlock_was_tripped = True
                self.output = False
                self._apply()

    def power_cycle(self) -> None:
        """Switch off and on: a ``*LANG`` change takes effect, settings return to defaults."""
        with self.lock:
            self.language = self.pending_language
            self.reset()

    def execute(self, message: str) -> str | None:
        # In the TSP or SCPI2400 command set the native SCPI commands are unknown; only the
        # IEEE 488.2 common commands (``*LANG?``, ``*IDN?`` ...) still answer.
        if self.language != "SCPI" and not message.strip().lstrip(":").startswith("*"):
            self.push_error(-113, f"Undefined header;{message.strip()}")
            return None
        return super().execute(message)

    def handle_line(self, line: str) -> str | None:
        if self.faults.take("interlock", line) is not None:
            self.trip_interlock()
        return super().handle_line(line)

    # -- measurement ------------------------------------------------------------------------
    def _noisy(self, value: float, floor: float) -> float:
        sigma = abs(value) * self.noise_relative + floor
        return float(value + self.rng.normal(0.0, sigma)) if sigma > 0 else value

    def _measure(self, sense: str, command: str) -> tuple[float, float, float, str]:
        """(reading, source readback, relative time) per the present configuration."""
        v, i = self.cell.measure()
        v_meas = self._noisy(v, self.noise_voltage_volt)
        i_meas = self._noisy(i, self.noise_current_ampere)
        if not self.output and self.off_mode[self.source_function] in ("HIMP", "GUAR"):
            v_meas, i_meas = 9.91e37, 0.0  # relay open: no reading
        reading = v_meas if sense == "VOLT" else i_meas
        fn = self.source_function
        source = (i_meas if fn == "CURR" else v_meas) if self.readback[fn] else self.level[fn]
        if self.faults.take("over_range", command) is not None:
            reading = 9.9e37
        rel = self.cell.clock.now() - self.buffer_t0
        sample = (reading, source, rel, sense)
        self.buffer.append(sample)
        return sample

    @staticmethod
    def _elements(args: str) -> list[str]:
        """Buffer name (optional) and element list of ``:READ?`` / ``:TRAC:DATA?``."""
        parts = [p.strip() for p in args.split(",") if p.strip()]
        if parts and parts[0].strip("\"'").upper() in BUFFERS:
            parts = parts[1:]
        elements = [p.upper() for p in parts] or ["READ"]
        for element in elements:
            if element not in ELEMENTS:
                raise ScpiError(-224, f"Illegal parameter value;{element}")
        return elements

    def _format(self, sample: tuple[float, float, float, str], elements: list[str]) -> list[str]:
        reading, source, rel, sense = sample
        out = []
        for element in elements:
            if element.startswith("READ"):
                out.append(
                    OVERFLOW_TEXT if abs(reading) >= 9.9e37 and reading < 9.91e37 else _fmt(reading)
                )
            elif element.startswith("SOUR"):
                out.append(_fmt(source))
            elif element.startswith(("REL", "SEC")):
                out.append(f"{rel:.6f}")
            else:
                out.append("Volt DC" if sense == "VOLT" else "Amp DC")
        return out

    # -- command table ----------------------------------------------------------------------
    def _register(self) -> None:
        add = self.add_command

        def fn_of(n: tuple[int, ...], text: str) -> str:
            return FUNCTIONS[text]

        # source function, level, limits
        def set_source_function(args: str, n: tuple[int, ...]) -> None:
            fn = parse_choice(args, FUNCTIONS)
            if fn != self.source_function:
                self.output = False  # the 2450 turns the output off when the function changes
                self.source_function = fn
                self._apply()

        add(
            ":SOURce[1]:FUNCtion[:MODE]",
            set=set_source_function,
            get=lambda a, n: self.source_function,
        )

        def level_setter(fn: str):
            limit = 1.05 if fn == "CURR" else 210.0

            def setter(args: str, n: tuple[int, ...]) -> None:
                self.level[fn] = parse_number(args, minimum=-limit, maximum=limit, default=0.0)
                if self.output and self.source_function == fn:
                    self._apply()

            return setter

        def limit_setter(fn: str):
            low, high = (0.02, 210.0) if fn == "CURR" else (1e-9, 1.05)

            def setter(args: str, n: tuple[int, ...]) -> None:
                self.limit[fn] = parse_number(args, minimum=low, maximum=high)
                if self.output and self.source_function == fn:
                    self._apply()

            return setter

        for long_, fn in (("CURRent", "CURR"), ("VOLTage", "VOLT")):
            lim = "VLIMit" if fn == "CURR" else "ILIMit"
            add(
                f":SOURce[1]:{long_}[:LEVel][:IMMediate][:AMPLitude]",
                set=level_setter(fn),
                get=lambda a, n, fn=fn: _fmt(self.level[fn]),
            )
            add(
                f":SOURce[1]:{long_}:{lim}[:LEVel]",
                set=limit_setter(fn),
                get=lambda a, n, fn=fn: _fmt(self.limit[fn]),
            )
            add(
                f":SOURce[1]:{long_}:{lim}[:LEVel]:TRIPped",
                get=lambda a, n, fn=fn: "1" if self._tripped(fn) else "0",
            )
            add(
                f":SOURce[1]:{long_}:READ:BACK",
                set=lambda a, n, fn=fn: self.readback.__setitem__(fn, parse_bool(a)),
                get=lambda a, n, fn=fn: "1" if self.readback[fn] else "0",
            )
            add(f":SOURce[1]:{long_}:RANGe", set=lambda a, n: None, get=lambda a, n: "1")
            add(
                f":SOURce[1]:{long_}:RANGe:AUTO",
                set=lambda a, n: parse_bool(a) and None,
                get=lambda a, n: "1",
            )
            add(
                f":SENSe[1]:{long_}:NPLCycles",
                set=lambda a, n, fn=fn: self.nplc.__setitem__(
                    fn, parse_number(a, minimum=0.01, maximum=10, default=1)
                ),
                get=lambda a, n, fn=fn: f"{self.nplc[fn]:g}",
            )
            add(
                f":SENSe[1]:{long_}[:DC]:RANGe[:UPPer]", set=lambda a, n: None, get=lambda a, n: "1"
            )
            add(
                f":SENSe[1]:{long_}[:DC]:RANGe:AUTO",
                set=lambda a, n: parse_bool(a) and None,
                get=lambda a, n: "1",
            )
            add(
                f":OUTPut[1]:{long_}:SMODe",
                set=lambda a, n, fn=fn: self._set_off_mode(fn, a),
                get=lambda a, n, fn=fn: self.off_mode[fn],
            )
            add(f":MEASure:{long_}[:DC]", get=lambda a, n, fn=fn: self._measure_query(fn, a))

        def set_sense(args: str, n: tuple[int, ...]) -> None:
            self.sense_function = parse_choice(args, FUNCTIONS)

        add(
            ":SENSe[1]:FUNCtion[:ON]",
            set=set_sense,
            get=lambda a, n: '"VOLT:DC"' if self.sense_function == "VOLT" else '"CURR:DC"',
        )

        # output and interlock
        def set_output(args: str, n: tuple[int, ...]) -> None:
            on = parse_bool(args)
            if on and not self.interlock_closed:
                raise ScpiError(-221, "Settings conflict;interlock is open, output stays off")
            self.output = on
            self._apply()

        add(":OUTPut[1][:STATe]", set=set_output, get=lambda a, n: "1" if self.output else "0")
        # Reference manual 2450-901-01 Rev. D, :OUTPut[1]:INTerlock:TRIPped? (p. 6-33): "If 1 is
        # returned, the interlock signal is asserted"; 0: not asserted. There is no
        # :OUTPut:INTerlock:STATe on the 2450 (that is the 2400 series' command): it is an
        # undefined header here, as on the instrument.
        add(
            ":OUTPut[1]:INTerlock:TRIPped",
            get=lambda a, n: "1" if self.interlock_closed else "0",
        )

        # *LANG (reference manual, "*LANG"): the command set in use; a change takes effect
        # after a power cycle, so the simulator keeps serving the language it started with
        def set_language(args: str, n: tuple[int, ...]) -> None:
            self.pending_language = parse_choice(
                args, {"SCPI": "SCPI", "TSP": "TSP", "SCPI2400": "SCPI2400"}
            )

        add("*LANG", set=set_language, get=lambda a, n: self.language)

        # readings and the buffer
        def read(args: str, n: tuple[int, ...]) -> str:
            elements = self._elements(args)
            sample = self._measure(self.sense_function, "READ?")
            return ",".join(self._format(sample, elements))

        add(":READ", get=read)
        add(":TRACe:ACTual", get=lambda a, n: str(len(self.buffer)))

        def set_points(args: str, n: tuple[int, ...]) -> None:
            # resizing a reading buffer clears it, as on the instrument
            self.buffer_capacity = int(parse_number(args, minimum=10, maximum=11_000_000))
            self.buffer = deque(maxlen=self.buffer_capacity)
            self.buffer_t0 = self.cell.clock.now()

        add(":TRACe:POINts", set=set_points, get=lambda a, n: str(self.buffer_capacity))

        def clear(args: str, n: tuple[int, ...]) -> None:
            self.buffer.clear()
            self.buffer_t0 = self.cell.clock.now()

        add(":TRACe:CLEar", set=clear)
        # ABORt stops the trigger model; readings here are taken on demand (no trigger model
        # runs), so there is nothing to stop, but the command is accepted as on the instrument.
        add(":ABORt", set=lambda a, n: None)

        def data(args: str, n: tuple[int, ...]) -> str:
            parts = [p.strip() for p in args.split(",")]
            if len(parts) < 2:
                raise ScpiError(-109, "Missing parameter;start and end index")
            start = int(parse_number(parts[0], minimum=1))
            end = int(parse_number(parts[1], minimum=start))
            if end > len(self.buffer):
                raise ScpiError(-222, f"Data out of range;buffer holds {len(self.buffer)}")
            elements = self._elements(",".join(parts[2:]))
            fields: list[str] = []
            for sample in islice(self.buffer, start - 1, end):
                fields.extend(self._format(sample, elements))
            return ",".join(fields)

        add(":TRACe:DATA", get=data)

    def _tripped(self, fn: str) -> bool:
        return self.output and self.source_function == fn and self.cell.in_compliance

    def _set_off_mode(self, fn: str, args: str) -> None:
        self.off_mode[fn] = parse_choice(args, OFF_MODES)
        if not self.output:
            self._apply()

    def _measure_query(self, fn: str, args: str) -> str:
        self.sense_function = fn
        sample = self._measure(fn, "MEAS?")
        return ",".join(self._format(sample, self._elements(args)))
