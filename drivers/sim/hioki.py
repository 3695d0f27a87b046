"""Simulated Hioki IM3590 impedance analyzer and BT3562 battery tester on a pseudo-terminal.

Both speak the instruments' serial command sets (see :mod:`cellbench.drivers.hioki_im3590` and
:mod:`cellbench.drivers.hioki_bt3562`) with CR+LF, long and short header forms, ``;``-joined
messages and the IEEE 488.2 common commands, using the command table of
:class:`~cellbench.drivers.sim.scpi_server.ScpiServer` as interpreter (no socket is opened).
A rejected command sets the command-error bit of ``*ESR?`` as the real instruments do.

Faults: ``over_range`` makes the next measurement reply the over-range marker; ``error_queue``
makes the next command fail as rejected (``*ESR?`` command-error bit; a rejected query sends no
reply); the wire faults come from :class:`~cellbench.drivers.sim.serial_server.SerialSimulator`.
"""

from __future__ import annotations

import math

import numpy as np

from cellbench.drivers.sim.scpi_server import (
    ScpiError,
    ScpiServer,
    parse_bool,
    parse_choice,
    parse_number,
)
from cellbench.drivers.sim.serial_server import SerialSimulator

IM3590_OVER_RANGE = "9.9999E+19"

#: BT356x reply formats (manual BT3562A981-09 p. 159, "Measurement Value Formats"): per range,
#: (digits left of the point, digits right of it, exponent) of a normal reading; over range
#: (±OF) is ±1E+9 and a measurement fault +1E+10 written in the same width
BT_RESISTANCE_FORMATS = {
    3e-3: (2, 4, -3),
    30e-3: (3, 3, -3),
    300e-3: (4, 2, -3),
    3.0: (2, 4, 0),
    30.0: (3, 3, 0),
    300.0: (4, 2, 0),
    3000.0: (2, 4, 3),
}
BT_VOLTAGE_FORMATS = {6.0: (1, 5, 0), 60.0: (2, 4, 0), 100.0: (3, 3, 0), 300.0: (3, 3, 0)}
BT_VOLTAGE_RANGES = {
    "BT3562": (6.0, 60.0),
    "BT3562-01": (6.0, 60.0),
    "BT3562A": (6.0, 60.0, 100.0),
    "BT3563": (6.0, 60.0, 300.0),
    "BT3563-01": (6.0, 60.0, 300.0),
    "BT3563A": (6.0, 60.0, 300.0),
}


def bt_field(value: float, left: int, right: int, exponent: int) -> str:
    """A BT356x reading as the instrument sends it: sign position blank when positive, zeros
    left of the point blank (``-7.51`` with (4, 2, 0) -> ``"-   7.51E+0"``)."""
    digits = f"{abs(value) / 10.0**exponent:0{left + 1 + right}.{right}f}"
    integer, _, fraction = digits.partition(".")
    stripped = integer.lstrip("0") or "0"
    integer = " " * (len(integer) - len(stripped)) + stripped
    sign = "-" if value < 0 else " "
    return f"{sign}{integer}.{fraction}E{exponent:+d}"


def bt_marker(mantissa_left: int, right: int, exponent: int, *, fault: bool, negative: bool) -> str:
    """±OF (1E+9) or measurement fault (+1E+10) in a range's width (``+10.0000E+8`` ...)."""
    power = 10 if fault else 9
    shift = power - (mantissa_left - 1)
    mantissa = f"{10 ** (mantissa_left - 1):d}.{'0' * right}"
    sign = "+" if fault else ("-" if negative else " ")  # the fault is printed "+..."
    return f"{sign}{mantissa}E+{shift}"


def nr3(value: float) -> str:
    """Hioki NR3 number: ``1.23456E+01``."""
    return f"{value:.5E}"


