"""A simulated Maccor cycler speaking MacNet: JSON on one port, binary on the port 10 below.

The channel ``cell_channel`` (default 0) holds the station's shared simulated cell; every other
channel holds a cell of its own with the same parameters on the same clock. Channels are numbered
from 0, as in MacNet. Stored procedures are named in the station file::

    [instrument.simulator]
    channels = 16
    [instrument.simulator.procedures.FORM_C2]     # a procedure "stored on the Maccor PC"
    cycles = 3
    charge_current_ampere = 0.001
    charge_voltage_volt = 4.2
    taper_current_ampere = 0.0002
    discharge_current_ampere = 0.001
    discharge_voltage_volt = 3.0
    rest_second = 600
    record_second = 30

A procedure runs CC-CV charge, rest, CC discharge, rest, ``cycles`` times (Maccor step numbers
1-4, cycle counted from 1). Direct mode follows the help document's (6, 7)/(6, 8) semantics:
current and voltage mutually limiting, C and D modes over JSON, rest only over the binary port.
The channel's safety limits (6, 10) are enforced by the simulator itself, polled or not: a breach
suspends the channel (``Stat`` 3, output off). ``direct_watchdog_s`` is ``MacNetDirectModeWD``:
a channel in direct mode that gets no output command for that many wall seconds suspends.

Faults: the :class:`FaultInjector` kinds ``no_reply``, ``late_reply``, ``garbled``,
``disconnect`` (both ports) per message, and ``interlock``: the next message (matching ``on``)
puts the channel it addresses in ``Problem`` (``Stat`` 5, output off), as a hardware fault
would; :meth:`MaccorSimulator.fault_channel` does the same directly.
"""

from __future__ import annotations

import contextlib
import json
import struct
import threading
from datetime import UTC, datetime
from typing import Any

from cellbench.drivers.sim.cell import SimCell
from cellbench.drivers.sim.cycler_channel import SimChannel, SimStep, Ticker
from cellbench.drivers.sim.cycler_server import FramedServer, fixed_framer, json_framer
from cellbench.drivers.sim.faults import FaultInjector

_STATE_STAT = {"idle": 0, "direct": 2, "schedule": 2, "finished": 4, "stopped": 4}
_BINARY = struct.Struct("<HHHHffffBB")
_BINARY_REPLY = struct.Struct("<HHHH")


def procedure_steps(name: str, spec: dict[str, Any]) -> list[SimStep]:
    """A stored procedure's steps from its station table (see the module docstring)."""
    try:
        cycles = int(spec.get("cycles", 1))
        ich = float(spec["charge_current_ampere"])
        vch = float(spec["charge_voltage_volt"])
        taper = float(spec.get("taper_current_ampere", ich / 5))
        idis = float(spec["discharge_current_ampere"])
        vdis = float(spec["discharge_voltage_volt"])
        rest = float(spec.get("rest_second", 600.0))
        record = float(spec.get("record_second", 30.0))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"procedure {name!r}: missing or bad {exc}") from None
    return [
        SimStep("cccv", 1, ich, vch, stop_current_ampere=taper, record_second=record),
        SimStep("rest", 2, time_second=rest, record_second=record),
        SimStep("cc", 3, -idis, stop_voltage_volt=vdis, record_second=record),
        SimStep("rest", 4, time_second=rest, record_second=record),
        SimStep("cycle", 5, goto=0, count=cycles),
    ]


