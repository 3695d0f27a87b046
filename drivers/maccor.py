"""Maccor cycler channels over MacNet: JSON-RPC on TCP 57570, binary messages on TCP 57560.

One :class:`MaccorChannel` is one channel of a Maccor cycler (channels are numbered from 0, as
in Maccor's MacNet help document carried by the ``pymacnet`` repository; Maccor's own software
shows them from 1). It fills the ``source`` role in *direct control* (the engine sets the
current or voltage in real time, with the channel's own safety limits programmed from the
protocol's, so that a dead logger cannot take the cell past them) or, with
``control = "monitor"``, only reads a channel running Maccor's own procedure (harvest).

Command table (FClass, FNum; message shapes as printed in the MacNet help document and sent by
``pymacnet`` 0.0.2 ``MaccorInterface`` / 1.1 ``ChannelInterface``):

=============  ==========  ===================================================================
(4, 7)         JSON        read status: ``Stat`` (0 Available, 2 Active, 3 Suspended,
                           4 Completed, 5 Problem ...), ``Cycle``, ``Step``, ``TestTime``,
                           ``StepTime``, ``Capacity``, ``Energy``, ``Current``, ``Voltage``
(4, 4)         JSON        auxiliary readings ``AuxValues``
(6, 2)         JSON        start a test with a stored procedure (``ProcName``, ``TestName``,
                           ``Crate``) -> ``Result`` ``"OK"``
(6, 5)         JSON        reset the channel (ends its test)
(6, 7)         JSON        start direct mode (``Current``, ``Voltage``, ``Power``, ``ChMode``
                           C/D, ``DataTime``/``DataV``/``DataI`` record criteria)
(6, 8)         JSON        set direct output (C or D); the help document notes ``ChMode`` R
                           (rest) does not work over JSON ...
(6, 8)         binary      ... so rest goes to the binary port: little-endian ``<HHHHffffBB``
                           (FClass, FNum, Chan, 18, Current, Voltage, Power, Resistance,
                           CurrentRange, ``ord('R')``), as ``pymacnet`` sends it
(6, 9)         JSON        set test variable ``VarNum`` (1..16) to ``Value``
(6, 10)        JSON        channel safety limits ``VSafeMax``, ``VSafeMin``, ``ISafeChg``,
                           ``ISafeDis``, ``PBatSafeChg``, ``PBatSafeDis``; echoed back
=============  ==========  ===================================================================

JSON messages carry no terminator: a reply is one complete JSON object (read by
:class:`JsonSocketTransport`, which frames on balanced braces). What the help document does not
settle, and the driver therefore tolerates: whether the status ``Current`` is signed (with
``unsigned_current = true`` the sign is taken from the mode the driver set) and the content of
the binary port's reply (any reply of at least 8 bytes is accepted; a reply whose 4th 16-bit
word is non-zero is a refusal).
"""

from __future__ import annotations

import itertools
import json
import math
import struct
import time
from dataclasses import dataclass
from typing import Any

from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentCommandError,
    InstrumentConnectionError,
    InstrumentReplyError,
    InterlockError,
)
from cellbench.drivers.roles import CyclerPoll, CyclerRecord, Reading
from cellbench.drivers.socket_transport import SocketTransport
from cellbench.drivers.transport import Transport, _socket_endpoint, json_object_end

JSON_PORT = 57570
BINARY_PORT = 57560

#: ``Stat`` codes of the read-status reply (MacNet help document)
STATUS_NAMES: dict[int, str] = {
    0: "Available",
    1: "Selected",
    2: "Active",
    3: "Suspended",
    4: "Completed",
    5: "Problem",
    6: "Not/Avl",
    7: "Reset",
    8: "Start",
    9: "PWR Fail",
    10: "No Cntllr",
    11: "ShutDown",
    12: "Starting",
    13: "Blocked",
    14: "Waiting",
    15: "FRA",
    16: "Rem Maint",
}
#: states in which the channel has stopped on a fault of its own (safety limit, hardware)
FAULT_STATES = frozenset({3, 5, 9, 10, 11})
#: reply codes of (6, 8) set direct output
DIRECT_RESULTS = {
    0: "OK",
    1: "illegal system type (direct mode works only on type 0 systems)",
    2: "the channel is not active",
    3: "command sent too fast (at least 100 ms between commands)",
    4: "direct mode is not active",
    5: "direct mode is not ready yet",
}
_BINARY_REST = struct.Struct("<HHHHffffBB")
_BINARY_REPLY = struct.Struct("<HHHH")