class _HiokiSerial(SerialSimulator):
    """Common part: a SCPI command interpreter behind the serial line."""

    line_end = b"\r\n"
    command_end = b"\n"
    idn = "HIOKI,SIMULATED,000000000,V1.00"

    def __init__(
        self, cell, *, name: str = "", faults=None, link_dir=None, noise_relative: float = 1e-3
    ):
        super().__init__(cell, name=name, faults=faults, link_dir=link_dir)
        self.noise_relative = float(noise_relative)
        self.commands = ScpiServer(name=self.name, faults=self.faults)
        self.commands.idn = self.idn
        self.commands.add_command(":SYSTem:HEADer", set=lambda a, n: None, get=lambda a, n: "OFF")
        self.commands.add_command(":HEADer", set=lambda a, n: None, get=lambda a, n: "OFF")

    def handle(self, line: str) -> str | None:
        if not line.strip():
            return None
        if self.faults.take("error_queue", line) is not None:
            self.commands.push_error(-100, f"Command error;{line}")
            return None
        return self.commands.handle_line(line)

    def _noisy(self, z: complex) -> complex:
        """Multiplicative complex noise of relative size ``noise_relative`` (seeded by the cell)."""
        if self.noise_relative <= 0:
            return z
        with self.cell.lock:
            n = self.cell.rng.normal(0.0, self.noise_relative, 2)
        return z * complex(1.0 + n[0], n[1])


