"""Byte transports to instruments: serial ports (pyserial) and VISA resources (pyvisa).

A transport moves lines of text to and from one instrument. Each connection has one re-entrant
lock, so :meth:`Transport.query` is one atomic write-then-read even when several threads share an
instrument, and a driver can hold the lock across a multi-command sequence with
``with transport.lock:``. Every wait is bounded by ``timeout_s``; a reply that never comes raises
:class:`InstrumentTimeout`, a lost port or socket :class:`InstrumentConnectionError`, a reply that
cannot be decoded :class:`InstrumentReplyError` — each naming the instrument, address and command.

A query that timed out may still be answered later. Because a line-based instrument cannot tag its
replies, the transport counts such missed replies and, before the next command, discards up to
that many late lines (waiting at most ``stale_grace_s`` for each), so the next query reads its own
answer rather than the previous one's.

Addresses are written the way users write them::

    /dev/ttyUSB0, /dev/serial/by-id/usb-FTDI_..., COM3, ASRL/dev/ttyUSB0::INSTR  -> pyserial
    loop://, socket://host:port, rfc2217://host:port (pyserial URL handlers)      -> pyserial
    TCPIP::192.168.0.5::5025::SOCKET, TCPIP::host::INSTR, USB0::0x05E6::0x2450::SN::INSTR,
    GPIB0::24::INSTR                                                               -> pyvisa

Raw LAN sockets (``TCPIP::host::port::SOCKET``) are opened with the standard library
(:class:`~cellbench.drivers.socket_transport.SocketTransport`: the bytes pyvisa-py would send,
plus ``TCP_NODELAY`` and lost-connection detection, which pyvisa-py does not expose publicly)
unless a VISA library is named. VISA uses the pure-Python pyvisa-py backend (``"@py"``) unless
``CELLBENCH_VISA_LIBRARY`` names another (e.g. ``"@ivi"`` or a path to a vendor VISA library);
:class:`VisaTransport` uses pyvisa's public API only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cellbench.drivers.errors import (
    InstrumentConnectionError,
    InstrumentError,
    InstrumentReplyError,
    InstrumentTimeout,
)

try:  # POSIX: pyserial's flush() on a tty that went away raises termios.error
    from termios import error as _termios_error

    _TTY_ERRORS: tuple[type[BaseException], ...] = (_termios_error,)
except ImportError:  # Windows
    _TTY_ERRORS = ()

VISA_LIBRARY_ENV = "CELLBENCH_VISA_LIBRARY"
DEFAULT_VISA_LIBRARY = "@py"

_SERIAL_URL = re.compile(r"^(loop|socket|rfc2217|spy|alt|hwgrep|cp2110)://", re.IGNORECASE)
_WINDOWS_COM = re.compile(r"^COM\d+$", re.IGNORECASE)
_ASRL = re.compile(r"^ASRL(?P<port>.+?)(::INSTR)?$", re.IGNORECASE)
_VISA = re.compile(r"^(TCPIP|USB|GPIB|VXI|PXI|VICP)\d*::", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedAddress:
    """Which library opens an address, and the name that library wants."""

    kind: Literal["serial", "visa"]
    resource: str  # pyserial port/URL, or the VISA resource string


def parse_address(address: str) -> ParsedAddress:
    """Classify ``address`` as a serial port (pyserial) or a VISA resource (pyvisa).

    ``ASRL<path>::INSTR`` is opened by pyserial at ``<path>``; ``ASRL<n>::INSTR`` means ``COM<n>``
    on Windows. Raises :class:`InstrumentConnectionError` for an address neither library opens.
    """
    text = address.strip()
    if not text:
        raise InstrumentConnectionError("empty instrument address", address=address)
    match = _ASRL.match(text)
    if match:
        port = match.group("port")
        if port.isdigit():
            if sys.platform.startswith("win"):
                return ParsedAddress("serial", f"COM{port}")
            raise InstrumentConnectionError(
                f"ASRL{port}::INSTR names a numbered port, which only Windows maps (COM{port}); "
                "write the device path instead, e.g. ASRL/dev/ttyUSB0::INSTR or /dev/ttyUSB0",
                address=address,
            )
        return ParsedAddress("serial", port)
    if text.startswith("/") or _WINDOWS_COM.match(text) or _SERIAL_URL.match(text):
        return ParsedAddress("serial", text)
    if _VISA.match(text):
        return ParsedAddress("visa", text)
    raise InstrumentConnectionError(
        "unrecognised address: expected a serial device (/dev/ttyUSB0, /dev/serial/by-id/..., "
        "COM3, ASRL/dev/ttyUSB0::INSTR) or a VISA resource (TCPIP::host::5025::SOCKET, "
        "USB0::0x05E6::0x2450::SN::INSTR)",
        address=address,
    )


class Transport:
    """A line-oriented connection to one instrument. Subclasses move the bytes.

    Args:
        address: as the user wrote it (kept for error messages).
        name: the instrument's name in the station (for error messages).
        timeout_s: bound on every read, s.
        read_termination / write_termination: line terminators.
        encoding: text encoding of commands and replies.
        reconnect_attempts: tries made by :meth:`reconnect` before giving up.
        reconnect_delay_s: first back-off delay, doubled after every failure up to
            ``reconnect_max_delay_s``.
        stale_grace_s: how long to wait for each late reply to discard (default: ``timeout_s``,
            at most 1 s).
    """

    def __init__(
        self,
        address: str,
        *,
        name: str = "",
        timeout_s: float = 2.0,
        read_termination: str = "\n",
        write_termination: str = "\n",
        encoding: str = "ascii",
        reconnect_attempts: int = 6,
        reconnect_delay_s: float = 0.1,
        reconnect_max_delay_s: float = 2.0,
        stale_grace_s: float | None = None,
    ):
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if not read_termination:
            raise ValueError("read_termination must not be empty")
        self.address = address
        self.name = name
        self.timeout_s = float(timeout_s)
        self.read_termination = read_termination
        self.write_termination = write_termination
        self.encoding = encoding
        self.reconnect_attempts = int(reconnect_attempts)
        self.reconnect_delay_s = float(reconnect_delay_s)
        self.reconnect_max_delay_s = float(reconnect_max_delay_s)
        self._stale_grace_s = stale_grace_s
        self.lock = threading.RLock()
        #: successful reconnects so far, and (wall start, wall end) of the last outage, so that
        #: callers above a retrying driver can still record the gap as an event
        self.reconnects = 0
        self.last_outage: tuple[float, float] | None = None
        self._stale_replies = 0
        self._last_command = ""
        self._open = False

    # -- what subclasses provide ------------------------------------------------------------
    def _connect(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _disconnect(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _send(self, data: bytes) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _receive_line(self, timeout_s: float) -> bytes:  # pragma: no cover - abstract
        """One line without its terminator; raises InstrumentTimeout after ``timeout_s``."""
        raise NotImplementedError

    def _receive_exact(self, size: int, timeout_s: float) -> bytes:  # pragma: no cover
        raise NotImplementedError

    # -- public API -------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def stale_grace_s(self) -> float:
        if self._stale_grace_s is not None:
            return self._stale_grace_s
        return min(self.timeout_s, 1.0)

    def open(self) -> Transport:
        """Open the port or socket (done by :func:`open_transport`)."""
        with self.lock:
            if not self._open:
                self._connect()
                self._open = True
                self._stale_replies = 0
        return self

    def write(self, command: str) -> None:
        """Send one command line (the write termination is appended)."""
        with self.lock:
            self._last_command = command
            try:
                data = (command + self.write_termination).encode(self.encoding)
            except UnicodeEncodeError as exc:
                raise self._error(
                    InstrumentError, f"command is not {self.encoding}-encodable: {exc}", command
                ) from None
            self._require_open(command)
            self._discard_stale(command)
            self._send(data)

    def write_raw(self, data: bytes) -> None:
        """Send bytes as they are (no termination appended)."""
        with self.lock:
            command = data[:40].decode("latin-1")
            self._last_command = command
            self._require_open(command)
            self._discard_stale(command)
            self._send(bytes(data))

    def read(self) -> str:
        """Read one reply line, termination and trailing CR/LF removed."""
        with self.lock:
            command = self._last_command
            self._require_open(command)
            raw = self._receive_line(self.timeout_s)
            try:
                text = raw.decode(self.encoding)
            except UnicodeDecodeError:
                raise self._error(
                    InstrumentReplyError,
                    f"reply is not {self.encoding} text (garbled line?): {raw[:60]!r}",
                    command,
                ) from None
            return text.rstrip("\r\n")

    def read_raw(self, size: int | None = None) -> bytes:
        """Read exactly ``size`` bytes, or (``size=None``) one line including its terminator."""
        with self.lock:
            command = self._last_command
            self._require_open(command)
            if size is None:
                return self._receive_line(self.timeout_s) + self.read_termination.encode()
            return self._receive_exact(int(size), self.timeout_s)

    def query(self, command: str) -> str:
        """Write ``command`` and read its reply, atomically with respect to other threads."""
        with self.lock:
            self.write(command)
            try:
                return self.read()
            except InstrumentTimeout:
                # the reply may still come; discard it before the next command
                self._stale_replies += 1
                raise

    def reconnect(self) -> None:
        """Close and reopen with exponential back-off; raises InstrumentConnectionError if the
        instrument stays unreachable after ``reconnect_attempts`` tries."""
        with self.lock:
            self.close()
            delay = self.reconnect_delay_s
            started = time.monotonic()
            wall_started = time.time()
            last: Exception | None = None
            for attempt in range(max(1, self.reconnect_attempts)):
                if attempt:
                    time.sleep(delay)
                    delay = min(delay * 2.0, self.reconnect_max_delay_s)
                try:
                    self.open()
                    self.reconnects += 1
                    self.last_outage = (wall_started, time.time())
                    return
                except InstrumentError as exc:
                    last = exc
            raise self._error(
                InstrumentConnectionError,
                f"could not reconnect after {self.reconnect_attempts} attempts over "
                f"{time.monotonic() - started:.1f} s; last error: {_bare(last)}",
                self._last_command,
            )

    def close(self) -> None:
        """Release the port or socket. Safe to call more than once."""
        with self.lock:
            if self._open:
                self._open = False
                with contextlib.suppress(Exception):
                    self._disconnect()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address!r}, name={self.name!r})"

    # -- helpers ----------------------------------------------------------------------------
    def _error(self, cls: type[InstrumentError], message: str, command: str) -> InstrumentError:
        return cls(message, instrument=self.name, address=self.address, command=command)

    def _require_open(self, command: str) -> None:
        if not self._open:
            raise self._error(InstrumentConnectionError, "connection is closed", command)

    def _discard_stale(self, command: str) -> None:
        while self._stale_replies > 0:
            self._stale_replies -= 1
            try:
                self._receive_line(self.stale_grace_s)
            except InstrumentTimeout:
                self._stale_replies = 0  # the instrument dropped it; nothing more is coming
                return


def _bare(exc: Exception | None) -> str:
    """An error's message without the '(instrument ..., at ...)' suffix it was raised with."""
    text = str(exc)
    return text.split(" (instrument ")[0].split(" (at ")[0]