class MaccorSimulator:
    """Simulated Maccor MacNet server (``driver = "maccor"``): ``address`` is the JSON port."""

    driver = "maccor"

    def __init__(
        self,
        cell: SimCell,
        *,
        name: str = "maccor",
        faults: FaultInjector | None = None,
        channels: int = 8,
        cell_channel: int = 0,
        procedures: dict[str, dict[str, Any]] | None = None,
        running: dict[str, str] | None = None,
        direct_watchdog_s: float | None = None,
        host: str = "127.0.0.1",
        tick_s: float = 1e-3,
    ):
        if not 1 <= int(channels) <= 512:
            raise ValueError(f"channels must be 1..512, got {channels!r}")
        if not 0 <= int(cell_channel) < int(channels):
            raise ValueError(f"cell_channel {cell_channel} is not one of the {channels} channels")
        self.name = name
        self.cell = cell
        self.faults = faults if faults is not None else FaultInjector()
        self.host = host
        self.lock = threading.RLock()
        self.channels = [
            SimChannel(
                k,
                cell if k == cell_channel else SimCell(cell.params, clock=cell.clock, seed=k + 1),
            )
            for k in range(int(channels))
        ]
        self.procedures = {
            str(n): procedure_steps(str(n), dict(v)) for n, v in (procedures or {}).items()
        }
        for channel in self.channels:  # System.ini MacNetDirectModeWD (wall seconds)
            channel.watchdog_s = None if direct_watchdog_s is None else float(direct_watchdog_s)
        self.running = {int(k): str(v) for k, v in (running or {}).items()}
        for chan, proc in self.running.items():
            if not 0 <= chan < len(self.channels) or proc not in self.procedures:
                raise ValueError(f"running: channel {chan} / procedure {proc!r} unknown")
        self.messages: list[dict[str, Any]] = []  # every JSON request, for protocol tests
        self.binary_messages: list[tuple] = []
        self._json = FramedServer(json_framer, self._on_json, name=f"{name}-json",
                                  faults=self.faults, host=host)  # fmt: skip
        self._binary = FramedServer(fixed_framer(_BINARY.size), self._on_binary,
                                    name=f"{name}-bin", faults=self.faults, host=host)  # fmt: skip
        self._ticker = Ticker(self.channels, self.lock, tick_s)

    # -- life cycle ---------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"TCPIP::{self.host}::{self._json.port}::SOCKET"

    @property
    def binary_port(self) -> int:
        return self._binary.port

    def start(self) -> MaccorSimulator:
        """Bind a binary port P and the JSON port P + 10 (as 57560 / 57570), then serve."""
        for _ in range(50):
            self._binary.port = 0
            self._binary.listen()
            self._json.port = self._binary.port + 10
            try:
                self._json.listen()
                break
            except OSError:
                self._binary._close_listener()
        else:  # pragma: no cover - a machine with no free port pair
            raise OSError("no free pair of ports P, P + 10 on loopback")
        with self.lock:  # procedures "started on the Maccor PC" before anyone connects
            for chan, proc in self.running.items():
                steps = self.procedures[proc]
                self.channels[chan].start_schedule(steps, steps[0].record_second or 30.0)
        self._json.start()
        self._binary.start()
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop()
        self._json.stop()
        self._binary.stop()

    def __enter__(self) -> MaccorSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fault_channel(self, channel: int, reason: str = "hardware fault") -> None:
        """Put ``channel`` in Problem (output off), as a hardware fault would."""
        with self.lock:
            self.channels[channel].tick()
            self.channels[channel].stop("faulted", reason)
            self.channels[channel].fault_reason = "problem: " + reason

    # -- JSON ---------------------------------------------------------------------------------
    def _on_json(self, raw: bytes) -> bytes | None:
        try:
            msg = json.loads(raw)
            params = msg["params"]
            key = (int(params["FClass"]), int(params["FNum"]))
            chan = int(params.get("Chan", -1))
        except (ValueError, KeyError, TypeError):
            return json.dumps({"jsonrpc": "2.0", "error": {"code": -32700,
                                                           "message": "Parse error"},
                               "id": None}).encode()  # fmt: skip
        with self.lock:
            self.messages.append(msg)
            if not 0 <= chan < len(self.channels):
                return self._reply(msg, {"error": {"code": -32602, "message":
                                                   f"no channel {chan}"}})  # fmt: skip
            channel = self.channels[chan]
            if self.faults.take("interlock", raw.decode("utf-8", "replace")) is not None:
                channel.tick()
                channel.stop("faulted", "problem: injected channel fault")
            channel.tick()
            handler = self._handlers().get(key)
            if handler is None:
                return self._reply(msg, {"error": {"code": -32601,
                                                   "message": f"no function {key}"}})  # fmt: skip
            result = handler(channel, params)
        return self._reply(msg, {"result": {"FClass": key[0], "FNum": key[1], "Chan": chan,
                                            **result}})  # fmt: skip

    @staticmethod
    def _reply(msg: dict[str, Any], body: dict[str, Any]) -> bytes:
        return json.dumps({"jsonrpc": "2.0", **body, "id": msg.get("id")}, indent=4).encode()

    def _handlers(self) -> dict[tuple[int, int], Any]:
        return {
            (4, 7): self._status,
            (4, 4): lambda ch, p: {"Len": 1, "AuxValues": [round(ch.cell.temperature_celsius, 2)]},
            (6, 2): self._start_procedure,
            (6, 5): self._reset,
            (6, 7): self._start_direct,
            (6, 8): self._set_output,
            (6, 9): self._set_variable,
            (6, 10): self._safety,
        }

    @staticmethod
    def _stat(ch: SimChannel) -> int:
        if ch.state == "faulted":
            return 5 if ch.fault_reason.startswith("problem") else 3
        return _STATE_STAT.get(ch.state, 0)

    def _status(self, ch: SimChannel, p: dict[str, Any]) -> dict[str, Any]:
        v, i = ch.cell.measure()
        running = ch.state in ("direct", "schedule")
        now = ch.now()
        return {
            "RF1": 0,
            "RF2": 192 if running else 0,
            "Stat": self._stat(ch),
            "LastRecNum": len(ch.records),
            "Cycle": ch.cycle,
            "Step": ch._step_id() if running else 0,
            "TestTime": round(now - ch.test_start, 3) if running else 0.0,
            "StepTime": round(now - ch.step_start, 3) if running else 0.0,
            "Capacity": ch.step_capacity_ah,
            "Energy": ch.step_energy_wh,
            "Current": i,
            "Voltage": v,
            "TesterTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def _busy(self, ch: SimChannel) -> str | None:
        if ch.state in ("direct", "schedule"):
            return "channel is active"
        if ch.state in ("finished", "stopped"):
            return "channel is completed: reset it first"
        if ch.state == "faulted":
            return "channel has a problem: reset it first"
        return None

    def _start_procedure(self, ch: SimChannel, p: dict[str, Any]) -> dict[str, Any]:
        busy = self._busy(ch)
        if busy:
            return {"Result": busy}
        name = str(p.get("ProcName", "")).strip()
        steps = self.procedures.get(name)
        if steps is None:
            return {"Result": f"procedure {name!r} not found in C:\\Maccor\\Procedur"}
        ch.barcode = str(p.get("TestName", ""))
        ch.start_schedule(steps, record_second=steps[0].record_second or 30.0)
        return {"Result": "OK"}

    def _reset(self, ch: SimChannel, p: dict[str, Any]) -> dict[str, Any]:
        if ch.state in ("direct", "schedule"):
            ch.stop("stopped")
        ch.cell.open_circuit()
        ch.state, ch.fault_reason, ch.mode = "idle", "", "R"
        return {"Result": "OK"}

    def _start_direct(self, ch: SimChannel, p: dict[str, Any]) -> dict[str, Any]:
        busy = self._busy(ch)
        if busy:
            return {"Result": busy}
        mode = str(p.get("ChMode", "C"))
        if mode not in ("C", "D"):
            return {"Result": "ChMode must be C or D to start direct mode"}
        data_time = float(p.get("DataTime", 1.0)) or 1.0
        ch.begin_test("direct", data_time)
        ch.set_direct(mode, float(p.get("Current", 0.0)), float(p.get("Voltage", 0.0)))
        return {"Result": "OK"}

    def _set_output(self, ch: SimChannel, p: dict[str, Any]) -> dict[str, Any]:
        if ch.state != "direct":
            return {"Result": 4 if ch.state in ("schedule",) else 2}
        mode = str(p.get("ChMode", ""))
        if mode not in ("C", "D"):  # the help document: rest does not work over JSON
            return {"Result": f"ChMode {mode!r} not accepted over JSON"}
        ch.set_direct(mode, float(p.get("Current", 0.0)), float(p.get("Voltage", 0.0)))
        return {"Result": "OK"}

    def _set_variable(self, ch: SimChannel, p: dict[str, Any]) -> dict[str, Any]:
        number = int(p.get("VarNum", 0))
        if not 1 <= number <= 16:
            return {"Result": f"VarNum {number} out of 1..16"}
        return {"Result": "OK"}

    def _safety(self, ch: SimChannel, p: dict[str, Any]) -> dict[str, Any]:
        keys = ("VSafeMax", "VSafeMin", "ISafeChg", "ISafeDis", "PBatSafeChg", "PBatSafeDis")
        values = {k: float(p.get(k, 0.0)) for k in keys}
        ch.limits = {
            "vmax": values["VSafeMax"],
            "vmin": values["VSafeMin"],
            "ichg": values["ISafeChg"],
            "idis": values["ISafeDis"],
        }
        return values

    # -- binary -------------------------------------------------------------------------------
    def _on_binary(self, raw: bytes) -> bytes | None:
        fclass, fnum, chan, _, current, voltage, _, _, _, mode = _BINARY.unpack(raw)
        with self.lock:
            self.binary_messages.append((fclass, fnum, chan, chr(mode)))
            if not 0 <= chan < len(self.channels) or (fclass, fnum) != (6, 8):
                return _BINARY_REPLY.pack(fclass, fnum, chan, 1)
            ch = self.channels[chan]
            ch.tick()
            if ch.state != "direct":
                return _BINARY_REPLY.pack(fclass, fnum, chan, 4)
            with contextlib.suppress(ValueError):
                ch.set_direct(chr(mode), current, voltage)
        return _BINARY_REPLY.pack(fclass, fnum, chan, 0)

    # -- truth ----------------------------------------------------------------------------------
    def truth(self, channel: int) -> list[dict[str, Any]]:
        """The charge each step of ``channel``'s test really moved through its cell."""
        with self.lock:
            return [vars(t).copy() for t in self.channels[channel].truth]
