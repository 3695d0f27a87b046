"""Simulated PalmSens EmStat4 running MethodSCRIPT on a pseudo-terminal.

Packages follow PalmSens's examples: ``meas_loop_ca`` reports the applied potential ``da`` and
the measured current ``ba``, ``meas_loop_cp`` the measured potential ``ab`` and the applied
current ``db``, ``meas_loop_ocp`` ``ab``; the pgstat mode and the set point sent before
``cell_on`` are recorded per loop (:attr:`EmStatSimulator.loop_setups`).

Understands the commands :mod:`cellbench.drivers.palmsens_emstat` documents (``t i v Z e``) and
executes the subset of MethodSCRIPT a potentiostat driver needs: ``var``, the ``set_*``
configuration commands, ``cell_on``/``cell_off``, ``meas_loop_cp``, ``meas_loop_ca``,
``meas_loop_ocp``, ``meas_loop_eis`` with ``pck_start``/``pck_add``/``pck_end``,
``if <var> <op> <literal>``/``breakloop``/``endif`` inside loops, and ``on_finished:``.
The script runs in its own thread against the shared cell on its simulated clock; streamed
packages are paced at least ``min_package_wall_s`` apart in wall time so a fast clock does not
flood the port (the simulated time between them is then larger than the script's interval).

Faults: ``over_range`` flags the next data package OVERLOAD (status 0x2); ``error_queue`` rejects
the next script with ``!4004``; the wire faults apply to command replies (``e``, ``t``, ...).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

from cellbench.drivers.methodscript import STATUS_OVERLOAD, encode_package, parse_si_literal
from cellbench.drivers.sim.serial_server import SerialSimulator

# output variable types of each measurement loop, in argument order: a potentiostatic loop
# reports the applied potential (da) and the measured current (ba), a galvanostatic loop the
# measured potential (ab) and the applied current (db)
_LOOP_OUTPUTS = {
    "meas_loop_cp": ("ab", "db"),
    "meas_loop_ca": ("da", "ba"),
    "meas_loop_ocp": ("ab",),
    "meas_loop_eis": ("dc", "cc", "cd"),
}
_LOOP_ARGS = {"meas_loop_cp": 3, "meas_loop_ca": 3, "meas_loop_ocp": 2, "meas_loop_eis": 5}
_CONFIG = {
    "set_pgstat_chan",
    "set_pgstat_mode",
    "set_max_bandwidth",
    "set_range",
    "set_range_minmax",
    "set_autoranging",
    "set_e",
    "set_i",
    "set_acquisition_frac",
}
_BODY = {"pck_start", "pck_add", "pck_end", "if", "endif", "breakloop"}


class ScriptError(Exception):
    def __init__(self, line: int, column: int = 1, code: int = 0x4004):
        super().__init__(f"!{code:04X}: Line {line}, Col {column}")


@dataclass
class _Statement:
    number: int  # 1-based line number in the script
    words: list[str]
    body: list[_Statement] = field(default_factory=list)


def parse_script(lines: list[str]) -> tuple[list[_Statement], list[_Statement]]:
    """Main statements and the on_finished block; raises ScriptError at the offending line."""
    main: list[_Statement] = []
    finished: list[_Statement] = []
    target = main
    loop: _Statement | None = None
    variables: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        words = text.split()
        command = words[0]
        if command == "on_finished:":
            if loop is not None:
                raise ScriptError(number)
            target = finished
            continue
        if command == "var":
            if len(words) != 2:
                raise ScriptError(number, len(command) + 2)
            variables.add(words[1])
            continue
        if command in _LOOP_OUTPUTS:
            outputs = len(_LOOP_OUTPUTS[command])
            if loop is not None or len(words) != 1 + outputs + _LOOP_ARGS[command]:
                raise ScriptError(number, len(command) + 2)
            for name in words[1 : 1 + outputs]:
                if name not in variables:
                    raise ScriptError(number, text.index(name) + 1, 0x4005)
            try:
                [parse_si_literal(w) for w in words[1 + outputs :]]
            except ValueError:
                raise ScriptError(number, len(command) + 2, 0x4006) from None
            loop = _Statement(number, words)
            target.append(loop)
            continue
        if command == "endloop":
            if loop is None:
                raise ScriptError(number)
            loop = None
            continue
        if command in _BODY:
            if loop is None:
                raise ScriptError(number)
            loop.body.append(_Statement(number, words))
            continue
        if command in _CONFIG or command in ("cell_on", "cell_off"):
            target.append(_Statement(number, words))
            continue
        raise ScriptError(number)
    if loop is not None:
        raise ScriptError(len(lines))
    return main, finished


class EmStatSimulator(SerialSimulator):
    """EmStat4 HR with one channel on the shared cell."""

    driver = "emstat"
    line_end = b"\n"
    command_end = b"\n"
    firmware = ("tes4_hr 1.3", "R2024-01-01*")
    serial_number = "ES4HR24SIM001"

    def __init__(
        self,
        cell,
        *,
        noise_relative: float = 1e-3,
        min_package_wall_s: float = 0.01,
        name: str = "",
        faults=None,
        link_dir=None,
    ):
        super().__init__(cell, name=name, faults=faults, link_dir=link_dir)
        self.noise_relative = float(noise_relative)
        self.min_package_wall_s = float(min_package_wall_s)
        self._collecting: list[str] | None = None
        self._pending: tuple[list[_Statement], list[_Statement]] | None = None
        self._abort = threading.Event()
        self._runner: threading.Thread | None = None
        self.current_limit_ampere = 0.1
        self.scripts: list[list[str]] = []  # every script received, for tests
        #: (pgstat mode, set point sent before cell_on) of every measurement loop run
        self.loop_setups: list[tuple[str, int | None, str | None]] = []
        self._mode: int | None = None
        self._setpoint: str | None = None

    @property
    def running(self) -> bool:
        return self._runner is not None and self._runner.is_alive()

    def handle(self, line: str) -> str | list[str] | None:
        if self._collecting is not None:
            if line.strip():
                self._collecting.append(line)
                return None
            lines, self._collecting = self._collecting, None
            self.scripts.append(lines)
            if self.faults.take("error_queue", "e") is not None:
                return "e!4004: Line 1, Col 1"
            try:
                self._pending = parse_script(lines)
            except ScriptError as exc:
                return f"e{exc}"
            return "e"
        command = line.strip()
        if not command:
            return None
        if command == "t":
            return list(self.firmware)
        if command == "i":
            return f"i{self.serial_number}"
        if command == "v":
            return "v0016"
        if command == "Z":
            if not self.running:
                return "Z!0006"
            self._abort.set()
            return "Z"
        if command == "e":
            if self.running and self._runner is not None:
                # The script thread sends its end line just before it exits: a host that
                # starts the next script on that line must not see a phantom "busy".
                self._runner.join(timeout=0.2)
            if self.running:
                return "e!0003"  # busy
            self._collecting = []
            return None
        return f"{command[0]}!0001"

    def fault_key(self, line: str) -> str:
        # the empty line that ends a script is answered by "e": faults on "e" apply to it
        return "e" if not line.strip() else line

    def _dispatch(self, line: str) -> None:
        super()._dispatch(line)
        if self._pending is not None:  # start after the "e" acknowledgement went out
            script, self._pending = self._pending, None
            self._abort.clear()
            self._runner = threading.Thread(
                target=self._run, args=script, name=f"sim-{self.name}-script", daemon=True
            )
            self._runner.start()

    # --- execution ---------------------------------------------------------------------------
    def _run(self, main: list[_Statement], finished: list[_Statement]) -> None:
        try:
            for statement in main:
                if self._abort.is_set():
                    break
                self._execute(statement)
        finally:
            for statement in finished:
                self._execute(statement)
            self.send("")  # end of script

    def _execute(self, statement: _Statement) -> None:
        command, args = statement.words[0], statement.words[1:]
        if command == "set_pgstat_mode" and args:
            self._mode = int(parse_si_literal(args[0]))
        elif command in ("set_e", "set_i") and args:
            self._setpoint = command
        elif command == "cell_on" and self._setpoint is None:
            self._setpoint = "none"
        if command == "cell_off":
            self.cell.open_circuit()
            self._setpoint = None
        elif command == "set_range" and args and args[0] == "ba":
            self.current_limit_ampere = abs(parse_si_literal(args[1]))
        elif command in _LOOP_OUTPUTS:
            self._loop(statement)

    def _loop(self, loop: _Statement) -> None:
        command, args = loop.words[0], loop.words[1:]
        outputs = _LOOP_OUTPUTS[command]
        names = args[: len(outputs)]
        values = [parse_si_literal(a) for a in args[len(outputs) :]]
        self.loop_setups.append((command, self._mode, self._setpoint))
        self.send("M0000")
        if command == "meas_loop_eis":
            self._eis(loop, names, values)
        else:
            self._timed(loop, command, names, values)
        self.send("*")

    def _timed(self, loop: _Statement, command: str, names: list[str], values: list[float]) -> None:
        if command == "meas_loop_cp":
            level, interval, run = values
            self.cell.set_current(level)
        elif command == "meas_loop_ca":
            level, interval, run = values
            self.cell.set_voltage(level, self.current_limit_ampere)
        else:
            interval, run = values
            self.cell.open_circuit()
        clock = self.cell.clock
        start = clock.now()
        next_sample = start + interval
        while not self._abort.is_set():
            wait = max(clock.wall_seconds(next_sample - clock.now()), self.min_package_wall_s)
            if self._abort.wait(wait):
                break
            voltage, current = self.cell.measure()
            level = values[0] if command != "meas_loop_ocp" else 0.0
            sample = {"ab": voltage, "ba": current, "da": level, "db": level}
            env = {name: sample[vt] for name, vt in zip(names, _LOOP_OUTPUTS[command], strict=True)}
            types = dict(zip(names, _LOOP_OUTPUTS[command], strict=True))
            if self._body(loop.body, env, types):
                break
            next_sample = max(next_sample + interval, clock.now())
            if clock.now() - start >= run:
                break

    def _eis(self, loop: _Statement, names: list[str], values: list[float]) -> None:
        _amplitude, f_start, f_end, count, _dc = values
        frequencies = np.logspace(math.log10(f_start), math.log10(f_end), max(1, int(count)))
        types = dict(zip(names, _LOOP_OUTPUTS["meas_loop_eis"], strict=True))
        for f in frequencies:
            wall = max(self.cell.clock.wall_seconds(max(3.0 / f, 0.01)), 0.0)
            if self._abort.wait(wall):
                break
            z = complex(self.cell.impedance(np.array([f]))[0])
            if self.noise_relative > 0:
                with self.cell.lock:
                    n = self.cell.rng.normal(0.0, self.noise_relative, 2)
                z *= complex(1.0 + n[0], n[1])
            env = dict(zip(names, (float(f), z.real, z.imag), strict=True))
            if self._body(loop.body, env, types):
                break

    def _body(self, body: list[_Statement], env: dict[str, float], types: dict[str, str]) -> bool:
        """Run a loop body once; True if it broke out of the loop."""
        package: list[tuple[str, float]] | None = None
        skipping = False
        for statement in body:
            command, args = statement.words[0], statement.words[1:]
            if command == "endif":
                skipping = False
            elif skipping:
                continue
            elif command == "if":
                name, op, literal = args
                value, bound = env.get(name, math.nan), parse_si_literal(literal)
                holds = {
                    "<": value < bound,
                    ">": value > bound,
                    "<=": value <= bound,
                    ">=": value >= bound,
                    "==": value == bound,
                    "!=": value != bound,
                }[op]
                skipping = not holds
            elif command == "breakloop":
                return True
            elif command == "pck_start":
                package = []
            elif command == "pck_add" and package is not None:
                name = args[0]
                package.append((types.get(name, "aa"), env.get(name, math.nan)))
            elif command == "pck_end" and package is not None:
                status = STATUS_OVERLOAD if self.faults.take("over_range", "P") else 0
                self.send(encode_package(package, status=status))
                package = None
        return False

    def stop(self) -> None:
        self._abort.set()
        if self._runner is not None:
            self._runner.join(timeout=2.0)
        super().stop()

    close = stop
