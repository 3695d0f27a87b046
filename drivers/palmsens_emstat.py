"""PalmSens EmStat potentiostats (EmStat4 LR/HR, EmStat Pico, MultiEmStat4, Nexus) via MethodSCRIPT.

Follows the PalmSens "MethodSCRIPT v1.6" communication protocol, an open text protocol over the
instrument's USB (FTDI virtual COM) or UART port, and PalmSens's published examples
(github.com/PalmSens/MethodSCRIPT_Examples, ``Example_Python/README.adoc``; the battery-cycling
template ``templates/battery_cycling.mscr`` shipped in the ``pypalmsens`` package). Everything
ends in LF.

Command table (MS = the MethodSCRIPT v1.6 manual; EX = the examples' README; BT = the battery
template):

- Baud rate: 921600 for EmStat4 and Nexus, 230400 for the EmStat Pico (EX, "Connecting to the
  device"); the default here is 921600 (the other defaults target an EmStat4): pass
  ``baud_rate=230400`` for a Pico.
- ``t`` -> ``t<firmware>`` and ``R...*`` (two lines); ``i`` -> ``i<serial number>``. MS.
- ``e``, the script lines, an empty line: run a script. The instrument answers ``e`` — printed
  in EX as ``eM0000`` with the first measurement loop's ``M<hex>`` on the same line, so the
  driver accepts ``e`` followed by anything but ``!`` — then streams data packages ``P...``,
  ``M<hex>`` at a measurement loop's start, ``*`` at its end, ``+`` at a plain loop's end, and an
  empty line when the script has finished. A rejected script or line answers ``!<4 hex digits>``
  (with ``: Line n, Col m``), raised as :class:`InstrumentCommandError`. MS; EX.
- ``Z`` aborts a running script (answer ``Z``; ``on_finished:`` still runs); ``Z!0006``: nothing
  was running. MS.
- Data packages (:mod:`cellbench.drivers.methodscript`): ``Pda84E63DAn;ba82AB973f,14,284`` is
  "applied potential 0.005137 V, WE current 2.8e-09 A, status UNDERLOAD, range 25 uA (high
  speed)" (EX). Potentiostatic loops (``meas_loop_ca``) report the *applied* potential as ``da``
  and the measured current as ``ba``; galvanostatic loops (``meas_loop_cp``) the measured
  potential as ``ab`` and the applied current as ``db``; the driver accepts ``ab``/``da`` for the
  potential and ``ba``/``db`` for the current. ``meas_loop_ocp`` reports ``ab``.
- Galvanostatic steps: ``set_pgstat_mode 6``, ``set_range_minmax ab``, ``set_range db <I>``,
  ``set_i <I>``, ``cell_on``, ``meas_loop_cp`` — as in every official galvanostatic example and BT
  (which uses mode 6 with ``set_range db``; earlier versions of this driver sent mode 2 with a
  ``ba`` range). Potentiostatic steps and EIS: ``set_pgstat_mode 2``/``3``, ``set_range ba``,
  ``set_e <E>`` before ``cell_on`` (BT: ``set_e potential_max`` then ``cell_on``).
- Every script the driver generates is accepted by PalmSens's own MethodSCRIPT grammar (the
  ANTLR parser in ``pypalmsens``; tested).

Not settled by a source we could read: whether ``set_i`` before ``cell_on`` is needed in mode 6
(BT relies on ``cell_on`` alone or ``cell_on ocp(...)``; the driver sends ``set_i`` with the
step's current, which the grammar accepts), and the EmStat4's exact ``set_max_bandwidth``
limits (40 Hz is used for steps, as before).

Roles. EIS is ``meas_loop_eis`` (potentiostatic; amplitude in V rms). A constant-current or
constant-voltage step is ``meas_loop_cp`` / ``meas_loop_ca`` running in the background for up to
``max_step_s``; :meth:`measure` returns the latest streamed package, so readings are at most one
``sample_interval_s`` old, and the |V| compliance (CC) or |I| limit (CV) is checked by the
script itself every sample (``breakloop``), i.e. within one sample interval — not a hardware
clamp. Once a limit has ended the script, :attr:`step_running` is False. :meth:`output_off`
aborts the script, whose ``on_finished: cell_off`` opens the cell. With the output off,
:meth:`measure` runs a short ``meas_loop_ocp``. The instrument has no one-command settings
outside scripts, so this driver declares no ``line_property``.

Polarity: the cell's positive terminal on WE (working + sense), negative on CE + RE. MethodSCRIPT
counts anodic (oxidising) WE current positive, which is then charge-positive as cellbench wants.
Several EmStats give several channels (one driver each); a MultiEmStat's channel is
``pgstat_channel``.
"""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import polars as pl