class IM3590Simulator(_HiokiSerial):
    """Hioki IM3590 in LCR mode: ``:FREQuency``, ``:PARameter1..4``, ``:LEVel``, ``:DCBias``,
    ``:MEASure?`` on the shared cell."""

    driver = "im3590"
    idn = "HIOKI,IM3590,250123456,V2.01"
    #: What ``:PARameter#`` accepts (upper case spellings) -> canonical name.
    PARAMETERS = {
        p: p for p in ("Z", "Y", "RS", "RP", "X", "G", "B", "CS", "CP", "LS", "LP", "D", "Q", "OFF")
    } | {"PHAS": "PHAS", "PHASE": "PHAS"}

    def __init__(
        self, cell, *, name: str = "", faults=None, link_dir=None, noise_relative: float = 1e-3
    ):
        super().__init__(
            cell, name=name, faults=faults, link_dir=link_dir, noise_relative=noise_relative
        )
        self.frequency_hertz = 1000.0
        self.parameters = ["Z", "OFF", "PHAS", "OFF"]
        self.level_mode = "V"
        self.levels = {"V": 1.0, "CV": 1.0, "CC": 1e-3}
        self.dc_bias_on = False
        self.dc_bias_volt = 0.0
        self.mode = "LCR"
        c = self.commands

        def set_freq(args, n):
            self.frequency_hertz = parse_number(args, minimum=1e-3, maximum=200e3, default=1e3)

        c.add_command(":FREQuency", set=set_freq, get=lambda a, n: nr3(self.frequency_hertz))

        def parameter_index(n) -> int:
            if not 1 <= n[0] <= 4:
                raise ScpiError(-114, "Header suffix out of range")
            return n[0] - 1

        def set_par(args, n):
            self.parameters[parameter_index(n)] = parse_choice(args, self.PARAMETERS)

        c.add_command(
            ":PARameter#", set=set_par, get=lambda a, n: self.parameters[parameter_index(n)]
        )

        def set_mode(args, n):
            self.mode = parse_choice(
                args,
                {
                    "LCR": "LCR",
                    "ANAL": "ANALYZER",
                    "ANALYZER": "ANALYZER",
                    "CONT": "CONTINUOUS",
                    "CONTINUOUS": "CONTINUOUS",
                },
            )

        c.add_command(":MODE", set=set_mode, get=lambda a, n: self.mode)

        def set_level_mode(args, n):
            self.level_mode = parse_choice(args, {"V": "V", "CV": "CV", "CC": "CC"})

        c.add_command(":LEVel", set=set_level_mode, get=lambda a, n: self.level_mode)
        for key, pattern, low, high in (
            ("V", ":LEVel:VOLTage", 5e-3, 5.0),
            ("CV", ":LEVel:CVOLTage", 5e-3, 5.0),
            ("CC", ":LEVel:CCURRent", 10e-6, 50e-3),
        ):
            c.add_command(
                pattern,
                set=lambda a, n, key=key, low=low, high=high: self.levels.__setitem__(
                    key, parse_number(a, minimum=low, maximum=high)
                ),
                get=lambda a, n, key=key: nr3(self.levels[key]),
            )

        def set_bias(args, n):
            self.dc_bias_on = parse_bool(args)

        c.add_command(":DCBias", set=set_bias, get=lambda a, n: "ON" if self.dc_bias_on else "OFF")

        def set_bias_level(args, n):
            self.dc_bias_volt = parse_number(args, minimum=-2.5, maximum=2.5)

        c.add_command(":DCBias:LEVel", set=set_bias_level, get=lambda a, n: nr3(self.dc_bias_volt))
        c.add_command(":MEASure", get=lambda a, n: self.measure(), locked=False)
        # :MEASure:ITEM <MR0>,<MR1>,<MR2> selects what :MEASure? returns (bit layout of Hioki's
        # 3532 manual; power-on: Z and PHASE); :MEASure:VALid selects the extra fields (here:
        # 1 = leading status field, 16 = trailing panel number; power-on 1 — a model of the
        # IM3590's "status, judgment results, measurement values, panel number", unverified)
        self.item = (5, 0, 0)
        self.valid = 1

        def set_item(args, n):
            fields = [f for f in args.replace(" ", "").split(",") if f]
            if not 1 <= len(fields) <= 3:
                raise ScpiError(-109, f"Missing parameter;{args}")
            values = [int(parse_number(f, minimum=0, maximum=255)) for f in fields]
            self.item = (*values, *([0] * (3 - len(values))))

        c.add_command(
            ":MEASure:ITEM", set=set_item, get=lambda a, n: ",".join(str(v) for v in self.item)
        )
        c.add_command(
            ":MEASure:VALid",
            set=lambda a, n: setattr(self, "valid", int(parse_number(a, minimum=0, maximum=255))),
            get=lambda a, n: str(self.valid),
        )
        # settings third-party drivers send; stored and reported, no effect on the simulated values
        self.settings = {"SPEE": "MED", "AVER": "1", "RANG:AUTO": "ON", "TRIG": "INT"}
        for pattern, key, parse in (
            (
                ":SPEEd",
                "SPEE",
                lambda a: parse_choice(
                    a,
                    {
                        "FAST": "FAST",
                        "MED": "MED",
                        "MEDIUM": "MED",
                        "SLOW": "SLOW",
                        "SLOW2": "SLOW2",
                    },
                ),
            ),
            (":AVERaging", "AVER", lambda a: str(int(parse_number(a, minimum=1, maximum=256)))),
            (":RANGe:AUTO", "RANG:AUTO", lambda a: "ON" if parse_bool(a) else "OFF"),
            (
                ":TRIGger",
                "TRIG",
                lambda a: parse_choice(
                    a, {"INT": "INT", "INTERNAL": "INT", "EXT": "EXT", "EXTERNAL": "EXT"}
                ),
            ),
        ):
            c.add_command(
                pattern,
                set=lambda a, n, key=key, parse=parse: self.settings.__setitem__(key, parse(a)),
                get=lambda a, n, key=key: self.settings[key],
            )
        c.add_command("*TRG", set=lambda a, n: self._trigger(), locked=False)
        #: the last completed measurement: (frequency it was taken at, impedance, status)
        self.last: tuple[float, complex, int] | None = None

    #: :MEASure:ITEM order of the parameters (MR0 bits 0-7, MR1 bits 0-5)
    ITEM_ORDER = (
        ("Z", 0, 1), ("Y", 0, 2), ("PHAS", 0, 4), ("CS", 0, 8), ("CP", 0, 16), ("D", 0, 32),
        ("LS", 0, 64), ("LP", 0, 128), ("Q", 1, 1), ("RS", 1, 2), ("G", 1, 4), ("RP", 1, 8),
        ("X", 1, 16), ("B", 1, 32),
    )  # fmt: skip

    def _take(self, f: float) -> tuple[float, complex, int]:
        """One measurement at ``f``: takes at least two periods of simulated time."""
        self.cell.clock.sleep(max(2.0 / f, 5e-3))
        z = self._noisy(complex(self.cell.impedance(np.array([f]))[0]))
        status = 1 if self.faults.take("over_range", ":MEAS?") is not None else 0
        return f, z, status

    def _trigger(self) -> None:
        if self.settings["TRIG"] != "EXT":
            raise ScpiError(-200, "Execution error;*TRG needs :TRIGger EXTernal")
        self.last = self._take(self.frequency_hertz)

    def measure(self) -> str:
        if self.mode != "LCR":
            raise ScpiError(-200, "Execution error;not in LCR mode")
        if self.settings["TRIG"] == "INT":
            # free-running: the reply is the last *completed* measurement, which may have
            # begun before a :FREQ change; a new one starts at the present frequency
            previous, self.last = self.last, self._take(self.frequency_hertz)
            taken = previous if previous is not None else self.last
        else:
            if self.last is None:
                raise ScpiError(-200, "Execution error;no measurement (send *TRG)")
            taken = self.last
        f, z, status = taken
        names = [name for name, reg, bit in self.ITEM_ORDER if self.item[reg] & bit]
        if status:
            values = [IM3590_OVER_RANGE] * len(names)
        else:
            values = [nr3(self._value(name, z, f)) for name in names]
        fields = ([str(status)] if self.valid & 1 else []) + values
        if self.valid & 16:
            fields.append("0")  # panel number: no panel loaded
        return ",".join(fields)

    @staticmethod
    def _value(parameter: str, z: complex, f: float) -> float:
        w = 2 * math.pi * f
        y = 1 / z
        return {
            "Z": abs(z),
            "Y": abs(y),
            "PHAS": math.degrees(math.atan2(z.imag, z.real)),
            "RS": z.real,
            "X": z.imag,
            "RP": 1 / y.real if y.real else math.inf,
            "G": y.real,
            "B": y.imag,
            "CS": -1 / (w * z.imag) if z.imag else math.inf,
            "CP": y.imag / w,
            "LS": z.imag / w,
            "LP": -1 / (w * y.imag) if y.imag else math.inf,
            "D": abs(z.real / z.imag) if z.imag else math.inf,
            "Q": abs(z.imag / z.real) if z.real else math.inf,
        }[parameter]


