"""A loopback TCP server that speaks line-based SCPI; simulated SCPI instruments subclass it.

The server listens on 127.0.0.1 (port 0 picks a free port) and is opened by pyvisa as
``TCPIP::127.0.0.1::PORT::SOCKET`` — the raw-socket ("port 5025") interface of LAN instruments.
Each received line is split into messages at ``;`` and each message is matched against the
command table; query replies of one line are joined with ``;`` and sent with ``\\n``.

The base class implements the IEEE 488.2 common commands (``*IDN? *RST *CLS *OPC *OPC? *WAI *ESR?
*ESE *STB? *SRE *TST?``) and the SCPI error queue (``:SYSTem:ERRor[:NEXT]?``,
``:SYSTem:ERRor:COUNt?``, ``:SYSTem:ERRor:ALL?``). Subclasses register commands with
:meth:`ScpiServer.add_command` using the manual's notation: upper case is the short form,
``[...]`` is optional, ``#`` is an optional numeric suffix (``:SENSe#:FREQuency:STARt``).
A handler raises :class:`ScpiError` to put an entry on the error queue.

Every line received is appended to :attr:`ScpiServer.received` so protocol tests can pin the
exact messages a driver sends. Faults from :class:`FaultInjector` apply to whole lines.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from cellbench.drivers.sim.faults import FaultInjector, garble
from cellbench.drivers.sim.loopback import LoopbackServer

Setter = Callable[[str, tuple[int, ...]], None]
Getter = Callable[[str, tuple[int, ...]], str]

#: IEEE 488.2 standard event status register bits
ESR_OPC, ESR_QYE, ESR_DDE, ESR_EXE, ESR_CME = 1, 4, 8, 16, 32
#: status byte bits
STB_EAV, STB_MAV, STB_ESB, STB_MSS = 4, 16, 32, 64


class ScpiError(Exception):
    """Raised by a handler: the (code, message) goes on the instrument's error queue."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{code},{message}")
        self.code = int(code)
        self.message = message


def compile_header(pattern: str) -> re.Pattern[str]:
    """Regex for a SCPI header in manual notation (``[:SOURce#]:CURRent[:LEVel]``).

    Upper-case letters form the short form, the whole word the long form; either matches,
    case-insensitively. ``#`` captures an optional numeric suffix.
    """
    out = ["^"]
    for token in re.findall(r"\[|\]|:|\*?[A-Za-z][A-Za-z0-9]*#?|\?", pattern):
        if token == "[":
            out.append("(?:")
        elif token == "]":
            out.append(")?")
        elif token == ":":
            out.append(":")
        elif token == "?":
            raise ValueError(f"patterns are headers without '?': {pattern!r}")
        else:
            suffix = token.endswith("#")
            word = token.rstrip("#")
            short = "".join(ch for ch in word if ch.isupper() or ch.isdigit() or ch == "*")
            long_ = word.upper()
            forms = [re.escape(long_)] + ([re.escape(short)] if short and short != long_ else [])
            out.append("(?:" + "|".join(forms) + ")")
            if suffix:
                out.append(r"(\d*)")
    out.append("$")
    return re.compile("".join(out), re.IGNORECASE)