def _open_failure(exc: Exception) -> str:
    """Why a serial port did not open, in words (pyserial repeats the path and errno)."""
    reasons = {
        errno.ENOENT: "no such device (is the adapter plugged in?)",
        errno.EACCES: "permission denied (add yourself to the port's group; see udev/README.md)",
        errno.EBUSY: "port busy (another program has it open)",
    }
    code = getattr(exc, "errno", None)
    return reasons.get(code, str(exc)) if code is not None else str(exc)


#: ``frame(buffer) -> (start, end, used) | None``: the first complete message is
#: ``buffer[start:end]`` and the first ``used`` bytes go with it (its terminator, bytes before it)
Framer = Callable[[bytearray], "tuple[int, int, int] | None"]


def json_object_end(buffer: bytes | bytearray) -> int | None:
    """Index just past the first complete top-level JSON object in ``buffer`` (braces counted
    outside strings; bytes before its ``{`` skipped), else None: how a protocol that sends bare
    JSON objects without a terminator (Maccor MacNet) frames its messages."""
    start = buffer.find(b"{")
    if start < 0:
        return None
    depth, in_string, escaped = 0, False, False
    for index in range(start, len(buffer)):
        ch = buffer[index]
        if in_string:
            if escaped:
                escaped = False
            elif ch == 0x5C:  # backslash
                escaped = True
            elif ch == 0x22:
                in_string = False
        elif ch == 0x22:
            in_string = True
        elif ch == 0x7B:
            depth += 1
        elif ch == 0x7D:
            depth -= 1
            if depth == 0:
                return index + 1
    return None


