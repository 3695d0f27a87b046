"""Simulated Keysight E4990A impedance analyzer on the shared cell (SCPI on a loopback socket).

Implements the part of the *E4990A Programming Guide* command set a frequency sweep needs:
sweep type, start/stop, points, measurement speed (``:SENSe1:APERture:TIME``), oscillator mode
and level, DC bias,
trace parameters (``:CALCulate1:PARameter<n>:DEFine`` R, X, Z, TZ, ...) and formats, bus trigger
(``:TRIGger:SOURce BUS``, ``:TRIGger[:SEQuence]:SINGle``), ``*OPC?``/``*OPC`` completion and the
data queries ``:CALCulate1[:SELected]:DATA:FDATa?`` and ``:SENSe1:FREQuency:DATA?``.

A triggered sweep samples the cell's analytic impedance with seeded relative Gaussian noise
(real and imaginary parts each perturbed by ``noise_relative x |Z|``) and takes simulated time:
each point lasts ``max(point_min_s, periods / f)`` x ``sweep_time_factor`` simulated seconds,
i.e. that divided by the clock's time scale in wall time. ``*OPC?`` blocks until the sweep is
done; ``*OPC`` sets the OPC event bit when it is, for status-byte polling.
"""

from __future__ import annotations

import time

import numpy as np

from cellbench.drivers.sim.cell import SimCell
from cellbench.drivers.sim.faults import FaultInjector
from cellbench.drivers.sim.scpi_server import (
    ESR_OPC,
    ScpiError,
    ScpiServer,
    parse_bool,
    parse_choice,
    parse_number,
)

F_MIN_HERTZ, F_MAX_HERTZ = 20.0, 120e6
MAX_POINTS = 1601
PARAMETERS = {
    p: p
    for p in (
        "Z",
        "Y",
        "R",
        "X",
        "G",
        "B",
        "TZ",
        "TY",
        "LS",
        "LP",
        "CS",
        "CP",
        "RS",
        "RP",
        "D",
        "Q",
    )
}
FORMATS = {
    "MLIN": "MLIN",
    "MLINEAR": "MLIN",
    "MLOG": "MLOG",
    "MLOGARITHMIC": "MLOG",
    "PHAS": "PHAS",
    "PHASE": "PHAS",
    "REAL": "REAL",
    "IMAG": "IMAG",
    "POL": "POL",
    "POLAR": "POL",
}
SWEEP_TYPES = {"LIN": "LIN", "LINEAR": "LIN", "LOG": "LOG", "LOGARITHMIC": "LOG"}
TRIGGER_SOURCES = {
    "INT": "INT",
    "INTERNAL": "INT",
    "EXT": "EXT",
    "EXTERNAL": "EXT",
    "BUS": "BUS",
    "MAN": "MAN",
    "MANUAL": "MAN",
}


def parameter_values(parameter: str, z: np.ndarray, f: np.ndarray) -> np.ndarray:
    """The E4990A measurement parameter from complex impedance ``z`` at frequencies ``f``."""
    w = 2 * np.pi * f
    y = 1.0 / z
    table = {
        "Z": np.abs(z),
        "Y": np.abs(y),
        "R": z.real,
        "RS": z.real,
        "X": z.imag,
        "G": y.real,
        "B": y.imag,
        "TZ": np.degrees(np.angle(z)),
        "TY": np.degrees(np.angle(y)),
        "LS": z.imag / w,
        "LP": -1.0 / (w * y.imag),
        "CS": -1.0 / (w * z.imag),
        "CP": y.imag / w,
        "RP": 1.0 / y.real,
        "D": np.abs(z.real / z.imag),
        "Q": np.abs(z.imag / z.real),
    }
    return table[parameter]