from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentCommandError,
    InstrumentError,
    InstrumentRangeError,
    InstrumentReplyError,
    InstrumentTimeout,
)
from cellbench.drivers.frequencies import log_frequencies
from cellbench.drivers.line_driver import LineDriver
from cellbench.drivers.methodscript import STATUS_OVERLOAD, Package, parse_package, si_literal
from cellbench.drivers.roles import Reading

EIS_FREQUENCY_RANGE_HERTZ = (1e-3, 200e3)
# Smallest |V| compliance of a CC step: a smaller one ends the step on the first sample.
MIN_VOLTAGE_LIMIT_VOLT = 1e-3


class PalmSensEmStat(LineDriver):
    """A PalmSens EmStat channel: :class:`SourceMeter` and :class:`ImpedanceAnalyzer`.

    Args:
        pgstat_channel: MultiEmStat channel (0 for single-channel instruments).
        max_current_ampere: largest current the model sources (EmStat4 HR 0.1 A, LR 0.03 A,
            Pico 0.003 A); also the current range set for CC/CV steps.
        max_voltage_volt: potential range limit, V (EmStat4 HR ±6 V, LR ±3 V, Pico ±1.7 V).
        sample_interval_s: interval between streamed readings during CC/CV steps, s.
        max_step_s: run time of a CC/CV script (the step ends earlier on output_off()), s.
    """

    model = "emstat"
    read_termination = "\n"
    write_termination = "\n"
    #: EmStat4 / Nexus (the EmStat Pico uses 230400: pass ``baud_rate=230400``)
    baud_rate = 921600

    def __init__(
        self,
        address: str,
        *,
        pgstat_channel: int = 0,
        max_current_ampere: float = 0.1,
        max_voltage_volt: float = 6.0,
        sample_interval_s: float = 1.0,
        max_step_s: float = 1e6,
        **kwargs,
    ):
        super().__init__(address, **kwargs)
        self.pgstat_channel = int(self.check_range("pgstat_channel", pgstat_channel, 0, 15, ""))
        self.max_current_ampere = self.check_range(
            "max_current_ampere", max_current_ampere, 1e-9, 1.0, "A"
        )
        self.max_voltage_volt = self.check_range(
            "max_voltage_volt", max_voltage_volt, 0.1, 10.0, "V"
        )
        self.sample_interval_s = self.check_range(
            "sample_interval_s", sample_interval_s, 1e-3, 3600.0, "s"
        )
        self.max_step_s = self.check_range("max_step_s", max_step_s, 1e-3, 1e9, "s")
        self._latest: Reading | None = None
        self._latest_at = 0.0  # time.monotonic() when _latest arrived
        self._identity = ""
        self._step_error: InstrumentError | None = None
        self._streaming = threading.Event()
        self._stream_thread: threading.Thread | None = None
        self._got_reading = threading.Condition()
        # Drop whatever a previous session left running (e.g. after a crash).
        self._abort_running()

    # --- plain commands --------------------------------------------------------------------
    def identify(self) -> str:
        """Firmware version and serial: ``"<firmware> <build> SN <serial>"``.

        While a CC/CV step runs, the identity read before is returned: asking the instrument
        would mean aborting the step.
        """
        if self._streaming.is_set() and self._identity:
            return self._identity
        with self.transport.lock:
            self._stop_stream()
            first = self._query("t")
            second = self._retrying(self.transport.read)
            if not first.startswith("t") or not second.endswith("*"):
                raise self._reply_error(f"unexpected version reply {first!r}, {second!r}", "t")
            serial = self._query("i")
            if not serial.startswith("i"):
                raise self._reply_error(f"unexpected serial reply {serial!r}", "i")
        self._identity = f"{first[1:]} {second[:-1].strip()} SN {serial[1:]}".strip()
        return self._identity

    def _abort_running(self) -> None:
        """Abort any running script and drain its output up to the end-of-script line."""
        with self.transport.lock:
            self._write("Z")
            deadline = time.monotonic() + self.timeout_s
            while time.monotonic() < deadline:
                try:
                    line = self.transport.read()
                except InstrumentTimeout:
                    return
                if line.startswith("Z!"):
                    return  # nothing was running
                if line == "Z":
                    self._drain_until_end(deadline)
                    return

    def _drain_until_end(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                if self.transport.read() == "":
                    return
            except InstrumentTimeout:
                return

    # --- scripts ---------------------------------------------------------------------------
    def _script_header(self, variables: str) -> list[str]:
        return [*(f"var {v}" for v in variables), f"set_pgstat_chan {self.pgstat_channel}"]

    def _send_script(self, lines: list[str]) -> None:
        """Send ``e``, the lines and the closing empty line; wait for the ``e`` acknowledgement."""
        command = "e"
        self.transport.write("e")
        for line in lines:
            self.transport.write(line)
        self.transport.write("")
        reply = self.transport.read()
        self._check_script_reply(reply, command, lines)
        # "e" alone, or "e" with the first loop's "M<hex>" on the same line ("eM0000", as
        # PalmSens's example output prints it)
        if not reply.startswith("e") or (len(reply) > 1 and not reply[1:].startswith("M")):
            raise self._reply_error(f"expected 'e' acknowledgement, got {reply!r}", command)

    def _start_script(self, lines: list[str]) -> None:
        """Send a script (again after a lost port); if its acknowledgement was lost or garbled
        the script may be running anyway, so abort it before raising."""
        try:
            self._retrying(lambda: self._send_script(lines))
        except (InstrumentTimeout, InstrumentReplyError):
            with contextlib.suppress(InstrumentError):
                self._abort_running()
            raise

    def _check_script_reply(self, reply: str, command: str, lines: list[str]) -> None:
        if "!" in reply[:2]:
            detail = reply[reply.index("!") :]
            where = ""
            if "Line" in detail:
                with contextlib.suppress(ValueError, IndexError):
                    number = int(detail.split("Line")[1].split(",")[0])
                    # line numbers count the script lines after "e"
                    where = f"; script line {number}: {lines[number - 1]!r}"
            raise InstrumentCommandError(
                f"instrument rejected the script with {detail}{where}",
                instrument=self.name,
                address=self.address,
                command=command,
            )

    def _package(self, line: str, command: str) -> Package:
        try:
            package = parse_package(line)
        except ValueError as exc:
            raise self._reply_error(str(exc), command) from None
        if package.status & STATUS_OVERLOAD:
            raise InstrumentRangeError(
                f"measurement overload (status flags {package.status:#x}); increase the range",
                instrument=self.name,
                address=self.address,
                command=command,
            )
        return package

    def run_script(
        self,
        lines: list[str],
        *,
        timeout_per_line_s: list[float] | None = None,
        line_timeout_s: float | None = None,
    ) -> list[Package]:
        """Run a script to its end; return its data packages. Waits at most ``line_timeout_s``
        (default: the driver timeout) for each line of output."""
        command = "e"
        wait = line_timeout_s or self.timeout_s
        with self.transport.lock:
            self._stop_stream()
            self._start_script(lines)
            packages: list[Package] = []
            saved = self.transport.timeout_s
            try:
                while True:
                    index = len(packages)
                    per_line = (
                        timeout_per_line_s[index]
                        if timeout_per_line_s is not None and index < len(timeout_per_line_s)
                        else wait
                    )
                    self.transport.timeout_s = max(saved, per_line)
                    line = self.transport.read()
                    if line == "":
                        return packages
                    if line.startswith("P"):
                        packages.append(self._package(line, command))
                    elif "!" in line[:2]:
                        self._check_script_reply(line, command, lines)
                    elif line[:1] not in ("M", "*", "+", "-", "T", "L"):
                        raise self._reply_error(f"unexpected line {line!r}", command)
            except InstrumentError:
                self.transport.timeout_s = saved
                with contextlib.suppress(InstrumentError):
                    self._abort_running()
                raise
            finally:
                self.transport.timeout_s = saved

    # --- ImpedanceAnalyzer -----------------------------------------------------------------
    def eis_script(
        self,
        frequencies_hertz: tuple[float, float],
        count: int,
        amplitude_volt: float,
        dc_volt: float,
    ) -> list[str]:
        start, stop = frequencies_hertz
        return [
            *self._script_header("frj"),
            "set_pgstat_mode 3",
            "set_max_bandwidth 400k",
            f"set_range ba {si_literal(self.max_current_ampere)}",
            f"set_autoranging ba 1n {si_literal(self.max_current_ampere)}",
            f"set_e {si_literal(dc_volt)}",
            "cell_on",
            f"meas_loop_eis f r j {si_literal(amplitude_volt)} {si_literal(start)} "
            f"{si_literal(stop)} {count}i {si_literal(dc_volt)}",
            "  pck_start",
            "    pck_add f",
            "    pck_add r",
            "    pck_add j",
            "  pck_end",
            "endloop",
            "on_finished:",
            "  cell_off",
        ]

    def sweep(
        self,
        start_hertz: float,
        stop_hertz: float,
        points_per_decade: int,
        amplitude: float,
        *,
        amplitude_unit: str = "V",
        dc_bias_volt: float | None = None,
    ) -> pl.DataFrame:
        """Potentiostatic EIS from start to stop; frame of frequency_hertz, z_real_ohm, z_imag_ohm.

        A running CC/CV step is ended first (one channel runs one script at a time).

        ``amplitude`` in V rms (``amplitude_unit="V"``); ``dc_bias_volt`` is the DC potential of
        WE vs RE (default 0 V vs RE, i.e. the script's ``set_e``; use the OCV for a cell).
        """
        if amplitude_unit.upper() != "V":
            raise ArgumentRangeError(
                f"amplitude unit {amplitude_unit!r}: potentiostatic EIS takes V rms",
                instrument=self.name,
                address=self.address,
            )
        self.check_range("start frequency", start_hertz, *EIS_FREQUENCY_RANGE_HERTZ, "Hz")
        self.check_range("stop frequency", stop_hertz, *EIS_FREQUENCY_RANGE_HERTZ, "Hz")
        self.check_count("points per decade", points_per_decade, 1, 100)
        self.check_range("AC amplitude", amplitude, 1e-3, 0.25, "V rms")
        dc = 0.0 if dc_bias_volt is None else dc_bias_volt
        self.check_range("DC potential", dc, -self.max_voltage_volt, self.max_voltage_volt, "V")
        frequencies = log_frequencies(start_hertz, stop_hertz, int(points_per_decade))
        script = self.eis_script((start_hertz, stop_hertz), len(frequencies), amplitude, dc)
        # each point takes a few periods of its frequency
        timeouts = [self.timeout_s + 3.0 / f for f in frequencies]
        packages = self.run_script(script, timeout_per_line_s=timeouts)
        rows = []
        for package in packages:
            f, r, j = package.get("dc"), package.get("cc"), package.get("cd")
            if f is None or r is None or j is None:
                raise self._reply_error(f"EIS package without dc/cc/cd: {package}", "e")
            rows.append((f.value, r.value, j.value))
        if len(rows) != len(frequencies):
            raise self._reply_error(
                f"EIS returned {len(rows)} points, expected {len(frequencies)}", "e"
            )
        data = np.array(rows, dtype=float)
        return pl.DataFrame(
            {
                "frequency_hertz": data[:, 0],
                "z_real_ohm": data[:, 1],
                "z_imag_ohm": data[:, 2],
            }
        )

    # --- SourceMeter -----------------------------------------------------------------------
    def _loop_body(self, loop: str, limit_lines: list[str]) -> list[str]:
        return [
            loop,
            "  pck_start",
            "    pck_add p",
            "    pck_add c",
            "  pck_end",
            *limit_lines,
            "endloop",
            "on_finished:",
            "  cell_off",
        ]

    def cc_script(self, current_ampere: float, voltage_limit_volt: float) -> list[str]:
        """Chronopotentiometry until |V| exceeds the compliance ``voltage_limit_volt`` (> 0).

        Galvanostatic mode 6 with the applied-current range set by ``set_range db`` and the
        potential range by ``set_range_minmax ab`` (PalmSens's battery-cycling template); the
        packages carry the measured potential ``ab`` and the applied current ``db``.

        The window is symmetric, like a source-measure unit's compliance: a signed bound on
        discharge (``p < limit``) would end the step at once whenever the cell sits above it —
        e.g. a symmetric Li|SE|Li cell near 0 V given the engine's positive compliance.
        """
        limit = abs(voltage_limit_volt)
        i_range = si_literal(max(abs(current_ampere), 1e-9))
        return [
            *self._script_header("pc"),
            "set_pgstat_mode 6",
            "set_max_bandwidth 40",
            f"set_range_minmax ab {si_literal(-limit)} {si_literal(limit)}",
            f"set_range db {i_range}",
            f"set_i {si_literal(current_ampere)}",
            "cell_on",
            *self._loop_body(
                f"meas_loop_cp p c {si_literal(current_ampere)} "
                f"{si_literal(self.sample_interval_s)} {si_literal(self.max_step_s)}",
                [
                    f"  if p > {si_literal(limit)}",
                    "    breakloop",
                    "  endif",
                    f"  if p < {si_literal(-limit)}",
                    "    breakloop",
                    "  endif",
                ],
            ),
        ]

    def cv_script(self, voltage_volt: float, current_limit_ampere: float) -> list[str]:
        """Chronoamperometry at ``voltage_volt`` (``set_e`` before ``cell_on``); ends when
        |current| exceeds the limit. Packages carry the applied potential ``da`` and the
        measured current ``ba``."""
        limit = si_literal(current_limit_ampere)
        i_max = si_literal(self.max_current_ampere)
        return [
            *self._script_header("pc"),
            "set_pgstat_mode 2",
            "set_max_bandwidth 40",
            f"set_range ba {i_max}",
            f"set_autoranging ba {i_max} {i_max}",
            f"set_e {si_literal(voltage_volt)}",
            "cell_on",
            *self._loop_body(
                f"meas_loop_ca p c {si_literal(voltage_volt)} "
                f"{si_literal(self.sample_interval_s)} {si_literal(self.max_step_s)}",
                [
                    f"  if c > {limit}",
                    "    breakloop",
                    "  endif",
                    f"  if c < {si_literal(-current_limit_ampere)}",
                    "    breakloop",
                    "  endif",
                ],
            ),
        ]

    def source_current(self, current_ampere: float, *, voltage_limit_volt: float) -> None:
        """Output on at constant current (charge positive) until output_off() or |V| passes the
        compliance ``voltage_limit_volt`` (a magnitude, as for every :class:`SourceMeter`)."""
        i_max, v_max = self.max_current_ampere, self.max_voltage_volt
        current = self.check_range("current", current_ampere, -i_max, i_max, "A")
        limit = self.check_range(
            "voltage limit", voltage_limit_volt, MIN_VOLTAGE_LIMIT_VOLT, v_max, "V"
        )
        self._start_step(self.cc_script(current, limit))

    def source_voltage(self, voltage_volt: float, *, current_limit_ampere: float) -> None:
        """Output on at constant voltage (WE vs RE) with a per-sample current limit."""
        i_max, v_max = self.max_current_ampere, self.max_voltage_volt
        voltage = self.check_range("voltage", voltage_volt, -v_max, v_max, "V")
        limit = self.check_range("current limit", current_limit_ampere, 1e-9, i_max, "A")
        self._start_step(self.cv_script(voltage, limit))

    def _start_step(self, script: list[str]) -> None:
        with self.transport.lock:
            self._stop_stream()
            self._latest = None
            self._step_error = None
            self._start_script(script)
            self._streaming.set()
            self._stream_thread = threading.Thread(
                target=self._stream, name=f"emstat-{self.name}", daemon=True
            )
            self._stream_thread.start()

    def _stream(self) -> None:
        """Read the running step's packages; keep the latest reading."""
        while self._streaming.is_set():
            try:
                with self.transport.lock:
                    if not self._streaming.is_set():
                        return
                    saved = self.transport.timeout_s
                    self.transport.timeout_s = 0.05  # short: lets other commands interleave
                    try:
                        line = self.transport.read()
                    finally:
                        self.transport.timeout_s = saved
            except InstrumentTimeout:
                continue
            except InstrumentError as exc:
                self._step_error = exc
                self._streaming.clear()
                break
            if line == "":
                self._streaming.clear()  # script ended: limit reached, run time over or aborted
                break
            if line.startswith("P"):
                try:
                    package = self._package(line, "e")
                except InstrumentError as exc:
                    self._step_error = exc
                    continue
                # potential: measured (ab, galvanostatic) or applied (da, potentiostatic);
                # current: measured (ba) or applied (db)
                p = package.get("ab") or package.get("da")
                c = package.get("ba") or package.get("db")
                if p is None or c is None:
                    continue
                with self._got_reading:
                    self._latest = Reading(p.value, c.value)
                    self._latest_at = time.monotonic()
                    self._got_reading.notify_all()
        with self._got_reading:
            self._got_reading.notify_all()

    def _stop_stream(self) -> None:
        """End a running step: stop its reader, abort the script (errors propagate: a step that
        cannot be aborted must not go unnoticed)."""
        thread = self._stream_thread
        if thread is None:
            return
        self._streaming.clear()
        if thread is not threading.current_thread():
            # the reader holds the lock for at most 50 ms at a time
            with _released(self.transport.lock):
                thread.join(timeout=1.0)
        self._stream_thread = None
        # also after a lost port: the instrument keeps running its script on its own
        self._abort_running()

    @property
    def step_running(self) -> bool:
        """True while a CC/CV script is running (False once its limit ended it)."""
        return self._streaming.is_set()

    def measure(self) -> Reading:
        """Latest reading of the running step, or the open-circuit voltage when off."""
        error = self._step_error
        if error is not None:
            self._step_error = None
            raise error
        if self._streaming.is_set():
            deadline = time.monotonic() + self.timeout_s + self.sample_interval_s
            with self._got_reading:
                while self._latest is None and self._streaming.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise InstrumentTimeout(
                            f"no reading within {self.timeout_s + self.sample_interval_s:g} s "
                            "of the running step",
                            instrument=self.name,
                            address=self.address,
                            command="e",
                        )
                    self._got_reading.wait(remaining)
            if self._step_error is not None:
                error, self._step_error = self._step_error, None
                raise error
            if self._latest is not None:
                age = time.monotonic() - self._latest_at
                if age > self.timeout_s + self.sample_interval_s:
                    raise InstrumentTimeout(
                        f"the running step sent no reading for {age:.1f} s "
                        f"(expected one every {self.sample_interval_s:g} s)",
                        instrument=self.name,
                        address=self.address,
                        command="e",
                    )
                return self._latest
        return self.measure_ocv()

    def ocp_script(self) -> list[str]:
        return [
            *self._script_header("p"),
            "set_pgstat_mode 2",
            "set_max_bandwidth 40",
            "meas_loop_ocp p 100m 200m",
            "  pck_start",
            "    pck_add p",
            "  pck_end",
            "endloop",
        ]

    def measure_ocv(self) -> Reading:
        """Open-circuit potential (WE vs RE), V, with the cell off; current 0."""
        packages = self.run_script(self.ocp_script())
        values = [pkg.get("ab") for pkg in packages if pkg.get("ab") is not None]
        if not values:
            raise self._reply_error("OCP script returned no potential", "e")
        return Reading(values[-1].value, 0.0)

    def output_off(self) -> None:
        """Abort the running step; the script's on_finished block turns the cell off."""
        with self.transport.lock:
            self._latest = None
            if self._stream_thread is not None:
                self._stop_stream()
            else:
                self._abort_running()

    def safe_state(self) -> None:
        """Abort any step (cell off). If the port is lost, the error propagates: the engine
        must know the cell may still be driven until the script's run time ends."""
        self.output_off()

    def close(self) -> None:
        with contextlib.suppress(InstrumentError):
            self._stop_stream()
        super().close()


@contextlib.contextmanager
def _released(lock: threading.RLock):
    """Temporarily release a re-entrant lock held (possibly several times) by this thread."""
    depth = 0
    while True:
        try:
            lock.release()
            depth += 1
        except RuntimeError:
            break
    try:
        yield
    finally:
        for _ in range(depth):
            lock.acquire()
