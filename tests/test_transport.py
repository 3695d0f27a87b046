"""Transports over real wires: pyvisa-py to a loopback SCPI server, pyserial to a pty pair."""

from __future__ import annotations

import os
import select
import threading
import time

import pytest

from cellbench.drivers.errors import (
    InstrumentConnectionError,
    InstrumentReplyError,
    InstrumentTimeout,
)
from cellbench.drivers.sim.faults import FaultInjector
from cellbench.drivers.sim.scpi_server import ScpiServer, compile_header, split_messages
from cellbench.drivers.socket_transport import SocketTransport
from cellbench.drivers.transport import (
    SerialTransport,
    VisaTransport,
    open_transport,
    parse_address,
)

TIMEOUT = 0.3
SLACK = 0.6  # scheduling allowance on a loaded CI machine; bounds, not performance


class EchoServer(ScpiServer):
    idn = "CELLBENCH,ECHO,1,1.0"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_command(":ECHO", get=lambda args, n: args)


@pytest.fixture
def server():
    with EchoServer() as srv:
        yield srv


@pytest.fixture(params=["socket", "pyvisa"])
def visa(server, request):
    """A raw-socket session, as opened by default (stdlib) and through pyvisa-py."""
    options = {"library": "@py"} if request.param == "pyvisa" else {}
    transport = open_transport(server.address, name="echo", timeout_s=TIMEOUT, **options)
    yield transport
    transport.close()


@pytest.mark.parametrize(
    ("address", "kind", "resource"),
    [
        ("/dev/ttyUSB0", "serial", "/dev/ttyUSB0"),
        (
            "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0",
            "serial",
            "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0",
        ),
        ("ASRL/dev/ttyUSB0::INSTR", "serial", "/dev/ttyUSB0"),
        ("COM3", "serial", "COM3"),
        ("loop://", "serial", "loop://"),
        ("TCPIP::192.168.0.5::5025::SOCKET", "visa", "TCPIP::192.168.0.5::5025::SOCKET"),
        ("TCPIP0::k-e4990a::inst0::INSTR", "visa", "TCPIP0::k-e4990a::inst0::INSTR"),
        ("USB0::0x05E6::0x2450::04412345::INSTR", "visa", "USB0::0x05E6::0x2450::04412345::INSTR"),
        ("GPIB0::17::INSTR", "visa", "GPIB0::17::INSTR"),
    ],
)
def test_parse_address(address, kind, resource):
    parsed = parse_address(address)
    assert (parsed.kind, parsed.resource) == (kind, resource)


@pytest.mark.parametrize("address", ["", "keithley", "http://x"])
def test_parse_address_rejects_unknown_forms(address):
    with pytest.raises(InstrumentConnectionError, match="address"):
        parse_address(address)


def test_scpi_header_matching():
    regex = compile_header("[:SENSe#]:FREQuency:STARt")
    assert regex.match(":SENS1:FREQ:STAR")
    assert regex.match(":sense2:frequency:start").groups() == ("2",)
    assert regex.match(":FREQ:STAR")
    assert not regex.match(":FREQ:STA")
    assert not regex.match(":FREQ:STARTX")
    assert split_messages(':ECHO? "a;b";*IDN?') == [':ECHO? "a;b"', "*IDN?"]


def test_visa_round_trip_and_error_queue(visa, server):
    assert isinstance(visa, (SocketTransport, VisaTransport))
    assert visa.query("*IDN?") == "CELLBENCH,ECHO,1,1.0"
    assert visa.query(":ECHO? 1.5") == "1.5"
    visa.write(":NOPE 1")
    assert visa.query(":SYST:ERR?") == '-113,"Undefined header;:NOPE 1"'
    assert visa.query("*ESR?") == "32"
    assert visa.query(":SYST:ERR?") == '0,"No error"'
    assert server.received[:2] == ["*IDN?", ":ECHO? 1.5"]


def test_query_is_atomic_across_threads(visa):
    replies: dict[int, list[str]] = {}

    def worker(k: int) -> None:
        replies[k] = [visa.query(f":ECHO? {k}-{i}") for i in range(30)]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for k in range(4):
        assert replies[k] == [f"{k}-{i}" for i in range(30)]


def _elapsed(fn) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def test_no_reply_times_out_within_bound(visa, server):
    server.faults.inject("no_reply")
    t0 = time.monotonic()
    with pytest.raises(InstrumentTimeout, match=r"ECHO\? x") as info:
        visa.query(":ECHO? x")
    assert TIMEOUT * 0.9 <= time.monotonic() - t0 < TIMEOUT + SLACK
    assert info.value.address == server.address and info.value.instrument == "echo"
    assert visa.query(":ECHO? y") == "y"


