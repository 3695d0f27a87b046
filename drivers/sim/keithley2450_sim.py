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

The trigger model, as far as the driver's held limits use it (reference manual 2450-901-01, §3
"Trigger model" and §6 TRIGger subsystem): ``:TRIGger:LOAD "Empty"``, constant delay blocks
(``:TRIGger:BLOCk:DELay:CONStant n, s``), source output blocks (``:TRIGger:BLOCk:SOURce:STATe
n, ON|OFF``), ``:TRIGger:BLOCk:LIST?``, ``:INITiate``, ``:ABORt`` and ``:TRIGger:STATe?``. The
model runs by itself on the cell's clock (a thread), so a delay block followed by a source-off
block turns the output off at its time whether or not anyone is connected. While it runs, the
commands that conflict with it — changes of the source, sense and output settings, ``:READ?``
and ``:MEASure?``, editing the blocks — are refused with -221 (the manual lets other commands
run "if they do not conflict with trigger model actions"; the 2461 manual names the
source-measure settings).

Faults: ``over_range`` makes the next reading 9.9E37; ``interlock`` opens the interlock, which
turns the output off (and refuses ``:OUTP ON``) until :meth:`Keithley2450Simulator.close_interlock`.
"""

from __future__ import annotations

import threading
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
MAX_DELAY_S = 1e5  # longest constant delay block the simulator accepts, s
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
#: commands refused while the trigger model runs (each node cut to 4 letters): set forms of
#: these, and the measuring queries
TRIGGER_CONFLICTS_SET = (":SOUR", ":SENS", ":OUTP", ":TRIG:BLOC", ":TRIG:LOAD", ":INIT")
TRIGGER_CONFLICTS_QUERY = (":READ", ":MEAS")
#: longest wall wait of the trigger-model thread between checks of the clock, s (a command
#: advances the model first anyway; the thread matters when nobody talks to the instrument)
TRIGGER_POLL_WALL_S = 0.25


def _short_header(header: str) -> str:
    """``:TRIGger:BLOCk:DELay`` -> ``:TRIG:BLOC:DELA`` (suffix digits dropped), upper case."""
    nodes = [n.rstrip("0123456789").upper()[:4] for n in header.strip().split(":")]
    return ":".join(nodes) if header.startswith(":") else ":" + ":".join(nodes)


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
        # trigger model: blocks by number, ("DELAY", seconds) or ("SOURCE", on)
        self.trigger_blocks: dict[int, tuple[str, float | bool]] = {}
        self.trigger_running = False
        self.trigger_block = 0  # the block being executed (or last executed)
        self.trigger_due: float | None = None  # clock s at which the present delay ends
        self._trigger_wake = threading.Event()
        self._trigger_thread: threading.Thread | None = None
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
            self.trigger_blocks = {}
            self.trigger_running = False
            self.trigger_block = 0
            self.trigger_due = None
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

    # -- trigger model --------------------------------------------------------------------
    def advance_trigger_model(self) -> None:
        """Execute the running trigger model's blocks as far as the clock allows."""
        with self.lock:
            clock = self.cell.clock
            while self.trigger_running:
                block = self.trigger_blocks.get(self.trigger_block)
                if block is None:  # past the last block: the model is done
                    self.trigger_running = False
                    break
                kind, value = block
                if kind == "DELAY":
                    if self.trigger_due is None:
                        self.trigger_due = clock.now() + float(value)
                    if clock.now() < self.trigger_due:
                        return
                    self.trigger_due = None
                elif kind == "SOURCE":
                    if value and not self.interlock_closed:
                        self.trigger_running = False  # the model fails; the output stays off
                        self.push_error(-221, "Settings conflict;interlock is open")
                        break
                    self.output = bool(value)
                    self._apply()
                self.trigger_block += 1

    def _trigger_loop(self) -> None:
        """Runs the model by itself (nobody need be connected), on the cell's clock."""
        clock = self.cell.clock
        while not self._stop.is_set():
            self.advance_trigger_model()
            with self.lock:
                running, due = self.trigger_running, self.trigger_due
            if not running:
                self._trigger_wake.wait()
                self._trigger_wake.clear()
                continue
            wait = TRIGGER_POLL_WALL_S
            if due is not None and hasattr(clock, "wall_seconds"):
                wait = min(wait, max(float(clock.wall_seconds(due - clock.now())), 0.0))
            self._stop.wait(wait)

    def stop(self) -> None:
        super().stop()
        self._trigger_wake.set()  # the model's thread sees the stop and ends
        if self._trigger_thread is not None:
            self._trigger_thread.join(timeout=2.0)

    def _start_trigger_model(self) -> None:
        if self.trigger_running:
            raise ScpiError(-221, "Settings conflict;trigger model is already running")
        self.trigger_running = True
        self.trigger_block = 1
        self.trigger_due = None
        self.advance_trigger_model()  # blocks due at once act now
        if self._trigger_thread is None or not self._trigger_thread.is_alive():
            self._trigger_thread = threading.Thread(
                target=self._trigger_loop, name=f"{self.name}-trigger", daemon=True
            )
            self._trigger_thread.start()
        self._trigger_wake.set()

    def _abort_trigger_model(self) -> None:
        self.trigger_running = False
        self.trigger_due = None

    def _set_block(self, args: str, kind: str) -> None:
        parts = [p.strip() for p in args.split(",")]
        if len(parts) != 2:
            raise ScpiError(-109, "Missing parameter;block number and value")
        number = int(parse_number(parts[0], minimum=1, maximum=63))
        if kind == "DELAY":
            value: float | bool = parse_number(parts[1], minimum=0.0, maximum=MAX_DELAY_S)
        else:
            value = parse_bool(parts[1])
        self.trigger_blocks[number] = (kind, value)

    def _list_blocks(self) -> str:
        names = {"DELAY": "DELAY_CONSTANT", "SOURCE": "SOURCE_OUTPUT"}
        out = []
        for number in sorted(self.trigger_blocks):
            kind, value = self.trigger_blocks[number]
            shown = f"{value:g}" if kind == "DELAY" else ("ON" if value else "OFF")
            out.append(f"{number}) {names[kind]}: {shown}")
        return "; ".join(out)

    def execute(self, message: str) -> str | None:
        header = message.strip().partition(" ")[0]
        if self.trigger_running and header:
            self.advance_trigger_model()
            query = header.endswith("?")
            short = _short_header(header.rstrip("?"))
            conflicts = TRIGGER_CONFLICTS_QUERY if query else TRIGGER_CONFLICTS_SET
            if self.trigger_running and short.startswith(conflicts):
                self.push_error(-221, f"Settings conflict;trigger model is running;{header}")
                return None
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

        # trigger model (see the module docstring)
        def load(args: str, n: tuple[int, ...]) -> None:
            name = args.split(",")[0].strip().strip("\"'")
            if name.upper() != "EMPTY":
                raise ScpiError(-224, f"Illegal parameter value;{name} (only Empty simulated)")
            self.trigger_blocks = {}

        add(":TRIGger:LOAD", set=load)
        add(
            ":TRIGger:BLOCk:DELay:CONStant",
            set=lambda a, n: self._set_block(a, "DELAY"),
        )
        add(":TRIGger:BLOCk:SOURce:STATe", set=lambda a, n: self._set_block(a, "SOURCE"))
        add(":TRIGger:BLOCk:LIST", get=lambda a, n: self._list_blocks())

        def trigger_state(args: str, n: tuple[int, ...]) -> str:
            self.advance_trigger_model()
            state = "RUNNING" if self.trigger_running else "IDLE"
            if self.trigger_running and self.trigger_due is not None:
                state = "WAITING"
            return f"{state};{state};{self.trigger_block}"

        add(":TRIGger:STATe", get=trigger_state)
        add(":INITiate[:IMMediate]", set=lambda a, n: self._start_trigger_model())
        # ABORt stops the trigger model; the output stays as it is
        add(":ABORt", set=lambda a, n: self._abort_trigger_model())

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