class JsonSocketTransport(SocketTransport):
    """A raw TCP socket whose replies are whole JSON objects without a terminator.

    Everything else (timeouts, ``TCP_NODELAY``, lost-connection detection, reconnect with
    back-off, late replies discarded) is :class:`SocketTransport`'s.
    """

    def __init__(self, address: str, **kwargs: Any):
        kwargs.setdefault("read_termination", "}")  # unused: objects are framed by braces
        kwargs.setdefault("write_termination", "")
        kwargs.setdefault("encoding", "utf-8")
        super().__init__(address, **kwargs)

    def _receive_line(self, timeout_s: float) -> bytes:
        return self._receive_framed(_json_frame, timeout_s)


def _json_frame(buffer: bytearray) -> tuple[int, int, int] | None:
    """The first complete JSON object in ``buffer`` as (start, end, used) (bytes before its
    opening brace go with it), else None."""
    end = json_object_end(buffer)
    return None if end is None else (buffer.find(b"{"), end, end)


@dataclass(frozen=True)
class MaccorStatus:
    """One channel's (4, 7) status. Units: V, A (positive on charge), s, Ah, Wh."""

    channel: int
    stat: int
    cycle: int
    step: int
    test_time_second: float
    step_time_second: float
    capacity_ampere_hour: float
    energy_watt_hour: float
    current_ampere: float
    voltage_volt: float
    tester_time: str = ""

    @property
    def state(self) -> str:
        return STATUS_NAMES.get(self.stat, f"status {self.stat}")

    @property
    def running(self) -> bool:
        return self.stat == 2

    @property
    def faulted(self) -> bool:
        return self.stat in FAULT_STATES