class BufferedTransport(Transport):
    """A transport that reads what arrives into ``self._buffer`` (:meth:`_fill`, the subclass's)
    and cuts replies from it: lines ending in ``read_termination``, exact sizes, or any framing
    (:meth:`_receive_framed`). Bytes after a reply stay buffered for the next read."""

    _buffer: bytearray

    def _fill(self, deadline: float) -> bool:  # pragma: no cover - abstract
        """Append what arrives to ``self._buffer``; False once ``deadline`` (monotonic) passed."""
        raise NotImplementedError

    def _receive_framed(self, frame: Framer, timeout_s: float) -> bytes:
        """The first message ``frame`` finds in the buffer, reading until it is complete."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = frame(self._buffer)
            if found is not None:
                start, end, used = found
                message = bytes(self._buffer[start:end])
                del self._buffer[:used]
                return message
            if not self._fill(deadline):
                partial = f"; partial reply {bytes(self._buffer[:60])!r}" if self._buffer else ""
                raise self._error(
                    InstrumentTimeout,
                    f"no reply within {timeout_s:g} s{partial}",
                    self._last_command,
                )

    def _receive_line(self, timeout_s: float) -> bytes:
        term = self.read_termination.encode()

        def line(buffer: bytearray) -> tuple[int, int, int] | None:
            index = buffer.find(term)
            return None if index < 0 else (0, index, index + len(term))

        return self._receive_framed(line, timeout_s)

    def _receive_exact(self, size: int, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        while len(self._buffer) < size:
            if not self._fill(deadline):
                raise self._error(
                    InstrumentTimeout,
                    f"{len(self._buffer)} of {size} bytes within {timeout_s:g} s",
                    self._last_command,
                )
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


class SerialTransport(BufferedTransport):
    """A serial port through pyserial (USB-serial adapters, RS-232, pseudo-terminals, URLs)."""

    #: longest single blocking read; the overall deadline is checked between reads
    POLL_S = 0.05

    def __init__(
        self,
        address: str,
        *,
        port: str | None = None,
        baud_rate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        xonxoff: bool = False,
        rtscts: bool = False,
        exclusive: bool = True,
        **kwargs: object,
    ):
        super().__init__(address, **kwargs)  # type: ignore[arg-type]
        import serial  # pyserial: imported here so analysis-only installs never need it

        self._serial_mod = serial
        self.port = port if port is not None else parse_address(address).resource
        if parity.upper() not in ("N", "E", "O", "M", "S"):
            raise ValueError(f"parity must be one of N, E, O, M, S; got {parity!r}")
        self.baud_rate = int(baud_rate)
        self.bytesize = int(bytesize)
        self.parity = parity.upper()
        self.stopbits = stopbits
        self.xonxoff = xonxoff
        self.rtscts = rtscts
        self.exclusive = exclusive
        self._port = None
        self._buffer = bytearray()

    def _connect(self) -> None:
        serial = self._serial_mod
        try:
            port = serial.serial_for_url(self.port, do_not_open=True)
            port.baudrate = self.baud_rate
            port.bytesize = self.bytesize
            port.parity = self.parity
            port.stopbits = self.stopbits
            port.xonxoff = self.xonxoff
            port.rtscts = self.rtscts
            port.timeout = self.POLL_S
            port.write_timeout = self.timeout_s
            if self.exclusive and not _SERIAL_URL.match(self.port) and os.name == "posix":
                port.exclusive = True  # a second program on the same cell is a safety hazard
            port.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise self._error(
                InstrumentConnectionError,
                f"cannot open serial port {self.port}: {_open_failure(exc)}",
                "",
            ) from None
        self._port = port
        self._buffer.clear()

    def _disconnect(self) -> None:
        port, self._port = self._port, None
        self._buffer.clear()
        if port is not None:
            port.close()

    def _send(self, data: bytes) -> None:
        serial = self._serial_mod
        try:
            self._port.write(data)
            self._port.flush()
        except serial.SerialTimeoutException:
            raise self._error(
                InstrumentTimeout,
                f"write did not complete within {self.timeout_s} s",
                self._last_command,
            ) from None
        except (serial.SerialException, OSError, *_TTY_ERRORS) as exc:
            # termios.error (an unplugged tty on flush) is not an OSError.
            raise self._error(
                InstrumentConnectionError, f"serial port lost: {exc}", self._last_command
            ) from None

    def _fill(self, deadline: float) -> bool:
        """Read what is available (blocking at most POLL_S); False once the deadline passed."""
        if time.monotonic() >= deadline:
            return False
        serial = self._serial_mod
        try:
            chunk = self._port.read(max(1, self._port.in_waiting))
        except (serial.SerialException, OSError) as exc:
            raise self._error(
                InstrumentConnectionError, f"serial port lost: {exc}", self._last_command
            ) from None
        self._buffer.extend(chunk)
        return True


_RESOURCE_MANAGERS: dict[str, object] = {}
_RM_LOCK = threading.Lock()


def visa_library() -> str:
    """The VISA library spec: ``$CELLBENCH_VISA_LIBRARY`` or pyvisa-py (``"@py"``)."""
    return os.environ.get(VISA_LIBRARY_ENV, "").strip() or DEFAULT_VISA_LIBRARY


def resource_manager(library: str | None = None):
    """One shared pyvisa ResourceManager per VISA library."""
    import pyvisa

    spec = library or visa_library()
    with _RM_LOCK:
        rm = _RESOURCE_MANAGERS.get(spec)
        if rm is None:
            try:
                rm = pyvisa.ResourceManager(spec)
            except (OSError, ValueError, pyvisa.errors.Error) as exc:
                raise InstrumentConnectionError(
                    f"cannot load VISA library {spec!r} (set {VISA_LIBRARY_ENV}): {exc}"
                ) from None
            _RESOURCE_MANAGERS[spec] = rm
        return rm


class VisaTransport(Transport):
    """A VISA resource through pyvisa: LAN sockets, VXI-11/HiSLIP, USB-TMC, GPIB."""

    def __init__(self, address: str, *, library: str | None = None, **kwargs: object):
        super().__init__(address, **kwargs)  # type: ignore[arg-type]
        self.library = library or visa_library()
        self._resource = None

    def _connect(self) -> None:
        rm = resource_manager(self.library)
        timeout_ms = max(1, round(self.timeout_s * 1000))
        try:
            resource = rm.open_resource(
                self.address,
                open_timeout=timeout_ms,
                read_termination=self.read_termination,
                write_termination="",  # appended by Transport.write
                timeout=timeout_ms,
            )
        except Exception as exc:  # pyvisa-py raises bare Exception("could not connect: ...")
            reason = " ".join(str(exc).split())  # pyvisa-py's hints span several lines
            raise self._error(
                InstrumentConnectionError, f"cannot open VISA resource: {reason}", ""
            ) from None
        self._resource = resource
        # Without TCP_NODELAY, a few writes followed by a query wait ~40 ms each on Nagle's
        # algorithm meeting the instrument's delayed ACK (a source set-up took 45 ms, not 0.5).
        # VI_ATTR_TCPIP_NODELAY is the public VISA attribute for it (other interfaces refuse
        # it, harmlessly).
        import pyvisa

        with contextlib.suppress(Exception):  # pyvisa-py 0.8 registers no setter for it
            resource.set_visa_attribute(
                pyvisa.constants.ResourceAttribute.tcpip_nodelay, pyvisa.constants.VI_TRUE
            )
        # pyvisa-py connects raw sockets without waiting and reports a refused connection only
        # at the first I/O; ask the port directly (stdlib socket, then closed) so that opening
        # an absent instrument fails here, naming it
        endpoint = _socket_endpoint(self.address)
        if endpoint is not None and not _reachable(*endpoint, self.timeout_s):
            self._disconnect()
            raise self._error(
                InstrumentConnectionError,
                f"connection to {endpoint[0]}:{endpoint[1]} refused or timed out",
                "",
            )

    def _disconnect(self) -> None:
        resource, self._resource = self._resource, None
        if resource is not None:
            resource.close()

    def _peer_gone(self) -> bool:
        """After a silent read on a raw socket: is the instrument's port still accepting?
        (A fresh stdlib connection, closed at once; no pyvisa-py internals are read.)"""
        endpoint = _socket_endpoint(self.address)
        return endpoint is not None and not _reachable(*endpoint, min(self.timeout_s, 0.5))

    def _send(self, data: bytes) -> None:
        import pyvisa

        try:
            self._resource.write_raw(data)
        except pyvisa.errors.VisaIOError as exc:
            if exc.error_code == pyvisa.constants.StatusCode.error_timeout:
                raise self._error(
                    InstrumentTimeout, f"write timed out: {exc.description}", self._last_command
                ) from None
            raise self._error(
                InstrumentConnectionError, f"write failed: {exc.description}", self._last_command
            ) from None
        except OSError as exc:
            raise self._error(
                InstrumentConnectionError, f"connection lost: {exc}", self._last_command
            ) from None

    def _read_with_timeout(self, timeout_s: float, size: int | None) -> bytes:
        import pyvisa

        resource = self._resource
        resource.timeout = max(1, round(timeout_s * 1000))
        try:
            return resource.read_bytes(size) if size is not None else resource.read_raw()
        except pyvisa.errors.VisaIOError as exc:
            if exc.error_code == pyvisa.constants.StatusCode.error_timeout:
                if self._peer_gone():
                    raise self._error(
                        InstrumentConnectionError,
                        "connection closed by the instrument",
                        self._last_command,
                    ) from None
                raise self._error(
                    InstrumentTimeout, f"no reply within {timeout_s:g} s", self._last_command
                ) from None
            raise self._error(
                InstrumentConnectionError, f"read failed: {exc.description}", self._last_command
            ) from None
        except OSError as exc:
            raise self._error(
                InstrumentConnectionError, f"connection lost: {exc}", self._last_command
            ) from None
        finally:
            with contextlib.suppress(Exception):
                resource.timeout = max(1, round(self.timeout_s * 1000))

    def _receive_line(self, timeout_s: float) -> bytes:
        raw = self._read_with_timeout(timeout_s, None)
        term = self.read_termination.encode()
        return raw[: -len(term)] if raw.endswith(term) else raw

    def _receive_exact(self, size: int, timeout_s: float) -> bytes:
        return self._read_with_timeout(timeout_s, size)


_SOCKET_RESOURCE = re.compile(r"^TCPIP\d*::(?P<host>[^:]+)::(?P<port>\d+)::SOCKET$", re.I)


def _socket_endpoint(resource: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``TCPIP::host::port::SOCKET`` resource, else None."""
    match = _SOCKET_RESOURCE.match(resource.strip())
    return (match["host"], int(match["port"])) if match else None