def test_late_reply_within_timeout_succeeds(visa, server):
    server.faults.inject("late_reply", delay_s=TIMEOUT / 3)
    assert visa.query(":ECHO? slow") == "slow"


def test_late_reply_past_timeout_is_discarded_before_next_query(visa, server):
    server.faults.inject("late_reply", delay_s=TIMEOUT * 1.5)
    with pytest.raises(InstrumentTimeout):
        visa.query(":ECHO? late")
    # the late "late" arrives while the next command is pending: it must not be read as its reply
    assert visa.query(":ECHO? next") == "next"
    assert visa.query(":ECHO? again") == "again"


def test_garbled_reply_is_a_reply_error(visa, server):
    server.faults.inject("garbled")
    with pytest.raises(InstrumentReplyError, match="garbled"):
        visa.query("*IDN?")
    assert visa.query(":ECHO? ok") == "ok"


def test_error_queue_fault(visa, server):
    server.faults.inject("error_queue", code=-350, message="Queue overflow")
    visa.write(":ECHO 1")  # any command; the fault enqueues its error
    assert visa.query(":SYST:ERR?").startswith("-350")


def test_disconnect_then_reconnect_recovers(visa, server):
    # Through pyvisa-py a closed connection shows only as a silent read: VisaTransport then
    # asks the port (public socket API) and reports a lost connection if it refuses, so the
    # outage must outlast the read timeout there; the stdlib transport sees the close at once.
    refuse_s = 0.3 if isinstance(visa, SocketTransport) else TIMEOUT + 0.7
    server.faults.inject("disconnect", delay_s=refuse_s)
    with pytest.raises(InstrumentConnectionError):
        visa.query("*IDN?")
    t0 = time.monotonic()
    visa.reconnect()  # refused for a while, then accepted: back-off must ride it out
    assert time.monotonic() - t0 < refuse_s + 3.0
    assert visa.query(":ECHO? back") == "back"
    assert visa.reconnects == 1
    start, end = visa.last_outage
    assert 0.0 <= end - start < refuse_s + 3.5


def test_reconnect_gives_up_when_instrument_stays_away(server):
    transport = open_transport(
        server.address, timeout_s=TIMEOUT, reconnect_attempts=3, reconnect_delay_s=0.05
    )
    server.stop()
    t0 = time.monotonic()
    with pytest.raises(InstrumentConnectionError, match="3 attempts"):
        transport.reconnect()
    assert time.monotonic() - t0 < 3 * (0.2 + TIMEOUT) + SLACK
    transport.close()
    transport.close()  # idempotent


def test_open_refused_port_is_connection_error():
    with EchoServer() as srv:
        address = srv.address
    with pytest.raises(InstrumentConnectionError, match=r"127\.0\.0\.1"):
        open_transport(address, timeout_s=TIMEOUT)


def test_absent_usb_instrument_is_one_line_connection_error():
    address = "USB0::0x0957::0x1A07::NOSUCHSERIAL::INSTR"
    with pytest.raises(InstrumentConnectionError) as info:
        open_transport(address, timeout_s=TIMEOUT)
    message = str(info.value)
    assert message.startswith("cannot open VISA resource: ") and f"(at {address})" in message
    assert "\n" not in message  # pyvisa-py's multi-line hints are joined


def test_absent_serial_port_says_so_in_words(tmp_path):
    with pytest.raises(InstrumentConnectionError) as info:
        open_transport(str(tmp_path / "ttyUSB9"), timeout_s=TIMEOUT)
    assert "no such device (is the adapter plugged in?)" in str(info.value)
    assert "Errno" not in str(info.value)


def test_closed_transport_refuses_io(visa):
    visa.close()
    with pytest.raises(InstrumentConnectionError, match="closed"):
        visa.query("*IDN?")


# -- serial over a pseudo-terminal pair ------------------------------------------------------


class PtyResponder:
    """The instrument end of a pty: answers ``ECHO x`` with ``x`` (``\\r`` terminated) and
    ``SILENT`` with nothing; records bytes received."""

    def __init__(self):
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        self._slave = slave  # kept open so the master never sees a hang-up between clients
        self.received = bytearray()
        self.faults = FaultInjector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import tty

        tty.setraw(self._slave)
        buffer = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            self.received.extend(chunk)
            buffer.extend(chunk)
            while b"\r" in buffer:
                line, _, rest = bytes(buffer).partition(b"\r")
                buffer = bytearray(rest)
                text = line.decode()
                if text.startswith("ECHO "):
                    if self.faults.take("late_reply", text):
                        time.sleep(0.1)
                    payload = text[5:].encode()
                    # split the reply in two writes: the reader must reassemble it
                    os.write(self.master, payload[:2])
                    os.write(self.master, payload[2:] + b"\r")
                elif text == "BIN":
                    os.write(self.master, bytes(range(256)))

    def close(self):
        self._stop.set()
        self._thread.join(2)
        os.close(self.master)
        os.close(self._slave)