def split_messages(line: str) -> list[str]:
    """Split a program line at ``;`` outside quoted strings."""
    parts, current, quote = [], [], ""
    for ch in line:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch == ";":
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def parse_number(
    text: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    default: float | None = None,
) -> float:
    """A SCPI numeric parameter (``1e-3``, ``MIN``, ``MAX``, ``DEF``) checked against limits.

    Raises ScpiError -224 for a non-number and -222 (data out of range) outside the limits.
    """
    word = text.strip().upper()
    if word in ("MIN", "MINIMUM") and minimum is not None:
        return float(minimum)
    if word in ("MAX", "MAXIMUM") and maximum is not None:
        return float(maximum)
    if word in ("DEF", "DEFAULT") and default is not None:
        return float(default)
    try:
        value = float(word)
    except ValueError:
        raise ScpiError(-224, f"Illegal parameter value;{text.strip()}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ScpiError(-222, f"Data out of range;{text.strip()}")
    return value


def parse_bool(text: str) -> bool:
    """SCPI boolean: ``ON``/``OFF``/``1``/``0``."""
    word = text.strip().upper()
    if word in ("ON", "1"):
        return True
    if word in ("OFF", "0"):
        return False
    raise ScpiError(-224, f"Illegal parameter value;{text.strip()}")


def parse_choice(text: str, choices: dict[str, str]) -> str:
    """A character parameter: ``choices`` maps every accepted spelling (upper case) to a value."""
    word = text.strip().strip("\"'").upper()
    if word not in choices:
        raise ScpiError(-224, f"Illegal parameter value;{text.strip()}")
    return choices[word]


@dataclass
class _Command:
    pattern: str
    regex: re.Pattern[str]
    set: Setter | None
    get: Getter | None
    locked: bool


class ScpiServer(LoopbackServer):
    """Threaded loopback SCPI server; subclass, register commands, call :meth:`start`."""

    #: reply to *IDN? (manufacturer, model, serial, firmware)
    idn = "CELLBENCH,SIMULATED SCPI,0,1.0"
    #: header prefixes accepted and ignored (front-panel display, beeper: no effect on the cell)
    ignored_prefixes: tuple[str, ...] = ()
    error_queue_size = 32
    #: integer replies (``*OPC?``, ``*ESR?``, ``*STB?``, error codes) carry a sign: ``+1``
    signed_numbers = False
    backlog = 8
    recv_size = 4096

    def __init__(
        self,
        *,
        name: str = "",
        faults: FaultInjector | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.name = name or type(self).__name__
        self.faults = faults if faults is not None else FaultInjector()
        self.lock = threading.RLock()  # instrument state, shared by all connections
        self.received: list[str] = []
        self.errors: deque[tuple[int, str]] = deque()
        self.esr = 0
        self.ese = 0
        self.sre = 0
        self._commands: list[_Command] = []
        self._init_loopback(host, port)
        self._register_system_commands()

    # -- life cycle -------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """The VISA resource string that opens this simulator."""
        return f"TCPIP::{self.host}::{self.port}::SOCKET"

    def __enter__(self) -> ScpiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- command table ----------------------------------------------------------------------
    def add_command(
        self,
        pattern: str,
        *,
        set: Setter | None = None,
        get: Getter | None = None,
        locked: bool = True,
    ) -> None:
        """Register a header. ``set(args, suffixes)`` runs for the command form, ``get(args,
        suffixes) -> str`` for the query form; a missing form is an undefined header.
        Handlers run holding :attr:`lock` unless ``locked=False`` (for ones that wait)."""
        self._commands.append(_Command(pattern, compile_header(pattern), set, get, locked))

    def _nr1(self, value: int) -> str:
        """An integer reply: ``+1`` / ``+0`` where the instrument signs <NR1> (Keysight), else
        ``1`` / ``0``."""
        return f"{value:+d}" if self.signed_numbers else str(value)

    def reset(self) -> None:
        """``*RST``: subclasses restore their default settings (call super)."""

    def operation_complete(self) -> None:
        """Block until pending overlapped operations finish (``*OPC?``, ``*WAI``); bounded."""

    def arm_opc(self) -> None:
        """``*OPC``: set the OPC event bit when pending operations finish. This default finishes
        them first; simulators with overlapped operations set the bit later in
        :meth:`poll_status`, so a client can poll ``*STB?`` / ``*ESR?`` meanwhile."""
        self.operation_complete()
        self.esr |= ESR_OPC

    def poll_status(self) -> None:
        """Update event bits from overlapped operations before ``*STB?`` / ``*ESR?`` answer."""

    def push_error(self, code: int, message: str) -> None:
        """Append to the error queue and set the matching event status bit."""
        with self.lock:
            if len(self.errors) >= self.error_queue_size:
                self.errors[-1] = (-350, "Queue overflow")
            else:
                self.errors.append((code, message))
            if -199 <= code <= -100:
                self.esr |= ESR_CME
            elif -299 <= code <= -200:
                self.esr |= ESR_EXE
            elif -499 <= code <= -400:
                self.esr |= ESR_QYE
            else:
                self.esr |= ESR_DDE

    def status_byte(self) -> int:
        with self.lock:
            self.poll_status()
            stb = STB_EAV if self.errors else 0
            if self.esr & self.ese:
                stb |= STB_ESB
            if stb & self.sre:
                stb |= STB_MSS
            return stb

    def execute(self, message: str) -> str | None:
        """Run one message; its reply (queries) or None. Errors go on the error queue."""
        message = message.strip()
        header, _, args = message.partition(" ")
        if "\t" in header:
            header, _, rest = header.partition("\t")
            args = rest + args
        query = header.endswith("?")
        if query:
            header = header[:-1]
        if header.startswith(":*"):
            header = header[1:]  # ":*CLS" after ";" (PyMeasure's reset): a common command
        if not header.startswith((":", "*")):
            header = ":" + header
        for command in self._commands:
            match = command.regex.match(header)
            if match is None:
                continue
            suffixes = tuple(int(g) if g else 1 for g in match.groups())
            handler = command.get if query else command.set
            if handler is None:
                break
            try:
                with self.lock if command.locked else contextlib.nullcontext():
                    if query:
                        return handler(args.strip(), suffixes)  # type: ignore[return-value]
                    handler(args.strip(), suffixes)
                    return None
            except ScpiError as exc:
                self.push_error(exc.code, exc.message)
                return None
        if not query and header.upper().startswith(self.ignored_prefixes):
            return None
        self.push_error(-113, f"Undefined header;{message}")
        return None

    def handle_line(self, line: str) -> str | None:
        """Run a program line; the joined query replies or None."""
        with self.lock:
            self.received.append(line)
        replies = [r for r in (self.execute(m) for m in split_messages(line)) if r is not None]
        return ";".join(replies) if replies else None

    # -- IEEE 488.2 and SCPI system commands --------------------------------------------------
    def _register_system_commands(self) -> None:
        def idn(args: str, n: tuple[int, ...]) -> str:
            return self.idn

        def rst(args: str, n: tuple[int, ...]) -> None:
            self.reset()

        def cls(args: str, n: tuple[int, ...]) -> None:
            self.errors.clear()
            self.esr = 0

        def opc_set(args: str, n: tuple[int, ...]) -> None:
            self.arm_opc()

        def opc_get(args: str, n: tuple[int, ...]) -> str:
            self.operation_complete()
            return self._nr1(1)

        def wai(args: str, n: tuple[int, ...]) -> None:
            self.operation_complete()

        def esr(args: str, n: tuple[int, ...]) -> str:
            self.poll_status()
            value, self.esr = self.esr, 0
            return self._nr1(value)

        def ese_set(args: str, n: tuple[int, ...]) -> None:
            self.ese = int(parse_number(args, minimum=0, maximum=255))

        def sre_set(args: str, n: tuple[int, ...]) -> None:
            self.sre = int(parse_number(args, minimum=0, maximum=255))

        def err_next(args: str, n: tuple[int, ...]) -> str:
            if not self.errors:
                return f'{self._nr1(0)},"No error"'
            code, text = self.errors.popleft()
            return f'{self._nr1(code)},"{text}"'

        def err_all(args: str, n: tuple[int, ...]) -> str:
            if not self.errors:
                return f'{self._nr1(0)},"No error"'
            items = [f'{self._nr1(c)},"{t}"' for c, t in self.errors]
            self.errors.clear()
            return ",".join(items)

        self.add_command("*IDN", get=idn)
        self.add_command("*RST", set=rst)
        self.add_command("*CLS", set=cls)
        self.add_command("*OPC", set=opc_set, get=opc_get, locked=False)
        self.add_command("*WAI", set=wai, locked=False)
        self.add_command("*ESR", get=esr)
        self.add_command("*ESE", set=ese_set, get=lambda a, n: str(self.ese))
        self.add_command("*SRE", set=sre_set, get=lambda a, n: str(self.sre))
        self.add_command("*STB", get=lambda a, n: self._nr1(self.status_byte()))
        self.add_command("*TST", get=lambda a, n: "0")
        self.add_command(":SYSTem:ERRor[:NEXT]", get=err_next)
        self.add_command(":SYSTem:ERRor:ALL", get=err_all)
        self.add_command(":SYSTem:ERRor:COUNt", get=lambda a, n: str(len(self.errors)))
        self.add_command(":SYSTem:CLEar", set=cls)
        # STATus:PRESet returns the SCPI event enable registers to their defaults; the
        # simulators keep none beyond *ESE / *SRE, which it leaves alone.
        self.add_command(":STATus:PRESet", set=lambda a, n: None)

    # -- sockets ----------------------------------------------------------------------------
    def _consume(self, conn: socket.socket, buffer: bytearray) -> bool:
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end]).decode("ascii", errors="replace").strip()
            del buffer[: end + 1]
            if line and not self._respond(conn, line):
                return False
        return True

    def _respond(self, conn: socket.socket, line: str) -> bool:
        """Run a line and send its reply with faults applied; False once disconnected."""
        fault = self.faults.take("disconnect", line)
        if fault is not None:
            with self.lock:
                self.received.append(line)
            self.disconnect(fault.delay_s)
            return False
        fault = self.faults.take("error_queue", line)
        if fault is not None:
            self.push_error(fault.code, fault.message)
        reply = self.handle_line(line)
        if reply is None:
            return True
        data = (reply + "\n").encode("ascii", errors="replace")
        if self.faults.take("no_reply", line) is not None:
            return True
        fault = self.faults.take("late_reply", line)
        if fault is not None and self._stop.wait(fault.delay_s):
            return False
        if self.faults.take("garbled", line) is not None:
            data = garble(data)
        try:
            conn.sendall(data)
        except OSError:
            return False
        return True