class MaccorChannel:
    """One Maccor channel over MacNet (``driver = "maccor"``).

    Args:
        address: the MacNet JSON server, ``TCPIP::host::57570::SOCKET``.
        channel: the channel, from 0 (MacNet numbering).
        binary_port: the binary server's port (default: the JSON port minus 10, as 57560/57570).
        control: ``"direct"`` (a source the engine drives) or ``"monitor"`` (read only; never
            starts, changes or stops the channel's test).
        test_name: data file name of a direct-mode test (``"Random"``: Maccor picks one).
        data_time_s / data_dv_volt / data_di_ampere: Maccor's own record criteria in direct mode.
        current_range: 1..4, or None to pick by magnitude (the thresholds ``pymacnet`` uses).
        power_limit_watt: the channel's power safety limit.
        unsigned_current: the status ``Current`` is a magnitude; take the sign from the mode set.
        end_test_on_close: reset (end) a direct-mode test this driver started when it closes.
        refresh_s: re-send the present output when it is older than this (wall s) at a
            measurement, so that a MacNet direct-mode watchdog (``MacNetDirectModeWD``, set it
            above ``refresh_s`` + the sample interval) suspends the channel only when the
            logger is gone. None: never.
    """

    model = "Maccor MacNet channel"
    read_termination = "}"
    write_termination = ""

    def __init__(
        self,
        address: str,
        *,
        name: str = "",
        timeout_s: float = 2.0,
        transport: Transport | None = None,
        binary_transport: Transport | None = None,
        channel: int = 0,
        binary_port: int | None = None,
        control: str = "direct",
        test_name: str = "Random",
        data_time_s: float = 1.0,
        data_dv_volt: float = 0.0,
        data_di_ampere: float = 0.0,
        current_range: int | None = None,
        power_limit_watt: float = 50.0,
        unsigned_current: bool = False,
        end_test_on_close: bool = True,
        refresh_s: float | None = None,
    ):
        self.name = name or f"maccor{channel}"
        self.address = address
        self.timeout_s = float(timeout_s)
        if control not in ("direct", "monitor"):
            raise ArgumentRangeError(
                f'control must be "direct" or "monitor", got {control!r}',
                instrument=self.name,
                address=address,
            )
        if int(channel) != channel or not 0 <= int(channel) <= 65534:
            raise ArgumentRangeError(
                f"channel must be a whole number from 0 (MacNet numbering), got {channel!r}",
                instrument=self.name,
                address=address,
            )
        if current_range is not None and current_range not in (1, 2, 3, 4):
            raise ArgumentRangeError(
                f"current_range must be 1, 2, 3 or 4, got {current_range!r}",
                instrument=self.name,
                address=address,
            )
        self.channel = int(channel)
        self.control = control
        self.test_name = test_name
        self.data_time_s = float(data_time_s)
        self.data_dv_volt = float(data_dv_volt)
        self.data_di_ampere = float(data_di_ampere)
        self.current_range = current_range
        self.power_limit_watt = float(power_limit_watt)
        self.unsigned_current = bool(unsigned_current)
        self.end_test_on_close = bool(end_test_on_close)
        self._ids = itertools.count(1)
        self._mode = "R"  # last mode set: C, D or R
        self.refresh_s = None if refresh_s is None else float(refresh_s)
        self._output: tuple[str, float, float] = ("R", 0.0, 0.0)  # what to re-send
        self._sent_wall = 0.0  # time.monotonic() of the last output command
        self._direct = False  # a direct-mode test started by this driver is running
        self._start_sent = False  # (6, 7) sent, its reply not (yet) read
        self._limits: dict[str, float] | None = None
        self._last_voltage = math.nan
        endpoint = _socket_endpoint(address)
        if transport is None:
            if endpoint is None:
                raise InstrumentConnectionError(
                    "a MacNet address is TCPIP::host::57570::SOCKET", address=address
                )
            transport = JsonSocketTransport(address, name=self.name, timeout_s=self.timeout_s)
            transport.open()
        self.transport = transport
        if binary_transport is None and endpoint is not None and control == "direct":
            host, port = endpoint
            bport = int(binary_port) if binary_port is not None else port - 10
            binary_transport = SocketTransport(
                f"TCPIP::{host}::{bport}::SOCKET",
                name=self.name,
                timeout_s=self.timeout_s,
                read_termination="\n",
                write_termination="",
            )
            try:
                binary_transport.open()
            except InstrumentConnectionError:
                self.transport.close()
                raise
        self.binary = binary_transport

    # -- wire ---------------------------------------------------------------------------------
    def request(
        self, fclass: int, fnum: int, *, retry: bool = True, **params: Any
    ) -> dict[str, Any]:
        """One JSON-RPC exchange; returns the reply's ``result`` (checked to answer this
        command on this channel). A JSON-RPC ``error`` raises InstrumentCommandError.

        ``retry``: after a lost connection, reopen it and send again (idempotent commands:
        status, settings, outputs). Starting a test is not retried: the first may have started
        it; the connection is reopened and the error raised."""
        ident = next(self._ids)
        message = {
            "jsonrpc": "2.0",
            "method": "MacNet",
            "params": {"FClass": fclass, "FNum": fnum, "Chan": self.channel, **params},
            "id": ident,
        }
        text = json.dumps(message, separators=(",", ":"))
        command = f"({fclass}, {fnum})"
        reply = self._exchange(text, retry)
        try:
            data = json.loads(reply)
        except ValueError:
            raise self._reply_error(f"reply is not JSON: {reply[:80]!r}", command) from None
        if not isinstance(data, dict):
            raise self._reply_error(f"reply is not a JSON object: {reply[:80]!r}", command)
        if "error" in data:
            raise InstrumentCommandError(
                f"MacNet refused {command}: {data['error']}",
                instrument=self.name,
                address=self.address,
                command=command,
            )
        result = data.get("result")
        if not isinstance(result, dict):
            raise self._reply_error(f"reply has no result object: {reply[:80]!r}", command)
        if (result.get("FClass"), result.get("FNum")) != (fclass, fnum):
            raise self._reply_error(
                f"reply answers ({result.get('FClass')}, {result.get('FNum')}), not {command}",
                command,
            )
        if "Chan" in result and result["Chan"] != self.channel:
            raise self._reply_error(
                f"reply is for channel {result['Chan']}, not {self.channel}", command
            )
        return result

    def _exchange(self, text: str, retry: bool) -> str:
        try:
            return self.transport.query(text)
        except InstrumentConnectionError:
            self.transport.reconnect()
            if not retry:
                raise
            return self.transport.query(text)

    def _reply_error(self, message: str, command: str) -> InstrumentReplyError:
        return InstrumentReplyError(
            message, instrument=self.name, address=self.address, command=command
        )

    def _ok(self, result: dict[str, Any], command: str) -> None:
        value = result.get("Result")
        if value in ("OK", 0):
            return
        if isinstance(value, int):
            value = DIRECT_RESULTS.get(value, f"code {value}")
        raise InstrumentCommandError(
            f"channel {self.channel} refused {command}: {value}",
            instrument=self.name,
            address=self.address,
            command=command,
        )

    # -- MacNet commands ------------------------------------------------------------------------
    def status(self) -> MaccorStatus:
        """(4, 7): the channel's state and readings."""
        r = self.request(4, 7)
        try:
            status = MaccorStatus(
                channel=int(r["Chan"]),
                stat=int(r["Stat"]),
                cycle=int(r.get("Cycle", 0)),
                step=int(r.get("Step", 0)),
                test_time_second=float(r.get("TestTime", 0.0)),
                step_time_second=float(r.get("StepTime", 0.0)),
                capacity_ampere_hour=float(r.get("Capacity", 0.0)),
                energy_watt_hour=float(r.get("Energy", 0.0)),
                current_ampere=float(r["Current"]),
                voltage_volt=float(r["Voltage"]),
                tester_time=str(r.get("TesterTime", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise self._reply_error(f"status reply lacks or garbles {exc}", "(4, 7)") from None
        if not (math.isfinite(status.voltage_volt) and math.isfinite(status.current_ampere)):
            raise self._reply_error("status reply has a non-finite reading", "(4, 7)")
        return status

    def read_aux(self) -> list[float]:
        """(4, 4): the channel's auxiliary readings (thermocouples ...)."""
        r = self.request(4, 4)
        return [float(x) for x in r.get("AuxValues", [])]

    def set_safety_limits(
        self,
        *,
        voltage_min_volt: float,
        voltage_max_volt: float,
        charge_current_ampere: float,
        discharge_current_ampere: float,
        power_watt: float | None = None,
    ) -> None:
        """(6, 10): the channel's own safety limits; the echo is checked value by value."""
        if not voltage_max_volt > voltage_min_volt:
            raise ArgumentRangeError(
                f"voltage_max {voltage_max_volt} V must be above voltage_min {voltage_min_volt} V",
                instrument=self.name,
                address=self.address,
            )
        power = self.power_limit_watt if power_watt is None else float(power_watt)
        sent = {
            "VSafeMax": float(voltage_max_volt),
            "VSafeMin": float(voltage_min_volt),
            "ISafeChg": abs(float(charge_current_ampere)),
            "ISafeDis": abs(float(discharge_current_ampere)),
            "PBatSafeChg": power,
            "PBatSafeDis": power,
        }
        r = self.request(6, 10, **sent)
        for key, value in sent.items():
            got = r.get(key)
            if not isinstance(got, int | float) or abs(float(got) - value) > 1e-3 * max(
                1.0, abs(value)
            ):
                raise InstrumentCommandError(
                    f"channel {self.channel} did not take safety limit {key} = {value:g} "
                    f"(reads back {got!r})",
                    instrument=self.name,
                    address=self.address,
                    command="(6, 10)",
                )
        self._limits = sent

    def program_safety_limits(
        self,
        *,
        voltage_min_volt: float | None,
        voltage_max_volt: float | None,
        current_max_ampere: float | None,
    ) -> None:
        """The protocol's safety window as the channel's own limits (direct control only).

        A protocol without a voltage window or current limit is refused: the channel must not
        run on the cycler's defaults while the logger believes it is protected.
        """
        if self.control != "direct":
            return
        missing = [
            key
            for key, value in (
                ("voltage_min", voltage_min_volt),
                ("voltage_max", voltage_max_volt),
                ("current_max", current_max_ampere),
            )
            if value is None
        ]
        if missing:
            raise ArgumentRangeError(
                f"a Maccor channel in direct control needs the protocol's [safety] "
                f"{', '.join(missing)} to program the channel's own limits",
                instrument=self.name,
                address=self.address,
            )
        assert voltage_min_volt is not None and voltage_max_volt is not None
        assert current_max_ampere is not None
        self.set_safety_limits(
            voltage_min_volt=voltage_min_volt,
            voltage_max_volt=voltage_max_volt,
            charge_current_ampere=current_max_ampere,
            discharge_current_ampere=current_max_ampere,
        )

    def start_procedure(
        self, procedure: str, *, test_name: str = "Random", c_rate_ampere_hour: float = 1.0
    ) -> None:
        """(6, 2): start a test with a procedure stored on the Maccor PC (no ``.000``)."""
        self._require_control("start a procedure")
        r = self.request(
            6,
            2,
            retry=False,
            TestName=test_name or "Random",
            ProcName=procedure,
            Comment="started by cellbench",
            Crate=float(c_rate_ampere_hour),
            ChamberNum=0,
            StartCycle=0,
            TotCycles=0,
            Mass=1,
            VGain=0,
            AbsTRepAlign=0,
            ParallelR=0,
            VDivHiR=0,
            VDivLoR=0,
            CANpos=-1,
            CANprof="",
            RegimeName="",
        )
        self._ok(r, "(6, 2)")

    def reset(self) -> None:
        """(6, 5): reset the channel (ends any test on it)."""
        self._require_control("reset the channel")
        self._ok(self.request(6, 5), "(6, 5)")
        self._direct = False
        self._mode = "R"

    def set_variable(self, number: int, value: float) -> None:
        """(6, 9): test variable ``number`` (1..16) of the running procedure."""
        if int(number) != number or not 1 <= int(number) <= 16:
            raise ArgumentRangeError(
                f"test variable number must be 1..16, got {number!r}",
                instrument=self.name,
                address=self.address,
            )
        self._ok(self.request(6, 9, VarNum=int(number), Value=float(value)), "(6, 9)")

    def start_direct(self) -> None:
        """(6, 7): start a direct-mode test at 0 A (charge mode, as the help document allows;
        rest cannot start one). Programs the safety limits first if they were never set."""
        self._require_control("start direct control")
        status = self.status()
        if status.stat == 2 and self._start_sent:
            # our (6, 7) reached the Maccor but its reply was lost with the connection
            self._direct, self._start_sent, self._mode = True, False, "C"
            return
        if status.stat == 4:  # Completed: the channel must be reset before a new test
            self.reset()
        elif status.stat == 2:
            raise InstrumentCommandError(
                f"channel {self.channel} is already running a test; stop it on the Maccor PC "
                "or reset it before direct control",
                instrument=self.name,
                address=self.address,
                command="(6, 7)",
            )
        if self._limits is None:
            raise InstrumentCommandError(
                f"channel {self.channel}: program safety limits before direct control",
                instrument=self.name,
                address=self.address,
                command="(6, 7)",
            )
        self._start_sent = True
        r = self.request(
            6,
            7,
            retry=False,
            TestName=self.test_name or "Random",
            Current=0.0,
            Voltage=self._limits["VSafeMax"],
            Power=self.power_limit_watt,
            Resistance=0,
            CurrentRange=self._range(0.0),
            ChMode="C",
            DataTime=self.data_time_s,
            DataV=self.data_dv_volt,
            DataI=self.data_di_ampere,
        )
        self._start_sent = False
        self._ok(r, "(6, 7)")
        self._direct = True
        self._mode = "C"

    def set_output(self, mode: str, current_ampere: float, voltage_volt: float) -> None:
        """(6, 8): charge (``"C"``) or discharge (``"D"``) at |current| limited by voltage
        (mutually limiting: a charge becomes constant voltage at ``voltage_volt``)."""
        if mode not in ("C", "D"):
            raise ArgumentRangeError(
                f"mode must be C or D (rest: output_off), got {mode!r}",
                instrument=self.name,
                address=self.address,
            )
        self._ensure_direct()
        current = abs(float(current_ampere))
        self._check_limits(current, mode)
        r = self.request(
            6,
            8,
            Current=current,
            Voltage=float(voltage_volt),
            Power=self.power_limit_watt,
            Resistance=0,
            CurrentRange=self._range(current),
            ChMode=mode,
        )
        self._ok(r, "(6, 8)")
        self._mode = mode
        self._output = (mode, current, float(voltage_volt))
        self._sent_wall = time.monotonic()

    def rest(self) -> None:
        """Rest (no current) through the binary port: JSON cannot set rest (help document)."""
        if self.binary is None:
            raise InstrumentCommandError(
                "rest needs the MacNet binary port (not opened in monitor control)",
                instrument=self.name,
                address=self.address,
                command="rest",
            )
        packet = _BINARY_REST.pack(6, 8, self.channel, 18, 0.0, 0.0, 0.0, 0.0, 4, ord("R"))

        def once() -> bytes:
            with self.binary.lock:
                self.binary.write_raw(packet)
                return self.binary.read_raw(_BINARY_REPLY.size)

        try:
            reply = once()
        except InstrumentConnectionError:
            self.binary.reconnect()
            reply = once()
        fclass, fnum, chan, result = _BINARY_REPLY.unpack(reply)
        if (fclass, fnum, chan) != (6, 8, self.channel):
            raise self._reply_error(
                f"binary reply answers ({fclass}, {fnum}) channel {chan}", "rest"
            )
        if result:
            raise InstrumentCommandError(
                f"channel {self.channel} refused rest: {DIRECT_RESULTS.get(result, result)}",
                instrument=self.name,
                address=self.address,
                command="rest",
            )
        self._mode = "R"
        self._output = ("R", 0.0, 0.0)
        self._sent_wall = time.monotonic()

    # -- harvest: a channel running its own procedure (cellbench.daq.cycler_runs) ---------------
    @property
    def runs_own_schedule(self) -> bool:
        """Monitored channels run Maccor's own procedure; the engine records them by polling."""
        return self.control == "monitor"

    def attach(self) -> None:
        """Record from now on (MacNet status gives the present reading, not the data file)."""
        self._last_poll_time = -1.0

    def poll(self) -> CyclerPoll:
        """The channel's state and, if its test time moved on, the present reading."""
        s = self.status()
        state = (
            "running"
            if s.stat == 2
            else "finished"
            if s.stat == 4
            else "faulted"
            if s.faulted
            else "idle"
        )
        records = []
        if s.test_time_second > getattr(self, "_last_poll_time", -1.0) and s.stat in (2, 4):
            self._last_poll_time = s.test_time_second
            records.append(
                CyclerRecord(
                    s.test_time_second, s.voltage_volt, s.current_ampere, s.cycle, s.step, "step"
                )
            )
        return CyclerPoll(state, records, s.state)

    # -- the source role ------------------------------------------------------------------------
    def identify(self) -> str:
        s = self.status()
        return f"Maccor MacNet channel {self.channel} ({s.state})"

    def source_current(self, current_ampere: float, *, voltage_limit_volt: float) -> None:
        """Constant current (positive: charge) limited at ``voltage_limit_volt`` on charge; a
        discharge is floored at the channel's safety minimum (the engine's end conditions stop
        it earlier)."""
        if current_ampere == 0:
            self.output_off()
        elif current_ampere > 0:
            self.set_output("C", current_ampere, voltage_limit_volt)
        else:
            self.set_output("D", -current_ampere, self._floor())

    def source_voltage(self, voltage_volt: float, *, current_limit_ampere: float) -> None:
        """Constant voltage with |I| at most ``current_limit_ampere`` (charge mode above the
        cell's voltage, discharge mode below it)."""
        below = math.isfinite(self._last_voltage) and voltage_volt < self._last_voltage
        self.set_output("D" if below else "C", current_limit_ampere, voltage_volt)

    def output_off(self) -> None:
        self._require_control("rest the channel")
        if self._direct:
            self.rest()

    def measure(self) -> Reading:
        s = self.status()
        if s.faulted:
            raise InterlockError(
                f"channel {self.channel} stopped itself: {s.state} (a channel safety limit or a "
                "hardware fault; see the Maccor PC)",
                instrument=self.name,
                address=self.address,
                command="(4, 7)",
            )
        self._refresh()
        current = s.current_ampere
        if self.unsigned_current and self._mode == "D":
            current = -abs(current)
        self._last_voltage = s.voltage_volt
        return Reading(s.voltage_volt, current, s.test_time_second)

    def safe_state(self) -> None:
        """Direct control: rest. Monitor: nothing (the channel runs its own procedure)."""
        if self.control == "direct" and self._direct:
            self.rest()

    def close(self) -> None:
        try:
            if self.control == "direct" and self._direct and self.end_test_on_close:
                self.reset()
        except Exception:  # closing must not raise over the reason the run ended
            pass
        finally:
            self.transport.close()
            if self.binary is not None:
                self.binary.close()

    def reconnect(self) -> None:
        self.transport.reconnect()
        if self.binary is not None:
            self.binary.reconnect()

    # -- helpers --------------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Re-send the output if it is older than ``refresh_s`` (the watchdog's keep-alive)."""
        if self.refresh_s is None or not self._direct or self.control != "direct":
            return
        if time.monotonic() - self._sent_wall < self.refresh_s:
            return
        mode, current, voltage = self._output
        if mode == "R":
            self.rest()
        else:
            self.set_output(mode, current, voltage)

    def _require_control(self, what: str) -> None:
        if self.control != "direct":
            raise InstrumentCommandError(
                f'channel {self.channel} is monitored only (control = "monitor"): cannot {what}',
                instrument=self.name,
                address=self.address,
                command=what,
            )

    def _ensure_direct(self) -> None:
        if not self._direct:
            self.start_direct()

    def _floor(self) -> float:
        return self._limits["VSafeMin"] if self._limits else 0.0

    def _range(self, current: float) -> int:
        if self.current_range is not None:
            return self.current_range
        if current == 0:
            return 4
        if current < 150e-6:
            return 1
        if current < 5e-3:
            return 2
        if current < 0.150:
            return 3
        return 4

    def _check_limits(self, current: float, mode: str) -> None:
        if self._limits is None:
            return
        key = "ISafeChg" if mode == "C" else "ISafeDis"
        if current > self._limits[key] * (1 + 1e-9):
            raise ArgumentRangeError(
                f"{current:g} A exceeds the channel's safety limit {key} = {self._limits[key]:g} A",
                instrument=self.name,
                address=self.address,
            )

    def __repr__(self) -> str:
        return f"MaccorChannel({self.address!r}, channel={self.channel}, name={self.name!r})"