@pytest.fixture
def pty():
    responder = PtyResponder()
    yield responder
    responder.close()


def test_serial_round_trip_over_pty(pty):
    with open_transport(
        pty.path,
        name="tester",
        timeout_s=TIMEOUT,
        read_termination="\r",
        write_termination="\r",
        baud_rate=115200,
    ) as transport:
        assert isinstance(transport, SerialTransport)
        assert transport.query("ECHO hello world") == "hello world"
        assert transport.query("ECHO 2") == "2"
        transport.write_raw(b"BIN\r")
        assert transport.read_raw(256) == bytes(range(256))
    assert bytes(pty.received).startswith(b"ECHO hello world\rECHO 2\rBIN\r")


def test_serial_asrl_form_and_timeout(pty):
    transport = open_transport(
        f"ASRL{pty.path}::INSTR",
        timeout_s=TIMEOUT,
        read_termination="\r",
        write_termination="\r",
    )
    try:
        t0 = time.monotonic()
        with pytest.raises(InstrumentTimeout, match="SILENT"):
            transport.query("SILENT")
        assert TIMEOUT * 0.9 <= time.monotonic() - t0 < TIMEOUT + SLACK
        assert transport.query("ECHO fine") == "fine"
    finally:
        transport.close()


def test_serial_concurrent_queries_stay_paired(pty):
    transport = open_transport(
        pty.path, timeout_s=1.0, read_termination="\r", write_termination="\r"
    )
    results: dict[int, list[str]] = {}

    def worker(k: int) -> None:
        results[k] = [transport.query(f"ECHO {k}:{i}") for i in range(20)]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    transport.close()
    for k in range(3):
        assert results[k] == [f"{k}:{i}" for i in range(20)]


def test_missing_serial_port_is_connection_error(tmp_path):
    missing = tmp_path / "ttyUSB9"
    with pytest.raises(InstrumentConnectionError, match="ttyUSB9"):
        open_transport(str(missing), timeout_s=TIMEOUT)


def test_second_open_of_a_port_is_refused(pty):
    first = open_transport(pty.path, timeout_s=TIMEOUT, read_termination="\r")
    try:
        with pytest.raises(InstrumentConnectionError):
            open_transport(pty.path, timeout_s=TIMEOUT, read_termination="\r")
    finally:
        first.close()


def test_serial_port_lost_is_connection_error():
    responder = PtyResponder()
    transport = open_transport(
        responder.path, timeout_s=TIMEOUT, read_termination="\r", write_termination="\r"
    )
    try:
        assert transport.query("ECHO x") == "x"
        responder.close()  # the adapter is unplugged: the pty's far end disappears
        t0 = time.monotonic()
        with pytest.raises(InstrumentConnectionError, match="serial port lost"):
            transport.query("ECHO y")
        assert time.monotonic() - t0 < TIMEOUT + SLACK
    finally:
        transport.close()


def test_timeout_can_be_changed_per_transport(visa, server):
    visa.timeout_s = 0.1
    server.faults.inject("no_reply")
    t0 = time.monotonic()
    with pytest.raises(InstrumentTimeout, match=r"0\.1 s"):
        visa.query("*IDN?")
    assert time.monotonic() - t0 < 0.1 + SLACK


# --- issue 10: public APIs only ----------------------------------------------------------------
def test_visa_transport_reads_no_private_pyvisa_py_session(server, monkeypatch):
    """VisaTransport uses pyvisa's public API only: it never looks up a pyvisa-py session
    (``visalib.sessions[...]``, whose ``interface`` is the raw socket) itself."""
    import sys

    from cellbench.drivers.transport import resource_manager

    visalib = resource_manager("@py").visalib
    looked_up: list[str] = []

    class Watched(dict):
        def __getitem__(self, key):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith("cellbench"):
                looked_up.append(caller)
            return super().__getitem__(key)

    monkeypatch.setattr(visalib, "sessions", Watched(visalib.sessions))
    transport = open_transport(server.address, timeout_s=TIMEOUT, library="@py")
    try:
        assert isinstance(transport, VisaTransport)
        assert transport.query("*IDN?") == "CELLBENCH,ECHO,1,1.0"
        server.faults.inject("no_reply")
        with pytest.raises(InstrumentTimeout):
            transport.query("*IDN?")
    finally:
        transport.close()
    assert looked_up == []


def test_raw_socket_default_is_stdlib_with_nodelay(server):
    import socket

    transport = open_transport(server.address, timeout_s=TIMEOUT)
    try:
        assert isinstance(transport, SocketTransport)
        assert transport._socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert transport.query("*IDN?") == "CELLBENCH,ECHO,1,1.0"
    finally:
        transport.close()