def _reachable(host: str, port: int, timeout_s: float) -> bool:
    """True if ``host:port`` accepts a TCP connection within ``timeout_s`` (closed at once)."""
    try:
        with socket.create_connection((host, port), timeout=max(timeout_s, 0.05)):
            return True
    except OSError:
        return False


def open_transport(
    address: str,
    *,
    name: str = "",
    timeout_s: float = 2.0,
    read_termination: str = "\n",
    write_termination: str = "\n",
    baud_rate: int = 9600,
    bytesize: int = 8,
    parity: str = "N",
    stopbits: float = 1,
    encoding: str = "ascii",
    **options: object,
) -> Transport:
    """Open the transport ``address`` calls for (see the module docstring) and return it open.

    Serial settings apply to serial addresses only. Extra ``options`` go to the transport class
    (e.g. ``rtscts=True``, ``reconnect_attempts=3``, ``library="@ivi"``).
    Raises :class:`InstrumentConnectionError` naming the address if it cannot be opened.
    """
    parsed = parse_address(address)
    common = dict(
        name=name,
        timeout_s=timeout_s,
        read_termination=read_termination,
        write_termination=write_termination,
        encoding=encoding,
    )
    if parsed.kind == "serial":
        transport: Transport = SerialTransport(
            address,
            port=parsed.resource,
            baud_rate=baud_rate,
            bytesize=bytesize,
            parity=parity,
            stopbits=stopbits,
            **common,
            **options,
        )
    elif (
        _socket_endpoint(parsed.resource) is not None
        and "library" not in options
        and not os.environ.get(VISA_LIBRARY_ENV, "").strip()
    ):
        from cellbench.drivers.socket_transport import SocketTransport

        transport = SocketTransport(parsed.resource, **common, **options)
    else:
        transport = VisaTransport(parsed.resource, **common, **options)
    return transport.open()