class E4990ASimulator(ScpiServer):
    """An E4990A (option 120, 20 Hz-120 MHz, option 001 DC bias) measuring the cell."""

    idn = "Keysight Technologies,E4990A,MY54100123,A.02.12"
    #: integer replies are signed (``*OPC?`` -> ``+1``, ``:SYST:ERR?`` -> ``+0,"No error"``) as
    #: the public E4990A drivers read them
    signed_numbers = True
    ignored_prefixes = (":DISP", ":SYST:BEEP", ":SYST:PRES")

    def __init__(
        self,
        cell: SimCell,
        *,
        name: str = "e4990a",
        faults: FaultInjector | None = None,
        noise_relative: float = 1e-3,
        seed: int | None = None,
        point_min_s: float = 2e-3,
        periods_per_point: float = 2.0,
        sweep_time_factor: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        super().__init__(name=name, faults=faults, host=host, port=port)
        self.cell = cell
        self.noise_relative = float(noise_relative)
        self.rng = np.random.default_rng(seed) if seed is not None else cell.rng
        self.point_min_s = float(point_min_s)
        self.periods_per_point = float(periods_per_point)
        self.sweep_time_factor = float(sweep_time_factor)
        self.sweeps = 0
        self._sweep_done_wall = 0.0
        self._opc_pending = False
        self.reset()
        self._register()

    # -- state ------------------------------------------------------------------------------
    def reset(self) -> None:
        """``*RST`` defaults: 201-point linear sweep 20 Hz..120 MHz, 0.5 V, Z / theta."""
        with self.lock:
            self.sweep_type = "LIN"
            self.start_hz, self.stop_hz, self.points = F_MIN_HERTZ, F_MAX_HERTZ, 201
            self.bandwidth = 1
            self.osc_mode, self.osc_volt, self.osc_curr = "VOLT", 0.5, 0.01
            self.bias_on, self.bias_mode, self.bias_volt, self.bias_curr = False, "VOLT", 0.0, 0.0
            self.trace_count = 2
            self.definitions = {1: "Z", 2: "TZ", 3: "R", 4: "X"}
            self.formats = {1: "MLOG", 2: "PHAS", 3: "REAL", 4: "REAL"}
            self.active_trace = 1
            self.trigger_source = "INT"
            self.continuous = True
            self.frequencies = self._grid()
            self.z = np.full(self.points, np.nan + 0j)
            self._apply_bias()

    def _grid(self) -> np.ndarray:
        if self.sweep_type == "LOG":
            return np.geomspace(self.start_hz, self.stop_hz, self.points)
        return np.linspace(self.start_hz, self.stop_hz, self.points)

    def _apply_bias(self) -> None:
        if self.bias_on and self.bias_mode == "VOLT":
            self.cell.set_voltage(self.bias_volt, current_limit_ampere=0.1)
        elif self.bias_on:
            self.cell.set_current(self.bias_curr, voltage_limit_volt=40.0)
        else:
            self.cell.open_circuit()

    def sweep_duration_s(self, frequencies: np.ndarray) -> float:
        """Simulated seconds a sweep over ``frequencies`` takes."""
        per_point = np.maximum(
            self.point_min_s, self.periods_per_point * self.bandwidth / frequencies
        )
        return float(per_point.sum()) * self.sweep_time_factor

    def trigger(self) -> None:
        """Run one sweep now (data ready when the simulated sweep time has passed)."""
        f = self._grid()
        z = self.cell.impedance(f)
        sigma = self.noise_relative * np.abs(z)
        noise = self.rng.normal(size=(2, f.size)) * sigma
        self.frequencies = f
        self.z = z + noise[0] + 1j * noise[1]
        wall = self.cell.clock.time_scale
        self._sweep_done_wall = time.monotonic() + self.sweep_duration_s(f) / wall
        self.sweeps += 1

    def operation_complete(self) -> None:
        remaining = self._sweep_done_wall - time.monotonic()
        if remaining > 0:
            self._stop.wait(remaining)

    def arm_opc(self) -> None:
        with self.lock:
            self._opc_pending = True
            self.poll_status()

    def poll_status(self) -> None:
        if self._opc_pending and time.monotonic() >= self._sweep_done_wall:
            self._opc_pending = False
            self.esr |= ESR_OPC

    # -- command table ----------------------------------------------------------------------
    def _register(self) -> None:
        add = self.add_command

        def frequency(attr: str):
            def setter(args: str, n: tuple[int, ...]) -> None:
                setattr(self, attr, parse_number(args, minimum=F_MIN_HERTZ, maximum=F_MAX_HERTZ))

            return setter

        add(
            ":SENSe#:FREQuency:STARt",
            set=frequency("start_hz"),
            get=lambda a, n: f"{self.start_hz:+.12E}",
        )
        add(
            ":SENSe#:FREQuency:STOP",
            set=frequency("stop_hz"),
            get=lambda a, n: f"{self.stop_hz:+.12E}",
        )
        add(
            ":SENSe#:FREQuency:DATA",
            get=lambda a, n: ",".join(f"{v:+.12E}" for v in self.frequencies),
        )
        add(
            ":SENSe#:SWEep:POINts",
            set=lambda a, n: setattr(
                self, "points", int(parse_number(a, minimum=2, maximum=MAX_POINTS))
            ),
            get=lambda a, n: f"{self.points:+d}",
        )
        add(
            ":SENSe#:SWEep:TYPE",
            set=lambda a, n: setattr(self, "sweep_type", parse_choice(a, SWEEP_TYPES)),
            get=lambda a, n: self.sweep_type,
        )
        # measurement speed 1 (fastest) .. 5 (most accurate): :SENSe<ch>:APERture[:TIME] in
        # every public E4990A driver; there is no :SENSe:BANDwidth (a network-analyzer IF
        # bandwidth command) on the E4990A, so it is an undefined header here
        add(
            ":SENSe#:APERture[:TIME]",
            set=lambda a, n: setattr(self, "bandwidth", int(parse_number(a, minimum=1, maximum=5))),
            get=lambda a, n: f"{self.bandwidth:+d}",
        )

        def osc_mode(args: str, n: tuple[int, ...]) -> None:
            self.osc_mode = parse_choice(
                args, {"VOLT": "VOLT", "VOLTAGE": "VOLT", "CURR": "CURR", "CURRENT": "CURR"}
            )

        add(":SOURce#:MODE", set=osc_mode, get=lambda a, n: self.osc_mode)
        add(
            ":SOURce#:VOLTage[:LEVel][:IMMediate][:AMPLitude]",
            set=lambda a, n: setattr(self, "osc_volt", parse_number(a, minimum=5e-3, maximum=1.0)),
            get=lambda a, n: f"{self.osc_volt:+.6E}",
        )
        add(
            ":SOURce#:CURRent[:LEVel][:IMMediate][:AMPLitude]",
            set=lambda a, n: setattr(
                self, "osc_curr", parse_number(a, minimum=200e-6, maximum=20e-3)
            ),
            get=lambda a, n: f"{self.osc_curr:+.6E}",
        )

        def bias(attr: str, parse):
            def setter(args: str, n: tuple[int, ...]) -> None:
                setattr(self, attr, parse(args))
                self._apply_bias()

            return setter

        add(
            ":SOURce#:BIAS:STATe",
            set=bias("bias_on", parse_bool),
            get=lambda a, n: "1" if self.bias_on else "0",
        )
        add(
            ":SOURce#:BIAS:MODE",
            set=bias(
                "bias_mode",
                lambda a: parse_choice(
                    a, {"VOLT": "VOLT", "VOLTAGE": "VOLT", "CURR": "CURR", "CURRENT": "CURR"}
                ),
            ),
            get=lambda a, n: self.bias_mode,
        )
        add(
            ":SOURce#:BIAS:VOLTage[:LEVel][:IMMediate][:AMPLitude]",
            set=bias("bias_volt", lambda a: parse_number(a, minimum=-40.0, maximum=40.0)),
            get=lambda a, n: f"{self.bias_volt:+.6E}",
        )
        add(
            ":SOURce#:BIAS:CURRent[:LEVel][:IMMediate][:AMPLitude]",
            set=bias("bias_curr", lambda a: parse_number(a, minimum=-0.1, maximum=0.1)),
            get=lambda a, n: f"{self.bias_curr:+.6E}",
        )

        # traces
        def trace_count(args: str, n: tuple[int, ...]) -> None:
            self.trace_count = int(parse_number(args, minimum=1, maximum=4))
            self.active_trace = min(self.active_trace, self.trace_count)

        add(
            ":CALCulate#:PARameter:COUNt",
            set=trace_count,
            get=lambda a, n: f"{self.trace_count:+d}",
        )

        def define(args: str, n: tuple[int, ...]) -> None:
            trace = n[1]
            if trace > self.trace_count:
                raise ScpiError(-114, f"Header suffix out of range;PAR{trace}")
            self.definitions[trace] = parse_choice(args, PARAMETERS)

        add(":CALCulate#:PARameter#:DEFine", set=define, get=lambda a, n: self.definitions[n[1]])

        def select(args: str, n: tuple[int, ...]) -> None:
            if n[1] > self.trace_count:
                raise ScpiError(-114, f"Header suffix out of range;PAR{n[1]}")
            self.active_trace = n[1]

        add(":CALCulate#:PARameter#:SELect", set=select)

        def set_format(args: str, n: tuple[int, ...]) -> None:
            self.formats[self.active_trace] = parse_choice(args, FORMATS)

        add(
            ":CALCulate#[:SELected]:FORMat",
            set=set_format,
            get=lambda a, n: self.formats[self.active_trace],
        )

        def fdata(args: str, n: tuple[int, ...]) -> str:
            trace = self.active_trace
            values = self._formatted(self.definitions[trace], self.formats[trace])
            pairs = np.zeros(2 * values.size)
            pairs[0::2] = values
            return ",".join(f"{v:+.12E}" for v in pairs)

        add(":CALCulate#[:SELected]:DATA:FDATa", get=fdata)

        def trace_fdata(args: str, n: tuple[int, ...]) -> str:
            self.active_trace = n[1]
            return fdata(args, n)

        add(":CALCulate#:TRACe#:DATA:FDATa", get=trace_fdata)

        # trigger
        add(
            ":TRIGger[:SEQuence]:SOURce",
            set=lambda a, n: setattr(self, "trigger_source", parse_choice(a, TRIGGER_SOURCES)),
            get=lambda a, n: self.trigger_source,
        )

        def single(args: str, n: tuple[int, ...]) -> None:
            if self.trigger_source != "BUS":
                raise ScpiError(-221, "Settings conflict;trigger source is not BUS")
            if not self.continuous:  # the channel must be initiated (:INIT1:CONT ON)
                raise ScpiError(-211, "Trigger ignored;channel not initiated")
            self.trigger()

        add(":TRIGger[:SEQuence]:SINGle", set=single)
        add(":TRIGger[:SEQuence][:IMMediate]", set=lambda a, n: self.trigger())
        add(
            ":INITiate#:CONTinuous",
            set=lambda a, n: setattr(self, "continuous", parse_bool(a)),
            get=lambda a, n: "1" if self.continuous else "0",
        )
        add(":INITiate#[:IMMediate]", set=lambda a, n: None)
        add(
            ":FORMat[:DATA]",
            set=lambda a, n: parse_choice(a, {"ASC": "ASC", "ASCII": "ASC"}) and None,
            get=lambda a, n: "ASC",
        )

    def _formatted(self, parameter: str, fmt: str) -> np.ndarray:
        """Formatted data of a trace. The E4990A's parameters are scalars already (|Z|, theta,
        R, X, ...); the format sets the display's Y axis (linear / log), so the values read
        back are the parameter values with a zero second element per point."""
        values = parameter_values(parameter, self.z, self.frequencies)
        if self.faults.take("over_range", "FDAT?") is not None:
            values = np.full_like(values, 9.9e37)
        return values