class BT3562Simulator(_HiokiSerial):
    """Hioki BT3562 family: AC resistance at 1 kHz (the real part of the cell's impedance) and
    voltage, replies padded as the manual prints them. ``model`` picks the voltage ranges
    (BT3562A: 100 V; BT3563, BT3563-01, BT3563A: 300 V)."""

    driver = "bt3562"
    RESISTANCE_RANGES = tuple(BT_RESISTANCE_FORMATS)
    #: Readings up to this fraction of full scale are displayed; beyond: OvrRng.
    FULL_SCALE = 1.05

    def __init__(
        self,
        cell,
        *,
        name: str = "",
        faults=None,
        link_dir=None,
        noise_relative: float = 1e-3,
        model: str = "BT3562",
    ):
        if model not in BT_VOLTAGE_RANGES:
            raise ValueError(f"unknown BT356x model {model!r}")
        self.idn = f"HIOKI,{model},250654321,V1.10"
        self.model = model
        self.VOLTAGE_RANGES = BT_VOLTAGE_RANGES[model]
        super().__init__(
            cell, name=name, faults=faults, link_dir=link_dir, noise_relative=noise_relative
        )
        self.function = "RV"
        self.auto_range = True
        self.resistance_range = 3.0
        self.voltage_range = 6.0
        self.sample_rate = "MED"
        self.continuous = True
        self.settings_changed_at = 0.0  # simulated time of the last settings change
        c = self.commands
        c.add_command(":FUNCtion", set=self._set_function, get=lambda a, n: self.function)
        c.add_command(
            ":RESistance:RANGe",
            set=self._set_res_range,
            get=lambda a, n: nr3(self.resistance_range),
        )
        c.add_command(
            ":VOLTage:RANGe", set=self._set_volt_range, get=lambda a, n: nr3(self.voltage_range)
        )
        c.add_command(
            ":AUTorange",
            set=lambda a, n: self._changed(setattr(self, "auto_range", parse_bool(a))),
            get=lambda a, n: "ON" if self.auto_range else "OFF",
        )
        c.add_command(
            ":SAMPle:RATE",
            set=lambda a, n: self._changed(
                setattr(
                    self,
                    "sample_rate",
                    parse_choice(
                        a,
                        {
                            "EXF": "EXF",
                            "EXFAST": "EXF",
                            "FAST": "FAST",
                            "MED": "MED",
                            "MEDIUM": "MED",
                            "SLOW": "SLOW",
                        },
                    ),
                )
            ),
            get=lambda a, n: self.sample_rate,
        )
        c.add_command(
            ":INITiate:CONTinuous",
            set=lambda a, n: setattr(self, "continuous", parse_bool(a)),
            get=lambda a, n: "ON" if self.continuous else "OFF",
        )
        c.add_command(":READ", get=lambda a, n: self.read(), locked=False)
        c.add_command(":FETCh", get=lambda a, n: self.read(), locked=False)

    def _changed(self, _: object = None) -> None:
        self.settings_changed_at = self.cell.clock.now()

    def _set_function(self, args, n):
        self.function = parse_choice(
            args, {"RV": "RV", "RES": "RES", "RESISTANCE": "RES", "VOLT": "VOLT", "VOLTAGE": "VOLT"}
        )
        self._changed()

    def _set_res_range(self, args, n):
        value = parse_number(args)
        match = [r for r in self.RESISTANCE_RANGES if abs(r - value) <= 1e-9 * r]
        if not match:
            raise ScpiError(-222, f"Data out of range;{args}")
        self.resistance_range = match[0]
        self._changed()

    def _set_volt_range(self, args, n):
        value = parse_number(args)
        if value not in self.VOLTAGE_RANGES:
            raise ScpiError(-222, f"Data out of range;{args}")
        self.voltage_range = value
        self._changed()

    def _auto_ranges(self, resistance: float, voltage: float) -> tuple[float, float]:
        r_range = next(
            (r for r in self.RESISTANCE_RANGES if resistance <= r), self.RESISTANCE_RANGES[-1]
        )
        v_range = next(
            (v for v in self.VOLTAGE_RANGES if abs(voltage) <= v), self.VOLTAGE_RANGES[-1]
        )
        return r_range, v_range

    def read(self) -> str:
        self.cell.clock.sleep(
            {"EXF": 0.004, "FAST": 0.012, "MED": 0.035, "SLOW": 0.2}[self.sample_rate]
        )
        resistance = self._noisy(complex(self.cell.impedance(np.array([1000.0]))[0])).real
        voltage, _ = self.cell.measure()
        voltage += self.noise_relative * 1e-3 * float(self.cell.rng.normal())
        if self.auto_range:
            r_range, v_range = self._auto_ranges(resistance, voltage)
        else:
            r_range, v_range = self.resistance_range, self.voltage_range
        fault = self.faults.take("measurement_fault", ":READ?") is not None
        over = self.faults.take("over_range", ":READ?") is not None
        r_over = over or resistance > self.FULL_SCALE * r_range
        v_over = abs(voltage) > self.FULL_SCALE * v_range
        r_fmt, v_fmt = BT_RESISTANCE_FORMATS[r_range], BT_VOLTAGE_FORMATS[v_range]
        if fault:
            r_text = bt_marker(*r_fmt, fault=True, negative=False)
            v_text = bt_marker(*v_fmt, fault=True, negative=False)
        else:
            r_text = (
                bt_marker(*r_fmt, fault=False, negative=resistance < 0)
                if r_over
                else bt_field(resistance, *r_fmt)
            )
            v_text = (
                bt_marker(*v_fmt, fault=False, negative=voltage < 0)
                if v_over
                else bt_field(voltage, *v_fmt)
            )
        return {"RV": f"{r_text},{v_text}", "RES": r_text, "VOLT": v_text}[self.function]
